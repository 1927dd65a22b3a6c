package salesforce_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/salesforce/sftest"
)

func benchClient(b *testing.B, opts sftest.Options, maxRecords int) *salesforce.Client {
	b.Helper()
	srv := mustServer(b, opts)
	g, err := srv.Login(jane)
	if err != nil {
		b.Fatal(err)
	}
	return mustClient(b, salesforce.Config{
		InstanceURL: srv.URL,
		HTTPClient:  &http.Client{Transport: http.DefaultTransport},
		Tokens:      salesforce.StaticToken(g.AccessToken),
		MaxRecords:  maxRecords,
	})
}

// BenchmarkSearch measures one SOSL search across all five objects against
// the in-process fake, HTTP round trip included.
func BenchmarkSearch(b *testing.B) {
	c := benchClient(b, sftest.Options{}, 0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Search(ctx, "acme")
		if err != nil || len(res) != 4 {
			b.Fatalf("Search = %d results, %v", len(res), err)
		}
	}
}

// BenchmarkQueryPaged measures a query that takes four pages of two records.
func BenchmarkQueryPaged(b *testing.B) {
	c := benchClient(b, sftest.Options{PageSize: 2}, 0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		recs, err := c.Query(ctx, "SELECT Id, Name FROM Account ORDER BY Name")
		if err != nil || len(recs) != 7 {
			b.Fatalf("Query = %d records, %v", len(recs), err)
		}
	}
}

// restCalls counts every REST request the fake org has answered.
func restCalls(srv *sftest.Server) int {
	n := 0
	for _, ep := range []sftest.Endpoint{sftest.EndpointQuery, sftest.EndpointSearch, sftest.EndpointSObject, sftest.EndpointObjectInfo} {
		n += srv.Calls(ep)
	}
	return n
}

// benchSearchFieldCache searches as sam (whose profile hides fields) with a
// fresh Client per search, as the bot makes one per message, sharing fields
// when it is not nil and with a cache of its own otherwise. It reports the
// HTTP requests each search cost, counted at the fake org.
func benchSearchFieldCache(b *testing.B, fields func() *salesforce.FieldCache) {
	srv := mustServer(b, sftest.Options{})
	g, err := srv.Login(sam)
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Transport: http.DefaultTransport}
	search := func() {
		c := mustClient(b, salesforce.Config{
			InstanceURL: srv.URL, HTTPClient: hc, Tokens: salesforce.StaticToken(g.AccessToken),
			Fields: fields(), OrgID: srv.OrgID(), UserID: samID,
		})
		res, err := c.Search(context.Background(), "müller")
		if err != nil || len(res) != 3 {
			b.Fatalf("Search = %d results, %v", len(res), err)
		}
	}
	search() // a warm cache is warm from here on
	calls, infos := restCalls(srv), srv.Calls(sftest.EndpointObjectInfo)
	b.ReportAllocs()
	for b.Loop() {
		search()
	}
	b.ReportMetric(float64(restCalls(srv)-calls)/float64(b.N), "requests/op")
	b.ReportMetric(float64(srv.Calls(sftest.EndpointObjectInfo)-infos)/float64(b.N), "object_info/op")
}

// BenchmarkSearchWarmFieldCache shows that once what sam may read is
// cached, a search costs one request, the search itself: 1 requests/op,
// 0 object_info/op.
func BenchmarkSearchWarmFieldCache(b *testing.B) {
	shared := salesforce.NewFieldCache(salesforce.FieldCacheConfig{})
	benchSearchFieldCache(b, func() *salesforce.FieldCache { return shared })
}

// BenchmarkSearchColdFieldCache is the same search when nothing is cached:
// five object info reads before it (6 requests/op).
func BenchmarkSearchColdFieldCache(b *testing.B) {
	benchSearchFieldCache(b, func() *salesforce.FieldCache { return salesforce.NewFieldCache(salesforce.FieldCacheConfig{}) })
}
