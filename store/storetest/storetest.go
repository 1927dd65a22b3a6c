package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forcebind/forcebind/store"
)

// A Backend is everything a binding store offers forcebind: what auth
// consumes (auth.Store) and what the key commands and the daemon's start
// need besides. Each method's contract is the suite's subtests; the doc
// comments of store/bolt's DB say the same in words.
type Backend interface {
	// Bindings.
	GetBinding(ctx context.Context, teamID, userID string) (store.Binding, error)
	PutBinding(ctx context.Context, b store.Binding) error
	DeleteBinding(ctx context.Context, teamID, userID string) error
	DeleteBindingIf(ctx context.Context, teamID, userID, refreshToken string) error
	UpdateTokens(ctx context.Context, teamID, userID, usedRefreshToken string, t store.Tokens) (store.Binding, error)
	CountBindings(ctx context.Context) (int, error)
	ReplaceBinding(ctx context.Context, b store.Binding) (store.Replaced, error)
	DeleteBindingIfUnreadable(ctx context.Context, teamID, userID string) error

	// Pending links.
	CreatePending(ctx context.Context, p store.Pending) (state string, err error)
	RedeemPending(ctx context.Context, state string) (store.Pending, error)
	ListExpired(ctx context.Context) ([]store.ExpiredLink, error)
	DeletePending(ctx context.Context, id string) error

	// Keys.
	SealedBy(ctx context.Context) ([]store.KeyRecords, error)
	Rotate(ctx context.Context) (store.RotateReport, error)
	DeleteUnopenable(ctx context.Context) ([]store.KeyRecords, error)

	// Close releases the store; calling it again returns nil.
	Close() error
}

// Config is what the suite asks of an open.
type Config struct {
	// Keyring seals and opens the records; never nil.
	Keyring *store.Keyring
	// Now is the clock for expiries; never nil. The suite moves it to
	// expire links, so the backend must ask it rather than its own clock.
	Now func() time.Time
	// AllowMissingKeys asks the backend to open a store whose records
	// need keys the ring lacks, as the key rotation command does; without
	// it, such an open must fail with a *store.MissingKeysError.
	AllowMissingKeys bool
}

// An Opener opens one store, the same one at every call, with cfg. It
// returns the backend's error as it is (wrapped or not), so that the suite
// can check what an open refuses; on error its Backend is ignored. The
// suite closes each Backend it opened before it opens the store again.
type Opener func(cfg Config) (Backend, error)

// NewStore makes a new, empty store for the test t, which it may clean up
// with t.Cleanup, and returns the way to open it.
type NewStore func(t *testing.T) Opener

// Run checks that a backend keeps the contract of a binding store, each
// part of it a subtest of t. Nothing in it depends on how the backend
// keeps its records; only Backend's methods and store's exported API are
// used. A backend's own tests (damaged files, locks, what it writes where)
// stay with the backend.
func Run(t *testing.T, newStore NewStore) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, newStore) })
	}
}

// cases lists the suite's subtests, by theme.
var cases = []struct {
	name string
	run  func(*testing.T, NewStore)
}{
	{"BindingRoundTrip", testBindingRoundTrip},
	{"PutBindingReplaces", testPutBindingReplaces},
	{"BindingKeys", testBindingKeys},
	{"DeleteBinding", testDeleteBinding},
	{"UpdateTokens", testUpdateTokens},
	{"UpdateTokensRace", testUpdateTokensRace},
	{"DeleteBindingIf", testDeleteBindingIf},
	{"CountBindings", testCountBindings},
	{"ReplaceBinding", testReplaceBinding},
	{"DeleteBindingIfUnreadable", testDeleteBindingIfUnreadable},

	{"PendingRoundTrip", testPendingRoundTrip},
	{"CreatePendingState", testCreatePendingState},
	{"CreatePendingValidates", testCreatePendingValidates},
	{"RedeemPending", testRedeemPending},
	{"RedeemPendingConcurrent", testRedeemPendingConcurrent},
	{"CreatePendingReplacesPrevious", testCreatePendingReplacesPrevious},
	{"CreatePendingSameUserKeepsOne", testCreatePendingSameUserKeepsOne},
	{"Sweep", testSweep},
	{"ListExpiredThenDeletePending", testListExpiredThenDeletePending},
	{"RedeemPendingExpiredReturnsPending", testRedeemPendingExpiredReturnsPending},
	{"CreatePendingRetiresLinkWithTokens", testCreatePendingRetiresLinkWithTokens},

	{"Reopen", testReopen},
	{"CloseTwice", testCloseTwice},
	{"ContextCanceled", testContextCanceled},

	{"OpenWrongKey", testOpenWrongKey},
	{"OpenResealsOldCanary", testOpenResealsOldCanary},
	{"Rotate", testRotate},
	{"OpenMissingKeys", testOpenMissingKeys},
	{"OpenAllowMissingKeys", testOpenAllowMissingKeys},
	{"SealedBy", testSealedBy},
	{"DeleteUnopenableLostKey", testDeleteUnopenableLostKey},
}

// PendingTTL is how long SamplePending's links live.
const PendingTTL = 10 * time.Minute

// Key returns a fixed, distinct 32-byte key for each n, the same in every
// run and every package's tests.
func Key(n int) []byte {
	k := sha256.Sum256(fmt.Appendf(nil, "forcebind test key %d", n))
	return k[:]
}

// Ring returns the keyring of keys, the first one primary, and fails tb
// if they do not make one.
func Ring(tb testing.TB, keys ...[]byte) *store.Keyring {
	tb.Helper()
	kr, err := store.NewKeyring(keys...)
	if err != nil {
		tb.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

// A Clock is a settable clock for Config.Now, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at a fixed time with nanoseconds, so that a
// backend that loses precision is caught.
func NewClock() *Clock {
	return &Clock{t: time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// SampleBinding returns a complete binding whose tokens are unique to the
// user, so that scans for them are meaningful.
func SampleBinding(team, user string) store.Binding {
	at := time.Date(2025, 1, 2, 3, 4, 5, 600, time.UTC)
	return store.Binding{
		TeamID:           team,
		UserID:           user,
		SalesforceUserID: "005" + user,
		OrgID:            "00D000000000001",
		Username:         user + "@acme.example",
		LoginURL:         "https://login.salesforce.com",
		InstanceURL:      "https://acme.my.salesforce.com",
		AccessToken:      "00D!AQ-access-" + team + "-" + user + "-Zq8rT2",
		RefreshToken:     "5Aep-refresh-" + team + "-" + user + "-Wk3nV7",
		IssuedAt:         at,
		LinkedAt:         at.Add(time.Minute),
		Scopes:           []string{"api", "refresh_token"},
	}
}

// SamplePending returns a fresh link for user in team T1, created at now
// and live for PendingTTL.
func SamplePending(now time.Time, user string) store.Pending {
	return store.Pending{
		TeamID: "T1", TeamName: "Acme", UserID: user, ChannelID: "C1",
		DisplayName: "Jane " + user, Verifier: "verifier-" + user + "-abcdefghijklmnopqrstuvwxyz0123456789",
		Created: now, Expires: now.Add(PendingTTL),
	}
}

// AssertNoKeyMaterial fails tb if msg holds any of the keys in any
// encoding a leak would likely take (see Encodings).
func AssertNoKeyMaterial(tb testing.TB, msg string, keys ...[]byte) {
	tb.Helper()
	for _, k := range keys {
		for _, n := range Encodings(string(k)) {
			if strings.Contains(msg, n) {
				tb.Errorf("error %q contains key material %q", msg, n)
			}
		}
	}
}

// Encodings returns s raw and in the encodings a leak would likely take:
// base64 in its four forms and hex in both cases.
func Encodings(s string) []string {
	b := []byte(s)
	return []string{
		s,
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
	}
}

// mustOpen opens the store with cfg and closes it when the test ends,
// failing the test if Close fails. Closing it earlier is fine.
func mustOpen(tb testing.TB, open Opener, cfg Config) Backend {
	tb.Helper()
	db, err := open(cfg)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

// config is the usual Config: the ring of keys and the clock (nil: the
// time now).
func config(tb testing.TB, clock *Clock, keys ...[]byte) Config {
	tb.Helper()
	cfg := Config{Keyring: Ring(tb, keys...), Now: time.Now}
	if clock != nil {
		cfg.Now = clock.Now
	}
	return cfg
}

// mustNewDB opens a new store under the key Key(1) and the given clock.
func mustNewDB(t *testing.T, newStore NewStore, clock *Clock) Backend {
	t.Helper()
	return mustOpen(t, newStore(t), config(t, clock, Key(1)))
}

// mustClose closes db now, for tests that open the store again.
func mustClose(tb testing.TB, db Backend) {
	tb.Helper()
	if err := db.Close(); err != nil {
		tb.Fatalf("Close: %v", err)
	}
}

func mustPutBinding(tb testing.TB, db Backend, b store.Binding) {
	tb.Helper()
	if err := db.PutBinding(tb.Context(), b); err != nil {
		tb.Fatalf("PutBinding: %v", err)
	}
}

func mustCreatePending(tb testing.TB, db Backend, p store.Pending) string {
	tb.Helper()
	state, err := db.CreatePending(tb.Context(), p)
	if err != nil {
		tb.Fatalf("CreatePending: %v", err)
	}
	return state
}

// mustSweepAll moves clock two days on, past every expiry the suite sets,
// and sweeps: what comes back is every pending link the store still held.
// It is how the suite sees what is stored without knowing how.
func mustSweepAll(tb testing.TB, db Backend, clock *Clock) []store.Pending {
	tb.Helper()
	clock.Advance(48 * time.Hour)
	return mustSweep(tb, db)
}

// mustSweep sweeps as forcebind's sweep does: it lists the expired links,
// then deletes each by its id, and returns the links it deleted. It fails
// tb if a step fails or a link does not open.
func mustSweep(tb testing.TB, db Backend) []store.Pending {
	tb.Helper()
	links, err := db.ListExpired(tb.Context())
	if err != nil {
		tb.Fatalf("ListExpired: %v", err)
	}
	var swept []store.Pending
	for _, l := range links {
		if l.Err != nil {
			tb.Errorf("expired link %s does not open: %v", l.ID, l.Err)
		}
		if err := db.DeletePending(tb.Context(), l.ID); err != nil {
			tb.Fatalf("DeletePending(%s): %v", l.ID, err)
		}
		swept = append(swept, l.Pending)
	}
	return swept
}
