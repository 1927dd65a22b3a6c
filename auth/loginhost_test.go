package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
)

// mustOtherOrg starts a second fake org, as the Salesforce an
// administrator moves forcebind to.
func mustOtherOrg(tb testing.TB) *sftest.Server {
	tb.Helper()
	other := sftest.NewServer(sftest.Options{ClientID: "forcebind-test"})
	tb.Cleanup(other.Close)
	return other
}

// tokenTraffic is what reached an org's OAuth endpoints: token requests
// (refreshes) and revocations.
func tokenTraffic(sf *sftest.Server) [2]int {
	return [2]int{sf.Calls(sftest.EndpointToken), sf.Calls(sftest.EndpointRevoke)}
}

// After SALESFORCE_LOGIN_URL moves to another Salesforce (a sandbox to
// production), a binding made at the old one is removed the next time its
// owner uses forcebind, its token sent to neither, and the owner is told
// once, with a fresh link for the new one.
func TestLoginMovedRemovesTheBindingOnce(t *testing.T) {
	tests := []struct {
		name string
		use  func(*env, store.Binding) error
	}{
		{"any command", func(e *env, _ store.Binding) error {
			_, err := e.svc.Account(t.Context(), jane)
			return err
		}},
		{"a refresh", func(e *env, b store.Binding) error {
			e.sf.ExpireAccessTokens()
			_, err := e.search(t, b)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{})
			b := e.mustBind(t, jane, janeSF)
			prod := mustOtherOrg(t)
			e.restart(t, func(c *Config) { c.LoginURL = prod.URL })
			before := tokenTraffic(e.sf)

			err := tt.use(e, b)
			if !errors.Is(err, ErrLoginMoved) || !errors.Is(err, ErrRelinkRequired) {
				t.Fatalf("use after the move = %v, want ErrLoginMoved (an ErrRelinkRequired)", err)
			}
			if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("binding kept after the move: %v", err)
			}
			got := []any{tokenTraffic(e.sf), tokenTraffic(prod), e.notes.relinkReasons()}
			want := []any{before, [2]int{}, []RelinkReason{RelinkLoginMoved}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("[old org OAuth calls, new org OAuth calls, links sent] mismatch (-want +got):\n%s", diff)
			}
			if link, _ := e.notes.lastRelink(); !strings.HasPrefix(link.URL, prod.URL+"/") {
				t.Errorf("fresh link %q is not for the new Salesforce %s", link.URL, prod.URL)
			}
			// Told once: later commands find no binding.
			if _, err := e.svc.Account(t.Context(), jane); !errors.Is(err, ErrNotLinked) {
				t.Errorf("Binding after = %v, want ErrNotLinked", err)
			}
			if n := len(e.notes.relinkReasons()); n != 1 {
				t.Errorf("%d links sent, want 1", n)
			}
			e.assertNoTokens(t, "logs", e.logs.String())
		})
	}
}

// disconnect of a binding made at a Salesforce no longer configured sends
// its token nowhere, removes it, and says it was not revoked.
func TestUnlinkAfterLoginMoved(t *testing.T) {
	e := mustEnv(t, envOptions{})
	e.mustBind(t, jane, janeSF)
	prod := mustOtherOrg(t)
	e.restart(t, func(c *Config) { c.LoginURL = prod.URL })
	before := tokenTraffic(e.sf)
	u, err := e.svc.Unlink(t.Context(), jane)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{u.Revoked, u.NotRevoked, tokenTraffic(e.sf), tokenTraffic(prod)}
	want := []any{false, RevokeLoginMoved, before, [2]int{}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("[revoked, why not, old org calls, new org calls] mismatch (-want +got):\n%s", diff)
	}
	if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("binding kept: %v", err)
	}
}

// A binding made at login.salesforce.com stays when SALESFORCE_LOGIN_URL
// becomes the org's own My Domain (its instance): it is the same org, so
// it is refreshed there.
func TestLoginMovedToTheOrgsOwnMyDomain(t *testing.T) {
	e := mustEnv(t, envOptions{})
	b := e.mustBind(t, jane, janeSF)
	// As if bound through login.salesforce.com; the instance, and now the
	// configured login URL, is the org's My Domain (the fake's URL).
	b.LoginURL = "https://login.salesforce.com"
	if err := e.db.PutBinding(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.Account(t.Context(), jane)
	if err != nil {
		t.Fatalf("Account = %v; want the binding kept", err)
	}
	if diff := cmp.Diff(accountOf(b), got); diff != "" {
		t.Errorf("Account mismatch (-want +got):\n%s", diff)
	}
	e.sf.ExpireAccessTokens()
	before := e.sf.Calls(sftest.EndpointToken)
	if _, err := e.search(t, b); err != nil {
		t.Fatalf("search: %v", err)
	}
	if n := e.sf.Calls(sftest.EndpointToken) - before; n != 1 {
		t.Errorf("%d refreshes at the configured My Domain, want 1", n)
	}
	if n := len(e.notes.relinkReasons()); n != 0 {
		t.Errorf("%d links sent, want none", n)
	}
}
