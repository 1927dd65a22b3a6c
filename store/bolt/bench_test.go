package bolt

import (
	"os"
	"strconv"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
)

func BenchmarkGetBinding(b *testing.B) {
	db := mustNewDB(b, nil)
	mustPutBinding(b, db, sampleBinding("T1", "U1"))
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := db.GetBinding(ctx, "T1", "U1"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutBinding measures a durable write: one fsync'd transaction each.
func BenchmarkPutBinding(b *testing.B) {
	db := mustNewDB(b, nil)
	ctx := b.Context()
	bs := sampleBinding("T1", "U1")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bs.UserID = "U" + strconv.Itoa(i%1000)
		i++
		if err := db.PutBinding(ctx, bs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedeemPending measures a whole link: create, then redeem.
func BenchmarkRedeemPending(b *testing.B) {
	clock := newTestClock()
	db := mustNewDB(b, clock)
	ctx := b.Context()
	p := samplePending(clock, "U1")
	b.ReportAllocs()
	for b.Loop() {
		state, err := db.CreatePending(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.RedeemPending(ctx, state); err != nil {
			b.Fatal(err)
		}
	}
}

// bindings100k returns 100,000 sample bindings, for the benchmarks at
// that scale.
func bindings100k(b *testing.B) []store.Binding {
	b.Helper()
	if testing.Short() {
		b.Skip("slow: writes 100,000 bindings")
	}
	bs := make([]store.Binding, 100_000)
	for i := range bs {
		bs[i] = sampleBinding("T0123456789", "U0"+strconv.Itoa(10_000_000+i))
	}
	return bs
}

// BenchmarkFileSize100k fills a store with 100,000 bindings in one batch
// (once, whatever b.N) and reports the file size; the timed loop is
// GetBinding at that scale.
func BenchmarkFileSize100k(b *testing.B) {
	bs := bindings100k(b)
	n := len(bs)
	db := mustNewDB(b, nil)
	start := time.Now()
	mustPutBindings(b, db, bs)
	batch := time.Since(start)
	var used int64
	if err := db.bolt.View(func(tx *bbolt.Tx) error { used = tx.Size(); return nil }); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(db.Path())
	if err != nil {
		b.Fatal(err)
	}

	ctx := b.Context()
	i := 0
	for b.Loop() {
		u := bs[(i*7919)%n]
		i++
		if _, err := db.GetBinding(ctx, u.TeamID, u.UserID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(fi.Size()), "file-bytes")
	b.ReportMetric(float64(used), "used-bytes")
	b.ReportMetric(float64(fi.Size())/float64(n), "file-bytes/binding")
	b.ReportMetric(batch.Seconds(), "fill-s")
}

// BenchmarkStore100k: what a store of 100,000 bindings (written through
// PutBindings) costs the daemon per lookup, count, open (which reads every
// record's key id, to refuse a keyring that lacks one) and sweep. count is
// what /readyz and every /metrics scrape pay; count-walk is walking the
// bucket, as counting did before the count was kept, measured in the same
// run for the ratio.
func BenchmarkStore100k(b *testing.B) {
	bs := bindings100k(b)
	n := len(bs)
	clock := newTestClock()
	db := mustNewDB(b, clock)
	mustPutBindings(b, db, bs)
	for i := range 100 { // a few links waiting, as a running daemon has
		mustCreatePending(b, db, samplePending(clock, "P"+strconv.Itoa(i)))
	}
	ctx := b.Context()
	b.Run("lookup", func(b *testing.B) {
		i := 0
		for b.Loop() {
			u := bs[(i*7919)%n]
			i++
			if _, err := db.GetBinding(ctx, u.TeamID, u.UserID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("count", func(b *testing.B) {
		for b.Loop() {
			if c, err := db.CountBindings(ctx); err != nil || c != n {
				b.Fatalf("CountBindings = %d, %v", c, err)
			}
		}
	})
	b.Run("count-walk", func(b *testing.B) {
		for b.Loop() {
			if err := db.bolt.View(func(tx *bbolt.Tx) error { _ = tx.Bucket(bucketBindings).Stats().KeyN; return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sweep", func(b *testing.B) { // nothing expired: the daemon's usual minute
		for b.Loop() {
			if l, err := db.ListExpired(ctx); err != nil || len(l) != 0 {
				b.Fatalf("ListExpired = %d, %v", len(l), err)
			}
		}
	})
	path := db.Path()
	mustClose(b, db)
	b.Run("open", func(b *testing.B) {
		opts := Options{Keyring: mustKeyring(b, testKey(1))}
		for b.Loop() {
			db, err := Open(path, opts)
			if err != nil {
				b.Fatal(err)
			}
			if err := db.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
