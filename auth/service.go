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

// Store is what auth needs of the binding store. *store.DB implements it.
type Store interface {
	GetBinding(ctx context.Context, teamID, userID string) (store.Binding, error)
	PutBinding(ctx context.Context, b store.Binding) error
	DeleteBinding(ctx context.Context, teamID, userID string) error
	DeleteBindingIf(ctx context.Context, teamID, userID, refreshToken string) error
	UpdateTokens(ctx context.Context, teamID, userID, usedRefreshToken string, t store.Tokens) (store.Binding, error)
	CreatePending(ctx context.Context, p store.Pending) (string, error)
	RedeemPending(ctx context.Context, state string) (store.Pending, error)
	SweepExpired(ctx context.Context) ([]store.Pending, error)
}

// Notifier is how auth reaches the person on the Slack side. The bot
// implements it; every message it sends goes only to that person.
type Notifier interface {
	// Linked tells the Slack user of b that their Salesforce identity is now
	// linked (a DM through chat.postMessage).
	Linked(ctx context.Context, b store.Binding) error
	// Relink sends who, privately, a fresh link after their Salesforce grant
	// ended (refresh answered invalid_grant). It is called once per ended grant.
	Relink(ctx context.Context, who Requester, link Link) error
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
	// ErrTransient is returned when a refresh failed for a reason that may pass
	// (a 5xx, a timeout, a network error); the binding is kept.
	ErrTransient = errors.New("salesforce could not refresh the session right now")
	// ErrClientRejected is returned when Salesforce rejected forcebind's own
	// client credentials (invalid_client): an operator problem, not the user's.
	ErrClientRejected = errors.New("salesforce rejected forcebind's client credentials")
	// ErrNotLinked is returned when the Slack user has no binding.
	ErrNotLinked = errors.New("no Salesforce account is linked")
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

// Binding returns the Slack user's binding, or ErrNotLinked.
func (s *Service) Binding(ctx context.Context, teamID, userID string) (store.Binding, error) {
	b, err := s.cfg.Store.GetBinding(ctx, teamID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Binding{}, ErrNotLinked
	}
	return b, err
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
	Binding store.Binding
	// Revoked reports whether Salesforce confirmed the revocation. The binding
	// is deleted either way.
	Revoked bool
}

// Unlink revokes the Slack user's refresh token at Salesforce and deletes the
// binding, whatever the revocation answered. It returns ErrNotLinked when
// there was no binding.
func (s *Service) Unlink(ctx context.Context, teamID, userID string) (Unlinked, error) {
	b, err := s.Binding(ctx, teamID, userID)
	if err != nil {
		return Unlinked{}, err
	}
	rerr := s.revoke(ctx, b.RefreshToken)
	if rerr != nil {
		s.log.Warn().Err(rerr).Str("team", teamID).Str("user", userID).Msg("revoke failed; deleting the binding anyway")
	}
	if err := s.cfg.Store.DeleteBinding(ctx, teamID, userID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return Unlinked{}, fmt.Errorf("delete binding: %w", err)
	}
	s.audit("binding removed", b)
	return Unlinked{Binding: b, Revoked: rerr == nil}, nil
}

// Sweep deletes expired links and revokes the tokens of any that had reached
// the confirmation page but were never confirmed. Run it every minute or so.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	gone, err := s.cfg.Store.SweepExpired(ctx)
	if err != nil {
		err = fmt.Errorf("sweep links: %w", err) // what was removed is still revoked below
	}
	for _, p := range gone {
		if p.Binding != nil {
			if err := s.revoke(ctx, p.Binding.RefreshToken); err != nil {
				s.log.Warn().Err(err).Str("team", p.TeamID).Str("user", p.UserID).Msg("revoke of an unconfirmed link's token failed")
			}
		}
	}
	return len(gone), err
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

// revoke revokes token (a refresh token revokes its access tokens too). The
// token travels in the POST body, never in a URL, so it cannot reach a log
// through an error message.
func (s *Service) revoke(ctx context.Context, token string) error {
	if token == "" {
		return errors.New("revoke: no token")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	endpoint := strings.TrimSuffix(s.login.String(), "/") + "/services/oauth2/revoke"
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
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revoke: Salesforce answered %s", resp.Status)
	}
	return nil
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
