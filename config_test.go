package main

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/auth"
)

// The settings issue 5 added: the connect flow and its email default, TLS
// files that come in pairs, and the admin address.
func TestConfigConnectSettings(t *testing.T) {
	base := map[string]string{"SALESFORCE_CLIENT_ID": "cid"}
	type got struct {
		Flow       auth.Flow
		EmailMatch bool
		Admin      string
	}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    got
		problem string // "" when the settings are valid
	}{
		{"defaults", nil, nil, got{auth.FlowWeb, false, ""}, ""},
		{"device checks emails by default", map[string]string{"FORCEBIND_CONNECT_FLOW": "device"}, nil, got{auth.FlowDevice, true, ""}, ""},
		{"device without the check", map[string]string{"FORCEBIND_CONNECT_FLOW": "device", "FORCEBIND_REQUIRE_EMAIL_MATCH": "false"}, nil, got{auth.FlowDevice, false, ""}, ""},
		{"web with the check", map[string]string{"FORCEBIND_REQUIRE_EMAIL_MATCH": "on"}, nil, got{auth.FlowWeb, true, ""}, ""},
		{"flag wins", map[string]string{"FORCEBIND_CONNECT_FLOW": "web"}, []string{"-connect-flow", "device"}, got{auth.FlowDevice, true, ""}, ""},
		{"admin address", map[string]string{"FORCEBIND_ADMIN_LISTEN": "127.0.0.1:9090"}, nil, got{auth.FlowWeb, false, "127.0.0.1:9090"}, ""},
		{"unknown flow", map[string]string{"FORCEBIND_CONNECT_FLOW": "implicit"}, nil, got{}, `FORCEBIND_CONNECT_FLOW "implicit" is not web or device`},
		{"unclear boolean", map[string]string{"FORCEBIND_REQUIRE_EMAIL_MATCH": "maybe"}, nil, got{}, `FORCEBIND_REQUIRE_EMAIL_MATCH "maybe" is not true or false`},
		{"certificate without key", map[string]string{"FORCEBIND_TLS_CERT_FILE": "/etc/fb/cert.pem"}, nil, got{}, "FORCEBIND_TLS_CERT_FILE and FORCEBIND_TLS_KEY_FILE must be set together"},
		{"key without certificate", map[string]string{"FORCEBIND_TLS_KEY_FILE": "/etc/fb/key.pem"}, nil, got{}, "must be set together"},
		{"admin not host:port", map[string]string{"FORCEBIND_ADMIN_LISTEN": "9090"}, nil, got{}, `FORCEBIND_ADMIN_LISTEN "9090" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, _, err := parseConfig("run", tt.args, func(k string) string { return env[k] }, io.Discard, groupSalesforce, groupListen)
			if tt.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("error %v, want one saying %q", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got{cfg.ConnectFlow, cfg.RequireEmailMatch, cfg.AdminListen}); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Secrets may come from files (Docker secrets, systemd credentials), which
// keeps them out of the environment; the content never reaches an error.
func TestConfigSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	app := write("app", "xapp-1-from-a-file\n")
	bot := write("bot", "  xoxb-from-a-file  \n")
	secret := write("secret", "s3cr3t-from-a-file")
	empty := write("empty", "\n")
	big := write("big", strings.Repeat("x", maxSecretFile+1))
	base := map[string]string{"SALESFORCE_CLIENT_ID": "cid", "SLACK_APP_TOKEN_FILE": app, "SLACK_BOT_TOKEN_FILE": bot, "SALESFORCE_CLIENT_SECRET_FILE": secret}

	cfg, _, err := parseConfig("run", nil, func(k string) string { return base[k] }, io.Discard, groupSlack, groupSalesforce)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"xapp-1-from-a-file", "xoxb-from-a-file", "s3cr3t-from-a-file"}
	if diff := cmp.Diff(want, []string{cfg.SlackAppToken, cfg.SlackBotToken, cfg.ClientSecret}); diff != "" {
		t.Errorf("secrets mismatch (-want +got):\n%s", diff)
	}

	for _, tt := range []struct {
		name    string
		env     map[string]string
		problem string
	}{
		{"both", map[string]string{"SLACK_BOT_TOKEN": "xoxb-env"}, "SLACK_BOT_TOKEN and SLACK_BOT_TOKEN_FILE are both set"},
		{"missing", map[string]string{"SLACK_APP_TOKEN_FILE": filepath.Join(dir, "nope")}, "SLACK_APP_TOKEN_FILE: open"},
		{"empty", map[string]string{"SALESFORCE_CLIENT_SECRET_FILE": empty}, "SALESFORCE_CLIENT_SECRET_FILE: " + empty + " is empty"},
		{"too big", map[string]string{"SLACK_BOT_TOKEN_FILE": big}, "is larger than"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := maps.Clone(base)
			maps.Copy(env, tt.env)
			_, _, err := parseConfig("run", nil, func(k string) string { return env[k] }, io.Discard, groupSlack, groupSalesforce)
			if err == nil || !strings.Contains(err.Error(), tt.problem) {
				t.Fatalf("error %v, want one saying %q", err, tt.problem)
			}
			for _, s := range want {
				if strings.Contains(err.Error(), s) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
}

// The settings issue 9 added or tightened: where secrets and codes may go
// (the login host, the callback URL) and which orgs people may bind.
func TestConfigHardening(t *testing.T) {
	base := map[string]string{"SALESFORCE_CLIENT_ID": "cid"}
	type got struct {
		Orgs   []string
		Custom bool
		Pprof  bool
	}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    got
		problem string // "" when the settings are valid
	}{
		{"defaults", nil, nil, got{}, ""},
		{"sandbox", map[string]string{"SALESFORCE_LOGIN_URL": "https://test.salesforce.com"}, nil, got{}, ""},
		{"My Domain", map[string]string{"SALESFORCE_LOGIN_URL": "https://acme--uat.sandbox.my.salesforce.com"}, nil, got{}, ""},
		{"fake org on loopback", map[string]string{"SALESFORCE_LOGIN_URL": "http://127.0.0.1:9999"}, nil, got{}, ""},
		{"look-alike login host", map[string]string{"SALESFORCE_LOGIN_URL": "https://login.salesforce.com.evil.example"}, nil, got{},
			"SALESFORCE_LOGIN_URL: login URL \"https://login.salesforce.com.evil.example\": not a Salesforce login host"},
		{"custom login host refused names the way out", map[string]string{"SALESFORCE_LOGIN_URL": "https://sso.acme.example"}, nil, got{},
			"set FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST=true"},
		{"custom login host allowed", map[string]string{"SALESFORCE_LOGIN_URL": "https://sso.acme.example", "FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST": "true"}, nil,
			got{Custom: true}, ""},
		{"custom login host by flag", map[string]string{"SALESFORCE_LOGIN_URL": "https://sso.acme.example"}, []string{"-allow-custom-login-host", "yes"},
			got{Custom: true}, ""},
		{"custom host still wants https", map[string]string{"SALESFORCE_LOGIN_URL": "http://sso.acme.example", "FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST": "true"}, nil,
			got{}, "scheme must be https"},
		{"unclear custom switch", map[string]string{"FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST": "sure"}, nil, got{},
			`FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST "sure" is not true or false`},
		{"https callback on a network host", map[string]string{"FORCEBIND_CALLBACK_URL": "https://forcebind.corp.example/oauth/callback"}, nil, got{}, ""},
		{"http callback on IPv6 loopback", map[string]string{"FORCEBIND_CALLBACK_URL": "http://[::1]:8787/oauth/callback"}, nil, got{}, ""},
		{"http callback on a network host", map[string]string{"FORCEBIND_CALLBACK_URL": "http://forcebind.corp.example/oauth/callback"}, nil, got{},
			"FORCEBIND_CALLBACK_URL: callback URL \"http://forcebind.corp.example/oauth/callback\": plain http is allowed only on a loopback host"},
		{"http callback on a private address", map[string]string{"FORCEBIND_CALLBACK_URL": "http://10.1.2.3:8787/oauth/callback"}, nil, got{},
			"would cross the network unencrypted"},
		{"callback on another path", map[string]string{"FORCEBIND_CALLBACK_URL": "https://forcebind.corp.example/callback"}, nil, got{},
			"must end in /oauth/callback"},
		{"allowed orgs", map[string]string{"FORCEBIND_ALLOWED_ORG_IDS": "00D5g000004FakE, 00d000000000062eaa"}, nil,
			got{Orgs: []string{"00D5g000004FakE", "00D000000000062"}}, ""},
		{"allowed orgs by flag", nil, []string{"-allowed-org-ids", "00D000000000062"}, got{Orgs: []string{"00D000000000062"}}, ""},
		{"a user id among the orgs", map[string]string{"FORCEBIND_ALLOWED_ORG_IDS": "00D5g000004FakE,0055g00000JaneAAAR"}, nil, got{},
			`FORCEBIND_ALLOWED_ORG_IDS: org id "0055g00000JaneAAAR": not an org id`},
		{"pprof on the admin listener", map[string]string{"FORCEBIND_PPROF": "true", "FORCEBIND_ADMIN_LISTEN": "127.0.0.1:9090"}, nil, got{Pprof: true}, ""},
		{"pprof without an admin listener", map[string]string{"FORCEBIND_PPROF": "true"}, nil, got{},
			"FORCEBIND_PPROF=true needs FORCEBIND_ADMIN_LISTEN"},
		{"unclear pprof switch", map[string]string{"FORCEBIND_PPROF": "maybe", "FORCEBIND_ADMIN_LISTEN": "127.0.0.1:9090"}, nil, got{},
			`FORCEBIND_PPROF "maybe" is not true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := maps.Clone(base)
			maps.Copy(env, tt.env)
			cfg, _, err := parseConfig("run", tt.args, func(k string) string { return env[k] }, io.Discard, groupSalesforce, groupListen)
			if tt.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("error %v, want one saying %q", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got{cfg.AllowedOrgIDs, cfg.AllowCustomLoginHost, cfg.Pprof}); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// An unsafe callback URL or login host stops `forcebind run` at start,
// with exit 2 and the reason, before Slack or Salesforce is contacted.
func TestRunRefusesUnsafeURLs(t *testing.T) {
	var calls atomic.Int32
	remote := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	t.Cleanup(remote.Close)
	for _, tt := range []struct {
		name, setting, value, want string
	}{
		{"http callback", "FORCEBIND_CALLBACK_URL", "http://forcebind.corp.example/oauth/callback", "plain http is allowed only on a loopback host"},
		{"foreign login host", "SALESFORCE_LOGIN_URL", "https://login.salesforce.co", "not a Salesforce login host"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{
				"SLACK_APP_TOKEN": "xapp-1-test", "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": remote.URL + "/api/",
				"SALESFORCE_CLIENT_ID": "cid", "SALESFORCE_LOGIN_URL": remote.URL, "FORCEBIND_LISTEN": "127.0.0.1:0",
				"FORCEBIND_DB": filepath.Join(t.TempDir(), "fb.db"), "FORCEBIND_KEY": mustKey(t),
			}
			env[tt.setting] = tt.value
			code, _, stderr := runCLI(t, env, "run")
			if code != exitUsage || !strings.Contains(stderr, tt.setting) || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d naming %s: %q", code, stderr, exitUsage, tt.setting, tt.want)
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("%d calls went out before the configuration was refused", n)
			}
		})
	}
}
