package storetest

import (
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/store"
)

const ttl = PendingTTL

// samplePending is SamplePending at the clock's time.
func samplePending(clock *Clock, user string) store.Pending {
	return SamplePending(clock.Now(), user)
}

func testPendingRoundTrip(t *testing.T, newStore NewStore) {
	clock := NewClock()
	b := SampleBinding("T1", "U2")
	withBinding := samplePending(clock, "U2")
	withBinding.Binding = &b

	tests := []struct {
		name string
		p    store.Pending
	}{
		{name: "fresh link", p: samplePending(clock, "U1")},
		{name: "awaiting confirm", p: withBinding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := mustNewDB(t, newStore, clock)
			state := mustCreatePending(t, db, tt.p)
			got, err := db.RedeemPending(t.Context(), state)
			if err != nil {
				t.Fatalf("RedeemPending: %v", err)
			}
			if diff := cmp.Diff(tt.p, got); diff != "" {
				t.Errorf("pending mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testCreatePendingState(t *testing.T, newStore NewStore) {
	clock := NewClock()
	db := mustNewDB(t, newStore, clock)
	state := mustCreatePending(t, db, samplePending(clock, "U1"))

	raw, err := base64.RawURLEncoding.Strict().DecodeString(state)
	if err != nil || len(raw) != 32 || strings.ContainsAny(state, "=+/") {
		t.Fatalf("state %q: want 32 bytes of unpadded base64url (decoded %d bytes, %v)", state, len(raw), err)
	}
	// Where the link is stored, and that only the hash of its state is,
	// is each backend's to test (store.NewState makes both).
	if other := mustCreatePending(t, db, samplePending(clock, "U2")); other == state {
		t.Error("two links got the same state")
	}
}

func testCreatePendingValidates(t *testing.T, newStore NewStore) {
	clock := NewClock()
	db := mustNewDB(t, newStore, clock)
	now := clock.Now()
	tests := []struct {
		name string
		edit func(*store.Pending)
	}{
		{name: "no team", edit: func(p *store.Pending) { p.TeamID = "" }},
		{name: "no user", edit: func(p *store.Pending) { p.UserID = "" }},
		{name: "no expiry", edit: func(p *store.Pending) { p.Expires = time.Time{} }},
		{name: "expires now", edit: func(p *store.Pending) { p.Expires = now }},
		{name: "expired", edit: func(p *store.Pending) { p.Expires = now.Add(-time.Second) }},
		{name: "expires before created", edit: func(p *store.Pending) { p.Created = now.Add(time.Hour); p.Expires = now.Add(time.Minute) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePending(clock, "U1")
			tt.edit(&p)
			if _, err := db.CreatePending(t.Context(), p); err == nil {
				t.Fatal("CreatePending: no error")
			}
		})
	}
	if swept := mustSweepAll(t, db, clock); len(swept) != 0 {
		t.Errorf("%d links stored by the refused CreatePending calls, want none", len(swept))
	}
}

func testRedeemPending(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	unknown := base64.RawURLEncoding.EncodeToString(make([]byte, 32))

	tests := []struct {
		name    string
		redeem  func(t *testing.T, db Backend, clock *Clock, state string) error
		wantErr error
	}{
		{
			name: "first use",
			redeem: func(t *testing.T, db Backend, _ *Clock, state string) error {
				_, err := db.RedeemPending(ctx, state)
				return err
			},
		},
		{
			name: "just before expiry",
			redeem: func(t *testing.T, db Backend, clock *Clock, state string) error {
				clock.Advance(ttl - time.Nanosecond)
				_, err := db.RedeemPending(ctx, state)
				return err
			},
		},
		{
			name: "replayed",
			redeem: func(t *testing.T, db Backend, _ *Clock, state string) error {
				if _, err := db.RedeemPending(ctx, state); err != nil {
					t.Fatalf("first RedeemPending: %v", err)
				}
				_, err := db.RedeemPending(ctx, state)
				return err
			},
			wantErr: store.ErrNotFound,
		},
		{
			name: "expired",
			redeem: func(t *testing.T, db Backend, clock *Clock, state string) error {
				clock.Advance(ttl)
				_, err := db.RedeemPending(ctx, state)
				if !errors.Is(err, store.ErrExpired) {
					return err
				}
				// Expired links are deleted, not left for a retry.
				if _, err := db.RedeemPending(ctx, state); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("RedeemPending after expiry, again: %v, want ErrNotFound", err)
				}
				return err
			},
			wantErr: store.ErrExpired,
		},
		{name: "unknown", redeem: redeemString(unknown), wantErr: store.ErrNotFound},
		{name: "empty", redeem: redeemString(""), wantErr: store.ErrNotFound},
		{name: "not base64", redeem: redeemString("!!!!"), wantErr: store.ErrNotFound},
		{name: "padded", redeem: redeemString(base64.URLEncoding.EncodeToString(make([]byte, 32))), wantErr: store.ErrNotFound},
		{name: "short", redeem: redeemString(base64.RawURLEncoding.EncodeToString(make([]byte, 31))), wantErr: store.ErrNotFound},
		{name: "long", redeem: redeemString(strings.Repeat("A", 1<<16)), wantErr: store.ErrNotFound},
		{name: "invalid UTF-8", redeem: redeemString("\xff\xfe\x00"), wantErr: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := NewClock()
			db := mustNewDB(t, newStore, clock)
			state := mustCreatePending(t, db, samplePending(clock, "U1"))
			err := tt.redeem(t, db, clock, state)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("RedeemPending error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == store.ErrNotFound && tt.name != "replayed" {
				// A bad state must not disturb the real link.
				if _, err := db.RedeemPending(ctx, state); err != nil {
					t.Errorf("RedeemPending of the real link after a bad state: %v", err)
				}
			}
			if swept := mustSweepAll(t, db, clock); len(swept) != 0 {
				t.Errorf("%d links left at the end, want none", len(swept))
			}
		})
	}
}

func redeemString(s string) func(*testing.T, Backend, *Clock, string) error {
	return func(t *testing.T, db Backend, _ *Clock, _ string) error {
		_, err := db.RedeemPending(t.Context(), s)
		return err
	}
}

func testRedeemPendingConcurrent(t *testing.T, newStore NewStore) {
	clock := NewClock()
	db := mustNewDB(t, newStore, clock)
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
			_, err := db.RedeemPending(t.Context(), state)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, store.ErrNotFound):
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

func testCreatePendingReplacesPrevious(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	clock := NewClock()
	db := mustNewDB(t, newStore, clock)

	first := mustCreatePending(t, db, samplePending(clock, "U1"))
	clock.Advance(time.Minute)
	want := samplePending(clock, "U1")
	want.ChannelID = "C2"
	second := mustCreatePending(t, db, want)
	other := mustCreatePending(t, db, samplePending(clock, "U2")) // another user is unaffected

	if _, err := db.RedeemPending(ctx, first); !errors.Is(err, store.ErrNotFound) {
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
	if swept := mustSweepAll(t, db, clock); len(swept) != 0 {
		t.Errorf("%d links left after redeeming all, want none (one per user): %v", len(swept), swept)
	}
}

func testCreatePendingSameUserKeepsOne(t *testing.T, newStore NewStore) {
	clock := NewClock()
	db := mustNewDB(t, newStore, clock)
	for range 5 {
		mustCreatePending(t, db, samplePending(clock, "U1"))
	}
	// The four replaced links held no tokens, so they are gone: only the
	// live one is left to expire.
	if swept := mustSweepAll(t, db, clock); len(swept) != 1 {
		t.Errorf("%d links stored after 5 links for one user, want 1", len(swept))
	}
}

// testSweep: a sweep (list, then delete each) takes exactly the
// links whose expiry has come, with what they hold, and leaves the live
// ones working.
func testSweep(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	clock := NewClock()
	db := mustNewDB(t, newStore, clock)

	b := SampleBinding("T1", "U2")
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

	if got := mustSweep(t, db); len(got) != 0 {
		t.Fatalf("sweep before any expiry = %v; want nothing", got)
	}

	clock.Advance(2 * time.Minute) // short2 expires exactly now
	got := mustSweep(t, db)
	slices.SortFunc(got, func(a, b store.Pending) int { return strings.Compare(a.UserID, b.UserID) })
	if diff := cmp.Diff([]store.Pending{short1, short2}, got); diff != "" {
		t.Errorf("swept mismatch (-want +got):\n%s", diff)
	}
	if again := mustSweep(t, db); len(again) != 0 {
		t.Errorf("a second sweep = %v; want nothing, the first deleted them", again)
	}
	if _, err := db.RedeemPending(ctx, longState); err != nil {
		t.Errorf("RedeemPending(unexpired link) after the sweep: %v", err)
	}
	if swept := mustSweepAll(t, db, clock); len(swept) != 0 {
		t.Errorf("%d links left after the sweep and the redeem, want none", len(swept))
	}
}

// testRedeemPendingExpiredReturnsPending checks that an expired link comes
// back with ErrExpired, so that the tokens it holds can be revoked.
func testRedeemPendingExpiredReturnsPending(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	clock := NewClock()
	db := mustNewDB(t, newStore, clock)
	b := SampleBinding("T1", "U1")
	want := samplePending(clock, "U1")
	want.Binding = &b
	state := mustCreatePending(t, db, want)

	clock.Advance(ttl)
	got, err := db.RedeemPending(ctx, state)
	if !errors.Is(err, store.ErrExpired) {
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
	if _, err := db.RedeemPending(ctx, state); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RedeemPending after expiry, again: %v, want ErrNotFound", err)
	}
}

// testCreatePendingRetiresLinkWithTokens checks that replacing a link that
// holds tokens does not drop them: the old link stops working but stays
// until someone takes it back to revoke its tokens.
func testCreatePendingRetiresLinkWithTokens(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		// takeBack gets the retired link back from the store, as the caller
		// would to revoke its tokens.
		takeBack func(t *testing.T, db Backend, oldState string) store.Pending
	}{
		{
			name: "swept",
			takeBack: func(t *testing.T, db Backend, oldState string) store.Pending {
				got := mustSweep(t, db)
				if len(got) != 1 {
					t.Fatalf("the sweep took %d links, want the retired one: %v", len(got), got)
				}
				if _, err := db.RedeemPending(t.Context(), oldState); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("RedeemPending(old state) after the sweep: %v, want ErrNotFound", err)
				}
				return got[0]
			},
		},
		{
			name: "redeemed",
			takeBack: func(t *testing.T, db Backend, oldState string) store.Pending {
				got, err := db.RedeemPending(t.Context(), oldState)
				if !errors.Is(err, store.ErrExpired) {
					t.Fatalf("RedeemPending(old state) = %v, want ErrExpired", err)
				}
				if swept := mustSweep(t, db); len(swept) != 0 {
					t.Errorf("sweep after redeeming = %v; want nothing", swept)
				}
				return got
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			clock := NewClock()
			db := mustNewDB(t, newStore, clock)
			b := SampleBinding("T1", "U1")
			first := samplePending(clock, "U1")
			first.Binding = &b
			oldState := mustCreatePending(t, db, first)
			clock.Advance(time.Minute)
			second := samplePending(clock, "U1")
			newState := mustCreatePending(t, db, second)

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
			if swept := mustSweepAll(t, db, clock); len(swept) != 0 {
				t.Errorf("%d links left at the end, want none", len(swept))
			}
		})
	}
}

// ListExpired lists what expired and removes nothing; DeletePending then
// removes one link, and only that one. This is how the sweep revokes a
// link's tokens before it forgets the link.
func testListExpiredThenDeletePending(t *testing.T, newStore NewStore) {
	ctx := t.Context()
	clock := NewClock()
	db := mustNewDB(t, newStore, clock)

	b := SampleBinding("T1", "U2")
	plain := samplePending(clock, "U1")
	plain.Expires = clock.Now().Add(time.Minute)
	held := samplePending(clock, "U2")
	held.Expires = clock.Now().Add(2 * time.Minute)
	held.Binding = &b
	later := samplePending(clock, "U3")
	later.Expires = clock.Now().Add(time.Hour)
	for _, p := range []store.Pending{plain, held, later} {
		mustCreatePending(t, db, p)
	}
	if got, err := db.ListExpired(ctx); err != nil || len(got) != 0 {
		t.Fatalf("ListExpired before any expiry = %v, %v; want nothing", got, err)
	}

	clock.Advance(2 * time.Minute) // held expires exactly now
	list := func() ([]store.ExpiredLink, []store.Pending) {
		t.Helper()
		got, err := db.ListExpired(ctx)
		if err != nil {
			t.Fatalf("ListExpired: %v", err)
		}
		slices.SortFunc(got, func(a, b store.ExpiredLink) int { return strings.Compare(a.Pending.UserID, b.Pending.UserID) })
		var ps []store.Pending
		for _, l := range got {
			if l.Err != nil || l.ID == "" {
				t.Errorf("link %+v: want an id and no error", l)
			}
			ps = append(ps, l.Pending)
		}
		return got, ps
	}
	links, got := list()
	if diff := cmp.Diff([]store.Pending{plain, held}, got); diff != "" {
		t.Errorf("expired mismatch (-want +got):\n%s", diff)
	}
	if _, again := list(); !cmp.Equal(got, again) {
		t.Errorf("a second ListExpired = %v; listing must remove nothing", again)
	}
	if err := db.DeletePending(ctx, links[1].ID); err != nil {
		t.Fatalf("DeletePending: %v", err)
	}
	if _, left := list(); !cmp.Equal([]store.Pending{plain}, left) {
		t.Errorf("expired after deleting one = %v, want only U1's", left)
	}
	if err := db.DeletePending(ctx, links[1].ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeletePending twice = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"", "zz", "00", strings.Repeat("ab", 32)} {
		if err := db.DeletePending(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeletePending(%q) = %v, want ErrNotFound", id, err)
		}
	}
	// What is left: U1's expired link and U3's live one.
	if swept := mustSweepAll(t, db, clock); len(swept) != 2 {
		t.Errorf("%d links left, want 2", len(swept))
	}
}
