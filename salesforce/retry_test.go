package salesforce_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/salesforce/sftest"
)

// A refresh that names a new instance sends the retry there, and every
// later call of the same Client too: an org moved by an instance migration
// or a My Domain rename keeps working without reconnecting.
func TestRefreshMovesTheInstance(t *testing.T) {
	const moved = "acme-2.my.salesforce.com"
	srv := mustServer(t, sftest.Options{})
	tokens := mustRefresher(t, srv, jane)
	tokens.moveTo = "https://" + moved
	c := mustClient(t, salesforce.Config{
		InstanceURL: srv.URL,
		HTTPClient:  &http.Client{Transport: srv.Route(nil, moved)},
		Tokens:      tokens,
	})
	old := strings.TrimPrefix(srv.URL, "http://")
	srv.ExpireAccessTokens()
	recs, err := c.Query(t.Context(), "SELECT Id, Name FROM Account WHERE Name = 'Initech'")
	if err != nil {
		t.Fatalf("Query: %v", err)
	}
	// The fake's own host had the query that met the 401 and the refresh.
	got := []any{names(recs), srv.HostCalls(old), srv.HostCalls(moved), c.InstanceURL()}
	want := []any{[]string{"Initech"}, 2, 1, "https://" + moved}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("[names oldCalls movedCalls instance] after the refresh mismatch (-want +got):\n%s", diff)
	}
	rs, err := c.Find(t.Context(), "Account", "Initech", 5)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	// Find read Account's object info first, then searched: both at the
	// moved instance.
	if srv.HostCalls(old) != 2 || srv.HostCalls(moved) != 3 {
		t.Errorf("after a later call: old host %d, moved %d requests; want 2 and 3", srv.HostCalls(old), srv.HostCalls(moved))
	}
	if len(rs) == 0 || !strings.HasPrefix(rs[0].URL, "https://"+moved+"/lightning/") {
		t.Errorf("results %+v do not link to the moved instance", rs)
	}
}

// An instance a refresh names is checked like Config.InstanceURL: nothing
// is sent to one that may not carry a token.
func TestRefreshToABadInstanceIsRefused(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	tokens := mustRefresher(t, srv, jane)
	tokens.moveTo = "http://acme.example.com" // plain http off loopback
	var sentElsewhere int
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host != strings.TrimPrefix(srv.URL, "http://") {
			sentElsewhere++
			return nil, errors.New("not sent")
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	c := mustClient(t, salesforce.Config{InstanceURL: srv.URL, HTTPClient: hc, Tokens: tokens})
	srv.ExpireAccessTokens()
	if _, err := c.Query(t.Context(), "SELECT Id FROM Account"); err == nil {
		t.Fatal("Query succeeded after a refresh named an http instance")
	}
	if sentElsewhere != 0 || c.InstanceURL() != srv.URL {
		t.Errorf("%d requests elsewhere, instance %s; want none and %s", sentElsewhere, c.InstanceURL(), srv.URL)
	}
}

// The answer to the retry after a refresh may echo the stale token as well
// as the fresh one; neither reaches the error.
func TestRetryAnswerRedactsBothTokens(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	c, tokens, _ := mustUserClient(t, srv, jane, 0)
	stale, _ := tokens.AccessToken(t.Context())
	srv.FailNext(sftest.EndpointQuery, http.StatusUnauthorized, sftest.BodyInvalidSession)
	srv.FailNext(sftest.EndpointQuery, http.StatusBadRequest,
		`[{"errorCode":"BAD_`+stale+`","message":"was `+stale+`, now `+sftest.Bearer+`","fields":["`+stale+`"]}]`)
	_, err := c.Query(t.Context(), "SELECT Id FROM Account")
	var apiErr *salesforce.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("Query error = %v, want the retry's 400", err)
	}
	fresh, _ := tokens.AccessToken(t.Context())
	if fresh == stale || tokens.calls.Load() != 1 {
		t.Fatalf("the refresh did not run (%d calls)", tokens.calls.Load())
	}
	// Both tokens begin with the org id, so a leak of either shows as the
	// stale one's first.
	for _, tok := range []struct{ name, value string }{{"stale", stale}, {"fresh", fresh}} {
		if p := leakedPiece(err, tok.value); p != "" {
			t.Errorf("error contains %q of the %s token: %v", p, tok.name, err)
		}
	}
	if !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("error %q does not show where the tokens were", err)
	}
}

// What failed after a 401 is the refresh: its error is the answer, and the
// 401 no longer matches ErrSessionExpired, which would send the person to
// disconnect a grant that is fine.
func TestFailedRefreshIsNotASessionError(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	refreshFailed := errors.New("token endpoint did not answer in time")
	c := mustClient(t, salesforce.Config{InstanceURL: srv.URL, Tokens: failingRefresh{access: "x", err: refreshFailed}})
	_, err := c.Query(t.Context(), "SELECT Id FROM Account")
	if !errors.Is(err, refreshFailed) || errors.Is(err, salesforce.ErrSessionExpired) {
		t.Errorf("Query error = %v; want the refresh's error, not ErrSessionExpired", err)
	}
}

// failingRefresh is a Tokens whose every refresh fails with err.
type failingRefresh struct {
	access string
	err    error
}

func (f failingRefresh) AccessToken(context.Context) (string, error) { return f.access, nil }

func (f failingRefresh) Refresh(context.Context, string) (salesforce.Token, error) {
	return salesforce.Token{}, f.err
}
