package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/store"
)

// Store is what auth needs of the binding store. *bolt.DB (store/bolt) implements it.
type Store interface {
	GetBinding(ctx context.Context, teamID, userID string) (store.Binding, error)
	ReplaceBinding(ctx context.Context, b store.Binding) (store.Replaced, error)
	DeleteBindingIf(ctx context.Context, teamID, userID, refreshToken string) error
	DeleteBindingIfUnreadable(ctx context.Context, teamID, userID string) error
	UpdateTokens(ctx context.Context, teamID, userID, usedRefreshToken string, t store.Tokens) (store.Binding, error)
	CreatePending(ctx context.Context, p store.Pending) (string, error)
	RedeemPending(ctx context.Context, state string) (store.Pending, error)
	ListExpired(ctx context.Context) ([]store.ExpiredLink, error)
	DeletePending(ctx context.Context, id string) error
}

// Service runs the binding flow and gives out Salesforce clients that act
// as the people bound, refreshing their grants at the Org each came from.
// It is safe for concurrent use; one Service serves the whole daemon.
type Service struct {
	cfg     Config
	orgs    orgSet // the Salesforce orgs people sign in to; grants go back only to their own
	http    *http.Client
	log     zerolog.Logger
	now     func() time.Time
	after   func(time.Duration) <-chan time.Time
	flights flightGroup
	pollers pollerSet // device-flow pollers, one per Slack user
	pages   pages
	// decided remembers how recent confirmations ended, for a second POST
	// of the same one.
	decided decisions
	fields  *salesforce.FieldCache // what each Salesforce user may read, shared by every Client
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	var problems []string
	login, err := ParseLoginURL(cfg.LoginURL, cfg.AllowCustomLoginHost)
	if err != nil {
		problems = append(problems, err.Error())
	}
	orgs, err := ParseOrgIDs(strings.Join(cfg.AllowedOrgIDs, ","))
	if err != nil {
		problems = append(problems, "allowed orgs: "+err.Error())
	}
	cfg.AllowedOrgIDs = orgs
	switch cfg.Flow {
	case "":
		cfg.Flow = FlowWeb
	case FlowWeb, FlowDevice:
	default:
		problems = append(problems, fmt.Sprintf("flow %q: want %q or %q", cfg.Flow, FlowWeb, FlowDevice))
	}
	cb := &url.URL{} // the device flow needs no callback; Handler then serves only /healthz
	if cfg.Flow != FlowDevice || cfg.CallbackURL != "" {
		if cb, err = ParseCallbackURL(cfg.CallbackURL); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if cfg.ClientID == "" {
		problems = append(problems, "client id is empty")
	}
	if cfg.Store == nil || cfg.Notifier == nil {
		problems = append(problems, "store and notifier are required")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("auth: %s", strings.Join(problems, "; "))
	}
	return build(cfg, login, cb), nil
}

// build returns the Service of a checked cfg, with defaults applied. New
// and NewProbe share it, so that a probe asks exactly what the Service would.
func build(cfg Config, login, cb *url.URL) *Service {
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = 10 * time.Minute
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 20 * time.Second
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = salesforce.DefaultAPIVersion
	}
	s := &Service{
		cfg: cfg,
		// The configuration names one org today; a later one may name more.
		orgs: orgSet{list: []Org{{LoginURL: login, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret}}},
		// No OAuth call follows a redirect: a 307 or 308 would send the
		// client secret, a code verifier or a refresh token to another host.
		http:   salesforce.NoRedirects(cfg.HTTPClient),
		log:    cfg.Logger,
		now:    cfg.Now,
		after:  cfg.After,
		pages:  newPages(cb),
		fields: salesforce.NewFieldCache(salesforce.FieldCacheConfig{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.after == nil {
		s.after = time.After
	}
	return s
}

// Start creates a binding link for who and returns it. Only who may see the
// link: whoever uses it binds their Salesforce user to who's Slack user.
//
// In the web flow the link is the authorize URL of a pending link kept in
// the store, and binding waits for a confirmation page that names both
// users; each Start makes a new one. In the device flow Start asks
// Salesforce for a device code, returns the verification URL and the user
// code, and leaves one poller running for who, which binds once the code is
// approved and tells who through the Notifier either way. While who's code
// has at least a minute left, Start returns that same link again and asks
// Salesforce for nothing (who may be typing the code); after that it makes
// a new one and stops the old poller without a word. Concurrent Starts of
// one person share one code. The poller ends at the link's expiry, on
// Close (telling who, FailureInterrupted), or when replaced; it is not kept
// across a restart.
func (s *Service) Start(ctx context.Context, who Requester) (Link, error) {
	if s.cfg.Flow == FlowDevice {
		return s.startDevice(ctx, who)
	}
	if who.DisplayName == "" {
		who.DisplayName = s.cfg.Notifier.DisplayName(ctx, who.UserID)
	}
	org := s.orgs.signIn()
	verifier := oauth2.GenerateVerifier()
	now := s.now()
	p := store.Pending{
		TeamID:      who.TeamID,
		TeamName:    who.TeamName,
		UserID:      who.UserID,
		ChannelID:   who.ChannelID,
		DisplayName: who.DisplayName,
		Verifier:    verifier,
		Created:     now,
		Expires:     now.Add(s.cfg.LinkTTL),
	}
	state, err := s.cfg.Store.CreatePending(ctx, p)
	if err != nil {
		return Link{}, fmt.Errorf("create link: %w", storeFailed(err))
	}
	s.log.Info().Str("team", who.TeamID).Str("user", who.UserID).Time("expires", p.Expires).Msg("binding link created")
	return Link{URL: org.OAuth(s.cfg.CallbackURL).AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), Expires: p.Expires}, nil
}

// Account returns the Salesforce account who is linked to, without its
// tokens; ErrNotLinked when there is none, or an error matching
// ErrUnreadable when it is stored but cannot be opened. Such a record traps
// nobody: Start needs no binding, and the binding a confirmed link stores
// replaces it. A binding forcebind may no longer use is removed here, and
// who sent a fresh link, once: one made at a Salesforce no configured Org
// is (see orgSet.of), its token sent nowhere (Account then returns an
// error matching ErrLoginMoved), or one of an org Config.AllowedOrgIDs no
// longer lists, its grant revoked (ErrOrgNotAllowed); either is a
// *RelinkError. One made at another login host of the configured kind is
// refreshed there first (see fitSameKind). A store that cannot be used at
// all gives ErrStoreUnusable.
func (s *Service) Account(ctx context.Context, who Requester) (Account, error) {
	b, err := s.current(ctx, who)
	if err != nil {
		return Account{}, err
	}
	return accountOf(b), nil
}

// Client returns a Salesforce client that acts as who's Salesforce user,
// with a token source that refreshes through s, and the account it acts
// as. It fails as Account does. who is also whom to send a fresh link to
// should the grant end while the client is in use. The client is safe for
// concurrent use and meant for the life of one request.
func (s *Service) Client(ctx context.Context, who Requester) (*salesforce.Client, Account, error) {
	b, err := s.current(ctx, who)
	if err != nil {
		return nil, Account{}, err
	}
	sf, err := s.client(b, who)
	if err != nil {
		return nil, Account{}, err
	}
	return sf, accountOf(b), nil
}

// client is a Salesforce client acting as b's user; see Client.
func (s *Service) client(b store.Binding, who Requester) (*salesforce.Client, error) {
	cfg := salesforce.Config{
		InstanceURL: b.InstanceURL,
		APIVersion:  s.cfg.APIVersion,
		HTTPClient:  s.http,
		Tokens:      s.tokens(b, who),
		Observer:    s.cfg.APIObserver,
	}
	// The cache is keyed by the Salesforce user: a binding that does not
	// name one gets a client with a cache of its own.
	if b.OrgID != "" && b.SalesforceUserID != "" {
		cfg.Fields, cfg.OrgID, cfg.UserID = s.fields, b.OrgID, b.SalesforceUserID
	}
	return salesforce.New(cfg)
}

// current is who's binding, as Account describes it: one forcebind may
// still use, at the Org it belongs to.
func (s *Service) current(ctx context.Context, who Requester) (store.Binding, error) {
	b, err := s.binding(ctx, who.TeamID, who.UserID)
	if err != nil {
		return store.Binding{}, err
	}
	_, f, err := s.usable(ctx, b, who)
	switch {
	case errors.Is(err, ErrTransient):
		// The person linked again meanwhile, under this configuration.
		return s.binding(ctx, who.TeamID, who.UserID)
	case err != nil:
		return store.Binding{}, err
	case f == fitSameKind:
		// Refreshed at the configured Org before use: that records it as
		// b's login host with the instance it names, or finds the grant is
		// not known there. b's own host may only redirect by now (a My
		// Domain renamed), which no API call follows.
		if _, err := s.refresh(ctx, b.TeamID, b.UserID, b.AccessToken, who); err != nil {
			return store.Binding{}, err
		}
		return s.binding(ctx, who.TeamID, who.UserID)
	}
	return b, nil
}

// usable decides whether b may still be used, and returns the Org its
// grant is refreshed and revoked at, with how it fits. A binding forcebind
// may no longer use ends here, its owner sent a fresh link (see relink,
// whose error it returns): one made at a Salesforce no configured Org is
// (fitNone), its token sent nowhere, or one of an org Config.AllowedOrgIDs
// does not list, its grant revoked at its Org first. Command lookups and
// refreshes both ask it, so a configuration change reaches every binding
// the first time it is used.
func (s *Service) usable(ctx context.Context, b store.Binding, who Requester) (Org, fit, error) {
	log := s.log.With().Str("team", b.TeamID).Str("user", b.UserID).Logger()
	org, f := s.orgs.of(b)
	if f == fitNone {
		log.Warn().Str("login_host", hostOf(b.LoginURL)).Str("configured_host", s.orgs.hosts()).
			Msg("binding was made at a Salesforce login host SALESFORCE_LOGIN_URL no longer names; removing it without sending its token anywhere, and sending a fresh link")
		return Org{}, f, s.relink(ctx, b, who, RelinkLoginMoved)
	}
	if !s.orgAllowed(b.OrgID) {
		log.Warn().Str("sf_org", b.OrgID).
			Msg("binding is of a Salesforce org FORCEBIND_ALLOWED_ORG_IDS does not list; revoking its grant, removing it and sending a fresh link")
		// Revoked before it is forgotten: nothing would hold it after.
		if err := s.revokeAt(ctx, org, b.RefreshToken); err != nil {
			log.Warn().Err(err).Msg("revoke of a grant of an org no longer allowed failed; removing the binding anyway")
		}
		return Org{}, f, s.relink(ctx, b, who, RelinkOrgNotAllowed)
	}
	return org, f, nil
}

// binding is the stored binding, without the login host check:
// ErrNotLinked when there is none, ErrUnreadable when it cannot be opened.
func (s *Service) binding(ctx context.Context, teamID, userID string) (store.Binding, error) {
	b, err := s.cfg.Store.GetBinding(ctx, teamID, userID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Binding{}, ErrNotLinked
	case unreadable(err):
		return store.Binding{}, fmt.Errorf("%w: %w", ErrUnreadable, err)
	case err != nil:
		return store.Binding{}, storeFailed(err)
	}
	return b, nil
}

// unreadable reports whether err is the store's answer for a record that
// cannot be opened.
func unreadable(err error) bool {
	return errors.Is(err, store.ErrWrongKey) || errors.Is(err, store.ErrCorrupt)
}

// maxUnlinkRounds bounds how often Unlink revokes and retries when the
// binding keeps changing under it (a refresh rotating the token, a relink).
const maxUnlinkRounds = 3

// Unlink revokes who's refresh token at their Org and deletes the binding,
// whatever the revocation answered. It deletes only the grant it revoked:
// when a refresh or a relink stored a new one meanwhile, that one is
// revoked too, then deleted, up to maxUnlinkRounds times. A record that
// cannot be opened is deleted unrevoked (RevokeUnreadable), but only while
// it still cannot: a binding a confirmed link stored meanwhile is revoked
// and deleted like any other. It returns ErrNotLinked when there was no
// binding.
func (s *Service) Unlink(ctx context.Context, who Requester) (Unlinked, error) {
	teamID, userID := who.TeamID, who.UserID
	log := s.log.With().Str("team", teamID).Str("user", userID).Logger()
	var (
		u       = Unlinked{Revoked: true}
		removed *store.Binding // what the audit line names: the binding first read
	)
	for round := 1; ; round++ {
		b, err := s.binding(ctx, teamID, userID)
		switch {
		case errors.Is(err, ErrNotLinked) && removed == nil:
			return Unlinked{}, err
		case errors.Is(err, ErrNotLinked):
			s.audit("binding removed", *removed)
			return u, nil
		case errors.Is(err, ErrUnreadable):
			done, err := s.unlinkUnreadable(ctx, teamID, userID, err)
			if err != nil {
				return Unlinked{}, err
			}
			if done {
				if removed == nil {
					u.Account = accountOf(store.Binding{TeamID: teamID, UserID: userID})
				}
				u.Revoked, u.NotRevoked = false, RevokeUnreadable
				return u, nil
			}
		case err != nil:
			return Unlinked{}, err
		default:
			if removed == nil {
				removed, u.Account = &b, accountOf(b)
			}
			done, err := s.unlinkGrant(ctx, b, &u, log)
			if err != nil {
				return Unlinked{}, err
			}
			if done {
				s.audit("binding removed", *removed)
				return u, nil
			}
		}
		if round == maxUnlinkRounds {
			return Unlinked{}, fmt.Errorf("delete binding: it changed %d times while being revoked; try again", round)
		}
		// A refresh or a relink stored another grant since b was read:
		// that one is live at Salesforce, so it is revoked too before the
		// binding goes.
		log.Info().Msg("binding changed while it was being removed; revoking the new grant too")
	}
}

// unlinkGrant revokes b's grant and deletes b, only if its refresh token is
// still the one revoked, and records in u how the revocation went. done is
// false when the binding changed meanwhile: the caller reads it again.
func (s *Service) unlinkGrant(ctx context.Context, b store.Binding, u *Unlinked, log zerolog.Logger) (done bool, _ error) {
	switch err := s.revokeGrant(ctx, b); {
	case errors.Is(err, errLoginMoved):
		log.Warn().Str("login_host", hostOf(b.LoginURL)).Msg("binding made at a login host SALESFORCE_LOGIN_URL no longer names; deleting it without revoking, its token sent nowhere")
		u.Revoked, u.NotRevoked = false, RevokeLoginMoved
	case err != nil:
		log.Warn().Err(err).Msg("revoke failed; deleting the binding anyway")
		u.Revoked, u.NotRevoked = false, RevokeFailed
	}
	switch err := s.cfg.Store.DeleteBindingIf(ctx, b.TeamID, b.UserID, b.RefreshToken); {
	case err == nil, errors.Is(err, store.ErrNotFound):
		return true, nil
	case errors.Is(err, store.ErrConflict):
		return false, nil
	default:
		return false, fmt.Errorf("delete binding: %w", storeFailed(err))
	}
}

// unlinkUnreadable deletes a binding whose record cannot be opened, while
// it still cannot: done is false when it opens now (a confirmed link
// stored a good binding meanwhile, whose grant is live and must be revoked
// first). The record's token is unknown, so nothing can be revoked; the
// log names the key id (readErr does).
func (s *Service) unlinkUnreadable(ctx context.Context, teamID, userID string, readErr error) (done bool, _ error) {
	switch err := s.cfg.Store.DeleteBindingIfUnreadable(ctx, teamID, userID); {
	case errors.Is(err, store.ErrConflict):
		return false, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return false, fmt.Errorf("delete binding: %w", storeFailed(err))
	}
	s.log.Warn().Err(readErr).Str("team", teamID).Str("user", userID).
		Msg("binding record cannot be opened; deleted it without revoking its grant (the person is told to revoke it in Salesforce)")
	s.audit("binding removed: record unreadable", store.Binding{TeamID: teamID, UserID: userID})
	return true, nil
}

// revokeRetryWindow is how long after a confirmation expired Sweep keeps
// trying to revoke the tokens it held, when Salesforce cannot be reached.
const revokeRetryWindow = 24 * time.Hour

// sweepBudget bounds the time one Sweep spends revoking, by the Service's
// clock: each revocation may wait CallTimeout on a Salesforce that does
// not answer, and the links left over wait for the next Sweep.
const sweepBudget = 30 * time.Second

// Sweep removes expired links. A link that held tokens awaiting a
// confirmation has them revoked first, and is removed only once Salesforce
// confirmed, or answered that the token is not valid; when Salesforce
// cannot be reached the link stays for the next Sweep, until
// revokeRetryWindow after its expiry, when it is dropped with an error in
// the log. Revocations stop being started once sweepBudget has passed: the
// links not reached are left for the next Sweep. The revocations that
// failed are logged in one line per Sweep, not one per link. It returns
// how many links it removed. Run it every minute or so.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	links, err := s.cfg.Store.ListExpired(ctx)
	if err != nil {
		return 0, fmt.Errorf("sweep links: %w", err)
	}
	var (
		removed, deferred int
		failed            []error // revocations that failed, kept for the next Sweep
		errs              []error
	)
	start := s.now()
	for _, l := range links {
		switch {
		case l.Err != nil:
			// It cannot be opened, so its tokens (if any) are unknown.
			errs = append(errs, l.Err)
		case l.Pending.Binding == nil:
		case s.now().Sub(start) >= sweepBudget:
			deferred++
			continue
		default:
			if err := s.revokeHeld(ctx, l); err != nil {
				failed = append(failed, err)
				continue
			}
		}
		if err := s.cfg.Store.DeletePending(ctx, l.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if len(failed) > 0 {
		s.log.Warn().Err(failed[0]).Int("links", len(failed)).
			Msg("revoking the tokens of unconfirmed links failed; they are kept for the next sweep (the error is the first link's)")
	}
	if deferred > 0 {
		s.log.Info().Int("links", deferred).Dur("budget", sweepBudget).
			Msg("sweep spent its time revoking; the other expired links wait for the next one")
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("sweep links: %w", errors.Join(errs...))
	}
	return removed, nil
}

// revokeHeld revokes the tokens an expired link held for a confirmation.
// It returns nil when the link may go now: revoked, not valid at
// Salesforce any more, made at a login host no longer configured, or past
// revokeRetryWindow; otherwise the revocation's error, and the link stays.
func (s *Service) revokeHeld(ctx context.Context, l store.ExpiredLink) error {
	p := l.Pending
	log := s.log.With().Str("team", p.TeamID).Str("user", p.UserID).Logger()
	err := s.revokeGrant(ctx, *p.Binding)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errTokenInvalid):
		return nil // nothing live is left
	case errors.Is(err, errLoginMoved):
		log.Warn().Msg("unconfirmed link made at a login host SALESFORCE_LOGIN_URL no longer names; dropped without revoking")
		return nil
	case s.now().Sub(p.Expires) >= revokeRetryWindow:
		log.Error().Err(err).Time("expired", p.Expires).
			Msg("giving up revoking an unconfirmed link's token; it stays valid at Salesforce until it expires or is revoked there")
		return nil
	}
	return err
}

// Close stops the device-flow pollers (Start then returns ErrClosed in that
// flow) and waits, until ctx ends, for them and for refreshes still running:
// each may hold tokens Salesforce has already issued that are not yet
// stored. Each person whose device code was still waiting is told, through
// Notifier.LinkFailed with FailureInterrupted, within 5s each, all at once.
// Call it before closing the store.
func (s *Service) Close(ctx context.Context) error {
	s.pollers.close()
	if err := s.pollers.wait(ctx); err != nil {
		return fmt.Errorf("device links still finishing: %w", err)
	}
	if err := s.flights.wait(ctx); err != nil {
		return fmt.Errorf("refreshes still running: %w", err)
	}
	return nil
}

// Errors of revokeAt and revokeGrant, for callers that decide whether to
// try again.
var (
	// errTokenInvalid is returned when Salesforce answered 400: the token
	// is not valid (revoked or expired already), so nothing is left to
	// revoke and trying again cannot help.
	errTokenInvalid = errors.New("salesforce says the token is not valid")
	// errLoginMoved is returned by revokeGrant for a binding made at a
	// login host the configuration no longer names; nothing was sent.
	errLoginMoved = errors.New("binding made at a login host no longer configured")
)

// revokeGrant revokes b's refresh token (which revokes its access tokens
// too) at the Org b's grant belongs to, or returns errLoginMoved, sending
// nothing, when no configured Org is b's (see orgSet.of).
func (s *Service) revokeGrant(ctx context.Context, b store.Binding) error {
	org, f := s.orgs.of(b)
	if f == fitNone {
		return errLoginMoved
	}
	return s.revokeAt(ctx, org, b.RefreshToken)
}

// revokeAt revokes token at org, which issued it. The token travels in the
// POST body, never in a URL, so it cannot reach a log through an error
// message. A 400 answer (the token is not valid) matches errTokenInvalid.
func (s *Service) revokeAt(ctx context.Context, org Org, token string) error {
	if token == "" {
		return errors.New("revoke: no token")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, org.RevokeURL(), strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	defer drain(resp)
	switch {
	case resp.StatusCode == http.StatusBadRequest:
		return fmt.Errorf("revoke: Salesforce answered %s: %w", resp.Status, errTokenInvalid)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("revoke: Salesforce answered %s", resp.Status)
	}
	return nil
}

// revokeQuietly revokes token, of b's grant, that forcebind does not keep,
// at the Org b's grant belongs to (see orgSet.of; it sends nothing when
// none is), on its own deadline (the request that led here may be gone),
// logging a failure with what: a sign-in that was refused, cancelled or
// never confirmed, a grant a new one replaced, tokens a refresh gave that
// are not stored. Every token forcebind lets go of goes through it, so
// each goes back only to the Org that issued it. For tokens not yet in a
// binding, b names only the Slack user and the Org's login URL.
func (s *Service) revokeQuietly(b store.Binding, token, what string) {
	if token == "" {
		return
	}
	org, f := s.orgs.of(b)
	if f == fitNone {
		return
	}
	if err := s.revokeAt(context.Background(), org, token); err != nil {
		s.log.Warn().Err(err).Str("team", b.TeamID).Str("user", b.UserID).Msg("revoke of " + what + " failed")
	}
}

// hostOf is the host of a URL, for logs; "" when it does not parse.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// linkFailed tells who why their link ended without a binding, on its own
// deadline (the request or poller that got here may be gone), and reports
// the outcome.
func (s *Service) linkFailed(who Requester, flow Flow, why Failure) {
	s.linkFailedWithin(who, flow, why, commitTimeout)
}

// linkFailedWithin is linkFailed with the message bounded by timeout.
func (s *Service) linkFailedWithin(who Requester, flow Flow, why Failure, timeout time.Duration) {
	s.observeLink(flow, why.String())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.cfg.Notifier.LinkFailed(ctx, who, why); err != nil {
		s.log.Warn().Err(err).Str("team", who.TeamID).Str("user", who.UserID).Str("why", why.String()).Msg("link failure message not sent")
	}
}

// observeLink reports a link that ended, if anyone observes.
func (s *Service) observeLink(flow Flow, outcome string) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.LinkEnded(flow, outcome)
	}
}

// observeRefresh reports a refresh's outcome, if anyone observes.
func (s *Service) observeRefresh(outcome string) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Refreshed(outcome)
	}
}

// audit writes one line for a change of a binding: who, which Salesforce
// identity, never a token.
func (s *Service) audit(what string, b store.Binding) {
	s.log.Info().Str("audit", what).Str("team", b.TeamID).Str("user", b.UserID).
		Str("sf_org", b.OrgID).Str("sf_user", b.SalesforceUserID).Str("sf_username", b.Username).Msg(what)
}
