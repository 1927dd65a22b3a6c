package auth

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
)

// mustSearch searches as b's user through a fresh client, as the bot does for
// each message.
func (e *env) search(tb testing.TB, b store.Binding) ([]salesforce.Result, error) {
	tb.Helper()
	sf, err := e.svc.client(b, jane)
	if err != nil {
		tb.Fatal(err)
	}
	rs, err := sf.Search(tb.Context(), "acme")
	if err != nil {
		e.assertNoTokens(tb, "error", err.Error())
	}
	return rs, err
}

func TestRefreshOnExpiredSession(t *testing.T) {
	e := mustEnv(t, envOptions{sfSecret: secret, svcSecret: secret})
	b := e.mustBind(t, jane, janeSF)
	e.sf.ExpireAccessTokens()
	rs, err := e.search(t, b)
	if err != nil {
		t.Fatalf("search after expiry: %v", err)
	}
	if len(rs) == 0 {
		t.Error("no results after refresh")
	}
	if n := e.sf.Calls(sftest.EndpointToken); n != 2 {
		t.Errorf("%d token calls; want the exchange and one refresh", n)
	}
	nb, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if nb.AccessToken == b.AccessToken || nb.RefreshToken != b.RefreshToken {
		t.Error("the new access token was not stored, or the refresh token changed without rotation")
	}
	e.assertNoTokens(t, "logs", e.logs.String())
}

// Twenty requests that hit the 401 together cause one refresh, and with
// rotation on the rotated refresh token is the one stored.
func TestConcurrentRefreshIsOne(t *testing.T) {
	e := mustEnv(t, envOptions{})
	e.sf.SetRotation(true)
	b := e.mustBind(t, jane, janeSF)
	e.sf.ExpireAccessTokens()
	// Slow answers make the 20 requests overlap, so only the single flight
	// (not the stored-token shortcut) can keep this to one refresh.
	e.sf.SetLatency(100 * time.Millisecond)
	defer e.sf.SetLatency(0)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if _, err := e.search(t, b); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("search: %v", err)
	}
	if n := e.sf.Calls(sftest.EndpointToken); n != 2 {
		t.Errorf("%d token calls for 20 concurrent 401s; want the exchange and exactly one refresh", n)
	}
	nb, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if nb.RefreshToken == b.RefreshToken {
		t.Fatal("the rotated refresh token was not stored")
	}
	// The stored, rotated token works for the next refresh.
	e.sf.ExpireAccessTokens()
	if _, err := e.search(t, nb); err != nil {
		t.Errorf("search with the rotated grant: %v", err)
	}
}

func TestInvalidGrantRelinksOnce(t *testing.T) {
	e := mustEnv(t, envOptions{})
	b := e.mustBind(t, jane, janeSF)
	e.sf.RevokeAll()
	// Slow answers make the 5 requests overlap, so all of them share the one
	// refresh that finds the grant ended (a request arriving after it finds
	// no binding, which is checked below).
	e.sf.SetLatency(100 * time.Millisecond)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if _, err := e.search(t, b); !errors.Is(err, ErrRelinkRequired) {
				t.Errorf("search with a revoked grant = %v, want ErrRelinkRequired", err)
			}
		})
	}
	wg.Wait()
	e.sf.SetLatency(0)
	if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("binding kept after invalid_grant: %v", err)
	}
	if _, relinks := e.notes.counts(); relinks != 1 {
		t.Errorf("%d fresh links sent; want exactly 1", relinks)
	}
	// Later requests find no binding rather than sending more links.
	if _, err := e.search(t, b); !errors.Is(err, ErrNotLinked) {
		t.Errorf("search after the binding went = %v, want ErrNotLinked", err)
	}
	if _, relinks := e.notes.counts(); relinks != 1 {
		t.Errorf("%d fresh links after a later request; want 1", relinks)
	}
}

func TestRefreshFailuresKeepBinding(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr error
	}{
		{"503", 503, "<html>Service Unavailable</html>", ErrTransient},
		{"500 json", 500, `{"error":"server_error","error_description":"try later"}`, ErrTransient},
		{"invalid_client", 400, `{"error":"invalid_client","error_description":"invalid client credentials"}`, ErrClientRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{})
			b := e.mustBind(t, jane, janeSF)
			e.sf.ExpireAccessTokens()
			e.sf.FailNext(sftest.EndpointToken, tt.status, tt.body)
			if _, err := e.search(t, b); !errors.Is(err, tt.wantErr) {
				t.Fatalf("search = %v, want %v", err, tt.wantErr)
			}
			if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); err != nil {
				t.Fatalf("binding lost: %v", err)
			}
			if _, relinks := e.notes.counts(); relinks != 0 {
				t.Error("a fresh link was sent for a failure that is not the user's")
			}
			if _, err := e.search(t, b); err != nil {
				t.Errorf("search once Salesforce is back: %v", err)
			}
		})
	}
}

func TestRateLimitIsNotRefreshed(t *testing.T) {
	e := mustEnv(t, envOptions{})
	b := e.mustBind(t, jane, janeSF)
	e.sf.SetFailure(sftest.EndpointSearch, 403, `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`)
	before := e.sf.Calls(sftest.EndpointToken)
	if _, err := e.search(t, b); !errors.Is(err, salesforce.ErrRateLimited) {
		t.Fatalf("search = %v, want ErrRateLimited", err)
	}
	if n := e.sf.Calls(sftest.EndpointToken); n != before {
		t.Errorf("%d refreshes for a rate limit; want none", n-before)
	}
}

// The whole life of a binding, logged at the most verbose level, leaves no
// token in the log, in any page, or in any error.
func TestNoTokenInLogs(t *testing.T) {
	e := mustEnv(t, envOptions{sfSecret: secret, svcSecret: secret})
	e.sf.SetRotation(true)
	token, p := e.mustConfirmPage(t, jane, janeSF)
	e.assertNoTokens(t, "confirm page", p.body)
	p = e.confirm(t, token, "confirm")
	e.assertNoTokens(t, "done page", p.body)
	b, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil {
		t.Fatal(err)
	}
	e.sf.ExpireAccessTokens()
	if _, err := e.search(t, b); err != nil {
		t.Fatal(err)
	}
	reload := func() store.Binding {
		b, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	e.sf.FailNext(sftest.EndpointToken, 503, "<html>down</html>")
	e.sf.ExpireAccessTokens()
	if _, err := e.search(t, reload()); !errors.Is(err, ErrTransient) {
		t.Fatalf("search during a 503 = %v", err)
	}
	e.sf.RevokeAll()
	if _, err := e.search(t, reload()); !errors.Is(err, ErrRelinkRequired) {
		t.Fatalf("search after revocation = %v", err)
	}
	e.mustBind(t, jane, janeSF)
	if _, err := e.svc.Unlink(t.Context(), jane); err != nil {
		t.Fatal(err)
	}
	logs := e.logs.String()
	if len(e.sf.IssuedTokens()) < 6 || !strings.Contains(logs, "binding refreshed") || !strings.Contains(logs, "binding removed") {
		t.Fatalf("the flow did not run as planned; logs:\n%s", logs)
	}
	e.assertNoTokens(t, "logs", logs)
}
