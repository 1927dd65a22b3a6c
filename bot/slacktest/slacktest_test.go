package slacktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor bounds every wait in these tests; it is a failure deadline, not a speed
// assertion.
const waitFor = 10 * time.Second

// mustServer starts a Server closed at the end of the test.
func mustServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := NewServer(opts)
	tb.Cleanup(s.Close)
	return s
}

// client is the real slack-go Socket Mode client running against a Server.
type client struct {
	api     *slack.Client
	sm      *socketmode.Client
	events  chan socketmode.Event
	stopped chan struct{} // closed when RunContext returns
	err     error         // RunContext's result, set before stopped is closed
}

// stop waits for RunContext to return (its error is then in c.err); it reports
// false if RunContext did not return within waitFor.
func (c *client) stop() bool {
	select {
	case <-c.stopped:
		return true
	case <-time.After(waitFor):
		return false
	}
}

// mustClient starts a socketmode client with appToken (the server's when empty)
// and stops it at the end of the test, before the server closes.
func mustClient(tb testing.TB, s *Server, appToken string, opts ...socketmode.Option) *client {
	tb.Helper()
	if appToken == "" {
		appToken = s.AppToken()
	}
	api := slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL), slack.OptionAppLevelToken(appToken))
	c := &client{
		api:     api,
		sm:      socketmode.New(api, opts...),
		events:  make(chan socketmode.Event, 100),
		stopped: make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	forwarded := make(chan struct{})
	go func() {
		defer close(c.stopped)
		c.err = c.sm.RunContext(ctx)
	}()
	go func() {
		defer close(forwarded)
		for {
			select {
			case e := <-c.sm.Events:
				select {
				case c.events <- e:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	tb.Cleanup(func() {
		cancel()
		<-forwarded
		if !c.stop() {
			tb.Errorf("socketmode client did not stop")
		}
	})
	return c
}

// mustEvent returns the next event of type typ, skipping others.
func (c *client) mustEvent(tb testing.TB, typ socketmode.EventType) socketmode.Event {
	tb.Helper()
	var seen []socketmode.EventType
	timeout := time.After(waitFor)
	for {
		select {
		case e := <-c.events:
			if e.Type == typ {
				return e
			}
			seen = append(seen, e.Type)
		case <-c.stopped:
			tb.Fatalf("client stopped (%v) while waiting for %q; saw %v", c.err, typ, seen)
		case <-timeout:
			tb.Fatalf("no %q event; saw %v", typ, seen)
		}
	}
}

// mustEventsAPI returns the outer and inner event of an events_api event.
func mustEventsAPI(tb testing.TB, e socketmode.Event) (*slackevents.EventsAPICallbackEvent, any) {
	tb.Helper()
	ev, ok := e.Data.(slackevents.EventsAPIEvent)
	if !ok {
		tb.Fatalf("event data is %T, want slackevents.EventsAPIEvent", e.Data)
	}
	outer, ok := ev.Data.(*slackevents.EventsAPICallbackEvent)
	if !ok {
		tb.Fatalf("outer event is %T, want *slackevents.EventsAPICallbackEvent", ev.Data)
	}
	return outer, ev.InnerEvent.Data
}

func TestHello(t *testing.T) {
	type hello struct {
		NumConnections int
		AppID, Host    string
		Approx         int
	}
	tests := []struct {
		name   string
		setNum int
		want   hello
	}{
		{name: "live count", setNum: 0, want: hello{NumConnections: 1, AppID: DefaultAppID, Host: "applink-slacktest", Approx: 18060}},
		{name: "set", setNum: 4, want: hello{NumConnections: 4, AppID: DefaultAppID, Host: "applink-slacktest", Approx: 18060}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustServer(t, Options{})
			s.SetNumConnections(tt.setNum)
			c := mustClient(t, s, "")
			r := c.mustEvent(t, socketmode.EventTypeHello).Request
			got := hello{r.NumConnections, r.ConnectionInfo.AppID, r.DebugInfo.Host, r.DebugInfo.ApproximateConnectionTime}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("hello mismatch (-want +got):\n%s", diff)
			}
			if !s.Connected() || s.Connections() != 1 {
				t.Errorf("Connected() = %v, Connections() = %d, want true, 1", s.Connected(), s.Connections())
			}
		})
	}
}

func TestAckOfHelloIsRecorded(t *testing.T) {
	s := mustServer(t, Options{})
	c := mustClient(t, s, "")
	hello := c.mustEvent(t, socketmode.EventTypeHello)
	if err := c.sm.AckCtx(t.Context(), hello.Request.EnvelopeID, nil); err != nil {
		t.Fatalf("AckCtx: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	if _, err := s.WaitAck(ctx, ""); err != nil {
		t.Errorf("WaitAck(\"\") = %v, want the wrongful ack of hello", err)
	}
}

// delivered is what a test compares of an event the client received.
type delivered struct {
	Type                               socketmode.EventType
	Inner                              string
	Channel, ChannelType, User, Text   string
	BotID, Command, ResponseURLPrefix  string
	TeamID, EventID, InteractionAction string
	Accepts                            bool
}

func TestEventsReachClient(t *testing.T) {
	tests := []struct {
		name string
		send func(*Server) Delivery
		want delivered
	}{
		{
			name: "dm",
			send: func(s *Server) Delivery { return s.SendDM("U0JANE", "search acme") },
			want: delivered{Type: socketmode.EventTypeEventsAPI, Inner: "message", Channel: "D0JANE", ChannelType: "im", User: "U0JANE", Text: "search acme", TeamID: "T0001"},
		},
		{
			name: "mention",
			send: func(s *Server) Delivery { return s.SendMention("C0SALES", "U0SAM", "<@U0BOT> whoami") },
			want: delivered{Type: socketmode.EventTypeEventsAPI, Inner: "app_mention", Channel: "C0SALES", User: "U0SAM", Text: "<@U0BOT> whoami", TeamID: "T0001"},
		},
		{
			name: "bot message",
			send: func(s *Server) Delivery {
				return s.SendMessageEvent(map[string]any{"subtype": "bot_message", "bot_id": "B0BOT", "channel": "D0JANE", "channel_type": "im", "text": "echo", "ts": "1.000001"})
			},
			want: delivered{Type: socketmode.EventTypeEventsAPI, Inner: "message", Channel: "D0JANE", ChannelType: "im", Text: "echo", BotID: "B0BOT", TeamID: "T0001"},
		},
		{
			name: "slash command",
			send: func(s *Server) Delivery { return s.SendSlashCommand("C0SALES", "U0JANE", "/salesforce", "search acme") },
			want: delivered{Type: socketmode.EventTypeSlashCommand, Channel: "C0SALES", User: "U0JANE", Text: "search acme", Command: "/salesforce", ResponseURLPrefix: "/commands/T0001/", TeamID: "T0001", Accepts: true},
		},
		{
			name: "interactive",
			send: func(s *Server) Delivery {
				return s.SendInteractive(map[string]any{
					"type":    "block_actions",
					"user":    map[string]any{"id": "U0JANE"},
					"team":    map[string]any{"id": "T0001"},
					"actions": []map[string]any{{"action_id": "confirm", "block_id": "link", "type": "button", "value": "yes"}},
				})
			},
			want: delivered{Type: socketmode.EventTypeInteractive, User: "U0JANE", TeamID: "T0001", InteractionAction: "confirm"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustServer(t, Options{})
			c := mustClient(t, s, "")
			c.mustEvent(t, socketmode.EventTypeHello)
			d := tt.send(s)
			e := c.mustEvent(t, tt.want.Type)

			got := delivered{Type: e.Type, Accepts: e.Request.AcceptsResponsePayload}
			switch data := e.Data.(type) {
			case slackevents.EventsAPIEvent:
				outer, inner := mustEventsAPI(t, e)
				got.TeamID, got.EventID = outer.TeamID, outer.EventID
				switch ev := inner.(type) {
				case *slackevents.MessageEvent:
					got.Inner, got.Channel, got.ChannelType, got.User, got.Text, got.BotID = ev.Type, ev.Channel, ev.ChannelType, ev.User, ev.Text, ev.BotID
					if ev.TimeStamp == "" || ev.EventTimeStamp == "" {
						t.Errorf("message ts = %q, event_ts = %q, want both set", ev.TimeStamp, ev.EventTimeStamp)
					}
				case *slackevents.AppMentionEvent:
					got.Inner, got.Channel, got.User, got.Text = ev.Type, ev.Channel, ev.User, ev.Text
				default:
					t.Fatalf("inner event is %T", inner)
				}
			case slack.SlashCommand:
				got.Channel, got.User, got.Text, got.Command, got.TeamID = data.ChannelID, data.UserID, data.Text, data.Command, data.TeamID
				if len(data.ResponseURL) > len(s.URL)+len(tt.want.ResponseURLPrefix) {
					got.ResponseURLPrefix = data.ResponseURL[len(s.URL) : len(s.URL)+len(tt.want.ResponseURLPrefix)]
				}
			case slack.InteractionCallback:
				got.User, got.TeamID = data.User.ID, data.Team.ID
				if len(data.ActionCallback.BlockActions) == 1 {
					got.InteractionAction = data.ActionCallback.BlockActions[0].ActionID
				}
			default:
				t.Fatalf("event data is %T", e.Data)
			}
			want := tt.want
			want.EventID = d.EventID
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("event mismatch (-want +got):\n%s", diff)
			}
			if e.Request.EnvelopeID != d.EnvelopeID {
				t.Errorf("envelope id = %q, want %q", e.Request.EnvelopeID, d.EnvelopeID)
			}

			if err := c.sm.AckCtx(t.Context(), e.Request.EnvelopeID, map[string]any{"text": "ok"}); err != nil {
				t.Fatalf("AckCtx: %v", err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), waitFor)
			defer cancel()
			ack, err := s.WaitAck(ctx, d.EnvelopeID)
			if err != nil {
				t.Fatalf("WaitAck: %v", err)
			}
			if diff := cmp.Diff(`{"text":"ok"}`, string(ack.Payload)); diff != "" {
				t.Errorf("ack payload mismatch (-want +got):\n%s", diff)
			}
			if ack.Latency < 0 || ack.At.IsZero() {
				t.Errorf("ack latency %v at %v, want >= 0 and set", ack.Latency, ack.At)
			}
		})
	}
}

func TestAckWithoutPayload(t *testing.T) {
	s := mustServer(t, Options{})
	c := mustClient(t, s, "")
	d := s.SendDM("U0JANE", "help")
	e := c.mustEvent(t, socketmode.EventTypeEventsAPI)
	c.sm.Ack(*e.Request)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	ack, err := s.WaitAck(ctx, d.EnvelopeID)
	if err != nil {
		t.Fatalf("WaitAck: %v", err)
	}
	if ack.Payload != nil {
		t.Errorf("ack payload = %s, want none", ack.Payload)
	}
	if diff := cmp.Diff([]string{d.EnvelopeID}, ackIDs(s.Acks())); diff != "" {
		t.Errorf("Acks() mismatch (-want +got):\n%s", diff)
	}
}

func ackIDs(acks []Ack) []string {
	var ids []string
	for _, a := range acks {
		ids = append(ids, a.EnvelopeID)
	}
	return ids
}

func TestQueuedUntilConnect(t *testing.T) {
	s := mustServer(t, Options{})
	first := s.SendDM("U0JANE", "one")
	second := s.SendMention("C0SALES", "U0SAM", "<@U0BOT> two")
	if s.Pending() != 2 {
		t.Errorf("Pending() = %d before connect, want 2", s.Pending())
	}
	c := mustClient(t, s, "")
	c.mustEvent(t, socketmode.EventTypeHello)
	var got []string
	for range 2 {
		got = append(got, c.mustEvent(t, socketmode.EventTypeEventsAPI).Request.EnvelopeID)
	}
	if diff := cmp.Diff([]string{first.EnvelopeID, second.EnvelopeID}, got); diff != "" {
		t.Errorf("delivery order mismatch (-want +got):\n%s", diff)
	}
}

func TestRedeliver(t *testing.T) {
	s := mustServer(t, Options{})
	c := mustClient(t, s, "")
	d := s.SendDM("U0JANE", "search acme")
	first := c.mustEvent(t, socketmode.EventTypeEventsAPI) // not acked
	r := s.Redeliver(d, 1, "timeout")
	again := c.mustEvent(t, socketmode.EventTypeEventsAPI)
	outer, _ := mustEventsAPI(t, again)

	type retry struct {
		EventID, EnvelopeID, Reason string
		Attempt                     int
	}
	want := retry{EventID: d.EventID, EnvelopeID: r.EnvelopeID, Reason: "timeout", Attempt: 1}
	got := retry{EventID: outer.EventID, EnvelopeID: again.Request.EnvelopeID, Reason: again.Request.RetryReason, Attempt: again.Request.RetryAttempt}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("redelivery mismatch (-want +got):\n%s", diff)
	}
	if r.EnvelopeID == d.EnvelopeID || first.Request.RetryAttempt != 0 {
		t.Errorf("redelivery reused envelope %q (first retry_attempt %d)", r.EnvelopeID, first.Request.RetryAttempt)
	}
	if got := s.Redeliver(Delivery{EnvelopeID: "nope"}, 1, "timeout"); got != (Delivery{}) {
		t.Errorf("Redeliver(unknown) = %+v, want zero", got)
	}
}

func TestBadFramesDoNotBreakConnection(t *testing.T) {
	s := mustServer(t, Options{})
	c := mustClient(t, s, "")
	c.mustEvent(t, socketmode.EventTypeHello)
	// slack-go skips a truncated frame silently and reports a syntax error.
	s.SendRaw([]byte(`{"type":"events_api","envelope_id":`))
	s.SendRaw([]byte(`{"type": events_api}`))
	c.mustEvent(t, socketmode.EventTypeIncomingError)
	s.SendRaw([]byte(`{"type":"brand_new","envelope_id":"e-unknown","payload":{}}`))
	c.mustEvent(t, socketmode.EventTypeErrorBadMessage)
	d := s.SendDM("U0JANE", "still there?")
	e := c.mustEvent(t, socketmode.EventTypeEventsAPI)
	if e.Request.EnvelopeID != d.EnvelopeID {
		t.Errorf("envelope id = %q, want %q", e.Request.EnvelopeID, d.EnvelopeID)
	}
	if s.Connections() != 1 || !s.Connected() {
		t.Errorf("Connections() = %d, Connected() = %v, want 1, true", s.Connections(), s.Connected())
	}
}

func TestReconnect(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(*Server)
	}{
		{name: "refresh_requested", break_: func(s *Server) { s.Disconnect("refresh_requested") }},
		{name: "warning", break_: func(s *Server) { s.Disconnect("warning") }},
		{name: "dropped", break_: func(s *Server) { s.DropConnection() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustServer(t, Options{})
			c := mustClient(t, s, "")
			c.mustEvent(t, socketmode.EventTypeHello)
			tt.break_(s)
			c.mustEvent(t, socketmode.EventTypeHello) // the second connection's
			if got := s.Connections(); got != 2 {
				t.Errorf("Connections() = %d, want 2", got)
			}
			d := s.SendDM("U0JANE", "after reconnect")
			e := c.mustEvent(t, socketmode.EventTypeEventsAPI)
			if e.Request.EnvelopeID != d.EnvelopeID {
				t.Errorf("envelope id = %q, want %q", e.Request.EnvelopeID, d.EnvelopeID)
			}
		})
	}
}

func TestLinkDisabled(t *testing.T) {
	s := mustServer(t, Options{})
	c := mustClient(t, s, "")
	c.mustEvent(t, socketmode.EventTypeHello)
	s.Disconnect("link_disabled")
	e := c.mustEvent(t, socketmode.EventTypeConnectionError)
	ce, ok := e.Data.(*slack.ConnectionErrorEvent)
	if !ok {
		t.Fatalf("data is %T, want *slack.ConnectionErrorEvent", e.Data)
	}
	var se slack.SlackErrorResponse
	if !errors.As(ce.ErrorObj, &se) || se.Err != "link_disabled" {
		t.Errorf("connection error = %v, want Slack error link_disabled", ce.ErrorObj)
	}
	if got := s.Connections(); got != 1 {
		t.Errorf("Connections() = %d, want 1", got)
	}
	if s.Connected() {
		t.Errorf("Connected() = true after link_disabled")
	}
}

func TestFatalConnectErrors(t *testing.T) {
	tests := []struct {
		name     string
		appToken string
		setError string
		want     string
	}{
		{name: "wrong app token", appToken: "xapp-1-wrong", want: "invalid_auth"},
		{name: "bot token as app token", appToken: DefaultBotToken, want: "not_allowed_token_type"},
		{name: "revoked", setError: "token_revoked", want: "token_revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustServer(t, Options{})
			if tt.setError != "" {
				s.SetError("apps.connections.open", tt.setError)
			}
			c := mustClient(t, s, tt.appToken)
			if tt.want == "not_allowed_token_type" {
				// slack-go retries errors it does not know to be fatal.
				e := c.mustEvent(t, socketmode.EventTypeConnectionError)
				if got := e.Data.(*slack.ConnectionErrorEvent).ErrorObj.Error(); got != tt.want {
					t.Errorf("connection error = %q, want %q", got, tt.want)
				}
				return
			}
			if !c.stop() {
				t.Fatal("RunContext did not return")
			}
			err := c.err
			var se slack.SlackErrorResponse
			if !errors.As(err, &se) || se.Err != tt.want {
				t.Errorf("RunContext() = %v, want Slack error %s", err, tt.want)
			}
			if s.Connections() != 0 {
				t.Errorf("Connections() = %d, want 0", s.Connections())
			}
		})
	}
}

func TestPings(t *testing.T) {
	s := mustServer(t, Options{PingInterval: 20 * time.Millisecond})
	// The client gives up on a connection not pinged within 150ms.
	c := mustClient(t, s, "", socketmode.OptionPingInterval(150*time.Millisecond))
	c.mustEvent(t, socketmode.EventTypeHello)
	time.Sleep(600 * time.Millisecond)
	if got := s.Connections(); got != 1 {
		t.Errorf("Connections() = %d after several ping intervals, want 1", got)
	}
}

func TestTicketsSingleUse(t *testing.T) {
	s := mustServer(t, Options{})
	api := slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL), slack.OptionAppLevelToken(s.AppToken()))
	_, url, err := api.StartSocketModeContext(t.Context())
	if err != nil {
		t.Fatalf("apps.connections.open: %v", err)
	}
	tests := []struct {
		name    string
		url     string
		wantErr bool
	}{
		{name: "fresh", url: url},
		{name: "used", url: url, wantErr: true},
		{name: "unknown", url: "ws" + s.URL[len("http"):] + "/link/?ticket=forged", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := dialHello(t.Context(), tt.url)
			if (err != nil) != tt.wantErr {
				t.Errorf("dial %s: err = %v, want error %v", tt.name, err, tt.wantErr)
			}
		})
	}
}

func TestWebAPI(t *testing.T) {
	s := mustServer(t, Options{})
	api := slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL))

	t.Run("auth.test", func(t *testing.T) {
		got, err := api.AuthTestContext(t.Context())
		if err != nil {
			t.Fatalf("AuthTest: %v", err)
		}
		got.Header = nil
		want := &slack.AuthTestResponse{URL: s.URL + "/", Team: "Acme", User: "forcebind", TeamID: "T0001", UserID: "U0BOT", BotID: "B0BOT"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("auth.test mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("users.info", func(t *testing.T) {
		tests := []struct {
			user, want, wantErr string
		}{
			{user: "U0JANE", want: "jane|Jane Doe|jane|jane@acme.example|T0001|false"},
			{user: "U0BOT", want: "forcebind|forcebind|forcebind||T0001|true"},
			{user: "U0NOBODY", wantErr: "user_not_found"},
		}
		for _, tt := range tests {
			u, err := api.GetUserInfoContext(t.Context(), tt.user)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("users.info %s: err = %v, want %s", tt.user, err, tt.wantErr)
				}
				continue
			}
			if err != nil {
				t.Fatalf("users.info %s: %v", tt.user, err)
			}
			got := fmt.Sprintf("%s|%s|%s|%s|%s|%v", u.Name, u.Profile.RealName, u.Profile.DisplayName, u.Profile.Email, u.TeamID, u.IsBot)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("users.info %s mismatch (-want +got):\n%s", tt.user, diff)
			}
		}
	})

	t.Run("conversations.open", func(t *testing.T) {
		var got []string
		for range 2 {
			ch, _, already, err := api.OpenConversationContext(t.Context(), &slack.OpenConversationParameters{Users: []string{"U0SAM"}})
			if err != nil {
				t.Fatalf("conversations.open: %v", err)
			}
			got = append(got, fmt.Sprintf("%s %v", ch.ID, already))
		}
		if diff := cmp.Diff([]string{"D0SAM false", "D0SAM true"}, got); diff != "" {
			t.Errorf("conversations.open mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			call func(ctx context.Context) error
			want string
		}{
			{
				name: "unknown method",
				call: func(ctx context.Context) error {
					_, err := api.GetConversationInfoContext(ctx, &slack.GetConversationInfoInput{ChannelID: "C0SALES"})
					return err
				},
				want: "unknown_method",
			},
			{
				name: "wrong bot token",
				call: func(ctx context.Context) error {
					_, err := slack.New("xoxb-wrong", slack.OptionAPIURL(s.APIURL)).AuthTestContext(ctx)
					return err
				},
				want: "invalid_auth",
			},
			{
				name: "app token for a bot method",
				call: func(ctx context.Context) error {
					_, err := slack.New(s.AppToken(), slack.OptionAPIURL(s.APIURL)).AuthTestContext(ctx)
					return err
				},
				want: "not_allowed_token_type",
			},
			{
				name: "no token",
				call: func(ctx context.Context) error {
					_, err := slack.New("", slack.OptionAPIURL(s.APIURL)).AuthTestContext(ctx)
					return err
				},
				want: "not_authed",
			},
			{
				name: "no text",
				call: func(ctx context.Context) error {
					_, _, err := api.PostMessageContext(ctx, "C0SALES")
					return err
				},
				want: "no_text",
			},
			{
				name: "update unknown message",
				call: func(ctx context.Context) error {
					_, _, _, err := api.UpdateMessageContext(ctx, "C0SALES", "1.000000", slack.MsgOptionText("x", false))
					return err
				},
				want: "message_not_found",
			},
		}
		for _, tt := range tests {
			err := tt.call(t.Context())
			var se slack.SlackErrorResponse
			if !errors.As(err, &se) || se.Err != tt.want {
				t.Errorf("%s: err = %v, want Slack error %s", tt.name, err, tt.want)
			}
		}
	})

	t.Run("SetError", func(t *testing.T) {
		s.SetError("auth.test", "account_inactive")
		_, err := api.AuthTestContext(t.Context())
		s.SetError("auth.test", "")
		_, err2 := api.AuthTestContext(t.Context())
		if err == nil || err.Error() != "account_inactive" || err2 != nil {
			t.Errorf("auth.test with error set: %v, after clearing: %v; want account_inactive, nil", err, err2)
		}
	})

	t.Run("calls recorded without tokens", func(t *testing.T) {
		for _, c := range s.Calls() {
			if _, ok := c.Params["token"]; ok {
				t.Errorf("call %s recorded a token", c.Method)
			}
		}
		calls := s.Calls()
		first := calls[0]
		got := fmt.Sprint(first.Method, " ", first.Auth)
		if diff := cmp.Diff("auth.test bot", got); diff != "" {
			t.Errorf("first call mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestMessagesRecorded(t *testing.T) {
	s := mustServer(t, Options{})
	api := slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL))
	ctx := t.Context()
	block := slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*Acme*", false, false), nil, nil)

	ch, ts, err := api.PostMessageContext(ctx, "U0JANE", slack.MsgOptionText("linked", false), slack.MsgOptionBlocks(block))
	if err != nil {
		t.Fatalf("chat.postMessage: %v", err)
	}
	ets, err := api.PostEphemeralContext(ctx, "C0SALES", "U0SAM", slack.MsgOptionText("only you", false), slack.MsgOptionTS("1.000009"))
	if err != nil {
		t.Fatalf("chat.postEphemeral: %v", err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, ch, ts, slack.MsgOptionText("linked!", false)); err != nil {
		t.Fatalf("chat.update: %v", err)
	}
	s.SendSlashCommand("C0SALES", "U0JANE", "/salesforce", "help")
	responseURL := mustSlashResponseURL(t, s)
	if _, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionResponseURL(responseURL, slack.ResponseTypeEphemeral), slack.MsgOptionText("usage", false)); err != nil {
		t.Fatalf("response_url: %v", err)
	}

	type msg struct {
		Method, Channel, User, Text, TS, ThreadTS, Blocks string
		Ephemeral                                         bool
	}
	var got []msg
	for _, m := range s.Messages() {
		got = append(got, msg{m.Method, m.Channel, m.User, m.Text, m.TS, m.ThreadTS, string(m.Blocks), m.Ephemeral})
		if m.At.IsZero() {
			t.Errorf("%s: At not set", m.Method)
		}
	}
	if len(got) == 4 {
		got[3].TS = "" // the response_url reply's ts is not exposed to the client
	}
	want := []msg{
		{Method: "chat.postMessage", Channel: "D0JANE", Text: "linked", TS: ts, Blocks: `[{"type":"section","text":{"type":"mrkdwn","text":"*Acme*"}}]`},
		{Method: "chat.postEphemeral", Channel: "C0SALES", User: "U0SAM", Text: "only you", TS: ets, ThreadTS: "1.000009", Ephemeral: true},
		{Method: "chat.update", Channel: "D0JANE", Text: "linked!", TS: ts},
		{Method: "response_url", Channel: "C0SALES", User: "U0JANE", Text: "usage", Ephemeral: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Messages() mismatch (-want +got):\n%s", diff)
	}
	if ch != "D0JANE" {
		t.Errorf("chat.postMessage channel = %q, want D0JANE", ch)
	}
}

// mustSlashResponseURL reads the response_url of the last queued slash command.
func mustSlashResponseURL(tb testing.TB, s *Server) string {
	tb.Helper()
	c := mustClient(tb, s, "")
	e := c.mustEvent(tb, socketmode.EventTypeSlashCommand)
	return e.Data.(slack.SlashCommand).ResponseURL
}

func TestWaitMessage(t *testing.T) {
	s := mustServer(t, Options{})
	api := slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL))

	t.Run("times out", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := s.WaitMessage(ctx, func(Message) bool { return true })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitMessage() err = %v, want context.DeadlineExceeded", err)
		}
	})

	t.Run("arrives later", func(t *testing.T) {
		got := make(chan Message, 1)
		errc := make(chan error, 1)
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		defer cancel()
		go func() {
			m, err := s.WaitMessage(ctx, func(m Message) bool { return m.Text == "later" })
			got <- m
			errc <- err
		}()
		if _, _, err := api.PostMessageContext(t.Context(), "C0SALES", slack.MsgOptionText("earlier", false)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := api.PostMessageContext(t.Context(), "C0SALES", slack.MsgOptionText("later", false)); err != nil {
			t.Fatal(err)
		}
		m := <-got
		if err := <-errc; err != nil || m.Text != "later" {
			t.Errorf("WaitMessage() = %q, %v; want later, nil", m.Text, err)
		}
	})

	t.Run("server closed", func(t *testing.T) {
		s2 := NewServer(Options{})
		errc := make(chan error, 1)
		go func() {
			_, err := s2.WaitAck(t.Context(), "never")
			errc <- err
		}()
		s2.Close()
		s2.Close() // idempotent
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Errorf("WaitAck() after Close = %v, want ErrClosed", err)
		}
	})
}

func TestSubscribe(t *testing.T) {
	s := mustServer(t, Options{})
	api := slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL))
	ch, cancel := s.Subscribe()
	for _, text := range []string{"a", "b"} {
		if _, _, err := api.PostMessageContext(t.Context(), "C0SALES", slack.MsgOptionText(text, false)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for range 2 {
		select {
		case m := <-ch:
			got = append(got, m.Text)
		case <-time.After(waitFor):
			t.Fatal("no message on subscription")
		}
	}
	if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
		t.Errorf("subscription mismatch (-want +got):\n%s", diff)
	}
	cancel()
	cancel()
	if _, open := <-ch; open {
		t.Errorf("channel open after cancel")
	}
}

func TestNoLeaksAfterClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := NewServer(Options{})
	api := slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL), slack.OptionAppLevelToken(s.AppToken()))
	sm := socketmode.New(api)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sm.RunContext(ctx) }()
	s.SendDM("U0JANE", "hi")
	timeout := time.After(waitFor)
	for got := false; !got; {
		select {
		case e := <-sm.Events:
			got = e.Type == socketmode.EventTypeEventsAPI
		case <-timeout:
			t.Fatal("no event")
		}
	}
	// Close the server under a live client: its websockets and handlers must go.
	s.Close()
	cancel()
	<-done
}

// dialHello dials a Socket Mode URL and reads the first frame, which must be hello.
func dialHello(ctx context.Context, url string) error {
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return err
	}
	defer ws.Close()
	var hello struct {
		Type string `json:"type"`
	}
	if err := ws.ReadJSON(&hello); err != nil {
		return err
	}
	if hello.Type != "hello" {
		return fmt.Errorf("first frame is %q, want hello", hello.Type)
	}
	return nil
}

// Like Slack, the fake names the bot token's scopes in X-OAuth-Scopes and
// keeps profile emails from a token without users:read.email.
func TestScopes(t *testing.T) {
	for _, tt := range []struct {
		name      string
		scopes    []string
		wantEmail string
	}{
		{"default", nil, "jane@acme.example"},
		{"without users:read.email", []string{"chat:write", "users:read"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(Options{Scopes: tt.scopes})
			defer s.Close()
			req, err := http.NewRequest(http.MethodPost, s.APIURL+"users.info", strings.NewReader("user=U0JANE"))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Bearer "+s.BotToken())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				User struct {
					Profile map[string]any `json:"profile"`
				} `json:"user"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			want := tt.scopes
			if want == nil {
				want = DefaultScopes()
			}
			if got := resp.Header.Get("X-OAuth-Scopes"); got != strings.Join(want, ",") {
				t.Errorf("X-OAuth-Scopes %q, want %q", got, strings.Join(want, ","))
			}
			email, _ := body.User.Profile["email"].(string)
			if email != tt.wantEmail {
				t.Errorf("profile email %q, want %q", email, tt.wantEmail)
			}
		})
	}
}

// RateLimit answers as Slack does over a limit, as many times as asked, and
// then serves the method again; nothing is posted by a refused request.
func TestRateLimit(t *testing.T) {
	s := mustServer(t, Options{})
	api := slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL))
	ctx := t.Context()

	s.RateLimit("chat.postMessage", 2, 7)
	for i := range 2 {
		_, _, err := api.PostMessageContext(ctx, "U0JANE", slack.MsgOptionText("hi", false))
		var rl *slack.RateLimitedError
		if !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second {
			t.Fatalf("call %d: err = %v, want a rate limit of 7s", i, err)
		}
	}
	if _, _, err := api.PostMessageContext(ctx, "U0JANE", slack.MsgOptionText("hi", false)); err != nil {
		t.Fatalf("third call: %v, want it served", err)
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages, want only the served one", n)
	}
	if n := s.RateLimited("chat.postMessage"); n != 2 {
		t.Errorf("RateLimited = %d, want 2", n)
	}

	// A response_url: status, header and body as a Web API method's.
	s.SendSlashCommand("C0SALES", "U0JANE", "/salesforce", "help")
	responseURL := mustSlashResponseURL(t, s)
	s.RateLimit("response_url", 1, 3)
	post := func() (*http.Response, string) {
		resp, err := http.Post(responseURL, "application/json", strings.NewReader(`{"text":"usage"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp, body.Error
	}
	resp, code := post()
	got := fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("Retry-After"), " ", code)
	if diff := cmp.Diff("429 3 ratelimited", got); diff != "" {
		t.Errorf("rate-limited response_url mismatch (-want +got):\n%s", diff)
	}
	if resp, _ := post(); resp.StatusCode != http.StatusOK {
		t.Errorf("response_url after the limit: %d, want 200", resp.StatusCode)
	}
	if n := len(s.Messages()); n != 2 {
		t.Errorf("%d messages, want the served post and the served response", n)
	}
}
