package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

const ttl = 10 * time.Minute

func samplePending(clock *testClock, user string) Pending {
	now := clock.Now()
	return Pending{
		TeamID: "T1", TeamName: "Acme", UserID: user, ChannelID: "C1",
		DisplayName: "Jane " + user, Verifier: "verifier-" + user + "-abcdefghijklmnopqrstuvwxyz0123456789",
		Created: now, Expires: now.Add(ttl),
	}
}

func TestPendingRoundTrip(t *testing.T) {
	clock := newTestClock()
	b := sampleBinding("T1", "U2")
	withBinding := samplePending(clock, "U2")
	withBinding.Binding = &b

	tests := []struct {
		name string
		p    Pending
	}{
		{name: "fresh link", p: samplePending(clock, "U1")},
		{name: "awaiting confirm", p: withBinding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := mustNewDB(t, clock)
			state := mustCreatePending(t, db, tt.p)
			got, err := db.RedeemPending(context.Background(), state)
			if err != nil {
				t.Fatalf("RedeemPending: %v", err)
			}
			if diff := cmp.Diff(tt.p, got); diff != "" {
				t.Errorf("pending mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCreatePendingState(t *testing.T) {
	clock := newTestClock()
	db := mustNewDB(t, clock)
	state := mustCreatePending(t, db, samplePending(clock, "U1"))

	raw, err := base64.RawURLEncoding.Strict().DecodeString(state)
	if err != nil || len(raw) != 32 || strings.ContainsAny(state, "=+/") {
		t.Fatalf("state %q: want 32 bytes of unpadded base64url (decoded %d bytes, %v)", state, len(raw), err)
	}
	// Only the hash is stored.
	sum := sha256.Sum256(raw)
	err = db.bolt.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketPending).Get(sum[:]) == nil {
			t.Error("no pending record under SHA-256(state)")
		}
		if tx.Bucket(bucketPending).Get(raw) != nil || tx.Bucket(bucketPending).Get([]byte(state)) != nil {
			t.Error("pending record stored under the raw state")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if other := mustCreatePending(t, db, samplePending(clock, "U2")); other == state {
		t.Error("two links got the same state")
	}
}

func TestCreatePendingValidates(t *testing.T) {
	clock := newTestClock()
	db := mustNewDB(t, clock)
	now := clock.Now()
	tests := []struct {
		name string
		edit func(*Pending)
	}{
		{name: "no team", edit: func(p *Pending) { p.TeamID = "" }},
		{name: "no user", edit: func(p *Pending) { p.UserID = "" }},
		{name: "no expiry", edit: func(p *Pending) { p.Expires = time.Time{} }},
		{name: "expires now", edit: func(p *Pending) { p.Expires = now }},
		{name: "expired", edit: func(p *Pending) { p.Expires = now.Add(-time.Second) }},
		{name: "expires before created", edit: func(p *Pending) { p.Created = now.Add(time.Hour); p.Expires = now.Add(time.Minute) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePending(clock, "U1")
			tt.edit(&p)
			if _, err := db.CreatePending(context.Background(), p); err == nil {
				t.Fatal("CreatePending: no error")
			}
			if n := bucketLen(t, db, bucketPending); n != 0 {
				t.Errorf("pending bucket has %d records, want 0", n)
			}
		})
	}
}

func TestRedeemPending(t *testing.T) {
	ctx := context.Background()
	unknown := base64.RawURLEncoding.EncodeToString(make([]byte, 32))

	tests := []struct {
		name    string
		redeem  func(t *testing.T, db *DB, clock *testClock, state string) error
		wantErr error
	}{
		{
			name: "first use",
			redeem: func(t *testing.T, db *DB, _ *testClock, state string) error {
				_, err := db.RedeemPending(ctx, state)
				return err
			},
		},
		{
			name: "just before expiry",
			redeem: func(t *testing.T, db *DB, clock *testClock, state string) error {
				clock.Advance(ttl - time.Nanosecond)
				_, err := db.RedeemPending(ctx, state)
				return err
			},
		},
		{
			name: "replayed",
			redeem: func(t *testing.T, db *DB, _ *testClock, state string) error {
				if _, err := db.RedeemPending(ctx, state); err != nil {
					t.Fatalf("first RedeemPending: %v", err)
				}
				_, err := db.RedeemPending(ctx, state)
				return err
			},
			wantErr: ErrNotFound,
		},
		{
			name: "expired",
			redeem: func(t *testing.T, db *DB, clock *testClock, state string) error {
				clock.Advance(ttl)
				_, err := db.RedeemPending(ctx, state)
				if !errors.Is(err, ErrExpired) {
					return err
				}
				// Expired links are deleted, not left for a retry.
				if _, err := db.RedeemPending(ctx, state); !errors.Is(err, ErrNotFound) {
					t.Errorf("RedeemPending after expiry, again: %v, want ErrNotFound", err)
				}
				return err
			},
			wantErr: ErrExpired,
		},
		{name: "unknown", redeem: redeemString(unknown), wantErr: ErrNotFound},
		{name: "empty", redeem: redeemString(""), wantErr: ErrNotFound},
		{name: "not base64", redeem: redeemString("!!!!"), wantErr: ErrNotFound},
		{name: "padded", redeem: redeemString(base64.URLEncoding.EncodeToString(make([]byte, 32))), wantErr: ErrNotFound},
		{name: "short", redeem: redeemString(base64.RawURLEncoding.EncodeToString(make([]byte, 31))), wantErr: ErrNotFound},
		{name: "long", redeem: redeemString(strings.Repeat("A", 1<<16)), wantErr: ErrNotFound},
		{name: "invalid UTF-8", redeem: redeemString("\xff\xfe\x00"), wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newTestClock()
			db := mustNewDB(t, clock)
			state := mustCreatePending(t, db, samplePending(clock, "U1"))
			err := tt.redeem(t, db, clock, state)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("RedeemPending error = %v, want %v", err, tt.wantErr)
			}
			wantLeft := 0
			if tt.wantErr == ErrNotFound && tt.name != "replayed" {
				wantLeft = 1 // a bad state must not disturb the real link
			}
			if got := bucketLen(t, db, bucketPending); got != wantLeft {
				t.Errorf("pending bucket has %d records, want %d", got, wantLeft)
			}
			if got := bucketLen(t, db, bucketByUser); got != wantLeft {
				t.Errorf("pending_by_user index has %d entries, want %d", got, wantLeft)
			}
		})
	}
}

func redeemString(s string) func(*testing.T, *DB, *testClock, string) error {
	return func(t *testing.T, db *DB, _ *testClock, _ string) error {
		_, err := db.RedeemPending(context.Background(), s)
		return err
	}
}

func TestRedeemPendingConcurrent(t *testing.T) {
	clock := newTestClock()
	db := mustNewDB(t, clock)
	state := mustCreatePending(t, db, samplePending(clock, "U1"))

	const n = 50
	var (
		wg             sync.WaitGroup
		start          = make(chan struct{})
		mu             sync.Mutex
		wins, notFound int
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := db.RedeemPending(context.Background(), state)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrNotFound):
				notFound++
			default:
				t.Errorf("RedeemPending: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins != 1 || notFound != n-1 {
		t.Fatalf("%d successes and %d ErrNotFound, want 1 and %d", wins, notFound, n-1)
	}
}

func TestCreatePendingReplacesPrevious(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	db := mustNewDB(t, clock)

	first := mustCreatePending(t, db, samplePending(clock, "U1"))
	clock.Advance(time.Minute)
	want := samplePending(clock, "U1")
	want.ChannelID = "C2"
	second := mustCreatePending(t, db, want)
	other := mustCreatePending(t, db, samplePending(clock, "U2")) // another user is unaffected

	if got := bucketLen(t, db, bucketPending); got != 2 {
		t.Errorf("pending bucket has %d records, want 2 (one per user)", got)
	}
	if _, err := db.RedeemPending(ctx, first); !errors.Is(err, ErrNotFound) {
		t.Errorf("RedeemPending(first state): %v, want ErrNotFound", err)
	}
	got, err := db.RedeemPending(ctx, second)
	if err != nil {
		t.Fatalf("RedeemPending(second state): %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pending mismatch (-want +got):\n%s", diff)
	}
	if _, err := db.RedeemPending(ctx, other); err != nil {
		t.Errorf("RedeemPending(other user's state): %v", err)
	}
	for _, name := range [][]byte{bucketPending, bucketByUser} {
		if got := bucketLen(t, db, name); got != 0 {
			t.Errorf("bucket %s has %d entries after redeeming all, want 0", name, got)
		}
	}
}

func TestCreatePendingSameUserKeepsOne(t *testing.T) {
	clock := newTestClock()
	db := mustNewDB(t, clock)
	for range 5 {
		mustCreatePending(t, db, samplePending(clock, "U1"))
	}
	if got := bucketLen(t, db, bucketPending); got != 1 {
		t.Errorf("pending bucket has %d records after 5 links for one user, want 1", got)
	}
	if got := bucketLen(t, db, bucketByUser); got != 1 {
		t.Errorf("pending_by_user has %d entries, want 1", got)
	}
}

func TestSweepExpired(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	db := mustNewDB(t, clock)

	b := sampleBinding("T1", "U2")
	short1 := samplePending(clock, "U1")
	short1.Expires = clock.Now().Add(time.Minute)
	short2 := samplePending(clock, "U2")
	short2.Expires = clock.Now().Add(2 * time.Minute)
	short2.Binding = &b
	long := samplePending(clock, "U3")
	long.Expires = clock.Now().Add(time.Hour)
	mustCreatePending(t, db, short1)
	mustCreatePending(t, db, short2)
	longState := mustCreatePending(t, db, long)

	got, err := db.SweepExpired(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("SweepExpired before any expiry = %v, %v; want nothing", got, err)
	}

	clock.Advance(2 * time.Minute) // short2 expires exactly now
	got, err = db.SweepExpired(ctx)
	if err != nil {
		t.Fatalf("SweepExpired: %v", err)
	}
	slices.SortFunc(got, func(a, b Pending) int { return strings.Compare(a.UserID, b.UserID) })
	if diff := cmp.Diff([]Pending{short1, short2}, got); diff != "" {
		t.Errorf("swept mismatch (-want +got):\n%s", diff)
	}
	if n := bucketLen(t, db, bucketPending); n != 1 {
		t.Errorf("pending bucket has %d records after the sweep, want 1", n)
	}
	if n := bucketLen(t, db, bucketByUser); n != 1 {
		t.Errorf("pending_by_user has %d entries after the sweep, want 1", n)
	}
	if _, err := db.RedeemPending(ctx, longState); err != nil {
		t.Errorf("RedeemPending(unexpired link) after the sweep: %v", err)
	}
}

func TestSweepExpiredRemovesUnopenable(t *testing.T) {
	clock := newTestClock()
	path := t.TempDir() + "/s.db"
	opts := Options{Keyring: mustKeyring(t, testKey(1)), Now: clock.Now}
	db := mustOpen(t, path, opts)
	mustCreatePending(t, db, samplePending(clock, "U1"))
	mustClose(t, db)
	// Damage the seal but keep the plaintext expiry readable.
	mustEditRaw(t, path, func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketPending)
		k, v := bk.Cursor().First()
		v = append([]byte(nil), v...)
		v[len(v)-1] ^= 1
		return bk.Put(append([]byte(nil), k...), v)
	})

	db = mustOpen(t, path, opts)
	clock.Advance(ttl)
	got, err := db.SweepExpired(context.Background())
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("SweepExpired error = %v, want ErrCorrupt for the damaged link", err)
	}
	want := []Pending{{Expires: time.Unix(0, clock.Now().UnixNano())}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("swept mismatch (-want +got):\n%s", diff)
	}
	for _, name := range [][]byte{bucketPending, bucketByUser} {
		if n := bucketLen(t, db, name); n != 0 {
			t.Errorf("bucket %s has %d entries after the sweep, want 0", name, n)
		}
	}
}

// TestRedeemPendingExpiredReturnsPending checks that an expired link comes
// back with ErrExpired, so that the tokens it holds can be revoked.
func TestRedeemPendingExpiredReturnsPending(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	db := mustNewDB(t, clock)
	b := sampleBinding("T1", "U1")
	want := samplePending(clock, "U1")
	want.Binding = &b
	state := mustCreatePending(t, db, want)

	clock.Advance(ttl)
	got, err := db.RedeemPending(ctx, state)
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("RedeemPending error = %v, want ErrExpired", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pending returned with ErrExpired mismatch (-want +got):\n%s", diff)
	}
	for _, secret := range []string{b.AccessToken, b.RefreshToken, want.Verifier} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains a secret", err)
		}
	}
	if _, err := db.RedeemPending(ctx, state); !errors.Is(err, ErrNotFound) {
		t.Errorf("RedeemPending after expiry, again: %v, want ErrNotFound", err)
	}
}

// TestCreatePendingRetiresLinkWithTokens checks that replacing a link that
// holds tokens does not drop them: the old link stops working but stays
// until someone takes it back to revoke its tokens.
func TestCreatePendingRetiresLinkWithTokens(t *testing.T) {
	tests := []struct {
		name string
		// takeBack gets the retired link back from the store, as the caller
		// would to revoke its tokens.
		takeBack func(t *testing.T, db *DB, oldState string) Pending
	}{
		{
			name: "swept",
			takeBack: func(t *testing.T, db *DB, oldState string) Pending {
				got, err := db.SweepExpired(context.Background())
				if err != nil {
					t.Fatalf("SweepExpired: %v", err)
				}
				if len(got) != 1 {
					t.Fatalf("SweepExpired returned %d links, want the retired one: %v", len(got), got)
				}
				if _, err := db.RedeemPending(context.Background(), oldState); !errors.Is(err, ErrNotFound) {
					t.Errorf("RedeemPending(old state) after the sweep: %v, want ErrNotFound", err)
				}
				return got[0]
			},
		},
		{
			name: "redeemed",
			takeBack: func(t *testing.T, db *DB, oldState string) Pending {
				got, err := db.RedeemPending(context.Background(), oldState)
				if !errors.Is(err, ErrExpired) {
					t.Fatalf("RedeemPending(old state) = %v, want ErrExpired", err)
				}
				if swept, err := db.SweepExpired(context.Background()); err != nil || len(swept) != 0 {
					t.Errorf("SweepExpired after redeeming = %v, %v; want nothing", swept, err)
				}
				return got
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			clock := newTestClock()
			db := mustNewDB(t, clock)
			b := sampleBinding("T1", "U1")
			first := samplePending(clock, "U1")
			first.Binding = &b
			oldState := mustCreatePending(t, db, first)
			clock.Advance(time.Minute)
			second := samplePending(clock, "U1")
			newState := mustCreatePending(t, db, second)

			if got := bucketLen(t, db, bucketPending); got != 2 {
				t.Errorf("pending bucket has %d records, want 2 (the new link and the retired one)", got)
			}
			if got := bucketLen(t, db, bucketByUser); got != 1 {
				t.Errorf("pending_by_user has %d entries, want 1", got)
			}

			got := tt.takeBack(t, db, oldState)
			if got.Binding == nil {
				t.Fatal("retired link came back without its Binding")
			}
			if diff := cmp.Diff(b, *got.Binding); diff != "" {
				t.Errorf("retired link's binding mismatch (-want +got):\n%s", diff)
			}
			if !got.Expires.Before(clock.Now()) {
				t.Errorf("retired link expires %s, want before now %s", got.Expires, clock.Now())
			}

			// The new link is untouched.
			p, err := db.RedeemPending(ctx, newState)
			if err != nil {
				t.Fatalf("RedeemPending(new state): %v", err)
			}
			if diff := cmp.Diff(second, p); diff != "" {
				t.Errorf("new link mismatch (-want +got):\n%s", diff)
			}
			for _, name := range [][]byte{bucketPending, bucketByUser} {
				if n := bucketLen(t, db, name); n != 0 {
					t.Errorf("bucket %s has %d entries at the end, want 0", name, n)
				}
			}
		})
	}
}
