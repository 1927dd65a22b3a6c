package salesforce

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAPIVersion is the REST API version used when Config.APIVersion is
// empty.
const DefaultAPIVersion = "62.0"

const (
	defaultMaxRecords = 200
	defaultTimeout    = 30 * time.Second
	maxBodyBytes      = 8 << 20 // cap on any response body
	maxSOSLLimit      = 2000    // Salesforce's cap on SOSL LIMIT
)

// Config configures a [Client]. The zero value of every field but
// InstanceURL and Tokens has a sensible default. New reads it once; later
// changes to a Config have no effect on the Client.
type Config struct {
	// InstanceURL is the org's instance, e.g. https://acme.my.salesforce.com.
	// A trailing slash is fine; a path, query, fragment or userinfo is not.
	// Plain http is accepted only for a loopback host (a local fake).
	InstanceURL string

	// APIVersion is the REST API version, e.g. "62.0" (a leading "v" is
	// accepted). Empty means DefaultAPIVersion.
	APIVersion string

	// HTTPClient is the shared, pooled client to send requests with. It is
	// not modified; the Client uses a shallow copy that does not follow
	// redirects, so a token never leaves the instance. Nil means a default
	// client with timeouts.
	HTTPClient *http.Client

	// Tokens supplies the binding's access token. Required.
	Tokens Tokens

	// MaxRecords caps the records Query collects across pages and the hits
	// Search returns. Zero means 200.
	MaxRecords int

	// Timeout bounds each call whose context has no deadline. Zero means
	// 30s.
	Timeout time.Duration

	// Observer, when set, is told of every HTTP request the Client sends
	// and of the API usage Salesforce reports. Nil means nothing is
	// observed.
	Observer Observer

	// Fields caches which fields the user may read, so that Search and
	// Find ask only for those. Share one between the Clients of every
	// binding; entries are keyed by OrgID and UserID, which are then
	// required. Nil means the Client keeps its own, for its lifetime.
	Fields *FieldCache

	// OrgID and UserID are the 00D… org and 005… user the token belongs
	// to: the key of this user's entries in Fields.
	OrgID, UserID string
}

// Observer is told what a Client does, for metrics. Its methods run on the
// request path of every goroutine using a Client: they must be quick, must
// not block, and must be safe for concurrent use. Every string passed comes
// from a small fixed set (instance from the orgs bound), so it is fit for a
// metric label.
type Observer interface {
	// Request reports one HTTP request to Salesforce once its answer has
	// been read or it failed. op is the Client method that sent it:
	// "query" (once per page), "find", "search", "get", "identity" or
	// "object_info" (reading which fields the user may read); a
	// request retried after a refresh counts twice. outcome is "ok",
	// "session_expired", "rate_limited", "not_found", "unavailable" (5xx,
	// not Salesforce's JSON, network failure), "invalid_input" (400: the
	// API refused the request as malformed), "canceled" (the caller's
	// context ended, by cancellation or deadline) or "error". took runs
	// from sending the request to the end of its body.
	Request(op, outcome string, took time.Duration)
	// Usage reports the org's API usage from a response's Sforce-Limit-Info
	// header. instance is the host of the Client's instance URL (e.g.
	// acme.my.salesforce.com), which stands for the org.
	Usage(instance string, u Usage)
}

// Client calls the REST API of one org as one user. It is safe for
// concurrent use; create one per binding (it is cheap) and share the
// HTTPClient between them.
type Client struct {
	// inst is where calls go. A refresh may move it (Token.InstanceURL),
	// so it is read once per use, never cached across a request.
	inst       atomic.Pointer[instance]
	version    string // "62.0"
	hc         *http.Client
	tokens     Tokens
	maxRecords int
	timeout    time.Duration
	objects    map[string]Object // by API name; shared, never written
	order      []string          // object names in table order; shared, never written
	usage      atomic.Pointer[Usage]
	obs        Observer // nil when nothing is observed
	fields     *FieldCache
	orgID      string // with userID, the key of this user's entries in fields
	userID     string
}

// instance is an org's instance: its base URL and, for Observer.Usage, its
// host.
type instance struct {
	base string // scheme://host, no trailing slash
	host string
}

func newInstance(raw string) (*instance, error) {
	base, err := parseInstanceURL(raw)
	if err != nil {
		return nil, err
	}
	_, host, _ := strings.Cut(base, "://")
	return &instance{base: base, host: host}, nil
}

// New validates cfg and returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	inst, err := newInstance(cfg.InstanceURL)
	if err != nil {
		return nil, fmt.Errorf("salesforce: instance URL: %w", err)
	}
	version := strings.TrimPrefix(cfg.APIVersion, "v")
	if version == "" {
		version = DefaultAPIVersion
	}
	if !validVersion(version) {
		return nil, fmt.Errorf("salesforce: API version %q is not of the form 62.0", cfg.APIVersion)
	}
	if cfg.Tokens == nil {
		return nil, errors.New("salesforce: Tokens is required")
	}
	if cfg.MaxRecords < 0 || cfg.Timeout < 0 {
		return nil, errors.New("salesforce: MaxRecords and Timeout must not be negative")
	}
	if cfg.Fields != nil && (cfg.OrgID == "" || cfg.UserID == "") {
		return nil, errors.New("salesforce: a shared Fields cache needs OrgID and UserID")
	}
	c := &Client{
		version:    version,
		hc:         NoRedirects(cfg.HTTPClient),
		tokens:     cfg.Tokens,
		maxRecords: cfg.MaxRecords,
		timeout:    cfg.Timeout,
		obs:        cfg.Observer,
		fields:     cfg.Fields,
		orgID:      cfg.OrgID,
		userID:     cfg.UserID,
	}
	if c.fields == nil {
		c.fields = NewFieldCache(FieldCacheConfig{})
	}
	c.inst.Store(inst)
	if c.maxRecords == 0 {
		c.maxRecords = defaultMaxRecords
	}
	if c.timeout == 0 {
		c.timeout = defaultTimeout
	}
	t := defaultTable()
	c.objects, c.order = t.byName, t.order
	return c, nil
}

// objectTable is Objects indexed for lookups.
type objectTable struct {
	byName map[string]Object
	order  []string
}

// defaultTable is built once: a Client is made for every event, and
// building the table each time was a few percent of the daemon's
// allocations. Clients only read it.
var defaultTable = sync.OnceValue(func() objectTable {
	t := objectTable{byName: make(map[string]Object)}
	for _, o := range Objects() {
		t.byName[o.Name] = o
		t.order = append(t.order, o.Name)
	}
	return t
})

// InstanceURL returns the normalized instance URL (scheme and host, no
// trailing slash): Config.InstanceURL, or the instance a refresh moved the
// Client to since.
func (c *Client) InstanceURL() string { return c.inst.Load().base }

// Usage returns the API usage from the last Sforce-Limit-Info header seen,
// and false if none has been seen yet. Malformed headers are ignored.
func (c *Client) Usage() (Usage, bool) {
	u := c.usage.Load()
	if u == nil {
		return Usage{}, false
	}
	return *u, true
}

// validVersion accepts API versions such as "62.0".
func validVersion(v string) bool {
	major, minor, ok := strings.Cut(v, ".")
	return ok && len(minor) == 1 && isDigits(minor) && len(major) >= 1 && len(major) <= 3 && isDigits(major) && major[0] != '0'
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func parseInstanceURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", errors.New("not a URL")
	}
	switch {
	case !SecureScheme(u):
		return "", errors.New("scheme must be https (http only for a loopback host)")
	case u.Host == "" || u.Hostname() == "":
		return "", errors.New("host is missing")
	case u.User != nil:
		return "", errors.New("userinfo is not allowed")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", errors.New("query and fragment are not allowed")
	case u.Path != "" && u.Path != "/":
		return "", errors.New("path is not allowed")
	}
	return u.Scheme + "://" + strings.ToLower(u.Host), nil
}

// SecureScheme reports whether u may carry a credential: https anywhere,
// plain http only to a loopback host, where local fakes such as sftest run
// and nothing crosses a network. Safe for concurrent use.
func SecureScheme(u *url.URL) bool {
	switch u.Scheme {
	case "https":
		return true
	case "http":
		return IsLoopback(u.Hostname())
	}
	return false
}

// IsLoopback reports whether host (without port or brackets) is "localhost"
// or an address in 127.0.0.0/8 or ::1: a host where nothing crosses a
// network. It is the one loopback check of forcebind; other names that
// resolve to loopback ("app.localhost", "localhost.") do not count, as a
// resolver may answer otherwise for them.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// NoRedirects returns a shallow copy of hc (or a default client) that
// returns 3xx answers instead of following them: a redirect must never carry
// a token, a secret or a code to another place (a 307 or 308 would re-send
// a POST body there). hc itself is not changed.
func NoRedirects(hc *http.Client) *http.Client {
	var c http.Client
	if hc != nil {
		c = *hc
	} else {
		c = http.Client{Timeout: 2 * defaultTimeout, Transport: defaultTransport()}
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func defaultTransport() http.RoundTripper {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: defaultTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

// bound applies the per-call timeout when ctx has no deadline.
func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// dataURL returns the URL of a REST resource under /services/data/vXX.X/.
func (c *Client) dataURL(resource string) string {
	return c.inst.Load().base + "/services/data/v" + c.version + "/" + resource
}

// send performs one API call for op (see Observer.Request) with the
// binding's token. On 401 INVALID_SESSION_ID it refreshes once and retries
// once, at the instance the refresh named when it named one (u is moved
// there if it was on the old instance).
func (c *Client) send(ctx context.Context, op, method, u string, body []byte) ([]byte, error) {
	token, err := c.tokens.AccessToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("access token: %w", err)
	}
	inst := c.inst.Load()
	data, err := c.roundTrip(ctx, op, method, u, body, token)
	var apiErr *APIError
	if err == nil || !errors.As(err, &apiErr) || !errors.Is(apiErr, ErrSessionExpired) {
		return data, err
	}
	fresh, rerr := c.tokens.Refresh(ctx, token)
	switch {
	case errors.Is(rerr, ErrSessionExpired):
		return nil, err // the source cannot refresh: the 401 is the answer
	case rerr != nil:
		// The 401 is kept as text only: what failed is the refresh, and
		// matching the 401 would tell the person their session is bad
		// when Salesforce was only slow, say.
		return nil, fmt.Errorf("refresh session: %w (after %v)", rerr, err)
	}
	if fresh.InstanceURL != "" {
		moved, merr := newInstance(fresh.InstanceURL)
		if merr != nil {
			return nil, fmt.Errorf("refresh session: new instance URL: %w", merr)
		}
		if moved.base != inst.base {
			c.inst.Store(moved)
			if rest, ok := strings.CutPrefix(u, inst.base+"/"); ok {
				u = moved.base + "/" + rest
			}
		}
	}
	// The answer to the retry may echo the stale token as well as the
	// fresh one (a proxy, a server that logs both): both are redacted.
	return c.roundTrip(ctx, op, method, u, body, fresh.AccessToken, token)
}

// roundTrip sends one request with token and reports it to the Observer.
// Every error it returns has token and each of also redacted.
func (c *Client) roundTrip(ctx context.Context, op, method, u string, body []byte, token string, also ...string) ([]byte, error) {
	secrets := append([]string{token}, also...)
	if c.obs == nil {
		return c.exchange(ctx, method, u, body, secrets)
	}
	start := time.Now()
	data, err := c.exchange(ctx, method, u, body, secrets)
	c.obs.Request(op, outcome(err), time.Since(start))
	return data, err
}

// exchange sends one request with the bearer token secrets[0] and reads
// its answer. Every secret is redacted from the errors it returns.
func (c *Client) exchange(ctx context.Context, method, u string, body []byte, secrets []string) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", redactError(err, secrets...))
	}
	req.Header.Set("Authorization", "Bearer "+secrets[0])
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, redactError(err, secrets...))
	}
	defer resp.Body.Close()
	if u, ok := parseLimitInfo(resp.Header.Get("Sforce-Limit-Info")); ok {
		c.usage.Store(&u)
		if c.obs != nil {
			c.obs.Usage(c.inst.Load().host, u)
		}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("%w: read body: %w", ErrUnavailable, redactError(err, secrets...))
	}
	if len(data) > maxBodyBytes {
		return nil, fmt.Errorf("response body exceeds %d bytes", maxBodyBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Redact the raw body before anything is parsed or cut: a server
		// may echo a token into any field, and capping first could leave
		// part of it behind.
		for _, s := range longestFirst(secrets) {
			data = bytes.ReplaceAll(data, []byte(s), []byte(redacted))
		}
		return nil, parseError(resp.StatusCode, resp.Header, data, secrets...)
	}
	return data, nil
}

// outcome names the result of one request for Observer.Request.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var apiErr *APIError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	case errors.Is(err, ErrSessionExpired):
		return "session_expired"
	case errors.Is(err, ErrRateLimited):
		return "rate_limited"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusBadRequest:
		return "invalid_input"
	}
	return "error"
}

// redactError returns err unchanged unless its text contains one of the
// tokens. Then it returns a plain error with them replaced: keeping err in
// the chain would let errors.As hand out the unredacted original. Callers
// only match the ErrUnavailable wrapped around it, so nothing is lost.
func redactError(err error, tokens ...string) error {
	text := err.Error()
	found := false
	for _, t := range tokens {
		if t != "" && strings.Contains(text, t) {
			found = true
		}
	}
	if !found {
		return err
	}
	return errors.New(redact(text, tokens...))
}
