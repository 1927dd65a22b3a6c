package auth

import (
	"net/url"
	"strings"
	"testing"
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

func TestParseLoginURL(t *testing.T) {
	tests := []struct {
		raw string
		ok  bool
	}{
		{"https://login.salesforce.com", true},
		{"https://acme.my.salesforce.com/", true},
		{"http://127.0.0.1:8123", true},
		{"http://localhost:8123", true},
		{"http://[::1]:8123", true},
		{"http://login.salesforce.com", false}, // secrets in clear
		{"http://10.0.0.5", false},
		{"ftp://login.salesforce.com", false},
		{"https://login.salesforce.com/services", false},
		{"https://user@login.salesforce.com", false},
		{"login.salesforce.com", false},
	}
	for _, tt := range tests {
		if _, err := ParseLoginURL(tt.raw); (err == nil) != tt.ok {
			t.Errorf("ParseLoginURL(%q) = %v, want ok %v", tt.raw, err, tt.ok)
		}
	}
}
