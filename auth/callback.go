package auth

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/store"
)

// CallbackPath is the path of the callback route: a callback URL (and the
// connected app's) ends in it.
const CallbackPath = "/oauth/callback"

// Handler returns the callback listener's routes: GET CallbackPath,
// POST /oauth/confirm and GET /healthz. Every answer carries no-store,
// no-referrer and a strict content security policy; a request whose Host is
// not the callback URL's gets 421. Safe for concurrent use. Serve it over
// TLS with Certificate.TLSConfig, or behind a proxy that terminates TLS.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CallbackPath, s.handleCallback)
	mux.HandleFunc("POST /oauth/confirm", s.handleConfirm)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	return s.pages.secure(mux)
}

// callback is a checked callback query.
type callback struct {
	state, code     string
	errCode, errMsg string
}

// errBadCallback is returned for a callback query forcebind did not make.
var errBadCallback = errors.New("malformed callback")

// parseCallback checks the query Salesforce redirected the browser with:
// exactly one state, and either one code or one error. Each value is bounded
// and a repeated parameter is refused, so nothing odd reaches the store.
func parseCallback(q url.Values) (callback, error) {
	one := func(k string, max int) (string, error) {
		v := q[k]
		switch {
		case len(v) == 0:
			return "", nil
		case len(v) > 1:
			return "", fmt.Errorf("%w: repeated %s", errBadCallback, k)
		case len(v[0]) > max:
			return "", fmt.Errorf("%w: %s too long", errBadCallback, k)
		}
		return v[0], nil
	}
	var c callback
	var err error
	if c.state, err = one("state", 128); err != nil {
		return callback{}, err
	}
	if c.code, err = one("code", 2048); err != nil {
		return callback{}, err
	}
	if c.errCode, err = one("error", 64); err != nil {
		return callback{}, err
	}
	if c.errMsg, err = one("error_description", 1024); err != nil {
		return callback{}, err
	}
	switch {
	case c.state == "" || !isBase64URL(c.state):
		return callback{}, fmt.Errorf("%w: missing or malformed state", errBadCallback)
	case (c.code == "") == (c.errCode == ""):
		return callback{}, fmt.Errorf("%w: want either code or error", errBadCallback)
	}
	return c, nil
}

func isBase64URL(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (s *Service) handleCallback(w http.ResponseWriter, r *http.Request) {
	s.pages.show(w, s.callback(r.Context(), r.URL.Query()))
}

// callbackFailure is a callback that ends without a confirmation page. What
// the person is shown (page) is kept apart from what is logged (msg and
// err, at level, on log), as wtf's Error keeps its Message apart from the
// error: callback logs and observes it in one place.
type callbackFailure struct {
	page  view
	log   zerolog.Logger // with the person's team and user once the link is known
	level zerolog.Level
	msg   string
	err   error // logged, never shown
	// ended is how the redeemed link ended, for Observer.LinkEnded; 0
	// before a link was redeemed.
	ended Failure
}

// callback runs the callback for query q and returns the page to show: the
// confirmation page when the sign-in may be bound, otherwise why not, once
// logged and observed.
func (s *Service) callback(ctx context.Context, q url.Values) view {
	page, f := s.signIn(ctx, q)
	if f == nil {
		return page
	}
	f.log.WithLevel(f.level).Err(f.err).Msg(f.msg)
	if f.ended != 0 {
		s.observeLink(FlowWeb, f.ended.String())
	}
	return f.page
}

// signIn is callback's work: it redeems the link, exchanges the code and
// holds the tokens for confirmation. Once the link is redeemed it runs on
// even if the browser leaves, bounded by CallTimeout (and commitTimeout for
// the store): Salesforce may have issued tokens by then, and they must end
// up held for confirmation (which Sweep revokes if it never comes) or
// revoked, never unrecorded.
func (s *Service) signIn(ctx context.Context, q url.Values) (view, *callbackFailure) {
	c, err := parseCallback(q)
	if err != nil {
		return view{}, &callbackFailure{log: s.log, level: zerolog.InfoLevel, msg: "callback refused", err: err,
			page: problemPage(http.StatusBadRequest, "This link is not valid", "Ask @forcebind for a new one: send it “connect”.")}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CallTimeout)
	defer cancel()
	p, err := s.cfg.Store.RedeemPending(ctx, c.state)
	if p.Binding != nil {
		// A confirmation token used as a state: it is spent now, so are its tokens.
		s.revokeQuietly(*p.Binding, p.Binding.RefreshToken, "an unused token")
	}
	switch {
	case errors.Is(err, store.ErrExpired):
		return view{}, &callbackFailure{log: s.log, level: zerolog.InfoLevel, msg: "callback with an expired link",
			page: problemPage(http.StatusGone, "This link has expired", "Links work for a few minutes and only once. Ask @forcebind for a new one: send it “connect”.")}
	case errors.Is(err, store.ErrNotFound) || (err == nil && p.Binding != nil):
		return view{}, &callbackFailure{log: s.log, level: zerolog.InfoLevel, msg: "callback with an unknown or used link",
			page: problemPage(http.StatusBadRequest, "This link is not valid or was already used", "Links work only once. Ask @forcebind for a new one: send it “connect”.")}
	case err != nil:
		return view{}, &callbackFailure{log: s.log, level: zerolog.ErrorLevel, msg: "redeem link", err: err,
			page: problemPage(http.StatusInternalServerError, "Something went wrong", "forcebind could not read its store. Try again in a minute.")}
	}
	log := s.log.With().Str("team", p.TeamID).Str("user", p.UserID).Logger()
	if c.errCode != "" {
		e := signInErrorOf(c.errCode)
		// The description is the query string's, which anyone can write:
		// it goes to the log, bounded and made printable, never to the page.
		log = log.With().Str("error_code", printable(c.errCode, 64)).Str("error_description", printable(c.errMsg, 300)).Logger()
		return view{}, &callbackFailure{log: log, level: zerolog.InfoLevel, msg: "Salesforce sign-in not completed", ended: e.outcome,
			page: e.page(c.errCode)}
	}
	b, id, err := s.exchange(ctx, c.code, p)
	if err != nil {
		return view{}, &callbackFailure{log: log, level: zerolog.WarnLevel, msg: "code exchange failed; nothing stored", err: err, ended: FailureError,
			page: problemPage(http.StatusBadGateway, "Salesforce did not complete the sign-in",
				"Nothing was linked. Ask @forcebind for a new link and try again; if it keeps failing, tell your Salesforce administrator.")}
	}
	if why := s.admit(ctx, b, id, requesterOf(p), FlowWeb); why != 0 {
		return refusedPage(why, b, id), nil // admit has logged, observed and revoked
	}
	// The tokens wait, sealed, for the person's decision, and expire with the
	// link, but leave at least confirmWindow to read the page: a slow login
	// (MFA) can end near the link's expiry.
	confirmP := p
	confirmP.Verifier = ""
	confirmP.Binding = &b
	confirmP.Created = s.now()
	confirmP.Expires = later(p.Expires, confirmP.Created.Add(confirmWindow))
	sctx, cancelStore := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancelStore()
	token, err := s.cfg.Store.CreatePending(sctx, confirmP)
	if err != nil {
		s.revokeQuietly(b, b.RefreshToken, "an unused token")
		return view{}, &callbackFailure{log: log, level: zerolog.ErrorLevel, msg: "hold tokens for confirmation", err: err, ended: FailureError,
			page: problemPage(http.StatusInternalServerError, "Something went wrong", "forcebind could not save the sign-in. Ask @forcebind for a new link.")}
	}
	log.Info().Str("sf_org", b.OrgID).Str("sf_user", b.SalesforceUserID).Msg("awaiting confirmation")
	return confirmPage(confirmView{
		Token:         token,
		SFUsername:    b.Username,
		SFDisplayName: id.DisplayName,
		SFOrg:         b.OrgID,
		SlackUser:     cmp.Or(p.DisplayName, p.UserID),
		SlackUserID:   p.UserID,
		SlackTeam:     cmp.Or(p.TeamName, p.TeamID),
		Expires:       confirmP.Expires,
	}), nil
}

// refusedPage is the page for a sign-in that admit refused, and revoked.
func refusedPage(why Failure, b store.Binding, id salesforce.Identity) view {
	switch why {
	case FailureOrgNotAllowed:
		return problemPage(http.StatusForbidden, "This Salesforce org is not one forcebind links",
			"forcebind here links only Salesforce users of the orgs its administrator chose. Salesforce user "+
				b.Username+" is in org "+b.OrgID+", which is not one of them, so nothing was linked and the sign-in "+
				"was revoked at Salesforce. If you signed in to the wrong Salesforce (a sandbox, or another company's), "+
				"sign out there, then ask @forcebind for a new link and sign in to your company's org.")
	case FailureNoSlackEmail:
		return problemPage(http.StatusForbidden, "Your Slack email address could not be read",
			"forcebind links a Salesforce user only when its email address is the one on your Slack profile, "+
				"but it could not read the email address on your Slack profile, so nothing was linked "+
				"and the sign-in was revoked at Salesforce. Tell whoever runs forcebind.")
	case FailureEmailMismatch:
		if !id.EmailVerified { // admit checks this before comparing
			return problemPage(http.StatusForbidden, "Your Salesforce email address is not verified",
				"forcebind links a Salesforce user only when Salesforce has verified its email address. Salesforce user "+
					b.Username+"'s is not verified, so nothing was linked and the sign-in was revoked at Salesforce. "+
					"Verify it in Salesforce (or ask your Salesforce administrator to), then ask @forcebind for a new link.")
		}
		return problemPage(http.StatusForbidden, "Your email addresses do not match",
			"forcebind links a Salesforce user only when its email address is the one on your Slack profile. Salesforce user "+
				b.Username+" has another one, so nothing was linked and the sign-in was revoked at Salesforce. "+
				"Sign in to Salesforce as yourself, then ask @forcebind for a new link.")
	}
	return problemPage(http.StatusBadGateway, "Your email address could not be checked",
		"forcebind could not read the email address on your Slack profile to compare it with Salesforce's, so nothing was linked "+
			"and the sign-in was revoked at Salesforce. Ask @forcebind for a new link in a minute.")
}

// signInError is what the person is told when Salesforce sends the browser
// back with an OAuth error code instead of a code.
type signInError struct {
	status      int
	title, text string
	outcome     Failure // for Observer.LinkEnded
	showCode    bool    // the page names the code: it is one of signInErrors'
}

// page is the page for e; code is shown only for a known one, so a crafted
// callback URL cannot put its words on forcebind's page.
func (e signInError) page(code string) view {
	text := e.text
	if e.showCode {
		text += " (Salesforce said " + code + ".)"
	}
	return problemPage(e.status, e.title, text)
}

// signInErrors are the error codes Salesforce's authorize endpoint sends
// back to the callback (RFC 6749 section 4.1.2.1 and Salesforce's own), each
// with fixed words: error_description is never shown.
var signInErrors = func() map[string]signInError {
	denied := signInError{http.StatusOK, "You did not allow access",
		"Nothing was linked. To connect later, ask @forcebind for a new link.", FailureDenied, false}
	setup := signInError{http.StatusBadRequest, "Salesforce refused forcebind's sign-in request",
		"Salesforce says forcebind's connected app is not set up for this sign-in, so nothing was linked. " +
			"Tell whoever runs forcebind: 'forcebind doctor' checks the connected app.", FailureError, true}
	blocked := signInError{http.StatusForbidden, "Your Salesforce administrator has not allowed forcebind",
		"Salesforce did not let your user sign in to forcebind's connected app, so nothing was linked. Ask your Salesforce " +
			"administrator to allow it for your profile or permission set, then ask @forcebind for a new link.", FailureError, true}
	inactive := signInError{http.StatusForbidden, "Salesforce refused the sign-in",
		"Salesforce says this user or its org is inactive or locked, so nothing was linked. Ask your Salesforce administrator.",
		FailureError, true}
	transient := signInError{http.StatusServiceUnavailable, "Salesforce could not complete the sign-in",
		"Salesforce had a problem just now, so nothing was linked. Ask @forcebind for a new link and try again in a few minutes.",
		FailureError, true}
	return map[string]signInError{
		"access_denied":                denied,
		"invalid_request":              setup,
		"invalid_scope":                setup,
		"unsupported_response_type":    setup,
		"unauthorized_client":          setup,
		"invalid_client":               setup,
		"invalid_client_id":            setup,
		"redirect_uri_missing":         setup,
		"redirect_uri_mismatch":        setup,
		"immediate_unsuccessful":       setup,
		"OAUTH_EC_APP_NOT_FOUND":       setup,
		"OAUTH_APP_BLOCKED":            blocked,
		"OAUTH_APP_ACCESS_DENIED":      blocked,
		"OAUTH_APPROVAL_ERROR_GENERIC": blocked,
		"inactive_user":                inactive,
		"inactive_org":                 inactive,
		"server_error":                 transient,
		"temporarily_unavailable":      transient,
		"rate_limit_exceeded":          transient,
	}
}()

// signInErrorOf returns what to tell the person for an OAuth error code.
func signInErrorOf(code string) signInError {
	if e, ok := signInErrors[code]; ok {
		return e
	}
	return signInError{http.StatusBadRequest, "Salesforce did not complete the sign-in",
		"Nothing was linked; ask @forcebind for a new link. If it keeps failing, tell whoever runs forcebind.", FailureError, false}
}

// printable returns s fit for a log line: at most max runes (then "…"),
// with control and other unprintable characters, and invalid UTF-8, each
// replaced by "?".
func printable(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

func (s *Service) handleConfirm(w http.ResponseWriter, r *http.Request) {
	if !s.pages.sameOriginPost(r) {
		s.pages.problem(w, http.StatusForbidden, "Request refused", "This form can only be sent from forcebind's own page.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		s.pages.problem(w, http.StatusBadRequest, "Request refused", "The form could not be read.")
		return
	}
	token, decision := r.PostForm.Get("token"), r.PostForm.Get("decision")
	if token == "" || len(token) > 128 || !isBase64URL(token) || (decision != "confirm" && decision != "cancel") {
		s.pages.problem(w, http.StatusBadRequest, "Request refused", "The form is incomplete. Ask @forcebind for a new link.")
		return
	}
	key := sha256.Sum256([]byte(token))
	d, first := s.decided.begin(key, s.now())
	if !first {
		// A double-click, a reload, a second tab: show how the first ended.
		select {
		case <-d.done:
			s.log.Info().Msg("confirmation sent again; showing how it ended")
			s.pages.show(w, d.page)
		case <-r.Context().Done(): // the browser left
		}
		return
	}
	// The one-time confirmation is spent from here: what follows runs to its
	// end whatever the browser does (a closed tab cancels the request), on
	// its own deadline, as the callback does.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), commitTimeout)
	defer cancel()
	var page view
	defer func() {
		if page.name == "" { // decide panicked: the waiting POSTs are told something
			s.decided.finish(key, d, problemPage(http.StatusInternalServerError, "Something went wrong", "Ask @forcebind for a new link."), false, s.now())
		}
	}()
	page, keep := s.decide(ctx, token, decision)
	s.decided.finish(key, d, page, keep, s.now())
	s.pages.show(w, page)
}

// decide redeems the confirmation token and carries out the person's
// decision: bind, or cancel and revoke. It returns the page to show, and
// keep, true when the token was a confirmation that is now spent, so that
// its page may be shown to a second POST of it. An unknown token is not
// kept: made-up tokens must not crowd out real ones.
func (s *Service) decide(ctx context.Context, token, decision string) (page view, keep bool) {
	p, err := s.cfg.Store.RedeemPending(ctx, token)
	switch {
	case errors.Is(err, store.ErrExpired):
		if p.Binding != nil {
			s.revokeQuietly(*p.Binding, p.Binding.RefreshToken, "an unused token") // the store hands back what expired
		}
		return problemPage(http.StatusGone, "This confirmation has expired", "Nothing was linked. Ask @forcebind for a new link."), true
	case errors.Is(err, store.ErrNotFound) || (err == nil && p.Binding == nil):
		return problemPage(http.StatusBadRequest, "This confirmation is not valid or was already used", "Ask @forcebind for a new link."), false
	case err != nil:
		s.log.Error().Err(err).Msg("redeem confirmation")
		return problemPage(http.StatusInternalServerError, "Something went wrong", "forcebind could not read its store. Try again in a minute."), false
	}
	b := *p.Binding
	log := s.log.With().Str("team", b.TeamID).Str("user", b.UserID).Logger()
	if decision == "cancel" {
		s.revokeQuietly(b, b.RefreshToken, "an unused token")
		log.Info().Msg("binding cancelled by the user")
		return problemPage(http.StatusOK, "Cancelled", "Nothing was linked, and the sign-in was revoked at Salesforce."), true
	}
	if err := s.bind(ctx, b, FlowWeb); err != nil {
		log.Error().Err(err).Msg("store binding")
		s.observeLink(FlowWeb, FailureError.String())
		return problemPage(http.StatusInternalServerError, "Something went wrong", "forcebind could not save the link. Ask @forcebind for a new link."), true
	}
	return donePage(doneView{SFUsername: b.Username, SlackUser: cmp.Or(p.DisplayName, p.UserID), SlackTeam: cmp.Or(p.TeamName, p.TeamID)}), true
}

// decisions remembers, for decisionTTL, how each recent confirmation ended,
// by the SHA-256 of its token (never the token itself), so that a second
// POST of one (a double-click on Confirm, a reload) waits for the first and
// shows its page instead of "already used". It keeps at most maxDecisions
// ended ones, dropping the oldest first. Safe for concurrent use; the zero
// value is ready.
type decisions struct {
	mu    sync.Mutex
	byKey map[[sha256.Size]byte]*decided
}

// decided is one confirmation's decision, running or ended.
type decided struct {
	done  chan struct{} // closed once page is set
	page  view
	ended time.Time // when it ended, if it was kept
}

const (
	decisionTTL  = 10 * time.Minute
	maxDecisions = 1024
)

// begin returns key's decision and false when one is running or was kept
// less than decisionTTL before now; wait on its done for its page.
// Otherwise it returns a new running one and true: the caller decides, and
// must call finish.
func (ds *decisions) begin(key [sha256.Size]byte, now time.Time) (*decided, bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if d, ok := ds.byKey[key]; ok && (d.ended.IsZero() || now.Sub(d.ended) < decisionTTL) {
		return d, false
	}
	if ds.byKey == nil {
		ds.byKey = make(map[[sha256.Size]byte]*decided)
	}
	d := &decided{done: make(chan struct{})}
	ds.byKey[key] = d
	return d, true
}

// finish ends d, key's running decision, with page, and wakes whoever
// waits for it. A kept decision is remembered; any other is forgotten.
func (ds *decisions) finish(key [sha256.Size]byte, d *decided, page view, keep bool, now time.Time) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	d.page = page
	close(d.done)
	if !keep {
		delete(ds.byKey, key)
		return
	}
	d.ended = now
	ds.prune(now)
}

// prune drops the ended decisions older than decisionTTL, then the oldest
// ones while more than maxDecisions are kept. Running ones stay: each has
// a request waiting on it.
func (ds *decisions) prune(now time.Time) {
	ended := 0
	for k, d := range ds.byKey {
		switch {
		case d.ended.IsZero():
		case now.Sub(d.ended) >= decisionTTL:
			delete(ds.byKey, k)
		default:
			ended++
		}
	}
	for ; ended > maxDecisions; ended-- {
		var oldest [sha256.Size]byte
		var at time.Time
		for k, d := range ds.byKey {
			if !d.ended.IsZero() && (at.IsZero() || d.ended.Before(at)) {
				oldest, at = k, d.ended
			}
		}
		delete(ds.byKey, oldest)
	}
}

// bind stores b, a sign-in the person has agreed to, as their binding: the
// last step of both flows. The binding it replaces, read in the same write,
// has its grant revoked: a refresh that rotated it a moment before is the
// grant revoked, never one left live unrecorded. It writes the audit line,
// reports the link as bound and tells the person. If the store fails it
// revokes b's grant and returns the error; the caller logs it and tells
// the person.
func (s *Service) bind(ctx context.Context, b store.Binding, flow Flow) error {
	b.LinkedAt = s.now().UTC()
	old, err := s.cfg.Store.ReplaceBinding(ctx, b)
	if err != nil {
		s.revokeQuietly(b, b.RefreshToken, "an unused token")
		return fmt.Errorf("store binding: %w", err)
	}
	switch {
	case !old.Found:
		s.audit("binding created", b)
	case old.Err != nil:
		s.log.Warn().Err(old.Err).Str("team", b.TeamID).Str("user", b.UserID).
			Msg("the binding replaced could not be opened, so its grant could not be revoked")
		s.audit("binding relinked", b)
	default:
		s.audit("binding relinked", b)
		if old.Binding.RefreshToken != b.RefreshToken {
			s.revokeQuietly(old.Binding, old.Binding.RefreshToken, "a replaced grant") // no longer used by anyone
		}
	}
	s.observeLink(flow, "bound")
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := s.cfg.Notifier.Linked(nctx, accountOf(b)); err != nil {
		s.log.Warn().Err(err).Str("team", b.TeamID).Str("user", b.UserID).Msg("confirmation DM failed")
	}
	return nil
}

// admit decides whether a fresh sign-in of who may be bound, in either
// flow, before anything is stored. It returns 0 when b may be bound.
// Otherwise it revokes b's grant, tells who through the Notifier, reports
// the outcome, and returns why (see refusal).
func (s *Service) admit(ctx context.Context, b store.Binding, id salesforce.Identity, who Requester, flow Flow) Failure {
	why := s.refusal(ctx, b, id, who)
	if why == 0 {
		return 0
	}
	s.revokeQuietly(b, b.RefreshToken, "an unused token")
	s.linkFailed(who, flow, why)
	return why
}

// refusal is why b may not be bound for who, or 0, checked in this order:
// FailureOrgNotAllowed when Config.AllowedOrgIDs does not list b's org;
// then, under Config.RequireEmailMatch, FailureError when Slack could not
// be asked, FailureNoSlackEmail, then FailureEmailMismatch for an
// unverified Salesforce email or a different one (see sameEmail).
func (s *Service) refusal(ctx context.Context, b store.Binding, id salesforce.Identity, who Requester) Failure {
	log := s.log.With().Str("team", who.TeamID).Str("user", who.UserID).Str("sf_username", b.Username).Logger()
	if !s.orgAllowed(b.OrgID) {
		log.Warn().Str("sf_org", b.OrgID).Msg("Salesforce org not in FORCEBIND_ALLOWED_ORG_IDS; nothing bound, sign-in revoked")
		return FailureOrgNotAllowed
	}
	if !s.cfg.RequireEmailMatch {
		return 0
	}
	slackEmail, err := s.cfg.Notifier.Email(ctx, who.UserID)
	switch {
	case err != nil:
		log.Error().Err(err).Msg("Slack profile email not read; nothing bound, sign-in revoked")
		return FailureError
	case strings.TrimSpace(slackEmail) == "":
		// Nearly always every person at once: an operator's problem, not
		// the person's, and not an email that differs.
		log.Error().Msg("Slack gave no email for the user: the Slack app needs the users:read.email scope " +
			"(add it and reinstall the app), or the profile has no email; nothing bound, sign-in revoked")
		return FailureNoSlackEmail
	case !id.EmailVerified:
		log.Warn().Bool("sf_email_verified", false).
			Msg("Salesforce user's email is not verified; nothing bound, sign-in revoked")
		return FailureEmailMismatch
	case !sameEmail(slackEmail, id.Email):
		log.Warn().Msg("Salesforce and Slack emails differ; nothing bound, sign-in revoked")
		log.Debug().Str("slack_email", slackEmail).Str("sf_email", id.Email).Msg("emails compared")
		return FailureEmailMismatch
	}
	return 0
}

// sameEmail compares two email addresses as RequireEmailMatch does: with
// surrounding space trimmed and ASCII letters lowered, byte for byte. Unicode
// case folding is not used on purpose: it would match "\u212Aim@…" (Kelvin
// sign) with "kim@…", and a mail system need not deliver them alike. An empty
// address matches nothing.
func sameEmail(a, b string) bool {
	a, b = lowerASCII(strings.TrimSpace(a)), lowerASCII(strings.TrimSpace(b))
	return a != "" && a == b
}

// lowerASCII lowers A-Z and leaves every other byte as it is.
func lowerASCII(s string) string {
	out := []byte(s)
	for i, c := range out {
		if 'A' <= c && c <= 'Z' {
			out[i] = c + ('a' - 'A')
		}
	}
	return string(out)
}

// requesterOf is the Requester a pending web link was made for.
func requesterOf(p store.Pending) Requester {
	return Requester{TeamID: p.TeamID, TeamName: p.TeamName, UserID: p.UserID, ChannelID: p.ChannelID, DisplayName: p.DisplayName}
}

// exchange redeems the authorization code at the Org Start made p's link
// for, and turns the answer into a binding for the person p was made for
// (see grantBinding).
func (s *Service) exchange(ctx context.Context, code string, p store.Pending) (store.Binding, salesforce.Identity, error) {
	org := s.orgs.signIn() // a pending link records no Org: Start makes every link for this one
	hctx := context.WithValue(ctx, oauth2.HTTPClient, s.http)
	tok, err := org.OAuth(s.cfg.CallbackURL).Exchange(hctx, code, oauth2.VerifierOption(p.Verifier))
	if err != nil {
		code, status := retrieveErrorCode(err)
		return store.Binding{}, salesforce.Identity{}, fmt.Errorf("token endpoint (%d %s): %w", status, code, safeErr(err))
	}
	return s.grantBinding(ctx, org, tok, p.TeamID, p.UserID)
}

// grantBinding checks a token response from org that ends a sign-in (a
// code exchange, or an approved device code), requires a refresh token,
// reads the Salesforce identity, and returns the binding of teamID/userID
// it makes, which records org's login URL. On any failure it revokes the
// tokens at org, so nothing usable is left behind.
func (s *Service) grantBinding(ctx context.Context, org Org, tok *oauth2.Token, teamID, userID string) (store.Binding, salesforce.Identity, error) {
	var none salesforce.Identity
	// What the tokens are until they are bound: the person's, at org. The
	// refresh token revokes the whole grant; without one, the access token
	// is all there is.
	unkept := store.Binding{TeamID: teamID, UserID: userID, LoginURL: org.LoginURL.String()}
	unused := cmp.Or(tok.RefreshToken, tok.AccessToken)
	g, err := checkGrant(org, tok)
	if err != nil {
		s.revokeQuietly(unkept, unused, "an unused token")
		return store.Binding{}, none, err
	}
	if tok.RefreshToken == "" {
		s.revokeQuietly(unkept, unused, "an unused token")
		return store.Binding{}, none, errors.New("token response has no refresh_token: the connected app must allow the refresh_token scope")
	}
	sf, err := salesforce.New(salesforce.Config{InstanceURL: g.instanceURL, APIVersion: s.cfg.APIVersion, HTTPClient: s.http, Tokens: salesforce.StaticToken(tok.AccessToken), Observer: s.cfg.APIObserver})
	if err != nil {
		s.revokeQuietly(unkept, unused, "an unused token")
		return store.Binding{}, none, err
	}
	id, err := sf.Identity(ctx, g.idURL)
	if err != nil {
		s.revokeQuietly(unkept, unused, "an unused token")
		return store.Binding{}, none, fmt.Errorf("identity: %w", err)
	}
	if id.OrgID != g.orgID || id.UserID != g.userID {
		s.revokeQuietly(unkept, unused, "an unused token")
		return store.Binding{}, none, errors.New("identity does not match the token response")
	}
	return store.Binding{
		TeamID:           teamID,
		UserID:           userID,
		SalesforceUserID: g.userID,
		OrgID:            g.orgID,
		Username:         id.Username,
		LoginURL:         org.LoginURL.String(),
		InstanceURL:      g.instanceURL,
		AccessToken:      tok.AccessToken,
		RefreshToken:     tok.RefreshToken,
		IssuedAt:         g.issuedAt,
		Scopes:           g.scopes,
	}, id, nil
}

// confirmWindow is the least time the confirmation page stays valid.
const confirmWindow = 2 * time.Minute

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
