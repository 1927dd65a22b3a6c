package main

import (
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
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
			cfg, _, err := parseConfig("run", tt.args, func(k string) string { return env[k] }, io.Discard, groupSalesforce)
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
