package auth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

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
	// AllowedOrgIDs are the Salesforce orgs people may bind
	// (FORCEBIND_ALLOWED_ORG_IDS), as 15- or 18-character org ids; empty
	// means any. A sign-in to another org is refused in both flows before
	// anything is stored, its grant is revoked, and the person is told. A
	// binding to another org made before the list said so is ended the
	// first time it is used: its grant revoked, the binding removed, and a
	// fresh link sent (RelinkOrgNotAllowed).
	AllowedOrgIDs []string
	// AllowCustomLoginHost accepts a LoginURL whose host is neither a
	// Salesforce domain nor loopback (FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST).
	// That host receives the client secret, codes and refresh tokens, and
	// its origin is trusted for instance_url and id.
	AllowCustomLoginHost bool

	Store    Store
	Notifier Notifier
	Observer Observer // nil means nothing is observed
	// APIObserver is given to every Salesforce client the Service makes, so
	// that REST calls made as people are observed too; nil means none.
	APIObserver salesforce.Observer
	// HTTPClient is shared and pooled; nil means a default one. The
	// Service uses a copy that never follows a redirect.
	HTTPClient *http.Client
	Logger     zerolog.Logger
	Now        func() time.Time // nil means time.Now
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
	// longer configured, and nothing was sent; or the configured one of
	// the same kind does not know its grant), "org_not_allowed" (its org
	// is not in AllowedOrgIDs), "restricted" (login IP ranges or login
	// hours), "timeout", "transient", "rejected" (the answer failed
	// forcebind's checks), "client_rejected" or "error".
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

// ErrNotSalesforceHost is returned by ParseLoginURL for a host that is
// neither a Salesforce domain nor loopback, when custom hosts are not allowed.
var ErrNotSalesforceHost = errors.New("not a Salesforce login host")

// ParseLoginURL checks a SALESFORCE_LOGIN_URL value: an absolute https URL
// (http only on a loopback host) with a host and nothing after it but an
// optional "/". Its host must be a Salesforce domain (login.salesforce.com,
// test.salesforce.com, a My Domain such as acme.my.salesforce.com, …) or
// loopback (a local fake such as sftest), unless allowCustomHost: every
// secret forcebind holds goes to that host. It returns the URL without the
// slash.
func ParseLoginURL(raw string, allowCustomHost bool) (*url.URL, error) {
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
	case !allowCustomHost && !isSalesforceHost(u) && !salesforce.IsLoopback(u.Hostname()):
		return nil, fmt.Errorf("login URL %q: %w: want login.salesforce.com, test.salesforce.com, a My Domain "+
			"(*.my.salesforce.com) or another host under %s", raw, ErrNotSalesforceHost, strings.Join(salesforceDomains, ", "))
	}
	u.Path = ""
	return u, nil
}

// ParseCallbackURL checks a FORCEBIND_CALLBACK_URL value: an absolute URL
// with a host and no user info, over https, or plain http only on a
// loopback host (localhost, 127.0.0.0/8, [::1]). On any other host the
// authorization code and the confirmation would cross the network in clear.
func ParseCallbackURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil:
		return nil, fmt.Errorf("callback URL %q: want an absolute http(s) URL", raw)
	case !salesforce.SecureScheme(u):
		return nil, fmt.Errorf("callback URL %q: plain http is allowed only on a loopback host (localhost, 127.0.0.1, [::1]): "+
			"on %s the authorization code and the confirmation would cross the network unencrypted; use https", raw, u.Hostname())
	}
	return u, nil
}

// ParseOrgIDs reads a FORCEBIND_ALLOWED_ORG_IDS value: org ids separated by
// commas (space around them is dropped), each of 15 or 18 characters. It
// returns them in their 15-character form, which is case-sensitive: an
// 18-character id's last three characters say which letters are upper case,
// so its case is restored from them and any case of it is accepted. An
// empty list means any org. Every bad id is named in one error.
func ParseOrgIDs(list string) ([]string, error) {
	var ids, problems []string
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		id, err := orgID15(f)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		ids = append(ids, id)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return ids, nil
}

// orgID15 returns the 15-character, case-sensitive form of a 15- or
// 18-character org id.
func orgID15(id string) (string, error) {
	id15 := id
	switch {
	case len(id) != 15 && len(id) != 18:
		return "", fmt.Errorf("org id %q: want 15 or 18 letters and digits", id)
	case len(id) == 18:
		// A copied id has its case; one typed from a list may be all lower
		// or all upper case. Any other case that the suffix does not give
		// means a character was mistyped.
		id15 = restoreCase(id)
		oneCase := id[:15] == strings.ToLower(id[:15]) || id[:15] == strings.ToUpper(id[:15])
		if !salesforce.ValidID(id15+id[15:]) || (id[:15] != id15 && !oneCase) {
			return "", fmt.Errorf("org id %q: not a Salesforce id (its last three characters do not fit the first fifteen); copy it again", id)
		}
	case !salesforce.ValidID(id):
		return "", fmt.Errorf("org id %q: want 15 or 18 letters and digits", id)
	}
	if !strings.HasPrefix(id15, "00D") {
		return "", fmt.Errorf("org id %q: not an org id (those start with 00D)", id)
	}
	return id15, nil
}

// restoreCase returns the first 15 characters of an 18-character
// Salesforce id with each letter's case set as the id's suffix says: one
// suffix character per five, a bit per upper-case letter. The case the
// letters came in is ignored, as Salesforce ignores it in 18-character ids;
// salesforce.ValidID then tells whether the suffix fits (no bit on a digit,
// no character outside the suffix alphabet).
func restoreCase(id18 string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	out := []byte(lowerASCII(id18[:15]))
	for chunk := range 3 {
		suffix := id18[15+chunk]
		if 'a' <= suffix && suffix <= 'z' {
			suffix -= 'a' - 'A'
		}
		bits := strings.IndexByte(alphabet, suffix)
		for i := range 5 {
			if c := out[chunk*5+i]; bits > 0 && bits&(1<<i) != 0 && 'a' <= c && c <= 'z' {
				out[chunk*5+i] = c - ('a' - 'A')
			}
		}
	}
	return string(out)
}

// orgAllowed reports whether Config.AllowedOrgIDs lets a person bind a user
// of org (an id Salesforce named, checked by parseIdentityPath). The ids are
// compared in their 15-character form, case-sensitively, as Salesforce
// compares them.
func (s *Service) orgAllowed(org string) bool {
	if len(s.cfg.AllowedOrgIDs) == 0 {
		return true
	}
	if len(org) > 15 {
		org = org[:15]
	}
	return slices.Contains(s.cfg.AllowedOrgIDs, org)
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
	if isSalesforceHost(u) {
		return u, nil
	}
	return nil, fmt.Errorf("%q: %w", raw, errForeignURL)
}

// isSalesforceHost reports whether u is https on a name under one of
// salesforceDomains (never an IP address).
func isSalesforceHost(u *url.URL) bool {
	host := strings.ToLower(u.Hostname())
	if u.Scheme != "https" || net.ParseIP(host) != nil {
		return false
	}
	for _, d := range salesforceDomains {
		if strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
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
