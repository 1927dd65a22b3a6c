package sftest_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce/sftest"
)

const tokenPath = "/services/oauth2/token"

func deviceCodeForm() url.Values {
	return url.Values{"response_type": {"device_code"}, "client_id": {testClientID}, "scope": {"api refresh_token"}}
}

// mustDeviceCode requests a device code and returns the answer.
func mustDeviceCode(tb testing.TB, srv *sftest.Server) map[string]any {
	tb.Helper()
	status, body := postForm(tb, srv, tokenPath, deviceCodeForm())
	if status != http.StatusOK {
		tb.Fatalf("device code request: %d %v", status, body)
	}
	return body
}

func pollForm(deviceCode string) url.Values {
	return url.Values{"grant_type": {"device"}, "client_id": {testClientID}, "client_secret": {testSecret}, "code": {deviceCode}}
}

// poll polls once and returns the status and the error code ("" on success)
// with the whole answer.
func poll(tb testing.TB, srv *sftest.Server, deviceCode string) (int, string, map[string]any) {
	tb.Helper()
	status, body := postForm(tb, srv, tokenPath, pollForm(deviceCode))
	code, _ := body["error"].(string)
	return status, code, body
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestDeviceFlow(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	dc := mustDeviceCode(t, srv)
	if diff := cmp.Diff([]string{"device_code", "interval", "user_code", "verification_uri"}, keys(dc)); diff != "" {
		t.Errorf("device code answer fields mismatch (-want +got):\n%s", diff)
	}
	userCode, _ := dc["user_code"].(string)
	deviceCode, _ := dc["device_code"].(string)
	if got := map[string]any{"verification_uri": dc["verification_uri"], "interval": dc["interval"], "user_code length": len(userCode)}; !cmp.Equal(got,
		map[string]any{"verification_uri": srv.URL + "/setup/connect", "interval": float64(sftest.DefaultDeviceInterval), "user_code length": 8}) {
		t.Errorf("device code answer = %v", dc)
	}
	if !contains(srv.IssuedTokens(), deviceCode) {
		t.Error("IssuedTokens lacks the device code")
	}
	if diff := cmp.Diff([]string{userCode}, srv.PendingUserCodes()); diff != "" {
		t.Errorf("PendingUserCodes mismatch (-want +got):\n%s", diff)
	}

	if status, code, body := poll(t, srv, deviceCode); status != http.StatusBadRequest || code != "authorization_pending" || body["access_token"] != nil {
		t.Errorf("poll before approval = %d %v, want 400 authorization_pending", status, body)
	}
	if err := srv.ApproveDevice(strings.ToLower(userCode), jane); err != nil {
		t.Fatalf("ApproveDevice: %v", err)
	}
	if got := srv.PendingUserCodes(); len(got) != 0 {
		t.Errorf("PendingUserCodes after approval = %v, want none", got)
	}
	status, _, g := poll(t, srv, deviceCode)
	if status != http.StatusOK {
		t.Fatalf("poll after approval = %d %v", status, g)
	}
	wantFields := []string{"access_token", "id", "instance_url", "issued_at", "refresh_token", "scope", "signature", "token_type"}
	if diff := cmp.Diff(wantFields, keys(g)); diff != "" {
		t.Errorf("grant fields mismatch (-want +got):\n%s", diff)
	}
	got := map[string]any{"id": g["id"], "instance_url": g["instance_url"], "scope": g["scope"], "token_type": g["token_type"]}
	want := map[string]any{"id": srv.IdentityURL(jane), "instance_url": srv.URL, "scope": "api refresh_token", "token_type": "Bearer"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("grant mismatch (-want +got):\n%s", diff)
	}
	id, _ := g["id"].(string)
	issuedAt, _ := g["issued_at"].(string)
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write([]byte(id + issuedAt))
	if sig, _ := g["signature"].(string); sig != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
		t.Errorf("signature %q does not verify", sig)
	}
	access, _ := g["access_token"].(string)
	if status, _ := restStatus(t, srv, access, "/services/data/v62.0/sobjects/Account/0015g00000AcmeAAAR"); status != http.StatusOK {
		t.Errorf("REST call with the device grant's token: %d", status)
	}
	if status, code, _ := poll(t, srv, deviceCode); status != http.StatusBadRequest || code != "invalid_grant" {
		t.Errorf("second redemption = %d %s, want 400 invalid_grant", status, code)
	}
	if n := srv.LiveRefreshTokens(); n != 1 {
		t.Errorf("LiveRefreshTokens = %d, want 1", n)
	}
}

func TestDeviceErrors(t *testing.T) {
	tests := []struct {
		name string
		// setup runs after the device code request and returns the poll
		// form; nil means a poll of the issued code.
		setup    func(t *testing.T, srv *sftest.Server, userCode, deviceCode string) url.Values
		wantCode []string // error codes of successive polls
	}{
		{name: "denied", setup: func(t *testing.T, srv *sftest.Server, userCode, _ string) url.Values {
			if err := srv.DenyDevice(userCode); err != nil {
				t.Fatal(err)
			}
			return nil
		}, wantCode: []string{"access_denied", "access_denied"}},
		{name: "expired", setup: func(t *testing.T, srv *sftest.Server, userCode, _ string) url.Values {
			if err := srv.ExpireDevice(userCode); err != nil {
				t.Fatal(err)
			}
			return nil
		}, wantCode: []string{"expired_token"}},
		{name: "expired after approval", setup: func(t *testing.T, srv *sftest.Server, userCode, _ string) url.Values {
			if err := srv.ApproveDevice(userCode, jane); err != nil {
				t.Fatal(err)
			}
			if err := srv.ExpireDevice(userCode); err != nil {
				t.Fatal(err)
			}
			return nil
		}, wantCode: []string{"expired_token"}},
		{name: "slow_down knob", setup: func(_ *testing.T, srv *sftest.Server, _, _ string) url.Values {
			srv.SlowDownNext(2)
			return nil
		}, wantCode: []string{"slow_down", "slow_down", "authorization_pending"}},
		{name: "unknown device code", setup: func(*testing.T, *sftest.Server, string, string) url.Values {
			return pollForm("Kd9xmadeup")
		}, wantCode: []string{"invalid_grant"}},
		{name: "wrong secret", setup: func(_ *testing.T, _ *sftest.Server, _, deviceCode string) url.Values {
			f := pollForm(deviceCode)
			f.Set("client_secret", "nope")
			return f
		}, wantCode: []string{"invalid_client"}},
		{name: "unknown client", setup: func(_ *testing.T, _ *sftest.Server, _, deviceCode string) url.Values {
			f := pollForm(deviceCode)
			f.Set("client_id", "someone-else")
			return f
		}, wantCode: []string{"invalid_client_id"}},
		{name: "device flow turned off", setup: func(_ *testing.T, srv *sftest.Server, _, _ string) url.Values {
			srv.SetDeviceFlow(false)
			return nil
		}, wantCode: []string{"invalid_request"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mustServer(t, sftest.Options{})
			dc := mustDeviceCode(t, srv)
			userCode, _ := dc["user_code"].(string)
			deviceCode, _ := dc["device_code"].(string)
			form := tt.setup(t, srv, userCode, deviceCode)
			if form == nil {
				form = pollForm(deviceCode)
			}
			var got []string
			for range tt.wantCode {
				status, body := postForm(t, srv, tokenPath, form)
				code, _ := body["error"].(string)
				if status != http.StatusBadRequest || body["error_description"] == nil || body["access_token"] != nil {
					t.Errorf("poll answered %d %v, want 400 with an error_description and no token", status, body)
				}
				got = append(got, code)
			}
			if diff := cmp.Diff(tt.wantCode, got); diff != "" {
				t.Errorf("poll answers mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeviceCodeRequestErrors(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(url.Values)
		off      bool
		wantCode string
	}{
		{name: "unknown client", edit: func(f url.Values) { f.Set("client_id", "someone-else") }, wantCode: "invalid_client_id"},
		{name: "other response type", edit: func(f url.Values) { f.Set("response_type", "code") }, wantCode: "unsupported_response_type"},
		{name: "device flow off", off: true, wantCode: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mustServer(t, sftest.Options{})
			srv.SetDeviceFlow(!tt.off)
			form := deviceCodeForm()
			if tt.edit != nil {
				tt.edit(form)
			}
			status, body := postForm(t, srv, tokenPath, form)
			if status != http.StatusBadRequest || body["error"] != tt.wantCode || body["device_code"] != nil {
				t.Errorf("got %d %v, want 400 error=%s", status, body, tt.wantCode)
			}
			if got := srv.PendingUserCodes(); len(got) != 0 {
				t.Errorf("codes issued for a refused request: %v", got)
			}
		})
	}
	t.Run("on again", func(t *testing.T) {
		srv := mustServer(t, sftest.Options{})
		srv.SetDeviceFlow(false)
		srv.SetDeviceFlow(true)
		mustDeviceCode(t, srv)
	})
}

func TestDeviceInterval(t *testing.T) {
	tests := []struct {
		seconds int
		want    any // the "interval" field; nil when left out
	}{
		{0, nil},
		{1, float64(1)},
		{30, float64(30)},
	}
	for _, tt := range tests {
		srv := mustServer(t, sftest.Options{})
		srv.SetDeviceInterval(tt.seconds)
		if got := mustDeviceCode(t, srv)["interval"]; !cmp.Equal(tt.want, got) {
			t.Errorf("SetDeviceInterval(%d): interval = %v, want %v", tt.seconds, got, tt.want)
		}
	}
}

// Polls sooner than the interval answer slow_down when enforced; the wait
// is a minute, so no test machine is slow enough to poll on time by chance.
func TestEnforceInterval(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	srv.SetDeviceInterval(60)
	srv.EnforceInterval(true)
	deviceCode, _ := mustDeviceCode(t, srv)["device_code"].(string)
	var got []string
	for range 2 {
		_, code, _ := poll(t, srv, deviceCode)
		got = append(got, code)
	}
	srv.EnforceInterval(false)
	_, code, _ := poll(t, srv, deviceCode)
	got = append(got, code)
	if diff := cmp.Diff([]string{"slow_down", "slow_down", "authorization_pending"}, got); diff != "" {
		t.Errorf("poll answers mismatch (-want +got):\n%s", diff)
	}
}

func TestDeviceKnobErrors(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	userCode, _ := mustDeviceCode(t, srv)["user_code"].(string)
	if err := srv.ApproveDevice("NOPE1234", jane); err == nil {
		t.Error("ApproveDevice of an unknown code succeeded")
	}
	if err := srv.ApproveDevice(userCode, "nobody@acme.example"); err == nil {
		t.Error("ApproveDevice as an unknown user succeeded")
	}
	if err := srv.ExpireDevice("NOPE1234"); err == nil {
		t.Error("ExpireDevice of an unknown code succeeded")
	}
	if err := srv.DenyDevice(userCode); err != nil {
		t.Fatal(err)
	}
	if err := srv.ApproveDevice(userCode, jane); err == nil {
		t.Error("ApproveDevice of a denied code succeeded")
	}
}

// A person can type the code at the verification page, as at Salesforce.
func TestVerificationPage(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	dc := mustDeviceCode(t, srv)
	userCode, _ := dc["user_code"].(string)
	deviceCode, _ := dc["device_code"].(string)
	resp, err := http.Get(dc["verification_uri"].(string))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `name="user_code"`) {
		t.Fatalf("verification page answered %d:\n%s", resp.StatusCode, page)
	}
	typed := strings.ToLower(userCode[:4] + "-" + userCode[4:])
	resp, err = http.PostForm(srv.URL+"/setup/connect", url.Values{"user_code": {typed}, "username": {sam}, "decision": {"allow"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("allow answered %d", resp.StatusCode)
	}
	if status, _, g := poll(t, srv, deviceCode); status != http.StatusOK || g["id"] != srv.IdentityURL(sam) {
		t.Errorf("poll after allowing as %s = %d %v", sam, status, g)
	}
	if n := srv.Calls(sftest.EndpointVerify); n != 2 {
		t.Errorf("Calls(verify) = %d, want 2", n)
	}
}

func TestDeviceAutoApprove(t *testing.T) {
	srv := mustServer(t, sftest.Options{ClientID: testClientID, ClientSecret: testSecret, AutoApprove: sam})
	deviceCode, _ := mustDeviceCode(t, srv)["device_code"].(string)
	if status, _, g := poll(t, srv, deviceCode); status != http.StatusOK || g["id"] != srv.IdentityURL(sam) {
		t.Errorf("first poll with AutoApprove = %d %v, want a grant for %s", status, g, sam)
	}
}

func TestSetEmailAndLiveTokens(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	if err := srv.SetEmail(jane, "jane.doe@elsewhere.example"); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetEmail("nobody@acme.example", "x@y.example"); err == nil {
		t.Error("SetEmail of an unknown user succeeded")
	}
	g, err := srv.Login(jane)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, g.ID, nil)
	req.Header.Set("Authorization", "Bearer "+g.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ident struct{ Email string }
	err = json.NewDecoder(resp.Body).Decode(&ident)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var usersEmail string
	for _, u := range srv.Users() {
		if u.Username == jane {
			usersEmail = u.Email
		}
	}
	got := map[string]string{"identity": ident.Email, "Users": usersEmail}
	want := map[string]string{"identity": "jane.doe@elsewhere.example", "Users": "jane.doe@elsewhere.example"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("email mismatch (-want +got):\n%s", diff)
	}

	if n := srv.LiveRefreshTokens(); n != 1 {
		t.Errorf("LiveRefreshTokens after a login = %d, want 1", n)
	}
	srv.RevokeRefreshToken(g.RefreshToken)
	if n := srv.LiveRefreshTokens(); n != 0 {
		t.Errorf("LiveRefreshTokens after revoking = %d, want 0", n)
	}
}

// email_verified is true at the identity URL and userinfo until
// SetEmailVerified turns it off, for that user only.
func TestSetEmailVerified(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	if err := srv.SetEmailVerified("nobody@acme.example", false); err == nil {
		t.Error("SetEmailVerified of an unknown user succeeded")
	}
	// verified reads email_verified from the identity URL and userinfo as
	// user, and returns them in that order.
	verified := func(user string) [2]any {
		g, err := srv.Login(user)
		if err != nil {
			t.Fatal(err)
		}
		var got [2]any
		for i, u := range []string{g.ID, srv.URL + "/services/oauth2/userinfo"} {
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			req.Header.Set("Authorization", "Bearer "+g.AccessToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
			}
			got[i] = body["email_verified"]
		}
		return got
	}
	steps := []struct {
		name string
		set  func() error
		user string
		want [2]any
	}{
		{"by default", func() error { return nil }, jane, [2]any{true, true}},
		{"turned off", func() error { return srv.SetEmailVerified(jane, false) }, jane, [2]any{false, false}},
		{"another user", func() error { return nil }, sam, [2]any{true, true}},
		{"turned on again", func() error { return srv.SetEmailVerified(jane, true) }, jane, [2]any{true, true}},
	}
	for _, st := range steps {
		if err := st.set(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if diff := cmp.Diff(st.want, verified(st.user)); diff != "" {
			t.Errorf("%s: email_verified (identity, userinfo) mismatch (-want +got):\n%s", st.name, diff)
		}
	}
}
