package bolt

import (
	"context"
	"errors"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
)

// A link that does not open, or whose key or value is too short to be one,
// is listed with its error, and never panics the listing.
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
		return bk.Put([]byte{1}, []byte{2}) // a key and a value far too short
	})

	db = mustOpen(t, path, opts)
	clock.Advance(ttl)
	got, err := db.ListExpired(context.Background())
	if err != nil {
		t.Fatalf("ListExpired: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("ListExpired = %+v, want both damaged links", got)
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
}
