package auth

import (
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/forcebind/forcebind/store"
)

// Org is one Salesforce that forcebind signs people in to: its login URL
// and the connected app's credentials there. Every OAuth endpoint derives
// from LoginURL, and every token an Org's endpoints issued goes back only
// to them. It is a plain value, safe to share; its methods do no I/O.
type Org struct {
	// LoginURL is the login host, as ParseLoginURL returns it
	// (https://login.salesforce.com, a My Domain, the fake org).
	LoginURL *url.URL
	// ClientID is the connected app's consumer key.
	ClientID string
	// ClientSecret is the connected app's consumer secret, or "": when set
	// it is sent on token requests and verifies token answers' signatures.
	ClientSecret string
}

// AuthorizeURL is where a person's browser is sent to sign in.
func (o Org) AuthorizeURL() string { return o.endpoint("/services/oauth2/authorize") }

// TokenURL is where codes are exchanged, grants refreshed and device codes
// polled for.
func (o Org) TokenURL() string { return o.endpoint("/services/oauth2/token") }

// DeviceURL is where a device code is asked for. Salesforce serves it at
// the token endpoint (response_type=device_code), not at a device
// authorization endpoint of its own as RFC 8628 has it.
func (o Org) DeviceURL() string { return o.TokenURL() }

// RevokeURL is where a token is revoked.
func (o Org) RevokeURL() string { return o.endpoint("/services/oauth2/revoke") }

// Endpoint is the Org's authorize and token endpoints for oauth2.
func (o Org) Endpoint() oauth2.Endpoint {
	return oauth2.Endpoint{
		AuthURL:  o.AuthorizeURL(),
		TokenURL: o.TokenURL(),
		// Salesforce takes client_id and client_secret in the form body.
		AuthStyle: oauth2.AuthStyleInParams,
	}
}

// OAuth is the oauth2 configuration of the Org, asking for forcebind's
// scopes and sending the browser back to redirectURL ("" for the device
// flow and refreshes, which need none). Each call returns a new value.
func (o Org) OAuth(redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret,
		Endpoint:     o.Endpoint(),
		RedirectURL:  redirectURL,
		Scopes:       defaultScopes,
	}
}

func (o Org) endpoint(path string) string {
	return strings.TrimSuffix(o.LoginURL.String(), "/") + path
}

// orgSet is the set of Orgs a Service signs people in to and keeps grants
// of, in the order configured. Today the configuration names one; nothing
// but New assumes so. It is read-only once made.
type orgSet struct {
	list []Org
}

// signIn is the Org new links are made for: the first configured.
func (set orgSet) signIn() Org { return set.list[0] }

// fit is how sure orgSet.of is that an Org is a binding's.
type fit int

const (
	// fitNone: no configured Org is the binding's Salesforce; its tokens
	// are sent nowhere.
	fitNone fit = iota
	// fitOwn: the Org's login URL is the binding's own login host, or its
	// own instance (the org's My Domain).
	fitOwn
	// fitSameKind: neither, but the binding's login host and the Org's
	// are Salesforce login hosts of one kind, both production or both
	// sandbox (see loginKind), where the same org may well sign in: the
	// administrator moved from the org's My Domain to
	// login.salesforce.com, or to the My Domain it was renamed to (whose
	// old name then only redirects, and no refresh there can report the
	// new one). The grant is tried there: a refresh answer for another
	// org or user is rejected, and invalid_grant means forcebind moved.
	fitSameKind
)

// of returns the Org b's grant belongs to, where it is refreshed and
// revoked, and how it fits (see fit); fitNone, with no Org, when none is
// b's Salesforce: then b's tokens are sent nowhere. An Org is b's own while
// its login URL is b's own login host (recorded at bind time), or, failing
// that, b's own instance: the org's My Domain that Salesforce named in its
// last token answer. Failing both, the first Org whose login host is of
// b's login host's kind is tried. Anything else (a sandbox binding after a
// move to production, a host whose kind cannot be told) is another
// Salesforce. A binding without a recorded login host (none is written
// so) counts as the sign-in Org's own.
func (set orgSet) of(b store.Binding) (Org, fit) {
	if b.LoginURL == "" {
		return set.signIn(), fitOwn
	}
	own, err := url.Parse(b.LoginURL)
	if err == nil && own.Host != "" {
		for _, o := range set.list {
			if sameOrigin(own, o.LoginURL) {
				return o, fitOwn
			}
		}
	}
	if inst, err := url.Parse(b.InstanceURL); err == nil && inst.Host != "" {
		for _, o := range set.list {
			if sameOrigin(inst, o.LoginURL) {
				return o, fitOwn
			}
		}
	}
	if err == nil {
		if kind := loginKind(own); kind != "" {
			for _, o := range set.list {
				if loginKind(o.LoginURL) == kind {
					return o, fitSameKind
				}
			}
		}
	}
	return Org{}, fitNone
}

// loginKind says which Salesforce a login host signs people in to:
// "production" for login.salesforce.com and a production My Domain
// (name.my.salesforce.com), "sandbox" for test.salesforce.com and a
// sandbox's My Domain (name--sandbox.sandbox.my.salesforce.com). It is ""
// for every other host, whose kind is not told by its name (scratch,
// Developer Edition and legacy instance-named My Domains, other
// Salesforce domains, a loopback fake): a binding made at one is never
// tried at another host.
func loginKind(u *url.URL) string {
	if !isSalesforceHost(u) || (u.Port() != "" && u.Port() != "443") {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case host == "login.salesforce.com":
		return "production"
	case host == "test.salesforce.com":
		return "sandbox"
	}
	if name, ok := strings.CutSuffix(host, ".sandbox.my.salesforce.com"); ok && name != "" && !strings.Contains(name, ".") {
		return "sandbox"
	}
	if name, ok := strings.CutSuffix(host, ".my.salesforce.com"); ok && name != "" && !strings.Contains(name, ".") {
		return "production"
	}
	return ""
}

// hosts names the configured login hosts, for a log line.
func (set orgSet) hosts() string {
	h := make([]string, len(set.list))
	for i, o := range set.list {
		h[i] = o.LoginURL.Host
	}
	return strings.Join(h, ",")
}
