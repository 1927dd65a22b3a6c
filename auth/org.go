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

// of returns the Org b's grant belongs to, where it is refreshed and
// revoked, and false when no configured Org is b's Salesforce: then b's
// tokens are sent nowhere. An Org is b's while its login URL is b's own
// login host (recorded at bind time), or, failing that, b's own instance:
// the org's My Domain that Salesforce named in its last token answer (the
// administrator moved from login.salesforce.com to the org's My Domain, or
// updated it after a My Domain rename that a refresh had already reported).
// Anything else (a sandbox binding after a move to production, another
// org's My Domain) is another Salesforce. A binding without a recorded
// login host (none is written so) counts as the sign-in Org's.
func (set orgSet) of(b store.Binding) (Org, bool) {
	if b.LoginURL == "" {
		return set.signIn(), true
	}
	if own, err := url.Parse(b.LoginURL); err == nil && own.Host != "" {
		for _, o := range set.list {
			if sameOrigin(own, o.LoginURL) {
				return o, true
			}
		}
	}
	if inst, err := url.Parse(b.InstanceURL); err == nil && inst.Host != "" {
		for _, o := range set.list {
			if sameOrigin(inst, o.LoginURL) {
				return o, true
			}
		}
	}
	return Org{}, false
}

// hosts names the configured login hosts, for a log line.
func (set orgSet) hosts() string {
	h := make([]string, len(set.list))
	for i, o := range set.list {
		h[i] = o.LoginURL.Host
	}
	return strings.Join(h, ",")
}
