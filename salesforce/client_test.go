package salesforce_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/google/go-cmp/cmp"
)

const (
	jane = "jane@acme.example"
	sam  = "sam@acme.example"
)

// recorder is an http.RoundTripper that remembers every request it sends.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Clone(context.Background()))
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) last() *http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		return nil
	}
	return r.reqs[len(r.reqs)-1]
}

// refresher is a Tokens that refreshes against the fake's token endpoint
// and counts refreshes.
type refresher struct {
	srv     *sftest.Server
	mu      sync.Mutex
	access  string
	refresh string
	calls   atomic.Int32
	// moveTo, when set, is the instance each refresh names instead of the
	// fake's own, as a token endpoint does for an org that moved.
	moveTo string
}

func (r *refresher) AccessToken(context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.access, nil
}

func (r *refresher) Refresh(ctx context.Context, stale string) (salesforce.Token, error) {
	r.calls.Add(1)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.refresh}, "client_id": {"sftest-client"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.srv.URL+"/services/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return salesforce.Token{}, err
	}
	defer resp.Body.Close()
	var g sftest.Grant
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil || g.AccessToken == "" {
		return salesforce.Token{}, fmt.Errorf("refresh failed with status %d", resp.StatusCode)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.access = g.AccessToken
	instance := g.InstanceURL
	if r.moveTo != "" {
		instance = r.moveTo
	}
	return salesforce.Token{AccessToken: g.AccessToken, InstanceURL: instance}, nil
}

func mustServer(tb testing.TB, opts sftest.Options) *sftest.Server {
	tb.Helper()
	srv := sftest.NewServer(opts)
	tb.Cleanup(srv.Close)
	return srv
}

func mustRefresher(tb testing.TB, srv *sftest.Server, username string) *refresher {
	tb.Helper()
	g, err := srv.Login(username)
	if err != nil {
		tb.Fatal(err)
	}
	return &refresher{srv: srv, access: g.AccessToken, refresh: g.RefreshToken}
}

func mustClient(tb testing.TB, cfg salesforce.Config) *salesforce.Client {
	tb.Helper()
	c, err := salesforce.New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return c
}

// mustUserClient returns a client for username on srv and the recorder
// under it.
func mustUserClient(tb testing.TB, srv *sftest.Server, username string, maxRecords int) (*salesforce.Client, *refresher, *recorder) {
	tb.Helper()
	rec := &recorder{}
	tokens := mustRefresher(tb, srv, username)
	c := mustClient(tb, salesforce.Config{
		InstanceURL: srv.URL,
		HTTPClient:  &http.Client{Transport: rec},
		Tokens:      tokens,
		MaxRecords:  maxRecords,
	})
	return c, tokens, rec
}

func names(recs []salesforce.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.String("Name"))
	}
	return out
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     salesforce.Config
		wantErr bool
	}{
		{name: "ok", cfg: salesforce.Config{InstanceURL: "https://acme.my.salesforce.com/", Tokens: salesforce.StaticToken("t")}},
		{name: "version with v", cfg: salesforce.Config{InstanceURL: "https://acme.my.salesforce.com", APIVersion: "v61.0", Tokens: salesforce.StaticToken("t")}},
		{name: "relative", cfg: salesforce.Config{InstanceURL: "acme.my.salesforce.com", Tokens: salesforce.StaticToken("t")}, wantErr: true},
		{name: "ftp", cfg: salesforce.Config{InstanceURL: "ftp://acme.example", Tokens: salesforce.StaticToken("t")}, wantErr: true},
		{name: "userinfo", cfg: salesforce.Config{InstanceURL: "https://u:p@acme.example", Tokens: salesforce.StaticToken("t")}, wantErr: true},
		{name: "query", cfg: salesforce.Config{InstanceURL: "https://acme.example/?x=1", Tokens: salesforce.StaticToken("t")}, wantErr: true},
		{name: "path", cfg: salesforce.Config{InstanceURL: "https://acme.example/services", Tokens: salesforce.StaticToken("t")}, wantErr: true},
		{name: "bad version", cfg: salesforce.Config{InstanceURL: "https://acme.example", APIVersion: "62", Tokens: salesforce.StaticToken("t")}, wantErr: true},
		{name: "version injection", cfg: salesforce.Config{InstanceURL: "https://acme.example", APIVersion: "62.0/../x", Tokens: salesforce.StaticToken("t")}, wantErr: true},
		{name: "no tokens", cfg: salesforce.Config{InstanceURL: "https://acme.example"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := salesforce.New(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Errorf("New error = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

func TestQueryPaging(t *testing.T) {
	all := []string{"Acme Corporation", "Acme Labs GmbH", "Globex Inc.", "Initech", "Müller & Söhne KG", "Wayne Enterprises", "株式会社サクラ"}
	tests := []struct {
		name       string
		maxRecords int
		want       []string
		wantCalls  int
	}{
		{name: "all pages", maxRecords: 100, want: all, wantCalls: 4},
		{name: "capped", maxRecords: 3, want: all[:3], wantCalls: 2},
		{name: "cap on page boundary", maxRecords: 4, want: all[:4], wantCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mustServer(t, sftest.Options{PageSize: 2})
			c, _, _ := mustUserClient(t, srv, jane, tt.maxRecords)
			recs, err := c.Query(context.Background(), "SELECT Id, Name FROM Account ORDER BY Name")
			if err != nil {
				t.Fatalf("Query: %v", err)
			}
			if diff := cmp.Diff(tt.want, names(recs)); diff != "" {
				t.Errorf("names mismatch (-want +got):\n%s", diff)
			}
			if got := srv.Calls(sftest.EndpointQuery); got != tt.wantCalls {
				t.Errorf("query calls = %d, want %d", got, tt.wantCalls)
			}
			if recs[0].Type != "Account" || !salesforce.ValidID(recs[0].ID) {
				t.Errorf("first record type %q id %q", recs[0].Type, recs[0].ID)
			}
		})
	}
}

func TestQueryRefusesForeignNextRecordsURL(t *testing.T) {
	var evilHits atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evilHits.Add(1)
		fmt.Fprint(w, `{"totalSize":1,"done":true,"records":[]}`)
	}))
	defer evil.Close()
	evilHost := strings.TrimPrefix(evil.URL, "http://")

	tests := []struct{ name, next string }{
		{name: "absolute other host", next: evil.URL + "/services/data/v62.0/query/01gX-2"},
		{name: "scheme relative", next: "//" + evilHost + "/services/data/v62.0/query/01gX-2"},
		{name: "dot segments", next: "/services/data/v62.0/../../../x"},
		{name: "other path", next: "/secur/frontdoor.jsp?x=1"},
		{name: "backslash", next: `/services/data/v62.0/query/\` + evilHost},
		{name: "encoded dot segments", next: "/services/data/v62.0/%2e%2e/%2e%2e/%2e%2e/x"},
		{name: "encoded dot segments upper case", next: "/services/data/v62.0/query/%2E%2E/%2E%2E/%2E%2E/secur/frontdoor.jsp"},
		{name: "encoded single dot", next: "/services/data/v62.0/%2e/query/01gX-2"},
		{name: "encoded slash", next: "/services/data/v62.0/query%2F..%2F..%2F..%2Fx"},
		{name: "encoded slash lower case", next: "/services/data/v62.0/query%2f..%2f..%2f..%2fx"},
		{name: "encoded double slash to host", next: "/services/data/v62.0/%2F%2F" + evilHost + "/x"},
		{name: "double encoded dots", next: "/services/data/v62.0/query/%252e%252e/%252e%252e/x"},
		{name: "encoded backslash", next: "/services/data/v62.0/query/%5c" + evilHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			instance := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				page := map[string]any{
					"totalSize": 3, "done": false, "nextRecordsUrl": tt.next,
					"records": []any{map[string]any{"attributes": map[string]string{"type": "Account"}, "Id": "0015g00000AcmeAAAR", "Name": "Acme"}},
				}
				_ = json.NewEncoder(w).Encode(page)
			}))
			defer instance.Close()
			c := mustClient(t, salesforce.Config{InstanceURL: instance.URL, Tokens: salesforce.StaticToken("secret-token")})
			_, err := c.Query(context.Background(), "SELECT Id FROM Account")
			if err == nil {
				t.Fatalf("Query followed %q", tt.next)
			}
			if strings.Contains(err.Error(), "secret-token") {
				t.Errorf("error leaks the token: %v", err)
			}
			if hits.Load() != 1 {
				t.Errorf("instance hits = %d, want 1", hits.Load())
			}
		})
	}
	if n := evilHits.Load(); n != 0 {
		t.Errorf("the other host got %d requests", n)
	}
}

func TestSearch(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	c, _, rec := mustUserClient(t, srv, jane, 0)
	got, err := c.Search(context.Background(), "acme")
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	want := []salesforce.Result{
		{Type: "Account", ID: "0015g00000AcmeAAAR", Name: "Acme Corporation", URL: srv.URL + "/lightning/r/Account/0015g00000AcmeAAAR/view",
			Fields: []salesforce.Field{{"Type", "Customer - Direct"}, {"Industry", "Manufacturing"}, {"City", "San Francisco"}, {"Phone", "+1 415 555 0100"}}},
		{Type: "Account", ID: "0015g00000AcLbAAAV", Name: "Acme Labs GmbH", URL: srv.URL + "/lightning/r/Account/0015g00000AcLbAAAV/view",
			Fields: []salesforce.Field{{"Type", "Prospect"}, {"Industry", "Technology"}, {"City", "Berlin"}, {"Phone", "+49 30 5550 1234"}}},
		{Type: "Opportunity", ID: "0065g00000Opp1AAAR", Name: "Acme - 500 Widgets", URL: srv.URL + "/lightning/r/Opportunity/0065g00000Opp1AAAR/view",
			Fields: []salesforce.Field{{"Stage", "Prospecting"}, {"Amount", "125000"}, {"Close Date", "2025-09-30"}, {"Account", "Acme Corporation"}}},
		{Type: "Lead", ID: "00Q5g00000Led2AEAR", Name: "Dana O'Neil", URL: srv.URL + "/lightning/r/Lead/00Q5g00000Led2AEAR/view",
			Fields: []salesforce.Field{{"Company", "Acme Labs GmbH"}, {"Status", "Working - Contacted"}, {"Email", "dana.oneil@acmelabs.example"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results mismatch (-want +got):\n%s", diff)
	}
	if q := rec.last().URL.Query().Get("q"); !strings.HasPrefix(q, "FIND {acme} IN NAME FIELDS RETURNING Account(Id, Name, Type") {
		t.Errorf("SOSL sent = %q", q)
	}

	hostile := []struct {
		text    string
		wantSOS string // the FIND clause sent
	}{
		{text: "acme} RETURNING User(Id)", wantSOS: `FIND {acme\} RETURNING User\(Id\)}`},
		{text: `o'brien -"x" *`, wantSOS: `FIND {o\'brien \-\"x\" \*}`},
		{text: "a\nb\\", wantSOS: `FIND {a b\\}`},
	}
	for _, tt := range hostile {
		t.Run(tt.text, func(t *testing.T) {
			if _, err := c.Search(context.Background(), tt.text, "Account"); err != nil {
				t.Fatalf("Search(%q): %v", tt.text, err)
			}
			if q := rec.last().URL.Query().Get("q"); !strings.HasPrefix(q, tt.wantSOS+" IN NAME FIELDS") {
				t.Errorf("SOSL sent = %q, want prefix %q", q, tt.wantSOS)
			}
		})
	}

	if _, err := c.Search(context.Background(), " a "); !errors.Is(err, salesforce.ErrInvalidInput) {
		t.Errorf("one-letter search: %v, want ErrInvalidInput", err)
	}
	if _, err := c.Search(context.Background(), "acme", "User"); !errors.Is(err, salesforce.ErrInvalidInput) {
		t.Errorf("search in User: %v, want ErrInvalidInput", err)
	}
}

func TestFindHostileInput(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	c, _, rec := mustUserClient(t, srv, jane, 0)
	tests := []struct {
		object, text string
		want         []string
		wantQuery    string // exact SOQL sent, when given
	}{
		{object: "Contact", text: "O'Brien", want: []string{"Siobhán O'Brien"},
			wantQuery: `SELECT Id, Name, Title, Account.Name, Email, Phone FROM Contact WHERE Name LIKE '%O\'Brien%' ORDER BY Name LIMIT 10`},
		{object: "Account", text: "' OR Name LIKE '%", want: nil,
			wantQuery: `SELECT Id, Name, Type, Industry, BillingCity, Phone FROM Account WHERE Name LIKE '%\' OR Name LIKE \'\%%' ORDER BY Name LIMIT 10`},
		{object: "Account", text: "%", want: nil, wantQuery: `SELECT Id, Name, Type, Industry, BillingCity, Phone FROM Account WHERE Name LIKE '%\%%' ORDER BY Name LIMIT 10`},
		{object: "Account", text: "_", want: nil},
		{object: "Account", text: "}", want: nil},
		{object: "Account", text: `\`, want: nil, wantQuery: `SELECT Id, Name, Type, Industry, BillingCity, Phone FROM Account WHERE Name LIKE '%\\%' ORDER BY Name LIMIT 10`},
		{object: "Account", text: "ac\nme", want: nil},
		{object: "account", text: "acme", want: []string{"Acme Corporation", "Acme Labs GmbH"}},
		{object: "Account", text: "MÜLLER", want: []string{"Müller & Söhne KG"}},
		{object: "Account", text: "株式", want: []string{"株式会社サクラ"}},
		{object: "Case", text: "rechnung", want: []string{"00001003"}},
		{object: "Case", text: "00001001", want: []string{"00001001"}},
	}
	for _, tt := range tests {
		t.Run(tt.object+" "+tt.text, func(t *testing.T) {
			got, err := c.Find(context.Background(), tt.object, tt.text, 0)
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			var gotNames []string
			for _, r := range got {
				gotNames = append(gotNames, r.Name)
			}
			if diff := cmp.Diff(tt.want, gotNames); diff != "" {
				t.Errorf("names mismatch (-want +got):\n%s", diff)
			}
			if tt.wantQuery != "" {
				if q := rec.last().URL.Query().Get("q"); q != tt.wantQuery {
					t.Errorf("SOQL sent:\n got %s\nwant %s", q, tt.wantQuery)
				}
			}
		})
	}
	if _, err := c.Find(context.Background(), "User", "x", 1); !errors.Is(err, salesforce.ErrInvalidInput) {
		t.Errorf("Find on User: %v, want ErrInvalidInput", err)
	}
}

func TestGet(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	c, _, _ := mustUserClient(t, srv, sam, 0)
	tests := []struct {
		name, object, id string
		wantName         string
		wantErr          error
	}{
		{name: "18 chars", object: "Account", id: "0015g00000AcLbAAAV", wantName: "Acme Labs GmbH"},
		{name: "15 chars", object: "Account", id: "0015g00000AcLbA", wantName: "Acme Labs GmbH"},
		{name: "someone else's", object: "Account", id: "0015g00000AcmeAAAR", wantErr: salesforce.ErrNotFound},
		{name: "checksum wrong", object: "Account", id: "0015g00000AcmeAAAA", wantErr: salesforce.ErrInvalidInput},
		{name: "too short", object: "Account", id: "0015g00000Acme", wantErr: salesforce.ErrInvalidInput},
		{name: "path in id", object: "Account", id: "../../../id/x/yzAB", wantErr: salesforce.ErrInvalidInput},
		{name: "path in object", object: "Account/..", id: "0015g00000AcmeAAAR", wantErr: salesforce.ErrInvalidInput},
		{name: "not visible", object: "Account", id: "0015g00000GlbxAAAR", wantErr: salesforce.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Calls(sftest.EndpointSObject)
			got, err := c.Get(context.Background(), tt.object, tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == salesforce.ErrInvalidInput && srv.Calls(sftest.EndpointSObject) != before {
				t.Errorf("an invalid request was sent")
			}
			if got.String("Name") != tt.wantName {
				t.Errorf("Name = %q, want %q", got.String("Name"), tt.wantName)
			}
		})
	}
}

func TestRefreshOnceAndRetryOnce(t *testing.T) {
	t.Run("expired token refreshed", func(t *testing.T) {
		srv := mustServer(t, sftest.Options{})
		c, tokens, _ := mustUserClient(t, srv, jane, 0)
		srv.ExpireAccessTokens()
		recs, err := c.Query(context.Background(), "SELECT Id, Name FROM Account WHERE Name = 'Initech'")
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		got := []any{names(recs), int(tokens.calls.Load()), srv.Calls(sftest.EndpointQuery)}
		if diff := cmp.Diff([]any{[]string{"Initech"}, 1, 2}, got); diff != "" {
			t.Errorf("[names refreshes queryCalls] mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("second 401 is final", func(t *testing.T) {
		srv := mustServer(t, sftest.Options{})
		c, tokens, _ := mustUserClient(t, srv, jane, 0)
		srv.SetFailure(sftest.EndpointQuery, http.StatusUnauthorized, sftest.BodyInvalidSession)
		_, err := c.Query(context.Background(), "SELECT Id FROM Account")
		if !errors.Is(err, salesforce.ErrSessionExpired) {
			t.Fatalf("Query error = %v, want ErrSessionExpired", err)
		}
		if got := []int{int(tokens.calls.Load()), srv.Calls(sftest.EndpointQuery)}; !cmp.Equal(got, []int{1, 2}) {
			t.Errorf("[refreshes queryCalls] = %v, want [1 2]", got)
		}
	})
	t.Run("static token cannot refresh", func(t *testing.T) {
		srv := mustServer(t, sftest.Options{})
		g, _ := srv.Login(jane)
		c := mustClient(t, salesforce.Config{InstanceURL: srv.URL, Tokens: salesforce.StaticToken(g.AccessToken)})
		srv.ExpireAccessTokens()
		_, err := c.Get(context.Background(), "Account", "0015g00000AcmeAAAR")
		var apiErr *salesforce.APIError
		if !errors.Is(err, salesforce.ErrSessionExpired) || !errors.As(err, &apiErr) || apiErr.StatusCode != 401 {
			t.Fatalf("Get error = %v, want a 401 APIError matching ErrSessionExpired", err)
		}
		if n := srv.Calls(sftest.EndpointSObject); n != 1 {
			t.Errorf("sobject calls = %d, want 1", n)
		}
	})
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		want        error
		wantRefresh int32
	}{
		{name: "rate limited", status: 403, body: sftest.BodyRequestLimitExceeded, want: salesforce.ErrRateLimited},
		{name: "HTML 502", status: 502, body: sftest.BodyBadGatewayHTML, want: salesforce.ErrUnavailable},
		{name: "empty 503", status: 503, body: "", want: salesforce.ErrUnavailable},
		{name: "JSON 500", status: 500, body: `[{"message":"An unexpected error occurred.","errorCode":"UNKNOWN_EXCEPTION"}]`, want: salesforce.ErrUnavailable},
		{name: "HTML 403 from a proxy", status: 403, body: "<html>denied</html>", want: salesforce.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mustServer(t, sftest.Options{})
			c, tokens, _ := mustUserClient(t, srv, jane, 0)
			srv.FailNext(sftest.EndpointSearch, tt.status, tt.body)
			_, err := c.Search(context.Background(), "acme")
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			var apiErr *salesforce.APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != tt.status {
				t.Errorf("error %v is not an APIError with status %d", err, tt.status)
			}
			if n := tokens.calls.Load(); n != tt.wantRefresh {
				t.Errorf("refreshes = %d, want %d", n, tt.wantRefresh)
			}
			if strings.Contains(err.Error(), "<html") {
				t.Errorf("error echoes the HTML body: %v", err)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	c, _, _ := mustUserClient(t, srv, jane, 0)
	if _, ok := c.Usage(); ok {
		t.Errorf("Usage reported before any call")
	}
	srv.SetUsage(24, 15000)
	if _, err := c.Find(context.Background(), "Account", "acme", 1); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Usage() // after the Account object info and the query
	if diff := cmp.Diff(salesforce.Usage{Used: 26, Max: 15000}, got); diff != "" || !ok {
		t.Errorf("Usage mismatch (-want +got):\n%s", diff)
	}

	// A malformed header leaves the last good value in place.
	headers := []string{"api-usage=7/100", "api-usage=abc/100", "api-usage=-1/100", "api-usage=5/0", "garbage", ""}
	var n atomic.Int32
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Sforce-Limit-Info", headers[int(n.Add(1)-1)%len(headers)])
		fmt.Fprint(w, `{"totalSize":0,"done":true,"records":[]}`)
	}))
	defer bad.Close()
	c2 := mustClient(t, salesforce.Config{InstanceURL: bad.URL, Tokens: salesforce.StaticToken("t")})
	for i, h := range headers {
		if _, err := c2.Query(context.Background(), "SELECT Id FROM Account"); err != nil {
			t.Fatal(err)
		}
		if got, _ := c2.Usage(); got != (salesforce.Usage{Used: 7, Max: 100}) {
			t.Errorf("after header %d %q: Usage = %+v, want {7 100}", i, h, got)
		}
	}
}

func TestErrorsContainNoToken(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	c, _, _ := mustUserClient(t, srv, jane, 0)
	ctx := context.Background()
	var errs []error
	collect := func(_ any, err error) { errs = append(errs, err) }

	srv.SetFailure(sftest.EndpointQuery, http.StatusUnauthorized, sftest.BodyInvalidSession)
	collect(c.Query(ctx, "SELECT Id FROM Account"))
	srv.SetFailure(sftest.EndpointQuery, 0, "")
	collect(c.Query(ctx, "SELECT Password FROM Account"))
	collect(c.Query(ctx, "SELECT Id FROM Account WHERE Name = 'x"))
	srv.FailNext(sftest.EndpointSearch, http.StatusForbidden, sftest.BodyRequestLimitExceeded)
	collect(c.Search(ctx, "acme"))
	srv.FailNext(sftest.EndpointSObject, http.StatusBadGateway, sftest.BodyBadGatewayHTML)
	collect(c.Get(ctx, "Account", "0015g00000AcmeAAAR"))
	collect(c.Get(ctx, "Account", "0015g00000AcmeAAAA"))
	srv.RevokeAll()
	collect(c.Find(ctx, "Account", "acme", 5))
	collect(c.Identity(ctx, srv.IdentityURL(jane)))

	// A server that echoes the bearer token into its error message.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode([]map[string]string{{"errorCode": "BAD", "message": "got " + r.Header.Get("Authorization")}})
	}))
	defer echo.Close()
	g, _ := srv.Login(sam)
	ce := mustClient(t, salesforce.Config{InstanceURL: echo.URL, Tokens: salesforce.StaticToken(g.AccessToken)})
	collect(ce.Query(ctx, "SELECT Id FROM Account"))

	tokens := srv.IssuedTokens()
	if len(tokens) < 4 {
		t.Fatalf("only %d tokens issued", len(tokens))
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("call %d did not fail", i)
			continue
		}
		for _, tok := range tokens {
			if strings.Contains(err.Error(), tok) {
				t.Errorf("error %d contains a token: %v", i, err)
			}
		}
	}
}

func TestSharing(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	tests := []struct {
		user string
		want []string
	}{
		{user: jane, want: []string{"Acme Corporation", "Acme Labs GmbH", "Globex Inc.", "Initech", "Müller & Söhne KG", "Wayne Enterprises", "株式会社サクラ"}},
		{user: sam, want: []string{"Acme Labs GmbH", "Müller & Söhne KG"}}, // his own only
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			c, _, _ := mustUserClient(t, srv, tt.user, 0)
			recs, err := c.Query(context.Background(), "SELECT Id, Name FROM Account ORDER BY Name")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, names(recs)); diff != "" {
				t.Errorf("accounts mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	g, err := srv.Login(sam)
	if err != nil {
		t.Fatal(err)
	}
	c := mustClient(t, salesforce.Config{InstanceURL: g.InstanceURL, Tokens: salesforce.StaticToken(g.AccessToken)})
	got, err := c.Identity(context.Background(), g.ID)
	if err != nil {
		t.Fatalf("Identity: %v", err)
	}
	want := salesforce.Identity{UserID: "0055g00000SamsAAAR", OrgID: srv.OrgID(), Username: sam, DisplayName: "Sam Rivera", Email: sam, EmailVerified: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("identity mismatch (-want +got):\n%s", diff)
	}
	if err := srv.SetEmailVerified(sam, false); err != nil {
		t.Fatal(err)
	}
	got, err = c.Identity(context.Background(), g.ID)
	if err != nil {
		t.Fatalf("Identity: %v", err)
	}
	want.EmailVerified = false
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("identity with an unverified email mismatch (-want +got):\n%s", diff)
	}
	if _, err := c.Identity(context.Background(), "/id/relative"); !errors.Is(err, salesforce.ErrInvalidInput) {
		t.Errorf("relative identity URL: %v, want ErrInvalidInput", err)
	}
}

// Only a JSON true in email_verified makes a verified email; anything else,
// or nothing, is unverified without failing the read.
func TestIdentityEmailVerified(t *testing.T) {
	tests := []struct {
		name, field string // field is email_verified's JSON, "" to leave it out
		want        bool
	}{
		{"true", `true`, true},
		{"false", `false`, false},
		{"absent", ``, false},
		{"null", `null`, false},
		{"string true", `"true"`, false},
		{"number", `1`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"user_id":"0055g00000SamsAAAR","organization_id":"00D5g000004AcmeEAC","username":"sam@acme.example","email":"sam@acme.example"`
			if tt.field != "" {
				body += `,"email_verified":` + tt.field
			}
			body += "}"
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, body)
			}))
			defer ts.Close()
			c := mustClient(t, salesforce.Config{InstanceURL: ts.URL, Tokens: salesforce.StaticToken("t")})
			id, err := c.Identity(context.Background(), ts.URL+"/id/00D5g000004AcmeEAC/0055g00000SamsAAAR")
			if err != nil {
				t.Fatalf("Identity: %v", err)
			}
			if id.EmailVerified != tt.want || id.Email != sam {
				t.Errorf("Identity = %+v, want EmailVerified %v", id, tt.want)
			}
		})
	}
}

func TestObjectsIsACopy(t *testing.T) {
	objs := salesforce.Objects()
	objs[0].Fields[0].Label = "changed"
	objs[0].Name = "changed"
	var got []string
	for _, o := range salesforce.Objects() {
		got = append(got, o.Name+"/"+o.Fields[0].Label)
	}
	want := []string{"Account/Type", "Contact/Title", "Opportunity/Stage", "Lead/Company", "Case/Subject"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Objects mismatch (-want +got):\n%s", diff)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	var evilHits atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { evilHits.Add(1) }))
	defer evil.Close()
	instance := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, evil.URL+r.URL.Path, http.StatusFound)
	}))
	defer instance.Close()
	c := mustClient(t, salesforce.Config{InstanceURL: instance.URL, HTTPClient: http.DefaultClient, Tokens: salesforce.StaticToken("t")})
	if _, err := c.Get(context.Background(), "Account", "0015g00000AcmeAAAR"); err == nil {
		t.Errorf("Get through a redirect succeeded")
	}
	if n := evilHits.Load(); n != 0 {
		t.Errorf("redirect target got %d requests", n)
	}
	if http.DefaultClient.CheckRedirect != nil {
		t.Errorf("New modified the HTTPClient it was given")
	}
}

func TestConcurrentCallsRefreshTogether(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	c, tokens, _ := mustUserClient(t, srv, jane, 0)
	srv.ExpireAccessTokens()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := c.Search(context.Background(), "acme")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Search: %v", err)
		}
	}
	// This test Tokens does not single-flight, so each caller may refresh
	// once; the client itself must never refresh more than once per call.
	if n := tokens.calls.Load(); n < 1 || n > 8 {
		t.Errorf("refreshes = %d, want 1..8", n)
	}
}

// roundTripFunc turns a function into an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// leakedPiece returns a piece of at least 8 bytes of token found in the text
// of err or of any error it wraps, or "" if there is none.
func leakedPiece(err error, token string) string {
	if err == nil {
		return ""
	}
	text := err.Error()
	for i := 0; i+8 <= len(token); i++ {
		if strings.Contains(text, token[i:i+8]) {
			return token[i : i+8]
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return leakedPiece(u.Unwrap(), token)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if p := leakedPiece(e, token); p != "" {
				return p
			}
		}
	}
	return ""
}

func TestTokenEchoRedacted(t *testing.T) {
	// Shaped like a Salesforce access token: org id, "!", opaque part.
	const token = "00D5g000004AcmeEAC!AQ8AQHx7p3c9Qk2LrWvT0mZsYb1nJdFgEhUiKoPa6sDt4yXwVe3cBn5Mq.Zz_r"
	escaped := strings.ReplaceAll(token, "!", `\u0021`)
	long := strings.Repeat("x", 480)
	tests := []struct {
		name string
		body func(tok string) string // error body, given the echoed token
	}{
		{name: "errorCode", body: func(tok string) string { return `[{"errorCode":"` + tok + `","message":"bad"}]` }},
		{name: "fields", body: func(tok string) string {
			return `[{"errorCode":"BAD","message":"bad","fields":["Name","` + tok + `"]}]`
		}},
		{name: "message near the cap", body: func(tok string) string { return `[{"errorCode":"BAD","message":"` + long + tok + `"}]` }},
		{name: "oauth error", body: func(tok string) string { return `{"error":"` + tok + `","error_description":"` + long + tok + `"}` }},
		{name: "escaped in message", body: func(string) string { return `[{"errorCode":"BAD","message":"got ` + escaped + `"}]` }},
		{name: "escaped near the cap", body: func(string) string { return `[{"errorCode":"BAD","message":"` + long + escaped + `"}]` }},
		{name: "escaped in errorCode", body: func(string) string { return `{"errorCode":"` + escaped + `","message":"bad"}` }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, tt.body(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")))
			}))
			defer echo.Close()
			c := mustClient(t, salesforce.Config{InstanceURL: echo.URL, Tokens: salesforce.StaticToken(token)})
			_, err := c.Query(context.Background(), "SELECT Id FROM Account")
			var apiErr *salesforce.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("Query error = %v, want an *APIError", err)
			}
			if p := leakedPiece(err, token); p != "" {
				t.Errorf("error contains %q of the token: %v", p, err)
			}
		})
	}

	t.Run("transport error", func(t *testing.T) {
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return nil, fmt.Errorf("proxy refused request with header %q", r.Header.Get("Authorization"))
		})}
		c := mustClient(t, salesforce.Config{InstanceURL: "https://acme.my.salesforce.com", HTTPClient: hc, Tokens: salesforce.StaticToken(token)})
		_, err := c.Get(context.Background(), "Account", "0015g00000AcmeAAAR")
		if !errors.Is(err, salesforce.ErrUnavailable) {
			t.Fatalf("Get error = %v, want ErrUnavailable", err)
		}
		if p := leakedPiece(err, token); p != "" {
			t.Errorf("error contains %q of the token: %v", p, err)
		}
	})
}

func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	tests := []struct {
		url    string
		wantOK bool
	}{
		{url: "https://acme.my.salesforce.com", wantOK: true},
		{url: "https://10.0.0.7:8443", wantOK: true},
		{url: "http://127.0.0.1:8123", wantOK: true},
		{url: "http://127.3.4.5", wantOK: true},
		{url: "http://[::1]:8123", wantOK: true},
		{url: "http://localhost:8123", wantOK: true},
		{url: "http://LocalHost", wantOK: true},
		{url: "http://acme.my.salesforce.com"},
		{url: "http://10.0.0.7"},
		{url: "http://128.0.0.1"},
		{url: "http://0.0.0.0:8123"},
		{url: "http://[::]:8123"},
		{url: "http://localhost.evil.example"},
		{url: "http://127.0.0.1.evil.example"},
		{url: "http://evil.example#@127.0.0.1"},
		{url: "ws://127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := salesforce.New(salesforce.Config{InstanceURL: tt.url, Tokens: salesforce.StaticToken("t")})
			if got := err == nil; got != tt.wantOK {
				t.Errorf("New(%q) error = %v, want ok %v", tt.url, err, tt.wantOK)
			}

			var sent atomic.Int32
			hc := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
				sent.Add(1)
				return nil, errors.New("no network in this test")
			})}
			c := mustClient(t, salesforce.Config{InstanceURL: "https://acme.my.salesforce.com", HTTPClient: hc, Tokens: salesforce.StaticToken("t")})
			_, err = c.Identity(context.Background(), tt.url+"/id/00D5g000004AcmeEAC/0055g00000SamsAAAR")
			refused := errors.Is(err, salesforce.ErrInvalidInput)
			if refused == tt.wantOK {
				t.Errorf("Identity(%q) error = %v, want refused %v", tt.url, err, !tt.wantOK)
			}
			if want := map[bool]int32{true: 1, false: 0}[tt.wantOK]; sent.Load() != want {
				t.Errorf("Identity(%q) sent %d requests, want %d", tt.url, sent.Load(), want)
			}
		})
	}
}

func TestResponseBodyCap(t *testing.T) {
	const limit = 8 << 20
	const endlessCap = 64 << 20 // where the endless body gives up
	hugeRecord := `{"attributes":{"type":"Account"},"Id":"0015g00000AcmeAAAR","Name":"` + strings.Repeat("a", limit+1024) + `"}`
	tests := []struct {
		name    string
		status  int
		body    string // sent once unless endless
		endless bool
	}{
		{name: "valid record over the cap", status: http.StatusOK, body: hugeRecord},
		{name: "error answer over the cap", status: http.StatusBadRequest, body: `[{"errorCode":"BAD","message":"` + strings.Repeat("b", limit) + `"}]`},
		{name: "endless body", status: http.StatusOK, endless: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var written atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				if !tt.endless {
					n, _ := io.WriteString(w, tt.body)
					written.Add(int64(n))
					return
				}
				chunk := []byte(`{"records":[` + strings.Repeat(" ", 64<<10))
				for written.Load() < endlessCap {
					n, err := w.Write(chunk)
					written.Add(int64(n))
					if err != nil {
						return
					}
				}
			}))
			c := mustClient(t, salesforce.Config{InstanceURL: srv.URL, Tokens: salesforce.StaticToken("t")})
			rec, err := c.Get(context.Background(), "Account", "0015g00000AcmeAAAR")
			srv.Close() // waits for the handler, so written is final
			if err == nil {
				t.Fatalf("Get accepted a body of %d bytes (record name %d bytes)", written.Load(), len(rec.String("Name")))
			}
			// The cap applies before an error answer is parsed.
			var apiErr *salesforce.APIError
			if errors.As(err, &apiErr) {
				t.Errorf("Get parsed an over-cap body as an API error: %v", err)
			}
			if tt.endless && written.Load() >= endlessCap {
				t.Errorf("client read the endless body to the server's own cap of %d bytes", endlessCap)
			}
		})
	}
}

func TestDefaultTimeout(t *testing.T) {
	const record = `{"attributes":{"type":"Account"},"Id":"0015g00000AcmeAAAR","Name":"Acme"}`
	tests := []struct {
		name     string
		delay    time.Duration // before the server answers, unless the client gives up
		deadline time.Duration // of the caller's context; zero means none
		wantErr  error
	}{
		// Without a deadline the client's own Timeout (50ms) must cut the
		// call short; the server would answer only after 20s.
		{name: "no deadline gets Timeout", delay: 20 * time.Second, wantErr: context.DeadlineExceeded},
		// The caller's deadline wins over Timeout, even when it is longer.
		{name: "caller deadline kept", delay: 300 * time.Millisecond, deadline: 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(tt.delay):
					fmt.Fprint(w, record)
				}
			}))
			defer srv.Close()
			c := mustClient(t, salesforce.Config{InstanceURL: srv.URL, Tokens: salesforce.StaticToken("t"), Timeout: 50 * time.Millisecond})
			ctx := context.Background()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			_, err := c.Get(ctx, "Account", "0015g00000AcmeAAAR")
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Get error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
