package bolt

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
)

// FuzzDamagedRecords writes one arbitrary key and value by hand into a
// bucket of a real store (0 bindings, 1 pending, 2 pending_by_user, 3
// meta; bit 4 of which also puts the value at the key of damagedState, so
// that RedeemPending reaches it), then calls every method and reopens the
// file. Nothing may panic (the recovery in view and update must never have
// to act), every error must be one of the store's, and the sweep as auth
// runs it (ListExpired, then DeletePending of each) must delete whatever
// ListExpired lists, so that nothing is listed again the next round.
func FuzzDamagedRecords(f *testing.F) {
	good := mustKeyring(f, testKey(1))
	rec := good.Seal(store.TableBindings, []byte("T1/U9"), nil, []byte(`{"team_id":"T1","user_id":"U9"}`))
	exp := encodeExpiry(newTestClock().Now())
	f.Add(uint8(0), []byte("T1/U9"), rec)
	f.Add(uint8(0), []byte("T1/U9"), rec[:headerLen])
	f.Add(uint8(0), []byte{0xff}, []byte{})
	f.Add(uint8(1), []byte{1}, []byte{1, 2, 3})
	f.Add(uint8(1), []byte{1, 2, 3, 4, 5}, exp)
	f.Add(uint8(0x11), []byte("x"), append(bytes.Clone(exp), rec...))
	f.Add(uint8(0x11), []byte("x"), []byte{})
	f.Add(uint8(2), []byte("T1/U2"), []byte{})
	f.Add(uint8(2), []byte("T1/U9"), bytes.Repeat([]byte{5}, 32))
	f.Add(uint8(3), keySchema, []byte("2"))
	f.Add(uint8(3), keyCanary, rec)
	f.Add(uint8(3), []byte("other"), []byte("x"))

	buckets := [][]byte{bucketBindings, bucketPending, bucketByUser, bucketMeta}
	f.Fuzz(func(t *testing.T, which uint8, key, value []byte) {
		if len(key) == 0 || len(key) > bbolt.MaxKeySize {
			return // bbolt itself refuses to write these
		}
		ctx := t.Context()
		clock := newTestClock()
		path := filepath.Join(t.TempDir(), "s.db")
		opts := Options{Keyring: good, Now: clock.Now}
		db := mustOpen(t, path, opts)
		db.bolt.NoSync = true // a fuzz iteration need not survive a crash
		mustPutBinding(t, db, sampleBinding("T1", "U1"))
		mustCreatePending(t, db, samplePending(clock, "U2"))
		bucket := buckets[int(which&0x0f)%len(buckets)]
		err := db.bolt.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucket)
			if err := b.Put(key, value); err != nil {
				return err
			}
			if which&0x10 != 0 {
				_, k := damagedState()
				return tx.Bucket(bucketPending).Put(k, value)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("raw edit: %v", err)
		}

		check := func(what string, err error) {
			t.Helper()
			if err == nil {
				return
			}
			if strings.Contains(err.Error(), "panicked") {
				t.Fatalf("%s: a panic was recovered: %v", what, err)
			}
			for _, ok := range []error{store.ErrNotFound, store.ErrCorrupt, store.ErrWrongKey, store.ErrExpired, store.ErrConflict, store.ErrSchema} {
				if errors.Is(err, ok) {
					return
				}
			}
			t.Fatalf("%s: %v, not one of the store's errors", what, err)
		}
		team, user, _ := strings.Cut(string(key), "/")
		state, _ := damagedState()
		for _, u := range [][2]string{{"T1", "U1"}, {"T1", "U2"}, {team, user}} {
			if _, err := store.BindingKey(u[0], u[1]); err != nil {
				continue // ids the store refuses before reading anything
			}
			_, err := db.GetBinding(ctx, u[0], u[1])
			check("GetBinding", err)
			p := samplePending(clock, u[1])
			p.TeamID = u[0]
			_, err = db.CreatePending(ctx, p)
			check("CreatePending", err)
		}
		_, err = db.RedeemPending(ctx, state)
		check("RedeemPending", err)
		_, err = db.SealedBy(ctx)
		check("SealedBy", err)
		_, err = sweep(ctx, db)
		check("sweep", err)
		clock.Advance(48 * time.Hour)
		_, err = sweep(ctx, db)
		check("sweep after everything expired", err)
		if left, err := db.ListExpired(ctx); err != nil || len(left) != 0 {
			t.Fatalf("ListExpired after a sweep = %d links, %v; want none: what is listed must be deletable", len(left), err)
		}
		_, err = db.Rotate(ctx)
		check("Rotate", err)
		_, err = db.DeleteUnopenable(ctx)
		check("DeleteUnopenable", err)
		if _, err := db.GetBinding(ctx, "T1", "U1"); err != nil && !(bytes.Equal(bucket, bucketBindings) && string(key) == "T1/U1") {
			t.Errorf("the good binding no longer opens: %v", err)
		}
		mustClose(t, db)

		db, err = Open(path, opts)
		check("Open", err)
		if err == nil {
			mustClose(t, db)
		}
	})
}
