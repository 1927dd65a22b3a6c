package bolt

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/storetest"
)

// A damaged state whose link the tests can redeem: its key in the pending
// bucket is SHA-256 of these 32 bytes.
var damagedStateRaw = bytes.Repeat([]byte{7}, stateLen)

func damagedState() (state string, key []byte) {
	sum := sha256.Sum256(damagedStateRaw)
	return base64.RawURLEncoding.EncodeToString(damagedStateRaw), sum[:]
}

// damagedStore is a real store with one good binding (T1/U1), one good
// pending link (for U2) and whatever edit did to it by hand, reopened.
type damagedStore struct {
	db    *DB
	path  string
	clock *testClock
	ring  *store.Keyring
}

func mustDamagedStore(t *testing.T, edit func(tx *bbolt.Tx, d *damagedStore) error) *damagedStore {
	t.Helper()
	d := &damagedStore{path: filepath.Join(t.TempDir(), "s.db"), clock: newTestClock(), ring: mustKeyring(t, testKey(1))}
	db := mustOpen(t, d.path, Options{Keyring: d.ring, Now: d.clock.Now})
	mustPutBinding(t, db, sampleBinding("T1", "U1"))
	mustCreatePending(t, db, samplePending(d.clock, "U2"))
	mustClose(t, db)
	mustEditRaw(t, d.path, func(tx *bbolt.Tx) error { return edit(tx, d) })
	d.db = mustOpen(t, d.path, Options{Keyring: d.ring, Now: d.clock.Now})
	return d
}

// sealFor seals plaintext as the store would for a record of bucket at key.
func (d *damagedStore) sealFor(bucket, key, extra []byte, plaintext string) []byte {
	return d.ring.Seal(string(bucket), key, extra, []byte(plaintext))
}

// expired is a plaintext expiry in the past.
func (d *damagedStore) expired() []byte { return encodeExpiry(d.clock.Now().Add(-time.Minute)) }

// live is a plaintext expiry in the future.
func (d *damagedStore) live() []byte { return encodeExpiry(d.clock.Now().Add(time.Minute)) }

// noPanicNet fails the test if err came from the recovery in view/update
// rather than from a check: the checks are the first line of defence, the
// recovery only the last.
func noPanicNet(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "panicked") {
		t.Errorf("%s: a panic was recovered: %v", what, err)
	}
}

// wantKind fails the test unless err is nil or one of the store's own
// errors.
func wantKind(t *testing.T, what string, err error) {
	t.Helper()
	noPanicNet(t, what, err)
	for _, ok := range []error{store.ErrNotFound, store.ErrCorrupt, store.ErrWrongKey, store.ErrExpired, store.ErrConflict} {
		if errors.Is(err, ok) {
			return
		}
	}
	if err != nil {
		t.Errorf("%s: %v, not one of the store's errors", what, err)
	}
}

// exerciseAll calls every method on d's store, checking that none panics
// and each fails, if at all, with one of the store's errors; and that the
// good records still work. It ends with Rotate and a sweep after every link
// expired (ListExpired, then DeletePending of each, as auth sweeps), which
// must leave the pending buckets empty.
func exerciseAll(t *testing.T, d *damagedStore, users ...string) {
	t.Helper()
	ctx := t.Context()
	db := d.db
	state, _ := damagedState()
	for _, u := range append([]string{"U1", "U2", "U3"}, users...) {
		_, err := db.GetBinding(ctx, "T1", u)
		wantKind(t, "GetBinding "+u, err)
		_, err = db.UpdateTokens(ctx, "T1", u, "r", store.Tokens{AccessToken: "a"})
		wantKind(t, "UpdateTokens "+u, err)
		wantKind(t, "DeleteBindingIf "+u, db.DeleteBindingIf(ctx, "T1", u, "r"))
	}
	_, err := db.RedeemPending(ctx, state)
	wantKind(t, "RedeemPending", err)
	_, err = db.SealedBy(ctx)
	wantKind(t, "SealedBy", err)
	_, err = db.CountBindings(ctx)
	wantKind(t, "CountBindings", err)
	_, err = db.Backup(ctx, &bytes.Buffer{})
	wantKind(t, "Backup", err)
	_, err = db.CompactTo(ctx, filepath.Join(t.TempDir(), "c.db"))
	wantKind(t, "CompactTo", err)
	_, err = sweep(ctx, db)
	wantKind(t, "sweep", err)
	_, err = db.Rotate(ctx)
	wantKind(t, "Rotate", err)

	// The good binding still opens, and every user can still connect.
	if _, err := db.GetBinding(ctx, "T1", "U1"); err != nil {
		t.Errorf("GetBinding of the good binding: %v", err)
	}
	for _, u := range append([]string{"U2", "U3"}, users...) {
		if _, err := db.CreatePending(ctx, samplePending(d.clock, u)); err != nil {
			t.Errorf("CreatePending(%s): %v", u, err)
		}
		if err := db.PutBinding(ctx, sampleBinding("T1", u)); err != nil {
			t.Errorf("PutBinding(%s): %v", u, err)
		}
	}
	d.clock.Advance(48 * time.Hour)
	_, err = sweep(ctx, db)
	wantKind(t, "sweep after everything expired", err)
	for _, b := range [][]byte{bucketPending, bucketByUser} {
		if n := bucketLen(t, db, b); n != 0 {
			t.Errorf("%d entries left in %s after every link expired and was swept", n, b)
		}
	}
}

// TestDamagedPending: nothing in the pending bucket panics the sweep or
// keeps it from running; every damaged link is removed at its expiry (an
// unreadable expiry counts as expired) and reported, and a redeemed one
// fails cleanly.
func TestDamagedPending(t *testing.T) {
	tests := []struct {
		name string
		edit func(tx *bbolt.Tx, d *damagedStore) error
		// swept is true when the first sweep, before anything expires, must
		// remove the damaged link.
		swept bool
		// redeem is the error RedeemPending of damagedState must give.
		redeem error
	}{
		{"key of 1 byte", func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketPending).Put([]byte{1}, []byte{1, 2, 3})
		}, true, store.ErrNotFound},
		{"key of 3 bytes, expired", func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketPending).Put([]byte{1, 2, 3}, append(d.expired(), 1, 2))
		}, true, store.ErrNotFound},
		{"value shorter than the expiry", func(tx *bbolt.Tx, d *damagedStore) error {
			_, key := damagedState()
			return tx.Bucket(bucketPending).Put(key, []byte{1, 2, 3})
		}, true, store.ErrCorrupt},
		{"value an expiry only", func(tx *bbolt.Tx, d *damagedStore) error {
			_, key := damagedState()
			return tx.Bucket(bucketPending).Put(key, d.live())
		}, false, store.ErrCorrupt},
		{"record of an unknown version", func(tx *bbolt.Tx, d *damagedStore) error {
			_, key := damagedState()
			return tx.Bucket(bucketPending).Put(key, append(d.live(), bytes.Repeat([]byte{9}, minRecordLen)...))
		}, false, store.ErrCorrupt},
		{"record that does not decode", func(tx *bbolt.Tx, d *damagedStore) error {
			_, key := damagedState()
			exp := d.live()
			return tx.Bucket(bucketPending).Put(key, append(exp, d.sealFor(bucketPending, key, exp, "not json")...))
		}, false, store.ErrCorrupt},
		{"expiry edited", func(tx *bbolt.Tx, d *damagedStore) error {
			_, key := damagedState()
			exp := d.live()
			rec := d.sealFor(bucketPending, key, exp, "{}")
			return tx.Bucket(bucketPending).Put(key, append(d.expired(), rec...))
		}, true, store.ErrCorrupt},
		{"a nested bucket", func(tx *bbolt.Tx, d *damagedStore) error {
			_, key := damagedState()
			b, err := tx.Bucket(bucketPending).CreateBucket(key)
			if err != nil {
				return err
			}
			return b.Put([]byte("x"), []byte("y"))
		}, true, store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			d := mustDamagedStore(t, tt.edit)
			removed, err := sweep(ctx, d.db)
			noPanicNet(t, "sweep", err)
			if tt.swept && (!errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrNotFound)) {
				t.Errorf("sweep = %v, want only ErrCorrupt for the damaged link", err)
			}
			if !tt.swept && err != nil {
				t.Errorf("sweep before the damaged link's expiry = %v", err)
			}
			if n := len(removed); tt.swept != (n == 1) {
				t.Errorf("the sweep removed %d links; want the damaged one removed: %t", n, tt.swept)
			}
			if n := bucketLen(t, d.db, bucketPending); n != 1 && tt.swept {
				t.Errorf("%d links left after the sweep, want the good one", n)
			}
			if !tt.swept {
				state, _ := damagedState()
				_, err := d.db.RedeemPending(ctx, state)
				if !errors.Is(err, tt.redeem) {
					t.Errorf("RedeemPending of the damaged link = %v, want %v", err, tt.redeem)
				}
			}
			exerciseAll(t, d)
		})
	}
}

// TestDamagedIndex: whatever the pending_by_user entry of a user holds,
// that user can ask for a new link, and the sweep clears what is left.
func TestDamagedIndex(t *testing.T) {
	tests := []struct {
		name string
		edit func(tx *bbolt.Tx, d *damagedStore) error
	}{
		{"empty value", func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketByUser).Put([]byte("T1/U3"), []byte{})
		}},
		{"value of 1 byte", func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketByUser).Put([]byte("T1/U3"), []byte{1})
		}},
		{"points at no link", func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketByUser).Put([]byte("T1/U3"), bytes.Repeat([]byte{5}, 32))
		}},
		{"points at another user's link", func(tx *bbolt.Tx, d *damagedStore) error {
			idx := tx.Bucket(bucketByUser)
			return idx.Put([]byte("T1/U3"), bytes.Clone(idx.Get([]byte("T1/U2"))))
		}},
		{"points at a damaged link", func(tx *bbolt.Tx, d *damagedStore) error {
			_, key := damagedState()
			if err := tx.Bucket(bucketPending).Put(key, []byte{1}); err != nil {
				return err
			}
			return tx.Bucket(bucketByUser).Put([]byte("T1/U3"), key)
		}},
		{"points at a nested bucket", func(tx *bbolt.Tx, d *damagedStore) error {
			_, key := damagedState()
			if _, err := tx.Bucket(bucketPending).CreateBucket(key); err != nil {
				return err
			}
			return tx.Bucket(bucketByUser).Put([]byte("T1/U3"), key)
		}},
		{"entry a nested bucket", func(tx *bbolt.Tx, d *damagedStore) error {
			_, err := tx.Bucket(bucketByUser).CreateBucket([]byte("T1/U3"))
			return err
		}},
		{"key of 1 byte", func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketByUser).Put([]byte{0}, []byte{1})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			d := mustDamagedStore(t, tt.edit)
			state, err := d.db.CreatePending(ctx, samplePending(d.clock, "U3"))
			if err != nil {
				t.Fatalf("CreatePending for the user with the damaged entry: %v", err)
			}
			p, err := d.db.RedeemPending(ctx, state)
			if err != nil || p.UserID != "U3" {
				t.Errorf("RedeemPending of the new link = %v, %v", p, err)
			}
			exerciseAll(t, d)
		})
	}
}

// TestDamagedBindings: a binding that does not open fails on its own with
// ErrCorrupt (naming the key id where the record names one), never stops
// Open, and can be replaced and deleted, so it does not trap its owner.
func TestDamagedBindings(t *testing.T) {
	id := mustKeyring(t, testKey(1)).PrimaryID()
	tests := []struct {
		name   string
		edit   func(tx *bbolt.Tx, d *damagedStore) error
		get    error  // what GetBinding of T1/U3 returns
		names  string // what its message must name
		exists bool   // DeleteBinding finds something to delete
	}{
		{"empty", func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketBindings).Put([]byte("T1/U3"), []byte{})
		}, store.ErrCorrupt, "0 bytes", true},
		{"2 bytes", func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketBindings).Put([]byte("T1/U3"), []byte{1, 2})
		}, store.ErrCorrupt, "2 bytes", true},
		{"header only", func(tx *bbolt.Tx, d *damagedStore) error {
			rec := d.sealFor(bucketBindings, []byte("T1/U3"), nil, "{}")
			return tx.Bucket(bucketBindings).Put([]byte("T1/U3"), rec[:headerLen])
		}, store.ErrCorrupt, id, true},
		{"unknown version", func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketBindings).Put([]byte("T1/U3"), bytes.Repeat([]byte{9}, minRecordLen+10))
		}, store.ErrCorrupt, "version 9", true},
		{"altered", func(tx *bbolt.Tx, d *damagedStore) error {
			rec := d.sealFor(bucketBindings, []byte("T1/U3"), nil, "{}")
			rec[len(rec)-1] ^= 1
			return tx.Bucket(bucketBindings).Put([]byte("T1/U3"), rec)
		}, store.ErrCorrupt, id, true},
		{"does not decode", func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketBindings).Put([]byte("T1/U3"), d.sealFor(bucketBindings, []byte("T1/U3"), nil, "[1, 2"))
		}, store.ErrCorrupt, id, true},
		{"a nested bucket", func(tx *bbolt.Tx, d *damagedStore) error {
			_, err := tx.Bucket(bucketBindings).CreateBucket([]byte("T1/U3"))
			return err
		}, store.ErrNotFound, "", false},
		{"key of 1 byte", func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketBindings).Put([]byte{0xff}, []byte{1})
		}, store.ErrNotFound, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			d := mustDamagedStore(t, tt.edit)
			_, err := d.db.GetBinding(ctx, "T1", "U3")
			noPanicNet(t, "GetBinding", err)
			if !errors.Is(err, tt.get) || !strings.Contains(err.Error(), tt.names) {
				t.Errorf("GetBinding = %v, want %v naming %q", err, tt.get, tt.names)
			}
			storetest.AssertNoKeyMaterial(t, err.Error(), testKey(1))
			if tt.get == store.ErrCorrupt {
				if err := d.db.DeleteBindingIf(ctx, "T1", "U3", "r"); !errors.Is(err, store.ErrCorrupt) {
					t.Errorf("DeleteBindingIf = %v, want ErrCorrupt", err)
				}
			}

			// Delete removes it without opening it.
			err = d.db.DeleteBinding(ctx, "T1", "U3")
			if tt.exists && err != nil {
				t.Errorf("DeleteBinding of the damaged binding: %v", err)
			}
			if _, err := d.db.GetBinding(ctx, "T1", "U3"); tt.exists && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetBinding after DeleteBinding = %v, want ErrNotFound", err)
			}
			exerciseAll(t, d)
		})
	}
}

// TestPutBindingReplacesDamaged: connect can always write a fresh binding
// over one that does not open, whatever is in its place.
func TestPutBindingReplacesDamaged(t *testing.T) {
	edits := map[string]func(tx *bbolt.Tx, d *damagedStore) error{
		"short": func(tx *bbolt.Tx, d *damagedStore) error {
			return tx.Bucket(bucketBindings).Put([]byte("T1/U3"), []byte{1})
		},
		"altered": func(tx *bbolt.Tx, d *damagedStore) error {
			rec := d.sealFor(bucketBindings, []byte("T1/U3"), nil, "{}")
			rec[headerLen] ^= 1
			return tx.Bucket(bucketBindings).Put([]byte("T1/U3"), rec)
		},
		"a nested bucket": func(tx *bbolt.Tx, d *damagedStore) error {
			b, err := tx.Bucket(bucketBindings).CreateBucket([]byte("T1/U3"))
			if err != nil {
				return err
			}
			return b.Put([]byte("x"), []byte("y"))
		},
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			d := mustDamagedStore(t, edit)
			want := sampleBinding("T1", "U3")
			if err := d.db.PutBinding(ctx, want); err != nil {
				t.Fatalf("PutBinding over the damaged binding: %v", err)
			}
			got, err := d.db.GetBinding(ctx, "T1", "U3")
			if err != nil || got.RefreshToken != want.RefreshToken {
				t.Errorf("GetBinding after PutBinding = %v, %v", got, err)
			}
		})
	}
}

// TestDamagedMeta: a damaged meta bucket is refused at Open as corrupt,
// never with a panic.
func TestDamagedMeta(t *testing.T) {
	tests := map[string]func(tx *bbolt.Tx) error{
		"schema garbage": func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte{0xff, 0}) },
		"schema empty":   func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte{}) },
		"schema huge": func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, []byte("99999999999999999999999"))
		},
		"canary of 1 byte": func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyCanary, []byte{1}) },
		"canary empty":     func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyCanary, []byte{}) },
		"canary a bucket": func(tx *bbolt.Tx) error {
			if err := tx.Bucket(bucketMeta).Delete(keyCanary); err != nil {
				return err
			}
			_, err := tx.Bucket(bucketMeta).CreateBucket(keyCanary)
			return err
		},
		"meta a value": func(tx *bbolt.Tx) error {
			if err := tx.DeleteBucket(bucketMeta); err != nil {
				return err
			}
			_, err := tx.CreateBucket([]byte("m")) // keep the root non-empty
			return err
		},
		"pending missing": func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketPending) },
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))}))
			mustEditRaw(t, path, edit)
			for _, ro := range []bool{false, true} {
				db, err := Open(path, Options{Keyring: mustKeyring(t, testKey(1)), ReadOnly: ro})
				if err == nil {
					db.Close()
					t.Fatalf("Open(readonly=%t) of a store with %s: no error", ro, name)
				}
				noPanicNet(t, "Open", err)
				if !errors.Is(err, store.ErrCorrupt) && !errors.Is(err, store.ErrSchema) {
					t.Errorf("Open(readonly=%t) = %v, want ErrCorrupt", ro, err)
				}
			}
		})
	}
}
