package bolt

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// testKey returns a fixed, distinct key for each n.
func testKey(n int) []byte {
	k := sha256.Sum256(fmt.Appendf(nil, "forcebind test key %d", n))
	return k[:]
}

func mustKeyring(tb testing.TB, keys ...[]byte) *Keyring {
	tb.Helper()
	kr, err := NewKeyring(keys...)
	if err != nil {
		tb.Fatalf("NewKeyring: %v", err)
	}
	return kr
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
func mustEditRaw(tb testing.TB, path string, fn func(tx *bolt.Tx) error) {
	tb.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatalf("bolt.Open: %v", err)
	}
	defer bdb.Close()
	if err := bdb.Update(fn); err != nil {
		tb.Fatalf("raw edit: %v", err)
	}
}

// testClock is a settable clock, safe for concurrent use.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sampleBinding returns a complete binding whose tokens are unique to the
// user, so that scans for them are meaningful.
func sampleBinding(team, user string) Binding {
	at := time.Date(2025, 1, 2, 3, 4, 5, 600, time.UTC)
	return Binding{
		TeamID:           team,
		UserID:           user,
		SalesforceUserID: "005" + user,
		OrgID:            "00D000000000001",
		Username:         user + "@acme.example",
		LoginURL:         "https://login.salesforce.com",
		InstanceURL:      "https://acme.my.salesforce.com",
		AccessToken:      "00D!AQ-access-" + team + "-" + user + "-Zq8rT2",
		RefreshToken:     "5Aep-refresh-" + team + "-" + user + "-Wk3nV7",
		IssuedAt:         at,
		LinkedAt:         at.Add(time.Minute),
		Scopes:           []string{"api", "refresh_token"},
	}
}

func mustPutBinding(tb testing.TB, db *DB, b Binding) {
	tb.Helper()
	if err := db.PutBinding(context.Background(), b); err != nil {
		tb.Fatalf("PutBinding: %v", err)
	}
}

func mustCreatePending(tb testing.TB, db *DB, p Pending) string {
	tb.Helper()
	state, err := db.CreatePending(context.Background(), p)
	if err != nil {
		tb.Fatalf("CreatePending: %v", err)
	}
	return state
}

// bucketLen counts the keys of a bucket.
func bucketLen(tb testing.TB, db *DB, name []byte) int {
	tb.Helper()
	var n int
	err := db.bolt.View(func(tx *bolt.Tx) error {
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
func mustPutBindings(tb testing.TB, db *DB, bs []Binding) {
	tb.Helper()
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketBindings)
		for _, b := range bs {
			key, err := bindingKey(b.TeamID, b.UserID)
			if err != nil {
				return err
			}
			rec, err := db.sealBinding(key, b)
			if err != nil {
				return err
			}
			if err := bk.Put(key, rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("put %d bindings: %v", len(bs), err)
	}
}
