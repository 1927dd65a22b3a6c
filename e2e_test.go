package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/bot"
	"github.com/forcebind/forcebind/bot/slacktest"
	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
)

// childEnv makes the test binary run forcebind itself, for tests that need
// a real process (signals).
const childEnv = "FORCEBIND_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "run" {
		os.Args = []string{"forcebind", "run"}
		main() // exits
	}
	if os.Getenv(childEnv) == pongChild {
		pongMain() // exits
	}
	goleak.VerifyTestMain(m)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mustHarness starts the demo harness with its log captured at debug level.
func mustHarness(tb testing.TB, tune func(*bot.Config)) (*harness, *syncBuffer) {
	tb.Helper()
	return mustHarnessWith(tb, func(d *daemon) { d.botTuning = tune })
}

// step sends text as jane's DM and returns the answers it got, in order.
func step(tb testing.TB, h *harness, text string, wantAnswers int) []slacktest.Message {
	tb.Helper()
	before := len(h.slack.Messages())
	h.slack.SendDM(demoUser, text)
	if err := h.waitFor(tb.Context(), func(m []slacktest.Message) bool { return len(m) >= before+wantAnswers }); err != nil {
		tb.Fatalf("%q: %d answers, want %d: %+v", text, len(h.slack.Messages())-before, wantAnswers, h.slack.Messages()[before:])
	}
	return h.slack.Messages()[before:]
}

func mustContain(tb testing.TB, m slacktest.Message, want ...string) {
	tb.Helper()
	got := renderMessage(m)
	for _, w := range want {
		if !strings.Contains(got, w) {
			tb.Errorf("answer lacks %q:\n%s", w, got)
		}
	}
}

// TestEndToEnd runs the daemon against the fake Slack and the fake org over
// real sockets, through the whole life of a binding.
func TestEndToEnd(t *testing.T) {
	h, logs := mustHarness(t, nil)
	dm := h.slack.DMChannel(demoUser)

	// Not connected: the answer is a private link.
	msgs := step(t, h, "search acme", 1)
	mustContain(t, msgs[0], "connect your account first", "/services/oauth2/authorize?")
	if msgs[0].Channel != dm {
		t.Fatalf("link sent to %s, want jane's DM", msgs[0].Channel)
	}

	// The browser: Salesforce login, callback, confirmation page, Confirm.
	mark := len(h.slack.Messages())
	if _, err := h.browse(t.Context(), h.lastLink(), "approve", "jane@acme.example"); err != nil {
		t.Fatal(err)
	}
	if err := h.waitFor(t.Context(), func(m []slacktest.Message) bool { return len(m) > mark }); err != nil {
		t.Fatal("no confirmation DM")
	}
	confirmDM := h.slack.Messages()[mark]
	mustContain(t, confirmDM, "connected to Salesforce as *jane@acme.example*")
	if confirmDM.Channel != dm || confirmDM.Method != "chat.postMessage" {
		t.Errorf("confirmation went to %s by %s, want a DM", confirmDM.Channel, confirmDM.Method)
	}

	// Search runs as jane, with links to the records.
	msgs = step(t, h, "search acme", 1)
	mustContain(t, msgs[0], "Acme Corporation", h.sf.URL+"/lightning/r/Account/0015g00000AcmeAAAR/view")

	// Sessions expire: the next answer still comes, after exactly one refresh.
	tokenCalls := h.sf.Calls(sftest.EndpointToken)
	h.sf.ExpireAccessTokens()
	msgs = step(t, h, "account acme", 1)
	mustContain(t, msgs[0], "Acme Corporation")
	if n := h.sf.Calls(sftest.EndpointToken) - tokenCalls; n != 1 {
		t.Errorf("%d token calls after expiry, want one refresh", n)
	}

	// The grant is revoked: one private fresh link, and the binding is gone.
	h.sf.RevokeAll()
	msgs = step(t, h, "search acme", 2)
	links := 0
	for _, m := range msgs {
		if m.Channel != dm {
			t.Errorf("answer went to %s, want jane's DM", m.Channel)
		}
		if strings.Contains(renderMessage(m), "/services/oauth2/authorize?") {
			links++
		}
	}
	if links != 1 {
		t.Errorf("%d fresh links after revocation, want 1", links)
	}

	// What people type is theirs: it never reaches the log, at any level.
	step(t, h, "contact zebra-quagga-4711", 1)
	if strings.Contains(logs.String(), "zebra-quagga-4711") {
		t.Error("message text is in the log")
	}

	// Connect again, then disconnect, which revokes at Salesforce.
	if _, err := h.browse(t.Context(), h.lastLink(), "approve", "jane@acme.example"); err != nil {
		t.Fatal(err)
	}
	revokes := h.sf.Calls(sftest.EndpointRevoke)
	msgs = step(t, h, "disconnect", 1)
	mustContain(t, msgs[len(msgs)-1], "Disconnected from *jane@acme.example*", "revoked")
	if n := h.sf.Calls(sftest.EndpointRevoke) - revokes; n != 1 {
		t.Errorf("%d revocations on disconnect, want 1", n)
	}

	// No message ever went anywhere public, and no token reached the log.
	for _, m := range h.slack.Messages() {
		if m.Channel != dm && !m.Ephemeral {
			t.Errorf("public message: %+v", m)
		}
	}
	for _, tok := range h.sf.IssuedTokens() {
		if strings.Contains(logs.String(), tok) {
			t.Fatal("a Salesforce token is in the log")
		}
	}
	for _, tok := range []string{h.slack.BotToken(), h.slack.AppToken()} {
		if strings.Contains(logs.String(), tok) {
			t.Fatal("a Slack token is in the log")
		}
	}
}

func TestMentionAnswersEphemerally(t *testing.T) {
	h, _ := mustHarness(t, nil)
	h.slack.SendMention("C0GENERAL", demoUser, "<@U0BOT> search acme")
	m, err := h.slack.WaitMessage(t.Context(), func(m slacktest.Message) bool { return m.Channel == "C0GENERAL" })
	if err != nil {
		t.Fatal(err)
	}
	if !m.Ephemeral || m.User != demoUser {
		t.Errorf("answer to a mention: %+v; want ephemeral to jane", m)
	}
	mustContain(t, m, "/services/oauth2/authorize?")
}

func TestDuplicateEventAnsweredOnce(t *testing.T) {
	h, _ := mustHarness(t, nil)
	d := h.slack.SendDM(demoUser, "whoami")
	h.slack.Redeliver(d, 1, "timeout")
	// jane's messages are handled in order: once help is answered, both
	// deliveries of whoami have been seen.
	h.slack.SendDM(demoUser, "help")
	if err := h.waitFor(t.Context(), func(ms []slacktest.Message) bool {
		return len(ms) > 0 && strings.Contains(ms[len(ms)-1].Text, "Send me:")
	}); err != nil {
		t.Fatalf("help not answered: %+v", h.slack.Messages())
	}
	whoami := 0
	for _, m := range h.slack.Messages() {
		if strings.Contains(m.Text, "not connected") {
			whoami++
		}
	}
	if whoami != 1 {
		t.Errorf("whoami answered %d times for one event delivered twice", whoami)
	}
}

// While Salesforce is slow, every envelope is still acked at once: the acks
// of all messages arrive before the first answer.
func TestAcksWhileSalesforceIsSlow(t *testing.T) {
	h, _ := mustHarness(t, nil)
	if _, err := h.browse(t.Context(), mustLink(t, h), "approve", "jane@acme.example"); err != nil {
		t.Fatal(err)
	}
	h.sf.SetLatency(3 * time.Second)
	before := len(h.slack.Messages())
	var ds []slacktest.Delivery
	for i := range 5 {
		ds = append(ds, h.slack.SendDM(demoUser, fmt.Sprintf("search acme %d", i)))
	}
	var worst time.Duration
	for _, d := range ds {
		a, err := h.slack.WaitAck(t.Context(), d.EnvelopeID)
		if err != nil {
			t.Fatal(err)
		}
		worst = max(worst, a.Latency)
	}
	if n := len(h.slack.Messages()); n != before {
		t.Errorf("an answer came before all acks: acks waited on Salesforce")
	}
	t.Logf("worst ack latency with Salesforce 3s slow: %v", worst)
	h.sf.SetLatency(0)
}

// mustLink asks for a link and returns it.
func mustLink(tb testing.TB, h *harness) string {
	tb.Helper()
	step(tb, h, "connect", 1)
	return h.lastLink()
}

func TestBusyWhenFull(t *testing.T) {
	h, _ := mustHarness(t, func(c *bot.Config) { c.Workers, c.QueuePerUser, c.MaxQueued = 1, 1, 1 })
	h.sf.SetLatency(300 * time.Millisecond)
	if _, err := h.browse(t.Context(), mustLink(t, h), "approve", "jane@acme.example"); err != nil {
		t.Fatal(err)
	}
	h.slack.SendDM(demoUser, "search one")
	h.slack.SendDM(demoUser, "search two")
	h.slack.SendDM(demoUser, "search three")
	if _, err := h.slack.WaitMessage(t.Context(), func(m slacktest.Message) bool { return strings.Contains(m.Text, "busy") }); err != nil {
		t.Fatalf("no busy answer: %v", err)
	}
	h.sf.SetLatency(0)
}

func TestDemoScript(t *testing.T) {
	for _, tt := range []struct {
		script string
		flow   auth.Flow
	}{
		{"demo.script", auth.FlowWeb},
		{"demo-device.script", auth.FlowDevice},
	} {
		t.Run(tt.script, func(t *testing.T) {
			h, logs := mustHarnessWith(t, demoFlow(tt.flow))
			f, err := os.Open(filepath.Join("testdata", tt.script))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var out bytes.Buffer
			if err := h.play(t.Context(), f, &out); err != nil {
				t.Fatalf("%v\ntranscript:\n%s\nlog:\n%s", err, out.String(), logs.String())
			}
			if !strings.HasSuffix(out.String(), "script passed\n") {
				t.Errorf("transcript does not end in success:\n%s", out.String())
			}
		})
	}
}

func TestDemoScriptFailsWhenTheBotDoesNot(t *testing.T) {
	h, _ := mustHarness(t, nil)
	h.wait = 500 * time.Millisecond
	err := h.play(t.Context(), strings.NewReader("say help\nexpect a sentence the bot never says\n"), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("play = %v, want a failure at line 2", err)
	}
}

// daemonEnv is the environment of a `forcebind run` against the fakes.
func daemonEnv(tb testing.TB, s *slacktest.Server, sf *sftest.Server) map[string]string {
	tb.Helper()
	key, err := store.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	return map[string]string{
		"SLACK_APP_TOKEN": s.AppToken(), "SLACK_BOT_TOKEN": s.BotToken(), "SLACK_API_URL": s.APIURL,
		"SALESFORCE_CLIENT_ID": "sftest-client", "SALESFORCE_LOGIN_URL": sf.URL,
		"FORCEBIND_LISTEN": "127.0.0.1:0", "FORCEBIND_CALLBACK_URL": "http://127.0.0.1/oauth/callback",
		"FORCEBIND_DB": filepath.Join(tb.TempDir(), "fb.db"), "FORCEBIND_KEY": key, "LOG_FORMAT": "json",
	}
}

// Slack refusing the app is a clean, non-zero exit, not a reconnect loop.
func TestRunExitsOnSlackRefusal(t *testing.T) {
	tests := []struct {
		name string
		set  func(*slacktest.Server)
	}{
		{"invalid_auth", func(s *slacktest.Server) { s.SetError("auth.test", "invalid_auth") }},
		{"token_revoked", func(s *slacktest.Server) { s.SetError("apps.connections.open", "token_revoked") }},
		{"link_disabled", func(s *slacktest.Server) {
			go func() {
				for deadline := time.Now().Add(10 * time.Second); !s.Connected(); time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						return // the daemon never connected; the test fails on its exit code
					}
				}
				s.Disconnect("link_disabled")
			}()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := slacktest.NewServer(slacktest.Options{})
			defer s.Close()
			sf := sftest.NewServer(sftest.Options{})
			defer sf.Close()
			env := daemonEnv(t, s, sf)
			tt.set(s)
			var stderr syncBuffer
			code := run(t.Context(), []string{"run"}, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, &stderr)
			if code != exitRefused || !strings.Contains(stderr.String(), "slack refused the connection") {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and the reason", code, stderr.String(), exitRefused)
			}
		})
	}
}

func TestRunReportsEveryMissingSetting(t *testing.T) {
	var stderr syncBuffer
	code := run(context.Background(), []string{"run"}, func(string) string { return "" }, strings.NewReader(""), io.Discard, &stderr)
	for _, want := range []string{"SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "SALESFORCE_CLIENT_ID", "FORCEBIND_KEY"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("error does not name %s:\n%s", want, stderr.String())
		}
	}
	if code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
}

// startChild starts `forcebind run` as a real process (this test binary, see
// TestMain) against the fakes, with extra environment. done delivers its
// exit; stderr is its log.
func startChild(t *testing.T, s *slacktest.Server, sf *sftest.Server, extra ...string) (cmd *exec.Cmd, stderr *syncBuffer, done <-chan error) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"=run"), extra...)
	for k, v := range daemonEnv(t, s, sf) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd, stderr, exited
}

// SIGTERM stops a real forcebind process cleanly: exit 0, listener and store
// closed.
func TestSIGTERM(t *testing.T) {
	s := slacktest.NewServer(slacktest.Options{})
	defer s.Close()
	sf := sftest.NewServer(sftest.Options{})
	defer sf.Close()
	cmd, stderr, done := startChild(t, s, sf)
	s.SendDM(demoUser, "help")
	if _, err := s.WaitMessage(t.Context(), func(m slacktest.Message) bool { return m.Channel == s.DMChannel(demoUser) }); err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("the daemon did not answer: %v\n%s", err, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("no exit within 20s of SIGTERM\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `"message":"stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", stderr.String())
	}
}

// SIGHUP reaches a real forcebind process (main wires it) and reloads the
// TLS certificate; the process goes on serving.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	s := slacktest.NewServer(slacktest.Options{})
	defer s.Close()
	sf := sftest.NewServer(sftest.Options{})
	defer sf.Close()
	dir := t.TempDir()
	certFile, keyFile, _ := mustCert(t, dir, 1, []string{"127.0.0.1"}, time.Now().Add(24*time.Hour))
	cmd, stderr, done := startChild(t, s, sf, "FORCEBIND_TLS_CERT_FILE="+certFile, "FORCEBIND_TLS_KEY_FILE="+keyFile)
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
	}()
	waitLog := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), want); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", want, stderr.String())
			}
		}
	}
	waitLog(`"message":"listeners up"`)
	mustCert(t, dir, 2, []string{"127.0.0.1"}, time.Now().Add(24*time.Hour))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(`"message":"tls certificate reloaded"`)
	if !strings.Contains(stderr.String(), `"serial":"2"`) {
		t.Errorf("the reload did not take the new certificate:\n%s", stderr.String())
	}
	s.SendDM(demoUser, "help")
	if _, err := s.WaitMessage(t.Context(), func(m slacktest.Message) bool { return m.Channel == s.DMChannel(demoUser) }); err != nil {
		t.Fatalf("no answer after SIGHUP: %v\n%s", err, stderr.String())
	}
}
