package storetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/store"
)

// testReplaceBinding stores a binding over nothing, over a binding that
// opens and over one that does not, and checks that each time it says
// what it replaced: the caller revokes that grant, so it must be the one
// stored at the moment of the write.
func testReplaceBinding(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	clock := NewClock()
	// U1 and U2 are sealed under the old key, which the ring below lacks:
	// their records do not open.
	open := mustHalfRotatedStore(t, newStore, clock, Key(1), Key(2))
	cfg := config(t, clock, Key(2))
	cfg.AllowMissingKeys = true
	db := mustOpen(t, open, cfg)
	mustPutBinding(t, db, SampleBinding("T1", "U5"))
	before, err := db.CountBindings(ctx)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		user      string
		want      store.Replaced // without Err
		wantErrIs error          // what Replaced.Err matches; nil for none
		wantCount int            // bindings added
	}{
		{name: "nothing there", user: "U9", want: store.Replaced{}, wantCount: 1},
		{name: "a binding that opens", user: "U5", want: store.Replaced{Found: true, Binding: SampleBinding("T1", "U5")}},
		{name: "a record that does not open", user: "U1", want: store.Replaced{Found: true}, wantErrIs: store.ErrWrongKey},
	}
	added := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nb := SampleBinding("T1", tt.user)
			nb.AccessToken, nb.RefreshToken = "replacing-access-"+tt.user, "replacing-refresh-"+tt.user
			got, err := db.ReplaceBinding(ctx, nb)
			if err != nil {
				t.Fatalf("ReplaceBinding: %v", err)
			}
			if !errors.Is(got.Err, tt.wantErrIs) || (tt.wantErrIs == nil) != (got.Err == nil) {
				t.Errorf("Replaced.Err = %v, want one matching %v", got.Err, tt.wantErrIs)
			}
			if got.Err != nil && !strings.Contains(got.Err.Error(), Ring(t, Key(1)).PrimaryID()) {
				t.Errorf("Replaced.Err %q does not name the key id of the record", got.Err)
			}
			got.Err = nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Replaced mismatch (-want +got):\n%s", diff)
			}
			stored, err := db.GetBinding(ctx, "T1", tt.user)
			if err != nil {
				t.Fatalf("GetBinding after ReplaceBinding: %v", err)
			}
			if diff := cmp.Diff(nb, stored); diff != "" {
				t.Errorf("stored binding mismatch (-want +got):\n%s", diff)
			}
			added += tt.wantCount
			if n, err := db.CountBindings(ctx); err != nil || n != before+added {
				t.Errorf("CountBindings = %d, %v; want %d", n, err, before+added)
			}
		})
	}
	if _, err := db.ReplaceBinding(ctx, SampleBinding("T1", "U1/x")); err == nil {
		t.Error("ReplaceBinding with a '/' in the user id: no error")
	}
}

// testDeleteBindingIfUnreadable removes a record that does not open, and
// leaves alone one that does: a good binding stored since the caller found
// the record unreadable holds a live grant.
func testDeleteBindingIfUnreadable(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	clock := NewClock()
	open := mustHalfRotatedStore(t, newStore, clock, Key(1), Key(2))
	cfg := config(t, clock, Key(2))
	cfg.AllowMissingKeys = true
	db := mustOpen(t, open, cfg)
	// U4 was sealed under the key the ring holds; U1 and U2 were not.
	tests := []struct {
		name     string
		user     string
		wantErr  error
		wantGone bool
	}{
		{name: "a record that does not open", user: "U1", wantGone: true},
		{name: "a binding that opens", user: "U4", wantErr: store.ErrConflict},
		{name: "no binding", user: "U9", wantErr: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := db.DeleteBindingIfUnreadable(ctx, "T1", tt.user)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("DeleteBindingIfUnreadable = %v, want %v", err, tt.wantErr)
			}
			_, err = db.GetBinding(ctx, "T1", tt.user)
			switch {
			case tt.wantGone && !errors.Is(err, store.ErrNotFound):
				t.Errorf("GetBinding after the delete: %v, want ErrNotFound", err)
			case tt.user == "U4" && err != nil:
				t.Errorf("the binding that opens is gone or changed: %v", err)
			}
		})
	}
	// The other unreadable record is still there, and the count agrees.
	if _, err := db.GetBinding(ctx, "T1", "U2"); !errors.Is(err, store.ErrWrongKey) {
		t.Errorf("GetBinding(U2) = %v, want ErrWrongKey: it was not asked for", err)
	}
	if n, err := db.CountBindings(ctx); err != nil || n != 2 {
		t.Errorf("CountBindings = %d, %v; want 2 (U2 and U4)", n, err)
	}
	// A good binding now stored where the unreadable record was is kept.
	mustPutBinding(t, db, SampleBinding("T1", "U2"))
	if err := db.DeleteBindingIfUnreadable(ctx, "T1", "U2"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("DeleteBindingIfUnreadable of a replaced record = %v, want ErrConflict", err)
	}
}
