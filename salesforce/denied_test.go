package salesforce_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/salesforce/sftest"
)

// all returns every request the recorder saw.
func (r *recorder) all() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.reqs...)
}

// mustDeny takes object away from username at srv, or gives it back.
func mustDeny(tb testing.TB, srv *sftest.Server, username, object string, denied bool) {
	tb.Helper()
	if err := srv.SetObjectDenied(username, object, denied); err != nil {
		tb.Fatal(err)
	}
}

// wantNotReadable fails t unless err says that the user may not read
// object, and nothing else.
func wantNotReadable(t *testing.T, err error, object string) {
	t.Helper()
	var nr *salesforce.NotReadableError
	if !errors.As(err, &nr) || !errors.Is(err, salesforce.ErrNotReadable) || nr.Object != object || nr.Label != object {
		t.Fatalf("error %v, want a NotReadableError for %s", err, object)
	}
	for _, other := range []error{salesforce.ErrNotFound, salesforce.ErrUnavailable, salesforce.ErrInvalidInput, salesforce.ErrSessionExpired, salesforce.ErrRateLimited} {
		if errors.Is(err, other) {
			t.Errorf("error %v also matches %v", err, other)
		}
	}
	if !strings.Contains(nr.Reason, "403") {
		t.Errorf("reason %q does not say what Salesforce answered", nr.Reason)
	}
}

// Someone with no access to Leads at all used to get an error for every
// search; now Leads are left out of it, and `lead …` says plainly that
// they may not read them, remembered for a short while only.
func TestSearchLeavesOutObjectsTheUserMayNotRead(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	mustDeny(t, srv, sam, "Lead", true)
	var mu sync.Mutex
	now := time.Date(2025, 7, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	fields := salesforce.NewFieldCache(salesforce.FieldCacheConfig{Now: clock})
	c, rec := sharedClient(t, srv, fields, sam)

	got, err := c.Search(t.Context(), "acme")
	if err != nil {
		t.Fatalf("Search by someone who may not read Leads: %v", err)
	}
	var types []string
	for _, r := range got {
		types = append(types, r.Type+" "+r.Name)
	}
	// Sam owns the Acme Labs account and a lead at Acme Labs: only the
	// account is left.
	if diff := cmp.Diff([]string{"Account Acme Labs GmbH"}, types); diff != "" {
		t.Errorf("results mismatch (-want +got):\n%s", diff)
	}
	if q := rec.last().URL.Query().Get("q"); strings.Contains(q, "Lead") {
		t.Errorf("SOSL names Lead: %s", q)
	}

	infos := srv.Calls(sftest.EndpointObjectInfo)
	_, err = c.Find(t.Context(), "Lead", "dana", 0)
	wantNotReadable(t, err, "Lead")
	if n := srv.Calls(sftest.EndpointObjectInfo) - infos; n != 0 {
		t.Errorf("%d object info calls for a lead lookup just after the search, want 0: that Leads are not readable is remembered", n)
	}
	if n := srv.Calls(sftest.EndpointQuery); n != 0 {
		t.Errorf("%d queries sent for an object the user may not read, want 0", n)
	}

	// Access given back shows once DefaultDeniedTTL is over, while what
	// was readable is still trusted.
	mustDeny(t, srv, sam, "Lead", false)
	advance(salesforce.DefaultDeniedTTL)
	infos = srv.Calls(sftest.EndpointObjectInfo)
	leads, err := c.Find(t.Context(), "Lead", "dana", 0)
	if err != nil || len(leads) != 1 {
		t.Fatalf("Find of a lead after access was given back = %v, %v; want dana", leads, err)
	}
	if _, err := c.Find(t.Context(), "Account", "acme", 0); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls(sftest.EndpointObjectInfo) - infos; n != 1 {
		t.Errorf("%d object info calls, want 1: Lead's only", n)
	}
}

// Access taken away while forcebind still trusts the old metadata: the
// refused search (INVALID_TYPE) drops it, reads it again once and retries
// without the object.
func TestObjectDeniedSinceMetadataWasRead(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	c, rec := sharedClient(t, srv, newFields(), sam)
	if _, err := c.Search(t.Context(), "acme"); err != nil {
		t.Fatal(err)
	}
	mustDeny(t, srv, sam, "Lead", true)
	infos, searches := srv.Calls(sftest.EndpointObjectInfo), srv.Calls(sftest.EndpointSearch)
	got, err := c.Search(t.Context(), "acme")
	if err != nil {
		t.Fatalf("Search after Leads were taken away: %v", err)
	}
	if len(got) != 1 || got[0].Type != "Account" {
		t.Errorf("results %+v, want the account only", got)
	}
	if q := rec.last().URL.Query().Get("q"); strings.Contains(q, "Lead") {
		t.Errorf("retry still names Lead: %s", q)
	}
	counts := []int{srv.Calls(sftest.EndpointObjectInfo) - infos, srv.Calls(sftest.EndpointSearch) - searches}
	if diff := cmp.Diff([]int{1, 2}, counts); diff != "" {
		t.Errorf("[object info, search] calls mismatch (-want +got):\n%s", diff)
	}
	_, err = c.Find(t.Context(), "Lead", "dana", 0)
	wantNotReadable(t, err, "Lead")
}

// Every per-object command of someone who may read none of the objects
// says so for that object; a search of nothing readable says so too.
func TestFindEveryObjectNotReadable(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	for _, o := range salesforce.Objects() {
		mustDeny(t, srv, sam, o.Name, true)
	}
	c, _ := sharedClient(t, srv, newFields(), sam)
	for _, o := range salesforce.Objects() {
		t.Run(o.Name, func(t *testing.T) {
			_, err := c.Find(t.Context(), o.Name, "acme", 0)
			wantNotReadable(t, err, o.Name)
		})
	}
	_, err := c.Search(t.Context(), "acme")
	wantNotReadable(t, err, "Account")
	if n := srv.Calls(sftest.EndpointQuery) + srv.Calls(sftest.EndpointSearch); n != 0 {
		t.Errorf("%d queries and searches sent, want none", n)
	}
}

// A lookup into an object the user may not read is left out of the
// fields asked for: sam's contacts without Account.Name, when Accounts
// are not his to read.
func TestPathIntoObjectNotReadable(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	mustDeny(t, srv, sam, "Account", true)
	c, rec := sharedClient(t, srv, newFields(), sam)
	got, err := c.Find(t.Context(), "Contact", "hans", 0)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	want := []salesforce.Field{{"Title", "Geschäftsführer"}, {"Email", "hans@mueller-soehne.example"}}
	if len(got) != 1 || !cmp.Equal(want, got[0].Fields) {
		t.Errorf("results %+v, want hans without his account", got)
	}
	const soql = `SELECT Id, Name, Title, Email FROM Contact WHERE Name LIKE '%hans%' ORDER BY Name LIMIT 10`
	if q := rec.last().URL.Query().Get("q"); q != soql {
		t.Errorf("SOQL sent:\n got %s\nwant %s", q, soql)
	}
}

// Before API version 49.0 there is no batch: each object's info is read on
// its own, the first alone, and a refused one is left out all the same.
func TestObjectInfoBeforeBatch(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	mustDeny(t, srv, sam, "Lead", true)
	rec := &recorder{}
	c := mustClient(t, salesforce.Config{
		InstanceURL: srv.URL, APIVersion: "48.0", HTTPClient: &http.Client{Transport: rec},
		Tokens: mustRefresher(t, srv, sam), Fields: newFields(), OrgID: srv.OrgID(), UserID: samID,
	})
	got, err := c.Search(t.Context(), "müller")
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if diff := cmp.Diff(mullerResults(srv, false), got); diff != "" {
		t.Errorf("results mismatch (-want +got):\n%s", diff)
	}
	if n := srv.Calls(sftest.EndpointObjectInfo); n != 5 {
		t.Errorf("%d object info calls, want 5, one per object", n)
	}
	for _, r := range rec.all() {
		if strings.Contains(r.URL.Path, "/batch/") {
			t.Errorf("version 48.0 asked for %s", r.URL.Path)
		}
	}
	_, err = c.Find(t.Context(), "Lead", "dana", 0)
	wantNotReadable(t, err, "Lead")
}

// Object info that fails for an object in other ways than refusing it
// fails the search plainly, with nothing cached.
func TestObjectInfoItemFailure(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	c, _ := sharedClient(t, srv, newFields(), sam)
	srv.FailNext(sftest.EndpointObjectInfo, http.StatusOK, `{"results":[{"result":[{"errorCode":"UNKNOWN_EXCEPTION","message":"boom"}],"statusCode":500}]}`)
	if _, err := c.Find(t.Context(), "Account", "acme", 0); err == nil || errors.Is(err, salesforce.ErrNotReadable) {
		t.Fatalf("Find = %v, want the failure", err)
	}
	if got, err := c.Find(t.Context(), "Account", "acme", 0); err != nil || len(got) != 1 {
		t.Fatalf("Find after the failure = %v, %v; want one account", got, err)
	}
}
