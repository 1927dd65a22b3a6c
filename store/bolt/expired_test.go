package bolt

import (
	"bytes"
	"context"
	"errors"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
)

// A link that does not open, whose key or value is too short to be one, or
// that is a nested bucket, is listed with its error, never panics the
// listing, and DeletePending removes it: a link listed and never deleted
// would be listed, and logged, every round for ever.
func TestListExpiredDamaged(t *testing.T) {
	clock := newTestClock()
	path := t.TempDir() + "/s.db"
	opts := Options{Keyring: mustKeyring(t, testKey(1)), Now: clock.Now}
	db := mustOpen(t, path, opts)
	mustCreatePending(t, db, samplePending(clock, "U1"))
	mustClose(t, db)
	mustEditRaw(t, path, func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketPending)
		k, v := bk.Cursor().First()
		v = append([]byte(nil), v...)
		v[len(v)-1] ^= 1 // the seal, not the expiry
		if err := bk.Put(append([]byte(nil), k...), v); err != nil {
			return err
		}
		if err := bk.Put([]byte{1}, []byte{2}); err != nil { // a key and a value far too short
			return err
		}
		nested, err := bk.CreateBucket(bytes.Repeat([]byte{3}, 32)) // a nested bucket where a link belongs
		if err != nil {
			return err
		}
		return nested.Put([]byte("x"), []byte("y"))
	})

	db = mustOpen(t, path, opts)
	clock.Advance(ttl)
	got, err := db.ListExpired(context.Background())
	if err != nil {
		t.Fatalf("ListExpired: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("ListExpired = %+v, want the three damaged links", got)
	}
	for _, l := range got {
		if !errors.Is(l.Err, store.ErrCorrupt) {
			t.Errorf("link %s: error %v, want store.ErrCorrupt", l.ID, l.Err)
		}
		if err := db.DeletePending(context.Background(), l.ID); err != nil {
			t.Errorf("DeletePending(%s): %v", l.ID, err)
		}
	}
	if n := bucketLen(t, db, bucketPending); n != 0 {
		t.Errorf("%d pending records left, want 0", n)
	}
	if left, err := db.ListExpired(context.Background()); err != nil || len(left) != 0 {
		t.Errorf("ListExpired after deleting = %+v, %v; want nothing", left, err)
	}
}
