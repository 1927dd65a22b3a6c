package bolt

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
)

// The behaviour of pending links is storetest's; these tests look at how
// bbolt keeps them: the pending bucket under SHA-256 of the state, and the
// pending_by_user index, one entry per live link.

// TestCreatePendingStoresHash: only the hash of the state is stored.
func TestCreatePendingStoresHash(t *testing.T) {
	clock := newTestClock()
	db := mustNewDB(t, clock)
	state := mustCreatePending(t, db, samplePending(clock, "U1"))
	raw, err := base64.RawURLEncoding.DecodeString(state)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	err = db.bolt.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketPending).Get(sum[:]) == nil {
			t.Error("no pending record under SHA-256(state)")
		}
		if tx.Bucket(bucketPending).Get(raw) != nil || tx.Bucket(bucketPending).Get([]byte(state)) != nil {
			t.Error("pending record stored under the raw state")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPendingBuckets follows the two buckets through what storetest's
// pending cases do: the index keeps one entry per live link, and a link
// that is redeemed, replaced, expired or swept leaves neither bucket
// behind it, except a replaced link holding tokens, which waits in the
// pending bucket, out of the index, for the sweep.
func TestPendingBuckets(t *testing.T) {
	type counts struct{ Pending, ByUser int }
	tests := []struct {
		name string
		// run does something to a store with a live link for U1 (state).
		run       func(t *testing.T, db *DB, clock *testClock, state string)
		wantAfter counts // when run returns
	}{
		{"a bad state", func(t *testing.T, db *DB, _ *testClock, _ string) {
			_, err := db.RedeemPending(t.Context(), base64.RawURLEncoding.EncodeToString(make([]byte, 32)))
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("RedeemPending of an unknown state = %v", err)
			}
		}, counts{1, 1}},
		{"redeemed", func(t *testing.T, db *DB, _ *testClock, state string) {
			if _, err := db.RedeemPending(t.Context(), state); err != nil {
				t.Fatal(err)
			}
		}, counts{0, 0}},
		{"expired", func(t *testing.T, db *DB, clock *testClock, state string) {
			clock.Advance(ttl)
			if _, err := db.RedeemPending(t.Context(), state); !errors.Is(err, store.ErrExpired) {
				t.Fatalf("RedeemPending = %v, want ErrExpired", err)
			}
		}, counts{0, 0}},
		{"replaced four times, and another user", func(t *testing.T, db *DB, clock *testClock, _ string) {
			for range 4 {
				mustCreatePending(t, db, samplePending(clock, "U1"))
			}
			mustCreatePending(t, db, samplePending(clock, "U2"))
		}, counts{2, 2}},
		{"replaced while holding tokens", func(t *testing.T, db *DB, clock *testClock, _ string) {
			b := sampleBinding("T1", "U3")
			p := samplePending(clock, "U3")
			p.Binding = &b
			mustCreatePending(t, db, p)
			mustCreatePending(t, db, samplePending(clock, "U3"))
			mid := counts{3, 2} // U1's, U3's retired one and U3's new one
			if got := (counts{bucketLen(t, db, bucketPending), bucketLen(t, db, bucketByUser)}); got != mid {
				t.Errorf("after the replacement: %+v, want %+v", got, mid)
			}
			if swept, err := sweep(t.Context(), db); err != nil || len(swept) != 1 {
				t.Fatalf("sweep = %v, %v; want the retired link", swept, err)
			}
		}, counts{2, 2}},
		{"swept", func(t *testing.T, db *DB, clock *testClock, _ string) {
			clock.Advance(ttl)
			if swept, err := sweep(t.Context(), db); err != nil || len(swept) != 1 {
				t.Fatalf("sweep = %v, %v; want the link", swept, err)
			}
		}, counts{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newTestClock()
			db := mustNewDB(t, clock)
			state := mustCreatePending(t, db, samplePending(clock, "U1"))
			tt.run(t, db, clock, state)
			got := counts{bucketLen(t, db, bucketPending), bucketLen(t, db, bucketByUser)}
			if diff := cmp.Diff(tt.wantAfter, got); diff != "" {
				t.Errorf("bucket sizes mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSweepRemovesUnopenable: a link whose seal was damaged by hand is
// listed at its expiry, read from the plaintext beside it, with its error,
// and DeletePending removes it and its index entry.
func TestSweepRemovesUnopenable(t *testing.T) {
	clock := newTestClock()
	path := t.TempDir() + "/s.db"
	opts := Options{Keyring: mustKeyring(t, testKey(1)), Now: clock.Now}
	db := mustOpen(t, path, opts)
	mustCreatePending(t, db, samplePending(clock, "U1"))
	mustClose(t, db)
	// Damage the seal but keep the plaintext expiry readable.
	mustEditRaw(t, path, func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketPending)
		k, v := bk.Cursor().First()
		v = append([]byte(nil), v...)
		v[len(v)-1] ^= 1
		return bk.Put(append([]byte(nil), k...), v)
	})

	db = mustOpen(t, path, opts)
	clock.Advance(ttl)
	swept, err := sweep(t.Context(), db)
	if !errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("sweep error = %v, want only ErrCorrupt for the damaged link", err)
	}
	var got []store.Pending
	for _, l := range swept {
		got = append(got, l.Pending)
	}
	want := []store.Pending{{Expires: time.Unix(0, clock.Now().UnixNano())}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("swept mismatch (-want +got):\n%s", diff)
	}
	for _, name := range [][]byte{bucketPending, bucketByUser} {
		if n := bucketLen(t, db, name); n != 0 {
			t.Errorf("bucket %s has %d entries after the sweep, want 0", name, n)
		}
	}
}
