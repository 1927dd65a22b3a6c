package main

import (
	"net/http"
	"testing"
)

// FuzzDoctorVerdicts feeds doctor's readers of Salesforce's answers (to the
// authorize probe, the token probes and the device code probe) with
// anything: they must never panic, and every failure must come with a fix.
func FuzzDoctorVerdicts(f *testing.F) {
	for _, seed := range []struct {
		status   int
		location string
		body     string
	}{
		{302, "https://login.salesforce.com/?startURL=x", ""},
		{302, "http://127.0.0.1:8787/oauth/callback?error=redirect_uri_mismatch&error_description=x", ""},
		{200, "", "<html>error=invalid_client_id&amp;error_description=client identifier invalid</html>"},
		{400, "", `{"error":"invalid_grant","error_description":"invalid authorization code"}`},
		{400, "", `{"error":"invalid_client","error_description":"invalid client credentials"}`},
		{200, "", `{"device_code":"d","user_code":"U","verification_uri":"https://login.salesforce.com/setup/connect","interval":5}`},
		{400, "", `{"error":"invalid_request","error_description":"device flow is not enabled"}`},
		{500, "%zz://\x00", "\xff\xfe"},
	} {
		f.Add(seed.status, seed.location, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, status int, location string, body []byte) {
		if status < 100 || status > 599 {
			status = http.StatusBadRequest
		}
		for _, r := range []checkResult{
			authorizeVerdict(status, location, body, "http://127.0.0.1:8787/oauth/callback", "cid"),
			tokenVerdict(status, body, true, "cid", false),
			tokenVerdict(status, body, false, "cid", true),
			deviceVerdict(status, body, "cid"),
		} {
			if r.Status == statusFail && r.Fix == "" {
				t.Fatalf("%s failed without a fix: %s", r.Name, r.Detail)
			}
			if r.Name == "" || r.Detail == "" {
				t.Fatalf("a check line without a name or detail: %+v", r)
			}
		}
	})
}
