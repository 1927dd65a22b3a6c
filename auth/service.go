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
	PutBinding(ctx context.Context, b store.Binding) error
	DeleteBinding(ctx context.Context, teamID, userID string) error
	DeleteBindingIf(ctx context.Context, teamID, userID, refreshToken string) error
	UpdateTokens(ctx context.Context, teamID, userID, usedRefreshToken string, t store.Tokens) (store.Binding, error)
	CreatePending(ctx context.Context, p store.Pending) (string, error)
	RedeemPending(ctx context.Context, state string) (store.Pending, error)
	ListExpired(ctx context.Context) ([]store.ExpiredLink, error)
	DeletePending(ctx context.Context, id string) error
}

// Notifier is how auth reaches the person on the Slack side. The bot
// implements it; every message it sends goes only to that person.
type Notifier interface {
	// Linked tells the Slack user of b that their Salesforce identity is now
	// linked (a DM through chat.postMessage).
	Linked(ctx context.Context, b store.Binding) error
	// Relink sends who, privately, a fresh link after their binding ended
	// for why: Salesforce ended the grant (refresh answered invalid_grant),
	// or the binding was made at a Salesforce the configuration no longer
	// names. It is called once per ended binding.
	Relink(ctx context.Context, who Requester, link Link, why RelinkReason) error
	// DisplayName returns the name the confirmation page shows for the Slack
	// user (with their handle), or "" when Slack does not say. Start calls it
	// only when it makes a link for a Requester without one.
	DisplayName(ctx context.Context, userID string) string
	// Email returns the email address on the Slack user's profile (scope
	// users:read.email), or "" when the profile has none. It is asked only
	// when Config.RequireEmailMatch is set; an error means Slack could not
	// be asked, and nothing is bound.
	Email(ctx context.Context, userID string) (string, error)
	// LinkFailed tells who, privately, that a link they started ended without
	// a binding, and why. Device-flow links end this way on their own (denied,
	// expired) and when Close stops their poller (interrupted); either flow
	// when RequireEmailMatch refuses the sign-in.
	LinkFailed(ctx context.Context, who Requester, why Failure) error
}

// Failure is why a binding link ended without a binding.
type Failure int

const (
	// FailureEmailMismatch means the Salesforce user's email is not the Slack
	// profile's, or Salesforce has not verified it, so the sign-in was
	// revoked (Config.RequireEmailMatch).
	FailureEmailMismatch Failure = iota + 1
	// FailureDenied means the person chose Deny at Salesforce.
	FailureDenied
	// FailureExpired means the device code ran out before it was approved.
	FailureExpired
	// FailureError means Salesforce or the store failed; the log has why.
	FailureError
	// FailureNoSlackEmail means Slack gave no email address for the person
	// (Config.RequireEmailMatch), so nothing could be compared and the
	// sign-in was revoked. Usually the Slack app lacks the users:read.email
	// scope; the profile may also have no email.
	FailureNoSlackEmail
	// FailureInterrupted means forcebind shut down (Close) while a device
	// code was waiting to be approved; the code is of no use any more.
	FailureInterrupted
	// FailureOrgNotAllowed means the Salesforce user is in an org that
	// Config.AllowedOrgIDs does not list, so the sign-in was revoked.
	FailureOrgNotAllowed
)

// String names the failure for logs and metrics.
func (f Failure) String() string {
	switch f {
	case FailureEmailMismatch:
		return "email_mismatch"
	case FailureDenied:
		return "denied"
	case FailureExpired:
		return "expired"
	case FailureError:
		return "error"
	case FailureNoSlackEmail:
		return "no_slack_email"
	case FailureInterrupted:
		return "interrupted"
	case FailureOrgNotAllowed:
		return "org_not_allowed"
	}
	return "unknown"
}

// RelinkReason is why a binding ended and its owner was sent a fresh link.
type RelinkReason int

const (
	// RelinkGrantEnded means Salesforce ended the grant: a refresh answered
	// invalid_grant for a revoked or expired token, a deactivated user, and
	// the like.
	RelinkGrantEnded RelinkReason = iota + 1
	// RelinkLoginMoved means the binding was made at a Salesforce login
	// host that SALESFORCE_LOGIN_URL no longer names (the administrator
	// moved forcebind, from a sandbox to production say): the binding was
	// removed without its token being sent anywhere.
	RelinkLoginMoved
)

// String names the reason for logs.
func (r RelinkReason) String() string {
	switch r {
	case RelinkGrantEnded:
		return "grant_ended"
	case RelinkLoginMoved:
		return "login_moved"
	}
	return "unknown"
}

// Requester is the Slack person a link is made for, and where to reach them.
type Requester struct {
	TeamID      string
	TeamName    string
	UserID      string
	ChannelID   string // where they asked; a DM channel or a public one
	DisplayName string // "" means Start asks the Notifier
}

// Link is a binding link: the Salesforce authorize URL to send, privately, to
// the person it was made for, and when it stops working. In the device flow
// URL is Salesforce's verification page and UserCode the code to type there;
// UserCode is "" in the web flow.
type Link struct {
	URL      string
	UserCode string
	Expires  time.Time
}

// Errors of the token source and Unlink. Match them with errors.Is; the
// salesforce client passes them through.
var (
	// ErrRelinkRequired is returned when Salesforce ended the grant
	// (invalid_grant on refresh): the binding has been deleted and the person
	// was sent a fresh link.
	ErrRelinkRequired = errors.New("salesforce grant ended; the user must connect again")
	// ErrLoginMoved is returned when the binding was made at a Salesforce
	// login host the configuration no longer names (see Service.Tokens):
	// its token was sent nowhere, the binding has been deleted, and the
	// person was sent a fresh link. It matches ErrRelinkRequired too.
	ErrLoginMoved = fmt.Errorf("%w: forcebind now signs in at another Salesforce", ErrRelinkRequired)
	// ErrRestricted is returned when Salesforce refused a refresh because
	// of the user's login IP ranges or login hours. The grant is alive and
	// the binding is kept: it works again from an allowed address or in
	// allowed hours.
	ErrRestricted = errors.New("salesforce refused the session refresh: outside the user's login IP ranges or login hours")
	// ErrTimeout is returned when Salesforce did not answer a refresh in
	// time. The binding is kept; a refresh still running finishes on its
	// own, and its tokens serve the next request.
	ErrTimeout = errors.New("salesforce did not answer the session refresh in time")
	// ErrRefreshRejected is returned when Salesforce's answer to a refresh
	// failed forcebind's checks (its signature, instance or identity URL,
	// or it named another user). It was not used and the binding is kept;
	// the log says why, for the operator.
	ErrRefreshRejected = errors.New("salesforce's answer to the session refresh could not be verified")
	// ErrTransient is returned when a refresh failed for a reason that may pass
	// (a 5xx, a network error); the binding is kept.
	ErrTransient = errors.New("salesforce could not refresh the session right now")
	// ErrClientRejected is returned when Salesforce rejected forcebind's own
	// client credentials (invalid_client): an operator problem, not the user's.
	ErrClientRejected = errors.New("salesforce rejected forcebind's client credentials")
	// ErrNotLinked is returned when the Slack user has no binding.
	ErrNotLinked = errors.New("no Salesforce account is linked")
	// ErrUnreadable is returned, wrapping the store's error (which names
	// the key id), when the Slack user's binding is stored but cannot be
	// opened: it was sealed under a key the keyring lacks, or it is
	// damaged. Start and a confirmed link replace it; Unlink removes it.
	ErrUnreadable = errors.New("the stored Salesforce binding cannot be read")
	// ErrClosed is returned by Start in the device flow once Close has
	// been called: no new poller starts.
	ErrClosed = errors.New("auth service is closed")
)

// Service runs the binding flow and supplies tokens. It is safe for
// concurrent use; one Service serves the whole daemon.
type Service struct {
	cfg     Config
	login   *url.URL
	oauth   *oauth2.Config
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
		cfg:   cfg,
		login: login,
		oauth: &oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Endpoint:     endpoints(login),
			RedirectURL:  cfg.CallbackURL,
			Scopes:       defaultScopes,
		},
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
		return Link{}, fmt.Errorf("create link: %w", err)
	}
	s.log.Info().Str("team", who.TeamID).Str("user", who.UserID).Time("expires", p.Expires).Msg("binding link created")
	return Link{URL: s.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), Expires: p.Expires}, nil
}

// Binding returns the Slack user's binding, ErrNotLinked when there is
// none, or an error matching ErrUnreadable when it is stored but cannot be
// opened. Such a record traps nobody: Start needs no binding, and the
// binding a confirmed link stores replaces it. A binding made at a
// Salesforce the configuration no longer names (see loginFor) is removed
// here, its token sent nowhere, and its owner sent a fresh link, once:
// Binding then returns ErrLoginMoved.
func (s *Service) Binding(ctx context.Context, teamID, userID string) (store.Binding, error) {
	b, err := s.binding(ctx, teamID, userID)
	if err != nil {
		return store.Binding{}, err
	}
	if _, ok := s.loginFor(b); ok {
		return b, nil
	}
	s.log.Warn().Str("team", teamID).Str("user", userID).Str("login_host", hostOf(b.LoginURL)).Str("configured_host", s.login.Host).
		Msg("binding was made at a Salesforce login host SALESFORCE_LOGIN_URL no longer names; removing it without sending its token anywhere, and sending a fresh link")
	err = s.relink(ctx, b, Requester{}, RelinkLoginMoved)
	if errors.Is(err, ErrTransient) {
		// The person linked again meanwhile, under this configuration.
		return s.binding(ctx, teamID, userID)
	}
	return store.Binding{}, err
}

// binding is Binding without the login host check: the stored binding,
// ErrNotLinked, or ErrUnreadable.
func (s *Service) binding(ctx context.Context, teamID, userID string) (store.Binding, error) {
	b, err := s.cfg.Store.GetBinding(ctx, teamID, userID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Binding{}, ErrNotLinked
	case unreadable(err):
		return store.Binding{}, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	return b, err
}

// unreadable reports whether err is the store's answer for a record that
// cannot be opened.
func unreadable(err error) bool {
	return errors.Is(err, store.ErrWrongKey) || errors.Is(err, store.ErrCorrupt)
}

// Client returns a Salesforce client that acts as b's Salesforce user, with
// a token source that refreshes through s. who is whom to send a fresh link
// to should the grant have ended. The client is safe for concurrent use and
// meant for the life of one request.
func (s *Service) Client(b store.Binding, who Requester) (*salesforce.Client, error) {
	cfg := salesforce.Config{
		InstanceURL: b.InstanceURL,
		APIVersion:  s.cfg.APIVersion,
		HTTPClient:  s.http,
		Tokens:      s.Tokens(b, who),
		Observer:    s.cfg.APIObserver,
	}
	// The cache is keyed by the Salesforce user: a binding that does not
	// name one gets a client with a cache of its own.
	if b.OrgID != "" && b.SalesforceUserID != "" {
		cfg.Fields, cfg.OrgID, cfg.UserID = s.fields, b.OrgID, b.SalesforceUserID
	}
	return salesforce.New(cfg)
}

// Unlinked describes a removed binding.
type Unlinked struct {
	// Binding is the binding removed. Only TeamID and UserID are set when
	// its record could not be opened (NotRevoked is RevokeUnreadable).
	Binding store.Binding
	// Revoked reports whether Salesforce confirmed the revocation. The binding
	// is deleted either way.
	Revoked bool
	// NotRevoked says why Revoked is false; 0 when it is true.
	NotRevoked NotRevoked
}

// NotRevoked is why Unlink removed a binding without revoking its grant.
type NotRevoked int

const (
	// RevokeFailed means Salesforce could not be reached, or refused.
	RevokeFailed NotRevoked = iota + 1
	// RevokeLoginMoved means the binding was made at a Salesforce login
	// host the configuration no longer names, so its token was sent nowhere.
	RevokeLoginMoved
	// RevokeUnreadable means the binding's record could not be opened, so
	// forcebind did not know the token to revoke.
	RevokeUnreadable
)

// maxUnlinkRounds bounds how often Unlink revokes and retries when the
// binding keeps changing under it (a refresh rotating the token, a relink).
const maxUnlinkRounds = 3

// Unlink revokes the Slack user's refresh token at Salesforce and deletes the
// binding, whatever the revocation answered. It deletes only the grant it
// revoked: when a refresh or a relink stored a new one meanwhile, that one
// is revoked too, then deleted, up to maxUnlinkRounds times. A record that
// cannot be opened is deleted unrevoked (RevokeUnreadable). It returns
// ErrNotLinked when there was no binding.
func (s *Service) Unlink(ctx context.Context, teamID, userID string) (Unlinked, error) {
	b, err := s.binding(ctx, teamID, userID)
	if errors.Is(err, ErrUnreadable) {
		return s.unlinkUnreadable(ctx, teamID, userID, err)
	}
	if err != nil {
		return Unlinked{}, err
	}
	u := Unlinked{Binding: b, Revoked: true}
	log := s.log.With().Str("team", teamID).Str("user", userID).Logger()
	for round := 1; ; round++ {
		switch err := s.revokeGrant(ctx, b); {
		case errors.Is(err, errLoginMoved):
			log.Warn().Str("login_host", hostOf(b.LoginURL)).Msg("binding made at a login host SALESFORCE_LOGIN_URL no longer names; deleting it without revoking, its token sent nowhere")
			u.Revoked, u.NotRevoked = false, RevokeLoginMoved
		case err != nil:
			log.Warn().Err(err).Msg("revoke failed; deleting the binding anyway")
			u.Revoked, u.NotRevoked = false, RevokeFailed
		}
		err := s.cfg.Store.DeleteBindingIf(ctx, teamID, userID, b.RefreshToken)
		switch {
		case err == nil, errors.Is(err, store.ErrNotFound):
			s.audit("binding removed", u.Binding)
			return u, nil
		case !errors.Is(err, store.ErrConflict):
			return Unlinked{}, fmt.Errorf("delete binding: %w", err)
		case round == maxUnlinkRounds:
			return Unlinked{}, fmt.Errorf("delete binding: it changed %d times while being revoked; try again", round)
		}
		// A refresh or a relink stored another grant since b was read:
		// that one is live at Salesforce, so it is revoked too before the
		// binding goes.
		log.Info().Msg("binding changed while it was revoked; revoking the new grant too")
		b, err = s.binding(ctx, teamID, userID)
		switch {
		case errors.Is(err, ErrNotLinked):
			s.audit("binding removed", u.Binding)
			return u, nil
		case errors.Is(err, ErrUnreadable):
			return s.unlinkUnreadable(ctx, teamID, userID, err)
		case err != nil:
			return Unlinked{}, err
		}
	}
}

// unlinkUnreadable deletes a binding whose record cannot be opened. Its
// token is unknown, so nothing can be revoked; the log names the key id
// (readErr does).
func (s *Service) unlinkUnreadable(ctx context.Context, teamID, userID string, readErr error) (Unlinked, error) {
	s.log.Warn().Err(readErr).Str("team", teamID).Str("user", userID).
		Msg("binding record cannot be opened; deleting it without revoking its grant (the person is told to revoke it in Salesforce)")
	if err := s.cfg.Store.DeleteBinding(ctx, teamID, userID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return Unlinked{}, fmt.Errorf("delete binding: %w", err)
	}
	b := store.Binding{TeamID: teamID, UserID: userID}
	s.audit("binding removed: record unreadable", b)
	return Unlinked{Binding: b, NotRevoked: RevokeUnreadable}, nil
}

// revokeRetryWindow is how long after a confirmation expired Sweep keeps
// trying to revoke the tokens it held, when Salesforce cannot be reached.
const revokeRetryWindow = 24 * time.Hour

// Sweep removes expired links. A link that held tokens awaiting a
// confirmation has them revoked first, and is removed only once Salesforce
// confirmed, or answered that the token is not valid; when Salesforce
// cannot be reached the link stays for the next Sweep, until
// revokeRetryWindow after its expiry, when it is dropped with an error in
// the log. It returns how many links it removed. Run it every minute or so.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	links, err := s.cfg.Store.ListExpired(ctx)
	if err != nil {
		return 0, fmt.Errorf("sweep links: %w", err)
	}
	var (
		removed int
		errs    []error
	)
	for _, l := range links {
		if l.Err != nil {
			// It cannot be opened, so its tokens (if any) are unknown.
			errs = append(errs, l.Err)
		} else if b := l.Pending.Binding; b != nil && !s.revokeHeld(ctx, l) {
			continue
		}
		if err := s.cfg.Store.DeletePending(ctx, l.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("sweep links: %w", errors.Join(errs...))
	}
	return removed, nil
}

// revokeHeld revokes the tokens an expired link held for a confirmation and
// reports whether the link may go now: revoked, not valid at Salesforce
// any more, made at a login host no longer configured, or past
// revokeRetryWindow.
func (s *Service) revokeHeld(ctx context.Context, l store.ExpiredLink) bool {
	p := l.Pending
	log := s.log.With().Str("team", p.TeamID).Str("user", p.UserID).Logger()
	err := s.revokeGrant(ctx, *p.Binding)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errTokenInvalid):
		return true // nothing live is left
	case errors.Is(err, errLoginMoved):
		log.Warn().Msg("unconfirmed link made at a login host SALESFORCE_LOGIN_URL no longer names; dropped without revoking")
		return true
	case s.now().Sub(p.Expires) >= revokeRetryWindow:
		log.Error().Err(err).Time("expired", p.Expires).
			Msg("giving up revoking an unconfirmed link's token; it stays valid at Salesforce until it expires or is revoked there")
		return true
	}
	log.Warn().Err(err).Msg("revoke of an unconfirmed link's token failed; kept for the next sweep")
	return false
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

// revoke revokes token at the configured login host: for tokens the
// current configuration has just obtained.
func (s *Service) revoke(ctx context.Context, token string) error {
	return s.revokeAt(ctx, s.login, token)
}

// revokeGrant revokes b's refresh token (which revokes its access tokens
// too) at b's own login host, or returns errLoginMoved, sending nothing,
// when the configuration no longer names it (see loginFor).
func (s *Service) revokeGrant(ctx context.Context, b store.Binding) error {
	login, ok := s.loginFor(b)
	if !ok {
		return errLoginMoved
	}
	return s.revokeAt(ctx, login, b.RefreshToken)
}

// revokeAt revokes token at login. The token travels in the POST body,
// never in a URL, so it cannot reach a log through an error message. A 400
// answer (the token is not valid) matches errTokenInvalid.
func (s *Service) revokeAt(ctx context.Context, login *url.URL, token string) error {
	if token == "" {
		return errors.New("revoke: no token")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	endpoint := strings.TrimSuffix(login.String(), "/") + "/services/oauth2/revoke"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(url.Values{"token": {token}}.Encode()))
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

// revokeGrantQuietly revokes the grant of a binding forcebind no longer
// keeps, on its own deadline (the request that led here may be gone),
// logging a failure. It sends nothing for a binding made at a login host
// no longer configured.
func (s *Service) revokeGrantQuietly(b store.Binding) {
	if b.RefreshToken == "" {
		return
	}
	if err := s.revokeGrant(context.Background(), b); err != nil {
		s.log.Warn().Err(err).Str("team", b.TeamID).Str("user", b.UserID).Msg("revoke of a replaced grant failed")
	}
}

// loginFor returns the login host at which b's grant is refreshed and
// revoked, and false when the configuration no longer names b's Salesforce;
// then b's tokens are sent nowhere. The rule: b's own login host (recorded
// at bind time) is used while it is SALESFORCE_LOGIN_URL's origin. When it
// is not, b still counts as the configured Salesforce's if
// SALESFORCE_LOGIN_URL is b's own instance, the org's My Domain that
// Salesforce named in its last token answer (the administrator moved from
// login.salesforce.com to the org's My Domain, or updated it after a My
// Domain rename that a refresh had already reported), and the configured
// host is used. Anything else (a sandbox binding after a move to
// production, another org's My Domain) is another Salesforce. A binding
// without a recorded login host (none is written so) counts as made at the
// configured one.
func (s *Service) loginFor(b store.Binding) (*url.URL, bool) {
	if b.LoginURL == "" {
		return s.login, true
	}
	if own, err := url.Parse(b.LoginURL); err == nil && own.Host != "" && sameOrigin(own, s.login) {
		return s.login, true
	}
	if inst, err := url.Parse(b.InstanceURL); err == nil && inst.Host != "" && sameOrigin(inst, s.login) {
		return s.login, true
	}
	return nil, false
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
