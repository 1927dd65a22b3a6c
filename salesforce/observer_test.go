package salesforce_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/salesforce/sftest"
)

// observed is a salesforce.Observer that writes every call down.
type observed struct {
	mu       sync.Mutex
	requests []string // "op outcome"
	usage    []string // "instance used/max"
	badTook  []time.Duration
}

func (o *observed) Request(op, outcome string, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests = append(o.requests, op+" "+outcome)
	if took < 0 {
		o.badTook = append(o.badTook, took)
	}
}

func (o *observed) Usage(instance string, u salesforce.Usage) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.usage = append(o.usage, fmt.Sprintf("%s %d/%d", instance, u.Used, u.Max))
}

func TestObserverRequests(t *testing.T) {
	const badQuery = `[{"message":"unexpected token: 'FORM'","errorCode":"MALFORMED_QUERY"}]`
	tests := []struct {
		name  string
		opts  sftest.Options
		setup func(*sftest.Server)
		call  func(context.Context, *salesforce.Client) error
		want  []string
	}{
		{
			name: "search",
			call: func(ctx context.Context, c *salesforce.Client) error { _, err := c.Search(ctx, "acme"); return err },
			want: append(objectInfos("ok", 1), "search ok"),
		},
		{
			name: "query, once per page",
			opts: sftest.Options{PageSize: 2},
			call: func(ctx context.Context, c *salesforce.Client) error {
				_, err := c.Query(ctx, "SELECT Id, Name FROM Account ORDER BY Name")
				return err
			},
			want: []string{"query ok", "query ok", "query ok", "query ok"},
		},
		{
			name: "find",
			call: func(ctx context.Context, c *salesforce.Client) error {
				_, err := c.Find(ctx, "Account", "acme", 5)
				return err
			},
			want: []string{"object_info ok", "find ok"},
		},
		{
			name: "get",
			call: func(ctx context.Context, c *salesforce.Client) error {
				_, err := c.Get(ctx, "Account", "0015g00000AcmeAAAR")
				return err
			},
			want: []string{"get ok"},
		},
		{
			name: "get, no such record",
			call: func(ctx context.Context, c *salesforce.Client) error {
				_, err := c.Get(ctx, "Account", "0015g00000Nope1")
				return err
			},
			want: []string{"get not_found"},
		},
		{
			name:  "expired session refreshed and retried",
			setup: (*sftest.Server).ExpireAccessTokens,
			call: func(ctx context.Context, c *salesforce.Client) error {
				_, err := c.Find(ctx, "Contact", "jane", 5)
				return err
			},
			want: []string{"object_info session_expired", "object_info ok", "find ok"},
		},
		{
			name:  "rate limited",
			setup: func(s *sftest.Server) { s.FailNext(sftest.EndpointSearch, 403, sftest.BodyRequestLimitExceeded) },
			call:  func(ctx context.Context, c *salesforce.Client) error { _, err := c.Search(ctx, "acme"); return err },
			want:  append(objectInfos("ok", 1), "search rate_limited"),
		},
		{
			name:  "HTML 502",
			setup: func(s *sftest.Server) { s.FailNext(sftest.EndpointSearch, 502, sftest.BodyBadGatewayHTML) },
			call:  func(ctx context.Context, c *salesforce.Client) error { _, err := c.Search(ctx, "acme"); return err },
			want:  append(objectInfos("ok", 1), "search unavailable"),
		},
		{
			name:  "malformed query",
			setup: func(s *sftest.Server) { s.FailNext(sftest.EndpointQuery, 400, badQuery) },
			call: func(ctx context.Context, c *salesforce.Client) error {
				_, err := c.Query(ctx, "SELECT Id FORM Account")
				return err
			},
			want: []string{"query invalid_input"},
		},
		{
			name: "other API error",
			setup: func(s *sftest.Server) {
				s.FailNext(sftest.EndpointSObject, 409, `[{"message":"locked","errorCode":"UNABLE_TO_LOCK_ROW"}]`)
			},
			call: func(ctx context.Context, c *salesforce.Client) error {
				_, err := c.Get(ctx, "Account", "0015g00000AcmeAAAR")
				return err
			},
			want: []string{"get error"},
		},
		{
			name: "canceled",
			call: func(ctx context.Context, c *salesforce.Client) error {
				ctx, cancel := context.WithCancel(ctx)
				cancel()
				_, err := c.Search(ctx, "acme")
				return err
			},
			want: objectInfos("canceled", 1), // the first object info read fails; nothing more is sent
		},
		{
			name: "refused before sending",
			call: func(ctx context.Context, c *salesforce.Client) error { _, err := c.Search(ctx, "a"); return err },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mustServer(t, tt.opts)
			obs := &observed{}
			c := mustClient(t, salesforce.Config{InstanceURL: srv.URL, Tokens: mustRefresher(t, srv, jane), Observer: obs})
			if tt.setup != nil {
				tt.setup(srv)
			}
			_ = tt.call(context.Background(), c) // the errors themselves are other tests' business
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if diff := cmp.Diff(tt.want, obs.requests); diff != "" {
				t.Errorf("requests mismatch (-want +got):\n%s", diff)
			}
			if len(obs.badTook) > 0 {
				t.Errorf("negative durations: %v", obs.badTook)
			}
		})
	}
}

// objectInfos is n object info requests with outcome: Search reads which
// fields the user may read of each object it has not seen yet.
func objectInfos(outcome string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "object_info " + outcome
	}
	return out
}

func TestObserverNetworkFailure(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	obs := &observed{}
	c := mustClient(t, salesforce.Config{InstanceURL: dead.URL, Tokens: salesforce.StaticToken("t"), Observer: obs})
	if _, err := c.Get(context.Background(), "Account", "0015g00000AcmeAAAR"); err == nil {
		t.Fatal("Get from a closed server succeeded")
	}
	if diff := cmp.Diff([]string{"get unavailable"}, obs.requests); diff != "" {
		t.Errorf("requests mismatch (-want +got):\n%s", diff)
	}
}

func TestObserverUsage(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	// Object info is read first, by a client sharing the cache, so that
	// the requests observed come one at a time.
	fields := salesforce.NewFieldCache(salesforce.FieldCacheConfig{})
	tokens := mustRefresher(t, srv, jane)
	warm := mustClient(t, salesforce.Config{InstanceURL: srv.URL, Tokens: tokens, Fields: fields, OrgID: srv.OrgID(), UserID: "0055g00000JaneAAAR"})
	if _, err := warm.Search(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	obs := &observed{}
	c := mustClient(t, salesforce.Config{InstanceURL: srv.URL + "/", Tokens: tokens, Observer: obs, Fields: fields, OrgID: srv.OrgID(), UserID: "0055g00000JaneAAAR"})
	srv.SetUsage(24, 15000)
	if _, err := c.Search(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Find(context.Background(), "Account", "acme", 1); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	want := []string{host + " 25/15000", host + " 26/15000"}
	if diff := cmp.Diff(want, obs.usage); diff != "" {
		t.Errorf("usage mismatch (-want +got):\n%s", diff)
	}
}

// discard is an Observer that does nothing, to measure what observing costs
// the Client itself.
type discard struct{}

func (discard) Request(string, string, time.Duration) {}
func (discard) Usage(string, salesforce.Usage)        {}

// BenchmarkSearchObserved is BenchmarkSearch with an Observer set.
func BenchmarkSearchObserved(b *testing.B) {
	srv := mustServer(b, sftest.Options{})
	g, err := srv.Login(jane)
	if err != nil {
		b.Fatal(err)
	}
	c := mustClient(b, salesforce.Config{
		InstanceURL: srv.URL,
		HTTPClient:  &http.Client{Transport: http.DefaultTransport},
		Tokens:      salesforce.StaticToken(g.AccessToken),
		Observer:    discard{},
	})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Search(ctx, "acme")
		if err != nil || len(res) != 4 {
			b.Fatalf("Search = %d results, %v", len(res), err)
		}
	}
}
