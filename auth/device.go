package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/forcebind/forcebind/salesforce"
)

// Salesforce's device flow, as its connected apps speak it: the device code
// is asked for at the token endpoint (response_type=device_code) and polled
// for there (grant_type=device, code=the device code), not at RFC 8628's
// device authorization endpoint and grant type.
const (
	// deviceCodeLife is how long Salesforce keeps a device code. It sends
	// no expires_in; its documentation says ten minutes.
	deviceCodeLife = 10 * time.Minute
	// defaultPollInterval is RFC 8628's interval when none is sent.
	defaultPollInterval = 5 * time.Second
	// slowDownStep is what RFC 8628 adds to the interval on slow_down.
	slowDownStep = 5 * time.Second
	// reuseMinimum is the least time a live device code must have left for
	// a new Start of the same person to hand it out again instead of
	// replacing it: enough to open the page and type it.
	reuseMinimum = time.Minute
	// interruptedNoticeTimeout bounds telling one person, on Close, that
	// their code stopped working, so that Close cannot hang on Slack.
	interruptedNoticeTimeout = 5 * time.Second
)

// errReplaced is the cause a poller is cancelled with when a newer link of
// the same person replaces it; Close cancels with ErrClosed.
var errReplaced = errors.New("device link replaced by a newer one")

// deviceAuth is Salesforce's answer to a device code request, checked.
type deviceAuth struct {
	deviceCode      string // a credential: it is never logged
	userCode        string
	verificationURI string
	interval        time.Duration
	life            time.Duration
}

// startDevice is Start in the device flow. A person's live code with at
// least reuseMinimum left is handed out again rather than replaced: they may
// be typing it right now.
func (s *Service) startDevice(ctx context.Context, who Requester) (Link, error) {
	key := who.TeamID + "/" + who.UserID
	live, ok, err := s.claimDevice(ctx, key)
	if err != nil {
		return Link{}, err
	}
	if ok {
		s.log.Info().Str("team", who.TeamID).Str("user", who.UserID).Time("expires", live.Expires).Msg("device link still live; sent again")
		return live, nil
	}
	defer s.pollers.release(key)
	org := s.orgs.signIn()
	da, err := s.requestDeviceCode(ctx, org)
	if err != nil {
		return Link{}, err
	}
	life := min(s.cfg.LinkTTL, da.life)
	deadline := s.now().Add(life)
	link := Link{URL: da.verificationURI, UserCode: da.userCode, Expires: deadline}
	// The poller outlives the request that started it. Close, or a newer
	// link of the same person, cancels it, saying which as the cause; its
	// own timeout on the real clock bounds it whatever Config.Now says.
	cctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	pctx, cancelTimeout := context.WithTimeout(cctx, life)
	started := s.pollers.run(key, link, cancel, func() {
		defer cancelTimeout()
		s.pollDevice(pctx, org, who, da, deadline)
	})
	if !started {
		cancelTimeout()
		cancel(ErrClosed)
		return Link{}, ErrClosed
	}
	s.log.Info().Str("team", who.TeamID).Str("user", who.UserID).Time("expires", deadline).Msg("device link created")
	return link, nil
}

// claimDevice returns key's live link, if it has at least reuseMinimum
// left, and true. Otherwise it returns once the caller holds key's claim
// (see pollerSet.claim), having waited for any other Start of key to finish
// first, so that its code is the one handed out.
func (s *Service) claimDevice(ctx context.Context, key string) (Link, bool, error) {
	for {
		link, reuse, busy, err := s.pollers.claim(key, s.now().Add(reuseMinimum))
		if err != nil || reuse || busy == nil {
			return link, reuse, err
		}
		select {
		case <-busy:
		case <-ctx.Done():
			return Link{}, false, fmt.Errorf("device link: %w", ctx.Err())
		}
	}
}

// requestDeviceCode asks org for a device code and checks the answer.
func (s *Service) requestDeviceCode(ctx context.Context, org Org) (deviceAuth, error) {
	status, body, err := s.postToken(ctx, org.DeviceURL(), deviceCodeForm(org))
	if err != nil {
		return deviceAuth{}, fmt.Errorf("device code request: %w: %w", salesforce.ErrUnavailable, err)
	}
	return parseDeviceAuth(status, body, org.LoginURL)
}

// deviceCodeForm is the token endpoint form that asks org for a device code.
func deviceCodeForm(org Org) url.Values {
	return url.Values{
		"response_type": {"device_code"},
		"client_id":     {org.ClientID},
		"scope":         {strings.Join(defaultScopes, " ")},
	}
}

// parseDeviceAuth reads the token endpoint's answer to a device code
// request: the codes, checked, or why there are none. The error of an
// answer other than 200 holds its *OAuthError.
func parseDeviceAuth(status int, body []byte, login *url.URL) (deviceAuth, error) {
	if status != http.StatusOK {
		oe := oauthErrorOf(status, body)
		switch code := oe.Code; {
		case status >= 500 || code == "":
			return deviceAuth{}, fmt.Errorf("device code request: %w: %w", salesforce.ErrUnavailable, oe)
		case isClientError(code) || code == "invalid_request" || code == "unsupported_response_type":
			// Salesforce answers so when the connected app does not allow
			// the device flow: an operator problem.
			return deviceAuth{}, fmt.Errorf("device code request %w (is the device flow enabled for the connected app?): %w",
				oe, ErrClientRejected)
		}
		return deviceAuth{}, fmt.Errorf("device code request %w", oe)
	}
	var wire struct {
		DeviceCode      string      `json:"device_code"`
		UserCode        string      `json:"user_code"`
		VerificationURI string      `json:"verification_uri"`
		Interval        json.Number `json:"interval"`
		ExpiresIn       json.Number `json:"expires_in"` // RFC 8628; Salesforce sends none
	}
	if err := json.Unmarshal(body, &wire); err != nil {
		return deviceAuth{}, fmt.Errorf("device code request: decode answer: %w", err)
	}
	if wire.DeviceCode == "" || len(wire.DeviceCode) > 2048 || !plainUserCode(wire.UserCode) {
		return deviceAuth{}, errors.New("device code request: answer lacks a device code or a plain user code")
	}
	verify, err := checkTokenURL(wire.VerificationURI, login)
	if err != nil {
		return deviceAuth{}, fmt.Errorf("device code request: verification_uri: %w", err)
	}
	return deviceAuth{
		deviceCode:      wire.DeviceCode,
		userCode:        wire.UserCode,
		verificationURI: verify.String(),
		interval:        seconds(wire.Interval, defaultPollInterval),
		life:            seconds(wire.ExpiresIn, deviceCodeLife),
	}, nil
}

// plainUserCode accepts a user code fit to show in a message: 1 to 64
// letters, digits and dashes.
func plainUserCode(c string) bool {
	if c == "" || len(c) > 64 {
		return false
	}
	for _, r := range c {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || r == '-') {
			return false
		}
	}
	return true
}

// seconds reads a positive whole number of seconds, or returns def.
func seconds(n json.Number, def time.Duration) time.Duration {
	v, err := strconv.ParseInt(n.String(), 10, 32)
	if err != nil || v <= 0 {
		return def
	}
	return time.Duration(v) * time.Second
}

// pollDevice is one device link's poller, polling org, which issued the
// code. It waits the interval between
// polls (growing it on slow_down), retries transient failures at the
// interval, and ends at the deadline, on a final answer, or when ctx is
// cancelled: by a newer link, silently (the person has the newer code), or
// by Close, which tells the person their code no longer works.
func (s *Service) pollDevice(ctx context.Context, org Org, who Requester, da deviceAuth, deadline time.Time) {
	log := s.log.With().Str("team", who.TeamID).Str("user", who.UserID).Logger()
	defer func() {
		if r := recover(); r != nil {
			log.Error().Str("panic", fmt.Sprint(r)).Msg("device link poller panicked")
			s.linkFailed(who, FlowDevice, FailureError)
		}
	}()
	interval := da.interval
	for {
		remaining := deadline.Sub(s.now())
		switch err := ctx.Err(); {
		case errors.Is(err, context.Canceled) && errors.Is(context.Cause(ctx), ErrClosed):
			log.Info().Msg("device link stopped by shutdown before its code was used")
			s.linkFailedWithin(who, FlowDevice, FailureInterrupted, interruptedNoticeTimeout)
			return
		case errors.Is(err, context.Canceled):
			log.Info().Msg("device link stopped: replaced by a newer one")
			return
		case err != nil || remaining <= 0: // the real clock's deadline, or Config.Now's
			log.Info().Msg("device code not approved in time")
			s.pollers.retire(who, da.userCode)
			s.linkFailed(who, FlowDevice, FailureExpired)
			return
		}
		select {
		case <-ctx.Done():
			continue // said why above
		case <-s.after(min(interval, remaining)):
		}
		res, tok, err := s.pollOnce(ctx, org, da.deviceCode)
		if res != pollPending && res != pollSlowDown && res != pollTransient {
			// The code is spent: a Start from now on asks for a new one,
			// even one made before the person hears how this one ended.
			s.pollers.retire(who, da.userCode)
		}
		switch res {
		case pollPending:
		case pollSlowDown:
			interval += slowDownStep
			log.Debug().Dur("interval", interval).Msg("device poll answered slow_down")
		case pollTransient:
			if ctx.Err() == nil {
				log.Warn().Err(err).Msg("device poll failed; trying again")
			}
		case pollDenied:
			log.Info().Msg("device link denied at Salesforce")
			s.linkFailed(who, FlowDevice, FailureDenied)
			return
		case pollExpired:
			log.Info().Err(err).Msg("device code expired at Salesforce")
			s.linkFailed(who, FlowDevice, FailureExpired)
			return
		case pollRejected:
			log.Error().Err(err).Msg("device poll refused; check SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET and the connected app's device flow setting")
			s.linkFailed(who, FlowDevice, FailureError)
			return
		case pollGranted:
			s.finishDevice(ctx, org, who, tok, log)
			return
		}
	}
}

// finishDevice binds an approved device code's grant from org. Salesforce has issued
// tokens: it runs on regardless of cancellation, so a grant is never left
// half made, bounded by CallTimeout (and commitTimeout for the store).
func (s *Service) finishDevice(ctx context.Context, org Org, who Requester, tok *oauth2.Token, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CallTimeout)
	defer cancel()
	b, id, err := s.grantBinding(ctx, org, tok, who.TeamID, who.UserID)
	if err != nil {
		log.Warn().Err(err).Msg("device grant rejected; nothing stored")
		s.linkFailed(who, FlowDevice, FailureError)
		return
	}
	if s.admit(ctx, b, id, who, FlowDevice) != 0 {
		return
	}
	sctx, cancelStore := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancelStore()
	if err := s.bind(sctx, b, FlowDevice); err != nil {
		log.Error().Err(err).Msg("store binding")
		s.linkFailed(who, FlowDevice, FailureError)
	}
}

// pollResult is what one device poll means for the poller.
type pollResult int

const (
	pollPending   pollResult = iota // authorization_pending: ask again
	pollSlowDown                    // slow_down: ask again, less often
	pollTransient                   // a 5xx, a timeout, a network failure: ask again
	pollDenied                      // access_denied
	pollExpired                     // expired_token, or invalid_grant: the code is no longer good
	pollRejected                    // anything else, e.g. invalid_client: give up
	pollGranted                     // tokens
)

// pollOnce polls org's token endpoint once for the device code. The error,
// for pollTransient, pollExpired and pollRejected, says why in words that
// hold no token (only a status and an OAuth error code).
func (s *Service) pollOnce(ctx context.Context, org Org, deviceCode string) (pollResult, *oauth2.Token, error) {
	form := url.Values{"grant_type": {"device"}, "client_id": {org.ClientID}, "code": {deviceCode}}
	if org.ClientSecret != "" {
		form.Set("client_secret", org.ClientSecret)
	}
	status, body, err := s.postToken(ctx, org.TokenURL(), form)
	if err != nil {
		return pollTransient, nil, err
	}
	return parsePoll(status, body)
}

// parsePoll reads the token endpoint's answer to one device poll.
func parsePoll(status int, body []byte) (pollResult, *oauth2.Token, error) {
	switch {
	case status == http.StatusOK:
		tok, err := parseGrant(body)
		if err != nil {
			return pollRejected, nil, err
		}
		return pollGranted, tok, nil
	case status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		return pollTransient, nil, fmt.Errorf("token endpoint answered %d", status)
	}
	code := oauthErrorCode(body)
	err := fmt.Errorf("token endpoint answered %d %s", status, code)
	switch code {
	case "authorization_pending":
		return pollPending, nil, nil
	case "slow_down":
		return pollSlowDown, nil, nil
	case "access_denied":
		return pollDenied, nil, nil
	case "expired_token", "invalid_grant":
		return pollExpired, nil, err
	}
	return pollRejected, nil, err
}

// parseGrant reads a token response into an oauth2.Token whose Extra holds
// the rest (instance_url, id, issued_at, signature, scope), as checkGrant
// expects.
func parseGrant(body []byte) (*oauth2.Token, error) {
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, errors.New("token response is not JSON")
	}
	str := func(k string) string { v, _ := raw[k].(string); return v }
	tok := &oauth2.Token{AccessToken: str("access_token"), RefreshToken: str("refresh_token"), TokenType: str("token_type")}
	return tok.WithExtra(raw), nil
}

// postToken posts form to endpoint, an Org's token or device endpoint,
// within CallTimeout, and returns the status and at most 64 KiB of the body.
// The form travels in the body, so no credential reaches an error through
// a URL.
func (s *Service) postToken(ctx context.Context, endpoint string, form url.Values) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, fmt.Errorf("token endpoint: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("token endpoint: %w", err)
	}
	defer drain(resp)
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, nil, fmt.Errorf("token endpoint: read answer: %w", err)
	}
	return resp.StatusCode, body, nil
}

// oauthErrorCode returns the "error" of an OAuth error answer, or "".
func oauthErrorCode(body []byte) string { return oauthErrorOf(0, body).Code }

// pollerSet tracks the device-flow pollers: at most one per key (a Slack
// team/user), all cancelled by close, all awaited by wait. It also keeps
// two Starts of one key from asking Salesforce for a code at once (claim,
// release). Its methods are safe for concurrent use.
type pollerSet struct {
	mu     sync.Mutex
	closed bool
	byKey  map[string]*pollerRun
	// starting holds the keys whose Start holds the claim; the channel is
	// closed on release.
	starting map[string]chan struct{}
	wg       sync.WaitGroup
}

type pollerRun struct {
	cancel context.CancelCauseFunc
	link   Link // what Start returned for it
}

// claim begins a Start for key. When key's poller is live and its link
// works until at least liveUntil, it returns that link and reuse. Otherwise
// when another Start holds key's claim it returns busy, closed once that
// Start is done: wait for it and claim again. Otherwise the caller now holds
// key's claim, and must release it once its poller runs or it gave up. It
// returns ErrClosed once the set is closed.
func (p *pollerSet) claim(key string, liveUntil time.Time) (link Link, reuse bool, busy <-chan struct{}, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Link{}, false, nil, ErrClosed
	}
	if r := p.byKey[key]; r != nil && !r.link.Expires.Before(liveUntil) {
		return r.link, true, nil, nil
	}
	if c, ok := p.starting[key]; ok {
		return Link{}, false, c, nil
	}
	if p.starting == nil {
		p.starting = make(map[string]chan struct{})
	}
	p.starting[key] = make(chan struct{})
	return Link{}, false, nil, nil
}

// retire stops offering who's link with userCode to Start, once its code
// is spent; its poller may still be telling who how it ended.
func (p *pollerSet) retire(who Requester, userCode string) {
	key := who.TeamID + "/" + who.UserID
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.byKey[key]; r != nil && r.link.UserCode == userCode {
		delete(p.byKey, key)
	}
}

// release gives up key's claim and wakes the Starts waiting for it.
func (p *pollerSet) release(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.starting[key]; ok {
		close(c)
		delete(p.starting, key)
	}
}

// run starts fn in a goroutine as key's poller, for link, cancelling the
// one before it with errReplaced; cancel is what stops fn. It starts
// nothing and reports false once the set is closed.
func (p *pollerSet) run(key string, link Link, cancel context.CancelCauseFunc, fn func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.byKey == nil {
		p.byKey = make(map[string]*pollerRun)
	}
	if old := p.byKey[key]; old != nil {
		old.cancel(errReplaced)
	}
	r := &pollerRun{cancel: cancel, link: link}
	p.byKey[key] = r
	p.wg.Add(1) // under mu, after the closed check: never once wait has begun
	go func() {
		defer p.wg.Done()
		defer func() {
			p.mu.Lock()
			if p.byKey[key] == r {
				delete(p.byKey, key)
			}
			p.mu.Unlock()
			cancel(nil)
		}()
		fn()
	}()
	return true
}

// close cancels every poller with ErrClosed and lets no new one start.
func (p *pollerSet) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, r := range p.byKey {
		r.cancel(ErrClosed)
	}
}

// wait blocks until every poller has returned or ctx ends.
func (p *pollerSet) wait(ctx context.Context) error { return waitGroup(ctx, &p.wg) }
