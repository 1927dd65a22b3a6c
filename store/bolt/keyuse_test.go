package bolt

import (
	"bytes"
	"errors"
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

// mustHalfRotatedStore makes the store of README's rotation step 1 without
// step 2: records under oldKey, then a writable Open with [newKey, oldKey]
// (which re-seals the canary under newKey) and one more binding, sealed
// under newKey. It returns the store's path.
func mustHalfRotatedStore(t *testing.T, oldKey, newKey []byte) string {
	t.Helper()
	clock := newTestClock()
	path := filepath.Join(t.TempDir(), "s.db")
	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, oldKey), Now: clock.Now})
	mustPutBinding(t, db, sampleBinding("T1", "U1"))
	mustPutBinding(t, db, sampleBinding("T1", "U2"))
	mustCreatePending(t, db, samplePending(clock, "U3"))
	mustClose(t, db)
	db = mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey, oldKey), Now: clock.Now})
	mustPutBinding(t, db, sampleBinding("T1", "U4"))
	mustClose(t, db)
	return path
}

// TestOpenMissingKeysReadOnly is storetest's OpenMissingKeys for what only
// bbolt has: a read-only open refuses the ring as a writable one does, so
// that doctor and a backup's check judge the file as the daemon would, and
// no refused open changes the file.
func TestOpenMissingKeysReadOnly(t *testing.T) {
	oldKey, newKey := testKey(1), testKey(2)
	path := mustHalfRotatedStore(t, oldKey, newKey)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	oldID := mustKeyring(t, oldKey).PrimaryID()
	for _, ro := range []bool{false, true} {
		t.Run("readonly="+strconv.FormatBool(ro), func(t *testing.T) {
			db, err := Open(path, Options{Keyring: mustKeyring(t, newKey), ReadOnly: ro})
			if err == nil {
				db.Close()
				t.Fatal("Open with a ring that lacks the old key: no error")
			}
			var mk *store.MissingKeysError
			if !errors.As(err, &mk) || !errors.Is(err, store.ErrWrongKey) {
				t.Fatalf("Open error %v is not a *MissingKeysError", err)
			}
			want := []store.KeyRecords{{KeyID: oldID, Bindings: 2, Pending: 1}}
			if diff := cmp.Diff(want, mk.Missing); diff != "" {
				t.Errorf("missing keys mismatch (-want +got):\n%s", diff)
			}
		})
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("a refused Open changed the file")
	}

	// With the old key back in the ring, below the primary, it opens.
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey, oldKey), ReadOnly: true}))

	// The canary is still checked with AllowMissingKeys, read-only too: a
	// ring that does not open it is refused.
	if db, err := Open(path, Options{Keyring: mustKeyring(t, testKey(3)), AllowMissingKeys: true, ReadOnly: true}); !errors.Is(err, store.ErrWrongKey) {
		if err == nil {
			db.Close()
		}
		t.Errorf("Open with a wrong ring and AllowMissingKeys: %v, want ErrWrongKey", err)
	}
}

func TestSealedBy(t *testing.T) {
	oldKey, newKey := testKey(1), testKey(2)
	path := mustHalfRotatedStore(t, oldKey, newKey)
	mustEditRaw(t, path, func(tx *bbolt.Tx) error {
		// Records too damaged to name a key: short, and of another version.
		if err := tx.Bucket(bucketBindings).Put([]byte("T1/short"), []byte{1, 2}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketBindings).Put([]byte("T1/v9"), append([]byte{9}, make([]byte, minRecordLen)...)); err != nil {
			return err
		}
		return tx.Bucket(bucketPending).Put([]byte("k"), []byte{1, 2, 3})
	})
	oldID, newID := mustKeyring(t, oldKey).PrimaryID(), mustKeyring(t, newKey).PrimaryID()

	tests := []struct {
		name string
		ring *store.Keyring
		want []store.KeyRecords
	}{
		{"both keys", mustKeyring(t, newKey, oldKey), []store.KeyRecords{
			{KeyID: newID, InRing: true, Bindings: 1},
			{KeyID: oldID, InRing: true, Bindings: 2, Pending: 1},
			{Bindings: 2, Pending: 1},
		}},
		{"old key missing", mustKeyring(t, newKey), []store.KeyRecords{
			{KeyID: newID, InRing: true, Bindings: 1},
			{KeyID: oldID, Bindings: 2, Pending: 1},
			{Bindings: 2, Pending: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := mustOpen(t, path, Options{Keyring: tt.ring, ReadOnly: true, AllowMissingKeys: true})
			got, err := db.SealedBy(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SealedBy mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRotateReportsWhatItLeft: a ring that lacks the old key, one binding
// altered under the new key and one pending value too short to name a key.
// Rotate moves what opens, leaves the rest, reports it per key id, and says
// so with an error; once the old key is back a second Rotate moves its
// records; DeleteUnopenable then clears the damaged ones and the new key
// alone opens the store.
func TestRotateReportsWhatItLeft(t *testing.T) {
	ctx := t.Context()
	oldKey, newKey := testKey(1), testKey(2)
	path := mustHalfRotatedStore(t, oldKey, newKey)
	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey, oldKey)})
	mustPutBinding(t, db, sampleBinding("T1", "U5")) // under newKey, altered below
	mustClose(t, db)
	mustEditRaw(t, path, func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketBindings)
		v := bytes.Clone(bk.Get([]byte("T1/U5")))
		v[len(v)-1] ^= 1
		if err := bk.Put([]byte("T1/U5"), v); err != nil {
			return err
		}
		return tx.Bucket(bucketPending).Put([]byte{0xab}, []byte{1, 2, 3})
	})
	oldID, newID := mustKeyring(t, oldKey).PrimaryID(), mustKeyring(t, newKey).PrimaryID()

	db = mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey), AllowMissingKeys: true})
	rep, err := db.Rotate(ctx)
	if !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("Rotate with a key missing: %v, want ErrWrongKey", err)
	}
	want := store.RotateReport{Resealed: 1 + 1, Left: []store.KeyRecords{ // U4 and the canary
		{KeyID: newID, InRing: true, Bindings: 1},
		{KeyID: oldID, Bindings: 2, Pending: 1},
		{Pending: 1},
	}}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("report mismatch (-want +got):\n%s", diff)
	}
	for _, s := range []string{oldID, newID, "2 bindings and 1 pending link", "too damaged"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	storetest.AssertNoKeyMaterial(t, err.Error(), oldKey, newKey)
	if _, err := db.GetBinding(ctx, "T1", "U4"); err != nil {
		t.Errorf("GetBinding of a re-sealed record: %v", err)
	}
	mustClose(t, db)

	// The old key back: its records move; the damaged ones stay.
	db = mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey, oldKey)})
	rep, err = db.Rotate(ctx)
	if !errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("second Rotate: %v, want ErrCorrupt only", err)
	}
	want = store.RotateReport{Resealed: 3 + 1 + 1, Left: []store.KeyRecords{
		{KeyID: newID, InRing: true, Bindings: 1},
		{Pending: 1},
	}}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("second report mismatch (-want +got):\n%s", diff)
	}
	gone, err := db.DeleteUnopenable(ctx)
	if err != nil {
		t.Fatalf("DeleteUnopenable: %v", err)
	}
	if diff := cmp.Diff(want.Left, gone); diff != "" {
		t.Errorf("deleted mismatch (-want +got):\n%s", diff)
	}
	if rep, err := db.Rotate(ctx); err != nil || len(rep.Left) != 0 {
		t.Errorf("Rotate after DeleteUnopenable: %+v, %v", rep, err)
	}
	mustClose(t, db)

	db = mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey)})
	for _, u := range []string{"U1", "U2", "U4"} {
		if _, err := db.GetBinding(ctx, "T1", u); err != nil {
			t.Errorf("GetBinding(%s) with the new key alone: %v", u, err)
		}
	}
	if n := bucketLen(t, db, bucketPending); n != 1 {
		t.Errorf("%d pending links left, want the one live link", n)
	}
}

// TestDeleteUnopenableLostKey: with the records under a lost key,
// DeleteUnopenable removes the pending_by_user entry of the link it
// deletes (storetest's DeleteUnopenableLostKey checks the rest).
func TestDeleteUnopenableLostKey(t *testing.T) {
	oldKey, newKey := testKey(1), testKey(2)
	path := mustHalfRotatedStore(t, oldKey, newKey)
	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey), AllowMissingKeys: true})
	if n := bucketLen(t, db, bucketByUser); n != 1 {
		t.Fatalf("%d entries in %s before, want the one of the link under the old key", n, bucketByUser)
	}
	if _, err := db.DeleteUnopenable(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{bucketPending, bucketByUser} {
		if n := bucketLen(t, db, b); n != 0 {
			t.Errorf("%d entries left in %s", n, b)
		}
	}
}
