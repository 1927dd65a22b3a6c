package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/bot/slacktest"
	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
)

// The demo's people and app: a Slack user and the Salesforce users of the
// fake org's fixtures.
const (
	demoUser     = "U0JANE"
	demoClientID = "forcebind-demo"
	demoSecret   = "demo-consumer-secret"
	// defaultAnswerWait is how long the demo waits for the bot to answer.
	defaultAnswerWait = 15 * time.Second
)

// runDemo is `forcebind demo`: the fake Slack, the fake Salesforce org and the
// real daemon in one process, with a throwaway store and key.
func runDemo(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	script := fs.String("script", "", "play a script of messages instead of a terminal chat (see testdata/demo.script)")
	verbose := fs.Bool("v", false, "show the daemon's log (info level) on stderr")
	flow := fs.String("connect-flow", "web", "how jane connects: web (link, login, confirmation page) or device (a code to enter)")
	if err := fs.Parse(args); err != nil {
		return configError(err)
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("demo: unexpected arguments %q", fs.Args())}
	}
	level := zerolog.WarnLevel
	if *verbose {
		level = zerolog.InfoLevel
	}
	if *flow != string(auth.FlowWeb) && *flow != string(auth.FlowDevice) {
		return usageError{fmt.Errorf("demo: -connect-flow %q is not web or device", *flow)}
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}).Level(level).With().Timestamp().Logger()
	h, err := startHarness(ctx, log, demoFlow(auth.Flow(*flow)))
	if err != nil {
		return err
	}
	defer h.close()
	if *script != "" {
		f, err := os.Open(*script)
		if err != nil {
			return usageError{err}
		}
		defer f.Close()
		return h.play(ctx, f, stdout)
	}
	return h.chat(ctx, stdin, stdout)
}

// demoFlow sets the daemon's connect flow. The device flow checks emails,
// as it does by default in `forcebind run`.
func demoFlow(f auth.Flow) func(*daemon) {
	return func(d *daemon) {
		d.cfg.ConnectFlow = f
		d.cfg.RequireEmailMatch = f == auth.FlowDevice
	}
}

// harness is a running demo: both fakes and the daemon. The end-to-end test
// uses it too.
type harness struct {
	slack    *slacktest.Server
	sf       *sftest.Server
	dir      string
	callback string // base URL of the callback listener; "" in the device flow
	ops      string // base URL of /healthz, /readyz and /metrics
	cfg      Config // the daemon's configuration, as started
	// trust, if set, is what the browser trusts for a TLS callback listener.
	trust  *x509.CertPool
	cancel context.CancelFunc
	done   chan error    // the daemon's result
	wait   time.Duration // how long to wait for an answer

	mu   sync.Mutex
	mark int // messages before this index were already matched by expect
}

// startHarness starts the fakes and the daemon and returns once the daemon's
// listeners are up. edit, if set, adjusts the daemon before it starts (tests
// shorten the bot's timeouts, or choose the device flow).
func startHarness(ctx context.Context, log zerolog.Logger, edit func(*daemon)) (*harness, error) {
	dir, err := os.MkdirTemp("", "forcebind-demo-")
	if err != nil {
		return nil, err
	}
	key, err := store.GenerateKey()
	if err != nil {
		return nil, err
	}
	h := &harness{
		slack: slacktest.NewServer(slacktest.Options{}),
		sf:    sftest.NewServer(sftest.Options{ClientID: demoClientID, ClientSecret: demoSecret}),
		dir:   dir,
		done:  make(chan error, 1),
		wait:  defaultAnswerWait,
	}
	cfg := Config{
		SlackAppToken: h.slack.AppToken(), SlackBotToken: h.slack.BotToken(), SlackAPIURL: h.slack.APIURL,
		ClientID: demoClientID, ClientSecret: demoSecret, LoginURL: h.sf.URL, APIVersion: salesforce.DefaultAPIVersion,
		Listen: "127.0.0.1:0", LinkTTL: 10 * time.Minute, ConnectFlow: auth.FlowWeb,
		DB: filepath.Join(dir, "forcebind.db"), Key: key,
	}
	up := make(chan struct{})
	runCtx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	d := daemon{cfg: cfg, log: log}
	if edit != nil {
		edit(&d)
	}
	h.cfg = d.cfg
	if d.cfg.ConnectFlow == auth.FlowDevice {
		// Salesforce asks for 5s between polls; the fake asks for the least
		// the wire can say, so the demo answers within a second or so.
		h.sf.SetDeviceInterval(1)
	}
	d.listening = func(callback, ops net.Addr) {
		scheme := "http://"
		if d.cfg.TLSCertFile != "" {
			scheme = "https://"
		}
		if callback != nil {
			h.callback = scheme + callback.String()
		}
		h.ops = "http://" + ops.String()
		if d.cfg.AdminListen == "" {
			h.ops = scheme + ops.String()
		}
		close(up)
	}
	go func() { h.done <- d.run(runCtx) }()
	select {
	case <-up:
		return h, nil
	case err := <-h.done:
		h.done <- err
		h.close()
		return nil, fmt.Errorf("daemon did not start: %w", err)
	}
}

// close stops the daemon and the fakes and removes the throwaway store. It
// returns the daemon's own result.
func (h *harness) close() error {
	h.cancel()
	var err error
	select {
	case err = <-h.done:
		h.done <- err
	case <-time.After(30 * time.Second):
		err = errors.New("daemon did not stop within 30s")
	}
	h.slack.Close()
	h.sf.Close()
	os.RemoveAll(h.dir)
	return err
}

// chat runs the terminal chat: each line typed arrives as a DM from the
// demo user; lines starting with ':' drive the fakes.
func (h *harness) chat(ctx context.Context, stdin io.Reader, out io.Writer) error {
	msgs, stop := h.slack.Subscribe()
	defer stop()
	go func() {
		for m := range msgs {
			fmt.Fprintf(out, "\n%s\n> ", renderMessage(m))
		}
	}()
	first := `The first request sends you a link: open it in a browser (sign in as jane@acme.example
or sam@acme.example), or type ":approve jane@acme.example" to play the browser here.`
	if h.cfg.ConnectFlow == auth.FlowDevice {
		first = `This is the device flow: the first request sends you a code. Open the page it names,
sign in (as jane@acme.example, or as sam@acme.example to see the email check refuse it)
and enter the code, or type ":approve jane@acme.example" to do that here.`
	}
	fmt.Fprintf(out, `forcebind demo — you are @jane in the Slack workspace "Acme", talking to the bot in a DM.
A fake Salesforce org (%s) and a fake Slack are running in this process.
Try: help, search acme, opp acme, whoami, disconnect.
%s
Demo commands: :approve USER, :deny, :expire (Salesforce sessions time out),
:revoke (an admin revokes the app), :quit.
> `, h.sf.URL, first)
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-h.done:
			h.done <- err
			return fmt.Errorf("daemon stopped: %w", err)
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			line = strings.TrimSpace(line)
			switch {
			case line == "":
			case line == ":quit":
				return nil
			case strings.HasPrefix(line, ":"):
				if err := h.control(ctx, line, out); err != nil {
					fmt.Fprintf(out, "(demo) %v\n", err)
				}
			default:
				h.slack.SendDM(demoUser, line)
			}
			fmt.Fprint(out, "> ")
		}
	}
}

// play runs a script: one step a line (see testdata/demo.script). It fails
// on the first step that does not happen as written.
func (h *harness) play(ctx context.Context, script io.Reader, out io.Writer) error {
	printed := 0
	flush := func() { // what the bot sent since the last step, e.g. the confirmation DM
		msgs := h.slack.Messages()
		for _, m := range msgs[min(printed, len(msgs)):] {
			fmt.Fprintln(out, renderMessage(m))
		}
		printed = len(msgs)
	}
	sc := bufio.NewScanner(script)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		verb, arg, _ := strings.Cut(line, " ")
		arg = strings.TrimSpace(arg)
		var err error
		switch verb {
		case "say":
			flush()
			fmt.Fprintf(out, "jane › %s\n", arg)
			err = h.say(ctx, arg)
			flush()
		case "expect":
			err = h.expect(ctx, arg)
		default:
			err = h.control(ctx, ":"+line, out)
		}
		if err != nil {
			flush()
			return fmt.Errorf("script line %d (%s): %w", n, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	flush()
	fmt.Fprintln(out, "script passed")
	return nil
}

// say sends text as a DM and waits for the bot's answer.
func (h *harness) say(ctx context.Context, text string) error {
	before := len(h.slack.Messages())
	h.mu.Lock()
	h.mark = before
	h.mu.Unlock()
	h.slack.SendDM(demoUser, text)
	if err := h.waitFor(ctx, func(msgs []slacktest.Message) bool { return len(msgs) > before }); err != nil {
		return fmt.Errorf("the bot did not answer %q: %w", text, err)
	}
	return nil
}

// waitFor polls the messages sent so far until done says so or h.wait
// passes.
func (h *harness) waitFor(ctx context.Context, done func([]slacktest.Message) bool) error {
	ctx, cancel := context.WithTimeout(ctx, h.wait)
	defer cancel()
	for !done(h.slack.Messages()) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// expect waits until a message since the last say contains text.
func (h *harness) expect(ctx context.Context, text string) error {
	h.mu.Lock()
	mark := h.mark
	h.mu.Unlock()
	err := h.waitFor(ctx, func(msgs []slacktest.Message) bool {
		for _, m := range msgs[min(mark, len(msgs)):] {
			if strings.Contains(renderMessage(m), text) {
				return true
			}
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("no answer contains %q", text)
	}
	return nil
}

// control runs a demo command (":approve jane@acme.example", ":expire", …).
func (h *harness) control(ctx context.Context, line string, out io.Writer) error {
	verb, arg, _ := strings.Cut(strings.TrimPrefix(line, ":"), " ")
	arg = strings.TrimSpace(arg)
	switch verb {
	case "approve", "deny":
		if h.cfg.ConnectFlow == auth.FlowDevice {
			return h.enterCode(verb, arg, out)
		}
		link := h.lastLink()
		if link == "" {
			return errors.New("no link to open yet: ask the bot something first")
		}
		h.mu.Lock()
		h.mark = len(h.slack.Messages())
		h.mu.Unlock()
		page, err := h.browse(ctx, link, verb, arg)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "(browser) %s\n", page)
	case "expire":
		h.sf.ExpireAccessTokens()
		fmt.Fprintln(out, "(salesforce) every access token has expired")
	case "revoke":
		h.sf.RevokeAll()
		fmt.Fprintln(out, "(salesforce) an admin revoked every grant")
	case "help":
		fmt.Fprintln(out, "(demo) :approve USER, :deny, :expire, :revoke, :quit")
	default:
		return fmt.Errorf("unknown demo command %q", verb)
	}
	return nil
}

// enterCode plays the person on Salesforce's verification page in the
// device flow: signed in as username, they enter the newest code and
// approve it, or deny it.
func (h *harness) enterCode(verb, username string, out io.Writer) error {
	codes := h.sf.PendingUserCodes()
	if len(codes) == 0 {
		return errors.New("no code to enter yet: send connect first")
	}
	code := codes[len(codes)-1]
	h.mu.Lock()
	h.mark = len(h.slack.Messages())
	h.mu.Unlock()
	if verb == "deny" {
		if err := h.sf.DenyDevice(code); err != nil {
			return err
		}
		fmt.Fprintf(out, "(browser) entered %s at Salesforce and pressed Deny\n", code)
		return nil
	}
	if username == "" {
		username = "jane@acme.example"
	}
	if err := h.sf.ApproveDevice(code, username); err != nil {
		return err
	}
	fmt.Fprintf(out, "(browser) signed in to Salesforce as %s, entered %s and pressed Allow\n", username, code)
	return nil
}

var (
	authorizeLink = regexp.MustCompile(`https?://[^\s|>"]+/services/oauth2/authorize\?[^\s|>"]+`)
	confirmField  = regexp.MustCompile(`name="token" value="([A-Za-z0-9_-]+)"`)
	pageHeading   = regexp.MustCompile(`<h1>([^<]*)</h1>`)
)

// lastLink finds the newest binding link the bot sent.
func (h *harness) lastLink() string {
	msgs := h.slack.Messages()
	for i := len(msgs) - 1; i >= 0; i-- {
		if l := authorizeLink.FindString(string(msgs[i].Blocks) + " " + msgs[i].Text); l != "" {
			return strings.ReplaceAll(l, `\u0026`, "&")
		}
	}
	return ""
}

// browse plays the person's browser: the fake Salesforce login (allow as
// username, or deny), the redirect to forcebind's callback, and Confirm on
// forcebind's confirmation page. It returns the last page's heading.
func (h *harness) browse(ctx context.Context, link, verb, username string) (string, error) {
	var redirect string
	var err error
	if verb == "deny" {
		redirect, err = h.sf.Deny(ctx, link)
	} else {
		if username == "" {
			username = "jane@acme.example"
		}
		redirect, err = h.sf.Authorize(ctx, link, username)
	}
	if err != nil {
		return "", err
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: h.wait}
	if h.trust != nil {
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.trust}}
	}
	body, status, err := get(ctx, hc, redirect)
	if err != nil {
		return "", err
	}
	m := confirmField.FindStringSubmatch(body)
	if m == nil {
		return fmt.Sprintf("%d %s", status, heading(body)), nil
	}
	form := url.Values{"token": {m[1]}, "decision": {"confirm"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.callback+"/oauth/confirm", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.callback)
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("confirm page answered %d: %s", resp.StatusCode, heading(string(b)))
	}
	return "signed in to Salesforce as " + username + ", pressed Confirm: " + heading(string(b)), nil
}

func get(ctx context.Context, hc *http.Client, u string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), resp.StatusCode, nil
}

func heading(page string) string {
	if m := pageHeading.FindStringSubmatch(page); m != nil {
		return m[1]
	}
	return "(no heading)"
}

// renderMessage prints a bot message as plain text: Block Kit sections line
// by line, links as "text (url)", Slack dates by their fallback.
func renderMessage(m slacktest.Message) string {
	var parts []string
	var blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Text string `json:"text"`
		} `json:"text"`
		Elements []struct {
			Text string `json:"text"`
		} `json:"elements"`
	}
	if len(m.Blocks) > 0 && json.Unmarshal(m.Blocks, &blocks) == nil {
		for _, b := range blocks {
			switch {
			case b.Type == "section" && b.Text != nil:
				parts = append(parts, b.Text.Text)
			case b.Type == "context":
				for _, e := range b.Elements {
					parts = append(parts, e.Text)
				}
			}
		}
	}
	if len(parts) == 0 {
		parts = []string{m.Text}
	}
	text := strings.Join(parts, "\n")
	text = slackDate.ReplaceAllString(text, "$1")
	text = slackLink.ReplaceAllString(text, "$2 ($1)")
	text = bareLink.ReplaceAllString(text, "$1")
	text = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(text)
	who := "forcebind"
	if m.Ephemeral {
		who += " (only you)"
	}
	return who + " › " + strings.ReplaceAll(text, "\n", "\n            ")
}

var (
	slackDate = regexp.MustCompile(`<!date\^[^|>]*\|([^>]*)>`)
	slackLink = regexp.MustCompile(`<(https?://[^|>]+)\|([^>]*)>`)
	bareLink  = regexp.MustCompile(`<(https?://[^|>]+)>`)
)
