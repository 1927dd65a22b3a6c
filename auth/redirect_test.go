package auth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/forcebind/forcebind/store"
)

// hits counts the requests a test server got, by method and path.
type hits struct {
	mu  sync.Mutex
	got []string
}

func (h *hits) add(r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, r.Method+" "+r.URL.Path)
}

func (h *hits) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

// No OAuth call follows a redirect: a login host that answers 307 (which
// re-sends a POST body) sends no client secret, code, code verifier or
// refresh token on to the host it names.
func TestOAuthCallsDoNotFollowRedirects(t *testing.T) {
	var away, login hits
	elsewhere := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { away.add(r) }))
	t.Cleanup(elsewhere.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		login.add(r)
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)

	binding := func(e *env) store.Binding {
		b := store.Binding{
			TeamID: jane.TeamID, UserID: jane.UserID, SalesforceUserID: "0055g00000JaneAAAR", OrgID: "00D000000000062EAA",
			Username: janeSF, LoginURL: redirector.URL, InstanceURL: redirector.URL, AccessToken: "stale-access", RefreshToken: "refresh-1",
		}
		if err := e.db.PutBinding(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		flow Flow
		call func(t *testing.T, e *env)
		want string // the request the login host got
	}{
		{"code exchange", FlowWeb, func(t *testing.T, e *env) {
			link, err := e.svc.Start(t.Context(), jane)
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(link.URL)
			q := url.Values{"state": {u.Query().Get("state")}, "code": {"aPrx-code"}}
			if p := browser(t, http.MethodGet, e.callback+"/oauth/callback?"+q.Encode(), nil, nil); p.status != http.StatusBadGateway {
				t.Errorf("callback answered %d, want 502:\n%s", p.status, p.body)
			}
		}, "POST /services/oauth2/token"},
		{"refresh", FlowWeb, func(t *testing.T, e *env) {
			b := binding(e)
			if _, err := e.svc.tokens(b, jane).Refresh(t.Context(), b.AccessToken); err == nil {
				t.Error("a refresh answered with a redirect succeeded")
			}
		}, "POST /services/oauth2/token"},
		{"revoke", FlowWeb, func(t *testing.T, e *env) {
			binding(e)
			_, _ = e.svc.Unlink(t.Context(), jane) // whatever it answers, nothing goes elsewhere
		}, "POST /services/oauth2/revoke"},
		{"device code", FlowDevice, func(t *testing.T, e *env) {
			if _, err := e.svc.Start(t.Context(), jane); err == nil {
				t.Error("a device code request answered with a redirect succeeded")
			}
		}, "POST /services/oauth2/token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			away.mu.Lock()
			away.got = nil
			away.mu.Unlock()
			login.mu.Lock()
			login.got = nil
			login.mu.Unlock()
			e := mustEnv(t, envOptions{flow: tt.flow, loginURL: redirector.URL, svcSecret: secret})
			tt.call(t, e)
			if got := login.list(); len(got) == 0 || got[0] != tt.want {
				t.Errorf("the login host got %v, want %s first", got, tt.want)
			}
			if got := away.list(); len(got) != 0 {
				t.Errorf("the redirect was followed: the other host got %v", got)
			}
			e.assertNoTokens(t, "logs", e.logs.String())
		})
	}
}
