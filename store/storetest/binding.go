package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

func TestBindingRoundTrip(t *testing.T) {
	full := sampleBinding("T1", "U1")
	noScopes := sampleBinding("T1", "U2")
	noScopes.Scopes = nil
	emptyScopes := sampleBinding("T1", "U3")
	emptyScopes.Scopes = []string{}
	offset := sampleBinding("T1", "U4")
	offset.IssuedAt = time.Date(2025, 6, 1, 12, 0, 0, 1, time.FixedZone("CEST", 2*3600))
	unicode := sampleBinding("T2", "U1")
	unicode.Username = "zoë@acme.example"
	unicode.AccessToken = "tok\u00e9n\"with\\quotes\x00and nul"

	tests := []struct {
		name string
		b    Binding
	}{
		{name: "full", b: full},
		{name: "ids only", b: Binding{TeamID: "T9", UserID: "U9"}},
		{name: "nil scopes", b: noScopes},
		{name: "empty scopes", b: emptyScopes},
		{name: "time zone", b: offset},
		{name: "unicode and escapes", b: unicode},
	}
	db := mustNewDB(t, nil)
	ctx := context.Background()
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

func TestPutBindingReplaces(t *testing.T) {
	ctx := context.Background()
	db := mustNewDB(t, nil)
	mustPutBinding(t, db, sampleBinding("T1", "U1"))
	want := sampleBinding("T1", "U1")
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

func TestBindingKeys(t *testing.T) {
	ctx := context.Background()
	db := mustNewDB(t, nil)
	mustPutBinding(t, db, sampleBinding("T1", "U1"))

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
			if got := errors.Is(err, ErrNotFound); got != tt.wantNotFound {
				t.Errorf("GetBinding error = %v; errors.Is(ErrNotFound) = %t, want %t", err, got, tt.wantNotFound)
			}
			if !tt.wantNotFound {
				b := sampleBinding(tt.team, tt.user)
				if err := db.PutBinding(ctx, b); err == nil {
					t.Error("PutBinding with invalid ids: no error")
				}
			}
		})
	}
}

func TestDeleteBinding(t *testing.T) {
	ctx := context.Background()
	db := mustNewDB(t, nil)
	mustPutBinding(t, db, sampleBinding("T1", "U1"))
	mustPutBinding(t, db, sampleBinding("T1", "U2"))

	if err := db.DeleteBinding(ctx, "T1", "U1"); err != nil {
		t.Fatalf("DeleteBinding: %v", err)
	}
	if _, err := db.GetBinding(ctx, "T1", "U1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetBinding after delete: %v, want ErrNotFound", err)
	}
	if err := db.DeleteBinding(ctx, "T1", "U1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteBinding: %v, want ErrNotFound", err)
	}
	if _, err := db.GetBinding(ctx, "T1", "U2"); err != nil {
		t.Errorf("GetBinding(U2) after deleting U1: %v", err)
	}
	if n, err := db.CountBindings(ctx); err != nil || n != 1 {
		t.Errorf("CountBindings = %d, %v; want 1", n, err)
	}
}

func TestUpdateTokens(t *testing.T) {
	orig := sampleBinding("T1", "U1")
	newIssued := orig.IssuedAt.Add(time.Hour)
	clock := newTestClock()

	tests := []struct {
		name    string
		user    string
		used    string
		tokens  Tokens
		want    Binding // the stored binding afterwards
		wantErr error
	}{
		{
			name:   "rotated refresh token",
			user:   "U1",
			used:   orig.RefreshToken,
			tokens: Tokens{AccessToken: "new-access", RefreshToken: "new-refresh", IssuedAt: newIssued},
			want:   with(orig, func(b *Binding) { b.AccessToken, b.RefreshToken, b.IssuedAt = "new-access", "new-refresh", newIssued }),
		},
		{
			name:   "no refresh token keeps the old one",
			user:   "U1",
			used:   orig.RefreshToken,
			tokens: Tokens{AccessToken: "new-access", IssuedAt: newIssued},
			want:   with(orig, func(b *Binding) { b.AccessToken, b.IssuedAt = "new-access", newIssued }),
		},
		{
			name:   "zero issued at means now",
			user:   "U1",
			used:   orig.RefreshToken,
			tokens: Tokens{AccessToken: "new-access"},
			want:   with(orig, func(b *Binding) { b.AccessToken, b.IssuedAt = "new-access", clock.Now() }),
		},
		{
			name:    "stale refresh token",
			user:    "U1",
			used:    "an-older-refresh-token",
			tokens:  Tokens{AccessToken: "new-access", RefreshToken: "new-refresh", IssuedAt: newIssued},
			want:    orig,
			wantErr: ErrConflict,
		},
		{
			name:    "prefix of the refresh token",
			user:    "U1",
			used:    orig.RefreshToken[:5],
			tokens:  Tokens{AccessToken: "new-access"},
			want:    orig,
			wantErr: ErrConflict,
		},
		{
			name:    "no binding",
			user:    "U2",
			used:    orig.RefreshToken,
			tokens:  Tokens{AccessToken: "new-access"},
			wantErr: ErrNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			db := mustNewDB(t, clock)
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
			if errors.Is(tt.wantErr, ErrNotFound) {
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

// TestUpdateTokensRace has many refreshers race with the same spent refresh
// token: exactly one may win.
func TestUpdateTokensRace(t *testing.T) {
	ctx := context.Background()
	db := mustNewDB(t, nil)
	orig := sampleBinding("T1", "U1")
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
			_, err := db.UpdateTokens(ctx, "T1", "U1", orig.RefreshToken, Tokens{AccessToken: "a", RefreshToken: refresh})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins = append(wins, refresh)
			case errors.Is(err, ErrConflict):
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

func TestStringHidesSecrets(t *testing.T) {
	b := sampleBinding("T1", "U1")
	p := Pending{TeamID: "T1", UserID: "U1", Verifier: "verifier-secret-8d7f", Binding: &b}
	tk := Tokens{AccessToken: b.AccessToken, RefreshToken: b.RefreshToken}
	mustJSON := func(v any) string {
		t.Helper()
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		return string(data)
	}
	outputs := map[string]string{
		"Binding String":    b.String(),
		"Binding %v %+v %s": fmt.Sprintf("%v %+v %s", b, b, &b),
		"Binding %#v":       fmt.Sprintf("%#v %#v", b, &b),
		"Binding JSON":      mustJSON(b) + mustJSON(&b),
		"Pending String":    p.String(),
		"Pending %v %+v":    fmt.Sprintf("%v %+v %v", p, p, &p),
		"Pending %#v":       fmt.Sprintf("%#v %#v", p, &p),
		"Pending JSON":      mustJSON(p) + mustJSON(&p),
		"Tokens String":     tk.String(),
		"Tokens %v %+v":     fmt.Sprintf("%v %+v %v", tk, tk, &tk),
		"Tokens %#v":        fmt.Sprintf("%#v %#v", tk, &tk),
		"Tokens JSON":       mustJSON(tk) + mustJSON(&tk),
		"nested %+v %#v":    fmt.Sprintf("%+v %#v", []any{b, p, tk}, []any{b, p, tk}),
		"nested JSON":       mustJSON(map[string]any{"b": b, "p": []Pending{p}, "t": &tk}),
	}
	for name, s := range outputs {
		for _, secret := range []string{b.AccessToken, b.RefreshToken, p.Verifier} {
			if strings.Contains(s, secret) {
				t.Errorf("%s: %q contains the secret %q", name, s, secret)
			}
		}
	}
	if !strings.Contains(b.String(), b.Username) {
		t.Errorf("Binding.String() = %q, want it to name the user", b.String())
	}

	// The JSON keeps everything else, and says which secrets were set.
	var gotB map[string]any
	if err := json.Unmarshal([]byte(mustJSON(b)), &gotB); err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]any{"Username": b.Username, "AccessToken": "[redacted]", "RefreshToken": "[redacted]"} {
		if gotB[field] != want {
			t.Errorf("Binding JSON %s = %v, want %v", field, gotB[field], want)
		}
	}
	var gotP struct {
		UserID   string
		Verifier string
		Binding  struct{ AccessToken string }
	}
	if err := json.Unmarshal([]byte(mustJSON(p)), &gotP); err != nil {
		t.Fatal(err)
	}
	if want := (struct {
		UserID   string
		Verifier string
		Binding  struct{ AccessToken string }
	}{"U1", "[redacted]", struct{ AccessToken string }{"[redacted]"}}); gotP != want {
		t.Errorf("Pending JSON = %+v, want %+v", gotP, want)
	}
	if got := mustJSON(Tokens{}); !strings.Contains(got, `"AccessToken":""`) {
		t.Errorf("JSON of empty Tokens = %s, want empty tokens left empty", got)
	}
}

// TestSealedRecordsKeepSecrets checks that the redacting MarshalJSON
// methods do not reach the sealed records, which must keep the real values.
func TestSealedRecordsKeepSecrets(t *testing.T) {
	clock := newTestClock()
	db := mustNewDB(t, clock)
	b := sampleBinding("T1", "U1")
	mustPutBinding(t, db, b)
	p := samplePending(clock, "U2")
	p.Binding = &b
	mustCreatePending(t, db, p)

	var plaintexts []string
	err := db.bolt.View(func(tx *bolt.Tx) error {
		pt, err := db.keyring.open(bucketBindings, []byte("T1/U1"), nil, tx.Bucket(bucketBindings).Get([]byte("T1/U1")))
		if err != nil {
			return err
		}
		plaintexts = append(plaintexts, string(pt))
		k, v := tx.Bucket(bucketPending).Cursor().First()
		pt, err = db.keyring.open(bucketPending, k, v[:expiryLen], v[expiryLen:])
		if err != nil {
			return err
		}
		plaintexts = append(plaintexts, string(pt))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, pt := range plaintexts {
		for _, secret := range []string{b.AccessToken, b.RefreshToken} {
			if !strings.Contains(pt, secret) {
				t.Errorf("sealed record %d does not hold the real token", i)
			}
		}
		if strings.Contains(pt, "[redacted]") {
			t.Errorf("sealed record %d holds a redacted value", i)
		}
	}
	if !strings.Contains(plaintexts[1], p.Verifier) {
		t.Error("sealed pending record does not hold the real verifier")
	}
}

func TestDeleteBindingIf(t *testing.T) {
	orig := sampleBinding("T1", "U1")
	tests := []struct {
		name     string
		user     string
		refresh  string
		wantErr  error
		wantGone bool
	}{
		{name: "refresh token matches", user: "U1", refresh: orig.RefreshToken, wantGone: true},
		{name: "binding replaced since", user: "U1", refresh: "the-dead-refresh-token", wantErr: ErrConflict},
		{name: "prefix of the refresh token", user: "U1", refresh: orig.RefreshToken[:5], wantErr: ErrConflict},
		{name: "empty refresh token", user: "U1", refresh: "", wantErr: ErrConflict},
		{name: "no binding", user: "U2", refresh: orig.RefreshToken, wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			db := mustNewDB(t, nil)
			mustPutBinding(t, db, orig)
			other := sampleBinding("T1", "U3")
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
				if !errors.Is(err, ErrNotFound) {
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

func TestCountBindings(t *testing.T) {
	ctx := context.Background()
	db := mustNewDB(t, nil)
	for i := range 25 {
		mustPutBinding(t, db, sampleBinding("T1", fmt.Sprintf("U%d", i)))
	}
	mustPutBinding(t, db, sampleBinding("T1", "U3")) // a replacement
	if err := db.DeleteBinding(ctx, "T1", "U4"); err != nil {
		t.Fatal(err)
	}
	if n, err := db.CountBindings(ctx); err != nil || n != 24 {
		t.Errorf("CountBindings = %d, %v; want 24", n, err)
	}
}

// with returns a copy of b changed by fn.
func with(b Binding, fn func(*Binding)) Binding {
	b.Scopes = append([]string(nil), b.Scopes...)
	fn(&b)
	return b
}
