package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/bot/slacktest"
	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// mustBound binds jane through the whole web flow of a running harness.
func mustBound(tb testing.TB, h *harness) {
	tb.Helper()
	mark := len(h.slack.Messages())
	link := mustLink(tb, h)
	if _, err := h.browse(tb.Context(), link, "approve", "jane@acme.example"); err != nil {
		tb.Fatal(err)
	}
	if err := h.waitFor(tb.Context(), func(m []slacktest.Message) bool { return len(m) > mark+1 }); err != nil {
		tb.Fatal("no confirmation DM")
	}
}

// httpGet fetches u with hc and returns the status and body.
func httpGet(tb testing.TB, hc *http.Client, u string) (int, string) {
	tb.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		tb.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitStatus polls u until it answers want, for up to 10 seconds.
func waitStatus(tb testing.TB, u string, want int) {
	tb.Helper()
	var got int
	var body string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got, body = httpGet(tb, http.DefaultClient, u); got == want {
			return
		}
	}
	tb.Fatalf("GET %s: %d %q, want %d", u, got, body, want)
}

func TestReadyzFollowsTheSocket(t *testing.T) {
	h, _ := mustHarness(t, nil)
	waitStatus(t, h.ops+"/readyz", http.StatusOK)
	if code, body := httpGet(t, http.DefaultClient, h.ops+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}

	// The socket drops and Slack refuses new connections for a while: not
	// ready, though alive.
	h.slack.SetError("apps.connections.open", "internal_error")
	h.slack.DropConnection()
	waitStatus(t, h.ops+"/readyz", http.StatusServiceUnavailable)
	if code, _ := httpGet(t, http.DefaultClient, h.ops+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while reconnecting: %d, want 200", code)
	}
	_, body := httpGet(t, http.DefaultClient, h.ops+"/readyz")
	if !strings.Contains(body, "not connected to Slack") {
		t.Errorf("/readyz body %q does not say why", body)
	}

	// Slack answers again: ready after the reconnect.
	h.slack.SetError("apps.connections.open", "")
	waitStatus(t, h.ops+"/readyz", http.StatusOK)
}

// On the callback listener the probes answer whatever Host they are asked
// with; /metrics and the OAuth pages keep the Host check, so a page whose
// DNS name is rebound to the listener cannot read them. The admin listener
// serves /metrics by address.
func TestOpsHostCheck(t *testing.T) {
	h, _ := mustHarness(t, nil)
	admin, _ := mustHarnessWith(t, func(d *daemon) { d.cfg.AdminListen = "127.0.0.1:0" })
	// The device flow serves no callback, but FORCEBIND_CALLBACK_URL still
	// names the one listener, and /metrics answers only there.
	device, _ := mustHarnessWith(t, func(d *daemon) {
		d.cfg.ConnectFlow, d.cfg.CallbackURL = auth.FlowDevice, "https://forcebind.internal:8787/oauth/callback"
	})
	waitStatus(t, h.ops+"/readyz", http.StatusOK)
	waitStatus(t, admin.ops+"/readyz", http.StatusOK)
	waitStatus(t, device.ops+"/readyz", http.StatusOK)
	callbackHost := strings.TrimPrefix(h.callback, "http://")
	tests := []struct {
		name, base, path, host string
		want                   int
	}{
		{"healthz by address", h.callback, "/healthz", "10.1.2.3:8787", http.StatusOK},
		{"readyz by address", h.callback, "/readyz", "10.1.2.3:8787", http.StatusOK},
		{"metrics by a rebound name", h.callback, "/metrics", "attacker.example:8787", http.StatusMisdirectedRequest},
		{"metrics by address", h.callback, "/metrics", "10.1.2.3:8787", http.StatusMisdirectedRequest},
		{"metrics at the callback host", h.callback, "/metrics", callbackHost, http.StatusOK},
		{"callback by address", h.callback, "/oauth/callback?state=x&code=y", "10.1.2.3:8787", http.StatusMisdirectedRequest},
		{"admin metrics by address", admin.ops, "/metrics", "10.1.2.3:9090", http.StatusOK},
		{"admin metrics by any name", admin.ops, "/metrics", "attacker.example:9090", http.StatusOK},
		{"device flow, readyz by address", device.ops, "/readyz", "10.1.2.3:8787", http.StatusOK},
		{"device flow, metrics by a rebound name", device.ops, "/metrics", "attacker.example:8787", http.StatusMisdirectedRequest},
		{"device flow, metrics by address", device.ops, "/metrics", "10.1.2.3:8787", http.StatusMisdirectedRequest},
		{"device flow, metrics at the callback URL's host", device.ops, "/metrics", "forcebind.internal:8787", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, tt.base+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s with Host %s: %d, want %d", tt.path, tt.host, resp.StatusCode, tt.want)
			}
			if tt.path == "/metrics" && tt.want != http.StatusOK && strings.Contains(string(body), "forcebind_") {
				t.Errorf("a refused /metrics still shows metrics:\n%s", body)
			}
			if tt.path == "/metrics" && tt.want == http.StatusOK && !strings.Contains(string(body), "forcebind_build_info") {
				t.Errorf("/metrics served no metrics:\n%s", body)
			}
		})
	}
}

func TestAdminListenerAndDeviceFlowLayout(t *testing.T) {
	t.Run("admin listener apart", func(t *testing.T) {
		h, _ := mustHarnessWith(t, func(d *daemon) { d.cfg.AdminListen = "127.0.0.1:0" })
		if h.ops == h.callback {
			t.Fatal("ops served on the callback listener despite FORCEBIND_ADMIN_LISTEN")
		}
		waitStatus(t, h.ops+"/readyz", http.StatusOK)
		if code, _ := httpGet(t, http.DefaultClient, h.callback+"/metrics"); code != http.StatusNotFound {
			t.Errorf("/metrics on the callback listener: %d, want 404", code)
		}
		if code, _ := httpGet(t, http.DefaultClient, h.ops+"/oauth/callback?state=x&code=y"); code != http.StatusNotFound {
			t.Errorf("/oauth/callback on the admin listener: %d, want 404", code)
		}
	})
	t.Run("device flow serves no OAuth routes", func(t *testing.T) {
		h, _ := mustHarnessWith(t, func(d *daemon) { d.cfg.ConnectFlow = auth.FlowDevice })
		if h.callback != "" {
			t.Errorf("a callback listener at %s in the device flow", h.callback)
		}
		waitStatus(t, h.ops+"/readyz", http.StatusOK)
		if code, _ := httpGet(t, http.DefaultClient, h.ops+"/oauth/callback?state=x&code=y"); code != http.StatusNotFound {
			t.Errorf("/oauth/callback in the device flow: %d, want 404", code)
		}
	})
}

// mustHarnessWith is mustHarness with the daemon edited before it starts.
func mustHarnessWith(tb testing.TB, edit func(*daemon)) (*harness, *syncBuffer) {
	tb.Helper()
	logs := &syncBuffer{}
	h, err := startHarness(context.Background(), zerolog.New(logs).Level(zerolog.DebugLevel), edit)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := h.close(); err != nil {
			tb.Errorf("daemon: %v", err)
		}
	})
	return h, logs
}

func TestTLSListenerReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, first := mustCert(t, dir, 1, []string{"127.0.0.1"}, time.Now().Add(30*24*time.Hour))
	hup := make(chan os.Signal, 1)
	h, logs := mustHarnessWith(t, func(d *daemon) {
		d.cfg.TLSCertFile, d.cfg.TLSKeyFile = certFile, keyFile
		d.hup = hup
	})
	if !strings.HasPrefix(h.callback, "https://") {
		t.Fatalf("callback listener %s is not TLS", h.callback)
	}
	if got := servedSerial(t, h.callback, first); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}

	// The whole binding flow works over TLS, callback and confirmation.
	h.trust = x509.NewCertPool()
	h.trust.AddCert(first)
	mustBound(t, h)

	_, _, second := mustCert(t, dir, 2, []string{"127.0.0.1"}, time.Now().Add(30*24*time.Hour))
	hup <- os.Interrupt // any value: the daemon reads the channel, main puts SIGHUP on it
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if servedSerial(t, h.callback, second) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded after SIGHUP:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "tls certificate reloaded") {
		t.Error("no log line for the reload")
	}
}

// mustCert writes a self-signed certificate for hosts (names or IP
// addresses) with the given serial, valid until notAfter, to dir/cert.pem
// and dir/key.pem. It is its own CA, so a client can trust it alone.
func mustCert(tb testing.TB, dir string, serial int64, hosts []string, notAfter time.Time) (certFile, keyFile string, cert *x509.Certificate) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile, cert
}

// servedSerial makes a fresh TLS connection to base trusting only trust and
// returns the serial of the certificate presented, or -1 when the handshake
// fails (as it does while the other certificate is still served).
func servedSerial(tb testing.TB, base string, trust *x509.Certificate) int64 {
	tb.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(trust)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true,
	}}
	resp, err := hc.Get(base + "/healthz")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
}

func TestBackupOffline(t *testing.T) {
	dir := t.TempDir()
	key := mustKey(t)
	env := map[string]string{"FORCEBIND_DB": filepath.Join(dir, "fb.db"), "FORCEBIND_KEY": key}
	ring, err := store.KeyringFromEnv(key)
	if err != nil {
		t.Fatal(err)
	}
	want := mustStoreWith(t, env["FORCEBIND_DB"], ring, 3)

	dst := filepath.Join(dir, "copy.db")
	code, out, errOut := runCLI(t, env, "backup", dst)
	if code != exitOK {
		t.Fatalf("backup: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "3 bindings") || !strings.Contains(out, "not in use") {
		t.Errorf("output %q does not report 3 bindings read directly", out)
	}
	if diff := cmp.Diff(want, mustBindings(t, dst, ring, "T1", "U0", "U1", "U2")); diff != "" {
		t.Errorf("backup bindings mismatch (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	// A second backup replaces the first.
	if code, _, errOut := runCLI(t, env, "backup", dst); code != exitOK {
		t.Errorf("backup over an old one: exit %d: %s", code, errOut)
	}

	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		code int
	}{
		{"no file", env, nil, exitUsage},
		{"two files", env, []string{"a", "b"}, exitUsage},
		{"onto the store", env, []string{env["FORCEBIND_DB"]}, exitUsage},
		{"wrong key", map[string]string{"FORCEBIND_DB": env["FORCEBIND_DB"], "FORCEBIND_KEY": mustKey(t)}, []string{filepath.Join(dir, "wrong.db")}, exitFail},
		{"no store", map[string]string{"FORCEBIND_DB": filepath.Join(dir, "missing.db"), "FORCEBIND_KEY": key}, []string{filepath.Join(dir, "none.db")}, exitFail},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tt.env, append([]string{"backup"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d: %s", code, tt.code, errOut)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "wrong.db")); err == nil {
		t.Error("a failed backup left its file")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*partial*")); len(left) > 0 {
		t.Errorf("partial files left: %v", left)
	}
}

// A backup of a running daemon's store comes through the control socket and
// holds what the daemon stored.
func TestBackupHot(t *testing.T) {
	h, logs := mustHarness(t, nil)
	mustBound(t, h)
	socket := controlSocketPath(h.cfg.DB)
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket %s: mode %v, %v; want 0600", socket, fi.Mode().Perm(), err)
	}
	env := map[string]string{"FORCEBIND_DB": h.cfg.DB, "FORCEBIND_KEY": h.cfg.Key}
	dst := filepath.Join(t.TempDir(), "hot.db")
	code, out, errOut := runCLI(t, env, "backup", dst)
	if code != exitOK {
		t.Fatalf("backup: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "from the running daemon") || !strings.Contains(out, "1 bindings") {
		t.Errorf("output %q", out)
	}
	ring, err := store.KeyringFromEnv(h.cfg.Key)
	if err != nil {
		t.Fatal(err)
	}
	got := mustBindings(t, dst, ring, slacktest.DefaultTeamID, demoUser)
	if len(got) != 1 || got[0].UserID != demoUser || got[0].Username != "jane@acme.example" {
		t.Errorf("backup holds %v, want jane's binding", got)
	}
	if !strings.Contains(logs.String(), `"audit":"backup taken"`) {
		t.Error("no audit line for the backup")
	}
	// The daemon still serves after the backup.
	step(t, h, "whoami", 1)
}

// mustStoreWith creates a store at path with n bindings and returns them.
func mustStoreWith(tb testing.TB, path string, ring *store.Keyring, n int) []store.Binding {
	tb.Helper()
	db, err := bolt.Open(path, bolt.Options{Keyring: ring})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var bs []store.Binding
	for i := range n {
		b := store.Binding{
			TeamID: "T1", UserID: fmt.Sprintf("U%d", i), SalesforceUserID: "005000000000001AAA", OrgID: "00D000000000001AAA",
			Username: fmt.Sprintf("user%d@acme.example", i), LoginURL: "https://login.salesforce.com", InstanceURL: "https://acme.my.salesforce.com",
			AccessToken: fmt.Sprintf("access-%d", i), RefreshToken: fmt.Sprintf("refresh-%d", i),
			IssuedAt: time.Unix(1700000000, 0).UTC(), LinkedAt: time.Unix(1700000000, 0).UTC(), Scopes: []string{"api", "refresh_token"},
		}
		if err := db.PutBinding(context.Background(), b); err != nil {
			tb.Fatal(err)
		}
		bs = append(bs, b)
	}
	return bs
}

// mustBindings opens the store at path read-only and returns the bindings
// of users in team that it holds.
func mustBindings(tb testing.TB, path string, ring *store.Keyring, team string, users ...string) []store.Binding {
	tb.Helper()
	db, err := bolt.Open(path, bolt.Options{Keyring: ring, ReadOnly: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var bs []store.Binding
	for _, u := range users {
		b, err := db.GetBinding(context.Background(), team, u)
		if err != nil {
			tb.Fatalf("binding %s/%s: %v", team, u, err)
		}
		bs = append(bs, b)
	}
	return bs
}

// The device flow through the daemon: a code in a private message, no
// listener for OAuth, and the email check refusing a forwarded code.
func TestDeviceFlowEndToEnd(t *testing.T) {
	h, logs := mustHarnessWith(t, func(d *daemon) {
		d.cfg.ConnectFlow, d.cfg.RequireEmailMatch = auth.FlowDevice, true
	})
	h.sf.SetDeviceInterval(1) // seconds, the wire's unit; the daemon waits for real
	dm := h.slack.DMChannel(demoUser)

	// Someone else signs in with jane's code (she forwarded it, or it was
	// shown on her screen): Salesforce says sam, Slack says jane, so nothing
	// is bound and sam's fresh grant is revoked.
	msgs := step(t, h, "connect", 1)
	codes := h.sf.PendingUserCodes()
	if len(codes) != 1 {
		t.Fatalf("pending device codes %v, want 1", codes)
	}
	mustContain(t, msgs[0], codes[0], h.sf.URL)
	if msgs[0].Channel != dm {
		t.Errorf("code sent to %s, want jane's DM", msgs[0].Channel)
	}
	live := h.sf.LiveRefreshTokens()
	mark := len(h.slack.Messages())
	if err := h.sf.ApproveDevice(codes[0], "sam@acme.example"); err != nil {
		t.Fatal(err)
	}
	if err := h.waitFor(t.Context(), func(m []slacktest.Message) bool { return len(m) > mark }); err != nil {
		t.Fatal("jane was not told the link failed")
	}
	mustContain(t, h.slack.Messages()[mark], "email address is not the one on your Slack profile")
	if n := h.sf.LiveRefreshTokens(); n != live {
		t.Errorf("%d live refresh tokens after the mismatch, want %d (sam's grant revoked)", n, live)
	}
	mustContain(t, step(t, h, "whoami", 1)[0], "not connected")

	// Jane signs in herself: bound, told, and searches run as her.
	step(t, h, "connect", 1)
	codes = h.sf.PendingUserCodes()
	if len(codes) != 1 {
		t.Fatalf("pending device codes %v, want 1", codes)
	}
	mark = len(h.slack.Messages())
	if err := h.sf.ApproveDevice(codes[0], "jane@acme.example"); err != nil {
		t.Fatal(err)
	}
	if err := h.waitFor(t.Context(), func(m []slacktest.Message) bool { return len(m) > mark }); err != nil {
		t.Fatal("no confirmation DM")
	}
	mustContain(t, h.slack.Messages()[mark], "connected to Salesforce as *jane@acme.example*")
	mustContain(t, step(t, h, "search acme", 1)[0], "Acme Corporation")

	for _, tok := range h.sf.IssuedTokens() {
		if strings.Contains(logs.String(), tok) {
			t.Fatal("a Salesforce token or device code is in the log")
		}
	}
	if !strings.Contains(logs.String(), `"audit":"binding created"`) {
		t.Error("no audit line for the binding")
	}
}

// After a run through the life of a binding, /metrics has every series an
// operator needs, with the values the run implies.
func TestMetricsAfterEndToEnd(t *testing.T) {
	h, _ := mustHarness(t, nil)
	h.sf.SetUsage(42, 15000)
	mustBound(t, h)
	step(t, h, "search acme", 1)
	h.sf.ExpireAccessTokens()
	step(t, h, "account acme", 1)
	step(t, h, "frobnicate", 1)

	_, body := httpGet(t, http.DefaultClient, h.ops+"/metrics")
	for _, want := range []string{
		`forcebind_slack_events_received_total{type="events_api"}`,
		`forcebind_slack_events_acked_total{result="ok"}`,
		`forcebind_slack_ack_duration_seconds_bucket`,
		`forcebind_commands_total{command="search",outcome="ok"} 1`,
		`forcebind_commands_total{command="connect",outcome="link_sent"} 1`,
		`forcebind_commands_total{command="unknown",outcome=`,
		`forcebind_command_duration_seconds_bucket{command="search"`,
		`forcebind_salesforce_requests_total{operation="search",outcome="ok"} 1`,
		`forcebind_salesforce_requests_total{operation="find",outcome="session_expired"} 1`,
		`forcebind_salesforce_request_duration_seconds_bucket{operation="search",outcome="ok"`,
		`forcebind_token_refreshes_total{outcome="ok"} 1`,
		`forcebind_links_ended_total{flow="web",outcome="bound"} 1`,
		`forcebind_slack_connected 1`,
		`forcebind_slack_num_connections 1`,
		`forcebind_slack_reconnects_total 0`,
		`forcebind_salesforce_api_usage_max{instance="` + strings.TrimPrefix(h.sf.URL, "http://") + `"} 15000`,
		`forcebind_bindings 1`,
		`go_goroutines`,
		`process_open_fds`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// A stop that arrives while the daemon is still connecting to Slack is a
// clean stop, not a failure.
func TestStopWhileConnecting(t *testing.T) {
	s := slacktest.NewServer(slacktest.Options{})
	defer s.Close()
	sf := sftest.NewServer(sftest.Options{})
	defer sf.Close()
	env := daemonEnv(t, s, sf)
	cfg, _, err := parseConfig("run", nil, func(k string) string { return env[k] }, io.Discard, groupLog, groupStore, groupSlack, groupSalesforce, groupListen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := daemon{cfg: cfg, log: zerolog.Nop(), listening: func(net.Addr, net.Addr) { cancel() }}
	if err := d.run(ctx); err != nil {
		t.Errorf("run = %v, want a clean stop", err)
	}
}

// A backup client that stops reading (a paused `forcebind backup`, a slow
// mount) must not stall the daemon's writes: bbolt makes a write that grows
// the file wait for every open read transaction.
func TestPausedBackupDoesNotStallWrites(t *testing.T) {
	dir := t.TempDir()
	ring, err := store.KeyringFromEnv(mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fb.db")
	mustStoreWith(t, path, ring, 2000) // ~3 MB: far more than a socket buffers
	db, err := bolt.Open(path, bolt.Options{Keyring: ring})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctl, h, err := listenControl(controlSocketPath(path), controlConfig{db: db, log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	srvs := newServers(zerolog.Nop())
	srvs.serve(ctl, h, nil)
	defer srvs.shutdown(5 * time.Second)

	conn, err := net.Dial("unix", controlSocketPath(path))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /backup HTTP/1.1\r\nHost: forcebind\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Read the first bytes, so the copy has started, then stop reading.
	if _, err := io.ReadFull(conn, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		// Enough new bindings to grow the file past its current mapping.
		for i := range 1500 {
			b := store.Binding{TeamID: "T2", UserID: fmt.Sprintf("U%d", i), SalesforceUserID: "005000000000001AAA", OrgID: "00D000000000001AAA",
				Username: "u@acme.example", InstanceURL: "https://acme.my.salesforce.com", AccessToken: "a", RefreshToken: "r"}
			if err := db.PutBinding(context.Background(), b); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second): // a hang, not a speed target
		t.Fatal("writes stalled behind a backup client that stopped reading")
	}
}

// A store path too long for a unix socket costs hot backups, not the daemon.
func TestRunsWithoutControlSocket(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	h, logs := mustHarnessWith(t, func(d *daemon) { d.cfg.DB = filepath.Join(long, "forcebind.db") })
	mustContain(t, step(t, h, "help", 1)[0], "search")
	if !strings.Contains(logs.String(), "no control socket") {
		t.Errorf("no log line about the missing control socket:\n%s", logs.String())
	}
}

// Backups run one at a time: each holds a snapshot as large as the store
// beside it, so a second asked for while one is being read is refused, and
// leaves nothing behind.
func TestBackupsOneAtATime(t *testing.T) {
	key := mustKey(t)
	ring, err := store.KeyringFromEnv(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "fb.db")
	mustStoreWith(t, path, ring, 2000) // ~3 MB: more than the socket buffers
	mustHarnessWith(t, func(d *daemon) { d.cfg.DB, d.cfg.Key = path, key })

	// The first backup: a client that has started reading, then stops.
	conn, err := net.Dial("unix", controlSocketPath(path))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /backup HTTP/1.1\r\nHost: forcebind\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first backup: %s", resp.Status)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}

	// The second, while the first runs.
	env := map[string]string{"FORCEBIND_DB": path, "FORCEBIND_KEY": key}
	outDir := t.TempDir()
	dst := filepath.Join(outDir, "second.db")
	code, _, errOut := runCLI(t, env, "backup", dst)
	if code != exitFail || !strings.Contains(errOut, "a backup is already running") {
		t.Errorf("second backup: exit %d, %q; want %d and \"a backup is already running\"", code, errOut, exitFail)
	}
	if left, _ := os.ReadDir(outDir); len(left) > 0 {
		t.Errorf("the refused backup left %v", left)
	}

	// The first one is whole.
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n+512 != resp.ContentLength {
		t.Errorf("first backup: %d bytes (%v), want %d", n+512, err, resp.ContentLength)
	}
	resp.Body.Close()
	conn.Close()

	// Once it is done, the next one runs. (The daemon lets go of the first
	// just after its last byte, so this may need a second try.)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		code, _, errOut = runCLI(t, env, "backup", dst)
		if code == exitOK || !strings.Contains(errOut, "already running") || time.Now().After(deadline) {
			break
		}
	}
	if code != exitOK {
		t.Errorf("backup after the first finished: exit %d: %s", code, errOut)
	}
}

// A backup is refused, before anything is written, when the copy would not
// fit: where it is written, and where the daemon takes its snapshot.
func TestBackupChecksFreeSpace(t *testing.T) {
	tiny := func(string) (fsStat, error) { return fsStat{free: 1000, device: 1}, nil }

	t.Run("where the copy goes", func(t *testing.T) {
		key := mustKey(t)
		ring, err := store.KeyringFromEnv(key)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "fb.db")
		mustStoreWith(t, path, ring, 3)
		outDir := t.TempDir()
		var asked []string
		job := backupJob{db: path, ring: ring, statfs: func(dir string) (fsStat, error) {
			asked = append(asked, dir)
			return tiny(dir)
		}}
		var out strings.Builder
		err = job.run(t.Context(), filepath.Join(outDir, "copy.db"), &out)
		if !errors.Is(err, errNoSpace) {
			t.Fatalf("backup: %v, want errNoSpace", err)
		}
		for _, want := range []string{outDir, "for the copy", "the store is " + sizeText(mustSize(t, path)), "only 1000 bytes is free"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if diff := cmp.Diff([]string{outDir}, asked); diff != "" {
			t.Errorf("directories checked mismatch (-want +got):\n%s", diff)
		}
		if left, _ := os.ReadDir(outDir); len(left) > 0 {
			t.Errorf("the refused backup left %v", left)
		}
	})

	t.Run("where the daemon snapshots", func(t *testing.T) {
		h, logs := mustHarnessWith(t, func(d *daemon) { d.statfs = tiny })
		env := map[string]string{"FORCEBIND_DB": h.cfg.DB, "FORCEBIND_KEY": h.cfg.Key}
		outDir := t.TempDir()
		code, _, errOut := runCLI(t, env, "backup", filepath.Join(outDir, "hot.db"))
		if code != exitFail {
			t.Fatalf("backup: exit %d, want %d: %s", code, exitFail, errOut)
		}
		for _, want := range []string{"the running daemon refused", "not enough free space in " + filepath.Dir(h.cfg.DB) + " for the daemon's snapshot",
			"the store is " + sizeText(mustSize(t, h.cfg.DB)), "only 1000 bytes is free"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("error %q does not say %q", errOut, want)
			}
		}
		if left, _ := os.ReadDir(outDir); len(left) > 0 {
			t.Errorf("the refused backup left %v", left)
		}
		if strings.Contains(logs.String(), `"audit":"backup taken"`) {
			t.Error("the daemon took a backup it refused")
		}
	})
}

// A backup of a running daemon's store to the store's own file system
// needs twice the store's size free: the daemon's snapshot and the copy
// exist together until the copy is done. Elsewhere, or with no daemon
// (no snapshot), the store's size is enough.
func TestBackupSharedFileSystemNeedsTwice(t *testing.T) {
	h, _ := mustHarness(t, nil)
	mustBound(t, h)
	ring, err := store.KeyringFromEnv(h.cfg.Key)
	if err != nil {
		t.Fatal(err)
	}
	size := mustSize(t, h.cfg.DB)
	offline := filepath.Join(t.TempDir(), "fb.db")
	mustStoreWith(t, offline, ring, 1)
	offlineSize := mustSize(t, offline)

	tests := []struct {
		name      string
		db        string  // the store backed up
		size      uint64  // its size
		free      float64 // free space, in store sizes
		sameFS    bool    // the copy goes to the store's file system
		wantSpace bool    // refused for want of space
	}{
		{name: "hot, same file system, 1.5×", db: h.cfg.DB, size: size, free: 1.5, sameFS: true, wantSpace: true},
		{name: "hot, same file system, 2×", db: h.cfg.DB, size: size, free: 2, sameFS: true},
		{name: "hot, another file system, 1.5×", db: h.cfg.DB, size: size, free: 1.5},
		{name: "offline, same file system, 1.5×", db: offline, size: offlineSize, free: 1.5, sameFS: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outDir := t.TempDir()
			storeDir := filepath.Dir(tt.db)
			job := backupJob{db: tt.db, ring: ring, statfs: func(dir string) (fsStat, error) {
				st := fsStat{free: uint64(tt.free * float64(tt.size)), device: 1}
				if dir == outDir && !tt.sameFS {
					st.device = 2
				}
				if dir != outDir && dir != storeDir {
					t.Errorf("statfs of %s, which is neither where the copy goes nor the store's directory", dir)
				}
				return st, nil
			}}
			var out strings.Builder
			err := job.run(t.Context(), filepath.Join(outDir, "copy.db"), &out)
			if !tt.wantSpace {
				if err != nil {
					t.Fatalf("backup: %v", err)
				}
				return
			}
			if !errors.Is(err, errNoSpace) {
				t.Fatalf("backup: %v, want errNoSpace", err)
			}
			for _, want := range []string{outDir, "the running daemon's snapshot", "same file system", "the store is " + sizeText(tt.size),
				"so " + sizeText(2*tt.size) + " is needed", "only " + sizeText(uint64(tt.free*float64(tt.size))) + " is free"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if left, _ := os.ReadDir(outDir); len(left) > 0 {
				t.Errorf("the refused backup left %v", left)
			}
		})
	}
}

// statfsDir reads the free space and the device of real directories: two
// beside each other share both.
func TestStatfsDir(t *testing.T) {
	parent := t.TempDir()
	a, b := filepath.Join(parent, "a"), filepath.Join(parent, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	sa, err := statfsDir(a)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("no statfs here")
	}
	if err != nil {
		t.Fatal(err)
	}
	sb, err := statfsDir(b)
	if err != nil {
		t.Fatal(err)
	}
	if sa.device != sb.device || sa.free == 0 {
		t.Errorf("statfs of two sibling directories = %+v and %+v, want one device with space free", sa, sb)
	}
	if _, err := statfsDir(filepath.Join(parent, "missing")); err == nil {
		t.Error("statfs of a missing directory: no error")
	}
}

func mustSize(tb testing.TB, path string) uint64 {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return uint64(fi.Size())
}

func TestSizeText(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 bytes"},
		{1000, "1000 bytes"},
		{32768, "32.0 KiB (32768 bytes)"},
		{3 << 20, "3.0 MiB (3145728 bytes)"},
		{5 << 40, "5.0 TiB (5497558138880 bytes)"},
	}
	for _, tt := range tests {
		if got := sizeText(tt.n); got != tt.want {
			t.Errorf("sizeText(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// FORCEBIND_PPROF serves the profiles on the admin listener only: off by
// default, never on the callback listener, even when it is on.
func TestPprofOnlyOnAdmin(t *testing.T) {
	on, _ := mustHarnessWith(t, func(d *daemon) { d.cfg.AdminListen, d.cfg.Pprof = "127.0.0.1:0", true })
	off, _ := mustHarnessWith(t, func(d *daemon) { d.cfg.AdminListen = "127.0.0.1:0" })
	waitStatus(t, on.ops+"/readyz", http.StatusOK)
	waitStatus(t, off.ops+"/readyz", http.StatusOK)
	tests := []struct {
		name, url string
		want      int
	}{
		{"admin, on", on.ops + "/debug/pprof/", http.StatusOK},
		{"admin, on, a heap profile", on.ops + "/debug/pprof/heap?debug=1", http.StatusOK},
		{"admin, on, ops still served", on.ops + "/metrics", http.StatusOK},
		{"callback listener, on", on.callback + "/debug/pprof/", http.StatusNotFound},
		{"admin, off", off.ops + "/debug/pprof/", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s: %d, want %d\n%s", tt.url, resp.StatusCode, tt.want, body)
			}
			if tt.want != http.StatusOK && strings.Contains(string(body), "goroutine") {
				t.Errorf("GET %s served a profile:\n%s", tt.url, body)
			}
		})
	}
}
