package auth

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/store/bolt"
)

// With Config.AllowedOrgIDs set, a sign-in to another org is refused in
// both flows before anything is stored: the confirmation page is not shown,
// the grant is revoked, and the person is told plainly. The org check comes
// before the email check.
func TestAllowedOrgs(t *testing.T) {
	const otherOrg = "00D000000000062"
	tests := []struct {
		name string
		orgs func(fakeOrg string) []string
		want string // "linked" or a Failure's String
	}{
		{"any org", nil, "linked"},
		{"the org, 18 characters", func(org string) []string { return []string{otherOrg, org} }, "linked"},
		{"the org, 18 characters in lower case", func(org string) []string { return []string{strings.ToLower(org)} }, "linked"},
		{"the org, 15 characters", func(org string) []string { return []string{org[:15]} }, "linked"},
		{"another org only", func(string) []string { return []string{otherOrg} }, "org_not_allowed"},
	}
	for _, flow := range []Flow{FlowWeb, FlowDevice} {
		for _, tt := range tests {
			t.Run(string(flow)+"/"+tt.name, func(t *testing.T) {
				e := mustEnv(t, envOptions{flow: flow, allowedOrgs: tt.orgs, requireEmail: true})
				e.notes.setEmail(janeSF, nil)
				var how string
				if flow == FlowDevice {
					how = e.mustDeviceLink(t, janeSF)
				} else {
					how = e.webLink(t, http.StatusForbidden, "org "+e.sf.OrgID()+", which is not one of them")
				}
				if how != tt.want {
					t.Fatalf("link ended %q, want %q; logs:\n%s", how, tt.want, e.logs)
				}
				n, err := e.db.CountBindings(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]any{"bindings": n, "live grants": e.sf.LiveRefreshTokens(), "failures": e.notes.failed()}
				want := map[string]any{"bindings": 1, "live grants": 1, "failures": []Failure(nil)}
				if tt.want != "linked" {
					want = map[string]any{"bindings": 0, "live grants": 0, "failures": []Failure{FailureOrgNotAllowed}}
					if l := e.notes.lookups(); l != 0 {
						t.Errorf("%d email lookups for a refused org", l)
					}
					if !strings.Contains(e.logs.String(), "FORCEBIND_ALLOWED_ORG_IDS") {
						t.Errorf("the log does not say which setting refused it:\n%s", e.logs)
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("mismatch (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// Nothing of a refused org's sign-in is stored to wait for Confirm: once
// everything pending has expired, the sweep finds no sign-in held.
func TestRefusedOrgHoldsNothing(t *testing.T) {
	e := mustEnv(t, envOptions{allowedOrgs: func(string) []string { return []string{"00D000000000062"} }})
	p := browser(t, http.MethodGet, e.mustRedirect(t), nil, nil)
	if p.status != http.StatusForbidden || confirmToken.MatchString(p.body) {
		t.Fatalf("callback for a refused org answered %d:\n%s", p.status, p.body)
	}
	e.advance(time.Hour)
	gone, err := e.db.ListExpired(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range gone {
		if l.Pending.Binding != nil {
			t.Errorf("a sign-in of org %s is held for confirmation", l.Pending.Binding.OrgID)
		}
	}
}

// New refuses a list with an id that is not an org's.
func TestNewRefusesBadOrgIDs(t *testing.T) {
	_, err := New(Config{
		ClientID: "cid", LoginURL: "https://login.salesforce.com", CallbackURL: "http://localhost:8787/oauth/callback",
		AllowedOrgIDs: []string{"0055g00000JaneAAAR"}, Store: &bolt.DB{}, Notifier: newNotes(),
	})
	if err == nil || !strings.Contains(err.Error(), "not an org id") {
		t.Errorf("New = %v, want an error naming the bad org id", err)
	}
}
