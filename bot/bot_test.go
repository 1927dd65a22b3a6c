package bot

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/forcebind/forcebind/auth/account"
	"github.com/forcebind/forcebind/bot/slacktest"
	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/salesforce/sftest"
)

const (
	jane    = "U0JANE"
	sam     = "U0SAM"
	waitFor = 10 * time.Second
)

// fakeAuth stands in for the binding flow. Links are made up. Nobody is
// linked until mustLink links a Slack user to a user of a fake org, with a
// token that org issued; Client then gives out real Salesforce clients
// that share one FieldCache, as auth.Service does, and Unlink removes the
// link. A test can also make Account and Client block, panic or fail, and
// Unlink answer as it says.
type fakeAuth struct {
	block     chan struct{} // when set, Account and Client wait for it to close
	panicFor  string        // Account and Client panic for this user
	err       error         // when set, what Account and Client return for anyone not linked
	unlinked  *account.Unlinked
	unlinkErr error // with unlinked, what Unlink answers for anyone

	mu     sync.Mutex
	starts []account.Requester
	linked map[string]linked // by Slack user id
	hc     *http.Client      // for the clients Client makes
	fields *salesforce.FieldCache
}

// linked is one Slack user's link to a user of a fake org.
type linked struct {
	account account.Account
	token   string // the access token the fake org issued
}

// mustLink links slackUser to the fake org's user with sfUsername, as a
// confirmed link would, and returns the account.
func (f *fakeAuth) mustLink(tb testing.TB, srv *sftest.Server, slackUser, sfUsername string) account.Account {
	tb.Helper()
	g, err := srv.Login(sfUsername)
	if err != nil {
		tb.Fatal(err)
	}
	var sfUserID string
	for _, u := range srv.Users() {
		if u.Username == sfUsername {
			sfUserID = u.ID
		}
	}
	a := account.Account{
		TeamID: "T0001", UserID: slackUser, SalesforceUserID: sfUserID, OrgID: srv.OrgID(),
		Username: sfUsername, InstanceURL: g.InstanceURL, LoginURL: srv.URL, LinkedAt: time.Now(),
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.linked == nil {
		f.linked = make(map[string]linked)
		f.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		tb.Cleanup(f.hc.CloseIdleConnections)
		f.fields = salesforce.NewFieldCache(salesforce.FieldCacheConfig{})
	}
	f.linked[slackUser] = linked{account: a, token: g.AccessToken}
	return a
}

func (f *fakeAuth) Start(_ context.Context, who account.Requester) (account.Link, error) {
	f.mu.Lock()
	f.starts = append(f.starts, who)
	f.mu.Unlock()
	return account.Link{URL: "https://login.example/authorize?state=for-" + who.UserID, Expires: time.Now().Add(10 * time.Minute)}, nil
}

// startsFor returns the requesters links were started for.
func (f *fakeAuth) startsFor() []account.Requester {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]account.Requester(nil), f.starts...)
}

func (f *fakeAuth) Account(ctx context.Context, who account.Requester) (account.Account, error) {
	l, err := f.lookup(ctx, who)
	return l.account, err
}

func (f *fakeAuth) Client(ctx context.Context, who account.Requester) (*salesforce.Client, account.Account, error) {
	l, err := f.lookup(ctx, who)
	if err != nil {
		return nil, account.Account{}, err
	}
	sf, err := salesforce.New(salesforce.Config{
		InstanceURL: l.account.InstanceURL, HTTPClient: f.hc, Tokens: salesforce.StaticToken(l.token),
		Fields: f.fields, OrgID: l.account.OrgID, UserID: l.account.SalesforceUserID,
	})
	return sf, l.account, err
}

// lookup is who's link, after the test's block, panic or error.
func (f *fakeAuth) lookup(ctx context.Context, who account.Requester) (linked, error) {
	if who.UserID == f.panicFor {
		panic("handler bug")
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return linked{}, ctx.Err()
		}
	}
	f.mu.Lock()
	l, ok := f.linked[who.UserID]
	f.mu.Unlock()
	switch {
	case ok:
		return l, nil
	case f.err != nil:
		return linked{}, f.err
	}
	return linked{}, account.ErrNotLinked
}

func (f *fakeAuth) Unlink(_ context.Context, who account.Requester) (account.Unlinked, error) {
	if f.unlinked != nil || f.unlinkErr != nil {
		var u account.Unlinked
		if f.unlinked != nil {
			u = *f.unlinked
		}
		return u, f.unlinkErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.linked[who.UserID]
	if !ok {
		return account.Unlinked{}, account.ErrNotLinked
	}
	delete(f.linked, who.UserID)
	return account.Unlinked{Account: l.account, Revoked: true}, nil
}

// syncBuffer is a log sink safe for the bot's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is a Bot started by mustRun.
type running struct {
	bot  *Bot
	srv  *slacktest.Server
	logs *syncBuffer
	stop func() error // cancels Run and returns its error
	done chan error
}

func mustSlack(tb testing.TB) *slacktest.Server {
	tb.Helper()
	s := slacktest.NewServer(slacktest.Options{})
	tb.Cleanup(s.Close)
	return s
}

func mustRun(tb testing.TB, s *slacktest.Server, a Auth, tune func(*Config)) *running {
	tb.Helper()
	logs := &syncBuffer{}
	log := zerolog.New(logs)
	api := NewAPI(APIConfig{BotToken: s.BotToken(), AppToken: s.AppToken(), URL: s.APIURL, Logger: log})
	cfg := Config{API: api, APIURL: s.APIURL, Auth: a, Logger: log, DrainTimeout: 5 * time.Second}
	if tune != nil {
		tune(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{bot: b, srv: s, logs: logs, done: make(chan error, 1)}
	go func() { r.done <- b.Run(ctx) }()
	var once sync.Once
	var runErr error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-r.done:
			case <-time.After(waitFor):
				runErr = errors.New("Run did not return after cancel")
			}
		})
		return runErr
	}
	tb.Cleanup(func() {
		if err := r.stop(); err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
	return r
}

func mustAck(tb testing.TB, s *slacktest.Server, d slacktest.Delivery) slacktest.Ack {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), waitFor)
	defer cancel()
	a, err := s.WaitAck(ctx, d.EnvelopeID)
	if err != nil {
		tb.Fatalf("envelope %s not acked: %v", d.EnvelopeID, err)
	}
	return a
}

func mustMessage(tb testing.TB, s *slacktest.Server, match func(slacktest.Message) bool) slacktest.Message {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), waitFor)
	defer cancel()
	m, err := s.WaitMessage(ctx, match)
	if err != nil {
		tb.Fatalf("no such message: %v; messages: %+v", err, s.Messages())
	}
	return m
}

func to(channel string) func(slacktest.Message) bool {
	return func(m slacktest.Message) bool { return m.Channel == channel }
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestHelpInDM(t *testing.T) {
	s := mustSlack(t)
	mustRun(t, s, &fakeAuth{}, nil)
	d := s.SendDM(jane, "help")
	mustAck(t, s, d)
	m := mustMessage(t, s, to(s.DMChannel(jane)))
	for _, want := range []string{"`search <words>`", "`opportunity`/`opp <words>`", "`disconnect`", "`case <words>`"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("help lacks %q:\n%s", want, m.Text)
		}
	}
	if m.Ephemeral || m.Method != "chat.postMessage" {
		t.Errorf("DM answer sent as %s (ephemeral %v), want a chat.postMessage", m.Method, m.Ephemeral)
	}
}

func TestUnknownCommandHint(t *testing.T) {
	s := mustSlack(t)
	mustRun(t, s, &fakeAuth{}, nil)
	s.SendDM(jane, "frobnicate <script>")
	m := mustMessage(t, s, to(s.DMChannel(jane)))
	if !strings.Contains(m.Text, "`frobnicate`") || !strings.Contains(m.Text, "`help`") {
		t.Errorf("unknown command answer %q lacks the command and the hint", m.Text)
	}
}

// The binding link reaches only the person who asked, whichever the surface.
func TestLinkIsPrivate(t *testing.T) {
	s := mustSlack(t)
	fa := &fakeAuth{}
	mustRun(t, s, fa, nil)

	s.SendMention("C0GENERAL", jane, "<@U0BOT> search acme")
	m := mustMessage(t, s, to("C0GENERAL"))
	if !m.Ephemeral || m.User != jane {
		t.Errorf("link in a channel went out as %+v; want ephemeral to %s", m, jane)
	}
	if !strings.Contains(m.Text, "state=for-"+jane) || !strings.Contains(string(m.Blocks), "state=for-"+jane) {
		t.Errorf("link answer lacks the link: %q", m.Text)
	}

	s.SendSlashCommand("C0GENERAL", sam, "/salesforce", "connect")
	m = mustMessage(t, s, func(m slacktest.Message) bool { return m.Method == "response_url" })
	if !strings.Contains(m.Text, "state=for-"+sam) {
		t.Errorf("slash command answer lacks sam's link: %q", m.Text)
	}

	s.SendDM(jane, "connect")
	mustMessage(t, s, to(s.DMChannel(jane)))

	for _, m := range s.Messages() {
		if m.Channel == "C0GENERAL" && !m.Ephemeral && m.Method != "response_url" {
			t.Errorf("a public message went to the channel: %+v", m)
		}
	}
	if starts := fa.startsFor(); len(starts) != 3 || starts[0].TeamName != "Acme" || starts[0].UserID != jane {
		t.Errorf("links were started for %+v; want 3, for the askers, with the team's name", starts)
	}
}

// The name on the confirmation page: real name and handle, which a forwarded
// link's sender cannot copy as easily as a display name.
func TestMessengerDisplayName(t *testing.T) {
	s := mustSlack(t)
	m := NewMessenger(NewAPI(APIConfig{BotToken: s.BotToken(), URL: s.APIURL}), nil, s.APIURL, zerolog.Nop())
	if got := m.DisplayName(t.Context(), jane); got != "Jane Doe (@jane)" {
		t.Errorf("DisplayName = %q, want %q", got, "Jane Doe (@jane)")
	}
	if got := m.DisplayName(t.Context(), "U0NOBODY"); got != "" {
		t.Errorf("DisplayName of an unknown user = %q, want empty", got)
	}
}

func TestDuplicateDeliveryAnsweredOnce(t *testing.T) {
	s := mustSlack(t)
	mustRun(t, s, &fakeAuth{}, nil)
	d := s.SendDM(jane, "help")
	r := s.Redeliver(d, 1, "timeout")
	mustAck(t, s, d)
	mustAck(t, s, r)
	mustMessage(t, s, to(s.DMChannel(jane)))
	// A later message proves the redelivery was processed (the loop is ordered).
	s.SendDM(jane, "frobnicate")
	mustMessage(t, s, func(m slacktest.Message) bool { return strings.Contains(m.Text, "frobnicate") })
	if n := countTo(s, s.DMChannel(jane)); n != 2 {
		t.Errorf("%d answers for one event delivered twice plus one other; want 2", n)
	}
}

func countTo(s *slacktest.Server, channel string) int {
	n := 0
	for _, m := range s.Messages() {
		if m.Channel == channel {
			n++
		}
	}
	return n
}

func TestIgnoredMessages(t *testing.T) {
	s := mustSlack(t)
	mustRun(t, s, &fakeAuth{}, nil)
	dm := s.DMChannel(jane)
	deliveries := []slacktest.Delivery{
		s.SendMessageEvent(map[string]any{"channel_type": "im", "channel": dm, "user": "U0BOT", "bot_id": "B0BOT", "text": "help", "ts": "1.1"}),
		s.SendMessageEvent(map[string]any{"channel_type": "im", "channel": dm, "user": "U0OTHERBOT", "bot_id": "B0OTHER", "text": "help", "ts": "1.2"}),
		s.SendMessageEvent(map[string]any{"channel_type": "im", "channel": dm, "subtype": "message_changed", "text": "help", "ts": "1.3",
			"message": map[string]any{"user": jane, "text": "help"}}),
		s.SendMessageEvent(map[string]any{"channel_type": "channel", "channel": "C0GENERAL", "user": jane, "text": "help", "ts": "1.4"}),
		s.SendMessageEvent(map[string]any{"channel_type": "im", "channel": dm, "user": jane, "team": "T0OTHER", "text": "help", "ts": "1.5"}),
		s.SendMessageEvent(map[string]any{"channel_type": "im", "channel": dm, "user": jane, "user_team": "T0OTHER", "text": "help", "ts": "1.6"}),
	}
	for _, d := range deliveries {
		mustAck(t, s, d)
	}
	s.SendDM(jane, "frobnicate")
	// The loop is ordered: once the last DM is answered, the others were seen.
	mustMessage(t, s, func(m slacktest.Message) bool { return strings.Contains(m.Text, "frobnicate") })
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages sent; want only the answer to the last DM: %+v", n, s.Messages())
	}
}

func TestEventsFromOtherTeamIgnored(t *testing.T) {
	in := &incoming{TeamID: "T0OTHER", UserID: jane}
	b := &Bot{self: identity{teamID: "T0001", userID: "U0BOT", botID: "B0BOT"}}
	if got := b.drop(in); got != "other team" {
		t.Errorf("drop = %q, want other team", got)
	}
}

func TestPanickingHandler(t *testing.T) {
	s := mustSlack(t)
	r := mustRun(t, s, &fakeAuth{panicFor: sam}, nil)
	d := s.SendDM(sam, "search acme")
	mustAck(t, s, d)
	s.SendDM(jane, "help")
	mustMessage(t, s, to(s.DMChannel(jane)))
	// jane's work runs on another worker, so her answer can come before
	// sam's panic is logged: wait for the log itself.
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	for !strings.Contains(r.logs.String(), "handler panicked") {
		select {
		case <-ctx.Done():
			t.Fatal("the panic was not logged")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestMalformedAndUnknownEnvelopes(t *testing.T) {
	s := mustSlack(t)
	mustRun(t, s, &fakeAuth{}, nil)
	s.SendRaw([]byte(`{"type":"brand_new_type","envelope_id":"env-unknown","payload":{"x":1}}`))
	s.SendRaw([]byte(`{"type":"events_api","envelope_id":"env-badpayload","payload":{"type":"event_callback","event":"not an object"}}`))
	s.SendRaw([]byte(`{not json`))
	s.SendInteractive(map[string]any{"type": "block_actions", "user": map[string]any{"id": jane}, "actions": []any{}})
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	for _, id := range []string{"env-unknown", "env-badpayload"} {
		if _, err := s.WaitAck(ctx, id); err != nil {
			t.Errorf("envelope %s not acked: %v", id, err)
		}
	}
	s.SendDM(jane, "help")
	mustMessage(t, s, to(s.DMChannel(jane)))
}

// Acks never wait for work: with every handler stuck on Salesforce, each
// envelope is still acked.
func TestAcksDoNotWaitForWork(t *testing.T) {
	s := mustSlack(t)
	fa := &fakeAuth{block: make(chan struct{})}
	mustRun(t, s, fa, nil)
	var ds []slacktest.Delivery
	for i := 0; i < 10; i++ {
		ds = append(ds, s.SendDM(jane, "search acme"))
	}
	for _, d := range ds {
		mustAck(t, s, d) // while every handler is blocked
	}
	close(fa.block)
	mustMessage(t, s, to(s.DMChannel(jane)))
}

func TestBusyWhenPoolFull(t *testing.T) {
	s := mustSlack(t)
	fa := &fakeAuth{block: make(chan struct{})}
	mustRun(t, s, fa, func(c *Config) { c.Workers, c.QueuePerUser, c.MaxQueued = 1, 1, 1 })
	s.SendDM(jane, "search one") // runs, blocked
	s.SendDM(jane, "search two") // waits in jane's queue
	s.SendDM(jane, "search three")
	s.SendDM(sam, "search four") // no worker free
	mustMessage(t, s, func(m slacktest.Message) bool {
		return m.Channel == s.DMChannel(sam) && strings.Contains(m.Text, "busy")
	})
	mustMessage(t, s, func(m slacktest.Message) bool {
		return m.Channel == s.DMChannel(jane) && strings.Contains(m.Text, "busy")
	})
	close(fa.block)
	// jane's two accepted messages are answered, in order.
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	for countTo(s, s.DMChannel(jane)) < 3 {
		select {
		case <-ctx.Done():
			t.Fatalf("jane's queued work was not answered: %+v", s.Messages())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestReconnectOnRefreshRequested(t *testing.T) {
	s := mustSlack(t)
	mustRun(t, s, &fakeAuth{}, nil)
	s.SendDM(jane, "help")
	mustMessage(t, s, to(s.DMChannel(jane)))
	s.Disconnect("refresh_requested")
	d := s.SendDM(sam, "help")
	mustAck(t, s, d)
	mustMessage(t, s, to(s.DMChannel(sam)))
	if n := s.Connections(); n < 2 {
		t.Errorf("apps.connections.open called %d times; want a reconnect", n)
	}
}

func TestFatalSlackErrorsStopRun(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*slacktest.Server)
		after func(*slacktest.Server)
	}{
		{"auth.test invalid_auth", func(s *slacktest.Server) { s.SetError("auth.test", "invalid_auth") }, nil},
		{"connections.open token_revoked", func(s *slacktest.Server) { s.SetError("apps.connections.open", "token_revoked") }, nil},
		{"link_disabled", nil, func(s *slacktest.Server) { s.Disconnect("link_disabled") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSlack(t)
			if tt.setup != nil {
				tt.setup(s)
			}
			r := mustRun(t, s, &fakeAuth{}, nil)
			if tt.after != nil {
				s.SendDM(jane, "help")
				mustMessage(t, s, to(s.DMChannel(jane)))
				tt.after(s)
			}
			select {
			case err := <-r.done:
				if !errors.Is(err, ErrSlackAuth) {
					t.Errorf("Run = %v; want ErrSlackAuth", err)
				}
				r.done <- nil // for the cleanup's stop
			case <-time.After(waitFor):
				t.Fatal("Run did not stop")
			}
		})
	}
}

// On shutdown the bot stops taking events but finishes what it started.
func TestShutdownFinishesInFlightWork(t *testing.T) {
	s := mustSlack(t)
	fa := &fakeAuth{block: make(chan struct{})}
	r := mustRun(t, s, fa, nil)
	d := s.SendDM(jane, "search acme")
	mustAck(t, s, d)
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	time.Sleep(50 * time.Millisecond) // let the cancel land while the work is stuck
	close(fa.block)
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Run returns only after the work in flight has answered.
	if n := countTo(s, s.DMChannel(jane)); n != 1 {
		t.Errorf("%d answers when Run returned, want the in-flight one", n)
	}
}

// A command that runs out of time still gets an answer saying so.
func TestTimedOutCommandIsAnswered(t *testing.T) {
	s := mustSlack(t)
	fa := &fakeAuth{block: make(chan struct{})}
	defer close(fa.block)
	mustRun(t, s, fa, func(c *Config) { c.HandlerTimeout = 200 * time.Millisecond })
	s.SendDM(jane, "search acme")
	m := mustMessage(t, s, to(s.DMChannel(jane)))
	if !strings.Contains(m.Text, "too long") {
		t.Errorf("answer %q does not say it timed out", m.Text)
	}
}

// An envelope slack-go cannot parse into its own types, but that carries a
// usable message, is still answered.
func TestEnvelopeSlackGoCannotParse(t *testing.T) {
	s := mustSlack(t)
	mustRun(t, s, &fakeAuth{}, nil)
	d := s.SendMessageEvent(map[string]any{"channel_type": "im", "channel": s.DMChannel(jane), "user": jane, "text": "help", "ts": "1.1", "blocks": 5})
	mustAck(t, s, d)
	mustMessage(t, s, to(s.DMChannel(jane)))
}

// Work still running when the drain time is up is cancelled, so Run returns
// within the bound instead of waiting for HandlerTimeout.
func TestShutdownCancelsWorkPastTheDrain(t *testing.T) {
	s := mustSlack(t)
	fa := &fakeAuth{block: make(chan struct{})} // never released: Binding waits for its ctx
	r := mustRun(t, s, fa, func(c *Config) { c.DrainTimeout = 200 * time.Millisecond; c.HandlerTimeout = time.Hour })
	mustAck(t, s, s.SendDM(jane, "search acme"))
	start := time.Now()
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v to return with stuck work; the drain bound is 200ms", d)
	}
	if !strings.Contains(r.logs.String(), "cancelling it") {
		t.Error("no log of the cancelled work")
	}
}

// Another process on the same app token splits the events: the log says so.
func TestWarnsAboutOtherConnections(t *testing.T) {
	s := mustSlack(t)
	s.SetNumConnections(2)
	r := mustRun(t, s, &fakeAuth{}, nil)
	s.SendDM(jane, "help")
	mustMessage(t, s, to(s.DMChannel(jane)))
	logs := r.logs.String()
	if !strings.Contains(logs, `"num_connections":2`) || !strings.Contains(logs, "another process is using the same app token") {
		t.Errorf("no warning about a second connection in:\n%s", logs)
	}
}

// A frame over ReadLimit costs the connection, not the daemon: it reconnects
// and answers what comes next.
func TestOversizedFrame(t *testing.T) {
	s := mustSlack(t)
	mustRun(t, s, &fakeAuth{}, func(c *Config) { c.ReadLimit = 4 << 10 })
	s.SendDM(jane, "help")
	mustMessage(t, s, to(s.DMChannel(jane)))
	s.SendRaw([]byte(`{"type":"events_api","envelope_id":"big","payload":{"x":"` + strings.Repeat("a", 8<<10) + `"}}`))
	// Wait for the new connection: an envelope written to the dying one would
	// be lost here, as the fake (unlike Slack) does not redeliver unacked ones.
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	for s.Connections() < 2 || !s.Connected() {
		select {
		case <-ctx.Done():
			t.Fatalf("no reconnect after an oversized frame (%d connections)", s.Connections())
		case <-time.After(10 * time.Millisecond):
		}
	}
	d := s.SendDM(sam, "help")
	mustAck(t, s, d)
	mustMessage(t, s, to(s.DMChannel(sam)))
}
