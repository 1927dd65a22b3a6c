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

// moveBinding records jane's binding as made at login (and, if set, at
// instance), as if it had been bound there, and makes the fake org's
// refresh answers name instance and identity URLs on answerHost, as a
// Salesforce answering there would.
func (e *env) moveBinding(tb testing.TB, b store.Binding, login, instance, answerHost string) {
	tb.Helper()
	b.LoginURL = login
	if instance != "" {
		b.InstanceURL = instance
	}
	if err := e.db.PutBinding(tb.Context(), b); err != nil {
		tb.Fatal(err)
	}
	id := mustURL(tb, e.sf.IdentityURL(janeSF))
	e.sf.RewriteGrants(func(grantType string, g *sftest.Grant) {
		if grantType == "refresh_token" {
			g.InstanceURL = "https://" + answerHost
			g.ID = "https://" + answerHost + id.Path
		}
	})
}

// Moving SALESFORCE_LOGIN_URL within one org keeps everyone linked: from
// the org's My Domain to login.salesforce.com, or to the My Domain it was
// renamed to (the old name then only redirects, so the binding's own host
// can tell nothing). Both hosts are production ones, so the grant is tried
// at the configured host; it works there, and that host is recorded with
// the new tokens. Nothing goes to the old host.
func TestLoginMovedWithinTheOrg(t *testing.T) {
	tests := []struct {
		name                  string
		bound, configured     string // login hosts
		instance, newInstance string
	}{
		{"from its My Domain to login.salesforce.com", "acme.my.salesforce.com", "login.salesforce.com", "acme.my.salesforce.com", "acme.my.salesforce.com"},
		{"a My Domain renamed", "acme-old.my.salesforce.com", "acme.my.salesforce.com", "acme-old.my.salesforce.com", "acme.my.salesforce.com"},
		{"from login.salesforce.com to another My Domain of its kind", "login.salesforce.com", "acme.my.salesforce.com", "na99.salesforce.com", "acme.my.salesforce.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{routeHosts: []string{tt.bound, tt.configured, tt.instance, tt.newInstance}})
			b := e.mustBind(t, jane, janeSF)
			e.moveBinding(t, b, "https://"+tt.bound, "https://"+tt.instance, tt.newInstance)
			e.restart(t, func(c *Config) { c.LoginURL = "https://" + tt.configured })

			a, err := e.svc.Account(t.Context(), jane)
			if err != nil {
				t.Fatalf("Account after the move = %v; want the binding kept\nlogs:\n%s", err, e.logs)
			}
			stored, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
			if err != nil {
				t.Fatal(err)
			}
			refreshes, _ := e.obs.got()
			got := []any{stored.LoginURL, stored.InstanceURL, a.LoginURL, e.notes.relinkReasons(), e.sf.HostCalls(tt.configured), refreshes}
			want := []any{"https://" + tt.configured, "https://" + tt.newInstance, "https://" + tt.configured, []RelinkReason(nil), 1, []string{"ok"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("[stored login host, stored instance, account's login host, links sent, calls at the configured host, refreshes] mismatch (-want +got):\n%s", diff)
			}
			if tt.bound != tt.newInstance && tt.bound != tt.configured {
				if n := e.sf.HostCalls(tt.bound); n != 0 {
					t.Errorf("%d requests to the old login host, want none", n)
				}
			}
			// Used as usual from now on: no second refresh before one is due.
			if err := e.searchAs(t, jane); err != nil {
				t.Fatalf("search after the move: %v", err)
			}
			if refreshes, _ := e.obs.got(); len(refreshes) != 1 {
				t.Errorf("refreshes %v after a search, want still the one", refreshes)
			}
			e.assertNoTokens(t, "logs", e.logs.String())
		})
	}
}

// A binding tried at the configured login host of its kind whose grant is
// not known there was made at another Salesforce: it is removed, and its
// owner told that forcebind moved, not that the grant ended.
func TestLoginMovedToAnotherOrgOfTheSameKind(t *testing.T) {
	e := mustEnv(t, envOptions{routeHosts: []string{"acme.my.salesforce.com"}})
	b := e.mustBind(t, jane, janeSF)
	e.moveBinding(t, b, "https://acme.my.salesforce.com", "https://acme.my.salesforce.com", "acme.my.salesforce.com")
	globex := mustOtherOrg(t)
	e.hc.Transport = globex.Route(e.hc.Transport, "globex.my.salesforce.com")
	e.restart(t, func(c *Config) { c.LoginURL = "https://globex.my.salesforce.com" })

	_, err := e.svc.Account(t.Context(), jane)
	if !errors.Is(err, ErrLoginMoved) {
		t.Fatalf("Account = %v, want ErrLoginMoved", err)
	}
	refreshes, _ := e.obs.got()
	got := []any{globex.Calls(sftest.EndpointToken), e.notes.relinkReasons(), refreshes}
	want := []any{1, []RelinkReason{RelinkLoginMoved}, []string{"moved"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("[token calls at the new org, links sent, refresh outcomes] mismatch (-want +got):\n%s", diff)
	}
	if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("binding kept: %v", err)
	}
}

// A move between production and a sandbox is another Salesforce, whatever
// the hosts: nothing is sent to the configured one.
func TestLoginMovedBetweenProductionAndSandbox(t *testing.T) {
	tests := []struct{ bound, configured string }{
		{"acme.my.salesforce.com", "test.salesforce.com"},
		{"acme--uat.sandbox.my.salesforce.com", "login.salesforce.com"},
		{"test.salesforce.com", "acme.my.salesforce.com"},
	}
	for _, tt := range tests {
		t.Run(tt.bound+" to "+tt.configured, func(t *testing.T) {
			e := mustEnv(t, envOptions{routeHosts: []string{tt.bound, tt.configured}})
			b := e.mustBind(t, jane, janeSF)
			e.moveBinding(t, b, "https://"+tt.bound, "https://"+tt.bound, tt.configured)
			e.restart(t, func(c *Config) { c.LoginURL = "https://" + tt.configured })
			if _, err := e.svc.Account(t.Context(), jane); !errors.Is(err, ErrLoginMoved) {
				t.Fatalf("Account = %v, want ErrLoginMoved", err)
			}
			if n := e.sf.HostCalls(tt.configured) + e.sf.HostCalls(tt.bound); n != 0 {
				t.Errorf("%d requests sent to either host, want none", n)
			}
		})
	}
}
