package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// ListExpired lists what expired and removes nothing; DeletePending then
// removes one link and its index entry, and only that one.
func TestListExpiredThenDeletePending(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	db := mustNewDB(t, clock)

	b := sampleBinding("T1", "U2")
	plain := samplePending(clock, "U1")
	plain.Expires = clock.Now().Add(time.Minute)
	held := samplePending(clock, "U2")
	held.Expires = clock.Now().Add(2 * time.Minute)
	held.Binding = &b
	later := samplePending(clock, "U3")
	later.Expires = clock.Now().Add(time.Hour)
	for _, p := range []Pending{plain, held, later} {
		mustCreatePending(t, db, p)
	}
	if got, err := db.ListExpired(ctx); err != nil || len(got) != 0 {
		t.Fatalf("ListExpired before any expiry = %v, %v; want nothing", got, err)
	}

	clock.Advance(2 * time.Minute) // held expires exactly now
	list := func() []ExpiredLink {
		t.Helper()
		got, err := db.ListExpired(ctx)
		if err != nil {
			t.Fatalf("ListExpired: %v", err)
		}
		slices.SortFunc(got, func(a, b ExpiredLink) int { return strings.Compare(a.Pending.UserID, b.Pending.UserID) })
		return got
	}
	got := list()
	pendings := func(ls []ExpiredLink) []Pending {
		var ps []Pending
		for _, l := range ls {
			if l.Err != nil || l.ID == "" {
				t.Errorf("link %+v: want an id and no error", l)
			}
			ps = append(ps, l.Pending)
		}
		return ps
	}
	if diff := cmp.Diff([]Pending{plain, held}, pendings(got)); diff != "" {
		t.Errorf("expired mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Pending{plain, held}, pendings(list())); diff != "" {
		t.Errorf("a second ListExpired mismatch (-want +got); listing must remove nothing:\n%s", diff)
	}

	if err := db.DeletePending(ctx, got[1].ID); err != nil {
		t.Fatalf("DeletePending: %v", err)
	}
	if diff := cmp.Diff([]Pending{plain}, pendings(list())); diff != "" {
		t.Errorf("expired after deleting one mismatch (-want +got):\n%s", diff)
	}
	if err := db.DeletePending(ctx, got[1].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeletePending twice = %v, want ErrNotFound", err)
	}
	if n := bucketLen(t, db, bucketByUser); n != 2 {
		t.Errorf("pending_by_user has %d entries, want 2 (U1, U3)", n)
	}
	for _, id := range []string{"", "zz", "00", strings.Repeat("ab", 32)} {
		if err := db.DeletePending(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeletePending(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

// A link that does not open, or whose key or value is too short to be one,
// is listed with its error, and never panics the listing.
func TestListExpiredDamaged(t *testing.T) {
	clock := newTestClock()
	path := t.TempDir() + "/s.db"
	opts := Options{Keyring: mustKeyring(t, testKey(1)), Now: clock.Now}
	db := mustOpen(t, path, opts)
	mustCreatePending(t, db, samplePending(clock, "U1"))
	mustClose(t, db)
	mustEditRaw(t, path, func(tx *bolt.Tx) error {
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
		if !errors.Is(l.Err, ErrCorrupt) {
			t.Errorf("link %s: error %v, want ErrCorrupt", l.ID, l.Err)
		}
		if err := db.DeletePending(context.Background(), l.ID); err != nil {
			t.Errorf("DeletePending(%s): %v", l.ID, err)
		}
	}
	if n := bucketLen(t, db, bucketPending); n != 0 {
		t.Errorf("%d pending records left, want 0", n)
	}
}
