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
	bolt "go.etcd.io/bbolt"
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
	n, err := db.CountBindings(context.Background())
	if err != nil || n != 0 {
		t.Errorf("CountBindings = %d, %v; want 0", n, err)
	}
	err = db.bolt.View(func(tx *bolt.Tx) error {
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

func TestOpenWrongKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))}))

	for _, ro := range []bool{false, true} {
		t.Run("readonly="+strconv.FormatBool(ro), func(t *testing.T) {
			db, err := Open(path, Options{Keyring: mustKeyring(t, testKey(2)), ReadOnly: ro})
			if err == nil {
				db.Close()
				t.Fatal("Open with the wrong key: no error")
			}
			if !errors.Is(err, ErrWrongKey) {
				t.Fatalf("Open error = %v, want ErrWrongKey", err)
			}
			if !strings.Contains(err.Error(), mustKeyring(t, testKey(1)).PrimaryID()) {
				t.Errorf("error %q does not name the file's key id", err)
			}
			assertNoKeyMaterial(t, err.Error(), "", testKey(1), testKey(2))
		})
	}
}

func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
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
	bs := make([]Binding, 300)
	for i := range bs {
		bs[i] = sampleBinding("T1", "U"+strconv.Itoa(i))
	}
	mustPutBindings(t, db, bs)
	var used int // bytes bbolt's pages occupy; the file may be longer
	if err := db.bolt.View(func(tx *bolt.Tx) error { used = int(tx.Size()); return nil }); err != nil {
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
	mustEditRaw(t, foreign, func(tx *bolt.Tx) error {
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
				if !errors.Is(err, ErrCorrupt) {
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

// TestOpenResealsOldCanary checks that a writable Open moves the canary to
// the primary key, so that dropping the primary from the ring is caught at
// Open rather than at the first record sealed under it.
func TestOpenResealsOldCanary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	oldKey, newKey := testKey(1), testKey(2)
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, oldKey)}))

	// A read-only open cannot re-seal, and leaves the file alone.
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey, oldKey), ReadOnly: true}))
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, oldKey)}))

	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey, oldKey)})
	mustPutBinding(t, db, sampleBinding("T1", "U1")) // sealed under newKey
	mustClose(t, db)

	db, err := Open(path, Options{Keyring: mustKeyring(t, oldKey)})
	if err == nil {
		db.Close()
		t.Fatal("Open with only the old key after a write under the new one: no error")
	}
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open error = %v, want ErrWrongKey", err)
	}
	if !strings.Contains(err.Error(), mustKeyring(t, newKey).PrimaryID()) {
		t.Errorf("error %q does not name the new key id", err)
	}
	// The ring with both keys still opens everything.
	db = mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey, oldKey)})
	if _, err := db.GetBinding(context.Background(), "T1", "U1"); err != nil {
		t.Errorf("GetBinding: %v", err)
	}
}

func TestOpenNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))}))
	mustEditRaw(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte("2"))
	})

	_, err := Open(path, Options{Keyring: mustKeyring(t, testKey(1))})
	if !errors.Is(err, ErrSchema) {
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
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{Keyring: mustKeyring(t, testKey(1)), ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("read-only Open of an uninitialised file: error = %v, want ErrCorrupt", err)
	}
	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))})
	mustPutBinding(t, db, sampleBinding("T1", "U1"))
}

func TestTamperedRecords(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		edit    func(tx *bolt.Tx) error
		wantErr error
	}{
		{
			name: "flipped byte",
			edit: func(tx *bolt.Tx) error {
				bk := tx.Bucket(bucketBindings)
				v := bytes.Clone(bk.Get([]byte("T1/U1")))
				v[len(v)/2] ^= 0x04
				return bk.Put([]byte("T1/U1"), v)
			},
			wantErr: ErrCorrupt,
		},
		{
			name: "copied from another user",
			edit: func(tx *bolt.Tx) error {
				bk := tx.Bucket(bucketBindings)
				return bk.Put([]byte("T1/U1"), bytes.Clone(bk.Get([]byte("T1/U2"))))
			},
			wantErr: ErrCorrupt,
		},
		{
			name: "copied from the canary",
			edit: func(tx *bolt.Tx) error {
				return tx.Bucket(bucketBindings).Put([]byte("T1/U1"), bytes.Clone(tx.Bucket(bucketMeta).Get(keyCanary)))
			},
			wantErr: ErrCorrupt,
		},
		{
			name: "sealed under a key not in the ring",
			edit: func(tx *bolt.Tx) error {
				other := mustKeyring(t, testKey(7))
				return tx.Bucket(bucketBindings).Put([]byte("T1/U1"), other.seal(bucketBindings, []byte("T1/U1"), nil, []byte(`{}`)))
			},
			wantErr: ErrWrongKey,
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
			if errors.Is(tt.wantErr, ErrWrongKey) && !strings.Contains(err.Error(), mustKeyring(t, testKey(7)).PrimaryID()) {
				t.Errorf("error %q does not name the unknown key id", err)
			}
			// The untouched record still opens.
			if _, err := db.GetBinding(ctx, "T1", "U2"); err != nil {
				t.Errorf("GetBinding(U2): %v", err)
			}
		})
	}
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	path := filepath.Join(t.TempDir(), "s.db")
	oldKey, newKey := testKey(1), testKey(2)

	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, oldKey), Now: clock.Now})
	var want []Binding
	for _, u := range []string{"U1", "U2", "U3"} {
		b := sampleBinding("T1", u)
		mustPutBinding(t, db, b)
		want = append(want, b)
	}
	wantPending := Pending{TeamID: "T1", UserID: "U9", Verifier: "v", Created: clock.Now(), Expires: clock.Now().Add(10 * 60e9), Binding: &want[0]}
	state := mustCreatePending(t, db, wantPending)
	mustClose(t, db)

	// The new key alone cannot open the file.
	if _, err := Open(path, Options{Keyring: mustKeyring(t, newKey)}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with only the new key before Rotate: %v, want ErrWrongKey", err)
	}

	// [new, old]: old records open; new ones are sealed under new.
	db = mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey, oldKey), Now: clock.Now})
	for _, w := range want {
		got, err := db.GetBinding(ctx, w.TeamID, w.UserID)
		if err != nil {
			t.Fatalf("GetBinding before Rotate: %v", err)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("binding mismatch (-want +got):\n%s", diff)
		}
	}
	rep, err := db.Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if len(rep.Left) != 0 {
		t.Errorf("Rotate left %v", rep.Left)
	}
	if got, want := rep.Resealed, 3+1+1; got != want {
		t.Errorf("Rotate re-sealed %d records, want %d (3 bindings, 1 pending, canary)", got, want)
	}
	mustClose(t, db)

	// [new] alone now opens everything.
	db = mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey), Now: clock.Now})
	for _, w := range want {
		got, err := db.GetBinding(ctx, w.TeamID, w.UserID)
		if err != nil {
			t.Fatalf("GetBinding after Rotate: %v", err)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("binding mismatch (-want +got):\n%s", diff)
		}
	}
	gotPending, err := db.RedeemPending(ctx, state)
	if err != nil {
		t.Fatalf("RedeemPending after Rotate: %v", err)
	}
	if diff := cmp.Diff(wantPending, gotPending); diff != "" {
		t.Errorf("pending mismatch (-want +got):\n%s", diff)
	}
}

func TestBackup(t *testing.T) {
	ctx := context.Background()
	db := mustNewDB(t, nil)
	var want []Binding
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
	state := mustCreatePending(t, db, Pending{
		TeamID: "T1", UserID: "U7", Verifier: "pkce-verifier-Rb9sK1dfgh",
		Expires: clock.Now().Add(600e9), Binding: &pb,
	})
	secrets = append(secrets, pb.AccessToken, pb.RefreshToken, "pkce-verifier-Rb9sK1dfgh", state)
	// Rotation writes new copies; scan after it too.
	if _, err := db.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustClose(t, db)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		for _, enc := range encodings(s) {
			if bytes.Contains(raw, []byte(enc)) {
				t.Errorf("file contains secret %q as %q", s, enc)
			}
		}
	}
	for _, k := range [][]byte{testKey(1)} {
		for _, enc := range encodings(string(k)) {
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

func TestContextCanceled(t *testing.T) {
	db := mustNewDB(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"GetBinding":       func() error { _, err := db.GetBinding(ctx, "T", "U"); return err },
		"PutBinding":       func() error { return db.PutBinding(ctx, sampleBinding("T", "U")) },
		"DeleteBinding":    func() error { return db.DeleteBinding(ctx, "T", "U") },
		"DeleteBindingIf":  func() error { return db.DeleteBindingIf(ctx, "T", "U", "r") },
		"UpdateTokens":     func() error { _, err := db.UpdateTokens(ctx, "T", "U", "r", Tokens{}); return err },
		"CreatePending":    func() error { _, err := db.CreatePending(ctx, Pending{TeamID: "T", UserID: "U"}); return err },
		"RedeemPending":    func() error { _, err := db.RedeemPending(ctx, "x"); return err },
		"SweepExpired":     func() error { _, err := db.SweepExpired(ctx); return err },
		"Rotate":           func() error { _, err := db.Rotate(ctx); return err },
		"DeleteUnopenable": func() error { _, err := db.DeleteUnopenable(ctx); return err },
		"SealedBy":         func() error { _, err := db.SealedBy(ctx); return err },
		"CountBindings":    func() error { _, err := db.CountBindings(ctx); return err },
		"Backup":           func() error { _, err := db.Backup(ctx, &bytes.Buffer{}); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
		}
	}
	if n := bucketLen(t, db, bucketBindings); n != 0 {
		t.Errorf("%d bindings written under a canceled context", n)
	}
}
