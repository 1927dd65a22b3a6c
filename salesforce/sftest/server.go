package sftest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Options configures a fake org; NewServer copies it. The zero value works: any client id is
// checked against "sftest-client", no secret is required, any absolute
// redirect URI is accepted, and the embedded fixtures are served.
type Options struct {
	// ClientID is the connected app's consumer key. Empty means
	// "sftest-client".
	ClientID string

	// ClientSecret, when set, is required on token requests and keys the
	// response signature. When empty, no secret is checked and signatures
	// are keyed with the empty string.
	ClientSecret string

	// RedirectURI is the connected app's callback URL; authorize and token
	// requests must match it exactly. Empty accepts any absolute http(s)
	// URL (the token request must still repeat the authorize one).
	RedirectURI string

	// OrgID overrides the fixture org's 18-character id.
	OrgID string

	// Fixtures is a fixture file in the format of testdata/org.json. Nil
	// means the embedded one (see DefaultFixtures).
	Fixtures []byte

	// PageSize is the number of records per query page. Zero means 2000.
	PageSize int

	// AutoApprove, when set to a fixture username, approves every valid
	// authorize request as that user at once instead of showing the login
	// page, and every device code as that user as soon as it is issued.
	AutoApprove string
}

// Endpoint names a group of URLs of the fake, for Calls, FailNext and
// SetFailure. It is a plain string value.
type Endpoint string

// The endpoints of the fake org.
const (
	EndpointAuthorize Endpoint = "authorize" // GET/POST /services/oauth2/authorize
	EndpointToken     Endpoint = "token"     // POST /services/oauth2/token (every grant, and device code requests)
	EndpointVerify    Endpoint = "verify"    // GET/POST /setup/connect, the device flow's verification page
	EndpointRevoke    Endpoint = "revoke"    // POST /services/oauth2/revoke
	EndpointIdentity  Endpoint = "identity"  // GET /id/{orgId}/{userId}
	EndpointUserInfo  Endpoint = "userinfo"  // GET /services/oauth2/userinfo
	EndpointQuery     Endpoint = "query"     // GET /services/data/vNN.N/query and query/{locator}
	EndpointSearch    Endpoint = "search"    // GET /services/data/vNN.N/search
	EndpointSObject   Endpoint = "sobject"   // GET /services/data/vNN.N/sobjects/{Type}/{Id}
	// EndpointObjectInfo is GET /services/data/vNN.N/ui-api/object-info/{Type}
	// and the batch form, …/ui-api/object-info/batch/{Type},{Type},…; one
	// request of either counts once.
	EndpointObjectInfo Endpoint = "object-info"
)

// Canned error bodies in Salesforce's format, for FailNext and SetFailure.
const (
	BodyRequestLimitExceeded = `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`
	BodyInvalidSession       = `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`
	BodyBadGatewayHTML       = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
)

// Bearer, anywhere in a FailNext or SetFailure body, is replaced by the
// bearer token the failed request carried: it plays a server or proxy that
// echoes credentials into its error answers, for tests of redaction.
const Bearer = "{{bearer}}"

// DefaultAPILimit is the daily API request limit the fake reports.
const DefaultAPILimit = 15000

// Server is a fake Salesforce org listening on 127.0.0.1. All methods are
// safe for concurrent use; Close must be called once, when done.
type Server struct {
	// URL is the base URL of the fake, e.g. http://127.0.0.1:53211. It is
	// the login host and the instance URL at once.
	URL string

	ts        *httptest.Server
	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	opts      Options
	org       *orgData
	pages     *template.Template // "login" and "error"

	mu       sync.Mutex
	pending  map[string]authRequest // login page requests by id
	codes    map[string]*authCode
	access   map[string]*session     // access token → session
	refresh  map[string]*refreshInfo // refresh token → grant
	issued   []string
	cursors  map[string]*cursor
	rotation bool
	rewrite  func(grantType string, g *Grant)
	latency  time.Duration
	slowEP   map[Endpoint]time.Duration // SetEndpointLatency
	before   map[Endpoint]func()        // BeforeAnswer
	hosts    map[string]int             // requests by Host header, for HostCalls
	failNext map[Endpoint][]failure
	failing  map[Endpoint]failure
	calls    map[Endpoint]int
	used     int
	limit    int
	emails   map[string]string // user id → email set by SetEmail
	// unverified holds the ids of users whose email SetEmailVerified
	// turned unverified.
	unverified map[string]bool
	// hidden holds, by user id, the fields field-level security hides
	// from that user now and the objects they may not read: the
	// fixtures' HiddenFields and DeniedObjects, as SetFieldHidden and
	// SetObjectDenied changed them.
	hidden map[string]hiddenSet

	devices         map[string]*deviceCode // by device code
	userCodes       map[string]string      // user code → device code
	deviceSeq       int
	deviceOff       bool
	deviceInterval  int // seconds; 0 leaves it out of the answer
	slowDown        int
	enforceInterval bool
}

type failure struct {
	status int
	body   string
}

// NewServer starts a fake org. It panics if Options.Fixtures cannot be
// loaded or the listener cannot start, as httptest.NewServer does.
func NewServer(opts Options) *Server {
	if opts.ClientID == "" {
		opts.ClientID = "sftest-client"
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 2000
	}
	data := opts.Fixtures
	if data == nil {
		data = defaultFixtures
	}
	org, err := loadFixtures(data, opts.OrgID)
	if err != nil {
		panic("sftest: " + err.Error())
	}
	if opts.AutoApprove != "" {
		if _, ok := org.user(opts.AutoApprove); !ok {
			panic(fmt.Sprintf("sftest: AutoApprove user %q is not in the fixtures", opts.AutoApprove))
		}
	}
	s := &Server{
		closing:    make(chan struct{}),
		opts:       opts,
		org:        org,
		pending:    make(map[string]authRequest),
		codes:      make(map[string]*authCode),
		access:     make(map[string]*session),
		refresh:    make(map[string]*refreshInfo),
		cursors:    make(map[string]*cursor),
		failNext:   make(map[Endpoint][]failure),
		failing:    make(map[Endpoint]failure),
		calls:      make(map[Endpoint]int),
		slowEP:     make(map[Endpoint]time.Duration),
		before:     make(map[Endpoint]func()),
		hosts:      make(map[string]int),
		limit:      DefaultAPILimit,
		pages:      parsePages(),
		emails:     make(map[string]string),
		unverified: make(map[string]bool),
		hidden:     make(map[string]hiddenSet),

		devices:        make(map[string]*deviceCode),
		userCodes:      make(map[string]string),
		deviceInterval: DefaultDeviceInterval,
	}
	for _, u := range org.users {
		s.hidden[u.ID] = newHiddenSet(org, u.HiddenFields, u.DeniedObjects)
	}
	s.ts = httptest.NewServer(s.routes())
	s.URL = s.ts.URL
	return s
}

// Close shuts the server down and waits for requests in flight; answers
// that SetLatency or SetEndpointLatency holds back end at once, unanswered.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.ts.Close()
}

// OrgID returns the fake org's 18-character id.
func (s *Server) OrgID() string { return s.org.id }

// Users returns the fixture users, with the emails SetEmail gave them and
// the fields and objects hidden from them now.
func (s *Server) Users() []User {
	users := append([]User(nil), s.org.users...)
	for i := range users {
		users[i] = s.withEmail(users[i])
		hidden := s.hiddenFor(users[i])
		users[i].HiddenFields = hidden.list()
		users[i].DeniedObjects = hidden.deniedList()
	}
	return users
}

// withEmail returns u with the email SetEmail gave it, if any.
func (s *Server) withEmail(u User) User {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.emails[u.ID]; ok {
		u.Email = e
	}
	return u
}

// emailVerified reports whether u's email is verified, as the identity URL
// and userinfo say: true unless SetEmailVerified said otherwise.
func (s *Server) emailVerified(u User) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.unverified[u.ID]
}

// IdentityURL returns the identity URL of the fixture user with the given
// username ("" if there is none), as the token endpoint sends it in "id".
func (s *Server) IdentityURL(username string) string {
	u, ok := s.org.user(username)
	if !ok {
		return ""
	}
	return s.URL + "/id/" + s.org.id + "/" + u.ID
}

// ExpireAccessTokens invalidates every access token issued so far, as when
// sessions time out. Refresh tokens stay valid.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.access)
}

// RevokeRefreshToken revokes one refresh token and the access tokens issued
// from it, as an admin revoking the app's access would. It reports whether
// the token was valid.
func (s *Server) RevokeRefreshToken(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revokeRefreshLocked(token)
}

// RevokeAll revokes every refresh and access token.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.access)
	clear(s.refresh)
}

// SetRotation turns refresh-token rotation on or off: when on, each refresh
// answers a new refresh token and the old one stops working.
func (s *Server) SetRotation(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotation = on
}

// RewriteGrants makes fn edit every successful token answer before it is
// sent (grantType is "authorization_code", "refresh_token" or "device"), so tests can
// play a token endpoint that names a foreign instance_url or another user.
// The tokens stay valid at this server. nil stops rewriting.
func (s *Server) RewriteGrants(fn func(grantType string, g *Grant)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rewrite = fn
}

// SetLatency delays every answer by d (until the request is cancelled).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetEndpointLatency delays every answer of ep by d more than SetLatency
// does (until the request is cancelled); 0 removes the extra delay. It plays
// one slow endpoint, such as a token endpoint that does not answer in time
// while the REST API does.
func (s *Server) SetEndpointLatency(ep Endpoint, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.slowEP, ep)
		return
	}
	s.slowEP[ep] = d
}

// BeforeAnswer makes fn run for each request to ep, after any latency and
// before the answer (an injected failure or the real one), so that a test
// can make something happen while a request is in flight, such as a relink
// landing during a revocation. nil stops it. fn runs on the request's
// goroutine with no lock held; it may use the store under test and this
// fake's knobs.
func (s *Server) BeforeAnswer(ep Endpoint, fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fn == nil {
		delete(s.before, ep)
		return
	}
	s.before[ep] = fn
}

// Route returns an http.RoundTripper that delivers each request for one of
// hosts (as in a URL: a host, or host:port) to this fake over plain HTTP,
// keeping the request's Host header, as if DNS named the fake for those
// hosts and TLS ended in front of it. Every other request goes through next
// (nil means http.DefaultTransport). Tests use it to play an org on a
// real-looking Salesforce domain, such as the new instance_url of an org
// that moved; HostCalls counts what arrived for each host.
func (s *Server) Route(next http.RoundTripper, hosts ...string) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	routed := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		routed[strings.ToLower(h)] = true
	}
	addr := s.ts.Listener.Addr().String()
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		if !routed[strings.ToLower(r.URL.Host)] {
			return next.RoundTrip(r)
		}
		out := r.Clone(r.Context())
		out.Host = r.URL.Host
		out.URL.Scheme, out.URL.Host = "http", addr
		return next.RoundTrip(out)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// HostCalls returns how many requests arrived with Host header host
// (compared without regard to case), the fake's own address included.
func (s *Server) HostCalls(host string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hosts[strings.ToLower(host)]
}

// FailNext makes the next request to ep answer status with body instead of
// its normal answer. Calls queue up: n calls fail the next n requests.
// A body starting with '[' or '{' is sent as JSON, with '<' as HTML.
func (s *Server) FailNext(ep Endpoint, status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[ep] = append(s.failNext[ep], failure{status, body})
}

// SetFailure makes every request to ep answer status with body until it is
// called again with status 0. Queued FailNext failures come first.
func (s *Server) SetFailure(ep Endpoint, status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == 0 {
		delete(s.failing, ep)
		return
	}
	s.failing[ep] = failure{status, body}
}

// Calls returns how many requests reached ep, including failed ones.
func (s *Server) Calls(ep Endpoint) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[ep]
}

// IssuedTokens returns every access and refresh token and every device
// code the fake has ever issued, for scanning logs, errors and pages for
// leaks.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// SetUsage sets the API usage the Sforce-Limit-Info header reports; each
// authenticated REST call adds one to used.
func (s *Server) SetUsage(used, limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used, s.limit = used, limit
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /services/oauth2/authorize", s.endpoint(EndpointAuthorize, s.handleAuthorize))
	mux.HandleFunc("POST /services/oauth2/authorize", s.endpoint(EndpointAuthorize, s.handleDecision))
	mux.HandleFunc("POST /services/oauth2/token", s.endpoint(EndpointToken, s.handleToken))
	mux.HandleFunc("GET /setup/connect", s.endpoint(EndpointVerify, s.handleVerify))
	mux.HandleFunc("POST /setup/connect", s.endpoint(EndpointVerify, s.handleVerify))
	mux.HandleFunc("POST /services/oauth2/revoke", s.endpoint(EndpointRevoke, s.handleRevoke))
	mux.HandleFunc("GET /services/oauth2/userinfo", s.endpoint(EndpointUserInfo, s.handleUserInfo))
	mux.HandleFunc("GET /id/{org}/{user}", s.endpoint(EndpointIdentity, s.handleIdentity))
	mux.HandleFunc("GET /services/data/{version}/query", s.rest(EndpointQuery, s.handleQuery))
	mux.HandleFunc("GET /services/data/{version}/query/{$}", s.rest(EndpointQuery, s.handleQuery))
	mux.HandleFunc("GET /services/data/{version}/query/{locator}", s.rest(EndpointQuery, s.handleQueryMore))
	mux.HandleFunc("GET /services/data/{version}/search", s.rest(EndpointSearch, s.handleSearch))
	mux.HandleFunc("GET /services/data/{version}/search/{$}", s.rest(EndpointSearch, s.handleSearch))
	mux.HandleFunc("GET /services/data/{version}/sobjects/{type}/{id}", s.rest(EndpointSObject, s.handleSObject))
	mux.HandleFunc("GET /services/data/{version}/ui-api/object-info/{type}", s.rest(EndpointObjectInfo, s.handleObjectInfo))
	mux.HandleFunc("GET /services/data/{version}/ui-api/object-info/batch/{types}", s.rest(EndpointObjectInfo, s.handleObjectInfoBatch))
	mux.HandleFunc("/services/data/", func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	})
	return mux
}

// endpoint counts the call, applies latency and injected failures, then
// runs h.
func (s *Server) endpoint(ep Endpoint, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[ep]++
		s.hosts[strings.ToLower(r.Host)]++
		delay := s.latency + s.slowEP[ep]
		before := s.before[ep]
		s.mu.Unlock()
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if delay > 0 {
			// Read the body first: the server notices a client that gave
			// up (its request context ends) only once the body is read.
			body, err := io.ReadAll(r.Body)
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			case <-s.closing:
				t.Stop()
				return
			}
		}
		if before != nil {
			before()
		}
		s.mu.Lock()
		f, fail := s.takeFailureLocked(ep)
		s.mu.Unlock()
		if fail {
			body := f.body
			if strings.Contains(body, Bearer) {
				token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
				body = strings.ReplaceAll(body, Bearer, token)
			}
			writeRaw(w, f.status, body)
			return
		}
		h(w, r)
	}
}

// errReader returns err, or io.EOF when err is nil: the end of a body read
// ahead, as the body itself would have ended.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}

func (s *Server) takeFailureLocked(ep Endpoint) (failure, bool) {
	if q := s.failNext[ep]; len(q) > 0 {
		s.failNext[ep] = q[1:]
		return q[0], true
	}
	f, ok := s.failing[ep]
	return f, ok
}

func writeRaw(w http.ResponseWriter, status int, body string) {
	trimmed := strings.TrimSpace(body)
	switch {
	case strings.HasPrefix(trimmed, "[") || strings.HasPrefix(trimmed, "{"):
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	case strings.HasPrefix(trimmed, "<"):
		w.Header().Set("Content-Type", "text/html;charset=UTF-8")
	case body != "":
		w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// randomToken returns n random bytes, base64url-encoded without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}
