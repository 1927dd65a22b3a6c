package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce/sftest"
)

// mustProbe returns a Probe of cfg, whose login URL defaults to the fake's.
func mustProbe(t *testing.T, cfg ProbeConfig) *Probe {
	t.Helper()
	p, err := NewProbe(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// oauthErrorIn returns the *OAuthError in err's chain, or nil.
func oauthErrorIn(err error) *OAuthError {
	var oe *OAuthError
	if errors.As(err, &oe) {
		return oe
	}
	return nil
}

// The probes against the fake org: each answer of a connected app that is
// set up, and of one that is not, reads as Salesforce means it.
func TestProbeAgainstTheFakeOrg(t *testing.T) {
	const callback = "http://127.0.0.1:8787/oauth/callback"
	sf := sftest.NewServer(sftest.Options{ClientID: "probe-key", ClientSecret: "probe-secret", RedirectURI: callback})
	t.Cleanup(sf.Close)
	good := ProbeConfig{ClientID: "probe-key", ClientSecret: "probe-secret", LoginURL: sf.URL, CallbackURL: callback}

	p := mustProbe(t, good)
	if status, err := p.LoginHost(t.Context()); err != nil || status == 0 {
		t.Errorf("LoginHost = %d, %v; want an answer (the fake's front page is a 404)", status, err)
	}
	if login, err := p.Authorize(t.Context()); err != nil || !login {
		t.Errorf("Authorize = %v, %v; want a login page", login, err)
	}
	for name, probe := range map[string]func() error{"Exchange": func() error { return p.Exchange(t.Context()) }, "Refresh": func() error { return p.Refresh(t.Context()) }} {
		if oe := oauthErrorIn(probe()); oe == nil || oe.Code != "invalid_grant" {
			t.Errorf("%s: %v, want invalid_grant", name, oe)
		}
	}
	if err := p.DeviceCode(t.Context()); err != nil {
		t.Errorf("DeviceCode: %v", err)
	}

	tests := []struct {
		name  string
		cfg   func(*ProbeConfig)
		probe func(*Probe) error
		want  *OAuthError
	}{
		{"authorize, unknown key", func(c *ProbeConfig) { c.ClientID = "other" },
			func(p *Probe) error { _, err := p.Authorize(t.Context()); return err }, &OAuthError{Status: http.StatusBadRequest, Code: "invalid_client_id"}},
		{"authorize, callback not registered", func(c *ProbeConfig) { c.CallbackURL = "https://forcebind.corp.example/oauth/callback" },
			func(p *Probe) error { _, err := p.Authorize(t.Context()); return err }, &OAuthError{Status: http.StatusBadRequest, Code: "redirect_uri_mismatch"}},
		{"code, unknown key", func(c *ProbeConfig) { c.ClientID = "other" },
			func(p *Probe) error { return p.Exchange(t.Context()) }, &OAuthError{Status: http.StatusBadRequest, Code: "invalid_client_id", Description: "client identifier invalid"}},
		{"code, wrong secret", func(c *ProbeConfig) { c.ClientSecret = "wrong" },
			func(p *Probe) error { return p.Exchange(t.Context()) }, &OAuthError{Status: http.StatusBadRequest, Code: "invalid_client", Description: "invalid client credentials"}},
		{"refresh, no secret", func(c *ProbeConfig) { c.ClientSecret = "" },
			func(p *Probe) error { return p.Refresh(t.Context()) }, &OAuthError{Status: http.StatusBadRequest, Code: "invalid_client", Description: "invalid client credentials"}},
		{"device code, unknown key", func(c *ProbeConfig) { c.ClientID = "other" },
			func(p *Probe) error { return p.DeviceCode(t.Context()) }, &OAuthError{Status: http.StatusBadRequest, Code: "invalid_client_id", Description: "client identifier invalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.cfg(&cfg)
			got := oauthErrorIn(tt.probe(mustProbe(t, cfg)))
			if got != nil && tt.want.Description == "" {
				got.Description = "" // the page's words are the fake's
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("device flow off", func(t *testing.T) {
		sf.SetDeviceFlow(false)
		t.Cleanup(func() { sf.SetDeviceFlow(true) })
		err := mustProbe(t, good).DeviceCode(t.Context())
		if oe := oauthErrorIn(err); oe == nil || oe.Code == "" || !errors.Is(err, ErrClientRejected) {
			t.Errorf("DeviceCode = %v; want an OAuth error that is ErrClientRejected, as Start's", err)
		}
	})
}

// The code and refresh probes send what the Service sends, and read the
// token endpoint's answers, including forms the fake does not produce but
// Salesforce does.
func TestProbeTokenAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		refresh bool
		secret  string
		want    *OAuthError
	}{
		{"accepted with secret", 400, `{"error":"invalid_grant","error_description":"authentication failure"}`, false, "s3cret",
			&OAuthError{400, "invalid_grant", "authentication failure"}},
		{"accepted without secret", 400, `{"error":"invalid_grant","error_description":"expired authorization code"}`, false, "",
			&OAuthError{400, "invalid_grant", "expired authorization code"}},
		{"refresh accepted", 400, `{"error":"invalid_grant","error_description":"expired access/refresh token"}`, true, "",
			&OAuthError{400, "invalid_grant", "expired access/refresh token"}},
		{"unknown key", 400, `{"error":"invalid_client_id","error_description":"client identifier invalid"}`, false, "s3cret",
			&OAuthError{400, "invalid_client_id", "client identifier invalid"}},
		{"callback mismatch", 400, `{"error":"redirect_uri_mismatch","error_description":"redirect_uri must match configuration"}`, false, "s3cret",
			&OAuthError{400, "redirect_uri_mismatch", "redirect_uri must match configuration"}},
		{"description with control characters", 400, "{\"error\":\"inactive_org\",\"error_description\":\"organization\\nis inactive\"}", false, "",
			&OAuthError{400, "inactive_org", "organization?is inactive"}},
		{"HTML outage", 502, "<html>Bad Gateway</html>", false, "", &OAuthError{Status: 502}},
		{"success on a made-up code", 200, `{"access_token":"x"}`, false, "", &OAuthError{Status: 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var form url.Values
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/services/oauth2/token" {
					t.Errorf("%s %s, want POST /services/oauth2/token", r.Method, r.URL.Path)
				}
				if err := r.ParseForm(); err != nil {
					t.Error(err)
				}
				form = r.PostForm
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			p := mustProbe(t, ProbeConfig{ClientID: "key", ClientSecret: tt.secret, LoginURL: srv.URL, CallbackURL: "http://localhost:8787/oauth/callback"})
			probe := p.Exchange
			if tt.refresh {
				probe = p.Refresh
			}
			err := probe(t.Context())
			if diff := cmp.Diff(tt.want, oauthErrorIn(err)); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
			if form.Get("client_id") != "key" || form.Get("client_secret") != tt.secret || form.Has("client_secret") != (tt.secret != "") {
				t.Errorf("client credentials sent: %v", form)
			}
			grant := "authorization_code"
			if tt.refresh {
				grant = "refresh_token"
			}
			if got := form.Get("grant_type"); got != grant {
				t.Errorf("grant_type %q, want %q", got, grant)
			}
			if !tt.refresh && (form.Get("redirect_uri") != "http://localhost:8787/oauth/callback" || len(form.Get("code_verifier")) < 43 || form.Get("code") == "") {
				t.Errorf("the code probe is not the callback's exchange: %v", form)
			}
		})
	}
}

// A probe follows no redirect: the client secret must not be re-posted to
// another host.
func TestProbeFollowsNoRedirect(t *testing.T) {
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the probe followed a redirect to %s", r.URL)
	}))
	t.Cleanup(elsewhere.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	p := mustProbe(t, ProbeConfig{ClientID: "key", ClientSecret: "s3cret", LoginURL: srv.URL})
	if status, err := p.LoginHost(t.Context()); err != nil || status != http.StatusTemporaryRedirect {
		t.Errorf("LoginHost = %d, %v; want the 307 itself", status, err)
	}
	if oe := oauthErrorIn(p.Exchange(t.Context())); oe == nil || oe.Status != http.StatusTemporaryRedirect {
		t.Errorf("Exchange = %v; want the 307 as an answer without a code", oe)
	}
}

// The authorize endpoint's answers, including forms the fake does not
// produce but Salesforce does.
func TestReadAuthorize(t *testing.T) {
	const callback = "https://forcebind.corp.example/oauth/callback"
	loginPage := "<html><script>var error=null; if (error) show('error=' + code)</script>" + strings.Repeat("<div></div>", 1000) + "</html>"
	tests := []struct {
		name      string
		status    int
		location  string
		body      string
		wantLogin bool
		want      *OAuthError // nil: accepted
	}{
		{"unknown client id, error page", 400, "", `<p>error=invalid_client_id&amp;error_description=client identifier invalid</p>`, false,
			&OAuthError{Status: 400, Code: "invalid_client_id"}},
		{"unknown client id, page served 200", 200, "", `<p>error=invalid_client_id&error_description=client%20identifier%20invalid</p>`, false,
			&OAuthError{Status: 200, Code: "invalid_client_id"}},
		{"callback mismatch, redirect to the error page", 302,
			"https://login.salesforce.com/setup/secur/RemoteAccessErrorPage.apexp?error=redirect_uri_mismatch&error_description=redirect_uri%20must%20match%20configuration", "", false,
			&OAuthError{Status: 302, Code: "redirect_uri_mismatch", Description: "redirect_uri must match configuration"}},
		{"other error on Salesforce's page", 302, "https://login.salesforce.com/setup/secur/RemoteAccessErrorPage.apexp?error=OAUTH_APP_BLOCKED", "", false,
			&OAuthError{Status: 302, Code: "OAUTH_APP_BLOCKED"}},
		{"error sent to the callback", 302, callback + "?error=invalid_request&error_description=missing+state", "", false, nil},
		{"code sent to the callback", 302, callback + "?code=aPrx123&state=s", "", false, nil},
		{"login page", 200, "", loginPage, true, nil},
		{"redirect to the login page", 302, "https://login.salesforce.com/?ec=302&startURL=%2Fsetup%2Fsecur%2FRemoteAccessAuthorizationPage.apexp", "", true, nil},
		{"outage", 503, "", "<html>Service Unavailable</html>", false, &OAuthError{Status: 503}},
		{"not Salesforce", 404, "", "not found", false, &OAuthError{Status: 404}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			login, err := readAuthorize(tt.status, tt.location, []byte(tt.body), callback)
			if login != tt.wantLogin {
				t.Errorf("login = %v, want %v", login, tt.wantLogin)
			}
			if diff := cmp.Diff(tt.want, oauthErrorIn(err)); diff != "" || (tt.want == nil) != (err == nil) {
				t.Errorf("mismatch (-want +got):\n%s (error %v)", diff, err)
			}
		})
	}
}
