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

// The fixture users' ids, the key of their entries in a FieldCache.
const (
	janeID = "0055g00000JaneAAAR"
	samID  = "0055g00000SamsAAAR"
)

// invalidFieldBody is Salesforce's answer to a query naming a column the
// user cannot see.
const invalidFieldBody = `[{"message":"No such column 'Industry' on entity 'Account'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.","errorCode":"INVALID_FIELD"}]`

// sharedClient returns a client for username that shares fields, as every
// message's fresh client does in the daemon, and the recorder under it.
func sharedClient(tb testing.TB, srv *sftest.Server, fields *salesforce.FieldCache, username string) (*salesforce.Client, *recorder) {
	tb.Helper()
	id := map[string]string{jane: janeID, sam: samID}[username]
	rec := &recorder{}
	return mustClient(tb, salesforce.Config{
		InstanceURL: srv.URL,
		HTTPClient:  &http.Client{Transport: rec},
		Tokens:      mustRefresher(tb, srv, username),
		Fields:      fields,
		OrgID:       srv.OrgID(),
		UserID:      id,
	}), rec
}

func newFields() *salesforce.FieldCache {
	return salesforce.NewFieldCache(salesforce.FieldCacheConfig{})
}

// hans, müller and the renewal are sam's own records; his profile hides
// Opportunity.Amount and Contact.Phone.
func mullerResults(srv *sftest.Server, withHidden bool) []salesforce.Result {
	view := func(object, id string) string { return srv.URL + "/lightning/r/" + object + "/" + id + "/view" }
	contact := []salesforce.Field{{"Title", "Geschäftsführer"}, {"Account", "Müller & Söhne KG"}, {"Email", "hans@mueller-soehne.example"}}
	opp := []salesforce.Field{{"Stage", "Closed Won"}, {"Close Date", "2025-06-30"}, {"Account", "Müller & Söhne KG"}}
	if withHidden {
		contact = append(contact, salesforce.Field{Label: "Phone", Value: "+49 89 5550 778"})
		opp = []salesforce.Field{opp[0], {"Amount", "32000"}, opp[1], opp[2]}
	}
	return []salesforce.Result{
		{Type: "Account", ID: "0015g00000MuelAAAR", Name: "Müller & Söhne KG", URL: view("Account", "0015g00000MuelAAAR"),
			Fields: []salesforce.Field{{"Type", "Customer - Direct"}, {"Industry", "Retail"}, {"City", "München"}, {"Phone", "+49 89 5550 777"}}},
		{Type: "Contact", ID: "0035g00000HansAAAR", Name: "Hans Müller", URL: view("Contact", "0035g00000HansAAAR"), Fields: contact},
		{Type: "Opportunity", ID: "0065g00000Opp4AAAR", Name: "Müller Renewal 2026", URL: view("Opportunity", "0065g00000Opp4AAAR"), Fields: opp},
	}
}

// A search by someone whose profile hides fields used to be refused whole
// (INVALID_FIELD); now it asks only for what they may read, and someone
// who may read everything still gets everything.
func TestSearchAsksOnlyForReadableFields(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	fields := newFields()
	for _, tt := range []struct {
		user       string
		withHidden bool
	}{{sam, false}, {jane, true}} {
		t.Run(tt.user, func(t *testing.T) {
			c, rec := sharedClient(t, srv, fields, tt.user)
			got, err := c.Search(t.Context(), "müller")
			if err != nil {
				t.Fatalf("Search: %v", err)
			}
			if diff := cmp.Diff(mullerResults(srv, tt.withHidden), got); diff != "" {
				t.Errorf("results mismatch (-want +got):\n%s", diff)
			}
			sosl := rec.last().URL.Query().Get("q")
			for _, hidden := range []string{"Opportunity(Id, Name, StageName, Amount,", "Email, Phone), Opportunity"} {
				if strings.Contains(sosl, hidden) != tt.withHidden {
					t.Errorf("SOSL %q: contains %q is %v, want %v", sosl, hidden, !tt.withHidden, tt.withHidden)
				}
			}
		})
	}
}

// Every per-object lookup works for sam, shows what he may read, and sees
// only his own records.
func TestFindAsksOnlyForReadableFields(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	c, rec := sharedClient(t, srv, newFields(), sam)
	view := func(object, id string) string { return srv.URL + "/lightning/r/" + object + "/" + id + "/view" }
	tests := []struct {
		object, text string
		want         []salesforce.Result
		wantSOQL     string
	}{
		{object: "Account", text: "acme", want: []salesforce.Result{{Type: "Account", ID: "0015g00000AcLbAAAV", Name: "Acme Labs GmbH", URL: view("Account", "0015g00000AcLbAAAV"),
			Fields: []salesforce.Field{{"Type", "Prospect"}, {"Industry", "Technology"}, {"City", "Berlin"}, {"Phone", "+49 30 5550 1234"}}}},
			wantSOQL: `SELECT Id, Name, Type, Industry, BillingCity, Phone FROM Account WHERE Name LIKE '%acme%' ORDER BY Name LIMIT 10`},
		{object: "Contact", text: "hans", want: mullerResults(srv, false)[1:2],
			wantSOQL: `SELECT Id, Name, Title, Account.Name, Email FROM Contact WHERE Name LIKE '%hans%' ORDER BY Name LIMIT 10`},
		{object: "Opportunity", text: "müller", want: mullerResults(srv, false)[2:],
			wantSOQL: `SELECT Id, Name, StageName, CloseDate, Account.Name FROM Opportunity WHERE Name LIKE '%müller%' ORDER BY Name LIMIT 10`},
		{object: "Lead", text: "dana", want: []salesforce.Result{{Type: "Lead", ID: "00Q5g00000Led2AEAR", Name: "Dana O'Neil", URL: view("Lead", "00Q5g00000Led2AEAR"),
			Fields: []salesforce.Field{{"Company", "Acme Labs GmbH"}, {"Status", "Working - Contacted"}, {"Email", "dana.oneil@acmelabs.example"}}}}},
		{object: "Case", text: "rechnung", want: []salesforce.Result{{Type: "Case", ID: "5005g00000Cas3AAAR", Name: "00001003", URL: view("Case", "5005g00000Cas3AAAR"),
			Fields: []salesforce.Field{{"Subject", "Rechnung fehlt für März"}, {"Status", "Working"}, {"Priority", "Low"}}}}},
		{object: "Case", text: "damaged", want: []salesforce.Result{}}, // jane's case
	}
	for _, tt := range tests {
		t.Run(tt.object+" "+tt.text, func(t *testing.T) {
			got, err := c.Find(t.Context(), tt.object, tt.text, 0)
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("results mismatch (-want +got):\n%s", diff)
			}
			if q := rec.last().URL.Query().Get("q"); tt.wantSOQL != "" && q != tt.wantSOQL {
				t.Errorf("SOQL sent:\n got %s\nwant %s", q, tt.wantSOQL)
			}
		})
	}
}

// A case lookup matches the subject only when the person may read it.
func TestFindCaseWithHiddenSubject(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	if err := srv.SetFieldHidden(sam, "Case", "Subject", true); err != nil {
		t.Fatal(err)
	}
	c, rec := sharedClient(t, srv, newFields(), sam)
	got, err := c.Find(t.Context(), "Case", "1003", 0)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	want := []salesforce.Result{{Type: "Case", ID: "5005g00000Cas3AAAR", Name: "00001003", URL: srv.URL + "/lightning/r/Case/5005g00000Cas3AAAR/view",
		Fields: []salesforce.Field{{"Status", "Working"}, {"Priority", "Low"}}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results mismatch (-want +got):\n%s", diff)
	}
	const soql = `SELECT Id, CaseNumber, Status, Priority FROM Case WHERE CaseNumber LIKE '%1003%' ORDER BY CaseNumber LIMIT 10`
	if q := rec.last().URL.Query().Get("q"); q != soql {
		t.Errorf("SOQL sent:\n got %s\nwant %s", q, soql)
	}
}

// What one user may read is never used for another: entries are per org,
// user and object.
func TestFieldCacheIsPerUser(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	fields := newFields()
	for i, tt := range []struct {
		user       string
		withHidden bool
	}{{sam, false}, {jane, true}, {sam, false}, {jane, true}} {
		c, _ := sharedClient(t, srv, fields, tt.user)
		got, err := c.Search(t.Context(), "müller")
		if err != nil {
			t.Fatalf("search %d as %s: %v", i, tt.user, err)
		}
		if diff := cmp.Diff(mullerResults(srv, tt.withHidden), got); diff != "" {
			t.Errorf("search %d as %s mismatch (-want +got):\n%s", i, tt.user, diff)
		}
	}
	if n := srv.Calls(sftest.EndpointObjectInfo); n != 2 {
		t.Errorf("%d object info calls, want 2: one batch of the five objects for each of two users, once", n)
	}
	if n := fields.Len(); n != 10 {
		t.Errorf("cache holds %d entries, want 10", n)
	}
}

// An administrator hides a field while forcebind still trusts the old
// metadata: the refused search drops it, reads it again once, and retries
// once, without the person noticing.
func TestInvalidFieldRereadsMetadataOnce(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	fields := newFields()
	c, rec := sharedClient(t, srv, fields, jane)
	if _, err := c.Search(t.Context(), "acme"); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetFieldHidden(jane, "Account", "Industry", true); err != nil {
		t.Fatal(err)
	}
	infos, searches := srv.Calls(sftest.EndpointObjectInfo), srv.Calls(sftest.EndpointSearch)
	got, err := c.Search(t.Context(), "acme")
	if err != nil {
		t.Fatalf("Search after the field was hidden: %v", err)
	}
	if len(got) != 4 || got[0].Name != "Acme Corporation" || len(got[0].Fields) != 3 {
		t.Errorf("results %+v, want the four acme hits", got)
	}
	for _, r := range got {
		for _, f := range r.Fields {
			if f.Label == "Industry" {
				t.Errorf("%s still shows Industry", r.Name)
			}
		}
	}
	if q := rec.last().URL.Query().Get("q"); strings.Contains(q, "Industry") {
		t.Errorf("retry still names Industry: %s", q)
	}
	counts := []int{srv.Calls(sftest.EndpointObjectInfo) - infos, srv.Calls(sftest.EndpointSearch) - searches}
	if diff := cmp.Diff([]int{1, 2}, counts); diff != "" {
		t.Errorf("[object info, search] calls mismatch (-want +got):\n%s", diff)
	}

	// The next search trusts the fresh metadata: no more reads.
	infos = srv.Calls(sftest.EndpointObjectInfo)
	if _, err := c.Find(t.Context(), "Account", "acme", 0); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls(sftest.EndpointObjectInfo) - infos; n != 0 {
		t.Errorf("%d object info calls after the re-read, want 0", n)
	}
}

// INVALID_FIELD never loops: when fresh metadata changes nothing, the error
// stands after one re-read and no retry; when it does change the request,
// the retry is the last.
func TestInvalidFieldRetriesAtMostOnce(t *testing.T) {
	tests := []struct {
		name         string
		hide         bool // hide Account.Industry first, so that fresh metadata changes the request
		wantSearches int
	}{
		{name: "metadata unchanged", wantSearches: 1},
		{name: "metadata changed", hide: true, wantSearches: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mustServer(t, sftest.Options{})
			c, _ := sharedClient(t, srv, newFields(), jane)
			if _, err := c.Find(t.Context(), "Account", "acme", 0); err != nil {
				t.Fatal(err)
			}
			if tt.hide {
				if err := srv.SetFieldHidden(jane, "Account", "Industry", true); err != nil {
					t.Fatal(err)
				}
			}
			srv.SetFailure(sftest.EndpointQuery, http.StatusBadRequest, invalidFieldBody)
			infos, queries := srv.Calls(sftest.EndpointObjectInfo), srv.Calls(sftest.EndpointQuery)
			_, err := c.Find(t.Context(), "Account", "acme", 0)
			var apiErr *salesforce.APIError
			if !errors.As(err, &apiErr) || apiErr.ErrorCode != "INVALID_FIELD" {
				t.Fatalf("Find = %v, want the INVALID_FIELD error", err)
			}
			counts := []int{srv.Calls(sftest.EndpointObjectInfo) - infos, srv.Calls(sftest.EndpointQuery) - queries}
			if diff := cmp.Diff([]int{1, tt.wantSearches}, counts); diff != "" {
				t.Errorf("[object info, query] calls mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Twenty searches at once by one person, each on its own client as the
// bot makes them, read the metadata once, in one batch; twenty that then
// hit the same INVALID_FIELD re-read it once, too.
func TestFieldCacheSingleFlight(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	fields := newFields()
	clients := make([]*salesforce.Client, 20)
	for i := range clients {
		clients[i], _ = sharedClient(t, srv, fields, sam)
	}
	srv.SetLatency(20 * time.Millisecond) // so that the searches overlap; nothing is timed
	searchAll := func() {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, len(clients))
		for i, c := range clients {
			wg.Go(func() { _, errs[i] = c.Search(t.Context(), "müller") })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	searchAll()
	if n := srv.Calls(sftest.EndpointObjectInfo); n != 1 {
		t.Errorf("%d object info calls for twenty concurrent searches, want 1", n)
	}
	if err := srv.SetFieldHidden(sam, "Account", "Industry", true); err != nil {
		t.Fatal(err)
	}
	searchAll()
	if n := srv.Calls(sftest.EndpointObjectInfo); n != 2 {
		t.Errorf("%d object info calls after twenty INVALID_FIELD answers, want 1 more", n-1)
	}
}

// An entry is read again once its TTL is over, and the cache keeps no more
// than MaxEntries, dropping the least recently used.
func TestFieldCacheExpiryAndBound(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	var mu sync.Mutex
	now := time.Date(2025, 7, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	fields := salesforce.NewFieldCache(salesforce.FieldCacheConfig{TTL: time.Minute, MaxEntries: 2, Now: clock})
	c, _ := sharedClient(t, srv, fields, sam)
	find := func(object string) int {
		t.Helper()
		before := srv.Calls(sftest.EndpointObjectInfo)
		if _, err := c.Find(t.Context(), object, "acme", 0); err != nil {
			t.Fatal(err)
		}
		return srv.Calls(sftest.EndpointObjectInfo) - before
	}
	steps := []struct {
		name    string
		advance time.Duration
		object  string
		want    int // object info calls
	}{
		{"cold", 0, "Account", 1},
		{"warm", 59 * time.Second, "Account", 0},
		{"expired", time.Second, "Account", 1},
		{"second object", 0, "Lead", 1},
		{"first still there", 0, "Account", 0},
		{"third pushes out the least recent", 0, "Case", 1},
		{"lead was pushed out", 0, "Lead", 1},
		{"case is still there", 0, "Case", 0},
	}
	for _, s := range steps {
		advance(s.advance)
		if got := find(s.object); got != s.want {
			t.Errorf("%s: %d object info calls, want %d", s.name, got, s.want)
		}
	}
	if n := fields.Len(); n != 2 {
		t.Errorf("cache holds %d entries, want at most 2", n)
	}
}

// A shared cache without the user it is for would mix people up.
func TestSharedFieldCacheNeedsTheUser(t *testing.T) {
	for _, cfg := range []salesforce.Config{
		{InstanceURL: "https://acme.my.salesforce.com", Tokens: salesforce.StaticToken("t"), Fields: newFields(), OrgID: "00D5g000004FbcDEAS"},
		{InstanceURL: "https://acme.my.salesforce.com", Tokens: salesforce.StaticToken("t"), Fields: newFields(), UserID: samID},
	} {
		if _, err := salesforce.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a shared cache without both ids", cfg)
		}
	}
}

// Metadata that cannot be read fails the search plainly, with nothing
// cached, so that the next search tries again.
func TestObjectInfoFailure(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	fields := newFields()
	c, _ := sharedClient(t, srv, fields, sam)
	srv.FailNext(sftest.EndpointObjectInfo, http.StatusServiceUnavailable, `[{"message":"down","errorCode":"SERVER_UNAVAILABLE"}]`)
	if _, err := c.Find(t.Context(), "Account", "acme", 0); !errors.Is(err, salesforce.ErrUnavailable) {
		t.Fatalf("Find = %v, want ErrUnavailable", err)
	}
	if n := srv.Calls(sftest.EndpointQuery); n != 0 {
		t.Errorf("%d queries sent without metadata, want 0", n)
	}
	srv.FailNext(sftest.EndpointObjectInfo, http.StatusOK, `{"apiName":"Contact","fields":{}}`)
	if _, err := c.Find(t.Context(), "Account", "acme", 0); err == nil {
		t.Fatal("Find trusted object info for another object")
	}
	if got, err := c.Find(t.Context(), "Account", "acme", 0); err != nil || len(got) != 1 {
		t.Fatalf("Find after the failures = %v, %v; want one account", got, err)
	}
	if n := fields.Len(); n != 1 {
		t.Errorf("cache holds %d entries, want 1", n)
	}
}
