package storetest

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/store"
)

// testReopen: what was written is there after the store is closed and
// opened again.
func testReopen(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	clock := NewClock()
	open := newStore(t)
	cfg := config(t, clock, Key(1))
	db := mustOpen(t, open, cfg)
	var want []store.Binding
	for _, u := range []string{"U1", "U2", "U3"} {
		b := SampleBinding("T1", u)
		mustPutBinding(t, db, b)
		want = append(want, b)
	}
	wantPending := samplePending(clock, "U9")
	wantPending.Binding = &want[0]
	state := mustCreatePending(t, db, wantPending)
	mustClose(t, db)

	db = mustOpen(t, open, cfg)
	for _, w := range want {
		got, err := db.GetBinding(ctx, w.TeamID, w.UserID)
		if err != nil {
			t.Fatalf("GetBinding after reopening: %v", err)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("binding mismatch (-want +got):\n%s", diff)
		}
	}
	if n, err := db.CountBindings(ctx); err != nil || n != len(want) {
		t.Errorf("CountBindings after reopening = %d, %v; want %d", n, err, len(want))
	}
	got, err := db.RedeemPending(ctx, state)
	if err != nil {
		t.Fatalf("RedeemPending after reopening: %v", err)
	}
	if diff := cmp.Diff(wantPending, got); diff != "" {
		t.Errorf("pending mismatch (-want +got):\n%s", diff)
	}
}

// testCloseTwice: a second Close returns nil, so that a deferred Close
// after an explicit one is harmless.
func testCloseTwice(t *testing.T, newStore NewStore) {
	db, err := newStore(t)(config(t, nil, Key(1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
}

// testContextCanceled: every method checks its context before it starts,
// and a canceled one writes nothing.
func testContextCanceled(t *testing.T, newStore NewStore) {
	db := mustNewDB(t, newStore, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"GetBinding":       func() error { _, err := db.GetBinding(ctx, "T", "U"); return err },
		"PutBinding":       func() error { return db.PutBinding(ctx, SampleBinding("T", "U")) },
		"DeleteBinding":    func() error { return db.DeleteBinding(ctx, "T", "U") },
		"DeleteBindingIf":  func() error { return db.DeleteBindingIf(ctx, "T", "U", "r") },
		"UpdateTokens":     func() error { _, err := db.UpdateTokens(ctx, "T", "U", "r", store.Tokens{}); return err },
		"CreatePending":    func() error { _, err := db.CreatePending(ctx, store.Pending{TeamID: "T", UserID: "U"}); return err },
		"RedeemPending":    func() error { _, err := db.RedeemPending(ctx, "x"); return err },
		"ListExpired":      func() error { _, err := db.ListExpired(ctx); return err },
		"DeletePending":    func() error { return db.DeletePending(ctx, "00") },
		"Rotate":           func() error { _, err := db.Rotate(ctx); return err },
		"DeleteUnopenable": func() error { _, err := db.DeleteUnopenable(ctx); return err },
		"SealedBy":         func() error { _, err := db.SealedBy(ctx); return err },
		"CountBindings":    func() error { _, err := db.CountBindings(ctx); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
		}
	}
	if n, err := db.CountBindings(t.Context()); err != nil || n != 0 {
		t.Errorf("CountBindings = %d, %v; want nothing written under a canceled context", n, err)
	}
}

// testOpenWrongKey: a ring that does not hold the store's key is refused
// at open, naming the store's key id and no key.
func testOpenWrongKey(t *testing.T, newStore NewStore) {
	open := newStore(t)
	mustClose(t, mustOpen(t, open, config(t, nil, Key(1))))

	db, err := open(config(t, nil, Key(2)))
	if err == nil {
		db.Close()
		t.Fatal("open with the wrong key: no error")
	}
	if !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("open error = %v, want ErrWrongKey", err)
	}
	if !strings.Contains(err.Error(), Ring(t, Key(1)).PrimaryID()) {
		t.Errorf("error %q does not name the store's key id", err)
	}
	AssertNoKeyMaterial(t, err.Error(), Key(1), Key(2))
	// The refusal changed nothing: the right key still opens the store.
	mustOpen(t, open, config(t, nil, Key(1)))
}

// testOpenResealsOldCanary checks that an open moves the canary to the
// primary key, so that dropping the primary from the ring is caught at
// open rather than at the first record sealed under it.
func testOpenResealsOldCanary(t *testing.T, newStore NewStore) {
	open := newStore(t)
	oldKey, newKey := Key(1), Key(2)
	mustClose(t, mustOpen(t, open, config(t, nil, oldKey)))

	db := mustOpen(t, open, config(t, nil, newKey, oldKey))
	mustPutBinding(t, db, SampleBinding("T1", "U1")) // sealed under newKey
	mustClose(t, db)

	db, err := open(config(t, nil, oldKey))
	if err == nil {
		db.Close()
		t.Fatal("open with only the old key after a write under the new one: no error")
	}
	if !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("open error = %v, want ErrWrongKey", err)
	}
	if !strings.Contains(err.Error(), Ring(t, newKey).PrimaryID()) {
		t.Errorf("error %q does not name the new key id", err)
	}
	// The ring with both keys still opens everything.
	db = mustOpen(t, open, config(t, nil, newKey, oldKey))
	if _, err := db.GetBinding(t.Context(), "T1", "U1"); err != nil {
		t.Errorf("GetBinding: %v", err)
	}
}

// testRotate is README's rotation: the new key first in the ring, Rotate,
// then the new key alone opens everything.
func testRotate(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	clock := NewClock()
	open := newStore(t)
	oldKey, newKey := Key(1), Key(2)

	db := mustOpen(t, open, config(t, clock, oldKey))
	var want []store.Binding
	for _, u := range []string{"U1", "U2", "U3"} {
		b := SampleBinding("T1", u)
		mustPutBinding(t, db, b)
		want = append(want, b)
	}
	wantPending := store.Pending{TeamID: "T1", UserID: "U9", Verifier: "v", Created: clock.Now(), Expires: clock.Now().Add(10 * 60e9), Binding: &want[0]}
	state := mustCreatePending(t, db, wantPending)
	mustClose(t, db)

	// The new key alone cannot open the store.
	if db, err := open(config(t, clock, newKey)); !errors.Is(err, store.ErrWrongKey) {
		if err == nil {
			db.Close()
		}
		t.Fatalf("open with only the new key before Rotate: %v, want ErrWrongKey", err)
	}

	// [new, old]: old records open; new ones are sealed under new.
	db = mustOpen(t, open, config(t, clock, newKey, oldKey))
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
	db = mustOpen(t, open, config(t, clock, newKey))
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

// mustHalfRotatedStore makes the store of README's rotation step 1 without
// step 2: records under oldKey, then an open with [newKey, oldKey] (which
// re-seals the canary under newKey) and one more binding, sealed under
// newKey. It returns how to open the store, closed.
func mustHalfRotatedStore(t *testing.T, newStore NewStore, clock *Clock, oldKey, newKey []byte) Opener {
	t.Helper()
	open := newStore(t)
	db := mustOpen(t, open, config(t, clock, oldKey))
	mustPutBinding(t, db, SampleBinding("T1", "U1"))
	mustPutBinding(t, db, SampleBinding("T1", "U2"))
	mustCreatePending(t, db, samplePending(clock, "U3"))
	mustClose(t, db)
	db = mustOpen(t, open, config(t, clock, newKey, oldKey))
	mustPutBinding(t, db, SampleBinding("T1", "U4"))
	mustClose(t, db)
	return open
}

// testOpenMissingKeys is the rotation whose step 2 was skipped: the old
// key is gone from the ring, the canary (under the new key) opens, and
// three records are still sealed under the old key. Open refuses it,
// naming the missing key id, how many records it seals and the setting to
// change.
func testOpenMissingKeys(t *testing.T, newStore NewStore) {
	clock := NewClock()
	oldKey, newKey := Key(1), Key(2)
	open := mustHalfRotatedStore(t, newStore, clock, oldKey, newKey)
	oldID := Ring(t, oldKey).PrimaryID()

	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(newKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := store.KeyringFromFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fromEnv, err := store.KeyringFromEnv(base64.StdEncoding.EncodeToString(newKey))
	if err != nil {
		t.Fatal(err)
	}
	rings := []struct {
		name     string
		ring     *store.Keyring
		wantName string
	}{
		{"file", fromFile, "FORCEBIND_KEY_FILE " + keyFile},
		{"env", fromEnv, "FORCEBIND_KEY"},
		{"NewKeyring", Ring(t, newKey), "the keyring"},
	}
	for _, r := range rings {
		t.Run(r.name, func(t *testing.T) {
			db, err := open(Config{Keyring: r.ring, Now: clock.Now})
			if err == nil {
				db.Close()
				t.Fatal("open with a ring that lacks the old key: no error")
			}
			if !errors.Is(err, store.ErrWrongKey) {
				t.Fatalf("open error = %v, want ErrWrongKey", err)
			}
			var mk *store.MissingKeysError
			if !errors.As(err, &mk) {
				t.Fatalf("open error %v is not a *MissingKeysError", err)
			}
			want := []store.KeyRecords{{KeyID: oldID, Bindings: 2, Pending: 1}}
			if diff := cmp.Diff(want, mk.Missing); diff != "" {
				t.Errorf("missing keys mismatch (-want +got):\n%s", diff)
			}
			msg := err.Error()
			for _, s := range []string{oldID, "2 bindings and 1 pending link", r.wantName, "key rotate"} {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not say %q", msg, s)
				}
			}
			AssertNoKeyMaterial(t, msg, oldKey, newKey)
		})
	}

	// With the old key back in the ring, below the primary, it opens, and
	// nothing was lost.
	db := mustOpen(t, open, config(t, clock, newKey, oldKey))
	for _, u := range []string{"U1", "U2", "U4"} {
		if _, err := db.GetBinding(t.Context(), "T1", u); err != nil {
			t.Errorf("GetBinding(%s) after the refused opens: %v", u, err)
		}
	}
}

// testOpenAllowMissingKeys: the tool that must work on such a store opens
// it, and the records under the missing key fail one by one with
// ErrWrongKey naming the key id, while the others work.
func testOpenAllowMissingKeys(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	clock := NewClock()
	oldKey, newKey := Key(1), Key(2)
	open := mustHalfRotatedStore(t, newStore, clock, oldKey, newKey)
	cfg := config(t, clock, newKey)
	cfg.AllowMissingKeys = true
	db := mustOpen(t, open, cfg)
	if _, err := db.GetBinding(ctx, "T1", "U4"); err != nil {
		t.Errorf("GetBinding of the record under the new key: %v", err)
	}
	_, err := db.GetBinding(ctx, "T1", "U1")
	if !errors.Is(err, store.ErrWrongKey) || !strings.Contains(err.Error(), Ring(t, oldKey).PrimaryID()) {
		t.Errorf("GetBinding of a record under the missing key: %v, want ErrWrongKey naming its key id", err)
	}
	AssertNoKeyMaterial(t, err.Error(), oldKey, newKey)
	// Such a record does not trap its owner: it can be replaced and
	// deleted without being opened.
	if err := db.DeleteBinding(ctx, "T1", "U1"); err != nil {
		t.Errorf("DeleteBinding of a record under the missing key: %v", err)
	}
	want := SampleBinding("T1", "U2")
	want.RefreshToken = "replaced"
	if err := db.PutBinding(ctx, want); err != nil {
		t.Errorf("PutBinding over a record under the missing key: %v", err)
	}
	if got, err := db.GetBinding(ctx, "T1", "U2"); err != nil || got.RefreshToken != "replaced" {
		t.Errorf("GetBinding after the replacement: %v, %v", got, err)
	}
	mustClose(t, db)

	// The canary is still checked: a ring that does not open it is refused.
	wrong := config(t, clock, Key(3))
	wrong.AllowMissingKeys = true
	if db, err := open(wrong); !errors.Is(err, store.ErrWrongKey) {
		if err == nil {
			db.Close()
		}
		t.Errorf("open with a wrong ring and AllowMissingKeys: %v, want ErrWrongKey", err)
	}
}

// testSealedBy counts the records of a half-rotated store by key, without
// opening them, whether or not the ring holds the old key.
func testSealedBy(t *testing.T, newStore NewStore) {
	clock := NewClock()
	oldKey, newKey := Key(1), Key(2)
	open := mustHalfRotatedStore(t, newStore, clock, oldKey, newKey)
	oldID, newID := Ring(t, oldKey).PrimaryID(), Ring(t, newKey).PrimaryID()

	tests := []struct {
		name string
		ring *store.Keyring
		want []store.KeyRecords
	}{
		{"both keys", Ring(t, newKey, oldKey), []store.KeyRecords{
			{KeyID: newID, InRing: true, Bindings: 1},
			{KeyID: oldID, InRing: true, Bindings: 2, Pending: 1},
		}},
		{"old key missing", Ring(t, newKey), []store.KeyRecords{
			{KeyID: newID, InRing: true, Bindings: 1},
			{KeyID: oldID, Bindings: 2, Pending: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := mustOpen(t, open, Config{Keyring: tt.ring, Now: clock.Now, AllowMissingKeys: true})
			got, err := db.SealedBy(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SealedBy mismatch (-want +got):\n%s", diff)
			}
			mustClose(t, db)
		})
	}
}

// testDeleteUnopenableLostKey is the way out when the old key is lost for
// good: the records under it go, and the rest stay.
func testDeleteUnopenableLostKey(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	clock := NewClock()
	oldKey, newKey := Key(1), Key(2)
	open := mustHalfRotatedStore(t, newStore, clock, oldKey, newKey)
	cfg := config(t, clock, newKey)
	cfg.AllowMissingKeys = true
	db := mustOpen(t, open, cfg)
	gone, err := db.DeleteUnopenable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.KeyRecords{{KeyID: Ring(t, oldKey).PrimaryID(), Bindings: 2, Pending: 1}}
	if diff := cmp.Diff(want, gone); diff != "" {
		t.Errorf("deleted mismatch (-want +got):\n%s", diff)
	}
	mustClose(t, db)
	db = mustOpen(t, open, config(t, clock, newKey))
	if n, err := db.CountBindings(ctx); err != nil || n != 1 {
		t.Errorf("CountBindings = %d, %v; want the one binding under the new key", n, err)
	}
	if swept := mustSweepAll(t, db, clock); len(swept) != 0 {
		t.Errorf("%d pending links left, want none: the one under the lost key is gone", len(swept))
	}
}
