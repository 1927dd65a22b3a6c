package bolt

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/storetest"
)

func TestOpenCreatesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))})
	if db.Path() != path {
		t.Errorf("Path() = %q, want %q", db.Path(), path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("file mode = %#o, want 0600", got)
	}
	n, err := db.CountBindings(t.Context())
	if err != nil || n != 0 {
		t.Errorf("CountBindings = %d, %v; want 0", n, err)
	}
	err = db.bolt.View(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets() {
			if tx.Bucket(name) == nil {
				t.Errorf("bucket %q missing", name)
			}
		}
		if got := string(tx.Bucket(bucketMeta).Get(keySchema)); got != "1" {
			t.Errorf("schema = %q, want 1", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenOptions(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		opts Options
		want error // nil: any error
	}{
		{name: "no keyring", path: filepath.Join(dir, "a.db"), opts: Options{}},
		{name: "negative timeout", path: filepath.Join(dir, "b.db"), opts: Options{Keyring: mustKeyring(t, testKey(1)), LockTimeout: -1}},
		{name: "read-only missing file", path: filepath.Join(dir, "c.db"), opts: Options{Keyring: mustKeyring(t, testKey(1)), ReadOnly: true}},
		{name: "missing directory", path: filepath.Join(dir, "nowhere", "d.db"), opts: Options{Keyring: mustKeyring(t, testKey(1))}, want: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(tt.path, tt.opts)
			if err == nil {
				db.Close()
				t.Fatal("Open: no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Open error = %v, want %v", err, tt.want)
			}
			if _, err := os.Stat(tt.path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Open failed but left a file behind (stat: %v)", err)
			}
		})
	}
}

// TestOpenWrongKey: a read-only open refuses the wrong ring as a writable
// one does (storetest's OpenWrongKey).
func TestOpenWrongKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))}))

	db, err := Open(path, Options{Keyring: mustKeyring(t, testKey(2)), ReadOnly: true})
	if err == nil {
		db.Close()
		t.Fatal("Open with the wrong key: no error")
	}
	if !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("Open error = %v, want ErrWrongKey", err)
	}
	if !strings.Contains(err.Error(), mustKeyring(t, testKey(1)).PrimaryID()) {
		t.Errorf("error %q does not name the file's key id", err)
	}
	storetest.AssertNoKeyMaterial(t, err.Error(), testKey(1), testKey(2))
}

func TestOpenReadOnly(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "s.db")
	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))})
	want := sampleBinding("T1", "U1")
	mustPutBinding(t, db, want)
	mustClose(t, db)

	// Two read-only opens share the file.
	ro1 := mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1)), ReadOnly: true})
	ro2 := mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1)), ReadOnly: true})
	for _, db := range []*DB{ro1, ro2} {
		got, err := db.GetBinding(ctx, "T1", "U1")
		if err != nil {
			t.Fatalf("GetBinding: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("binding mismatch (-want +got):\n%s", diff)
		}
	}
	if err := ro1.PutBinding(ctx, sampleBinding("T1", "U2")); err == nil {
		t.Error("PutBinding on a read-only store: no error")
	}
}

func TestOpenDamagedFiles(t *testing.T) {
	// A real store with enough bindings to span many pages.
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	db := mustOpen(t, good, Options{Keyring: mustKeyring(t, testKey(1))})
	bs := make([]store.Binding, 300)
	for i := range bs {
		bs[i] = sampleBinding("T1", "U"+strconv.Itoa(i))
	}
	mustPutBindings(t, db, bs)
	var used int // bytes bbolt's pages occupy; the file may be longer
	if err := db.bolt.View(func(tx *bbolt.Tx) error { used = int(tx.Size()); return nil }); err != nil {
		t.Fatal(err)
	}
	mustClose(t, db)
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(goodBytes) < 64<<10 {
		t.Fatalf("store is only %d bytes; the truncation cases need more", len(goodBytes))
	}

	meta, ok := readBoltMeta(bytes.NewReader(goodBytes), 0)
	if !ok {
		t.Fatal("the good store has no valid first meta page")
	}
	page := int(meta.pageSize)

	random := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	zeroedMeta := bytes.Clone(goodBytes)
	clear(zeroedMeta[:2*page])
	scrambled := bytes.Clone(goodBytes) // valid meta pages, garbage data pages
	copy(scrambled[2*page:], random(len(scrambled)-2*page))
	foreign := filepath.Join(dir, "foreign.db")
	mustEditRaw(t, foreign, func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("something else"))
		return err
	})
	foreignBytes, err := os.ReadFile(foreign)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		content []byte
	}{
		{name: "zero length", content: []byte{}},
		{name: "ten bytes", content: []byte("not a db!\n")},
		{name: "garbage 64 KiB", content: random(64 << 10)},
		{name: "text", content: bytes.Repeat([]byte("forcebind "), 2000)},
		{name: "zeroed meta pages", content: zeroedMeta},
		{name: "truncated to one page", content: goodBytes[:page]},
		{name: "truncated to three pages", content: goodBytes[:3*page]},
		{name: "truncated to half", content: goodBytes[:len(goodBytes)/2]},
		{name: "truncated mid-page", content: goodBytes[:used-100]},
		{name: "scrambled data pages", content: scrambled},
		{name: "bbolt file of another program", content: foreignBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "damaged.db")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, ro := range []bool{false, true} {
				db, err := Open(path, Options{Keyring: mustKeyring(t, testKey(1)), ReadOnly: ro})
				if err == nil {
					db.Close()
					t.Fatalf("Open(readonly=%t): no error", ro)
				}
				if !errors.Is(err, store.ErrCorrupt) {
					t.Errorf("Open(readonly=%t) error = %v, want ErrCorrupt", ro, err)
				}
			}
			// A failed open must not hold the lock or change the file.
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.content) {
				t.Error("a failed Open changed the file")
			}
		})
	}
}

// TestOpenReadOnlyKeepsOldCanary: a read-only open cannot re-seal the
// canary under the primary, as a writable one does (storetest's
// OpenResealsOldCanary), and leaves the file alone.
func TestOpenReadOnlyKeepsOldCanary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	oldKey, newKey := testKey(1), testKey(2)
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, oldKey)}))
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey, oldKey), ReadOnly: true}))
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, oldKey)}))
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("read-only and same-key opens changed the file")
	}
}

func TestOpenNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))}))
	mustEditRaw(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte("2"))
	})

	_, err := Open(path, Options{Keyring: mustKeyring(t, testKey(1))})
	if !errors.Is(err, store.ErrSchema) {
		t.Fatalf("Open error = %v, want ErrSchema", err)
	}
	for _, want := range []string{"version 2", "up to 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestOpenInitialisesEmptyBboltFile(t *testing.T) {
	// bbolt has created the file but the process died before the store's
	// first transaction: the next Open finishes the job.
	path := filepath.Join(t.TempDir(), "s.db")
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{Keyring: mustKeyring(t, testKey(1)), ReadOnly: true}); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("read-only Open of an uninitialised file: error = %v, want ErrCorrupt", err)
	}
	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))})
	mustPutBinding(t, db, sampleBinding("T1", "U1"))
}

func TestTamperedRecords(t *testing.T) {
	ctx := t.Context()
	tests := []struct {
		name    string
		edit    func(tx *bbolt.Tx) error
		wantErr error
	}{
		{
			name: "flipped byte",
			edit: func(tx *bbolt.Tx) error {
				bk := tx.Bucket(bucketBindings)
				v := bytes.Clone(bk.Get([]byte("T1/U1")))
				v[len(v)/2] ^= 0x04
				return bk.Put([]byte("T1/U1"), v)
			},
			wantErr: store.ErrCorrupt,
		},
		{
			name: "copied from another user",
			edit: func(tx *bbolt.Tx) error {
				bk := tx.Bucket(bucketBindings)
				return bk.Put([]byte("T1/U1"), bytes.Clone(bk.Get([]byte("T1/U2"))))
			},
			wantErr: store.ErrCorrupt,
		},
		{
			name: "copied from the canary",
			edit: func(tx *bbolt.Tx) error {
				return tx.Bucket(bucketBindings).Put([]byte("T1/U1"), bytes.Clone(tx.Bucket(bucketMeta).Get(keyCanary)))
			},
			wantErr: store.ErrCorrupt,
		},
		{
			name: "sealed under a key not in the ring",
			edit: func(tx *bbolt.Tx) error {
				other := mustKeyring(t, testKey(7))
				return tx.Bucket(bucketBindings).Put([]byte("T1/U1"), other.Seal(store.TableBindings, []byte("T1/U1"), nil, []byte(`{}`)))
			},
			wantErr: store.ErrWrongKey,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			opts := Options{Keyring: mustKeyring(t, testKey(1))}
			db := mustOpen(t, path, opts)
			mustPutBinding(t, db, sampleBinding("T1", "U1"))
			mustPutBinding(t, db, sampleBinding("T1", "U2"))
			mustClose(t, db)
			mustEditRaw(t, path, tt.edit)

			// Open refuses a ring that lacks a record's key
			// (TestOpenMissingKeys); past that, the record alone fails.
			opts.AllowMissingKeys = true
			db = mustOpen(t, path, opts)
			_, err := db.GetBinding(ctx, "T1", "U1")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("GetBinding error = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(tt.wantErr, store.ErrWrongKey) && !strings.Contains(err.Error(), mustKeyring(t, testKey(7)).PrimaryID()) {
				t.Errorf("error %q does not name the unknown key id", err)
			}
			// The untouched record still opens.
			if _, err := db.GetBinding(ctx, "T1", "U2"); err != nil {
				t.Errorf("GetBinding(U2): %v", err)
			}
		})
	}
}

func TestBackup(t *testing.T) {
	ctx := t.Context()
	db := mustNewDB(t, nil)
	var want []store.Binding
	for _, u := range []string{"U1", "U2", "U3"} {
		b := sampleBinding("T1", u)
		mustPutBinding(t, db, b)
		want = append(want, b)
	}

	var buf bytes.Buffer
	n, err := db.Backup(ctx, &buf)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("Backup returned %d, wrote %d bytes", n, buf.Len())
	}
	// The original stays usable and changes after the backup do not leak in.
	mustPutBinding(t, db, sampleBinding("T1", "U4"))

	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	copyDB := mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1)), ReadOnly: true})
	if got, err := copyDB.CountBindings(ctx); err != nil || got != len(want) {
		t.Errorf("backup CountBindings = %d, %v; want %d", got, err, len(want))
	}
	for _, w := range want {
		got, err := copyDB.GetBinding(ctx, w.TeamID, w.UserID)
		if err != nil {
			t.Fatalf("GetBinding from backup: %v", err)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("binding mismatch (-want +got):\n%s", diff)
		}
	}
}

// TestNoPlaintextInFile checks that no secret reaches the file in any
// common encoding.
func TestNoPlaintextInFile(t *testing.T) {
	clock := newTestClock()
	path := filepath.Join(t.TempDir(), "s.db")
	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1)), Now: clock.Now})
	var secrets []string
	for _, u := range []string{"U1", "U2", "U3"} {
		b := sampleBinding("T1", u)
		mustPutBinding(t, db, b)
		secrets = append(secrets, b.AccessToken, b.RefreshToken)
	}
	pb := sampleBinding("T1", "U7")
	pb.AccessToken, pb.RefreshToken = "pending-access-Hq7wL0", "pending-refresh-Jm4xP3"
	state := mustCreatePending(t, db, store.Pending{
		TeamID: "T1", UserID: "U7", Verifier: "pkce-verifier-Rb9sK1dfgh",
		Expires: clock.Now().Add(600e9), Binding: &pb,
	})
	secrets = append(secrets, pb.AccessToken, pb.RefreshToken, "pkce-verifier-Rb9sK1dfgh", state)
	// Rotation writes new copies; scan after it too.
	if _, err := db.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustClose(t, db)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		for _, enc := range storetest.Encodings(s) {
			if bytes.Contains(raw, []byte(enc)) {
				t.Errorf("file contains secret %q as %q", s, enc)
			}
		}
	}
	for _, k := range [][]byte{testKey(1)} {
		for _, enc := range storetest.Encodings(string(k)) {
			if bytes.Contains(raw, []byte(enc)) {
				t.Error("file contains key material")
			}
		}
	}
	// The scan is only meaningful if it can see plaintext: the binding keys
	// are stored in the clear.
	if !bytes.Contains(raw, []byte("T1/U1")) {
		t.Fatal("scan sanity check: record key T1/U1 not found in the file")
	}
}

// TestContextCanceled: what the suite's ContextCanceled cannot call.
func TestContextCanceled(t *testing.T) {
	db := mustNewDB(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"Backup":    func() error { _, err := db.Backup(ctx, &bytes.Buffer{}); return err },
		"CompactTo": func() error { _, err := db.CompactTo(ctx, filepath.Join(t.TempDir(), "c.db")); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
		}
	}
}
