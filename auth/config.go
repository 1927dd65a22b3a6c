package auth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/forcebind/forcebind/salesforce"
)

// defaultScopes are the OAuth scopes forcebind asks for: REST API access and a
// refresh token, nothing more.
var defaultScopes = []string{"api", "refresh_token"}

// Config is what a Service needs. The string settings come from the
// configuration contract in DESIGN.md; the rest are the parts it works with.
type Config struct {
	ClientID     string        // SALESFORCE_CLIENT_ID
	ClientSecret string        // SALESFORCE_CLIENT_SECRET; optional
	LoginURL     string        // SALESFORCE_LOGIN_URL, e.g. https://login.salesforce.com
	CallbackURL  string        // FORCEBIND_CALLBACK_URL; may be empty in the device flow
	APIVersion   string        // SALESFORCE_API_VERSION, e.g. "62.0"
	LinkTTL      time.Duration // FORCEBIND_LINK_TTL; default 10 minutes
	// Flow is how people sign in: FlowWeb (the default) or FlowDevice
	// (FORCEBIND_CONNECT_FLOW).
	Flow Flow
	// RequireEmailMatch binds only when the Salesforce user's email equals
	// the Slack profile's and Salesforce has verified it
	// (FORCEBIND_REQUIRE_EMAIL_MATCH). Slack gives the profile's email only
	// to an app with the users:read.email scope.
	RequireEmailMatch bool
	// CallTimeout bounds each call to Salesforce's OAuth endpoints (a code
	// exchange with its identity read, a refresh, a revocation, a device
	// code request, one device poll); default 20s.
	CallTimeout time.Duration

	Store    Store
	Notifier Notifier
	Observer Observer // nil means nothing is observed
	// APIObserver is given to every Salesforce client the Service makes, so
	// that REST calls made as people are observed too; nil means none.
	APIObserver salesforce.Observer
	HTTPClient  *http.Client // shared and pooled; nil means http.DefaultClient
	Logger      zerolog.Logger
	Now         func() time.Time // nil means time.Now
	// After waits for the device-flow poller: it returns a channel that
	// receives once d has passed, like time.After (nil means time.After).
	// Tests pass one that answers at once and records d. It must be safe
	// for concurrent use and must not block.
	After func(d time.Duration) <-chan time.Time
}

// Observer is told of what the Service does, for metrics. Its methods must
// be quick and safe for concurrent use.
type Observer interface {
	// Refreshed reports one token refresh by outcome: "ok", "relink" (the
	// grant ended), "moved" (the binding was made at a login host no
	// longer configured; nothing was sent), "restricted" (login IP ranges
	// or login hours), "timeout", "transient", "rejected" (the answer
	// failed forcebind's checks), "client_rejected" or "error".
	Refreshed(outcome string)
	// LinkEnded reports one binding link that ended, by outcome: "bound",
	// or a Failure's String.
	LinkEnded(flow Flow, outcome string)
}

// Flow is an OAuth flow people sign in with.
type Flow string

const (
	// FlowWeb is the web server flow with PKCE: a link, the callback
	// listener, and a confirmation page.
	FlowWeb Flow = "web"
	// FlowDevice is the device flow: a code typed at Salesforce's
	// verification page while forcebind polls; no listener is needed.
	FlowDevice Flow = "device"
)

// endpoints derives the OAuth endpoints from the login URL.
func endpoints(login *url.URL) oauth2.Endpoint {
	base := strings.TrimSuffix(login.String(), "/")
	return oauth2.Endpoint{
		AuthURL:  base + "/services/oauth2/authorize",
		TokenURL: base + "/services/oauth2/token",
		// Salesforce takes client_id and client_secret in the form body.
		AuthStyle: oauth2.AuthStyleInParams,
	}
}

// ParseLoginURL checks a SALESFORCE_LOGIN_URL value: an absolute http(s) URL
// with a host and nothing after it but an optional "/". It returns the URL
// without the slash.
func ParseLoginURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("login URL: %w", err)
	}
	switch {
	case !salesforce.SecureScheme(u):
		return nil, fmt.Errorf("login URL %q: scheme must be https (http only on a loopback host)", raw)
	case u.Host == "":
		return nil, fmt.Errorf("login URL %q: no host", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
		return nil, fmt.Errorf("login URL %q: want only scheme and host, e.g. https://login.salesforce.com", raw)
	}
	u.Path = ""
	return u, nil
}

// salesforceDomains are the registrable domains Salesforce serves orgs from.
// An instance or identity URL on one of them (over https) may receive tokens.
var salesforceDomains = []string{
	"salesforce.com", "force.com", "cloudforce.com", "database.com",
	"salesforce.mil", "force.mil", "sfcrmproducts.cn",
}

// errForeignURL is returned when Salesforce names a URL forcebind must not
// send a token to.
var errForeignURL = errors.New("not a Salesforce URL")

// checkTokenURL reports whether a URL from a token response (instance_url or
// id) may receive this org's tokens: https on a Salesforce domain, or the
// same origin as the configured login URL (a My Domain login, or the fake org).
func checkTokenURL(raw string, login *url.URL) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return nil, fmt.Errorf("%q: %w", raw, errForeignURL)
	}
	if sameOrigin(u, login) {
		return u, nil
	}
	host := strings.ToLower(u.Hostname())
	if u.Scheme == "https" && net.ParseIP(host) == nil {
		for _, d := range salesforceDomains {
			if strings.HasSuffix(host, "."+d) {
				return u, nil
			}
		}
	}
	return nil, fmt.Errorf("%q: %w", raw, errForeignURL)
}

func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(hostPort(a), hostPort(b))
}

// hostPort is u's host with the scheme's default port made explicit, so that
// "https://h" and "https://h:443" compare equal.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	switch u.Scheme {
	case "https":
		return net.JoinHostPort(u.Hostname(), "443")
	case "http":
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}
