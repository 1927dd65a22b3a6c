package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/forcebind/forcebind/auth/account"
	"github.com/forcebind/forcebind/salesforce"
)

// Auth is what the bot needs of the binding flow, in the words of package
// account: nothing it returns holds a token. *auth.Service implements it.
// Its methods must be safe for concurrent use: every worker calls them.
type Auth interface {
	// Start makes a binding link for who, to be sent only to who.
	Start(ctx context.Context, who account.Requester) (account.Link, error)
	// Account returns the Salesforce account who is linked to, or
	// account.ErrNotLinked.
	Account(ctx context.Context, who account.Requester) (account.Account, error)
	// Client returns a Salesforce client acting as who's Salesforce user,
	// for one request, and the account it acts as; it fails as Account
	// does.
	Client(ctx context.Context, who account.Requester) (*salesforce.Client, account.Account, error)
	// Unlink revokes and removes who's binding, or returns
	// account.ErrNotLinked.
	Unlink(ctx context.Context, who account.Requester) (account.Unlinked, error)
}

// Config is what a Bot needs. Zero values of the tuning fields get the
// defaults in their comments.
type Config struct {
	API      *API   // Web API client from NewAPI: the bot token, the app token and the API URL
	APIURL   string // SLACK_API_URL, which decides where a default Messenger may post response URLs
	Auth     Auth
	Logger   zerolog.Logger
	Now      func() time.Time // nil means time.Now
	Messages *Messenger       // how replies are sent; nil builds one on API
	Observer Observer         // told of events, acks, commands and the connection; nil means nothing is observed

	Workers        int           // users whose work runs at once (each ~35 KB while it waits on Salesforce); default 512
	QueuePerUser   int           // one user's messages waiting behind the running one; default 32
	MaxQueued      int           // messages waiting for a worker, all users together (~1 KB each); default 10,000
	HandlerTimeout time.Duration // bound on one command; default 60s
	AckTimeout     time.Duration // bound on queueing one ack; default 2s
	DrainTimeout   time.Duration // how long shutdown waits for in-flight work; default 20s
	DedupeWindow   time.Duration // how long event ids are remembered; default 15m
	ReadLimit      int64         // largest websocket frame accepted; default 1 MiB
}

// Observer is told what the bot does, for metrics. Its methods are called
// from the Socket Mode reader and from the workers: they must be quick, must
// not block, and must be safe for concurrent use. Every string passed comes
// from a small fixed set, so it is fit for a metric label.
type Observer interface {
	// EventReceived reports one frame read from the Socket Mode connection,
	// by envelope type: "events_api", "slash_commands", "interactive",
	// "hello", "unknown" (an envelope of a type the bot does not know),
	// "malformed" (not an envelope) or "oversized" (over ReadLimit; it costs
	// the connection).
	EventReceived(typ string)
	// EventAcked reports one envelope acknowledged: latency runs from the
	// envelope's receipt to AckCtx's return, and ok is false when the ack
	// could not be queued (it timed out, or the connection was gone).
	EventAcked(latency time.Duration, ok bool)
	// CommandDone reports one message handled: command is the command's
	// name in the table ("opp" counts as "opportunity", an empty message as
	// "help") or "unknown"; outcome is what the log line says ("ok",
	// "link_sent", "relink", "timeout", ..., "panic", with "+reply_failed"
	// appended when the answer could not be sent); took runs from the start
	// of the work to the answer sent. Work refused because the pool was full
	// is reported with outcome "busy" and took zero: it never ran.
	CommandDone(command, outcome string, took time.Duration)
	// Connected reports the Socket Mode connection up (Slack's hello), with
	// how many connections Slack counts for the app token, this one
	// included: more than one means another process shares the events.
	Connected(numConnections int)
	// Disconnected reports that the connection Connected reported is gone:
	// dropped, replaced at Slack's request, or closed because Run ends.
	Disconnected()
	// Reconnecting reports one attempt to open the connection other than
	// the first of the run: after a drop, or after a failed attempt.
	Reconnecting()
}

// Bot is the Slack side of forcebind. Create it with New and run it with
// Run; a Bot runs once.
type Bot struct {
	cfg    Config
	api    *API
	auth   Auth
	msg    *Messenger
	log    zerolog.Logger
	now    func() time.Time
	obs    Observer
	ready  atomic.Bool // the Socket Mode connection is up: between hello and its end
	seen   *dedupe
	pool   *pool
	busy   chan reply // "busy" answers, sent by one goroutine off the reader
	self   identity   // the bot as auth.test names it
	cmds   []command
	byName map[string]*command
}

// identity is the bot's own user and team, from auth.test.
type identity struct {
	userID, botID, teamID, team string
}

// ErrSlackAuth is returned by Run when Slack refused forcebind's tokens
// (invalid_auth, token_revoked, account_inactive, not_authed) or switched
// Socket Mode off for the app (link_disabled): restarting will not help
// until an administrator acts.
var ErrSlackAuth = errors.New("slack refused the connection")

// New checks cfg and returns a Bot.
func New(cfg Config) (*Bot, error) {
	if cfg.API == nil || cfg.Auth == nil {
		return nil, errors.New("bot: API and Auth are required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.Workers, 512)
	def(&cfg.QueuePerUser, 32)
	def(&cfg.MaxQueued, 10_000)
	defDur(&cfg.HandlerTimeout, 60*time.Second)
	defDur(&cfg.AckTimeout, 2*time.Second)
	defDur(&cfg.DrainTimeout, 20*time.Second)
	defDur(&cfg.DedupeWindow, 15*time.Minute)
	if cfg.ReadLimit <= 0 {
		cfg.ReadLimit = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Messages == nil {
		cfg.Messages = NewMessenger(cfg.API, nil, cfg.APIURL, cfg.Logger)
	}
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	b := &Bot{
		cfg:  cfg,
		api:  cfg.API,
		auth: cfg.Auth,
		msg:  cfg.Messages,
		log:  cfg.Logger,
		now:  cfg.Now,
		obs:  obs,
		seen: newDedupe(cfg.DedupeWindow, 200_000),
		busy: make(chan reply, 256),
	}
	b.pool = newPool(cfg.Workers, cfg.QueuePerUser, cfg.MaxQueued, b.onPanic)
	b.cmds = commands()
	b.byName = index(b.cmds)
	return b, nil
}

// Ready reports whether the Socket Mode connection is up: true from Slack's
// hello until that connection drops or Run stops taking events, false
// before, between connections and after Run returns. Safe for concurrent
// use, from any goroutine, at any time (a readiness probe calls it).
func (b *Bot) Ready() bool { return b.ready.Load() }

// Run connects to Slack and handles events until ctx ends (then it stops
// taking events, lets in-flight work finish within DrainTimeout and returns
// nil) or Slack refuses the app for good (ErrSlackAuth).
func (b *Bot) Run(ctx context.Context) error {
	who, err := b.api.AuthTestContext(ctx)
	if err != nil {
		if isFatalSlackError(err) {
			return fmt.Errorf("auth.test: %w: %w", ErrSlackAuth, err)
		}
		return fmt.Errorf("auth.test: %w", err)
	}
	b.self = identity{userID: who.UserID, botID: who.BotID, teamID: who.TeamID, team: who.Team}
	b.log.Info().Str("team", who.TeamID).Str("bot_user", who.UserID).Msg("connected to the Slack Web API")

	dialer := &websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: 15 * time.Second,
		// slack-go sends no pings of its own: TCP keepalive notices a dead peer.
		NetDialContext: (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	client := socketmode.New(b.api.Client,
		socketmode.OptionDialer(dialer),
		socketmode.OptionReadLimit(b.cfg.ReadLimit),
		socketmode.OptionLog(slackLogger{b.log}),
	)

	sockCtx, stopSocket := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSocket()
	var runErr error
	socketDone := make(chan struct{}) // closed when RunContext returns; runErr is then set
	go func() { runErr = client.RunContext(sockCtx); close(socketDone) }()
	busyDone := make(chan struct{})
	go b.sendBusy(busyDone)

	// Handlers run under work: not cancelled by the signal that stops the
	// loop, so work in flight can finish, but cancelled when the drain ends.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	err = b.loop(ctx, work, client, socketDone, &runErr)
	b.disconnected()

	// Stop taking events, then let the work in flight finish.
	stopSocket()
	drainCtx, cancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
	defer cancel()
	if perr := b.pool.close(drainCtx); perr != nil {
		b.log.Warn().Err(perr).Msg("shutdown did not wait for all work; cancelling it")
	}
	stopWork()
	close(b.busy)
	<-busyDone
	select {
	case <-socketDone: // slack-go returns promptly once sockCtx is cancelled
	case <-drainCtx.Done():
	}
	return err
}

// loop is the Socket Mode reader. Everything it does is bounded: acks have
// a deadline and work goes to the pool, which never blocks.
func (b *Bot) loop(ctx, work context.Context, client *socketmode.Client, socketDone <-chan struct{}, runErr *error) error {
	conn := connWatch{}
	for {
		select {
		case <-ctx.Done():
			b.log.Info().Msg("shutting down: no more events taken")
			return nil
		case <-socketDone:
			err := *runErr
			if isFatalSlackError(err) {
				return fmt.Errorf("socket mode: %w: %w", ErrSlackAuth, err)
			}
			if err == nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("socket mode: %w", err)
		case evt := <-client.Events:
			if err := b.dispatch(ctx, work, client, evt, &conn); err != nil {
				return err
			}
		}
	}
}

// dispatch handles one event from slack-go.
func (b *Bot) dispatch(ctx, work context.Context, client *socketmode.Client, evt socketmode.Event, conn *connWatch) error {
	received := b.now()
	switch evt.Type {
	case socketmode.EventTypeEventsAPI, socketmode.EventTypeSlashCommand, socketmode.EventTypeInteractive:
		b.obs.EventReceived(string(evt.Type))
		b.ack(ctx, client, evt.Request.EnvelopeID, received)
		b.accept(work, evt.Request)
	case socketmode.EventTypeErrorBadMessage:
		// An envelope slack-go could not parse (an unknown type, a payload of an
		// unexpected shape) is still acked, or Slack would send it again.
		if bad, ok := evt.Data.(*socketmode.ErrorBadMessage); ok {
			var req socketmode.Request
			parsed := json.Unmarshal(bad.Message, &req) == nil
			if parsed {
				b.obs.EventReceived(envelopeType(req.Type))
			} else {
				b.obs.EventReceived("malformed")
			}
			if parsed && req.EnvelopeID != "" {
				b.ack(ctx, client, req.EnvelopeID, received)
				if req.Type == "events_api" || req.Type == "slash_commands" {
					// slack-go's typed parse failed (a block shape it does not
					// know, say); forcebind's own parser needs much less.
					b.accept(work, &req)
					return nil
				}
			}
			b.log.Warn().Str("envelope_type", req.Type).Err(bad.Cause).Msg("envelope not understood; acked and dropped")
		}
	case socketmode.EventTypeIncomingError:
		// slack-go reports a frame that is not JSON, but also a read that
		// failed because the connection did; only the first is an event.
		if ie, ok := evt.Data.(*slack.IncomingEventError); ok {
			if typ := unreadableType(ie.ErrorObj); typ != "" {
				b.obs.EventReceived(typ)
			}
		}
		b.log.Warn().Msg("unreadable frame from Slack dropped")
	case socketmode.EventTypeHello:
		b.obs.EventReceived("hello")
		n := evt.Request.NumConnections
		l := b.log.Info()
		if n > 1 {
			l = b.log.Warn().Str("hint", "another process is using the same app token; each gets a share of the events")
		}
		l.Int("num_connections", n).Msg("socket mode hello")
		// Ready before Connected, so an observer sees the state it reports.
		b.ready.Store(true)
		b.obs.Connected(n)
	case socketmode.EventTypeConnecting:
		// slack-go says nothing when a connection ends; it opens the next.
		b.disconnected()
		if ce, ok := evt.Data.(*slack.ConnectingEvent); ok && (ce.Attempt > 1 || ce.ConnectionCount > 0) {
			b.obs.Reconnecting()
		}
		b.log.Debug().Msg("connecting to Slack")
	case socketmode.EventTypeConnected:
		conn.connected()
		b.log.Info().Msg("socket mode connected")
	case socketmode.EventTypeConnectionError:
		var code string
		if ce, ok := evt.Data.(*slack.ConnectionErrorEvent); ok {
			code = slackErrorCode(ce.ErrorObj)
			b.log.Warn().Err(ce.ErrorObj).Int("attempt", ce.Attempt).Dur("backoff", ce.Backoff).Msg("socket mode connection failed; retrying")
		}
		if err := conn.failed(code); err != nil {
			b.log.Error().Err(err).Msg("Slack keeps refusing the Socket Mode connection; stopping")
			return fmt.Errorf("socket mode: %w: %w", ErrSlackAuth, err)
		}
	case socketmode.EventTypeInvalidAuth:
		return fmt.Errorf("socket mode: %w: invalid_auth", ErrSlackAuth)
	}
	return nil
}

// disconnected marks the connection down, and reports it if it was up.
func (b *Bot) disconnected() {
	if b.ready.Swap(false) {
		b.obs.Disconnected()
	}
}

// ack queues the acknowledgement of one envelope, bounded by AckTimeout:
// AckCtx (never Ack, which can hang while disconnected). received is when
// the envelope came off the connection.
func (b *Bot) ack(ctx context.Context, client *socketmode.Client, envelopeID string, received time.Time) {
	if envelopeID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.AckTimeout)
	defer cancel()
	err := client.AckCtx(ctx, envelopeID, nil)
	b.obs.EventAcked(b.now().Sub(received), err == nil)
	if err != nil {
		b.log.Warn().Err(err).Str("envelope_id", envelopeID).Msg("ack not sent")
	}
}

// accept decides whether an acked envelope is work, and hands it over.
func (b *Bot) accept(work context.Context, req *socketmode.Request) {
	if req == nil {
		return
	}
	in, err := parseEnvelope(req.Type, req.Payload)
	if err != nil {
		b.log.Warn().Err(err).Str("envelope_type", req.Type).Msg("payload not understood; dropped")
		return
	}
	if in == nil {
		return // not for us: interactive, or an event type we do not handle
	}
	if why := b.drop(in); why != "" {
		b.log.Debug().Str("reason", why).Str("event_id", in.dedupeKey).Msg("event dropped")
		return
	}
	if !b.seen.first(in.dedupeKey, b.now()) {
		b.log.Info().Str("event_id", in.dedupeKey).Int("retry_attempt", req.RetryAttempt).Str("retry_reason", req.RetryReason).Msg("duplicate delivery dropped")
		return
	}
	if !b.pool.submit(in.TeamID+"/"+in.UserID, func() { b.handle(work, in) }) {
		typed, _ := splitCommand(in.Text)
		name, _ := b.lookup(typed)
		b.obs.CommandDone(name, "busy", 0)
		b.log.Warn().Str("team", in.TeamID).Str("user", in.UserID).Msg("busy: work refused")
		select {
		case b.busy <- in.reply(busyText):
		default: // the busy channel is full as well; the log line above is all we can do
		}
	}
}

// drop says why an incoming message is not for the bot, or "".
func (b *Bot) drop(in *incoming) string {
	switch {
	case b.self.teamID != "" && ((in.TeamID != "" && in.TeamID != b.self.teamID) || (in.UserTeam != "" && in.UserTeam != b.self.teamID)):
		return "other team"
	case in.UserID == "":
		return "no user"
	case in.UserID == b.self.userID || (in.BotID != "" && in.BotID == b.self.botID):
		return "own message"
	case in.BotID != "":
		return "bot message"
	case in.Subtype != "":
		return "subtype " + in.Subtype
	}
	return ""
}

// sendBusy answers refused work, one at a time, off the reader.
func (b *Bot) sendBusy(done chan<- struct{}) {
	defer close(done)
	for r := range b.busy {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := b.msg.send(ctx, r); err != nil {
			b.log.Warn().Err(err).Msg("busy reply not sent")
		}
		cancel()
	}
}

func (b *Bot) onPanic(key string, recovered any, stack []byte) {
	b.log.Error().Str("worker", key).Str("panic", fmt.Sprint(recovered)).Bytes("stack", stack).Msg("handler panicked; daemon continues")
}

func stack() []byte { return debug.Stack() }

// envelopeType names a Socket Mode envelope type for EventReceived: one of
// the types Slack documents, or "unknown", so a label never takes whatever
// a server sends.
func envelopeType(typ string) string {
	switch typ {
	case "events_api", "slash_commands", "interactive", "hello", "disconnect":
		return typ
	}
	return "unknown"
}

// unreadableType names, for EventReceived, a frame slack-go could not read:
// "malformed" when it was not JSON, "oversized" when it was over ReadLimit,
// "" when the read failed because the connection did.
func unreadableType(err error) string {
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntaxErr), errors.As(err, &typeErr):
		return "malformed"
	case errors.Is(err, websocket.ErrReadLimit):
		return "oversized"
	}
	return ""
}

// nopObserver is the Observer of a Bot whose Config has none.
type nopObserver struct{}

func (nopObserver) EventReceived(string)                      {}
func (nopObserver) EventAcked(time.Duration, bool)            {}
func (nopObserver) CommandDone(string, string, time.Duration) {}
func (nopObserver) Connected(int)                             {}
func (nopObserver) Disconnected()                             {}
func (nopObserver) Reconnecting()                             {}

// connWatch tells a passing outage from a permanent refusal: Slack answering
// apps.connections.open with the same error again and again after a
// disconnect (link_disabled: Socket Mode was switched off for the app) will
// not fix itself, while network errors may.
type connWatch struct {
	code  string
	times int
}

// maxSameRefusals is how many consecutive identical Slack refusals end the run.
const maxSameRefusals = 3

func (c *connWatch) connected() { *c = connWatch{} }

func (c *connWatch) failed(code string) error {
	if code == "" {
		c.code, c.times = "", 0 // a network error: slack-go backs off and retries
		return nil
	}
	if code == "link_disabled" || isFatalCode(code) {
		return errors.New(code)
	}
	if code == c.code {
		c.times++
	} else {
		c.code, c.times = code, 1
	}
	if c.times >= maxSameRefusals {
		return fmt.Errorf("%s, %d times in a row", code, c.times)
	}
	return nil
}

func isFatalCode(code string) bool {
	switch code {
	case "invalid_auth", "token_revoked", "account_inactive", "not_authed", "not_allowed_token_type", "link_disabled", "app_uninstalled", "team_disabled":
		return true
	}
	return false
}

// isFatalSlackError reports whether err is Slack refusing the tokens.
func isFatalSlackError(err error) bool { return isFatalCode(slackErrorCode(err)) }

// slackErrorCode returns the "error" of a Slack Web API answer, or "".
func slackErrorCode(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err
	}
	return ""
}

// slackLogger routes slack-go's own logging to zerolog at debug level.
type slackLogger struct{ log zerolog.Logger }

func (l slackLogger) Output(_ int, s string) error {
	l.log.Debug().Str("component", "slack-go").Msg(strings.TrimSpace(s))
	return nil
}
