package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/bot"
	"github.com/forcebind/forcebind/bot/slacktest"
	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// The secrets of a doctor fixture; every run checks that none is printed.
const (
	doctorAppToken     = "xapp-1-A0APP-doctor-SECRET-app-token"
	doctorBotToken     = "xoxb-doctor-SECRET-bot-token"
	doctorClientID     = "doctor-consumer-key"
	doctorClientSecret = "doctor-SECRET-consumer-secret"
)

// doctorFixture is a deployment against the fakes: a Slack workspace, a
// Salesforce org whose connected app has a secret, a store holding one
// binding, and a free port for the listener.
type doctorFixture struct {
	env   map[string]string
	slack *slacktest.Server
	sf    *sftest.Server
	dir   string
	port  string
}

// anyCallback, as sftest.Options.RedirectURI of a fixture, makes the
// connected app accept any callback URL, for tests that change it; noSecret,
// as its ClientSecret, makes it require no secret.
const (
	anyCallback = "*"
	noSecret    = "-"
)

// mustDoctorFixture starts the fakes. In sf, an empty client id and secret
// take the fixture's, and an empty RedirectURI the fixture's callback URL.
// withSlackScopes gives the fixture a Slack whose bot token has scopes.
func withSlackScopes(scopes ...string) func(*testing.T, *doctorFixture) {
	return func(t *testing.T, f *doctorFixture) {
		f.slack = slacktest.NewServer(slacktest.Options{AppToken: doctorAppToken, BotToken: doctorBotToken, Scopes: scopes})
		t.Cleanup(f.slack.Close)
		f.env["SLACK_API_URL"] = f.slack.APIURL
	}
}

func mustDoctorFixture(t *testing.T, sf sftest.Options) *doctorFixture {
	t.Helper()
	f := &doctorFixture{
		slack: slacktest.NewServer(slacktest.Options{AppToken: doctorAppToken, BotToken: doctorBotToken}),
		dir:   t.TempDir(),
		port:  mustFreePort(t),
	}
	t.Cleanup(f.slack.Close)
	callback := "http://127.0.0.1:" + f.port + "/oauth/callback"
	if sf.ClientID == "" {
		sf.ClientID = doctorClientID
	}
	switch sf.ClientSecret {
	case "":
		sf.ClientSecret = doctorClientSecret
	case noSecret:
		sf.ClientSecret = ""
	}
	switch sf.RedirectURI {
	case "":
		sf.RedirectURI = callback
	case anyCallback:
		sf.RedirectURI = ""
	}
	f.sf = sftest.NewServer(sf)
	t.Cleanup(f.sf.Close)
	key := mustKey(t)
	db := filepath.Join(f.dir, "forcebind.db")
	mustStoreWithBinding(t, db, key)
	f.env = map[string]string{
		"SLACK_APP_TOKEN": doctorAppToken, "SLACK_BOT_TOKEN": doctorBotToken, "SLACK_API_URL": f.slack.APIURL,
		"SALESFORCE_CLIENT_ID": doctorClientID, "SALESFORCE_CLIENT_SECRET": doctorClientSecret, "SALESFORCE_LOGIN_URL": f.sf.URL,
		"FORCEBIND_LISTEN":       "127.0.0.1:" + f.port,
		"FORCEBIND_CALLBACK_URL": callback,
		"FORCEBIND_DB":           db, "FORCEBIND_KEY": key,
	}
	return f
}

func mustStoreWithBinding(t *testing.T, path, key string) {
	t.Helper()
	kr, err := store.KeyringFromEnv(key)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, bolt.Options{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	b := store.Binding{TeamID: "T0001", UserID: "U0JANE", OrgID: "00D000000000001AAA", SalesforceUserID: "005000000000001AAA",
		InstanceURL: "https://acme.my.salesforce.com", AccessToken: "access-1", RefreshToken: "refresh-1"}
	if err := db.PutBinding(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// mustFreePort returns a port nothing listens on at the moment.
func mustFreePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// runDoctorCLI runs `forcebind doctor args…` with env, checks that no
// secret of env reached the output (and that the scrubber, the second line
// of defence, never had to act), and returns the parsed checklist.
func runDoctorCLI(t *testing.T, env map[string]string, args ...string) (code int, out string, got []checkResult) {
	t.Helper()
	code, out, errOut := runCLI(t, env, append([]string{"doctor"}, args...)...)
	for _, k := range []string{"SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "SALESFORCE_CLIENT_SECRET", "FORCEBIND_KEY"} {
		if v := env[k]; v != "" && strings.Contains(out+errOut, v) {
			t.Errorf("doctor printed %s:\n%s%s", k, out, errOut)
		}
	}
	if strings.Contains(out, "[redacted]") {
		t.Errorf("a check put a secret in its line (scrubbed):\n%s", out)
	}
	if code == exitFail && !strings.Contains(errOut, "checks failed") {
		t.Errorf("exit 1 without saying why on stderr: %q", errOut)
	}
	return code, out, parseChecklist(t, out)
}

// parseChecklist reads doctor's output back into results: a line is
// "%-4s  %-20s  %s", a fix line is indented to the detail and starts with
// "fix: ".
func parseChecklist(t *testing.T, out string) []checkResult {
	t.Helper()
	var rs []checkResult
	lines := strings.Split(out, "\n")
	for _, l := range lines[1:] { // the first line is the title
		const detailAt = 4 + 2 + 20 + 2
		if l == "" {
			break // the summary follows
		}
		if len(l) < detailAt {
			t.Fatalf("short checklist line %q in\n%s", l, out)
		}
		if strings.TrimSpace(l[:detailAt]) == "" {
			fix, found := strings.CutPrefix(l[detailAt:], "fix: ")
			if !found || len(rs) == 0 {
				t.Fatalf("stray line %q in\n%s", l, out)
			}
			rs[len(rs)-1].Fix = fix
			continue
		}
		rs = append(rs, checkResult{
			Status: checkStatus(strings.TrimSpace(l[:4])),
			Name:   strings.TrimSpace(l[6:26]),
			Detail: l[detailAt:],
		})
	}
	return rs
}

// outline is a checklist reduced to status and name, for cmp.Diff.
func outline(rs []checkResult) []string {
	var o []string
	for _, r := range rs {
		o = append(o, string(r.Status)+" "+r.Name)
	}
	return o
}

func TestDoctorAllGreen(t *testing.T) {
	f := mustDoctorFixture(t, sftest.Options{})
	before, err := os.ReadFile(f.env["FORCEBIND_DB"])
	if err != nil {
		t.Fatal(err)
	}

	code, out, got := runDoctorCLI(t, f.env)
	t.Logf("output:\n%s", out)
	if code != exitOK {
		t.Errorf("exit %d, want %d", code, exitOK)
	}
	want := []string{
		"ok configuration", "ok key", "ok store", "ok backup socket", "ok slack bot token", "ok slack scopes", "ok slack app token",
		"ok salesforce host", "ok salesforce authorize", "ok salesforce token", "ok callback URL", "ok listen",
	}
	if diff := cmp.Diff(want, outline(got)); diff != "" {
		t.Errorf("checklist mismatch (-want +got):\n%s\n%s", diff, out)
	}
	for _, w := range []string{"1 binding", "workspace Acme (T0001), bot user forcebind (U0BOT)", "accepts the consumer key and secret", "all checks passed: 12 ok of 12"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	// Doctor changes nothing: the store file is as it was, and Slack saw
	// no websocket.
	after, err := os.ReadFile(f.env["FORCEBIND_DB"])
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(before, after) {
		t.Error("doctor changed the store file")
	}
	if f.slack.Connected() {
		t.Error("doctor dialled the Socket Mode websocket")
	}
	if n := f.sf.Calls(sftest.EndpointToken); n != 1 {
		t.Errorf("%d token calls, want the one probe", n)
	}
}

// wantCheck is a line a doctor run must print: status and name exactly,
// detail and fix as substrings.
type wantCheck struct {
	status      checkStatus
	name        string
	detail, fix string
}

func TestDoctorFailures(t *testing.T) {
	otherKey := mustKey(t)
	tests := []struct {
		name string
		sf   sftest.Options
		// setup changes the fixture before doctor runs.
		setup    func(t *testing.T, f *doctorFixture)
		args     []string
		wantCode int
		// wantFailed lists the names of every failed check, in order.
		wantFailed []string
		want       []wantCheck
		// absent are checks that must not run.
		absent []string
	}{
		{
			name: "bad configuration",
			setup: func(t *testing.T, f *doctorFixture) {
				delete(f.env, "SALESFORCE_CLIENT_ID")
				f.env["LOG_LEVEL"] = "loud"
			},
			wantCode:   exitFail,
			wantFailed: []string{"configuration", "configuration"},
			want: []wantCheck{
				{statusFail, "configuration", `LOG_LEVEL "loud"`, "correct the value"},
				{statusFail, "configuration", "SALESFORCE_CLIENT_ID is required", "Consumer Key"},
				{statusSkip, "salesforce client", "no SALESFORCE_CLIENT_ID", ""},
				{statusOK, "store", "1 binding", ""},
			},
		},
		{
			name:       "wrong key",
			setup:      func(t *testing.T, f *doctorFixture) { f.env["FORCEBIND_KEY"] = otherKey },
			wantCode:   exitFail,
			wantFailed: []string{"store"},
			want:       []wantCheck{{statusFail, "store", store.ErrWrongKey.Error(), "use the key the store was sealed with"}},
		},
		{
			name: "key file readable by others",
			setup: func(t *testing.T, f *doctorFixture) {
				path := filepath.Join(f.dir, "loose.key")
				if err := os.WriteFile(path, []byte(f.env["FORCEBIND_KEY"]+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				delete(f.env, "FORCEBIND_KEY")
				f.env["FORCEBIND_KEY_FILE"] = path
			},
			wantCode:   exitFail,
			wantFailed: []string{"key"},
			want: []wantCheck{
				{statusFail, "key", "lets group or others read", "chmod 600"},
				{statusSkip, "store", "no usable key", ""},
			},
		},
		{
			name: "corrupt store",
			setup: func(t *testing.T, f *doctorFixture) {
				if err := os.WriteFile(f.env["FORCEBIND_DB"], []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantCode:   exitFail,
			wantFailed: []string{"store"},
			want:       []wantCheck{{statusFail, "store", store.ErrCorrupt.Error(), "restore"}},
		},
		{
			name: "store held by a running forcebind",
			setup: func(t *testing.T, f *doctorFixture) {
				kr, err := store.KeyringFromEnv(f.env["FORCEBIND_KEY"])
				if err != nil {
					t.Fatal(err)
				}
				db, err := bolt.Open(f.env["FORCEBIND_DB"], bolt.Options{Keyring: kr})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
			},
			wantCode: exitOK,
			want:     []wantCheck{{statusWarn, "store", "in use by a running forcebind; not opened", ""}},
		},
		{
			name: "store not created yet",
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["FORCEBIND_DB"] = filepath.Join(f.dir, "new.db")
				t.Cleanup(func() {
					if _, err := os.Stat(f.env["FORCEBIND_DB"]); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("doctor created the store: %v", err)
					}
				})
			},
			wantCode: exitOK,
			want:     []wantCheck{{statusWarn, "store", "will be created on first run", ""}},
		},
		{
			name:       "Slack refuses the bot token",
			setup:      func(t *testing.T, f *doctorFixture) { f.slack.SetError("auth.test", "invalid_auth") },
			wantCode:   exitFail,
			wantFailed: []string{"slack bot token"},
			want:       []wantCheck{{statusFail, "slack bot token", "auth.test answered invalid_auth", "Bot User OAuth Token"}},
		},
		{
			name:       "Slack refuses the app token",
			setup:      func(t *testing.T, f *doctorFixture) { f.slack.SetError("apps.connections.open", "token_revoked") },
			wantCode:   exitFail,
			wantFailed: []string{"slack app token"},
			want:       []wantCheck{{statusFail, "slack app token", "apps.connections.open answered token_revoked", "generate a new one"}},
		},
		{
			name: "Slack unreachable",
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["SLACK_API_URL"] = "http://127.0.0.1:" + mustFreePort(t) + "/api/"
			},
			wantCode:   exitFail,
			wantFailed: []string{"slack bot token", "slack app token"},
			want:       []wantCheck{{statusFail, "slack bot token", "connection refused", "outbound HTTPS to slack.com"}},
		},
		{
			name: "Salesforce unreachable",
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["SALESFORCE_LOGIN_URL"] = "http://127.0.0.1:" + mustFreePort(t)
			},
			wantCode:   exitFail,
			wantFailed: []string{"salesforce host"},
			want: []wantCheck{
				{statusFail, "salesforce host", "connection refused", "check SALESFORCE_LOGIN_URL"},
				{statusSkip, "salesforce client", "does not answer", ""},
			},
			absent: []string{"salesforce authorize", "salesforce token"},
		},
		{
			name: "Salesforce silent",
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["SALESFORCE_LOGIN_URL"] = "http://" + mustSilentServer(t)
			},
			args:       []string{"-timeout", "300ms"},
			wantCode:   exitFail,
			wantFailed: []string{"salesforce host"},
			want:       []wantCheck{{statusFail, "salesforce host", "no answer within 300ms", "outbound HTTPS"}},
		},
		{
			name:       "unknown consumer key",
			setup:      func(t *testing.T, f *doctorFixture) { f.env["SALESFORCE_CLIENT_ID"] = "not-the-key" },
			wantCode:   exitFail,
			wantFailed: []string{"salesforce authorize", "salesforce token"},
			want: []wantCheck{
				{statusFail, "salesforce authorize", `does not know the consumer key "not-the-key"`, "Consumer Key"},
				{statusFail, "salesforce token", "invalid_client_id", "Consumer Key"},
			},
		},
		{
			name: "wrong consumer secret",
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["SALESFORCE_CLIENT_SECRET"] = "doctor-SECRET-but-the-wrong-one"
			},
			wantCode:   exitFail,
			wantFailed: []string{"salesforce token"},
			want:       []wantCheck{{statusFail, "salesforce token", "refused the consumer secret", "current Consumer Secret"}},
		},
		{
			name:       "secret required but not set",
			setup:      func(t *testing.T, f *doctorFixture) { delete(f.env, "SALESFORCE_CLIENT_SECRET") },
			wantCode:   exitFail,
			wantFailed: []string{"salesforce token", "salesforce refresh"},
			want: []wantCheck{
				{statusFail, "salesforce token", "requires a secret for the web server flow and none is set", "Require Secret for Web Server Flow"},
				{statusFail, "salesforce refresh", "requires a secret for the refresh token flow and none is set", "Require Secret for Refresh Token Flow"},
			},
		},
		{
			name:  "no secret, and the app requires none",
			sf:    sftest.Options{ClientSecret: noSecret},
			setup: func(t *testing.T, f *doctorFixture) { delete(f.env, "SALESFORCE_CLIENT_SECRET") },
			want: []wantCheck{
				{statusOK, "salesforce token", "web server flow accepts the consumer key without a secret", ""},
				{statusOK, "salesforce refresh", "refresh token flow accepts the consumer key without a secret", ""},
			},
		},
		{
			name: "Slack API URL not https",
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["SLACK_API_URL"] = "http://slack.corp.example/api/"
			},
			wantCode:   exitFail,
			wantFailed: []string{"configuration"},
			want: []wantCheck{
				{statusFail, "configuration", "SLACK_API_URL", "leave SLACK_API_URL unset"},
				{statusSkip, "slack bot token", "SLACK_API_URL unusable", ""},
				{statusSkip, "slack app token", "SLACK_API_URL unusable", ""},
			},
		},
		{
			name: "callback URL plain http on a network host",
			sf:   sftest.Options{RedirectURI: anyCallback},
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["FORCEBIND_CALLBACK_URL"] = "http://forcebind.corp.example/oauth/callback"
			},
			wantCode:   exitFail,
			wantFailed: []string{"configuration"},
			want: []wantCheck{
				{statusFail, "configuration", "plain http is allowed only on a loopback host", "https, or http only on localhost"},
			},
		},
		{
			name: "login host not Salesforce's",
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["SALESFORCE_LOGIN_URL"] = "https://login.salesforce.co"
			},
			wantCode:   exitFail,
			wantFailed: []string{"configuration"},
			want: []wantCheck{
				{statusFail, "configuration", "not a Salesforce login host", "your My Domain URL"},
				{statusSkip, "salesforce host", "SALESFORCE_LOGIN_URL unusable", ""},
			},
		},
		{
			name: "custom login host allowed",
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["SALESFORCE_LOGIN_URL"] = "https://sso.acme.invalid"
				f.env["FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST"] = "true"
			},
			args:       []string{"-timeout", "2s"},
			wantCode:   exitFail, // the made-up host does not answer
			wantFailed: []string{"salesforce host"},
			want: []wantCheck{
				{statusWarn, "login host", "https://sso.acme.invalid, which is not a Salesforce domain, receives the client secret", ""},
			},
		},
		{
			name: "custom login host allowed needlessly",
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST"] = "true"
			},
			wantCode: exitOK,
			want:     []wantCheck{{statusWarn, "login host", "needs no exception: unset it", ""}},
		},
		{
			name:       "callback URL not registered",
			sf:         sftest.Options{RedirectURI: "https://forcebind.corp.example/oauth/callback"},
			wantCode:   exitFail,
			wantFailed: []string{"salesforce authorize"},
			want:       []wantCheck{{statusFail, "salesforce authorize", "redirect_uri_mismatch", "as a Callback URL of the connected app"}},
		},
		{
			name: "callback port is not the listener's",
			sf:   sftest.Options{RedirectURI: anyCallback},
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["FORCEBIND_CALLBACK_URL"] = "http://localhost:" + mustFreePort(t) + "/oauth/callback"
			},
			wantCode:   exitFail,
			wantFailed: []string{"callback URL"},
			want:       []wantCheck{{statusFail, "callback URL", "the browser's redirect misses the listener", "set FORCEBIND_LISTEN to 127.0.0.1:"}},
		},
		{
			name: "callback behind a reverse proxy",
			sf:   sftest.Options{RedirectURI: anyCallback},
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["FORCEBIND_CALLBACK_URL"] = "https://forcebind.corp.example/oauth/callback"
			},
			wantCode: exitOK,
			want: []wantCheck{
				{statusWarn, "callback URL", "reachable only through a reverse proxy on this machine", ""},
				{statusWarn, "callback URL", "TLS must be terminated by a reverse proxy", ""},
			},
		},
		{
			name: "TLS certificate for another host",
			sf:   sftest.Options{RedirectURI: anyCallback},
			setup: func(t *testing.T, f *doctorFixture) {
				cert, key, _ := mustCert(t, f.dir, 1, []string{"wrong.example"}, time.Now().Add(90*24*time.Hour))
				f.env["FORCEBIND_TLS_CERT_FILE"], f.env["FORCEBIND_TLS_KEY_FILE"] = cert, key
				f.env["FORCEBIND_CALLBACK_URL"] = "https://localhost:" + f.port + "/oauth/callback"
			},
			wantCode:   exitFail,
			wantFailed: []string{"TLS certificate"},
			want: []wantCheck{
				{statusOK, "callback URL", "reaches the listener", ""},
				{statusFail, "TLS certificate", "is for wrong.example, not the callback host localhost", "subject alternative names include localhost"},
			},
		},
		{
			name: "TLS certificate about to expire",
			sf:   sftest.Options{RedirectURI: anyCallback},
			setup: func(t *testing.T, f *doctorFixture) {
				cert, key, _ := mustCert(t, f.dir, 1, []string{"localhost"}, time.Now().Add(3*24*time.Hour+time.Hour))
				f.env["FORCEBIND_TLS_CERT_FILE"], f.env["FORCEBIND_TLS_KEY_FILE"] = cert, key
				f.env["FORCEBIND_CALLBACK_URL"] = "https://localhost:" + f.port + "/oauth/callback"
			},
			wantCode: exitOK,
			want:     []wantCheck{{statusWarn, "TLS certificate", "expires in 3 days", ""}},
		},
		{
			name: "TLS certificate expired",
			sf:   sftest.Options{RedirectURI: anyCallback},
			setup: func(t *testing.T, f *doctorFixture) {
				cert, key, _ := mustCert(t, f.dir, 1, []string{"127.0.0.1"}, time.Now().Add(-time.Minute))
				f.env["FORCEBIND_TLS_CERT_FILE"], f.env["FORCEBIND_TLS_KEY_FILE"] = cert, key
				f.env["FORCEBIND_CALLBACK_URL"] = "https://127.0.0.1:" + f.port + "/oauth/callback"
			},
			wantCode:   exitFail,
			wantFailed: []string{"TLS certificate"},
			want:       []wantCheck{{statusFail, "TLS certificate", "expired on", "renew it"}},
		},
		{
			name:       "bot token without a scope",
			setup:      withSlackScopes("app_mentions:read", "commands", "im:history", "im:read", "im:write", "users:read", "users:read.email"),
			wantCode:   exitFail,
			wantFailed: []string{"slack scopes"},
			want:       []wantCheck{{statusFail, "slack scopes", "lacks chat:write", "reinstall"}},
		},
		{
			name:     "no users:read.email, email check off",
			setup:    withSlackScopes("app_mentions:read", "chat:write", "commands", "im:history", "im:read", "im:write", "users:read"),
			wantCode: exitOK,
			want:     []wantCheck{{statusWarn, "slack scopes", "lacks users:read.email", ""}},
		},
		{
			name: "no users:read.email, email check on",
			setup: func(t *testing.T, f *doctorFixture) {
				withSlackScopes("app_mentions:read", "chat:write", "commands", "im:history", "im:read", "im:write", "users:read")(t, f)
				f.env["FORCEBIND_REQUIRE_EMAIL_MATCH"] = "true"
			},
			wantCode:   exitFail,
			wantFailed: []string{"slack scopes"},
			want:       []wantCheck{{statusFail, "slack scopes", "lacks users:read.email", "reinstall"}},
		},
		{
			name: "store path too long for the backup socket",
			setup: func(t *testing.T, f *doctorFixture) {
				long := filepath.Join(f.dir, strings.Repeat("d", 100))
				if err := os.Mkdir(long, 0o700); err != nil {
					t.Fatal(err)
				}
				f.env["FORCEBIND_DB"] = filepath.Join(long, "forcebind.db")
			},
			wantCode: exitOK,
			want:     []wantCheck{{statusWarn, "backup socket", "longer than 107 bytes", ""}},
		},
		{
			name: "listen address in use",
			setup: func(t *testing.T, f *doctorFixture) {
				ln, err := net.Listen("tcp", f.env["FORCEBIND_LISTEN"])
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
			},
			wantCode: exitOK,
			want:     []wantCheck{{statusWarn, "listen", "in use; a running forcebind may hold it", ""}},
		},
		{
			name:     "device flow",
			setup:    func(t *testing.T, f *doctorFixture) { f.env["FORCEBIND_CONNECT_FLOW"] = "device" },
			wantCode: exitOK,
			want: []wantCheck{
				{statusOK, "configuration", "(device flow)", ""},
				{statusOK, "salesforce device", "offers the device flow", ""},
				{statusOK, "salesforce refresh", "refresh token flow accepts the consumer key and secret", ""},
			},
			absent: []string{"salesforce authorize", "salesforce token", "callback URL"},
		},
		{
			name: "device flow off in the connected app",
			setup: func(t *testing.T, f *doctorFixture) {
				f.env["FORCEBIND_CONNECT_FLOW"] = "device"
				f.sf.SetDeviceFlow(false)
			},
			wantCode:   exitFail,
			wantFailed: []string{"salesforce device"},
			want:       []wantCheck{{statusFail, "salesforce device", "refused a device code", "Enable for Device Flow"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustDoctorFixture(t, tt.sf)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			code, out, got := runDoctorCLI(t, f.env, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d:\n%s", code, tt.wantCode, out)
			}
			var failed []string
			for _, r := range got {
				if r.Status == statusFail {
					failed = append(failed, r.Name)
					if r.Fix == "" {
						t.Errorf("%s failed without a fix:\n%s", r.Name, out)
					}
				}
			}
			if diff := cmp.Diff(tt.wantFailed, failed); diff != "" {
				t.Errorf("failed checks mismatch (-want +got):\n%s\n%s", diff, out)
			}
			for _, w := range tt.want {
				if !hasCheck(got, w) {
					t.Errorf("no line %s %q with %q (fix %q):\n%s", w.status, w.name, w.detail, w.fix, out)
				}
			}
			for _, name := range tt.absent {
				for _, r := range got {
					if r.Name == name {
						t.Errorf("check %q ran: %s", name, r.Detail)
					}
				}
			}
		})
	}
}

func hasCheck(rs []checkResult, w wantCheck) bool {
	for _, r := range rs {
		if r.Status == w.status && r.Name == w.name && strings.Contains(r.Detail, w.detail) && strings.Contains(r.Fix, w.fix) {
			return true
		}
	}
	return false
}

// mustSilentServer accepts connections and never answers; it returns its
// address.
func mustSilentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func TestDoctorCommandLine(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"-bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"extra"}, exitUsage, "unexpected arguments"},
		{[]string{"-timeout", "0s"}, exitUsage, "not positive"},
		{[]string{"-h"}, exitOK, "-timeout"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			env := map[string]string{"SLACK_BOT_TOKEN": doctorBotToken, "SALESFORCE_CLIENT_SECRET": doctorClientSecret}
			code, out, errOut := runCLI(t, env, append([]string{"doctor"}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			if strings.Contains(out+errOut, doctorBotToken) || strings.Contains(out+errOut, doctorClientSecret) {
				t.Error("usage printed a secret")
			}
		})
	}
}

// The verdicts on what auth.Probe read from Salesforce's answers (see
// auth's TestReadAuthorize and TestProbeTokenAnswers for the reading).
func TestDoctorAuthorizeVerdict(t *testing.T) {
	const callback = "https://forcebind.corp.example/oauth/callback"
	d := doctor{cfg: Config{CallbackURL: callback, ClientID: "key"}, timeout: 10 * time.Second}
	tests := []struct {
		name   string
		login  bool
		err    error
		want   checkStatus
		detail string
	}{
		{"unknown client id, error page", false, &auth.OAuthError{Status: 400, Code: "invalid_client_id"}, statusFail, "does not know the consumer key"},
		{"unknown client id, page served 200", false, &auth.OAuthError{Status: 200, Code: "invalid_client_id"}, statusFail, "does not know the consumer key"},
		{"callback mismatch", false, &auth.OAuthError{Status: 302, Code: "redirect_uri_mismatch"}, statusFail, "redirect_uri_mismatch"},
		{"other error on Salesforce's page", false, &auth.OAuthError{Status: 302, Code: "OAUTH_APP_BLOCKED"}, statusFail, "OAUTH_APP_BLOCKED"},
		{"sent to the callback", false, nil, statusOK, "accepted"},
		{"login page", true, nil, statusOK, "offers a login"},
		{"outage", false, &auth.OAuthError{Status: 503}, statusFail, "HTTP 503"},
		{"not Salesforce", false, &auth.OAuthError{Status: 404}, statusFail, "without an OAuth error"},
		{"no answer", false, fmt.Errorf("get: %w", context.DeadlineExceeded), statusFail, "no answer within 10s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := d.authorizeVerdict(tt.login, tt.err)
			if diff := cmp.Diff(tt.want, got.Status); diff != "" {
				t.Errorf("status mismatch (-want +got):\n%s\n%+v", diff, got)
			}
			if !strings.Contains(got.Detail, tt.detail) || (got.Status == statusFail && got.Fix == "") {
				t.Errorf("got %+v, want detail with %q and a fix on failure", got, tt.detail)
			}
		})
	}
}

func TestDoctorTokenVerdict(t *testing.T) {
	oauthErr := func(status int, code, description string) error {
		return &auth.OAuthError{Status: status, Code: code, Description: description}
	}
	tests := []struct {
		name       string
		err        error
		withSecret bool
		refresh    bool
		want       checkStatus
		detail     string
	}{
		{"accepted with secret", oauthErr(400, "invalid_grant", "authentication failure"), true, false, statusOK, "web server flow accepts the consumer key and secret"},
		{"accepted without secret", oauthErr(400, "invalid_grant", "expired authorization code"), false, false, statusOK, "without a secret"},
		{"refresh accepted", oauthErr(400, "invalid_grant", "expired access/refresh token"), false, true, statusOK, "refresh token flow accepts the consumer key without a secret"},
		{"unknown key", oauthErr(400, "invalid_client_id", "client identifier invalid"), true, false, statusFail, "does not know the consumer key"},
		{"wrong secret", oauthErr(400, "invalid_client", "invalid client credentials"), true, false, statusFail, "refused the consumer secret"},
		{"secret required", oauthErr(400, "invalid_client", "invalid client credentials"), false, false, statusFail, "requires a secret for the web server flow"},
		{"secret required to refresh", oauthErr(400, "invalid_client", "invalid client credentials"), false, true, statusFail, "requires a secret for the refresh token flow"},
		{"callback mismatch", oauthErr(400, "redirect_uri_mismatch", "redirect_uri must match configuration"), true, false, statusFail, "callback URL"},
		{"inactive org", oauthErr(400, "inactive_org", "organization is inactive"), true, false, statusFail, "inactive_org"},
		{"unknown error", oauthErr(400, "unsupported_grant_type", "grant type not supported"), true, false, statusFail, "unsupported_grant_type: grant type not supported"},
		{"HTML outage", oauthErr(502, "", ""), true, false, statusFail, "HTTP 502"},
		{"success on a made-up code", oauthErr(200, "", ""), true, false, statusWarn, "accepted a made-up grant"},
		{"no answer", fmt.Errorf("token endpoint: %w", syscall.ECONNREFUSED), true, false, statusFail, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := doctor{cfg: Config{ClientID: "key"}, timeout: 10 * time.Second}
			if tt.withSecret {
				d.cfg.ClientSecret = "s3cret"
			}
			got := d.tokenVerdict(tt.err, tt.refresh)
			if diff := cmp.Diff(tt.want, got.Status); diff != "" {
				t.Errorf("status mismatch (-want +got):\n%s\n%+v", diff, got)
			}
			if !strings.Contains(got.Detail, tt.detail) || (got.Status == statusFail && got.Fix == "") {
				t.Errorf("got %+v, want detail with %q and a fix on failure", got, tt.detail)
			}
		})
	}
}

// Whatever the probes report, each verdict is a named line with a detail,
// and every failure comes with a fix.
func TestDoctorVerdictsHaveFixes(t *testing.T) {
	var errs []error
	for _, status := range []int{200, 302, 400, 401, 404, 500, 503} {
		for _, code := range []string{"", "invalid_grant", "invalid_client_id", "invalid_client", "redirect_uri_mismatch", "invalid_request",
			"unsupported_response_type", "unauthorized_client", "inactive_user", "inactive_org", "OAUTH_APP_BLOCKED", "made_up"} {
			errs = append(errs, &auth.OAuthError{Status: status, Code: code, Description: "words"}, &auth.OAuthError{Status: status, Code: code})
		}
	}
	errs = append(errs, nil, context.DeadlineExceeded, errors.New("read: connection reset"))
	d := doctor{cfg: Config{ClientID: "cid", CallbackURL: "http://127.0.0.1:8787/oauth/callback"}, timeout: time.Second}
	for _, err := range errs {
		for _, secret := range []string{"", "s3cret"} {
			d.cfg.ClientSecret = secret
			rs := []checkResult{d.authorizeVerdict(true, err), d.authorizeVerdict(false, err), d.deviceVerdict(err)}
			if err != nil { // the token probes never answer nil
				rs = append(rs, d.tokenVerdict(err, false), d.tokenVerdict(err, true))
			}
			for _, r := range rs {
				if r.Status == statusFail && r.Fix == "" {
					t.Errorf("%s failed without a fix on %v: %s", r.Name, err, r.Detail)
				}
				if r.Name == "" || r.Detail == "" {
					t.Errorf("a check line without a name or detail on %v: %+v", err, r)
				}
			}
		}
	}
	var slackErrs []error
	for _, code := range []string{"", "invalid_auth", "link_disabled", "missing_scope", "made_up"} {
		for _, method := range []string{"auth.test", "apps.connections.open"} {
			slackErrs = append(slackErrs, &bot.CallError{Method: method, Code: code, Fatal: code == "link_disabled" || code == "invalid_auth", Err: errors.New("x")},
				&bot.CallError{Method: method, Status: 502, Err: errors.New("x")})
		}
	}
	for _, err := range append(slackErrs, context.DeadlineExceeded) {
		if r := slackFailure("slack", err, time.Second); r.Fix == "" || r.Detail == "" {
			t.Errorf("%v: %+v, want a detail and a fix", err, r)
		}
	}
}

func TestDoctorSlackFailure(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want checkResult
	}{
		{"missing scope", &bot.CallError{Method: "auth.test", Code: "missing_scope", Needed: "users:read"},
			checkResult{Status: statusFail, Name: "n", Detail: "auth.test answered missing_scope (needed: users:read)", Fix: slackFixes["missing_scope"][0]}},
		{"bot token as app token", &bot.CallError{Method: "apps.connections.open", Code: "not_allowed_token_type", Fatal: true},
			checkResult{Status: statusFail, Name: "n", Detail: "apps.connections.open answered not_allowed_token_type", Fix: slackFixes["not_allowed_token_type"][1]}},
		{"unknown code", &bot.CallError{Method: "auth.test", Code: "fatal_error"},
			checkResult{Status: statusFail, Name: "n", Detail: "auth.test answered fatal_error", Fix: "see https://api.slack.com/methods/auth.test for what fatal_error means"}},
		{"refused for good, no fix of its own", &bot.CallError{Method: "apps.connections.open", Code: "link_disabled", Fatal: true},
			checkResult{Status: statusFail, Name: "n", Detail: "apps.connections.open answered link_disabled", Fix: "Slack refuses the app for good, and 'forcebind run' would stop (exit 3): " +
				"check the app at api.slack.com → Your Apps (Socket Mode on, installed to the workspace) and set its current tokens"}},
		{"rate limited", &bot.CallError{Method: "auth.test", Status: http.StatusTooManyRequests, RetryAfter: 30 * time.Second},
			checkResult{Status: statusWarn, Name: "n", Detail: "auth.test: Slack is rate limiting; retry in 30s"}},
		{"proxy error", &bot.CallError{Method: "auth.test", Status: http.StatusBadGateway},
			checkResult{Status: statusFail, Name: "n", Detail: "auth.test: HTTP 502", Fix: "check SLACK_API_URL and any proxy between forcebind and Slack"}},
		{"timeout", &bot.CallError{Method: "auth.test", Err: context.DeadlineExceeded},
			checkResult{Status: statusFail, Name: "n", Detail: "auth.test: no answer within 10s", Fix: "check outbound HTTPS to slack.com (firewall, HTTPS_PROXY) and SLACK_API_URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slackFailure("n", tt.err, 10*time.Second)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDoctorConfigFix(t *testing.T) {
	tests := []struct{ problem, want string }{
		{"FORCEBIND_KEY_FILE and FORCEBIND_KEY are both set; set only one", configFixes[0].fix},
		{"one of FORCEBIND_KEY_FILE or FORCEBIND_KEY is required (create a key with: forcebind key generate)", configFixes[0].fix},
		{"SLACK_BOT_TOKEN must be a bot token starting with xoxb-", configFixes[3].fix},
		{`SALESFORCE_API_VERSION "x" is not a version like 62.0`, "correct the value in the environment or with its flag ('forcebind doctor -h' lists them)"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, configFix(tt.problem)); diff != "" {
			t.Errorf("configFix(%q) mismatch (-want +got):\n%s", tt.problem, diff)
		}
	}
}

// The scrubber replaces secrets that a check might one day print.
func TestDoctorWriteChecklistScrubs(t *testing.T) {
	var b strings.Builder
	rs := []checkResult{failed("x", "token "+doctorBotToken+" refused", "use "+doctorClientSecret), passed("y", "fine")}
	n := writeChecklist(&b, rs, []string{doctorBotToken, doctorClientSecret, "", "short"})
	if n != 1 {
		t.Errorf("writeChecklist = %d failures, want 1", n)
	}
	out := b.String()
	if strings.Contains(out, doctorBotToken) || strings.Contains(out, doctorClientSecret) {
		t.Errorf("secret printed:\n%s", out)
	}
	if strings.Count(out, "[redacted]") != 2 {
		t.Errorf("want two scrubbed secrets:\n%s", out)
	}
}
