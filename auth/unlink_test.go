package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// Expired confirmations have their tokens revoked before they are
// forgotten: a revocation that fails keeps the link for the next sweep, and
// only one that keeps failing for a day is given up, in the log.
func TestSweepRevokesBeforeForgetting(t *testing.T) {
	e := mustEnv(t, envOptions{})
	e.mustConfirmPage(t, jane, janeSF) // tokens held, awaiting Confirm
	e.advance(11 * time.Minute)
	e.sf.FailNext(sftest.EndpointRevoke, http.StatusServiceUnavailable, "<html>down</html>")
	sweep := func() int {
		t.Helper()
		n, err := e.svc.Sweep(t.Context())
		if err != nil {
			t.Fatalf("Sweep: %v", err)
		}
		return n
	}
	first := sweep()
	heldLive := e.sf.LiveRefreshTokens()
	second := sweep()
	got := []int{first, heldLive, second, e.sf.LiveRefreshTokens(), e.sf.Calls(sftest.EndpointRevoke)}
	// [removed by the failing sweep, grants live then, removed by the next,
	// grants live then, revocations]
	if diff := cmp.Diff([]int{0, 1, 1, 0, 2}, got); diff != "" {
		t.Errorf("[removed, live, removed, live, revokes] mismatch (-want +got):\n%s", diff)
	}
	if n := sweep(); n != 0 {
		t.Errorf("a third sweep removed %d links, want 0", n)
	}

	t.Run("given up after a day", func(t *testing.T) {
		e := mustEnv(t, envOptions{})
		e.mustConfirmPage(t, jane, janeSF)
		e.advance(11 * time.Minute)
		e.sf.SetFailure(sftest.EndpointRevoke, http.StatusServiceUnavailable, "<html>down</html>")
		if n, _ := e.svc.Sweep(t.Context()); n != 0 {
			t.Fatalf("Sweep removed %d links while Salesforce is down, want 0", n)
		}
		e.advance(revokeRetryWindow)
		if n, _ := e.svc.Sweep(t.Context()); n != 1 {
			t.Errorf("Sweep a day later removed %d links, want 1", n)
		}
		if !strings.Contains(e.logs.String(), "giving up revoking") {
			t.Errorf("no log line says the revocation was given up:\n%s", e.logs)
		}
	})
	t.Run("a token Salesforce no longer knows", func(t *testing.T) {
		e := mustEnv(t, envOptions{})
		e.mustConfirmPage(t, jane, janeSF)
		e.advance(11 * time.Minute)
		e.sf.FailNext(sftest.EndpointRevoke, http.StatusBadRequest, `{"error":"unsupported_token_type","error_description":"invalid token"}`)
		if n, _ := e.svc.Sweep(t.Context()); n != 1 {
			t.Errorf("Sweep removed %d links after a 400, want 1: there is nothing left to revoke", n)
		}
	})
}

// disconnect deletes only the grant it revoked: when a refresh or a relink
// stores a new one while the revocation runs, that one is revoked too,
// and no grant is left live without a binding.
func TestUnlinkRevokesAGrantStoredMeanwhile(t *testing.T) {
	e := mustEnv(t, envOptions{})
	b := e.mustBind(t, jane, janeSF)
	var swapped bool
	e.sf.BeforeAnswer(sftest.EndpointRevoke, func() {
		if swapped {
			return
		}
		swapped = true
		// A relink (or a refresh with rotation) commits a new grant while
		// the first revocation is on its way.
		g, err := e.sf.Login(janeSF)
		if err != nil {
			t.Error(err)
			return
		}
		nb := b
		nb.AccessToken, nb.RefreshToken = g.AccessToken, g.RefreshToken
		if err := e.db.PutBinding(context.Background(), nb); err != nil {
			t.Error(err)
		}
	})
	u, err := e.svc.Unlink(t.Context(), jane)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{u.Revoked, e.sf.Calls(sftest.EndpointRevoke), e.sf.LiveRefreshTokens()}
	if diff := cmp.Diff([]any{true, 2, 0}, got); diff != "" {
		t.Errorf("[revoked, revocations, live refresh tokens] mismatch (-want +got):\n%s", diff)
	}
	if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("binding kept: %v", err)
	}

	t.Run("bounded", func(t *testing.T) {
		e := mustEnv(t, envOptions{})
		b := e.mustBind(t, jane, janeSF)
		e.sf.BeforeAnswer(sftest.EndpointRevoke, func() { // a new grant every time
			g, err := e.sf.Login(janeSF)
			if err != nil {
				t.Error(err)
				return
			}
			nb := b
			nb.AccessToken, nb.RefreshToken = g.AccessToken, g.RefreshToken
			if err := e.db.PutBinding(context.Background(), nb); err != nil {
				t.Error(err)
			}
		})
		if _, err := e.svc.Unlink(t.Context(), jane); err == nil {
			t.Fatal("Unlink succeeded while the binding never stopped changing")
		}
		// The grant still live is the one still stored: none is lost.
		cur, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
		if err != nil {
			t.Fatalf("binding gone with its live grant: %v", err)
		}
		if n := e.sf.LiveRefreshTokens(); n != 1 || !e.sf.RevokeRefreshToken(cur.RefreshToken) {
			t.Errorf("%d live refresh tokens, want just the stored one", n)
		}
	})
}

// A binding whose record cannot be opened traps nobody: every command
// says to connect again, connect replaces it, and disconnect removes it,
// saying the grant could not be revoked, with the key id in the log.
func TestUnreadableBinding(t *testing.T) {
	t.Run("commands and refreshes", func(t *testing.T) {
		e := mustEnv(t, envOptions{})
		b := e.mustBind(t, jane, janeSF)
		e.reopenStore(t, damageBinding(jane))
		_, err := e.svc.Account(t.Context(), jane)
		if !errors.Is(err, ErrUnreadable) || !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("Binding = %v, want ErrUnreadable wrapping the store's ErrCorrupt", err)
		}
		if !strings.Contains(err.Error(), e.ring.PrimaryID()) {
			t.Errorf("error %q does not name the key id %s", err, e.ring.PrimaryID())
		}
		e.sf.ExpireAccessTokens()
		if _, err := e.search(t, b); !errors.Is(err, ErrUnreadable) {
			t.Errorf("search needing a refresh = %v, want ErrUnreadable", err)
		}
	})
	t.Run("connect replaces it", func(t *testing.T) {
		e := mustEnv(t, envOptions{})
		e.mustBind(t, jane, janeSF)
		e.reopenStore(t, damageBinding(jane))
		nb := e.mustBind(t, jane, janeSF)
		got, err := e.svc.Account(t.Context(), jane)
		if err != nil {
			t.Fatalf("Account after connecting again = %v; want the new binding's", err)
		}
		if diff := cmp.Diff(accountOf(nb), got); diff != "" {
			t.Errorf("Account after connecting again mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("disconnect removes it", func(t *testing.T) {
		e := mustEnv(t, envOptions{})
		e.mustBind(t, jane, janeSF)
		e.reopenStore(t, damageBinding(jane))
		revokes := e.sf.Calls(sftest.EndpointRevoke)
		u, err := e.svc.Unlink(t.Context(), jane)
		if err != nil {
			t.Fatal(err)
		}
		got := []any{u.Revoked, u.NotRevoked, u.Account.UserID, e.sf.Calls(sftest.EndpointRevoke) - revokes}
		if diff := cmp.Diff([]any{false, RevokeUnreadable, jane.UserID, 0}, got); diff != "" {
			t.Errorf("[revoked, why not, user, revocations] mismatch (-want +got):\n%s", diff)
		}
		if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("record kept: %v", err)
		}
		if !strings.Contains(e.logs.String(), "key id "+e.ring.PrimaryID()) {
			t.Errorf("the log does not name the key id %s:\n%s", e.ring.PrimaryID(), e.logs)
		}
		if _, err := e.svc.Unlink(t.Context(), jane); !errors.Is(err, ErrNotLinked) {
			t.Errorf("second Unlink = %v, want ErrNotLinked", err)
		}
	})
}

// hookStore is the real store with hooks that run once, at the moment
// they are named for: what lands in the store between a read and a write
// of the Service. Set them with its methods, which may race with the
// Service's calls.
type hookStore struct {
	*bolt.DB
	mu          sync.Mutex
	afterGet    func(err error) // after a GetBinding, with its error
	beforeWrite func()          // before a binding is stored (PutBinding or ReplaceBinding)
}

// onAfterGet makes fn run once, after the next GetBinding.
func (h *hookStore) onAfterGet(fn func(err error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.afterGet = fn
}

// onBeforeWrite makes fn run once, before the next binding is stored.
func (h *hookStore) onBeforeWrite(fn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.beforeWrite = fn
}

func (h *hookStore) GetBinding(ctx context.Context, teamID, userID string) (store.Binding, error) {
	b, err := h.DB.GetBinding(ctx, teamID, userID)
	h.mu.Lock()
	fn := h.afterGet
	h.afterGet = nil
	h.mu.Unlock()
	if fn != nil {
		fn(err)
	}
	return b, err
}

// writing runs the beforeWrite hook, if one is set.
func (h *hookStore) writing() {
	h.mu.Lock()
	fn := h.beforeWrite
	h.beforeWrite = nil
	h.mu.Unlock()
	if fn != nil {
		fn()
	}
}

func (h *hookStore) PutBinding(ctx context.Context, b store.Binding) error {
	h.writing()
	return h.DB.PutBinding(ctx, b)
}

func (h *hookStore) ReplaceBinding(ctx context.Context, b store.Binding) (store.Replaced, error) {
	h.writing()
	return h.DB.ReplaceBinding(ctx, b)
}

// disconnect of a record that cannot be opened deletes it only while it
// still cannot: a good binding a confirmed link stored just after the
// record was read is revoked and deleted like any other, never dropped
// with its grant live.
func TestUnlinkUnreadableSparesABindingStoredMeanwhile(t *testing.T) {
	e := mustEnv(t, envOptions{})
	b := e.mustBind(t, jane, janeSF)
	e.reopenStore(t, damageBinding(jane))
	hs := &hookStore{DB: e.db}
	e.restart(t, func(c *Config) { c.Store = hs })
	g, err := e.sf.Login(janeSF)
	if err != nil {
		t.Fatal(err)
	}
	good := b
	good.AccessToken, good.RefreshToken = g.AccessToken, g.RefreshToken
	hs.onAfterGet(func(err error) {
		if !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("the first read = %v, want the damaged record", err)
		}
		// A confirm lands between the read and the delete.
		if err := e.db.PutBinding(context.Background(), good); err != nil {
			t.Error(err)
		}
	})

	u, err := e.svc.Unlink(t.Context(), jane)
	if err != nil {
		t.Fatal(err)
	}
	if e.sf.RevokeRefreshToken(good.RefreshToken) {
		t.Error("the grant stored meanwhile was left live at Salesforce")
	}
	if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("binding kept: %v", err)
	}
	if !u.Revoked || u.Account.Username != janeSF {
		t.Errorf("Unlink = %+v, want the binding stored meanwhile revoked", u)
	}
}

// A confirmed link revokes the grant it replaces as it was at the moment
// of the write: a refresh that rotated the refresh token just before is
// not left live with no record of it.
func TestBindRevokesTheGrantItReallyReplaced(t *testing.T) {
	hs := &hookStore{}
	e := mustEnv(t, envOptions{store: func(db *bolt.DB) Store { hs.DB = db; return hs }})
	e.sf.SetRotation(true)
	b := e.mustBind(t, jane, janeSF)
	token, _ := e.mustConfirmPage(t, jane, janeSF) // connect again, as the same user
	hs.onBeforeWrite(func() {
		// The old binding's session expires and is refreshed, rotating its
		// refresh token, between the confirm's read and its write.
		e.sf.ExpireAccessTokens()
		if _, err := e.search(t, b); err != nil {
			t.Errorf("search: %v", err)
		}
	})
	if p := e.confirm(t, token, "confirm"); p.status != http.StatusOK {
		t.Fatalf("confirm answered %d:\n%s", p.status, p.body)
	}
	cur, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.sf.LiveRefreshTokens(); n != 1 || !e.sf.RevokeRefreshToken(cur.RefreshToken) {
		t.Errorf("%d live refresh tokens, want just the new binding's", n)
	}
}

// mustHeldLinks leaves n people's sign-ins held for a confirmation that
// never comes, and expires them.
func (e *env) mustHeldLinks(tb testing.TB, n int) {
	tb.Helper()
	for i := range n {
		who := jane
		who.UserID = fmt.Sprintf("U0HELD%d", i)
		e.mustConfirmPage(tb, who, janeSF)
	}
	e.advance(11 * time.Minute)
}

// One sweep spends at most sweepBudget revoking: the links it does not
// reach wait for the next sweep, and each is revoked once.
func TestSweepBounded(t *testing.T) {
	e := mustEnv(t, envOptions{})
	e.mustHeldLinks(t, 3)
	// Each revocation takes longer than the whole budget.
	e.sf.BeforeAnswer(sftest.EndpointRevoke, func() { e.advance(sweepBudget + time.Second) })
	var removed []int
	for range 4 {
		n, err := e.svc.Sweep(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		removed = append(removed, n)
	}
	got := []any{removed, e.sf.Calls(sftest.EndpointRevoke), e.sf.LiveRefreshTokens()}
	if diff := cmp.Diff([]any{[]int{1, 1, 1, 0}, 3, 0}, got); diff != "" {
		t.Errorf("[removed per sweep, revocations, live grants] mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(e.logs.String(), "the other expired links wait for the next one") {
		t.Errorf("no log line says links were left for the next sweep:\n%s", e.logs)
	}
}

// While Salesforce cannot be reached, a sweep says so in one line, with
// how many links it keeps, not in one line per link.
func TestSweepLogsFailuresOnce(t *testing.T) {
	e := mustEnv(t, envOptions{})
	e.mustHeldLinks(t, 3)
	e.sf.SetFailure(sftest.EndpointRevoke, http.StatusServiceUnavailable, "<html>down</html>")
	if n, err := e.svc.Sweep(t.Context()); err != nil || n != 0 {
		t.Fatalf("Sweep = %d, %v; want nothing removed, no error", n, err)
	}
	var lines []string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, "kept for the next sweep") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"links":3`) {
		t.Errorf("log lines about failed revocations: %q, want one naming 3 links", lines)
	}
}
