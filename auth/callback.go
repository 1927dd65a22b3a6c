package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/store"
)

// Handler returns the callback listener's routes: GET /oauth/callback,
// POST /oauth/confirm and GET /healthz. Every answer carries no-store,
// no-referrer and a strict content security policy; a request whose Host is
// not the callback URL's gets 421. Safe for concurrent use.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth/callback", s.handleCallback)
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
	c, err := parseCallback(r.URL.Query())
	if err != nil {
		s.log.Info().Err(err).Msg("callback refused")
		s.pages.problem(w, http.StatusBadRequest, "This link is not valid", "Ask @forcebind for a new one: send it “connect”.")
		return
	}
	ctx := r.Context()
	p, err := s.cfg.Store.RedeemPending(ctx, c.state)
	if p.Binding != nil {
		// A confirmation token used as a state: it is spent now, so are its tokens.
		s.revokeQuietly(p.Binding.RefreshToken)
	}
	switch {
	case errors.Is(err, store.ErrExpired):
		s.log.Info().Msg("callback with an expired link")
		s.pages.problem(w, http.StatusGone, "This link has expired", "Links work for a few minutes and only once. Ask @forcebind for a new one: send it “connect”.")
		return
	case errors.Is(err, store.ErrNotFound) || (err == nil && p.Binding != nil):
		s.log.Info().Msg("callback with an unknown or used link")
		s.pages.problem(w, http.StatusBadRequest, "This link is not valid or was already used", "Links work only once. Ask @forcebind for a new one: send it “connect”.")
		return
	case err != nil:
		s.log.Error().Err(err).Msg("redeem link")
		s.pages.problem(w, http.StatusInternalServerError, "Something went wrong", "forcebind could not read its store. Try again in a minute.")
		return
	}
	log := s.log.With().Str("team", p.TeamID).Str("user", p.UserID).Logger()
	if c.errCode != "" {
		log.Info().Str("error_code", c.errCode).Msg("Salesforce sign-in not completed")
		if c.errCode == "access_denied" {
			s.observeLink(FlowWeb, FailureDenied.String())
			s.pages.problem(w, http.StatusOK, "You did not allow access", "Nothing was linked. To connect later, ask @forcebind for a new link.")
			return
		}
		s.observeLink(FlowWeb, FailureError.String())
		s.pages.problem(w, http.StatusBadRequest, "Salesforce did not complete the sign-in",
			"Salesforce said: “"+c.errMsg+"” ("+c.errCode+"). Nothing was linked; ask @forcebind for a new link.")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	b, id, err := s.exchange(ctx, c.code, p)
	if err != nil {
		log.Warn().Err(err).Msg("code exchange failed; nothing stored")
		s.observeLink(FlowWeb, FailureError.String())
		s.pages.problem(w, http.StatusBadGateway, "Salesforce did not complete the sign-in",
			"Nothing was linked. Ask @forcebind for a new link and try again; if it keeps failing, tell your Salesforce administrator.")
		return
	}
	switch s.admit(ctx, b, id, requesterOf(p), FlowWeb) {
	case FailureNoSlackEmail:
		s.pages.problem(w, http.StatusForbidden, "Your Slack email address could not be read",
			"forcebind links a Salesforce user only when its email address is the one on your Slack profile, "+
				"but it could not read the email address on your Slack profile, so nothing was linked "+
				"and the sign-in was revoked at Salesforce. Tell whoever runs forcebind.")
		return
	case FailureEmailMismatch:
		if !id.EmailVerified { // admit checks this before comparing
			s.pages.problem(w, http.StatusForbidden, "Your Salesforce email address is not verified",
				"forcebind links a Salesforce user only when Salesforce has verified its email address. Salesforce user "+
					b.Username+"'s is not verified, so nothing was linked and the sign-in was revoked at Salesforce. "+
					"Verify it in Salesforce (or ask your Salesforce administrator to), then ask @forcebind for a new link.")
			return
		}
		s.pages.problem(w, http.StatusForbidden, "Your email addresses do not match",
			"forcebind links a Salesforce user only when its email address is the one on your Slack profile. Salesforce user "+
				b.Username+" has another one, so nothing was linked and the sign-in was revoked at Salesforce. "+
				"Sign in to Salesforce as yourself, then ask @forcebind for a new link.")
		return
	case FailureError:
		s.pages.problem(w, http.StatusBadGateway, "Your email address could not be checked",
			"forcebind could not read the email address on your Slack profile to compare it with Salesforce's, so nothing was linked "+
				"and the sign-in was revoked at Salesforce. Ask @forcebind for a new link in a minute.")
		return
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
		log.Error().Err(err).Msg("hold tokens for confirmation")
		s.revokeQuietly(b.RefreshToken)
		s.observeLink(FlowWeb, FailureError.String())
		s.pages.problem(w, http.StatusInternalServerError, "Something went wrong", "forcebind could not save the sign-in. Ask @forcebind for a new link.")
		return
	}
	log.Info().Str("sf_org", b.OrgID).Str("sf_user", b.SalesforceUserID).Msg("awaiting confirmation")
	s.pages.confirm(w, confirmView{
		Token:         token,
		SFUsername:    b.Username,
		SFDisplayName: id.DisplayName,
		SFOrg:         b.OrgID,
		SlackUser:     cmp.Or(p.DisplayName, p.UserID),
		SlackUserID:   p.UserID,
		SlackTeam:     cmp.Or(p.TeamName, p.TeamID),
		Expires:       confirmP.Expires,
	})
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
	ctx := r.Context()
	p, err := s.cfg.Store.RedeemPending(ctx, token)
	switch {
	case errors.Is(err, store.ErrExpired):
		if p.Binding != nil {
			s.revokeQuietly(p.Binding.RefreshToken) // the store hands back what expired
		}
		s.pages.problem(w, http.StatusGone, "This confirmation has expired", "Nothing was linked. Ask @forcebind for a new link.")
		return
	case errors.Is(err, store.ErrNotFound) || (err == nil && p.Binding == nil):
		s.pages.problem(w, http.StatusBadRequest, "This confirmation is not valid or was already used", "Ask @forcebind for a new link.")
		return
	case err != nil:
		s.log.Error().Err(err).Msg("redeem confirmation")
		s.pages.problem(w, http.StatusInternalServerError, "Something went wrong", "forcebind could not read its store. Try again in a minute.")
		return
	}
	b := *p.Binding
	log := s.log.With().Str("team", b.TeamID).Str("user", b.UserID).Logger()
	if decision == "cancel" {
		s.revokeQuietly(b.RefreshToken) // even if the person closes the tab at once
		log.Info().Msg("binding cancelled by the user")
		s.pages.problem(w, http.StatusOK, "Cancelled", "Nothing was linked, and the sign-in was revoked at Salesforce.")
		return
	}
	if err := s.bind(ctx, b, FlowWeb); err != nil {
		log.Error().Err(err).Msg("store binding")
		s.observeLink(FlowWeb, FailureError.String())
		s.pages.problem(w, http.StatusInternalServerError, "Something went wrong", "forcebind could not save the link. Ask @forcebind for a new link.")
		return
	}
	s.pages.done(w, doneView{SFUsername: b.Username, SlackUser: cmp.Or(p.DisplayName, p.UserID), SlackTeam: cmp.Or(p.TeamName, p.TeamID)})
}

// bind stores b, a sign-in the person has agreed to, as their binding: the
// last step of both flows. A binding it replaces has its grant revoked. It
// writes the audit line, reports the link as bound and tells the person.
// If the store fails it revokes b's grant and returns the error; the caller
// logs it and tells the person.
func (s *Service) bind(ctx context.Context, b store.Binding, flow Flow) error {
	old, oldErr := s.cfg.Store.GetBinding(ctx, b.TeamID, b.UserID)
	b.LinkedAt = s.now().UTC()
	if err := s.cfg.Store.PutBinding(ctx, b); err != nil {
		s.revokeQuietly(b.RefreshToken)
		return fmt.Errorf("store binding: %w", err)
	}
	if oldErr == nil {
		s.audit("binding relinked", b)
		if old.RefreshToken != b.RefreshToken {
			s.revokeGrantQuietly(old) // the grant it replaced is no longer used by anyone
		}
	} else {
		s.audit("binding created", b)
	}
	s.observeLink(flow, "bound")
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := s.cfg.Notifier.Linked(nctx, b); err != nil {
		s.log.Warn().Err(err).Str("team", b.TeamID).Str("user", b.UserID).Msg("confirmation DM failed")
	}
	return nil
}

// admit applies Config.RequireEmailMatch to a fresh sign-in of who: the
// Slack profile must have an email address, Salesforce must have verified
// the Salesforce user's, and the two must be equal (see sameEmail). It
// returns 0 when b may be bound. Otherwise it revokes b's grant, tells who
// through the Notifier, reports the outcome, and returns why, checked in
// this order: FailureError when Slack could not be asked,
// FailureNoSlackEmail, then FailureEmailMismatch for an unverified
// Salesforce email or a different one.
func (s *Service) admit(ctx context.Context, b store.Binding, id salesforce.Identity, who Requester, flow Flow) Failure {
	if !s.cfg.RequireEmailMatch {
		return 0
	}
	log := s.log.With().Str("team", who.TeamID).Str("user", who.UserID).Str("sf_username", b.Username).Logger()
	slackEmail, err := s.cfg.Notifier.Email(ctx, who.UserID)
	var why Failure
	switch {
	case err != nil:
		log.Error().Err(err).Msg("Slack profile email not read; nothing bound, sign-in revoked")
		why = FailureError
	case strings.TrimSpace(slackEmail) == "":
		// Nearly always every person at once: an operator's problem, not
		// the person's, and not an email that differs.
		log.Error().Msg("Slack gave no email for the user: the Slack app needs the users:read.email scope " +
			"(add it and reinstall the app), or the profile has no email; nothing bound, sign-in revoked")
		why = FailureNoSlackEmail
	case !id.EmailVerified:
		log.Warn().Bool("sf_email_verified", false).
			Msg("Salesforce user's email is not verified; nothing bound, sign-in revoked")
		why = FailureEmailMismatch
	case !sameEmail(slackEmail, id.Email):
		log.Warn().Msg("Salesforce and Slack emails differ; nothing bound, sign-in revoked")
		log.Debug().Str("slack_email", slackEmail).Str("sf_email", id.Email).Msg("emails compared")
		why = FailureEmailMismatch
	default:
		return 0
	}
	s.revokeQuietly(b.RefreshToken)
	s.linkFailed(who, flow, why)
	return why
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

// exchange redeems the authorization code and turns the answer into a
// binding for the person p was made for (see grantBinding).
func (s *Service) exchange(ctx context.Context, code string, p store.Pending) (store.Binding, salesforce.Identity, error) {
	hctx := context.WithValue(ctx, oauth2.HTTPClient, s.http)
	tok, err := s.oauth.Exchange(hctx, code, oauth2.VerifierOption(p.Verifier))
	if err != nil {
		code, status := retrieveErrorCode(err)
		return store.Binding{}, salesforce.Identity{}, fmt.Errorf("token endpoint (%d %s): %w", status, code, safeErr(err))
	}
	return s.grantBinding(ctx, tok, p.TeamID, p.UserID)
}

// grantBinding checks a token response that ends a sign-in (a code
// exchange, or an approved device code), requires a refresh token, reads
// the Salesforce identity, and returns the binding of teamID/userID it
// makes. On any failure it revokes the tokens, so nothing usable is left
// behind.
func (s *Service) grantBinding(ctx context.Context, tok *oauth2.Token, teamID, userID string) (store.Binding, salesforce.Identity, error) {
	var none salesforce.Identity
	g, err := s.checkGrant(tok)
	if err != nil {
		s.revokeQuietly(tok.RefreshToken)
		return store.Binding{}, none, err
	}
	if tok.RefreshToken == "" {
		s.revokeQuietly(tok.AccessToken)
		return store.Binding{}, none, errors.New("token response has no refresh_token: the connected app must allow the refresh_token scope")
	}
	sf, err := salesforce.New(salesforce.Config{InstanceURL: g.instanceURL, APIVersion: s.cfg.APIVersion, HTTPClient: s.http, Tokens: salesforce.StaticToken(tok.AccessToken), Observer: s.cfg.APIObserver})
	if err != nil {
		s.revokeQuietly(tok.RefreshToken)
		return store.Binding{}, none, err
	}
	id, err := sf.Identity(ctx, g.idURL)
	if err != nil {
		s.revokeQuietly(tok.RefreshToken)
		return store.Binding{}, none, fmt.Errorf("identity: %w", err)
	}
	if id.OrgID != g.orgID || id.UserID != g.userID {
		s.revokeQuietly(tok.RefreshToken)
		return store.Binding{}, none, errors.New("identity does not match the token response")
	}
	return store.Binding{
		TeamID:           teamID,
		UserID:           userID,
		SalesforceUserID: g.userID,
		OrgID:            g.orgID,
		Username:         id.Username,
		LoginURL:         s.login.String(),
		InstanceURL:      g.instanceURL,
		AccessToken:      tok.AccessToken,
		RefreshToken:     tok.RefreshToken,
		IssuedAt:         g.issuedAt,
		Scopes:           g.scopes,
	}, id, nil
}

// revokeQuietly revokes a token that forcebind will not keep, on its own
// deadline (the request that led here may be gone), logging a failure.
func (s *Service) revokeQuietly(token string) {
	if token == "" {
		return
	}
	if err := s.revoke(context.Background(), token); err != nil {
		s.log.Warn().Err(err).Msg("revoke of an unused token failed")
	}
}

// confirmWindow is the least time the confirmation page stays valid.
const confirmWindow = 2 * time.Minute

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
