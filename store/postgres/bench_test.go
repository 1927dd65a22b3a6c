package postgres

import (
	"strconv"
	"testing"

	"github.com/forcebind/forcebind/store/postgres/pgtest"
	"github.com/forcebind/forcebind/store/storetest"
)

// BenchmarkGetBinding is the hot path, beside store/bolt's benchmark of the
// same name, over one connection to a server on a unix socket; it reports
// the round trips each call makes.
func BenchmarkGetBinding(b *testing.B) {
	db, wire := mustOpenCounted(b, pgtest.Database(b))
	mustPutBinding(b, db, storetest.SampleBinding("T1", "U1"))
	ctx := b.Context()
	if _, err := db.GetBinding(ctx, "T1", "U1"); err != nil { // prepares the query
		b.Fatal(err)
	}
	before := wire.writes.Load()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := db.GetBinding(ctx, "T1", "U1"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(wire.writes.Load()-before)/float64(b.N), "roundtrips/op")
}

// BenchmarkPutBinding measures a committed write of a new binding and its
// count, one statement each.
func BenchmarkPutBinding(b *testing.B) {
	db, wire := mustOpenCounted(b, pgtest.Database(b))
	ctx := b.Context()
	bs := storetest.SampleBinding("T1", "U1")
	before := wire.writes.Load()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bs.UserID = "U" + strconv.Itoa(i%1000)
		i++
		if err := db.PutBinding(ctx, bs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(wire.writes.Load()-before)/float64(b.N), "roundtrips/op")
}

// BenchmarkUpdateTokens measures a refresh's compare-and-swap: a
// transaction that locks the row, re-reads it and writes it.
func BenchmarkUpdateTokens(b *testing.B) {
	db, wire := mustOpenCounted(b, pgtest.Database(b))
	ctx := b.Context()
	bs := storetest.SampleBinding("T1", "U1")
	mustPutBinding(b, db, bs)
	used := bs.RefreshToken
	before := wire.writes.Load()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		next := "refresh-" + strconv.Itoa(i)
		i++
		if _, err := db.UpdateTokens(ctx, "T1", "U1", used, storeTokens(next)); err != nil {
			b.Fatal(err)
		}
		used = next
	}
	b.ReportMetric(float64(wire.writes.Load()-before)/float64(b.N), "roundtrips/op")
}
