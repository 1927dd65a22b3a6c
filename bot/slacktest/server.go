package slacktest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Defaults applied by NewServer to empty Options fields.
const (
	DefaultAppToken     = "xapp-1-test"
	DefaultBotToken     = "xoxb-test"
	DefaultTeamID       = "T0001"
	DefaultTeamName     = "Acme"
	DefaultBotUserID    = "U0BOT"
	DefaultBotID        = "B0BOT"
	DefaultAppID        = "A0APP"
	DefaultPingInterval = 10 * time.Second
)

// Options configures a Server. The zero value is usable: every empty field takes
// the default named beside it.
type Options struct {
	// AppToken is the app-level token (xapp-…) that apps.connections.open requires
	// in an "Authorization: Bearer" header. Default DefaultAppToken.
	AppToken string
	// BotToken is the bot token (xoxb-…) every other Web API method requires, as a
	// Bearer header or a "token" form field. Default DefaultBotToken.
	BotToken string
	// TeamID and TeamName describe the workspace. Defaults T0001 and "Acme".
	TeamID, TeamName string
	// BotUserID and BotID identify the bot (auth.test's user_id and bot_id).
	// Defaults U0BOT and B0BOT.
	BotUserID, BotID string
	// AppID is the app's id, sent in hello's connection_info and in event payloads.
	// Default A0APP.
	AppID string
	// Users are the people users.info knows. Nil means DefaultUsers(); an empty
	// non-nil slice means nobody but the bot, whose own user is always known.
	Users []User
	// Scopes are the bot token's scopes. Every answer to the bot token
	// carries them in an X-OAuth-Scopes header, as Slack's does, and
	// users.info leaves out profile.email without users:read.email. Nil
	// means DefaultScopes(); an empty non-nil slice means none.
	Scopes []string
	// PingInterval is how often the server sends a websocket ping. slack-go's
	// socketmode client drops a connection that has not been pinged for 30s (its
	// default), so keep this below the client's interval. Default 10s.
	PingInterval time.Duration
	// Now is the clock used for timestamps. Default time.Now.
	Now func() time.Time
}

// DefaultScopes returns the bot scopes a Slack app installed from
// forcebind's manifest has.
func DefaultScopes() []string {
	return []string{"app_mentions:read", "chat:write", "commands", "im:history", "im:read", "im:write", "users:read", "users:read.email"}
}

// User is a workspace member as users.info reports it.
type User struct {
	ID, Name, RealName, DisplayName, Email string
	IsBot                                  bool
	// TeamID defaults to the server's team.
	TeamID string
}

// DefaultUsers returns the users a Server knows when Options.Users is empty: a demo
// user U0JANE "jane" (jane@acme.example) and U0SAM "sam" (sam@acme.example). Each
// call returns a fresh slice.
func DefaultUsers() []User {
	return []User{
		{ID: "U0JANE", Name: "jane", RealName: "Jane Doe", DisplayName: "jane", Email: "jane@acme.example"},
		{ID: "U0SAM", Name: "sam", RealName: "Sam Roe", DisplayName: "sam", Email: "sam@acme.example"},
	}
}

// Server is a fake Slack listening on a local port. Create it with NewServer and
// release it with Close. All methods are safe for concurrent use; URL and APIURL
// are set by NewServer and never change.
type Server struct {
	// URL is the base URL of the server, "http://127.0.0.1:PORT", without a
	// trailing slash.
	URL string
	// APIURL is URL + "/api/", the value for slack.OptionAPIURL.
	APIURL string

	opts     Options
	http     *httptest.Server
	upgrader websocket.Upgrader
	wg       sync.WaitGroup // goroutines serving websockets

	mu           sync.Mutex
	closed       bool
	done         chan struct{} // closed by Close
	changed      chan struct{} // closed and replaced on every state change
	users        map[string]User
	errs         map[string]string    // method -> forced error
	limits       map[string]rateLimit // method -> 429s still to answer
	limited      map[string]int       // method -> 429s answered so far
	tickets      map[string]bool      // unused websocket tickets
	conns        map[*wsConn]bool
	connections  int // successful apps.connections.open
	numConns     int // hello's num_connections override; 0 = live count
	queue        []frame
	envelopes    map[string]envelope  // envelope id -> what was sent, for Redeliver
	written      map[string]time.Time // envelope id -> when it was written
	acks         []Ack
	calls        []Call
	messages     []Message
	posted       map[string]string // ts -> channel, for chat.update
	openedDMs    map[string]bool
	responseURLs map[string]responseTarget
	subs         map[chan Message]bool
	seq          int64 // for ids and timestamps
	tsBase       int64
}

// NewServer starts a fake Slack on 127.0.0.1:0. The caller must call Close.
func NewServer(opts Options) *Server {
	opts = withDefaults(opts)
	s := &Server{
		opts:         opts,
		done:         make(chan struct{}),
		changed:      make(chan struct{}),
		users:        make(map[string]User),
		errs:         make(map[string]string),
		limits:       make(map[string]rateLimit),
		limited:      make(map[string]int),
		tickets:      make(map[string]bool),
		conns:        make(map[*wsConn]bool),
		envelopes:    make(map[string]envelope),
		written:      make(map[string]time.Time),
		posted:       make(map[string]string),
		openedDMs:    make(map[string]bool),
		responseURLs: make(map[string]responseTarget),
		subs:         make(map[chan Message]bool),
		tsBase:       opts.Now().Unix(),
	}
	// slack-go dials with "Origin: https://api.slack.com", which the default
	// same-origin check would refuse.
	s.upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	s.users[opts.BotUserID] = User{ID: opts.BotUserID, Name: "forcebind", RealName: "forcebind", DisplayName: "forcebind", IsBot: true, TeamID: opts.TeamID}
	for _, u := range opts.Users {
		if u.TeamID == "" {
			u.TeamID = opts.TeamID
		}
		s.users[u.ID] = u
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.handleAPI)
	mux.HandleFunc("/link/", s.handleLink)
	mux.HandleFunc("/commands/", s.handleResponseURL)
	s.http = httptest.NewServer(mux)
	s.URL = s.http.URL
	s.APIURL = s.URL + "/api/"
	return s
}

func withDefaults(o Options) Options {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.AppToken, DefaultAppToken)
	def(&o.BotToken, DefaultBotToken)
	def(&o.TeamID, DefaultTeamID)
	def(&o.TeamName, DefaultTeamName)
	def(&o.BotUserID, DefaultBotUserID)
	def(&o.BotID, DefaultBotID)
	def(&o.AppID, DefaultAppID)
	if o.Scopes == nil {
		o.Scopes = DefaultScopes()
	}
	if o.Users == nil {
		o.Users = DefaultUsers()
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Close closes every websocket, shuts the HTTP server down, waits for the
// goroutines serving them, and closes the channels returned by Subscribe. It is
// safe to call more than once. After Close the Send methods do nothing.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.notifyLocked()
	s.mu.Unlock()

	for _, c := range conns {
		c.kill()
	}
	s.http.Close()
	s.wg.Wait()

	s.mu.Lock()
	for ch := range s.subs {
		delete(s.subs, ch)
		close(ch)
	}
	s.mu.Unlock()
}

// Options returns the options the server runs with, defaults filled in.
func (s *Server) Options() Options {
	o := s.opts
	o.Users = append([]User(nil), o.Users...)
	return o
}

// AppToken returns the app-level token apps.connections.open accepts.
func (s *Server) AppToken() string { return s.opts.AppToken }

// BotToken returns the bot token the other Web API methods accept.
func (s *Server) BotToken() string { return s.opts.BotToken }

// DMChannel returns the id of the direct-message channel between the bot and
// userID ("D" followed by the user id without its leading "U"). It is stable for
// the life of the server and is what conversations.open answers and SendDM uses.
func (s *Server) DMChannel(userID string) string {
	return "D" + strings.TrimPrefix(userID, "U")
}

// notifyLocked wakes every waiter. s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// nextSeqLocked returns a number unique for the server. s.mu must be held.
func (s *Server) nextSeqLocked() int64 {
	s.seq++
	return s.seq
}

// tsLocked returns a fresh Slack timestamp ("1700000000.000123"), increasing
// for the life of the server. s.mu must be held.
func (s *Server) tsLocked() string {
	n := s.nextSeqLocked()
	return fmt.Sprintf("%d.%06d", s.tsBase+n/1_000_000, n%1_000_000)
}

// randomID returns n random bytes in hex.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// uuid returns a random version-4 UUID, the shape of Slack's envelope ids.
func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
