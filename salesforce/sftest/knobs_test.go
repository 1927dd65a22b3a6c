package sftest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce/sftest"
)

// Route plays DNS for the hosts it is given: their requests reach the fake
// with their Host kept, and HostCalls counts them apart from the fake's own.
func TestRouteAndHostCalls(t *testing.T) {
	const moved = "acme-2.my.salesforce.com"
	srv := mustServer(t, sftest.Options{})
	token := mustToken(t, srv, jane)
	hc := &http.Client{Transport: srv.Route(nil, moved)}
	get := func(base string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/services/data/v62.0/sobjects/Account/0015g00000AcmeAAAR", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", base, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	own := strings.TrimPrefix(srv.URL, "http://")
	got := []int{get("https://" + moved), get(srv.URL), srv.HostCalls(moved), srv.HostCalls(strings.ToUpper(moved)), srv.HostCalls(own)}
	if diff := cmp.Diff([]int{200, 200, 1, 1, 1}, got); diff != "" {
		t.Errorf("[routed own movedCalls MOVEDCalls ownCalls] mismatch (-want +got):\n%s", diff)
	}
	// Hosts not named are not routed.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://other.invalid/", nil)
	if _, err := hc.Do(req); err == nil {
		t.Error("a request for a host Route was not given reached something")
	}
}

// Bearer in a failure body becomes the token the request carried.
func TestFailureEchoesBearer(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	token := mustToken(t, srv, jane)
	srv.FailNext(sftest.EndpointQuery, http.StatusBadRequest, `[{"errorCode":"BAD","message":"you sent `+sftest.Bearer+`"}]`)
	status, body := restStatus(t, srv, token, "/services/data/v62.0/query?q=SELECT+Id+FROM+Account")
	if status != http.StatusBadRequest || !strings.Contains(string(body), "you sent "+token) {
		t.Errorf("answer %d %s does not echo the bearer token", status, body)
	}
}

// SetEndpointLatency slows one endpoint and leaves the others alone.
func TestEndpointLatency(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	token := mustToken(t, srv, jane)
	srv.SetEndpointLatency(sftest.EndpointToken, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/services/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"refresh_token"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		if resp != nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		t.Errorf("token request under an hour's latency = %v, want the deadline", err)
	}
	if status, body := restStatus(t, srv, token, "/services/data/v62.0/query?q=SELECT+Id+FROM+Account"); status != http.StatusOK {
		t.Errorf("query while the token endpoint is slow: %d %s", status, body)
	}
	srv.SetEndpointLatency(sftest.EndpointToken, 0)
	if status, _ := postForm(t, srv, "/services/oauth2/token", url.Values{"grant_type": {"refresh_token"}}); status != http.StatusBadRequest {
		t.Errorf("token endpoint after the latency was removed: %d, want its 400", status)
	}
}

// BeforeAnswer runs its function for each request to its endpoint, before
// the answer, and stops when given nil.
func TestBeforeAnswer(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	g, err := srv.Login(jane)
	if err != nil {
		t.Fatal(err)
	}
	var seen []int // live refresh tokens when each revoke arrived
	srv.BeforeAnswer(sftest.EndpointRevoke, func() { seen = append(seen, srv.LiveRefreshTokens()) })
	if status, _ := postForm(t, srv, "/services/oauth2/revoke", url.Values{"token": {g.RefreshToken}}); status != http.StatusOK {
		t.Fatalf("revoke: %d", status)
	}
	srv.BeforeAnswer(sftest.EndpointRevoke, nil)
	postForm(t, srv, "/services/oauth2/revoke", url.Values{"token": {g.RefreshToken}})
	if diff := cmp.Diff([]int{1}, seen); diff != "" {
		t.Errorf("live refresh tokens seen before each answer mismatch (-want +got):\n%s", diff)
	}
}
