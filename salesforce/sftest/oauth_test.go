package sftest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

const (
	testClientID = "3MVG9-test-client"
	testSecret   = "s3cr3t-consumer"
	testRedirect = "http://localhost:8787/oauth/callback"
	jane         = "jane@acme.example"
	sam          = "sam@acme.example"
)

func mustServer(tb testing.TB, opts sftest.Options) *sftest.Server {
	tb.Helper()
	if opts.ClientID == "" {
		opts.ClientID = testClientID
		opts.ClientSecret = testSecret
		opts.RedirectURI = testRedirect
	}
	srv := sftest.NewServer(opts)
	tb.Cleanup(srv.Close)
	return srv
}

func oauthConfig(srv *sftest.Server) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     testClientID,
		ClientSecret: testSecret,
		RedirectURL:  testRedirect,
		Scopes:       []string{"api", "id", "refresh_token"},
		Endpoint: oauth2.Endpoint{
			AuthURL:   srv.URL + "/services/oauth2/authorize",
			TokenURL:  srv.URL + "/services/oauth2/token",
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
}

// mustCode runs the authorize step as username and returns the code.
func mustCode(tb testing.TB, srv *sftest.Server, username, verifier string) string {
	tb.Helper()
	authURL := oauthConfig(srv).AuthCodeURL("state-123", oauth2.S256ChallengeOption(verifier))
	loc, err := srv.Authorize(context.Background(), authURL, username)
	if err != nil {
		tb.Fatalf("Authorize: %v", err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		tb.Fatalf("parse redirect %q: %v", loc, err)
	}
	if got := u.Query().Get("state"); got != "state-123" {
		tb.Fatalf("state = %q, want state-123", got)
	}
	code := u.Query().Get("code")
	if code == "" {
		tb.Fatalf("redirect without code: %s", loc)
	}
	return code
}

// postForm posts to the token or revoke endpoint and decodes a JSON answer.
func postForm(tb testing.TB, srv *sftest.Server, path string, form url.Values) (int, map[string]any) {
	tb.Helper()
	resp, err := http.PostForm(srv.URL+path, form)
	if err != nil {
		tb.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &m); err != nil {
			tb.Fatalf("POST %s: decode %q: %v", path, body, err)
		}
	}
	return resp.StatusCode, m
}

func TestAuthorizationCodeFlow(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	conf := oauthConfig(srv)
	verifier := oauth2.GenerateVerifier()
	code := mustCode(t, srv, jane, verifier)

	tok, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if tok.RefreshToken == "" || tok.AccessToken == "" {
		t.Fatalf("token lacks access or refresh token: %+v", tok)
	}
	if !tok.Expiry.IsZero() {
		t.Errorf("Expiry = %v, want zero (Salesforce sends no expires_in)", tok.Expiry)
	}
	got := map[string]any{
		"token_type":   tok.TokenType,
		"instance_url": tok.Extra("instance_url"),
		"id":           tok.Extra("id"),
		"scope":        tok.Extra("scope"),
		"expires_in":   tok.Extra("expires_in"),
	}
	want := map[string]any{
		"token_type":   "Bearer",
		"instance_url": srv.URL,
		"id":           srv.IdentityURL(jane),
		"scope":        "api id refresh_token",
		"expires_in":   nil,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("token response mismatch (-want +got):\n%s", diff)
	}

	id, _ := tok.Extra("id").(string)
	issuedAt, _ := tok.Extra("issued_at").(string)
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write([]byte(id + issuedAt))
	wantSig := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if sig, _ := tok.Extra("signature").(string); !hmac.Equal([]byte(sig), []byte(wantSig)) {
		t.Errorf("signature = %q, want %q", sig, wantSig)
	}

	req, _ := http.NewRequest(http.MethodGet, id, nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	defer resp.Body.Close()
	var ident struct {
		UserID   string `json:"user_id"`
		OrgID    string `json:"organization_id"`
		Username string `json:"username"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ident); err != nil {
		t.Fatalf("decode identity: %v", err)
	}
	if ident.Username != jane || ident.OrgID != srv.OrgID() {
		t.Errorf("identity = %+v, want username %s in org %s", ident, jane, srv.OrgID())
	}
}

func TestTokenErrors(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(form url.Values)
		reuse    bool
		wantCode string
	}{
		{name: "PKCE mismatch", edit: func(f url.Values) { f.Set("code_verifier", oauth2.GenerateVerifier()) }, wantCode: "invalid_grant"},
		{name: "missing verifier", edit: func(f url.Values) { f.Del("code_verifier") }, wantCode: "invalid_grant"},
		{name: "reused code", reuse: true, wantCode: "invalid_grant"},
		{name: "wrong redirect_uri", edit: func(f url.Values) { f.Set("redirect_uri", "http://localhost:9999/cb") }, wantCode: "redirect_uri_mismatch"},
		{name: "wrong secret", edit: func(f url.Values) { f.Set("client_secret", "nope") }, wantCode: "invalid_client"},
		{name: "unknown client", edit: func(f url.Values) { f.Set("client_id", "someone-else") }, wantCode: "invalid_client_id"},
		{name: "unknown code", edit: func(f url.Values) { f.Set("code", "aPrxmadeup") }, wantCode: "invalid_grant"},
		{name: "password grant", edit: func(f url.Values) { f.Set("grant_type", "password") }, wantCode: "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mustServer(t, sftest.Options{})
			verifier := oauth2.GenerateVerifier()
			form := url.Values{
				"grant_type":    {"authorization_code"},
				"code":          {mustCode(t, srv, jane, verifier)},
				"redirect_uri":  {testRedirect},
				"client_id":     {testClientID},
				"client_secret": {testSecret},
				"code_verifier": {verifier},
			}
			if tt.reuse {
				if status, body := postForm(t, srv, "/services/oauth2/token", form); status != http.StatusOK {
					t.Fatalf("first redemption: %d %v", status, body)
				}
			}
			if tt.edit != nil {
				tt.edit(form)
			}
			status, body := postForm(t, srv, "/services/oauth2/token", form)
			if status != http.StatusBadRequest || body["error"] != tt.wantCode {
				t.Errorf("got %d %v, want 400 error=%s", status, body, tt.wantCode)
			}
			if body["error_description"] == nil || body["access_token"] != nil {
				t.Errorf("error answer %v lacks error_description or carries a token", body)
			}
		})
	}
}

func TestAuthorizeErrors(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	base := oauthConfig(srv).AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	edit := func(key, value string) string {
		u, _ := url.Parse(base)
		q := u.Query()
		if value == "" {
			q.Del(key)
		} else {
			q.Set(key, value)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	tests := []struct {
		name      string
		url       string
		wantErr   string // error from Authorize (error page)
		wantParam string // error= on the redirect
	}{
		{name: "unknown client", url: edit("client_id", "other"), wantErr: "invalid_client_id"},
		{name: "wrong redirect", url: edit("redirect_uri", "https://evil.example/cb"), wantErr: "redirect_uri_mismatch"},
		{name: "implicit flow", url: edit("response_type", "token"), wantParam: "unsupported_response_type"},
		{name: "no challenge", url: edit("code_challenge", ""), wantParam: "invalid_request"},
		{name: "plain challenge", url: edit("code_challenge_method", "plain"), wantParam: "invalid_request"},
		{name: "no state", url: edit("state", ""), wantParam: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, err := srv.Authorize(context.Background(), tt.url, jane)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Authorize = %q, %v; want error page with %s", loc, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authorize: %v", err)
			}
			u, _ := url.Parse(loc)
			if got := u.Query().Get("error"); got != tt.wantParam || u.Query().Get("code") != "" {
				t.Errorf("redirect %s: error=%q, want %q and no code", loc, got, tt.wantParam)
			}
		})
	}

	t.Run("deny", func(t *testing.T) {
		loc, err := srv.Deny(context.Background(), base)
		if err != nil {
			t.Fatalf("Deny: %v", err)
		}
		u, _ := url.Parse(loc)
		got := map[string]string{"error": u.Query().Get("error"), "error_description": u.Query().Get("error_description"), "state": u.Query().Get("state")}
		want := map[string]string{"error": "access_denied", "error_description": "end-user denied authorization", "state": "st"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("deny redirect mismatch (-want +got):\n%s", diff)
		}
		if !strings.HasPrefix(loc, testRedirect+"?") {
			t.Errorf("deny redirect %q does not go to the redirect URI", loc)
		}
	})
}

func TestAutoApprove(t *testing.T) {
	srv := mustServer(t, sftest.Options{ClientID: "auto", RedirectURI: testRedirect, AutoApprove: sam})
	conf := oauthConfig(srv)
	conf.ClientID, conf.ClientSecret = "auto", ""
	verifier := oauth2.GenerateVerifier()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(conf.AuthCodeURL("s1", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" || loc.Query().Get("state") != "s1" {
		t.Fatalf("authorize answered %d %s, want a redirect with code and state", resp.StatusCode, loc)
	}
	tok, err := conf.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if got, want := tok.Extra("id"), srv.IdentityURL(sam); got != want {
		t.Errorf("id = %v, want %v", got, want)
	}
}

func refreshForm(token string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {testClientID}, "client_secret": {testSecret}}
}

func TestRefreshRotation(t *testing.T) {
	tests := []struct {
		name          string
		rotation      bool
		wantNewRT     bool
		wantOldStatus int
	}{
		{name: "rotation off", rotation: false, wantNewRT: false, wantOldStatus: http.StatusOK},
		{name: "rotation on", rotation: true, wantNewRT: true, wantOldStatus: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mustServer(t, sftest.Options{})
			srv.SetRotation(tt.rotation)
			g, err := srv.Login(jane)
			if err != nil {
				t.Fatal(err)
			}
			status, body := postForm(t, srv, "/services/oauth2/token", refreshForm(g.RefreshToken))
			if status != http.StatusOK || body["access_token"] == nil || body["access_token"] == g.AccessToken {
				t.Fatalf("refresh: %d %v", status, body)
			}
			newRT, _ := body["refresh_token"].(string)
			if (newRT != "") != tt.wantNewRT || newRT == g.RefreshToken {
				t.Errorf("refresh_token in answer = %q, want new one: %v", newRT, tt.wantNewRT)
			}
			status, body = postForm(t, srv, "/services/oauth2/token", refreshForm(g.RefreshToken))
			if status != tt.wantOldStatus {
				t.Errorf("old refresh token: %d %v, want %d", status, body, tt.wantOldStatus)
			}
			if tt.wantOldStatus == http.StatusBadRequest && (body["error"] != "invalid_grant" || body["error_description"] != "expired access/refresh token") {
				t.Errorf("old refresh token error = %v, want invalid_grant/expired access/refresh token", body)
			}
			if newRT != "" {
				if status, body := postForm(t, srv, "/services/oauth2/token", refreshForm(newRT)); status != http.StatusOK {
					t.Errorf("new refresh token: %d %v", status, body)
				}
			}
		})
	}
}

func restStatus(tb testing.TB, srv *sftest.Server, token, path string) (int, []byte) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func TestRevoke(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	g, err := srv.Login(jane)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := srv.Login(sam)
	const path = "/services/data/v62.0/query?q=SELECT+Id+FROM+Account"
	if status, body := restStatus(t, srv, g.AccessToken, path); status != http.StatusOK {
		t.Fatalf("before revoke: %d %s", status, body)
	}
	if status, body := postForm(t, srv, "/services/oauth2/revoke", url.Values{"token": {g.RefreshToken}}); status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, body)
	}
	status, body := restStatus(t, srv, g.AccessToken, path)
	if status != http.StatusUnauthorized || !strings.Contains(string(body), "INVALID_SESSION_ID") {
		t.Errorf("access token after revoking its refresh token: %d %s, want 401 INVALID_SESSION_ID", status, body)
	}
	if status, body := postForm(t, srv, "/services/oauth2/token", refreshForm(g.RefreshToken)); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("refresh after revoke: %d %v, want 400 invalid_grant", status, body)
	}
	if status, body := postForm(t, srv, "/services/oauth2/revoke", url.Values{"token": {g.RefreshToken}}); status != http.StatusBadRequest || body["error"] != "unsupported_token_type" {
		t.Errorf("second revoke: %d %v, want 400 unsupported_token_type", status, body)
	}
	if status, _ := restStatus(t, srv, other.AccessToken, path); status != http.StatusOK {
		t.Errorf("another user's token stopped working after revoke: %d", status)
	}
	if status, _ := postForm(t, srv, "/services/oauth2/revoke", url.Values{"token": {other.AccessToken}}); status != http.StatusOK {
		t.Errorf("revoking an access token: %d", status)
	}
	if status, _ := restStatus(t, srv, other.AccessToken, path); status != http.StatusUnauthorized {
		t.Errorf("revoked access token still works: %d", status)
	}
}

func TestKnobs(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	g, _ := srv.Login(jane)
	const path = "/services/data/v62.0/sobjects/Account/0015g00000AcmeAAAR"

	srv.SetUsage(41, 100)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+g.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Sforce-Limit-Info"), "api-usage=42/100"; got != want {
		t.Errorf("Sforce-Limit-Info = %q, want %q", got, want)
	}

	srv.FailNext(sftest.EndpointSObject, http.StatusForbidden, sftest.BodyRequestLimitExceeded)
	srv.FailNext(sftest.EndpointSObject, http.StatusBadGateway, sftest.BodyBadGatewayHTML)
	var got []int
	for range 3 {
		status, _ := restStatus(t, srv, g.AccessToken, path)
		got = append(got, status)
	}
	if diff := cmp.Diff([]int{403, 502, 200}, got); diff != "" {
		t.Errorf("FailNext statuses mismatch (-want +got):\n%s", diff)
	}
	if n := srv.Calls(sftest.EndpointSObject); n != 4 {
		t.Errorf("Calls(sobject) = %d, want 4", n)
	}

	srv.ExpireAccessTokens()
	if status, _ := restStatus(t, srv, g.AccessToken, path); status != http.StatusUnauthorized {
		t.Errorf("expired access token: %d, want 401", status)
	}
	issued := srv.IssuedTokens()
	if !contains(issued, g.AccessToken) || !contains(issued, g.RefreshToken) {
		t.Errorf("IssuedTokens lacks the login tokens")
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
