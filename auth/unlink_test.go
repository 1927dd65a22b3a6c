package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
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
