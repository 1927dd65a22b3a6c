package bolt

import (
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
)

// The count kept in meta follows every way a binding comes and goes, and
// survives a reopen; a file that keeps none (written before the count was
// kept), or one whose count is damaged or wrong, is counted right at its
// next writable open (read-only opens walk the bucket when there is none).
func TestBindingCountKept(t *testing.T) {
	ctx := t.Context()
	clock := newTestClock()
	db := mustNewDB(t, clock)
	count := func(want int, when string) {
		t.Helper()
		got, err := db.CountBindings(ctx)
		if err != nil {
			t.Fatalf("%s: CountBindings: %v", when, err)
		}
		var walked int
		if err := db.bolt.View(func(tx *bbolt.Tx) error { walked = tx.Bucket(bucketBindings).Stats().KeyN; return nil }); err != nil {
			t.Fatal(err)
		}
		if got != want || walked != want {
			t.Errorf("%s: count %d, bucket holds %d; want %d", when, got, walked, want)
		}
	}
	count(0, "new store")
	a, b := sampleBinding("T1", "U1"), sampleBinding("T1", "U2")
	mustPutBinding(t, db, a)
	count(1, "one put")
	mustPutBinding(t, db, a)
	count(1, "the same user put again")
	mustPutBindings(t, db, []store.Binding{a, b, sampleBinding("T1", "U3")})
	count(3, "a batch with one new and one known")
	if _, err := db.UpdateTokens(ctx, "T1", "U1", a.RefreshToken, store.Tokens{AccessToken: "new"}); err != nil {
		t.Fatal(err)
	}
	count(3, "a refresh")
	if err := db.DeleteBinding(ctx, "T1", "U3"); err != nil {
		t.Fatal(err)
	}
	count(2, "a delete")
	if err := db.DeleteBinding(ctx, "T1", "U3"); err == nil {
		t.Fatal("second delete succeeded")
	}
	count(2, "a delete of nothing")
	if err := db.DeleteBindingIf(ctx, "T1", "U2", b.RefreshToken); err != nil {
		t.Fatal(err)
	}
	count(1, "a conditional delete")
	if err := db.DeleteBindingIf(ctx, "T1", "U1", "another-token"); err == nil {
		t.Fatal("conditional delete with the wrong token succeeded")
	}
	count(1, "a conditional delete that did not match")

	// A binding that no longer opens, dropped by DeleteUnopenable.
	path := db.Path()
	mustPutBinding(t, db, sampleBinding("T1", "U9"))
	mustClose(t, db)
	mustEditRaw(t, path, func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketBindings)
		v := append([]byte(nil), bk.Get([]byte("T1/U9"))...)
		v[len(v)-1] ^= 1
		return bk.Put([]byte("T1/U9"), v)
	})
	opts := Options{Keyring: mustKeyring(t, testKey(1)), Now: clock.Now}
	db = mustOpen(t, path, opts)
	count(2, "reopened")
	if _, err := db.DeleteUnopenable(ctx); err != nil {
		t.Fatal(err)
	}
	count(1, "unopenable dropped")
	mustClose(t, db)

	for _, tt := range []struct {
		name  string
		count []byte // nil removes it
	}{
		{"no count kept", nil},
		{"a damaged count", []byte("-x")},
		{"a count that drifted (an older build wrote bindings)", []byte("5")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mustEditRaw(t, path, func(tx *bbolt.Tx) error {
				meta := tx.Bucket(bucketMeta)
				if tt.count == nil {
					return meta.Delete(keyBindingCount)
				}
				return meta.Put(keyBindingCount, tt.count)
			})
			ro := mustOpen(t, path, Options{Keyring: opts.Keyring, ReadOnly: true})
			if n, err := ro.CountBindings(ctx); err != nil || n != 1 {
				t.Errorf("read-only CountBindings = %d, %v; want 1, by walking", n, err)
			}
			mustClose(t, ro)
			db = mustOpen(t, path, opts)
			count(1, "after a writable open")
			var kept bool
			if err := db.bolt.View(func(tx *bbolt.Tx) error { _, kept = bindingCount(tx); return nil }); err != nil {
				t.Fatal(err)
			}
			if !kept {
				t.Error("a writable open kept no count")
			}
			mustClose(t, db)
		})
	}
}
