package auth

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCheckTokenURL(t *testing.T) {
	login, _ := url.Parse("https://acme.my.salesforce.com")
	local, _ := url.Parse("http://127.0.0.1:8123")
	tests := []struct {
		login *url.URL
		raw   string
		ok    bool
	}{
		{login, "https://acme.my.salesforce.com", true},
		{login, "https://na1.salesforce.com", true},
		{login, "https://acme--sandbox.sandbox.my.salesforce.com", true},
		{login, "https://acme.lightning.force.com", true},
		{login, "https://ACME.MY.SALESFORCE.COM:443", true},
		{login, "http://na1.salesforce.com", false},           // not https
		{login, "https://salesforce.com.evil.example", false}, // suffix trick
		{login, "https://evilsalesforce.com", false},          // not a subdomain
		{login, "https://user:pw@na1.salesforce.com", false},  // userinfo
		{login, "https://203.0.113.7", false},                 // an address
		{login, "javascript:alert(1)", false},                 //
		{login, "//na1.salesforce.com", false},                // no scheme
		{local, "http://127.0.0.1:8123", true},                // same origin as the login URL (fake org, My Domain)
		{local, "http://127.0.0.1:8124", false},               // another port
		{local, "https://127.0.0.1:8123", false},              // another scheme
	}
	for _, tt := range tests {
		_, err := checkTokenURL(tt.raw, tt.login)
		if (err == nil) != tt.ok {
			t.Errorf("checkTokenURL(%q, login %s) = %v, want ok %v", tt.raw, tt.login, err, tt.ok)
		}
	}
}

func TestParseIdentityPath(t *testing.T) {
	tests := []struct {
		path      string
		org, user string
	}{
		{"/id/00D5g000004FbcDEAS/0055g00000JaneAAAR", "00D5g000004FbcDEAS", "0055g00000JaneAAAR"},
		{"/id/00D5g000004FbcD/0055g00000JaneA", "00D5g000004FbcD", "0055g00000JaneA"},
		{"/id/00D5g000004FbcDEAS", "", ""},
		{"/id/0055g00000JaneAAAR/00D5g000004FbcDEAS", "", ""},
		{"/id/00D5g000004FbcDEAS/0055g00000JaneAAAR/extra", "", ""},
		{"/id/00D5g000004Fbc!EAS/0055g00000JaneAAAR", "", ""},
		{"/services/oauth2/userinfo", "", ""},
		{"/id/00D5g000004FbcDEAA/0055g00000JaneAAAR", "", ""}, // wrong checksum
	}
	for _, tt := range tests {
		org, user, err := parseIdentityPath(&url.URL{Path: tt.path})
		if org != tt.org || user != tt.user || (err == nil) != (tt.org != "") {
			t.Errorf("parseIdentityPath(%q) = %q, %q, %v", tt.path, org, user, err)
		}
	}
}

func TestVerifySignature(t *testing.T) {
	// Base64(HMAC-SHA256("s3cret", id + issued_at)), computed independently.
	id, issued := "https://login.salesforce.com/id/00D5g000004FakeEAA/0055g00000JaneAAAR", "1700000000000"
	good := "3mZko0mZrpFQgQJXNo+xnI+mz8PtS62vYmauHMwFa7k="
	if !verifySignature("s3cret", id, issued, good) {
		t.Fatal("a good signature does not verify")
	}
	for _, bad := range []string{"", "not base64!", strings.Replace(good, "3", "4", 1)} {
		if verifySignature("s3cret", id, issued, bad) {
			t.Errorf("signature %q verified", bad)
		}
	}
	if verifySignature("other", id, issued, good) || verifySignature("s3cret", id, "1700000000001", good) {
		t.Error("signature verified under another secret or issued_at")
	}
}

// FuzzParseCallback: any query gives a callback with a well-formed state and
// exactly one of code or error, or an error; never a panic.
func FuzzParseCallback(f *testing.F) {
	f.Add("code=aPrx4sgoM2Nd1zWeFVlOWveD0HhYmiDiLmlLnXEBgX01tpVOQMWVSUuafFPHu3kCSjzk4CUTZg%3D%3D&state=QrE6J4YbSz0B3nCwJ1o1G4zqD0Q9u3Y5lF1nK2mT8aE")
	f.Add("error=access_denied&error_description=end-user+denied+authorization&state=abc")
	f.Add("state=a&state=b&code=c")
	f.Add("code=%zz&state=")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		c, err := parseCallback(q)
		if err != nil {
			return
		}
		if c.state == "" || !isBase64URL(c.state) || len(c.state) > 128 || (c.code == "") == (c.errCode == "") {
			t.Errorf("accepted %q as %+v", raw, c)
		}
	})
}

// A login URL must be a Salesforce host or loopback unless custom hosts
// are allowed; the rest of its form is checked either way.
func TestParseLoginURL(t *testing.T) {
	tests := []struct {
		raw          string
		ok, okCustom bool // allowed with custom hosts refused, and allowed
	}{
		{"https://login.salesforce.com", true, true},
		{"https://test.salesforce.com", true, true},
		{"https://acme.my.salesforce.com/", true, true},
		{"https://acme--uat.sandbox.my.salesforce.com", true, true},
		{"https://acme.lightning.force.com", true, true},
		{"https://acme.my.salesforce.mil", true, true},
		{"https://LOGIN.SALESFORCE.COM", true, true},
		{"http://127.0.0.1:8123", true, true},
		{"http://localhost:8123", true, true},
		{"http://[::1]:8123", true, true},
		{"https://127.0.0.1:8443", true, true},
		{"https://login.salesforce.co", false, true}, // a typo, or a look-alike
		{"https://salesforce.com.evil.example", false, true},
		{"https://evilsalesforce.com", false, true},
		{"https://login.salesforce.com.", false, true},
		{"https://sso.acme.example", false, true},
		{"https://10.0.0.5", false, true},
		{"http://login.salesforce.com", false, false}, // secrets in clear
		{"http://10.0.0.5", false, false},
		{"http://app.localhost:8123", false, false},
		{"ftp://login.salesforce.com", false, false},
		{"https://login.salesforce.com/services", false, false},
		{"https://user@login.salesforce.com", false, false},
		{"login.salesforce.com", false, false},
	}
	for _, tt := range tests {
		_, err := ParseLoginURL(tt.raw, false)
		if (err == nil) != tt.ok {
			t.Errorf("ParseLoginURL(%q, false) = %v, want ok %v", tt.raw, err, tt.ok)
		}
		if err != nil && tt.okCustom != errors.Is(err, ErrNotSalesforceHost) {
			t.Errorf("ParseLoginURL(%q, false) = %v; ErrNotSalesforceHost should say whether custom hosts would take it", tt.raw, err)
		}
		if _, err := ParseLoginURL(tt.raw, true); (err == nil) != tt.okCustom {
			t.Errorf("ParseLoginURL(%q, true) = %v, want ok %v", tt.raw, err, tt.okCustom)
		}
	}
}

// A callback URL may be plain http only where nothing crosses a network.
func TestParseCallbackURL(t *testing.T) {
	tests := []struct {
		raw string
		ok  bool
	}{
		{"https://forcebind.corp.example/oauth/callback", true},
		{"https://10.0.0.5:8443/oauth/callback", true},
		{"http://localhost:8787/oauth/callback", true},
		{"http://LOCALHOST:8787/oauth/callback", true},
		{"http://127.0.0.1:8787/oauth/callback", true},
		{"http://127.9.9.9/oauth/callback", true},
		{"http://[::1]:8787/oauth/callback", true},
		{"http://forcebind.corp.example/oauth/callback", false},
		{"http://10.0.0.5:8787/oauth/callback", false},
		{"http://0.0.0.0:8787/oauth/callback", false},
		{"http://localhost.corp.example/oauth/callback", false},
		{"http://app.localhost/oauth/callback", false},
		{"http://[::ffff:10.0.0.5]/oauth/callback", false},
		{"https://user@forcebind.corp.example/oauth/callback", false},
		{"ftp://forcebind.corp.example/oauth/callback", false},
		{"/oauth/callback", false},
	}
	for _, tt := range tests {
		if _, err := ParseCallbackURL(tt.raw); (err == nil) != tt.ok {
			t.Errorf("ParseCallbackURL(%q) = %v, want ok %v", tt.raw, err, tt.ok)
		}
	}
}

// Org ids come in two forms: 15 characters, case-sensitive, and 18, whose
// last three say the case of the first fifteen.
func TestParseOrgIDs(t *testing.T) {
	const id15, id18 = "00D5g000004FakE", "00D5g000004FakEEAS"
	tests := []struct {
		name, list string
		want       []string
		problem    string // "" when the list is valid
	}{
		{"empty", "", nil, ""},
		{"only commas and space", " , ,", nil, ""},
		{"15 characters", id15, []string{id15}, ""},
		{"18 characters", id18, []string{id15}, ""},
		{"18 characters in another case", strings.ToLower(id18), []string{id15}, ""},
		{"18 characters upper case", strings.ToUpper(id18), []string{id15}, ""},
		{"several, with space", " " + id15 + " ,00D000000000062", []string{id15, "00D000000000062"}, ""},
		{"15 characters lowered is another id", strings.ToLower(id15), nil, "not an org id"},
		{"a user id", "0055g00000JaneAAAR", nil, "not an org id"},
		{"suffix mistyped", id15 + "EAA", nil, "last three characters"},
		{"suffix mistyped, lower case", strings.ToLower(id15) + "eaa", []string{"00D5g000004fake"}, ""}, // another org's id, as Salesforce reads it
		{"suffix on a digit", "00D000000000062ZZZ", nil, "last three characters"},
		{"too short", "00D5g000004Fak", nil, "want 15 or 18"},
		{"not alphanumeric", "00D5g000004Fa-E", nil, "want 15 or 18"},
		{"every bad one named", "00Dx,00Dy", nil, `"00Dx"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOrgIDs(tt.list)
			if tt.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("ParseOrgIDs(%q) = %v, %v; want an error saying %q", tt.list, got, err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
