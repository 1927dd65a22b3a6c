package sftest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// authRequest is a validated authorize request waiting on the login page.
type authRequest struct {
	redirectURI string
	state       string
	challenge   string
	scope       string
}

type authCode struct {
	redirectURI string
	challenge   string
	scope       string
	user        User
}

type session struct {
	user    User
	refresh string // refresh token it was issued with, "" if none
}

type refreshInfo struct {
	user  User
	scope string
}

// Grant is a token response as the fake's token endpoint sends it (there is
// no expires_in, as with Salesforce). It is a plain value.
type Grant struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Signature    string `json:"signature"`
	Scope        string `json:"scope"`
	InstanceURL  string `json:"instance_url"`
	ID           string `json:"id"`
	TokenType    string `json:"token_type"`
	IssuedAt     string `json:"issued_at"`
}

const defaultScope = "api id refresh_token"

// handleAuthorize validates an authorize request and shows the login page,
// or approves it at once with AutoApprove.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != s.opts.ClientID {
		s.errorPage(w, "invalid_client_id", "client identifier invalid")
		return
	}
	redirect := q.Get("redirect_uri")
	if !s.redirectOK(redirect) {
		s.errorPage(w, "redirect_uri_mismatch", "redirect_uri must match configuration")
		return
	}
	state := q.Get("state")
	fail := func(code, desc string) {
		http.Redirect(w, r, withParams(redirect, "error", code, "error_description", desc, "state", state), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "response type not supported")
		return
	case q.Get("code_challenge") == "":
		fail("invalid_request", "missing required code challenge")
		return
	case q.Get("code_challenge_method") != "S256" || !validChallenge(q.Get("code_challenge")):
		fail("invalid_request", "invalid code challenge method or value")
		return
	case state == "":
		fail("invalid_request", "missing state")
		return
	}
	req := authRequest{redirectURI: redirect, state: state, challenge: q.Get("code_challenge"), scope: q.Get("scope")}
	if s.opts.AutoApprove != "" {
		u, _ := s.org.user(s.opts.AutoApprove)
		http.Redirect(w, r, s.approve(req, u), http.StatusFound)
		return
	}
	id := randomToken(16)
	s.mu.Lock()
	s.pending[id] = req
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = s.pages.Lookup("login").Execute(w, struct {
		OrgName string
		Request string
		Users   []User
	}{s.org.name, id, s.org.users})
}

// handleDecision takes the login page's Allow or Deny.
func (s *Server) handleDecision(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, "invalid_request", "bad form")
		return
	}
	s.mu.Lock()
	req, ok := s.pending[r.PostForm.Get("request")]
	delete(s.pending, r.PostForm.Get("request"))
	s.mu.Unlock()
	if !ok {
		s.errorPage(w, "invalid_request", "unknown or used login request")
		return
	}
	if r.PostForm.Get("decision") != "allow" {
		http.Redirect(w, r, withParams(req.redirectURI, "error", "access_denied",
			"error_description", "end-user denied authorization", "state", req.state), http.StatusFound)
		return
	}
	u, ok := s.org.user(r.PostForm.Get("username"))
	if !ok {
		s.errorPage(w, "invalid_request", "unknown user")
		return
	}
	http.Redirect(w, r, s.approve(req, u), http.StatusFound)
}

// approve issues a one-time code and returns the redirect carrying it.
func (s *Server) approve(req authRequest, u User) string {
	code := "aPrx" + randomToken(48)
	s.mu.Lock()
	s.codes[code] = &authCode{redirectURI: req.redirectURI, challenge: req.challenge, scope: req.scope, user: u}
	s.mu.Unlock()
	return withParams(req.redirectURI, "code", code, "state", req.state)
}

func (s *Server) redirectOK(redirect string) bool {
	if s.opts.RedirectURI != "" {
		return redirect == s.opts.RedirectURI
	}
	u, err := url.Parse(redirect)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Fragment == ""
}

// handleToken serves the authorization_code, refresh_token and device
// grants, and device code requests (response_type=device_code).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "bad request body")
		return
	}
	f := r.PostForm
	clientID, secret, basic := r.BasicAuth()
	if !basic {
		clientID, secret = f.Get("client_id"), f.Get("client_secret")
	}
	grantType := f.Get("grant_type")
	if grantType == "" && f.Has("response_type") {
		s.handleDeviceCode(w, f, clientID)
		return
	}
	if grantType != "authorization_code" && grantType != "refresh_token" && grantType != "device" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant type not supported")
		return
	}
	if clientID != s.opts.ClientID {
		writeOAuthError(w, http.StatusBadRequest, "invalid_client_id", "client identifier invalid")
		return
	}
	if s.opts.ClientSecret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) != 1 {
		writeOAuthError(w, http.StatusBadRequest, "invalid_client", "invalid client credentials")
		return
	}
	var (
		g   Grant
		err error
	)
	switch grantType {
	case "authorization_code":
		g, err = s.redeemCode(f.Get("code"), f.Get("redirect_uri"), f.Get("code_verifier"))
	case "device":
		g, err = s.redeemDevice(f.Get("code"))
	default:
		g, err = s.redeemRefresh(f.Get("refresh_token"))
	}
	var oe *oauthError
	if errors.As(err, &oe) {
		writeOAuthError(w, http.StatusBadRequest, oe.code, oe.desc)
		return
	}
	s.mu.Lock()
	rewrite := s.rewrite
	s.mu.Unlock()
	if rewrite != nil {
		rewrite(grantType, &g)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, g)
}

type oauthError struct{ code, desc string }

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func (s *Server) redeemCode(code, redirect, verifier string) (Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ac, ok := s.codes[code]
	delete(s.codes, code) // single use, whatever happens next
	if !ok {
		return Grant{}, &oauthError{"invalid_grant", "invalid authorization code"}
	}
	if redirect != ac.redirectURI {
		return Grant{}, &oauthError{"redirect_uri_mismatch", "redirect_uri must match configuration"}
	}
	sum := sha256.Sum256([]byte(verifier))
	if verifier == "" || subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(ac.challenge)) != 1 {
		return Grant{}, &oauthError{"invalid_grant", "invalid code verifier"}
	}
	scope := ac.scope
	if scope == "" {
		scope = defaultScope
	}
	return s.issueLocked(ac.user, scope, "", true), nil
}

func (s *Server) redeemRefresh(token string) (Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ri, ok := s.refresh[token]
	if !ok || token == "" {
		return Grant{}, &oauthError{"invalid_grant", "expired access/refresh token"}
	}
	if !s.rotation {
		return s.issueLocked(ri.user, ri.scope, token, false), nil
	}
	g := s.issueLocked(ri.user, ri.scope, "", true)
	delete(s.refresh, token)
	for _, sess := range s.access {
		if sess.refresh == token {
			sess.refresh = g.RefreshToken
		}
	}
	return g, nil
}

// issueLocked mints an access token (and a refresh token when newRefresh),
// records them and builds the signed response. parent is the refresh token
// the access token hangs off when no new one is minted.
func (s *Server) issueLocked(u User, scope, parent string, newRefresh bool) Grant {
	access := s.org.id[:15] + "!AR" + randomToken(72)
	g := Grant{
		AccessToken: access,
		Scope:       scope,
		InstanceURL: s.URL,
		ID:          s.URL + "/id/" + s.org.id + "/" + u.ID,
		TokenType:   "Bearer",
		IssuedAt:    strconv.FormatInt(time.Now().UnixMilli(), 10),
	}
	if newRefresh {
		g.RefreshToken = "5Aep861" + randomToken(64)
		s.refresh[g.RefreshToken] = &refreshInfo{user: u, scope: scope}
		s.issued = append(s.issued, g.RefreshToken)
		parent = g.RefreshToken
	}
	s.access[access] = &session{user: u, refresh: parent}
	s.issued = append(s.issued, access)
	mac := hmac.New(sha256.New, []byte(s.opts.ClientSecret))
	mac.Write([]byte(g.ID + g.IssuedAt))
	g.Signature = base64.StdEncoding.EncodeToString(mac.Sum(nil))
	return g
}

// Login issues tokens for a fixture user as if they had completed the web
// server flow, for tests that need a session without the browser steps.
func (s *Server) Login(username string) (Grant, error) {
	u, ok := s.org.user(username)
	if !ok {
		return Grant{}, fmt.Errorf("sftest: no fixture user %q", username)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issueLocked(u, defaultScope, "", true), nil
}

// handleRevoke revokes a refresh token (with its access tokens) or an
// access token.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "bad request body")
		return
	}
	token := r.PostForm.Get("token")
	s.mu.Lock()
	ok := s.revokeRefreshLocked(token)
	if !ok {
		if _, ok = s.access[token]; ok {
			delete(s.access, token)
		}
	}
	s.mu.Unlock()
	if !ok {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_token_type", "unsupported token type")
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) revokeRefreshLocked(token string) bool {
	if _, ok := s.refresh[token]; !ok || token == "" {
		return false
	}
	delete(s.refresh, token)
	for at, sess := range s.access {
		if sess.refresh == token {
			delete(s.access, at)
		}
	}
	return true
}

// sessionFor returns the user behind the request's bearer token.
func (s *Server) sessionFor(r *http.Request) (User, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		token, ok = strings.CutPrefix(r.Header.Get("Authorization"), "OAuth ")
	}
	if !ok || token == "" {
		return User{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.access[token]
	if !ok {
		return User{}, false
	}
	return sess.user, true
}

// handleIdentity serves the identity URL for the token's own user.
func (s *Server) handleIdentity(w http.ResponseWriter, r *http.Request) {
	u, ok := s.sessionFor(r)
	if !ok {
		writeRaw(w, http.StatusUnauthorized, BodyInvalidSession)
		return
	}
	u = s.withEmail(u)
	if r.PathValue("org") != s.org.id || r.PathValue("user") != u.ID {
		writeAPIError(w, http.StatusForbidden, "Bad_Id", "identity URL does not belong to this session")
		return
	}
	idURL := s.URL + "/id/" + s.org.id + "/" + u.ID
	writeJSON(w, http.StatusOK, map[string]any{
		"id":              idURL,
		"asserted_user":   true,
		"user_id":         u.ID,
		"organization_id": s.org.id,
		"username":        u.Username,
		"nick_name":       strings.Split(u.Username, "@")[0],
		"display_name":    u.DisplayName,
		"email":           u.Email,
		"email_verified":  s.emailVerified(u),
		"first_name":      u.FirstName,
		"last_name":       u.LastName,
		"timezone":        "America/Los_Angeles",
		"active":          true,
		"user_type":       "STANDARD",
		"language":        "en_US",
		"locale":          "en_US",
		"utcOffset":       -28800000,
		"urls":            s.urls(u),
	})
}

// handleUserInfo serves the OpenID Connect userinfo endpoint.
func (s *Server) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	u, ok := s.sessionFor(r)
	if !ok {
		writeRaw(w, http.StatusUnauthorized, BodyInvalidSession)
		return
	}
	u = s.withEmail(u)
	writeJSON(w, http.StatusOK, map[string]any{
		"sub":                s.URL + "/id/" + s.org.id + "/" + u.ID,
		"user_id":            u.ID,
		"organization_id":    s.org.id,
		"preferred_username": u.Username,
		"nickname":           strings.Split(u.Username, "@")[0],
		"name":               u.DisplayName,
		"email":              u.Email,
		"email_verified":     s.emailVerified(u),
		"given_name":         u.FirstName,
		"family_name":        u.LastName,
		"zoneinfo":           "America/Los_Angeles",
		"active":             true,
		"user_type":          "STANDARD",
		"language":           "en_US",
		"locale":             "en_US",
		"urls":               s.urls(u),
	})
}

func (s *Server) urls(u User) map[string]string {
	base := s.URL + "/services/data/v{version}/"
	return map[string]string{
		"rest":     base,
		"sobjects": base + "sobjects/",
		"search":   base + "search/",
		"query":    base + "query/",
		"profile":  s.URL + "/" + u.ID,
	}
}

// Authorize plays the browser for an authorize URL of this server: it loads
// the login page, picks username and presses Allow, and returns the URL the
// browser would be redirected to (the redirect_uri with code and state, or
// with error). Invalid requests that Salesforce answers with an error page
// come back as an error.
func (s *Server) Authorize(ctx context.Context, authorizeURL, username string) (string, error) {
	return s.decide(ctx, authorizeURL, username, "allow")
}

// Deny is like Authorize but presses Deny.
func (s *Server) Deny(ctx context.Context, authorizeURL string) (string, error) {
	return s.decide(ctx, authorizeURL, "", "deny")
}

func (s *Server) decide(ctx context.Context, authorizeURL, username, decision string) (string, error) {
	if !strings.HasPrefix(authorizeURL, s.URL+"/services/oauth2/authorize?") {
		return "", errors.New("sftest: not an authorize URL of this server")
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authorizeURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusFound:
		return resp.Header.Get("Location"), nil
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("sftest: authorize answered %d: %s", resp.StatusCode, strings.TrimSpace(stripTags(string(page))))
	}
	_, after, found := strings.Cut(string(page), `name="request" value="`)
	requestID, _, closed := strings.Cut(after, `"`)
	if !found || !closed || requestID == "" {
		return "", errors.New("sftest: login page without a request id")
	}
	form := url.Values{"request": {requestID}, "username": {username}, "decision": {decision}}
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/services/oauth2/authorize", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = hc.Do(req)
	if err != nil {
		return "", err
	}
	page, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("sftest: login answered %d: %s", resp.StatusCode, strings.TrimSpace(stripTags(string(page))))
	}
	return resp.Header.Get("Location"), nil
}

// stripTags turns a small HTML page into one line of text for errors.
func stripTags(s string) string {
	var b strings.Builder
	inTag := false
	for _, r := range s {
		switch {
		case r == '<':
			inTag = true
			b.WriteByte(' ')
		case r == '>':
			inTag = false
		case !inTag:
			b.WriteRune(r)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// validChallenge accepts a PKCE S256 challenge: 43 to 128 characters of the
// unreserved URL alphabet.
func validChallenge(c string) bool {
	if len(c) < 43 || len(c) > 128 {
		return false
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || strings.IndexByte("-._~", ch) >= 0) {
			return false
		}
	}
	return true
}

// withParams adds query parameters (name, value pairs) to a URL.
func withParams(raw string, kv ...string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" || kv[i] != "state" {
			q.Set(kv[i], kv[i+1])
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

func (s *Server) errorPage(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_ = s.pages.Lookup("error").Execute(w, struct{ Code, Desc string }{code, desc})
}

// parsePages parses the login and error pages.
func parsePages() *template.Template {
	t := template.Must(template.New("error").Parse(errorHTML))
	template.Must(t.New("connect").Parse(connectHTML))
	return template.Must(t.New("login").Parse(loginHTML))
}

const errorHTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>Error</title></head>
<body><h1>Remote Access Error</h1><p>error={{.Code}}&amp;error_description={{.Desc}}</p></body></html>
`

const loginHTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>Log in to {{.OrgName}} (sftest)</title>
<style>body{font-family:sans-serif;max-width:32em;margin:3em auto}label{display:block;margin:.5em 0}</style></head>
<body>
<h1>{{.OrgName}}</h1>
<p>This is a fake Salesforce org. Choose who you are and allow or deny access.</p>
<form method="post" action="/services/oauth2/authorize">
<input type="hidden" name="request" value="{{.Request}}">
{{range $i, $u := .Users}}<label><input type="radio" name="username" value="{{$u.Username}}"{{if eq $i 0}} checked{{end}}> {{$u.DisplayName}} ({{$u.Username}}, {{$u.Profile}})</label>
{{end}}<p><button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></p>
</form>
</body></html>
`
