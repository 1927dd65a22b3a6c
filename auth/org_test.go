package auth

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
)

// Every endpoint of an org derives from its login URL, with or without
// the slash ParseLoginURL drops, and its oauth2 configuration carries its
// own credentials.
func TestOrgEndpoints(t *testing.T) {
	for _, raw := range []string{"https://acme.my.salesforce.com", "https://acme.my.salesforce.com/"} {
		login, err := ParseLoginURL(raw, false)
		if err != nil {
			t.Fatal(err)
		}
		org := Org{LoginURL: login, ClientID: "acme-app", ClientSecret: "acme-secret"}
		c := org.OAuth("https://forcebind.example/oauth/callback")
		got := []any{org.AuthorizeURL(), org.TokenURL(), org.DeviceURL(), org.RevokeURL(), c.Endpoint, c.ClientID, c.ClientSecret, c.RedirectURL}
		want := []any{
			"https://acme.my.salesforce.com/services/oauth2/authorize",
			"https://acme.my.salesforce.com/services/oauth2/token",
			"https://acme.my.salesforce.com/services/oauth2/token", // Salesforce asks for device codes there
			"https://acme.my.salesforce.com/services/oauth2/revoke",
			oauth2.Endpoint{
				AuthURL:   "https://acme.my.salesforce.com/services/oauth2/authorize",
				TokenURL:  "https://acme.my.salesforce.com/services/oauth2/token",
				AuthStyle: oauth2.AuthStyleInParams,
			},
			"acme-app", "acme-secret", "https://forcebind.example/oauth/callback",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: [authorize, token, device, revoke, endpoint, id, secret, redirect] mismatch (-want +got):\n%s", raw, diff)
		}
	}
}

// A binding's grant belongs to the org its login host names (or its own
// instance does), whichever of the configured orgs that is; failing both,
// it is tried at the first org whose login host is of its login host's
// kind, production or sandbox; one of no such org belongs nowhere, and one
// with no login host recorded to the org links are made for.
func TestOrgOfABinding(t *testing.T) {
	u := func(raw string) *url.URL {
		v, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	prod := Org{LoginURL: u("https://login.salesforce.com"), ClientID: "prod"}
	sandbox := Org{LoginURL: u("https://test.salesforce.com"), ClientID: "sandbox"}
	acme := Org{LoginURL: u("https://acme.my.salesforce.com"), ClientID: "acme"}
	all := orgSet{list: []Org{prod, sandbox, acme}}
	prodOnly := orgSet{list: []Org{prod}}
	acmeOnly := orgSet{list: []Org{acme}}
	tests := []struct {
		name string
		set  orgSet
		b    store.Binding
		want string // the Org's ClientID; "" for none
		fit  fit
	}{
		{"its login host", all, store.Binding{LoginURL: "https://test.salesforce.com", InstanceURL: "https://acme--dev.sandbox.my.salesforce.com"}, "sandbox", fitOwn},
		{"its login host, port spelled out", all, store.Binding{LoginURL: "https://login.salesforce.com:443"}, "prod", fitOwn},
		{"its instance is a configured My Domain", all, store.Binding{LoginURL: "https://login.example", InstanceURL: "https://acme.my.salesforce.com"}, "acme", fitOwn},
		{"no login host recorded", all, store.Binding{InstanceURL: "https://other.my.salesforce.com"}, "prod", fitOwn},
		{"a production My Domain, tried at login.salesforce.com", prodOnly,
			store.Binding{LoginURL: "https://globex.my.salesforce.com", InstanceURL: "https://globex.my.salesforce.com"}, "prod", fitSameKind},
		{"a My Domain renamed, tried at the new name", acmeOnly,
			store.Binding{LoginURL: "https://acme-old.my.salesforce.com", InstanceURL: "https://acme-old.my.salesforce.com"}, "acme", fitSameKind},
		{"login.salesforce.com, tried at a My Domain", acmeOnly, store.Binding{LoginURL: "https://login.salesforce.com", InstanceURL: "https://na1.salesforce.com"}, "acme", fitSameKind},
		{"a sandbox's My Domain, tried at test.salesforce.com", all,
			store.Binding{LoginURL: "https://globex--uat.sandbox.my.salesforce.com", InstanceURL: "https://globex--uat.sandbox.my.salesforce.com"}, "sandbox", fitSameKind},
		{"a sandbox, production configured", prodOnly, store.Binding{LoginURL: "https://test.salesforce.com", InstanceURL: "https://globex--uat.sandbox.my.salesforce.com"}, "", fitNone},
		{"production, a sandbox configured", orgSet{list: []Org{sandbox}}, store.Binding{LoginURL: "https://login.salesforce.com"}, "", fitNone},
		{"a host whose kind is not told", prodOnly, store.Binding{LoginURL: "https://globex.develop.my.salesforce.com"}, "", fitNone},
		{"not a Salesforce host", prodOnly, store.Binding{LoginURL: "https://login.example", InstanceURL: "https://login.example"}, "", fitNone},
		{"plain http", prodOnly, store.Binding{LoginURL: "http://globex.my.salesforce.com"}, "", fitNone},
		{"not a URL", all, store.Binding{LoginURL: "%%", InstanceURL: "%%"}, "", fitNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			org, f := tt.set.of(tt.b)
			if org.ClientID != tt.want || f != tt.fit {
				t.Errorf("of = %q, fit %d; want %q, fit %d", org.ClientID, f, tt.want, tt.fit)
			}
		})
	}
}

// With two orgs configured, each binding's grant is refreshed and revoked
// at its own org, with that org's credentials, and that org's answers are
// checked against its own login host; the other org hears nothing of it.
func TestGrantsGoBackToTheirOwnOrg(t *testing.T) {
	e := mustEnv(t, envOptions{sfSecret: secret, svcSecret: secret})
	e.mustBind(t, jane, janeSF)

	other := sftest.NewServer(sftest.Options{ClientID: "other-app", ClientSecret: "other-secret"})
	t.Cleanup(other.Close)
	otherLogin, err := ParseLoginURL(other.URL, false)
	if err != nil {
		t.Fatal(err)
	}
	// New makes one Org from the configuration; a second is added the way
	// a configuration of several would.
	e.svc.orgs.list = append(e.svc.orgs.list, Org{LoginURL: otherLogin, ClientID: "other-app", ClientSecret: "other-secret"})
	g, err := other.Login(samSF)
	if err != nil {
		t.Fatal(err)
	}
	org, user, err := parseIdentityPath(mustURL(t, g.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.PutBinding(t.Context(), store.Binding{
		TeamID: sam.TeamID, UserID: sam.UserID, SalesforceUserID: user, OrgID: org, Username: samSF,
		LoginURL: otherLogin.String(), InstanceURL: g.InstanceURL, AccessToken: g.AccessToken, RefreshToken: g.RefreshToken,
		IssuedAt: time.Now(), LinkedAt: time.Now(),
	}); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name string
		who  Requester
		do   func(testing.TB, Requester) error
		want [2][2]int // [token, revoke] calls this step made at [e.sf, other]
	}{
		{"jane refreshes", jane, e.searchAs, [2][2]int{{1, 0}, {0, 0}}},
		{"sam refreshes", sam, e.searchAs, [2][2]int{{0, 0}, {1, 0}}},
		{"sam unlinks", sam, e.unlinkRevoked, [2][2]int{{0, 0}, {0, 1}}},
		{"jane unlinks", jane, e.unlinkRevoked, [2][2]int{{0, 1}, {0, 0}}},
	}
	for _, st := range steps {
		e.sf.ExpireAccessTokens()
		other.ExpireAccessTokens()
		before := [2][2]int{tokenTraffic(e.sf), tokenTraffic(other)}
		if err := st.do(t, st.who); err != nil {
			t.Fatalf("%s: %v\nlogs:\n%s", st.name, err, e.logs)
		}
		after := [2][2]int{tokenTraffic(e.sf), tokenTraffic(other)}
		got := [2][2]int{{after[0][0] - before[0][0], after[0][1] - before[0][1]}, {after[1][0] - before[1][0], after[1][1] - before[1][1]}}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: [[token, revoke] at the first org, at the other] mismatch (-want +got):\n%s", st.name, diff)
		}
	}
	if n := other.LiveRefreshTokens(); n != 0 {
		t.Errorf("%d refresh tokens live at the other org after sam unlinked, want 0", n)
	}
}

// searchAs searches as who through Client, as the bot does for each
// message.
func (e *env) searchAs(tb testing.TB, who Requester) error {
	sf, _, err := e.svc.Client(tb.Context(), who)
	if err != nil {
		return err
	}
	_, err = sf.Search(tb.Context(), "acme")
	return err
}

// unlinkRevoked unlinks who and fails unless Salesforce confirmed the
// revocation.
func (e *env) unlinkRevoked(tb testing.TB, who Requester) error {
	u, err := e.svc.Unlink(tb.Context(), who)
	if err == nil && !u.Revoked {
		err = errors.New("unlinked without a revocation")
	}
	return err
}

func mustURL(tb testing.TB, raw string) *url.URL {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}
