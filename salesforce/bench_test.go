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
