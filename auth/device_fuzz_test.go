package auth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzDeviceAnswers feeds Salesforce's answers to the device flow (the code
// request, then a poll, then the grant check) with anything at all: they
// must be parsed or refused, never panic, and a refused answer must not
// leak the device code it carried into the error.
func FuzzDeviceAnswers(f *testing.F) {
	for _, seed := range []struct {
		status int
		body   string
	}{
		{200, `{"device_code":"dc-secret-1","user_code":"ABCD-1234","verification_uri":"https://login.salesforce.com/setup/connect","interval":5}`},
		{200, `{"device_code":"dc-secret-1","user_code":"ABCD","verification_uri":"https://evil.example/setup/connect","interval":"5"}`},
		{200, `{"device_code":"","user_code":"<b>","verification_uri":"javascript:alert(1)","interval":-1,"expires_in":1e309}`},
		{400, `{"error":"authorization_pending","error_description":"pending"}`},
		{400, `{"error":"slow_down"}`},
		{400, `{"error":"access_denied"}`},
		{400, `{"error":"invalid_client_id","error_description":"client identifier invalid"}`},
		{200, `{"access_token":"00Dxx!AQ","refresh_token":"5Aep","instance_url":"https://acme.my.salesforce.com","id":"https://login.salesforce.com/id/00D5g000004FbcDEAS/0055g00000JaneAAAR","issued_at":"1700000000000","signature":"c2ln","scope":"api refresh_token"}`},
		{200, `{"access_token":1,"instance_url":["x"],"id":{},"issued_at":"NaN"}`},
		{503, `<html>down</html>`},
		{200, `null`},
	} {
		f.Add(seed.status, []byte(seed.body))
	}
	login, err := url.Parse("https://login.salesforce.com")
	if err != nil {
		f.Fatal(err)
	}
	org := Org{LoginURL: login, ClientID: "fuzz-client", ClientSecret: "fuzz-secret"}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 599 {
			status = http.StatusOK
		}
		if da, err := parseDeviceAuth(status, body, login); err == nil {
			if da.deviceCode == "" || !plainUserCode(da.userCode) || da.interval <= 0 || da.life <= 0 {
				t.Fatalf("accepted a device answer it should not have: %+v", da)
			}
			if u, perr := url.Parse(da.verificationURI); perr != nil || (u.Scheme != "https" && !sameOrigin(u, login)) {
				t.Fatalf("accepted verification URI %q", da.verificationURI)
			}
		}
		res, tok, err := parsePoll(status, body)
		if err != nil && strings.Contains(err.Error(), "dc-secret-1") {
			t.Fatalf("the error shows the device code: %v", err)
		}
		if res == pollGranted && tok != nil {
			// Short values occur in the message by chance ("a" in "lacks").
			if _, err := checkGrant(org, tok); err != nil && len(tok.AccessToken) >= 8 && strings.Contains(err.Error(), tok.AccessToken) {
				t.Fatalf("the error shows the access token: %v", err)
			}
		}
	})
}
