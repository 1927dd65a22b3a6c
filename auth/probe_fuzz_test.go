package auth

import (
	"errors"
	"testing"
)

// FuzzAuthorizeAnswer feeds the reader of the authorize endpoint's answers
// (the probe's) with anything: it never panics, and it either accepts or
// returns an *OAuthError with the answer's status and a bounded code.
func FuzzAuthorizeAnswer(f *testing.F) {
	for _, seed := range []struct {
		status   int
		location string
		body     string
	}{
		{302, "https://login.salesforce.com/?startURL=x", ""},
		{302, "http://127.0.0.1:8787/oauth/callback?error=redirect_uri_mismatch&error_description=x", ""},
		{200, "", "<html>error=invalid_client_id&amp;error_description=client identifier invalid</html>"},
		{400, "", `{"error":"invalid_grant","error_description":"invalid authorization code"}`},
		{500, "%zz://\x00", "\xff\xfe"},
	} {
		f.Add(seed.status, seed.location, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, status int, location string, body []byte) {
		login, err := readAuthorize(status, location, body, "http://127.0.0.1:8787/oauth/callback")
		if err == nil {
			return
		}
		var oe *OAuthError
		if !errors.As(err, &oe) || login {
			t.Fatalf("login %v with %v, want an OAuth error and no login", login, err)
		}
		if oe.Status != status || len(oe.Code) > 64 {
			t.Fatalf("%+v for status %d", oe, status)
		}
	})
}
