package bolt

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
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

// TestOpenMissingKeys is the rotation whose step 2 was skipped: the old key
// is gone from the ring, the canary (under the new key) opens, and three
// records are still sealed under the old key. Every Open refuses it,
// read-only too, naming the missing key id, how many records it seals and
// the setting to change.
func TestOpenMissingKeys(t *testing.T) {
	oldKey, newKey := testKey(1), testKey(2)
	path := mustHalfRotatedStore(t, oldKey, newKey)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	oldID := mustKeyring(t, oldKey).PrimaryID()

	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(newKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := KeyringFromFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fromEnv, err := KeyringFromEnv(base64.StdEncoding.EncodeToString(newKey))
	if err != nil {
		t.Fatal(err)
	}
	rings := []struct {
		name     string
		ring     *Keyring
		wantName string
	}{
		{"file", fromFile, "FORCEBIND_KEY_FILE " + keyFile},
		{"env", fromEnv, "FORCEBIND_KEY"},
		{"NewKeyring", mustKeyring(t, newKey), "the keyring"},
	}
	for _, r := range rings {
		for _, ro := range []bool{false, true} {
			t.Run(r.name+"/readonly="+strconv.FormatBool(ro), func(t *testing.T) {
				db, err := Open(path, Options{Keyring: r.ring, ReadOnly: ro})
				if err == nil {
					db.Close()
					t.Fatal("Open with a ring that lacks the old key: no error")
				}
				if !errors.Is(err, ErrWrongKey) {
					t.Fatalf("Open error = %v, want ErrWrongKey", err)
				}
				var mk *MissingKeysError
				if !errors.As(err, &mk) {
					t.Fatalf("Open error %v is not a *MissingKeysError", err)
				}
				want := []KeyRecords{{KeyID: oldID, Bindings: 2, Pending: 1}}
				if diff := cmp.Diff(want, mk.Missing); diff != "" {
					t.Errorf("missing keys mismatch (-want +got):\n%s", diff)
				}
				msg := err.Error()
				for _, s := range []string{oldID, "2 bindings and 1 pending link", r.wantName, "key rotate"} {
					if !strings.Contains(msg, s) {
						t.Errorf("error %q does not say %q", msg, s)
					}
				}
				assertNoKeyMaterial(t, msg, "", oldKey, newKey)
			})
		}
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
}

// TestOpenAllowMissingKeys: the tool that must work on such a store opens
// it, and the records under the missing key fail one by one with
// ErrWrongKey naming the key id, while the others work.
func TestOpenAllowMissingKeys(t *testing.T) {
	ctx := t.Context()
	oldKey, newKey := testKey(1), testKey(2)
	path := mustHalfRotatedStore(t, oldKey, newKey)
	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey), AllowMissingKeys: true})
	if _, err := db.GetBinding(ctx, "T1", "U4"); err != nil {
		t.Errorf("GetBinding of the record under the new key: %v", err)
	}
	_, err := db.GetBinding(ctx, "T1", "U1")
	if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), mustKeyring(t, oldKey).PrimaryID()) {
		t.Errorf("GetBinding of a record under the missing key: %v, want ErrWrongKey naming its key id", err)
	}
	assertNoKeyMaterial(t, err.Error(), "", oldKey, newKey)
	// Such a record does not trap its owner: it can be replaced and
	// deleted without being opened.
	if err := db.DeleteBinding(ctx, "T1", "U1"); err != nil {
		t.Errorf("DeleteBinding of a record under the missing key: %v", err)
	}
	want := sampleBinding("T1", "U2")
	want.RefreshToken = "replaced"
	if err := db.PutBinding(ctx, want); err != nil {
		t.Errorf("PutBinding over a record under the missing key: %v", err)
	}
	if got, err := db.GetBinding(ctx, "T1", "U2"); err != nil || got.RefreshToken != "replaced" {
		t.Errorf("GetBinding after the replacement: %v, %v", got, err)
	}
	mustClose(t, db)

	// The canary is still checked: a ring that does not open it is refused.
	if db, err := Open(path, Options{Keyring: mustKeyring(t, testKey(3)), AllowMissingKeys: true, ReadOnly: true}); !errors.Is(err, ErrWrongKey) {
		if err == nil {
			db.Close()
		}
		t.Errorf("Open with a wrong ring and AllowMissingKeys: %v, want ErrWrongKey", err)
	}
}

func TestSealedBy(t *testing.T) {
	oldKey, newKey := testKey(1), testKey(2)
	path := mustHalfRotatedStore(t, oldKey, newKey)
	mustEditRaw(t, path, func(tx *bolt.Tx) error {
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
		ring *Keyring
		want []KeyRecords
	}{
		{"both keys", mustKeyring(t, newKey, oldKey), []KeyRecords{
			{KeyID: newID, InRing: true, Bindings: 1},
			{KeyID: oldID, InRing: true, Bindings: 2, Pending: 1},
			{Bindings: 2, Pending: 1},
		}},
		{"old key missing", mustKeyring(t, newKey), []KeyRecords{
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

func TestKeyRecordsString(t *testing.T) {
	tests := []struct {
		in   KeyRecords
		want string
	}{
		{KeyRecords{}, "0 bindings"},
		{KeyRecords{Bindings: 1}, "1 binding"},
		{KeyRecords{Pending: 2}, "2 pending links"},
		{KeyRecords{Bindings: 3, Pending: 1}, "3 bindings and 1 pending link"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.in, got, tt.want)
		}
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
	mustEditRaw(t, path, func(tx *bolt.Tx) error {
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
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Rotate with a key missing: %v, want ErrWrongKey", err)
	}
	want := RotateReport{Resealed: 1 + 1, Left: []KeyRecords{ // U4 and the canary
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
	assertNoKeyMaterial(t, err.Error(), "", oldKey, newKey)
	if _, err := db.GetBinding(ctx, "T1", "U4"); err != nil {
		t.Errorf("GetBinding of a re-sealed record: %v", err)
	}
	mustClose(t, db)

	// The old key back: its records move; the damaged ones stay.
	db = mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey, oldKey)})
	rep, err = db.Rotate(ctx)
	if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrWrongKey) {
		t.Fatalf("second Rotate: %v, want ErrCorrupt only", err)
	}
	want = RotateReport{Resealed: 3 + 1 + 1, Left: []KeyRecords{
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

// TestDeleteUnopenableLostKey is the way out when the old key is lost for
// good: the records under it go, with the index entry of the pending link,
// and the rest stay.
func TestDeleteUnopenableLostKey(t *testing.T) {
	ctx := t.Context()
	oldKey, newKey := testKey(1), testKey(2)
	path := mustHalfRotatedStore(t, oldKey, newKey)
	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey), AllowMissingKeys: true})
	gone, err := db.DeleteUnopenable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []KeyRecords{{KeyID: mustKeyring(t, oldKey).PrimaryID(), Bindings: 2, Pending: 1}}
	if diff := cmp.Diff(want, gone); diff != "" {
		t.Errorf("deleted mismatch (-want +got):\n%s", diff)
	}
	for _, b := range [][]byte{bucketPending, bucketByUser} {
		if n := bucketLen(t, db, b); n != 0 {
			t.Errorf("%d entries left in %s", n, b)
		}
	}
	mustClose(t, db)
	db = mustOpen(t, path, Options{Keyring: mustKeyring(t, newKey)})
	if n, err := db.CountBindings(ctx); err != nil || n != 1 {
		t.Errorf("CountBindings = %d, %v; want the one binding under the new key", n, err)
	}
}
