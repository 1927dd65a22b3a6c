package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/store"
)

func testBindingRoundTrip(t *testing.T, newStore NewStore) {
	full := SampleBinding("T1", "U1")
	noScopes := SampleBinding("T1", "U2")
	noScopes.Scopes = nil
	emptyScopes := SampleBinding("T1", "U3")
	emptyScopes.Scopes = []string{}
	offset := SampleBinding("T1", "U4")
	offset.IssuedAt = time.Date(2025, 6, 1, 12, 0, 0, 1, time.FixedZone("CEST", 2*3600))
	unicode := SampleBinding("T2", "U1")
	unicode.Username = "zoë@acme.example"
	unicode.AccessToken = "tok\u00e9n\"with\\quotes\x00and nul"

	tests := []struct {
		name string
		b    store.Binding
	}{
		{name: "full", b: full},
		{name: "ids only", b: store.Binding{TeamID: "T9", UserID: "U9"}},
		{name: "nil scopes", b: noScopes},
		{name: "empty scopes", b: emptyScopes},
		{name: "time zone", b: offset},
		{name: "unicode and escapes", b: unicode},
	}
	db := mustNewDB(t, newStore, nil)
	ctx := t.Context()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustPutBinding(t, db, tt.b)
			got, err := db.GetBinding(ctx, tt.b.TeamID, tt.b.UserID)
			if err != nil {
				t.Fatalf("GetBinding: %v", err)
			}
			if diff := cmp.Diff(tt.b, got); diff != "" {
				t.Errorf("binding mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testPutBindingReplaces(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	db := mustNewDB(t, newStore, nil)
	mustPutBinding(t, db, SampleBinding("T1", "U1"))
	want := SampleBinding("T1", "U1")
	want.Username = "new@acme.example"
	want.AccessToken = "replaced"
	mustPutBinding(t, db, want)

	got, err := db.GetBinding(ctx, "T1", "U1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("binding mismatch (-want +got):\n%s", diff)
	}
	if n, err := db.CountBindings(ctx); err != nil || n != 1 {
		t.Errorf("CountBindings = %d, %v; want 1", n, err)
	}
}

func testBindingKeys(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	db := mustNewDB(t, newStore, nil)
	mustPutBinding(t, db, SampleBinding("T1", "U1"))

	tests := []struct {
		name         string
		team, user   string
		wantNotFound bool // else: invalid ids, an error that is not ErrNotFound
	}{
		{name: "other user", team: "T1", user: "U2", wantNotFound: true},
		{name: "other team", team: "T2", user: "U1", wantNotFound: true},
		{name: "empty team", team: "", user: "U1"},
		{name: "empty user", team: "T1", user: ""},
		{name: "slash in team", team: "T1/U1", user: "x"},
		{name: "slash in user", team: "T1", user: "U1/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := db.GetBinding(ctx, tt.team, tt.user)
			if err == nil {
				t.Fatal("GetBinding: no error")
			}
			if got := errors.Is(err, store.ErrNotFound); got != tt.wantNotFound {
				t.Errorf("GetBinding error = %v; errors.Is(ErrNotFound) = %t, want %t", err, got, tt.wantNotFound)
			}
			if !tt.wantNotFound {
				b := SampleBinding(tt.team, tt.user)
				if err := db.PutBinding(ctx, b); err == nil {
					t.Error("PutBinding with invalid ids: no error")
				}
			}
		})
	}
}

func testDeleteBinding(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	db := mustNewDB(t, newStore, nil)
	mustPutBinding(t, db, SampleBinding("T1", "U1"))
	mustPutBinding(t, db, SampleBinding("T1", "U2"))

	if err := db.DeleteBinding(ctx, "T1", "U1"); err != nil {
		t.Fatalf("DeleteBinding: %v", err)
	}
	if _, err := db.GetBinding(ctx, "T1", "U1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBinding after delete: %v, want ErrNotFound", err)
	}
	if err := db.DeleteBinding(ctx, "T1", "U1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteBinding: %v, want ErrNotFound", err)
	}
	if _, err := db.GetBinding(ctx, "T1", "U2"); err != nil {
		t.Errorf("GetBinding(U2) after deleting U1: %v", err)
	}
	if n, err := db.CountBindings(ctx); err != nil || n != 1 {
		t.Errorf("CountBindings = %d, %v; want 1", n, err)
	}
}

func testUpdateTokens(t *testing.T, newStore NewStore) {
	orig := SampleBinding("T1", "U1")
	newIssued := orig.IssuedAt.Add(time.Hour)
	clock := NewClock()

	tests := []struct {
		name    string
		user    string
		used    string
		tokens  store.Tokens
		want    store.Binding // the stored binding afterwards
		wantErr error
	}{
		{
			name:   "rotated refresh token",
			user:   "U1",
			used:   orig.RefreshToken,
			tokens: store.Tokens{AccessToken: "new-access", RefreshToken: "new-refresh", IssuedAt: newIssued},
			want: with(orig, func(b *store.Binding) {
				b.AccessToken, b.RefreshToken, b.IssuedAt = "new-access", "new-refresh", newIssued
			}),
		},
		{
			name:   "no refresh token keeps the old one",
			user:   "U1",
			used:   orig.RefreshToken,
			tokens: store.Tokens{AccessToken: "new-access", IssuedAt: newIssued},
			want:   with(orig, func(b *store.Binding) { b.AccessToken, b.IssuedAt = "new-access", newIssued }),
		},
		{
			name:   "a new instance is stored",
			user:   "U1",
			used:   orig.RefreshToken,
			tokens: store.Tokens{AccessToken: "new-access", InstanceURL: "https://acme-2.my.salesforce.com", IssuedAt: newIssued},
			want: with(orig, func(b *store.Binding) {
				b.AccessToken, b.InstanceURL, b.IssuedAt = "new-access", "https://acme-2.my.salesforce.com", newIssued
			}),
		},
		{
			name:   "a new login host is stored",
			user:   "U1",
			used:   orig.RefreshToken,
			tokens: store.Tokens{AccessToken: "new-access", LoginURL: "https://acme.my.salesforce.com", IssuedAt: newIssued},
			want: with(orig, func(b *store.Binding) {
				b.AccessToken, b.LoginURL, b.IssuedAt = "new-access", "https://acme.my.salesforce.com", newIssued
			}),
		},
		{
			name:   "zero issued at means now",
			user:   "U1",
			used:   orig.RefreshToken,
			tokens: store.Tokens{AccessToken: "new-access"},
			want:   with(orig, func(b *store.Binding) { b.AccessToken, b.IssuedAt = "new-access", clock.Now() }),
		},
		{
			name:    "stale refresh token",
			user:    "U1",
			used:    "an-older-refresh-token",
			tokens:  store.Tokens{AccessToken: "new-access", RefreshToken: "new-refresh", IssuedAt: newIssued},
			want:    orig,
			wantErr: store.ErrConflict,
		},
		{
			name:    "prefix of the refresh token",
			user:    "U1",
			used:    orig.RefreshToken[:5],
			tokens:  store.Tokens{AccessToken: "new-access"},
			want:    orig,
			wantErr: store.ErrConflict,
		},
		{
			name:    "no binding",
			user:    "U2",
			used:    orig.RefreshToken,
			tokens:  store.Tokens{AccessToken: "new-access"},
			wantErr: store.ErrNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			db := mustNewDB(t, newStore, clock)
			mustPutBinding(t, db, orig)

			got, err := db.UpdateTokens(ctx, "T1", tt.user, tt.used, tt.tokens)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("UpdateTokens error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("returned binding mismatch (-want +got):\n%s", diff)
				}
			}
			if errors.Is(tt.wantErr, store.ErrNotFound) {
				return
			}
			stored, err := db.GetBinding(ctx, "T1", tt.user)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, stored); diff != "" {
				t.Errorf("stored binding mismatch (-want +got):\n%s", diff)
			}
			if err != nil && strings.Contains(err.Error(), tt.used) {
				t.Errorf("error %q contains the refresh token", err)
			}
		})
	}
}

// testUpdateTokensRace has many refreshers race with the same spent refresh
// token: exactly one may win.
func testUpdateTokensRace(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	db := mustNewDB(t, newStore, nil)
	orig := SampleBinding("T1", "U1")
	mustPutBinding(t, db, orig)

	const n = 20
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		wins      []string
		conflicts int
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			refresh := fmt.Sprintf("refresh-%d", i)
			_, err := db.UpdateTokens(ctx, "T1", "U1", orig.RefreshToken, store.Tokens{AccessToken: "a", RefreshToken: refresh})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins = append(wins, refresh)
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("UpdateTokens: %v", err)
			}
		}()
	}
	wg.Wait()
	if len(wins) != 1 || conflicts != n-1 {
		t.Fatalf("%d wins and %d conflicts, want 1 and %d", len(wins), conflicts, n-1)
	}
	got, err := db.GetBinding(ctx, "T1", "U1")
	if err != nil {
		t.Fatal(err)
	}
	if got.RefreshToken != wins[0] {
		t.Errorf("stored refresh token %q, want the winner's %q", got.RefreshToken, wins[0])
	}
}

func testDeleteBindingIf(t *testing.T, newStore NewStore) {
	orig := SampleBinding("T1", "U1")
	tests := []struct {
		name     string
		user     string
		refresh  string
		wantErr  error
		wantGone bool
	}{
		{name: "refresh token matches", user: "U1", refresh: orig.RefreshToken, wantGone: true},
		{name: "binding replaced since", user: "U1", refresh: "the-dead-refresh-token", wantErr: store.ErrConflict},
		{name: "prefix of the refresh token", user: "U1", refresh: orig.RefreshToken[:5], wantErr: store.ErrConflict},
		{name: "empty refresh token", user: "U1", refresh: "", wantErr: store.ErrConflict},
		{name: "no binding", user: "U2", refresh: orig.RefreshToken, wantErr: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			db := mustNewDB(t, newStore, nil)
			mustPutBinding(t, db, orig)
			other := SampleBinding("T1", "U3")
			mustPutBinding(t, db, other)

			err := db.DeleteBindingIf(ctx, "T1", tt.user, tt.refresh)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("DeleteBindingIf error = %v, want %v", err, tt.wantErr)
			}
			if err != nil && tt.refresh != "" && strings.Contains(err.Error(), tt.refresh) {
				t.Errorf("error %q contains the refresh token", err)
			}
			got, err := db.GetBinding(ctx, "T1", "U1")
			switch {
			case tt.wantGone:
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("GetBinding after DeleteBindingIf: %v, want ErrNotFound", err)
				}
			case err != nil:
				t.Fatalf("GetBinding: %v", err)
			default:
				if diff := cmp.Diff(orig, got); diff != "" {
					t.Errorf("binding changed by a refused delete (-want +got):\n%s", diff)
				}
			}
			if _, err := db.GetBinding(ctx, "T1", "U3"); err != nil {
				t.Errorf("GetBinding(U3): %v", err)
			}
		})
	}
}

func testCountBindings(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	db := mustNewDB(t, newStore, nil)
	for i := range 25 {
		mustPutBinding(t, db, SampleBinding("T1", fmt.Sprintf("U%d", i)))
	}
	mustPutBinding(t, db, SampleBinding("T1", "U3")) // a replacement
	if err := db.DeleteBinding(ctx, "T1", "U4"); err != nil {
		t.Fatal(err)
	}
	if n, err := db.CountBindings(ctx); err != nil || n != 24 {
		t.Errorf("CountBindings = %d, %v; want 24", n, err)
	}
}

// with returns a copy of b changed by fn.
func with(b store.Binding, fn func(*store.Binding)) store.Binding {
	b.Scopes = append([]string(nil), b.Scopes...)
	fn(&b)
	return b
}
