package auth

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
)

const (
	janeSF  = "jane@acme.example"
	secret  = "s3cret-consumer"
	waitFor = 10 * time.Second
)

var jane = Requester{TeamID: "T0001", TeamName: "Acme", UserID: "U0JANE", ChannelID: "D0JANE", DisplayName: "jane"}

// notes records what auth told the Slack side.
type notes struct {
	mu      sync.Mutex
	linked  []store.Binding
	relinks []Link
	// nameLookups counts DisplayName calls.
	nameLookups int
	// email is what Email answers; emailErr, if set, is its error.
	email    string
	emailErr error
	failures []Failure
}

func (n *notes) Email(context.Context, string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.email, n.emailErr
}

func (n *notes) LinkFailed(_ context.Context, _ Requester, why Failure) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failures = append(n.failures, why)
	return nil
}

func (n *notes) Linked(_ context.Context, b store.Binding) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.linked = append(n.linked, b)
	return nil
}

func (n *notes) Relink(_ context.Context, _ Requester, l Link) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.relinks = append(n.relinks, l)
	return nil
}

func (n *notes) DisplayName(context.Context, string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nameLookups++
	return "Jane Doe (@jane)"
}

func (n *notes) counts() (linked, relinks int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.linked), len(n.relinks)
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

// env is a Service wired to a real store, a real listener and the fake org.
type env struct {
	sf       *sftest.Server
	db       *store.DB
	svc      *Service
	notes    *notes
	logs     *syncBuffer
	callback string // the callback listener's base URL
	now      time.Time
	clockMu  sync.Mutex
}

type envOptions struct {
	sfSecret  string // the fake org's consumer secret
	svcSecret string // the secret forcebind is configured with
	timeout   time.Duration
}

func mustEnv(tb testing.TB, o envOptions) *env {
	tb.Helper()
	e := &env{notes: &notes{}, logs: &syncBuffer{}, now: time.Now()}
	e.sf = sftest.NewServer(sftest.Options{ClientID: "forcebind-test", ClientSecret: o.sfSecret})
	tb.Cleanup(e.sf.Close)

	ring, err := store.NewKeyring(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	e.db, err = store.Open(filepath.Join(tb.TempDir(), "auth.db"), store.Options{Keyring: ring, Now: e.clock})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.db.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})

	srv, err := Listen("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e.callback = "http://" + srv.Addr().String()
	e.svc, err = New(Config{
		ClientID: "forcebind-test", ClientSecret: o.svcSecret, LoginURL: e.sf.URL,
		CallbackURL: e.callback + "/oauth/callback", LinkTTL: 10 * time.Minute, CallTimeout: o.timeout,
		Store: e.db, Notifier: e.notes, Logger: zerolog.New(e.logs), Now: e.clock,
	})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(e.svc.Handler()) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	return e
}

func (e *env) clock() time.Time {
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	e.now = e.now.Add(d)
}

func mustCtx(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	tb.Cleanup(cancel)
	return ctx
}

// page is what the listener answered a browser.
type page struct {
	status int
	header http.Header
	body   string
}

// browser does one request the way a browser would, without following
// redirects.
func browser(tb testing.TB, method, rawURL string, form url.Values, header map[string]string) page {
	tb.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(mustCtx(tb), method, rawURL, body)
	if err != nil {
		tb.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// mustRedirect starts a link for jane and plays the Salesforce login as
// jane@acme.example, returning where the browser is sent: the callback.
func (e *env) mustRedirect(tb testing.TB) string {
	tb.Helper()
	link, err := e.svc.Start(mustCtx(tb), jane)
	if err != nil {
		tb.Fatal(err)
	}
	redirect, err := e.sf.Authorize(mustCtx(tb), link.URL, janeSF)
	if err != nil {
		tb.Fatal(err)
	}
	return redirect
}

var confirmToken = regexp.MustCompile(`name="token" value="([A-Za-z0-9_-]+)"`)

// mustConfirmPage runs the browser part up to the confirmation page: the
// fake login as sfUser, then the redirect to the callback.
func (e *env) mustConfirmPage(tb testing.TB, who Requester, sfUser string) (token string, p page) {
	tb.Helper()
	link, err := e.svc.Start(mustCtx(tb), who)
	if err != nil {
		tb.Fatal(err)
	}
	redirect, err := e.sf.Authorize(mustCtx(tb), link.URL, sfUser)
	if err != nil {
		tb.Fatal(err)
	}
	p = browser(tb, http.MethodGet, redirect, nil, nil)
	m := confirmToken.FindStringSubmatch(p.body)
	if p.status != http.StatusOK || m == nil {
		tb.Fatalf("callback answered %d without a confirm form:\n%s\nlogs:\n%s", p.status, p.body, e.logs)
	}
	return m[1], p
}

func (e *env) confirm(tb testing.TB, token, decision string) page {
	tb.Helper()
	return browser(tb, http.MethodPost, e.callback+"/oauth/confirm", url.Values{"token": {token}, "decision": {decision}},
		map[string]string{"Origin": e.callback})
}

// mustBind runs the whole flow for who as sfUser and returns the binding.
func (e *env) mustBind(tb testing.TB, who Requester, sfUser string) store.Binding {
	tb.Helper()
	token, _ := e.mustConfirmPage(tb, who, sfUser)
	if p := e.confirm(tb, token, "confirm"); p.status != http.StatusOK {
		tb.Fatalf("confirm answered %d:\n%s", p.status, p.body)
	}
	b, err := e.db.GetBinding(mustCtx(tb), who.TeamID, who.UserID)
	if err != nil {
		tb.Fatalf("binding not stored: %v", err)
	}
	return b
}

// assertNoTokens fails if any token the fake org issued appears in text.
func (e *env) assertNoTokens(tb testing.TB, where, text string) {
	tb.Helper()
	for _, tok := range e.sf.IssuedTokens() {
		if strings.Contains(text, tok) {
			tb.Errorf("%s contains an issued token", where)
			return
		}
	}
}
