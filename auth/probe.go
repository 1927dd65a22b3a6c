package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// OAuthError is an answer of Salesforce's authorize or token endpoint that
// is not what was asked for, as oauth2.RetrieveError describes one, without
// the body. Match it with errors.As.
type OAuthError struct {
	// Status is the HTTP status of the answer.
	Status int
	// Code is the OAuth "error", such as "invalid_grant"; "" when the answer
	// named none (an outage page, something that is not Salesforce).
	Code string
	// Description is the "error_description", bounded and made printable;
	// "" when there was none.
	Description string
}

// Error names the status and the code; the description is left out, as a
// token endpoint error's body is never logged whole.
func (e *OAuthError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("answered %d", e.Status)
	}
	return fmt.Sprintf("answered %d %s", e.Status, e.Code)
}

// oauthErrorOf reads an OAuth error answer (RFC 6749 section 5.2). A body
// that is not JSON, or whose code is implausibly long, names no code.
func oauthErrorOf(status int, body []byte) *OAuthError {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Error) > 64 {
		return &OAuthError{Status: status}
	}
	return &OAuthError{Status: status, Code: e.Error, Description: printable(e.Description, 300)}
}

// ProbeConfig is what NewProbe needs: the settings of Config that decide
// what `forcebind run` sends to Salesforce.
type ProbeConfig struct {
	ClientID     string // SALESFORCE_CLIENT_ID
	ClientSecret string // SALESFORCE_CLIENT_SECRET; sent when set, as the Service sends it
	LoginURL     string // SALESFORCE_LOGIN_URL
	CallbackURL  string // FORCEBIND_CALLBACK_URL, as the authorize and code probes send it
	// AllowCustomLoginHost is Config.AllowCustomLoginHost.
	AllowCustomLoginHost bool
	// HTTPClient is used without following redirects, as the Service uses
	// it; nil means a default one.
	HTTPClient *http.Client
	// Timeout bounds each probe; default 20s, as Config.CallTimeout.
	Timeout time.Duration
}

// Probe sends Salesforce, one at a time, the requests a Service sends, with
// values no one has issued (a state and a PKCE challenge no pending link
// holds, a made-up code, a made-up refresh token), and reads the answers
// with the Service's own readers. What the answers say (an error code
// "invalid_grant" for a made-up grant means the client was accepted) tells
// whether the connected app is set up for forcebind, and nothing a person
// could use is created. It is what `forcebind doctor` asks; it is safe for
// concurrent use.
type Probe struct {
	s *Service
}

// NewProbe returns a Probe for cfg. Only the login URL is checked: a probe
// is how a wrong client id or callback URL is found.
func NewProbe(cfg ProbeConfig) (*Probe, error) {
	login, err := ParseLoginURL(cfg.LoginURL, cfg.AllowCustomLoginHost)
	if err != nil {
		return nil, err
	}
	return &Probe{s: build(Config{
		ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, LoginURL: cfg.LoginURL, CallbackURL: cfg.CallbackURL,
		AllowCustomLoginHost: cfg.AllowCustomLoginHost, HTTPClient: cfg.HTTPClient, CallTimeout: cfg.Timeout,
	}, login, &url.URL{})}, nil
}

// LoginURL is the login host the probes ask, without a trailing slash.
func (p *Probe) LoginURL() string { return p.org().LoginURL.String() }

// org is the Org the probes ask: the one people sign in to.
func (p *Probe) org() Org { return p.s.orgs.signIn() }

// LoginHost asks for the login host's front page and returns the status of
// its answer; a redirect is an answer, and is not followed.
func (p *Probe) LoginHost(ctx context.Context) (int, error) {
	status, _, err := p.get(ctx, p.LoginURL()+"/")
	return status, err
}

// Authorize sends the browser's first request of the web server flow: the
// authorize URL that Start makes, with a state and a PKCE challenge that no
// pending link holds. Nothing is approved, which would need someone to log
// in. It returns nil when Salesforce accepted the consumer key and the
// callback URL: it sent the browser on to the callback (whatever else it
// said), or it offered a login, and then login is true. Otherwise it
// returns an *OAuthError (Code "" for an answer that named none, such as an
// outage), or the error that kept it from any answer.
func (p *Probe) Authorize(ctx context.Context) (login bool, err error) {
	u := p.org().OAuth(p.s.cfg.CallbackURL).AuthCodeURL(madeUp(), oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	status, resp, err := p.get(ctx, u)
	if err != nil {
		return false, err
	}
	return readAuthorize(status, resp.location, resp.body, p.s.cfg.CallbackURL)
}

// Exchange redeems a made-up authorization code, with a fresh verifier and
// the callback URL, as the callback redeems a real one. Salesforce checks
// the client before the grant, so the answer is an *OAuthError, and its
// code says what it made of the client: "invalid_grant" that the consumer
// key, the callback URL and the secret (when one is sent or required) were
// accepted, "invalid_client_id" or "invalid_client" which is wrong. An
// answer that names no code, a 200 included, is an *OAuthError with Code
// "". Any other error kept it from an answer.
func (p *Probe) Exchange(ctx context.Context) error {
	return p.token(ctx, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {madeUp()},
		"code_verifier": {oauth2.GenerateVerifier()},
		"redirect_uri":  {p.s.cfg.CallbackURL},
	})
}

// Refresh sends a made-up refresh token, as a refresh does. Its answer
// reads as Exchange's does, for the refresh token flow.
func (p *Probe) Refresh(ctx context.Context) error {
	return p.token(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {madeUp()}})
}

// DeviceCode asks for a device code as Start does in the device flow, and
// reads the answer as Start does. nil means the connected app offers the
// device flow; the code is never shown to anyone and expires unused at
// Salesforce. A refusal is an *OAuthError; so is an answer of 200 that
// Start could not use (its Code is then "").
func (p *Probe) DeviceCode(ctx context.Context) error {
	org := p.org()
	status, body, err := p.s.postToken(ctx, org.DeviceURL(), deviceCodeForm(org))
	if err != nil {
		return err
	}
	if _, err := parseDeviceAuth(status, body, org.LoginURL); err != nil {
		if status == http.StatusOK {
			return fmt.Errorf("%w: %w", &OAuthError{Status: status}, err)
		}
		return err
	}
	return nil
}

// token posts a made-up grant to the token endpoint, with the client's
// credentials as the Service sends them, and returns the answer as an
// *OAuthError.
func (p *Probe) token(ctx context.Context, form url.Values) error {
	org := p.org()
	form.Set("client_id", org.ClientID)
	if org.ClientSecret != "" {
		form.Set("client_secret", org.ClientSecret)
	}
	status, body, err := p.s.postToken(ctx, org.TokenURL(), form)
	if err != nil {
		return err
	}
	return oauthErrorOf(status, body)
}

// probeAnswer is what get keeps of an answer.
type probeAnswer struct {
	location string
	body     []byte
}

// get sends a GET within the call timeout, following no redirect, and
// returns the status, the Location and up to 1 MiB of the body (a login
// page is large).
func (p *Probe) get(ctx context.Context, u string) (int, probeAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, p.s.cfg.CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, probeAnswer{}, err
	}
	resp, err := p.s.http.Do(req)
	if err != nil {
		return 0, probeAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, probeAnswer{}, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, probeAnswer{location: resp.Header.Get("Location"), body: body}, nil
}

// madeUp returns a value no one has issued, fit for a state or a code.
func madeUp() string { return "forcebind-probe-" + oauth2.GenerateVerifier() }

// errorParam finds "error=code" in an error page, as Salesforce's Remote
// Access error page (and the fake's) shows it.
var errorParam = regexp.MustCompile(`error=([A-Za-z_]+)`)

// fatalAuthorizeError finds the codes that mean the app or its callback is
// unknown, in any page: a login page does not contain them.
var fatalAuthorizeError = regexp.MustCompile(`error=(invalid_client_id|invalid_client|redirect_uri_mismatch)\b`)

// readAuthorize reads an answer of the authorize endpoint (see Authorize):
// an error page (Salesforce cannot redirect when it does not know the app
// or the callback), a redirect to its own error page with error= in the
// query, a redirect to the callback (the app and callback were accepted,
// whatever else it says), or a login page.
func readAuthorize(status int, location string, body []byte, callback string) (login bool, err error) {
	var code, description string
	toCallback := false
	if status >= 300 && status < 400 && location != "" {
		if u, err := url.Parse(location); err == nil {
			code, description = u.Query().Get("error"), u.Query().Get("error_description")
			toCallback = callback != "" && strings.HasPrefix(location, callback)
		}
	}
	if code == "" {
		// A failed page is searched for any error code; a page that loaded
		// (a login page, full of script) only for the codes that cannot
		// appear in one.
		re := errorParam
		if status < 300 {
			re = fatalAuthorizeError
		}
		if m := re.FindSubmatch(body); m != nil {
			code = string(m[1])
		}
	}
	if len(code) > 64 {
		code = code[:64]
	}
	refused := &OAuthError{Status: status, Code: code, Description: printable(description, 300)}
	switch {
	case code == "invalid_client_id" || code == "invalid_client" || code == "redirect_uri_mismatch":
		return false, refused
	case toCallback:
		return false, nil
	case code != "" || status >= 400:
		return false, refused
	}
	return true, nil // a login page, or a redirect to one
}
