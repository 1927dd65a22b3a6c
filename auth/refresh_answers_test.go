package auth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
)

// A refresh answer that names a new instance_url (an instance migration, a
// My Domain rename) is stored with the new tokens, and the retry and every
// later client go there.
func TestRefreshStoresTheNewInstance(t *testing.T) {
	const moved = "acme-2.my.salesforce.com"
	e := mustEnv(t, envOptions{sfSecret: secret, svcSecret: secret, routeHosts: []string{moved}})
	b := e.mustBind(t, jane, janeSF)
	e.sf.RewriteGrants(func(grantType string, g *sftest.Grant) {
		if grantType == "refresh_token" {
			g.InstanceURL = "https://" + moved
		}
	})
	e.sf.ExpireAccessTokens()
	sf, err := e.svc.client(b, jane)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sf.Search(t.Context(), "acme"); err != nil {
		t.Fatalf("search after the refresh: %v", err)
	}
	nb, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil {
		t.Fatal(err)
	}
	// The search read the object info of the five objects first, in one
	// batch: it met the 401 at the old host, and after the refresh it went
	// to the new one, and then the search itself.
	got := []any{nb.InstanceURL, sf.InstanceURL(), e.sf.HostCalls(moved)}
	want := []any{"https://" + moved, "https://" + moved, 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("[stored instance, client instance, requests to it] after the refresh mismatch (-want +got):\n%s", diff)
	}
	// The next request's client starts at the stored instance.
	if _, err := e.search(t, nb); err != nil {
		t.Fatalf("search with the stored binding: %v", err)
	}
	// The object info is cached for the user: one request more.
	if n := e.sf.HostCalls(moved); n != 3 {
		t.Errorf("%d requests at the new instance after a second search, want 3", n)
	}
	e.assertNoTokens(t, "logs", e.logs.String())
}

// invalid_grant for the user's login IP ranges or login hours leaves the
// grant alive: the binding is kept, nobody is sent a link, and the person
// is told why. Every other invalid_grant still ends the binding.
func TestInvalidGrantByDescription(t *testing.T) {
	tests := []struct {
		desc        string
		wantErr     error
		wantKept    bool
		wantOutcome string
	}{
		{"ip restricted or invalid login hours", ErrRestricted, true, "restricted"},
		{"IP restricted or invalid login hours", ErrRestricted, true, "restricted"},
		{"ip restricted", ErrRestricted, true, "restricted"},
		{"invalid login hours", ErrRestricted, true, "restricted"},
		{"expired access/refresh token", ErrRelinkRequired, false, "relink"},
		{"authentication failure", ErrRelinkRequired, false, "relink"},
		{"inactive user", ErrRelinkRequired, false, "relink"},
		{"", ErrRelinkRequired, false, "relink"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			e := mustEnv(t, envOptions{})
			b := e.mustBind(t, jane, janeSF)
			e.sf.ExpireAccessTokens()
			e.sf.FailNext(sftest.EndpointToken, http.StatusBadRequest, `{"error":"invalid_grant","error_description":"`+tt.desc+`"}`)
			if _, err := e.search(t, b); !errors.Is(err, tt.wantErr) {
				t.Fatalf("search = %v, want %v", err, tt.wantErr)
			}
			_, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
			_, relinks := e.notes.counts()
			refreshes, _ := e.obs.got()
			got := []any{err == nil, relinks, refreshes}
			want := []any{tt.wantKept, map[bool]int{true: 0, false: 1}[tt.wantKept], []string{tt.wantOutcome}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("[kept, links sent, refresh outcomes] mismatch (-want +got):\n%s", diff)
			}
			if tt.wantKept {
				if _, err := e.search(t, b); err != nil {
					t.Errorf("search once the restriction passes: %v", err)
				}
			}
		})
	}
}

// A refresh that only timed out, or whose answer forcebind could not
// verify, says so, keeps the binding and sends no link: it is not the
// person's session that is bad, and disconnecting would revoke a good
// grant.
func TestRefreshTimeoutAndRejectedAnswer(t *testing.T) {
	t.Run("the caller's deadline", func(t *testing.T) {
		e := mustEnv(t, envOptions{timeout: 500 * time.Millisecond})
		b := e.mustBind(t, jane, janeSF)
		e.sf.ExpireAccessTokens()
		e.sf.SetEndpointLatency(sftest.EndpointToken, time.Hour)
		sf, err := e.svc.client(b, jane)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err = sf.Search(ctx, "acme")
		if !errors.Is(err, ErrTimeout) || errors.Is(err, salesforce.ErrSessionExpired) {
			t.Fatalf("search = %v, want ErrTimeout and not ErrSessionExpired", err)
		}
		e.mustKeepBinding(t)
	})
	t.Run("the refresh's own deadline", func(t *testing.T) {
		e := mustEnv(t, envOptions{timeout: 100 * time.Millisecond})
		b := e.mustBind(t, jane, janeSF)
		e.sf.ExpireAccessTokens()
		e.sf.SetEndpointLatency(sftest.EndpointToken, time.Hour)
		_, err := e.search(t, b)
		if !errors.Is(err, ErrTimeout) || errors.Is(err, salesforce.ErrSessionExpired) {
			t.Fatalf("search = %v, want ErrTimeout and not ErrSessionExpired", err)
		}
		e.mustKeepBinding(t)
		if refreshes, _ := e.obs.got(); !slices.Equal(refreshes, []string{"timeout"}) {
			t.Errorf("refresh outcomes %v, want [timeout]", refreshes)
		}
	})
	t.Run("a signature that does not verify", func(t *testing.T) {
		e := mustEnv(t, envOptions{sfSecret: secret, svcSecret: secret})
		b := e.mustBind(t, jane, janeSF)
		e.sf.RewriteGrants(func(grantType string, g *sftest.Grant) {
			if grantType == "refresh_token" {
				g.Signature = "bm90IGEgc2lnbmF0dXJl"
			}
		})
		e.sf.ExpireAccessTokens()
		revokes := e.sf.Calls(sftest.EndpointRevoke)
		_, err := e.search(t, b)
		if !errors.Is(err, ErrRefreshRejected) || errors.Is(err, salesforce.ErrSessionExpired) {
			t.Fatalf("search = %v, want ErrRefreshRejected and not ErrSessionExpired", err)
		}
		e.mustKeepBinding(t)
		if n := e.sf.Calls(sftest.EndpointRevoke) - revokes; n != 1 {
			t.Errorf("%d revocations of the unused answer's token, want 1", n)
		}
		if !strings.Contains(e.logs.String(), `"level":"error"`) || !strings.Contains(e.logs.String(), "refresh answer rejected") {
			t.Errorf("the operator was not told at error level:\n%s", e.logs)
		}
	})
	t.Run("a rejected answer with a rotated refresh token", func(t *testing.T) {
		// Salesforce retired the binding's refresh token for the one in the
		// answer, which is revoked unused: the error says the binding can
		// no longer be renewed, where without rotation it still can.
		for _, rotation := range []bool{false, true} {
			e := mustEnv(t, envOptions{sfSecret: secret, svcSecret: secret})
			e.sf.SetRotation(rotation)
			b := e.mustBind(t, jane, janeSF)
			e.sf.RewriteGrants(func(grantType string, g *sftest.Grant) {
				if grantType == "refresh_token" {
					g.Signature = "bm90IGEgc2lnbmF0dXJl"
				}
			})
			e.sf.ExpireAccessTokens()
			_, err := e.search(t, b)
			if !errors.Is(err, ErrRefreshRejected) || errors.Is(err, ErrRefreshSpent) != rotation {
				t.Errorf("rotation %t: search = %v, want ErrRefreshRejected, and ErrRefreshSpent only with rotation", rotation, err)
			}
			if live := e.sf.LiveRefreshTokens(); live != map[bool]int{false: 1, true: 0}[rotation] {
				t.Errorf("rotation %t: %d live refresh tokens", rotation, live)
			}
		}
	})
	t.Run("an answer for another user", func(t *testing.T) {
		e := mustEnv(t, envOptions{})
		b := e.mustBind(t, jane, janeSF)
		e.sf.RewriteGrants(func(grantType string, g *sftest.Grant) {
			if grantType == "refresh_token" {
				g.ID = e.sf.IdentityURL("sam@acme.example")
			}
		})
		e.sf.ExpireAccessTokens()
		if _, err := e.search(t, b); !errors.Is(err, ErrRefreshRejected) {
			t.Fatalf("search = %v, want ErrRefreshRejected", err)
		}
		e.mustKeepBinding(t)
	})
}

// mustKeepBinding fails unless jane's binding is still stored and nobody
// was sent a link.
func (e *env) mustKeepBinding(tb testing.TB) {
	tb.Helper()
	if _, err := e.db.GetBinding(tb.Context(), jane.TeamID, jane.UserID); err != nil {
		tb.Errorf("binding lost: %v", err)
	}
	if _, relinks := e.notes.counts(); relinks != 0 {
		tb.Errorf("%d fresh links sent, want none", relinks)
	}
}

// Tokens a refresh obtained that end up stored nowhere are revoked: a
// rotated refresh token would otherwise stay live at Salesforce with no
// record of it.
func TestRefreshRevokesWhatItDrops(t *testing.T) {
	t.Run("relinked while the refresh ran", func(t *testing.T) {
		e := mustEnv(t, envOptions{})
		e.sf.SetRotation(true)
		b := e.mustBind(t, jane, janeSF)
		var relinked store.Binding
		e.sf.RewriteGrants(func(grantType string, _ *sftest.Grant) {
			if grantType != "refresh_token" {
				return
			}
			// A confirmed relink lands between the refresh's read and its
			// commit.
			g, err := e.sf.Login(janeSF)
			if err != nil {
				t.Error(err)
				return
			}
			relinked = b
			relinked.AccessToken, relinked.RefreshToken = g.AccessToken, g.RefreshToken
			if err := e.db.PutBinding(context.Background(), relinked); err != nil {
				t.Error(err)
			}
		})
		e.sf.ExpireAccessTokens()
		if _, err := e.search(t, b); err != nil {
			t.Fatalf("search: %v", err)
		}
		cur, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
		if err != nil {
			t.Fatal(err)
		}
		// Live: only the relinked grant. The refresh rotated b's token
		// away and revoked the one it could not store.
		if got := []any{cur.RefreshToken == relinked.RefreshToken, e.sf.LiveRefreshTokens()}; !cmp.Equal(got, []any{true, 1}) {
			t.Errorf("[relinked grant stored, live refresh tokens] = %v, want [true 1]", got)
		}
	})
	t.Run("unlinked while the refresh ran", func(t *testing.T) {
		e := mustEnv(t, envOptions{})
		e.sf.SetRotation(true)
		b := e.mustBind(t, jane, janeSF)
		e.sf.RewriteGrants(func(grantType string, _ *sftest.Grant) {
			if grantType == "refresh_token" {
				if err := e.db.DeleteBinding(context.Background(), jane.TeamID, jane.UserID); err != nil {
					t.Error(err)
				}
			}
		})
		e.sf.ExpireAccessTokens()
		if _, err := e.search(t, b); !errors.Is(err, ErrNotLinked) {
			t.Fatalf("search = %v, want ErrNotLinked", err)
		}
		if n := e.sf.LiveRefreshTokens(); n != 0 {
			t.Errorf("%d refresh tokens live after the binding went, want 0", n)
		}
	})
}
