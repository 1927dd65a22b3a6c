package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/storetest"
)

// The record format of package store, which the tests of damaged records
// write by hand: a header of version and key id, then nonce, ciphertext
// and tag; a pending value starts with its plaintext expiry.
const (
	headerLen    = 1 + 4
	minRecordLen = headerLen + 12 + 16
	stateLen     = 32
	expiryLen    = 8
)

// encodeExpiry is a pending value's plaintext expiry.
func encodeExpiry(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
}

// testKey returns a fixed, distinct key for each n.
func testKey(n int) []byte { return storetest.Key(n) }

func mustKeyring(tb testing.TB, keys ...[]byte) *store.Keyring {
	tb.Helper()
	return storetest.Ring(tb, keys...)
}

// testClock is a settable clock, safe for concurrent use.
type testClock = storetest.Clock

func newTestClock() *testClock { return storetest.NewClock() }

// sampleBinding returns a complete binding whose tokens are unique to the
// user, so that scans for them are meaningful.
func sampleBinding(team, user string) store.Binding { return storetest.SampleBinding(team, user) }

const ttl = storetest.PendingTTL

// samplePending is a fresh link for user, made at the clock's time.
func samplePending(clock *testClock, user string) store.Pending {
	return storetest.SamplePending(clock.Now(), user)
}

// mustOpen opens the store at path and closes it when the test ends,
// failing the test if Close fails. Closing it earlier is fine.
func mustOpen(tb testing.TB, path string, opts Options) *DB {
	tb.Helper()
	db, err := Open(path, opts)
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

// mustNewDB opens a new store in a temporary directory under the key
// testKey(1) and the given clock.
func mustNewDB(tb testing.TB, clock *testClock) *DB {
	tb.Helper()
	opts := Options{Keyring: mustKeyring(tb, testKey(1))}
	if clock != nil {
		opts.Now = clock.Now
	}
	return mustOpen(tb, filepath.Join(tb.TempDir(), "forcebind.db"), opts)
}

// mustClose closes db now, for tests that reopen or inspect the file.
func mustClose(tb testing.TB, db *DB) {
	tb.Helper()
	if err := db.Close(); err != nil {
		tb.Fatalf("Close: %v", err)
	}
}

// mustEditRaw changes a closed store file with bbolt directly, bypassing
// the sealing, to simulate tampering and files from elsewhere.
func mustEditRaw(tb testing.TB, path string, fn func(tx *bbolt.Tx) error) {
	tb.Helper()
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatalf("bbolt.Open: %v", err)
	}
	defer bdb.Close()
	if err := bdb.Update(fn); err != nil {
		tb.Fatalf("raw edit: %v", err)
	}
}

func mustPutBinding(tb testing.TB, db *DB, b store.Binding) {
	tb.Helper()
	if err := db.PutBinding(tb.Context(), b); err != nil {
		tb.Fatalf("PutBinding: %v", err)
	}
}

func mustCreatePending(tb testing.TB, db *DB, p store.Pending) string {
	tb.Helper()
	state, err := db.CreatePending(tb.Context(), p)
	if err != nil {
		tb.Fatalf("CreatePending: %v", err)
	}
	return state
}

// bucketLen counts the keys of a bucket.
func bucketLen(tb testing.TB, db *DB, name []byte) int {
	tb.Helper()
	var n int
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(name).Stats().KeyN
		return nil
	})
	if err != nil {
		tb.Fatalf("count %s: %v", name, err)
	}
	return n
}

// mustPutBindings stores many bindings in one transaction, which is much
// faster than one PutBinding each (one fsync instead of len(bs)).
func mustPutBindings(tb testing.TB, db *DB, bs []store.Binding) {
	tb.Helper()
	if err := db.PutBindings(tb.Context(), bs); err != nil {
		tb.Fatalf("put %d bindings: %v", len(bs), err)
	}
}

// sweep sweeps as forcebind's does, less the revocation: it lists the
// expired links, then deletes each by its id. It returns the links it
// deleted, and the errors it met (links that did not open, deletes that
// failed) joined.
func sweep(ctx context.Context, db *DB) ([]store.ExpiredLink, error) {
	links, err := db.ListExpired(ctx)
	if err != nil {
		return nil, err
	}
	var (
		deleted []store.ExpiredLink
		errs    []error
	)
	for _, l := range links {
		errs = append(errs, l.Err)
		if err := db.DeletePending(ctx, l.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, l)
	}
	return deleted, errors.Join(errs...)
}
