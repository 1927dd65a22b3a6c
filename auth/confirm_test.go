package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// pausingStore is the real store, except that RedeemPending of a
// confirmation (a pending link that holds a sign-in) says so on redeemed
// and then waits for release before it returns: the moment the
// confirmation is spent and nothing else is done yet. failPut makes
// storing the binding (ReplaceBinding) fail.
type pausingStore struct {
	*bolt.DB
	redeemed chan struct{}
	release  chan struct{}
	failPut  bool
}

func newPausingStore() *pausingStore {
	return &pausingStore{redeemed: make(chan struct{}, 8), release: make(chan struct{})}
}

func (s *pausingStore) wrap(db *bolt.DB) Store {
	s.DB = db
	return s
}

func (s *pausingStore) RedeemPending(ctx context.Context, state string) (store.Pending, error) {
	p, err := s.DB.RedeemPending(ctx, state)
	if err == nil && p.Binding != nil {
		s.redeemed <- struct{}{}
		<-s.release
	}
	return p, err
}

func (s *pausingStore) ReplaceBinding(ctx context.Context, b store.Binding) (store.Replaced, error) {
	if s.failPut {
		return store.Replaced{}, errors.New("disk full")
	}
	return s.DB.ReplaceBinding(ctx, b)
}

// mustRedeemed waits until a confirmation has been redeemed.
func (s *pausingStore) mustRedeemed(tb testing.TB) {
	tb.Helper()
	select {
	case <-s.redeemed:
	case <-time.After(waitFor):
		tb.Fatal("no confirmation was redeemed")
	}
}

// confirmWatch sees the listener's POST /oauth/confirm requests: the
// context of each as it comes in, and each handler's return.
type confirmWatch struct {
	ctxs chan context.Context
	done chan struct{}
}

func newConfirmWatch() *confirmWatch {
	return &confirmWatch{ctxs: make(chan context.Context, 8), done: make(chan struct{}, 8)}
}

func (c *confirmWatch) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/oauth/confirm" {
			next.ServeHTTP(w, r)
			return
		}
		c.ctxs <- r.Context()
		next.ServeHTTP(w, r)
		c.done <- struct{}{}
	})
}

// mustRequest returns the context of the next confirm request to arrive.
func (c *confirmWatch) mustRequest(tb testing.TB) context.Context {
	tb.Helper()
	select {
	case ctx := <-c.ctxs:
		return ctx
	case <-time.After(waitFor):
		tb.Fatal("no confirm request arrived")
		return nil
	}
}

// mustHandled waits until a confirm handler has returned.
func (c *confirmWatch) mustHandled(tb testing.TB) {
	tb.Helper()
	select {
	case <-c.done:
	case <-time.After(waitFor):
		tb.Fatal("the confirm handler did not return")
	}
}

// postConfirm is e.confirm for another goroutine: it returns what the
// listener answered, or the error, instead of failing the test.
func (e *env) postConfirm(ctx context.Context, token string) (page, error) {
	form := url.Values{"token": {token}, "decision": {"confirm"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.callback+"/oauth/confirm", strings.NewReader(form.Encode()))
	if err != nil {
		return page{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", e.callback)
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return page{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, body: string(b)}, err
}

// A browser that leaves right after sending Confirm (a closed tab, a
// double-click's first request) does not undo the bind: once the
// confirmation is spent the bind runs to its end.
func TestConfirmSurvivesTheBrowserLeaving(t *testing.T) {
	ps, watch := newPausingStore(), newConfirmWatch()
	e := mustEnv(t, envOptions{store: ps.wrap, handler: watch.wrap})
	token, _ := e.mustConfirmPage(t, jane, janeSF)

	ctx, leave := context.WithCancel(t.Context())
	sent := make(chan error, 1)
	go func() {
		_, err := e.postConfirm(ctx, token)
		sent <- err
	}()
	served := watch.mustRequest(t)
	ps.mustRedeemed(t)
	leave() // the client closes the connection
	if err := <-sent; !errors.Is(err, context.Canceled) {
		t.Fatalf("the POST ended with %v, want it cancelled", err)
	}
	select {
	case <-served.Done(): // the listener has seen the browser go
	case <-time.After(waitFor):
		t.Fatal("the request's context was not cancelled")
	}
	close(ps.release)
	watch.mustHandled(t)

	b, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil || b.Username != janeSF {
		t.Fatalf("binding after the browser left = %v, %v; want %s bound", b, err, janeSF)
	}
	if linked, _ := e.notes.counts(); linked != 1 {
		t.Errorf("Linked called %d times, want 1", linked)
	}
	if n := e.sf.Calls(sftest.EndpointRevoke); n != 0 {
		t.Errorf("%d revocations of a grant the person confirmed", n)
	}
}

// Two POSTs of one confirmation at once (a double-click) both show the
// outcome: the second waits for the first instead of saying "already used".
func TestConfirmTwiceAtOnce(t *testing.T) {
	ps, watch := newPausingStore(), newConfirmWatch()
	e := mustEnv(t, envOptions{store: ps.wrap, handler: watch.wrap})
	token, _ := e.mustConfirmPage(t, jane, janeSF)

	pages := make(chan page, 2)
	post := func() {
		p, err := e.postConfirm(t.Context(), token)
		if err != nil {
			p.body = err.Error()
		}
		pages <- p
	}
	go post()
	watch.mustRequest(t)
	ps.mustRedeemed(t)
	go post() // while the first is still binding
	watch.mustRequest(t)
	close(ps.release)
	for range 2 {
		if p := <-pages; p.status != http.StatusOK || !strings.Contains(p.body, "Connected") || !strings.Contains(p.body, janeSF) {
			t.Errorf("a POST answered %d:\n%s", p.status, p.body)
		}
	}
	if linked, _ := e.notes.counts(); linked != 1 {
		t.Errorf("Linked called %d times, want 1", linked)
	}
	if n, _ := e.db.CountBindings(t.Context()); n != 1 {
		t.Errorf("%d bindings, want 1", n)
	}
}

// A second POST of a confirmation whose bind failed shows that failure,
// not "already used": the person must not believe they are connected.
func TestConfirmFailureShownAgain(t *testing.T) {
	ps := newPausingStore()
	close(ps.release)
	ps.failPut = true
	e := mustEnv(t, envOptions{store: ps.wrap})
	token, _ := e.mustConfirmPage(t, jane, janeSF)
	for i := range 2 {
		p := e.confirm(t, token, "confirm")
		if p.status != http.StatusInternalServerError || !strings.Contains(p.body, "could not save the link") {
			t.Errorf("POST %d answered %d:\n%s", i+1, p.status, p.body)
		}
	}
	if n := e.sf.Calls(sftest.EndpointRevoke); n != 1 {
		t.Errorf("the unsaved grant was revoked %d times, want 1", n)
	}
}

// decisions keeps ended confirmations for decisionTTL, at most
// maxDecisions of them, and forgets the ones it is told not to keep.
func TestDecisionsBounded(t *testing.T) {
	var ds decisions
	now := time.Now()
	key := func(i int) [sha256.Size]byte { return sha256.Sum256([]byte{byte(i), byte(i >> 8)}) }
	end := func(i int, keep bool) {
		d, first := ds.begin(key(i), now)
		if !first {
			t.Fatalf("decision %d already known", i)
		}
		ds.finish(key(i), d, problemPage(http.StatusOK, "ended", "ended"), keep, now)
	}

	end(0, false)
	if _, first := ds.begin(key(0), now); !first {
		t.Error("a decision not kept was remembered")
	}
	for i := 1; i <= maxDecisions+10; i++ {
		end(i, true)
		now = now.Add(time.Millisecond)
	}
	if n := len(ds.byKey); n > maxDecisions+1 { // +1: key 0 is still running
		t.Errorf("%d decisions kept, want at most %d", n, maxDecisions)
	}
	if _, first := ds.begin(key(1), now); !first {
		t.Error("the oldest decision was kept past the bound")
	}
	d, first := ds.begin(key(maxDecisions+10), now)
	if first || d.page.status != http.StatusOK {
		t.Error("the newest decision was forgotten")
	}
	now = now.Add(decisionTTL)
	if _, first := ds.begin(key(maxDecisions+10), now); !first {
		t.Error("a decision was kept past decisionTTL")
	}
}
