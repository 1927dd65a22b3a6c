package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
)

func TestConnectFlow(t *testing.T) {
	e := mustEnv(t, envOptions{sfSecret: secret, svcSecret: secret})
	link, err := e.svc.Start(t.Context(), jane)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(link.URL)
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || len(q.Get("state")) != 43 ||
		q.Get("redirect_uri") != e.callback+"/oauth/callback" || q.Get("scope") != "api refresh_token" {
		t.Errorf("authorize URL %s lacks PKCE S256, a 256-bit state, the callback or the scopes", link.URL)
	}
	if !strings.HasPrefix(link.URL, e.sf.URL+"/services/oauth2/authorize?") {
		t.Errorf("authorize URL %s is not on the login host", link.URL)
	}

	token, p := e.mustConfirmPage(t, jane, janeSF)
	for _, want := range []string{janeSF, "Jane Doe", e.sf.OrgID(), "jane", jane.UserID, "Acme", `value="confirm"`, `value="cancel"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("confirm page lacks %q", want)
		}
	}
	if strings.Contains(p.body, "<script") {
		t.Error("confirm page has a script")
	}
	for h, want := range map[string]string{"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"} {
		if got := p.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "form-action 'self'") {
		t.Errorf("CSP %q is not strict", csp)
	}
	if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bound before Confirm: %v", err)
	}

	p = e.confirm(t, token, "confirm")
	if p.status != http.StatusOK || !strings.Contains(p.body, "Connected") {
		t.Fatalf("confirm answered %d:\n%s", p.status, p.body)
	}
	b, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if b.Username != janeSF || b.OrgID != e.sf.OrgID() || b.InstanceURL != e.sf.URL || b.RefreshToken == "" || b.LinkedAt.IsZero() {
		t.Errorf("stored binding incomplete: %v", b)
	}
	if linked, _ := e.notes.counts(); linked != 1 {
		t.Errorf("Linked called %d times, want 1", linked)
	}
	// The confirmation is single use: a second POST shows how the first
	// ended and binds nothing again.
	if p := e.confirm(t, token, "confirm"); p.status != http.StatusOK || !strings.Contains(p.body, "Connected") {
		t.Errorf("second confirm answered %d:\n%s", p.status, p.body)
	}
	if linked, _ := e.notes.counts(); linked != 1 {
		t.Errorf("Linked called %d times after a second confirm, want 1", linked)
	}
	e.assertNoTokens(t, "logs", e.logs.String())
	if strings.Contains(e.logs.String(), token) {
		t.Error("the log shows the confirmation token")
	}
}

func TestBadCallbacks(t *testing.T) {
	e := mustEnv(t, envOptions{})
	redirect := e.mustRedirect(t)
	ru, _ := url.Parse(redirect)
	code := ru.Query().Get("code")
	forged := strings.Repeat("A", 43)
	tests := []struct {
		name, query string
		want        int
	}{
		{"unknown state", "code=" + code + "&state=" + forged, http.StatusBadRequest},
		{"no state", "code=" + code, http.StatusBadRequest},
		{"state twice", "code=" + code + "&state=" + forged + "&state=" + forged, http.StatusBadRequest},
		{"neither code nor error", "state=" + forged, http.StatusBadRequest},
		{"state not base64url", "code=x&state=%3Cscript%3E", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := browser(t, http.MethodGet, e.callback+"/oauth/callback?"+tt.query, nil, nil)
			if p.status != tt.want || !strings.Contains(p.body, "new one") {
				t.Errorf("answered %d, want %d with advice to ask for a new link:\n%s", p.status, tt.want, p.body)
			}
		})
	}
	if n := e.sf.Calls(sftest.EndpointToken); n != 0 {
		t.Errorf("%d token calls for forged callbacks; want none", n)
	}
	// The real redirect still works once, and only once.
	if p := browser(t, http.MethodGet, redirect, nil, nil); p.status != http.StatusOK {
		t.Fatalf("real callback answered %d:\n%s", p.status, p.body)
	}
	if p := browser(t, http.MethodGet, redirect, nil, nil); p.status != http.StatusBadRequest {
		t.Errorf("replayed callback answered %d, want 400", p.status)
	}
	if n := e.sf.Calls(sftest.EndpointToken); n != 1 {
		t.Errorf("%d token calls, want exactly 1", n)
	}
}

func TestExpiredLink(t *testing.T) {
	e := mustEnv(t, envOptions{})
	redirect := e.mustRedirect(t)
	e.advance(11 * time.Minute)
	p := browser(t, http.MethodGet, redirect, nil, nil)
	if p.status != http.StatusGone || !strings.Contains(p.body, "expired") {
		t.Errorf("expired link answered %d:\n%s", p.status, p.body)
	}
	if n := e.sf.Calls(sftest.EndpointToken); n != 0 {
		t.Errorf("%d token calls for an expired link; want none", n)
	}
}

func TestConcurrentCallbacksOneExchange(t *testing.T) {
	e := mustEnv(t, envOptions{})
	redirect := e.mustRedirect(t)
	var wg sync.WaitGroup
	statuses := make(chan int, 10)
	for range 10 {
		wg.Go(func() { statuses <- browser(t, http.MethodGet, redirect, nil, nil).status })
	}
	wg.Wait()
	close(statuses)
	ok := 0
	for s := range statuses {
		if s == http.StatusOK {
			ok++
		}
	}
	if ok != 1 || e.sf.Calls(sftest.EndpointToken) != 1 {
		t.Errorf("%d callbacks succeeded with %d token calls; want 1 and 1", ok, e.sf.Calls(sftest.EndpointToken))
	}
}

func TestAccessDenied(t *testing.T) {
	e := mustEnv(t, envOptions{})
	link, err := e.svc.Start(t.Context(), jane)
	if err != nil {
		t.Fatal(err)
	}
	redirect, err := e.sf.Deny(t.Context(), link.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := browser(t, http.MethodGet, redirect, nil, nil)
	if p.status != http.StatusOK || !strings.Contains(p.body, "did not allow") {
		t.Errorf("access_denied answered %d:\n%s", p.status, p.body)
	}
	// The state is consumed: the same link cannot be used after a denial.
	if p := browser(t, http.MethodGet, redirect, nil, nil); p.status != http.StatusBadRequest {
		t.Errorf("state after denial answered %d, want 400", p.status)
	}
}

// The error page says what forcebind knows of the error code in its own
// words: a description (or an unknown code) from the query string, which
// anyone can write into a link, never reaches the page; it is logged,
// bounded and made printable.
func TestSignInErrorPage(t *testing.T) {
	const crafted = "Your account is locked. Call +1 555 0100 to restore it"
	tests := []struct {
		code       string
		status     int
		want       string // on the page
		wantReport string // Observer's outcome
	}{
		{"access_denied", http.StatusOK, "did not allow", "denied"},
		{"server_error", http.StatusServiceUnavailable, "(Salesforce said server_error.)", "error"},
		{"temporarily_unavailable", http.StatusServiceUnavailable, "try again in a few minutes", "error"},
		{"invalid_request", http.StatusBadRequest, "not set up", "error"},
		{"invalid_scope", http.StatusBadRequest, "(Salesforce said invalid_scope.)", "error"},
		{"unsupported_response_type", http.StatusBadRequest, "not set up", "error"},
		{"redirect_uri_mismatch", http.StatusBadRequest, "forcebind doctor", "error"},
		{"OAUTH_APP_BLOCKED", http.StatusForbidden, "Salesforce administrator", "error"},
		{"OAUTH_APP_ACCESS_DENIED", http.StatusForbidden, "profile or permission set", "error"},
		{"inactive_org", http.StatusForbidden, "inactive or locked", "error"},
		{"Call_555_0100_now", http.StatusBadRequest, "did not complete the sign-in", "error"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			e := mustEnv(t, envOptions{})
			link, err := e.svc.Start(t.Context(), jane)
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(link.URL)
			q := url.Values{"state": {u.Query().Get("state")}, "error": {tt.code},
				"error_description": {crafted + "\n<script>alert(1)</script>" + strings.Repeat("x", 600)}}
			p := browser(t, http.MethodGet, e.callback+"/oauth/callback?"+q.Encode(), nil, nil)
			if p.status != tt.status || !strings.Contains(p.body, tt.want) {
				t.Errorf("answered %d, want %d saying %q:\n%s", p.status, tt.status, tt.want, p.body)
			}
			for _, never := range []string{"0100", "locked. Call", "alert", "xxxx", "Call_"} {
				if strings.Contains(p.body, never) {
					t.Errorf("the page shows %q from the query string:\n%s", never, p.body)
				}
			}
			if _, links := e.obs.got(); len(links) != 1 || links[0] != "web "+tt.wantReport {
				t.Errorf("links reported %v, want [web %s]", links, tt.wantReport)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, crafted) || strings.Contains(logs, strings.Repeat("x", 301)) ||
				strings.Contains(logs, `\n<script>`) {
				t.Errorf("the log lacks the description, or has it unbounded or with its control characters:\n%s", logs)
			}
		})
	}
}

func TestTokenEndpointFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*sftest.Server)
	}{
		{"500", func(sf *sftest.Server) { sf.FailNext(sftest.EndpointToken, 500, `{"error":"server_error"}`) }},
		{"HTML 502", func(sf *sftest.Server) { sf.FailNext(sftest.EndpointToken, 502, "<html>Bad gateway</html>") }},
		{"timeout", func(sf *sftest.Server) { sf.SetLatency(3 * time.Second) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{timeout: 500 * time.Millisecond})
			redirect := e.mustRedirect(t)
			tt.setup(e.sf)
			p := browser(t, http.MethodGet, redirect, nil, nil)
			e.sf.SetLatency(0)
			if p.status != http.StatusBadGateway {
				t.Errorf("answered %d, want 502:\n%s", p.status, p.body)
			}
			if n, _ := e.db.CountBindings(t.Context()); n != 0 {
				t.Errorf("%d bindings stored after a failed exchange", n)
			}
			e.assertNoTokens(t, "logs", e.logs.String())
			e.assertNoTokens(t, "page", p.body)
		})
	}
}

func TestBadSignature(t *testing.T) {
	// The fake signs with its (empty) secret; forcebind expects another.
	e := mustEnv(t, envOptions{svcSecret: "a-different-secret"})
	redirect := e.mustRedirect(t)
	p := browser(t, http.MethodGet, redirect, nil, nil)
	if p.status != http.StatusBadGateway {
		t.Errorf("answered %d, want 502", p.status)
	}
	if !strings.Contains(e.logs.String(), "signature") {
		t.Error("the signature failure was not logged")
	}
	if n := e.sf.Calls(sftest.EndpointIdentity); n != 0 {
		t.Errorf("identity read %d times with an unverified token", n)
	}
	if n := e.sf.Calls(sftest.EndpointRevoke); n != 1 {
		t.Errorf("unverified token revoked %d times, want 1", n)
	}
}

func TestForeignHost(t *testing.T) {
	e := mustEnv(t, envOptions{})
	for _, host := range []string{"evil.example", "127.0.0.1:1", "localhost"} {
		p := browser(t, http.MethodGet, e.callback+"/oauth/callback?state=x&code=y", nil, map[string]string{"Host": host})
		if p.status != http.StatusMisdirectedRequest {
			t.Errorf("Host %s answered %d, want 421", host, p.status)
		}
	}
	if p := browser(t, http.MethodGet, e.callback+"/healthz", nil, map[string]string{"Host": "10.0.0.1:8787"}); p.status != http.StatusOK {
		t.Errorf("healthz with another Host answered %d, want 200", p.status)
	}
}

func TestConfirmOrigin(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"cross-site origin", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "null"}, http.StatusForbidden},
		{"same-site but other origin", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		// What Chrome and Firefox send for our own form under no-referrer.
		{"browser, same origin", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "null"}, http.StatusOK},
		{"older browser, null origin", map[string]string{"Origin": "null"}, http.StatusOK},
		{"no browser headers", nil, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{})
			token, _ := e.mustConfirmPage(t, jane, janeSF)
			p := browser(t, http.MethodPost, e.callback+"/oauth/confirm", url.Values{"token": {token}, "decision": {"confirm"}}, tt.header)
			if p.status != tt.want {
				t.Errorf("answered %d, want %d", p.status, tt.want)
			}
		})
	}
}

func TestCancelRevokes(t *testing.T) {
	e := mustEnv(t, envOptions{})
	token, _ := e.mustConfirmPage(t, jane, janeSF)
	p := e.confirm(t, token, "cancel")
	if p.status != http.StatusOK || !strings.Contains(p.body, "Nothing was linked") {
		t.Fatalf("cancel answered %d:\n%s", p.status, p.body)
	}
	if n := e.sf.Calls(sftest.EndpointRevoke); n != 1 {
		t.Errorf("revoke called %d times, want 1", n)
	}
	if n, _ := e.db.CountBindings(t.Context()); n != 0 {
		t.Errorf("%d bindings after cancel", n)
	}
	if linked, _ := e.notes.counts(); linked != 0 {
		t.Error("Linked called after cancel")
	}
}

func TestRelinkRevokesReplacedGrant(t *testing.T) {
	e := mustEnv(t, envOptions{})
	first := e.mustBind(t, jane, janeSF)
	second := e.mustBind(t, jane, "sam@acme.example")
	if second.Username != "sam@acme.example" {
		t.Fatalf("relink stored %s", second.Username)
	}
	if n := e.sf.Calls(sftest.EndpointRevoke); n != 1 {
		t.Errorf("replaced grant revoked %d times, want 1", n)
	}
	// The replaced refresh token no longer works at Salesforce.
	if e.sf.RevokeRefreshToken(first.RefreshToken) {
		t.Error("the replaced refresh token was still valid")
	}
}

func TestUnlink(t *testing.T) {
	tests := []struct {
		name        string
		fail        bool
		wantRevoked bool
	}{
		{"revoke ok", false, true},
		{"revoke answers 400", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{})
			e.mustBind(t, jane, janeSF)
			if tt.fail {
				e.sf.FailNext(sftest.EndpointRevoke, 400, `{"error":"unsupported_token_type","error_description":"this token type is not supported"}`)
			}
			u, err := e.svc.Unlink(t.Context(), jane)
			if err != nil {
				t.Fatal(err)
			}
			if u.Revoked != tt.wantRevoked || u.Account.Username != janeSF {
				t.Errorf("Unlink = revoked %v for %s; want %v for %s", u.Revoked, u.Account.Username, tt.wantRevoked, janeSF)
			}
			if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("binding still there: %v", err)
			}
			if _, err := e.svc.Unlink(t.Context(), jane); !errors.Is(err, ErrNotLinked) {
				t.Errorf("second Unlink = %v, want ErrNotLinked", err)
			}
		})
	}
}

func TestSweepRevokesUnconfirmed(t *testing.T) {
	e := mustEnv(t, envOptions{})
	e.mustConfirmPage(t, jane, janeSF) // tokens held, awaiting Confirm
	e.advance(11 * time.Minute)
	n, err := e.svc.Sweep(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || e.sf.Calls(sftest.EndpointRevoke) != 1 {
		t.Errorf("Sweep removed %d links with %d revocations; want 1 and 1", n, e.sf.Calls(sftest.EndpointRevoke))
	}
}

// A token answer that names a URL forcebind must not send tokens to is
// refused, and nothing is sent there.
func TestForgedGrants(t *testing.T) {
	var evilHits int
	var evilMu sync.Mutex
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		evilMu.Lock()
		evilHits++
		evilMu.Unlock()
	}))
	defer evil.Close()
	tests := []struct {
		name   string
		modify func(g *sftest.Grant)
	}{
		{"foreign instance_url", func(g *sftest.Grant) { g.InstanceURL = evil.URL }},
		{"instance_url on a look-alike host", func(g *sftest.Grant) { g.InstanceURL = "https://salesforce.com.evil.example" }},
		{"foreign identity URL", func(g *sftest.Grant) { g.ID = evil.URL + "/id/00D5g000004FakeEAA/0055g00000JaneAAAR" }},
		{"malformed id", func(g *sftest.Grant) { g.ID = strings.Replace(g.ID, "/id/", "/ident/", 1) }},
		{"id of a user that is not the one signed in", func(g *sftest.Grant) {
			g.ID = strings.Replace(g.ID, "0055g00000JaneAAAR", "0055g00000SamsAAAR", 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{})
			redirect := e.mustRedirect(t)
			e.sf.RewriteGrants(func(_ string, g *sftest.Grant) { tt.modify(g) })
			p := browser(t, http.MethodGet, redirect, nil, nil)
			if p.status != http.StatusBadGateway || confirmToken.MatchString(p.body) {
				t.Errorf("forged grant answered %d:\n%s", p.status, p.body)
			}
			if n, _ := e.db.CountBindings(t.Context()); n != 0 {
				t.Errorf("%d bindings stored from a forged grant", n)
			}
			evilMu.Lock()
			defer evilMu.Unlock()
			if evilHits != 0 {
				t.Errorf("%d requests reached the foreign host", evilHits)
			}
		})
	}
}

// A refresh answer that names another Salesforce user is refused and the
// binding is kept.
func TestRefreshForAnotherUserRejected(t *testing.T) {
	e := mustEnv(t, envOptions{})
	b := e.mustBind(t, jane, janeSF)
	e.sf.ExpireAccessTokens()
	e.sf.RewriteGrants(func(grantType string, g *sftest.Grant) {
		if grantType == "refresh_token" {
			g.ID = strings.Replace(g.ID, "0055g00000JaneAAAR", "0055g00000SamsAAAR", 1)
		}
	})
	sf, err := e.svc.client(b, jane)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sf.Search(t.Context(), "acme"); err == nil {
		t.Fatal("search succeeded with a refresh answer for another user")
	}
	got, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil || got.AccessToken != b.AccessToken {
		t.Errorf("binding changed or lost: %v", err)
	}
}

// A sign-in that ends just before the link expires still leaves time to
// read the confirmation page.
func TestConfirmationOutlivesALateCallback(t *testing.T) {
	e := mustEnv(t, envOptions{})
	redirect := e.mustRedirect(t)
	e.advance(10*time.Minute - time.Second) // a slow MFA login
	p := browser(t, http.MethodGet, redirect, nil, nil)
	m := confirmToken.FindStringSubmatch(p.body)
	if p.status != http.StatusOK || m == nil {
		t.Fatalf("late callback answered %d:\n%s", p.status, p.body)
	}
	e.advance(time.Minute)
	if p := e.confirm(t, m[1], "confirm"); p.status != http.StatusOK {
		t.Errorf("confirm a minute later answered %d:\n%s", p.status, p.body)
	}
}

// Tokens held for a confirmation that expired, or whose link was replaced
// by a newer one, are revoked, not left live at Salesforce.
func TestHeldTokensRevoked(t *testing.T) {
	t.Run("confirmation expired", func(t *testing.T) {
		e := mustEnv(t, envOptions{})
		token, _ := e.mustConfirmPage(t, jane, janeSF)
		e.advance(11 * time.Minute)
		if p := e.confirm(t, token, "confirm"); p.status != http.StatusGone {
			t.Errorf("expired confirm answered %d, want 410", p.status)
		}
		if n := e.sf.Calls(sftest.EndpointRevoke); n != 1 {
			t.Errorf("%d revocations, want 1", n)
		}
	})
	t.Run("link replaced before confirming", func(t *testing.T) {
		e := mustEnv(t, envOptions{})
		e.mustConfirmPage(t, jane, janeSF)
		if _, err := e.svc.Start(t.Context(), jane); err != nil { // asks again meanwhile
			t.Fatal(err)
		}
		if _, err := e.svc.Sweep(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := e.sf.Calls(sftest.EndpointRevoke); n != 1 {
			t.Errorf("%d revocations, want 1", n)
		}
	})
}

// A grant found dead while the person linked again does not delete the new
// binding: relink runs with the binding the refresh read before the re-link.
func TestRelinkDuringRefreshKeepsNewBinding(t *testing.T) {
	e := mustEnv(t, envOptions{})
	old := e.mustBind(t, jane, janeSF)
	e.mustBind(t, jane, janeSF) // linked again while the old grant's refresh ran
	if err := e.svc.relink(t.Context(), old, jane, RelinkGrantEnded); errors.Is(err, ErrRelinkRequired) {
		t.Errorf("relink of a replaced grant = %v; the new binding counts as ended", err)
	}
	if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); err != nil {
		t.Errorf("the new binding was deleted: %v", err)
	}
	if _, relinks := e.notes.counts(); relinks != 0 {
		t.Errorf("%d fresh links sent to someone who had just linked", relinks)
	}
}

// Start asks the Slack side for the name on the confirmation page only when
// the caller did not give one.
func TestStartLooksUpTheName(t *testing.T) {
	e := mustEnv(t, envOptions{})
	_, p := e.mustConfirmPage(t, jane, janeSF) // jane comes with a name
	if e.notes.nameLookups != 0 || !strings.Contains(p.body, "<b>jane</b>") {
		t.Errorf("%d lookups for a named requester; page:\n%s", e.notes.nameLookups, p.body)
	}
	nameless := jane
	nameless.DisplayName = ""
	_, p = e.mustConfirmPage(t, nameless, janeSF)
	if e.notes.nameLookups != 1 || !strings.Contains(p.body, "Jane Doe (@jane)") {
		t.Errorf("%d lookups for a nameless requester; page:\n%s", e.notes.nameLookups, p.body)
	}
}
