package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/store"
)

// tokens returns the token source of one binding for the salesforce client.
// who is whom to send a fresh link to if the binding ends. The result is
// safe for concurrent use.
//
// A refresh goes to the Org the binding's grant belongs to (see
// orgSet.of), with that Org's credentials; a binding of no configured Org
// is removed without its token being sent anywhere, and its owner is told,
// once, with a fresh link (ErrLoginMoved). The refresh answer's instance
// URL is stored with the new tokens and handed to the client, which sends
// the retry there.
func (s *Service) tokens(b store.Binding, who Requester) salesforce.Tokens {
	return &bindingTokens{svc: s, teamID: b.TeamID, userID: b.UserID, who: who, access: b.AccessToken}
}

// bindingTokens serves the access token it was built with until the API
// rejects it; then it refreshes through the Service, which makes sure one
// user's concurrent refreshes become one.
type bindingTokens struct {
	svc            *Service
	teamID, userID string
	who            Requester

	mu     sync.Mutex
	access string
}

func (t *bindingTokens) AccessToken(context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.access, nil
}

func (t *bindingTokens) Refresh(ctx context.Context, stale string) (salesforce.Token, error) {
	tok, err := t.svc.refresh(ctx, t.teamID, t.userID, stale, t.who)
	if err != nil {
		return salesforce.Token{}, err
	}
	t.mu.Lock()
	t.access = tok.AccessToken
	t.mu.Unlock()
	return tok, nil
}

// refresh returns a working access token for the user, with the instance it
// is for, after the API rejected stale. Concurrent calls for one user share
// one refresh; a call that finds the stored token already differs from
// stale uses the stored one. A caller whose context ends first gets
// ErrTimeout (for a deadline) while the refresh runs on.
func (s *Service) refresh(ctx context.Context, teamID, userID, stale string, who Requester) (salesforce.Token, error) {
	key := teamID + "/" + userID
	tok, err := s.flights.do(ctx, key, func() (salesforce.Token, error) {
		// A refresh is detached from the request that started it: once
		// Salesforce has rotated the refresh token, abandoning the commit
		// would lose the grant. CallTimeout bounds it instead.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CallTimeout)
		defer cancel()
		tok, outcome, err := s.doRefresh(ctx, teamID, userID, stale, who)
		if outcome != "" {
			s.observeRefresh(outcome)
		}
		return tok, err
	})
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrTimeout) {
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return tok, err
}

// doRefresh refreshes the user's tokens. outcome is what Observer.Refreshed
// is told, "" when no refresh was tried (no binding, or another refresh had
// already replaced stale).
func (s *Service) doRefresh(ctx context.Context, teamID, userID, stale string, who Requester) (_ salesforce.Token, outcome string, _ error) {
	log := s.log.With().Str("team", teamID).Str("user", userID).Logger()
	b, err := s.binding(ctx, teamID, userID)
	switch {
	case errors.Is(err, ErrNotLinked):
		return salesforce.Token{}, "", ErrNotLinked
	case errors.Is(err, ErrUnreadable):
		log.Warn().Err(err).Msg("binding record cannot be opened; the person is asked to connect again")
		return salesforce.Token{}, "error", fmt.Errorf("refresh: %w", err)
	case err != nil:
		return salesforce.Token{}, "error", fmt.Errorf("refresh: %w", err)
	}
	if b.AccessToken != stale {
		// Another refresh finished after this caller read its token.
		return salesforce.Token{AccessToken: b.AccessToken, InstanceURL: b.InstanceURL}, "", nil
	}
	org, f, err := s.usable(ctx, b, who)
	switch {
	case errors.Is(err, ErrOrgNotAllowed):
		return salesforce.Token{}, "org_not_allowed", err
	case err != nil:
		return salesforce.Token{}, "moved", err
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, s.http)
	tok, err := org.OAuth("").TokenSource(hctx, &oauth2.Token{RefreshToken: b.RefreshToken}).Token()
	if err != nil {
		return s.refreshFailed(ctx, b, f, who, err)
	}
	grant, err := checkGrant(org, tok)
	if err == nil && (grant.orgID != b.OrgID || grant.userID != b.SalesforceUserID) {
		err = fmt.Errorf("the answer names Salesforce user %s of org %s, not the binding's", grant.userID, grant.orgID)
	}
	rotated := tok.RefreshToken != "" && tok.RefreshToken != b.RefreshToken
	if err != nil {
		// The operator has to look: a wrong SALESFORCE_CLIENT_SECRET fails
		// every signature, and a foreign URL is worth knowing about.
		log.Error().Err(err).Bool("refresh_token_rotated", rotated).Msg("refresh answer rejected and not used; keeping the binding")
		s.revokeQuietly(b, unkept(b, tok), "tokens a refresh gave that are not kept")
		err = fmt.Errorf("refresh: %w: %w", ErrRefreshRejected, err)
		if rotated {
			// Salesforce retired b's refresh token for the one just
			// revoked: the binding cannot be renewed any more.
			err = fmt.Errorf("%w (%w)", err, ErrRefreshSpent)
		}
		return salesforce.Token{}, "rejected", err
	}
	newRefresh, newLogin := "", ""
	if rotated {
		newRefresh = tok.RefreshToken // rotation is on
	}
	if f == fitSameKind {
		newLogin = org.LoginURL.String() // the grant lives there from now on
	}
	// Salesforce has answered (and may have rotated the refresh token): the
	// commit gets its own deadline, so a slow token answer cannot leave it
	// no time and lose the grant.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	nb, err := s.cfg.Store.UpdateTokens(cctx, teamID, userID, b.RefreshToken, store.Tokens{
		AccessToken: tok.AccessToken, RefreshToken: newRefresh, InstanceURL: grant.instanceURL, LoginURL: newLogin, IssuedAt: grant.issuedAt,
	})
	if err != nil {
		// Nothing will hold what this refresh got: revoke it, or a rotated
		// refresh token would stay live at Salesforce with no record of it.
		s.revokeQuietly(b, unkept(b, tok), "tokens a refresh gave that are not kept")
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		// The grant was replaced while this refresh ran (a re-link); use what is stored.
		cur, err := s.binding(cctx, teamID, userID)
		if err != nil {
			return salesforce.Token{}, "error", fmt.Errorf("refresh: %w", err)
		}
		return salesforce.Token{AccessToken: cur.AccessToken, InstanceURL: cur.InstanceURL}, "ok", nil
	case errors.Is(err, store.ErrNotFound):
		return salesforce.Token{}, "error", ErrNotLinked // unlinked while the refresh ran
	case err != nil:
		return salesforce.Token{}, "error", fmt.Errorf("refresh: store new tokens: %w", storeFailed(err))
	}
	if newLogin != "" {
		log.Info().Str("from", hostOf(b.LoginURL)).Str("to", hostOf(newLogin)).
			Msg("the grant refreshed at the configured login host of the same kind; it is recorded as the binding's login host")
	}
	if nb.InstanceURL != b.InstanceURL {
		log.Info().Str("from", b.InstanceURL).Str("to", nb.InstanceURL).Msg("Salesforce moved the org's instance; stored with the new tokens")
	}
	s.audit("binding refreshed", nb)
	return salesforce.Token{AccessToken: nb.AccessToken, InstanceURL: nb.InstanceURL}, "ok", nil
}

// refreshFailed decides what a failed refresh of b at an Org of fit f means
// for b (the token endpoint answered an error, or did not answer) and
// returns doRefresh's answer.
func (s *Service) refreshFailed(ctx context.Context, b store.Binding, f fit, who Requester, err error) (_ salesforce.Token, outcome string, _ error) {
	log := s.log.With().Str("team", b.TeamID).Str("user", b.UserID).Logger()
	code, status, desc := retrieveError(err)
	switch {
	case code == "invalid_grant" && restricted(desc) != "":
		log.Warn().Str("error_code", code).Str("restriction", restricted(desc)).
			Msg("refresh refused for the user's login IP ranges or login hours; the grant lives, keeping the binding")
		return salesforce.Token{}, "restricted", ErrRestricted
	case code == "invalid_grant" && f == fitSameKind:
		// Tried at a login host that is not the binding's own: the grant is
		// not known there, which says forcebind moved, not that it ended.
		log.Warn().Str("login_host", hostOf(b.LoginURL)).Str("configured_host", s.orgs.hosts()).
			Msg("refresh at the configured login host answered invalid_grant: the binding was made at another Salesforce; deleting it and sending a fresh link")
		return salesforce.Token{}, "moved", s.relink(ctx, b, who, RelinkLoginMoved)
	case code == "invalid_grant":
		log.Info().Msg("refresh answered invalid_grant: the grant has ended; deleting the binding and sending a fresh link")
		return salesforce.Token{}, "relink", s.relink(ctx, b, who, RelinkGrantEnded)
	case isClientError(code):
		log.Error().Str("error_code", code).Int("status", status).
			Msg("Salesforce rejected forcebind's client credentials on refresh; check SALESFORCE_CLIENT_ID and SALESFORCE_CLIENT_SECRET")
		return salesforce.Token{}, "client_rejected", ErrClientRejected
	case code == "" && (errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err)):
		log.Warn().Err(safeErr(err)).Msg("refresh timed out; keeping the binding")
		return salesforce.Token{}, "timeout", fmt.Errorf("%w: %w", ErrTimeout, safeErr(err))
	}
	log.Warn().Str("error_code", code).Int("status", status).Err(safeErr(err)).Msg("refresh failed; keeping the binding")
	return salesforce.Token{}, "transient", ErrTransient
}

// restricted names the restriction an invalid_grant answer's
// error_description reports, or returns "" when it reports none and the
// grant is really gone. Salesforce answers invalid_grant for a grant that
// is alive but may not be used from forcebind's address or at this hour;
// its documented description is "IP restricted or invalid login hours"
// (the OAuth error list of the REST API Developer Guide: "invalid_grant —
// IP restricted or invalid login hours"), sent on the wire in lower case,
// "ip restricted or invalid login hours", and in newer releases also
// "ip restricted" alone (forceworkbench/forceworkbench#772 "invalid_grant:
// ip restricted"; sfdx-actions/setup-sfdx#17 "Error authenticating with the
// refresh token due to: ip restricted"). Every other description relinks,
// among them "expired access/refresh token" (Salesforce Help, "OAuth 2.0
// Authorization Errors": the refresh token flow's example),
// "authentication failure" (the password changed, the user was
// deactivated) and "inactive user" (restforce/restforce#303).
func restricted(desc string) string {
	d := strings.ToLower(desc)
	switch {
	case strings.Contains(d, "ip restricted") && strings.Contains(d, "login hours"):
		return "ip_or_login_hours"
	case strings.Contains(d, "ip restricted"):
		return "ip"
	case strings.Contains(d, "login hours"):
		return "login_hours"
	}
	return ""
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unkept is the token that revokes what a refresh answer gave that
// forcebind does not keep: the rotated refresh token if there is one (it
// revokes its access token too), else the new access token. b's own
// refresh token is left alone unless it was rotated away.
func unkept(b store.Binding, tok *oauth2.Token) string {
	if tok.RefreshToken != "" && tok.RefreshToken != b.RefreshToken {
		return tok.RefreshToken
	}
	return tok.AccessToken
}

// commitTimeout bounds storing the tokens a refresh obtained.
const commitTimeout = 10 * time.Second

// relinkTimeout bounds making and sending the fresh link once a binding
// has been deleted: that message is the only word its owner gets, so it
// does not share what a refresh left of its own deadline, and a Slack rate
// limit can be waited out.
const relinkTimeout = 60 * time.Second

// relink deletes a binding that ended for why and sends its owner a fresh
// link. Once the binding is gone it returns a *RelinkError (matching
// ErrLoginMoved, ErrOrgNotAllowed or ErrRelinkRequired, as why says) with
// the link and whether it was sent, so that the person's answer can carry
// the link when the message could not. The link is made and sent on its
// own deadline, relinkTimeout, detached from ctx. relink returns
// ErrTransient when the person linked again meanwhile, whose new binding
// stays, and ErrNotLinked when the binding is already gone (another relink
// of it, or a disconnect, got there first): no link is sent then, the
// person has been told, or asked to be unlinked. When the store fails to
// delete it, the binding stays, nothing is said, and the error is
// returned: the next use tries again.
func (s *Service) relink(ctx context.Context, b store.Binding, who Requester, why RelinkReason) error {
	log := s.log.With().Str("team", b.TeamID).Str("user", b.UserID).Str("why", why.String()).Logger()
	// Only the binding of the dead grant goes: if the person linked again while
	// this refresh ran, the new binding stays and no link is sent.
	switch err := s.cfg.Store.DeleteBindingIf(ctx, b.TeamID, b.UserID, b.RefreshToken); {
	case errors.Is(err, store.ErrConflict):
		log.Info().Msg("binding ended, but the user has linked again meanwhile")
		return ErrTransient
	case errors.Is(err, store.ErrNotFound):
		return ErrNotLinked
	case err != nil:
		log.Error().Err(err).Msg("delete ended binding; it stays until the next try")
		return fmt.Errorf("delete ended binding: %w", storeFailed(err))
	}
	switch why {
	case RelinkLoginMoved:
		s.audit("binding removed: login host no longer configured", b)
	case RelinkOrgNotAllowed:
		s.audit("binding removed: org no longer allowed", b)
	default:
		s.audit("binding removed: grant ended", b)
	}
	if who.TeamID == "" {
		who.TeamID, who.UserID = b.TeamID, b.UserID
	}
	ended := &RelinkError{Why: why}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), relinkTimeout)
	defer cancel()
	link, err := s.Start(ctx, who)
	if err != nil {
		log.Error().Err(err).Msg("create fresh link")
		return ended
	}
	ended.Link = link
	if err := s.cfg.Notifier.Relink(ctx, who, link, why); err != nil {
		log.Error().Err(err).Msg("send fresh link; the person's answer carries it instead")
		return ended
	}
	ended.Sent = true
	return ended
}

// retrieveErrorCode returns the OAuth error code and HTTP status of a token
// endpoint failure ("" and 0 for a network failure).
func retrieveErrorCode(err error) (string, int) {
	code, status, _ := retrieveError(err)
	return code, status
}

// retrieveError returns the OAuth error code, HTTP status and
// error_description of a token endpoint failure ("", 0 and "" for a
// network failure).
func retrieveError(err error) (code string, status int, desc string) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return "", 0, ""
	}
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	return re.ErrorCode, status, re.ErrorDescription
}

func isClientError(code string) bool {
	switch code {
	case "invalid_client", "invalid_client_id", "invalid_client_credentials", "unauthorized_client":
		return true
	}
	return false
}

// safeErr keeps what can be logged of a token endpoint error. A
// *oauth2.RetrieveError's message includes the response body, which is never
// logged whole: only its code and status are.
func safeErr(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := ""
		if re.Response != nil {
			status = re.Response.Status
		}
		return fmt.Errorf("token endpoint answered %s %s", status, re.ErrorCode)
	}
	return err
}

// flightGroup makes concurrent calls with one key share one execution.
// Callers wait under their own context; the execution itself runs on.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flight
	wg    sync.WaitGroup // executions still running
}

type flight struct {
	done chan struct{}
	val  salesforce.Token
	err  error
}

func (g *flightGroup) do(ctx context.Context, key string, fn func() (salesforce.Token, error)) (salesforce.Token, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = make(map[string]*flight)
	}
	f, ok := g.calls[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		g.calls[key] = f
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer func() {
				if r := recover(); r != nil {
					f.err = fmt.Errorf("refresh panicked: %v", r)
				}
				g.mu.Lock()
				delete(g.calls, key)
				g.mu.Unlock()
				close(f.done)
			}()
			f.val, f.err = fn()
		}()
	}
	g.mu.Unlock()
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		return salesforce.Token{}, ctx.Err()
	}
}

// wait blocks until every execution has finished or ctx ends.
func (g *flightGroup) wait(ctx context.Context) error { return waitGroup(ctx, &g.wg) }

// waitGroup waits for wg until ctx ends. If ctx ends first, the goroutine
// waiting on wg stays until wg is done; callers wait on groups whose work is
// itself bounded.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain reads a little of a body and closes it, so the connection can be
// reused without reading an unbounded answer.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
