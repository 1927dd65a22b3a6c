package auth

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
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
	linked  []Account
	relinks []Link
	// relinkWhy holds the reason of each Relink call, in order, and
	// relinkCtxs what each one's context looked like.
	relinkWhy  []RelinkReason
	relinkCtxs []ctxSeen
	// relinkErr, if set, is what Relink answers.
	relinkErr error
	// nameLookups counts DisplayName calls.
	nameLookups int
	// email is what Email answers; emailErr, if set, is its error.
	email    string
	emailErr error
	// emailLookups counts Email calls.
	emailLookups int
	failures     []Failure
	// failCtxs describes the context of each LinkFailed call.
	failCtxs []ctxSeen
	// ended gets "linked" for each Linked call and the Failure's String for
	// each LinkFailed call, after it is recorded.
	ended chan string
	// hold, when set, keeps each LinkFailed call from returning until it
	// is closed (after ended has its word).
	hold chan struct{}
}

func newNotes() *notes { return &notes{ended: make(chan string, 64)} }

func (n *notes) Email(context.Context, string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.emailLookups++
	return n.email, n.emailErr
}

func (n *notes) lookups() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.emailLookups
}

func (n *notes) setEmail(email string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.email, n.emailErr = email, err
}

// ctxSeen is what a Notifier call's context looked like when it came.
type ctxSeen struct {
	live     bool          // not yet done
	deadline bool          // has one
	left     time.Duration // until the deadline, if any
}

func seeCtx(ctx context.Context) ctxSeen {
	dl, ok := ctx.Deadline()
	c := ctxSeen{live: ctx.Err() == nil, deadline: ok}
	if ok {
		c.left = time.Until(dl)
	}
	return c
}

func (n *notes) LinkFailed(ctx context.Context, _ Requester, why Failure) error {
	n.mu.Lock()
	n.failures = append(n.failures, why)
	n.failCtxs = append(n.failCtxs, seeCtx(ctx))
	hold := n.hold
	n.mu.Unlock()
	select {
	case n.ended <- why.String():
	default: // nobody is waiting for this many
	}
	if hold != nil {
		<-hold
	}
	return nil
}

func (n *notes) Linked(_ context.Context, a Account) error {
	n.mu.Lock()
	n.linked = append(n.linked, a)
	n.mu.Unlock()
	select {
	case n.ended <- "linked":
	default: // nobody is waiting for this many
	}
	return nil
}

// mustEnd waits for a link to end and returns how: "linked" or a Failure's
// String.
func (n *notes) mustEnd(tb testing.TB) string {
	tb.Helper()
	select {
	case how := <-n.ended:
		return how
	case <-time.After(waitFor):
		tb.Fatal("no link ended")
		return ""
	}
}

func (n *notes) failed() []Failure {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Failure(nil), n.failures...)
}

func (n *notes) failedCtxs() []ctxSeen {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]ctxSeen(nil), n.failCtxs...)
}

func (n *notes) lastRelink() (Link, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.relinks) == 0 {
		return Link{}, false
	}
	return n.relinks[len(n.relinks)-1], true
}

func (n *notes) Relink(ctx context.Context, _ Requester, l Link, why RelinkReason) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.relinks = append(n.relinks, l)
	n.relinkWhy = append(n.relinkWhy, why)
	n.relinkCtxs = append(n.relinkCtxs, seeCtx(ctx))
	return n.relinkErr
}

// relinkContexts describes the context of each Relink call so far.
func (n *notes) relinkContexts() []ctxSeen {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]ctxSeen(nil), n.relinkCtxs...)
}

// failRelinks makes every Relink call fail with err (nil: succeed), as a
// DM Slack would not take.
func (n *notes) failRelinks(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.relinkErr = err
}

// relinkReasons returns the reason of every Relink call so far.
func (n *notes) relinkReasons() []RelinkReason {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]RelinkReason(nil), n.relinkWhy...)
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
	sf      *sftest.Server
	db      *bolt.DB
	dbPath  string
	ring    *store.Keyring
	cfg     Config // what svc was built with
	svc     *Service
	serving atomic.Pointer[http.Handler] // what the callback listener serves: svc's

	notes    *notes
	obs      *observer
	waits    *waits
	hc       *http.Client // the Service's, with a transport of its own
	logs     *syncBuffer
	callback string // the callback listener's base URL
	now      time.Time
	clockMu  sync.Mutex
}

type envOptions struct {
	sfSecret     string // the fake org's consumer secret
	svcSecret    string // the secret forcebind is configured with
	timeout      time.Duration
	flow         Flow
	requireEmail bool
	linkTTL      time.Duration // 0 means 10 minutes
	// allowedOrgs, if set, returns Config.AllowedOrgIDs given the fake
	// org's id.
	allowedOrgs func(fakeOrg string) []string
	// loginURL, if set, is the login host instead of the fake org's.
	loginURL string
	// store, if set, wraps the real store the Service is given.
	store func(*bolt.DB) Store
	// handler, if set, wraps the listener's routes.
	handler func(http.Handler) http.Handler
	// routeHosts are hosts the Service's HTTP client reaches the fake org
	// at (sftest.Server.Route), as if DNS pointed them there.
	routeHosts []string
}

func mustEnv(tb testing.TB, o envOptions) *env {
	tb.Helper()
	e := &env{notes: newNotes(), obs: &observer{}, waits: newWaits(), logs: &syncBuffer{}, now: time.Now()}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	e.hc = &http.Client{Transport: transport}
	tb.Cleanup(e.hc.CloseIdleConnections)
	e.sf = sftest.NewServer(sftest.Options{ClientID: "forcebind-test", ClientSecret: o.sfSecret})
	tb.Cleanup(e.sf.Close)
	if len(o.routeHosts) > 0 {
		e.hc.Transport = e.sf.Route(transport, o.routeHosts...)
	}

	ring, err := store.NewKeyring(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	e.ring, e.dbPath = ring, filepath.Join(tb.TempDir(), "auth.db")
	e.db, err = bolt.Open(e.dbPath, bolt.Options{Keyring: ring, Now: e.clock})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.db.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e.callback = "http://" + ln.Addr().String()
	if o.linkTTL == 0 {
		o.linkTTL = 10 * time.Minute
	}
	var st Store = e.db
	var orgs []string
	if o.allowedOrgs != nil {
		orgs = o.allowedOrgs(e.sf.OrgID())
	}
	if o.store != nil {
		st = o.store(e.db)
	}
	e.cfg = Config{
		ClientID: "forcebind-test", ClientSecret: o.svcSecret, LoginURL: cmp.Or(o.loginURL, e.sf.URL),
		CallbackURL: e.callback + "/oauth/callback", LinkTTL: o.linkTTL, CallTimeout: o.timeout,
		Flow: o.flow, RequireEmailMatch: o.requireEmail, AllowedOrgIDs: orgs,
		Store: st, Notifier: e.notes, Observer: e.obs, HTTPClient: e.hc,
		Logger: zerolog.New(e.logs), Now: e.clock, After: e.waits.After,
	}
	e.svc, err = New(e.cfg)
	if err != nil {
		tb.Fatal(err)
	}
	h := e.svc.Handler()
	if o.handler != nil {
		h = o.handler(h)
	}
	e.serving.Store(&h)
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*e.serving.Load()).ServeHTTP(w, r) }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("serve: %v", err)
		}
	})
	// Runs first: pollers end before the store closes.
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := e.svc.Close(ctx); err != nil {
			tb.Errorf("close service: %v", err)
		}
	})
	return e
}

// restart replaces the Service, as a restart of forcebind does: the old
// one is closed, edit changes the configuration (nil keeps it; the Store
// is the open store unless edit wraps it), and the new one serves the
// callback listener. The store stays open.
func (e *env) restart(tb testing.TB, edit func(*Config)) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := e.svc.Close(ctx); err != nil {
		tb.Fatalf("close service: %v", err)
	}
	e.cfg.Store = e.db
	if edit != nil {
		edit(&e.cfg)
	}
	svc, err := New(e.cfg)
	if err != nil {
		tb.Fatal(err)
	}
	e.svc = svc
	h := svc.Handler()
	e.serving.Store(&h)
}

// reopenStore closes the store, lets edit change the closed file with
// bbolt directly (to damage a record, say), opens it again and restarts
// the Service on it.
func (e *env) reopenStore(tb testing.TB, edit func(tx *bbolt.Tx) error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := e.svc.Close(ctx); err != nil {
		tb.Fatalf("close service: %v", err)
	}
	if err := e.db.Close(); err != nil {
		tb.Fatalf("close store: %v", err)
	}
	raw, err := bbolt.Open(e.dbPath, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	if err := raw.Update(edit); err != nil {
		tb.Fatalf("raw edit: %v", err)
	}
	if err := raw.Close(); err != nil {
		tb.Fatal(err)
	}
	e.db, err = bolt.Open(e.dbPath, bolt.Options{Keyring: e.ring, Now: e.clock})
	if err != nil {
		tb.Fatal(err)
	}
	e.restart(tb, nil)
}

// damageBinding flips the last byte of who's sealed binding, so that it no
// longer opens (store.ErrCorrupt, naming the key id), and returns an edit
// for reopenStore.
func damageBinding(who Requester) func(tx *bbolt.Tx) error {
	return func(tx *bbolt.Tx) error {
		bk := tx.Bucket([]byte("bindings"))
		key := []byte(who.TeamID + "/" + who.UserID)
		v := bk.Get(key)
		if v == nil {
			return errors.New("no binding to damage")
		}
		v = append([]byte(nil), v...)
		v[len(v)-1] ^= 1
		return bk.Put(key, v)
	}
}

// observer records what the Service reports.
type observer struct {
	mu        sync.Mutex
	refreshes []string
	links     []string // "flow outcome"
}

func (o *observer) Refreshed(outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refreshes = append(o.refreshes, outcome)
}

func (o *observer) LinkEnded(flow Flow, outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.links = append(o.links, string(flow)+" "+outcome)
}

func (o *observer) got() (refreshes, links []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.refreshes...), append([]string(nil), o.links...)
}

// waits is the device poller's clock in tests: After records each wait
// asked for, and the wait ends only when the test releases it, so a test
// steps the poller one poll at a time without the wall clock.
type waits struct {
	mu     sync.Mutex
	asked  []time.Duration
	queued chan *wait // one per After call, in order
}

// wait is one wait the poller asked for.
type wait struct {
	d time.Duration
	c chan time.Time
}

func newWaits() *waits { return &waits{queued: make(chan *wait, 1024)} }

func (w *waits) After(d time.Duration) <-chan time.Time {
	wt := &wait{d: d, c: make(chan time.Time, 1)}
	w.mu.Lock()
	w.asked = append(w.asked, d)
	w.mu.Unlock()
	w.queued <- wt
	return wt.c
}

// next returns the next wait the poller asks for, once it has asked.
func (w *waits) next(tb testing.TB) *wait {
	tb.Helper()
	select {
	case wt := <-w.queued:
		return wt
	case <-time.After(waitFor):
		tb.Fatal("the poller did not wait")
		return nil
	}
}

// durations returns every wait asked for so far.
func (w *waits) durations() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.asked...)
}

// release ends the wait.
func (wt *wait) release() { wt.c <- time.Now() }

// mustStartDevice starts a device link for who and returns it after
// checking the fake org holds its code.
func (e *env) mustStartDevice(tb testing.TB, who Requester) Link {
	tb.Helper()
	link, err := e.svc.Start(tb.Context(), who)
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	if link.UserCode == "" || !slices.Contains(e.sf.PendingUserCodes(), link.UserCode) {
		tb.Fatalf("link %+v has no user code the fake org issued (%v)", link, e.sf.PendingUserCodes())
	}
	return link
}

// mustDeviceLink runs a device link for jane that sfUser approves after one
// pending poll, and returns how it ended.
func (e *env) mustDeviceLink(tb testing.TB, sfUser string) string {
	tb.Helper()
	link := e.mustStartDevice(tb, jane)
	e.waits.next(tb).release() // a poll while pending
	w := e.waits.next(tb)
	if err := e.sf.ApproveDevice(link.UserCode, sfUser); err != nil {
		tb.Fatal(err)
	}
	w.release()
	return e.notes.mustEnd(tb)
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
	req, err := http.NewRequestWithContext(tb.Context(), method, rawURL, body)
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
	link, err := e.svc.Start(tb.Context(), jane)
	if err != nil {
		tb.Fatal(err)
	}
	redirect, err := e.sf.Authorize(tb.Context(), link.URL, janeSF)
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
	link, err := e.svc.Start(tb.Context(), who)
	if err != nil {
		tb.Fatal(err)
	}
	redirect, err := e.sf.Authorize(tb.Context(), link.URL, sfUser)
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
	b, err := e.db.GetBinding(tb.Context(), who.TeamID, who.UserID)
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

// mustLog waits until the log has a line containing text: for what a
// goroutine of the Service does without telling anyone else.
func (e *env) mustLog(tb testing.TB, text string) {
	tb.Helper()
	deadline := time.Now().Add(waitFor)
	for !strings.Contains(e.logs.String(), text) {
		if time.Now().After(deadline) {
			tb.Fatalf("no log line with %q:\n%s", text, e.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
