package bot

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"github.com/slack-go/slack"

	"github.com/forcebind/forcebind/auth/account"
	"github.com/forcebind/forcebind/bot/slacktest"
)

// A 429 from Slack is waited out: the answer, whatever carries it, arrives
// once, after the Retry-After.
func TestRateLimitedAnswerArrivesOnce(t *testing.T) {
	tests := []struct {
		name   string
		method string // the one Slack refuses once
		send   func(s *slacktest.Server, text string)
		text   string
		want   string // in the answer
	}{
		{"reply in a DM", "chat.postMessage", func(s *slacktest.Server, text string) { s.SendDM(jane, text) }, "help", "`search <words>`"},
		{"connect link in a DM", "chat.postMessage", func(s *slacktest.Server, text string) { s.SendDM(jane, text) }, "connect", "state=for-" + jane},
		{"connect link in a channel", "chat.postEphemeral", func(s *slacktest.Server, text string) { s.SendMention("C0GENERAL", jane, "<@U0BOT> "+text) }, "connect", "state=for-" + jane},
		{"slash command reply", "response_url", func(s *slacktest.Server, text string) { s.SendSlashCommand("C0GENERAL", jane, "/salesforce", text) }, "help", "`search <words>`"},
		{"slash command connect link", "response_url", func(s *slacktest.Server, text string) { s.SendSlashCommand("C0GENERAL", jane, "/salesforce", text) }, "connect", "state=for-" + jane},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSlack(t)
			r := mustRun(t, s, &fakeAuth{}, nil)
			s.RateLimit(tt.method, 1, 1)
			tt.send(s, tt.text)
			m := mustMessage(t, s, func(m slacktest.Message) bool { return strings.Contains(m.Text, tt.want) })
			if m.Method != tt.method {
				t.Errorf("answer sent by %s, want %s", m.Method, tt.method)
			}
			// jane's work runs in order: once this is answered, the first
			// answer has been sent for good, or not at all.
			tt.send(s, "frobnicate")
			mustMessage(t, s, func(m slacktest.Message) bool { return strings.Contains(m.Text, "frobnicate") })
			if n := count(s, tt.want); n != 1 {
				t.Errorf("%d answers with %q, want exactly 1: %+v", n, tt.want, s.Messages())
			}
			if n := s.RateLimited(tt.method); n != 1 {
				t.Errorf("Slack refused %d calls, want the 1 asked for", n)
			}
			if strings.Contains(r.logs.String(), "reply not sent") {
				t.Errorf("a reply failed:\n%s", r.logs.String())
			}
		})
	}
}

// A Retry-After longer than the answer has left is not waited for: the
// handler gives up at once and says why in the log, and the person's next
// message is answered.
func TestRateLimitOutlastingTheDeadline(t *testing.T) {
	s := mustSlack(t)
	r := mustRun(t, s, &fakeAuth{}, nil)
	s.RateLimit("chat.postMessage", 1, 3600)
	s.SendDM(jane, "help")
	s.SendDM(jane, "frobnicate")
	mustMessage(t, s, func(m slacktest.Message) bool { return strings.Contains(m.Text, "frobnicate") })
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages, want only the answer after the rate limit: %+v", n, s.Messages())
	}
	logs := r.logs.String()
	for _, want := range []string{"reply not sent", "rate limited for 1h0m0s", "+reply_failed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// The relink DM tells someone whose binding is already gone: it must not be
// lost to a rate limit.
func TestRelinkDMSurvivesARateLimit(t *testing.T) {
	s := mustSlack(t)
	m := NewMessenger(NewAPI(APIConfig{BotToken: s.BotToken(), URL: s.APIURL}), nil, s.APIURL, zerolog.Nop())
	s.RateLimit("chat.postMessage", 2, 1)
	link := account.Link{URL: "https://login.example/authorize?state=relink", Expires: time.Now().Add(10 * time.Minute)}
	if err := m.Relink(t.Context(), account.Requester{TeamID: "T0001", UserID: jane}, link, account.RelinkGrantEnded); err != nil {
		t.Fatalf("Relink: %v", err)
	}
	if n := count(s, "state=relink"); n != 1 {
		t.Errorf("%d relink DMs, want 1: %+v", n, s.Messages())
	}
	if n := s.RateLimited("chat.postMessage"); n != 2 {
		t.Errorf("Slack refused %d calls, want 2", n)
	}
}

// A response URL that fails is logged by its host and status, never by
// its path.
func TestFailedSlashResponseLogsNoURL(t *testing.T) {
	s := mustSlack(t)
	r := mustRun(t, s, &fakeAuth{}, nil)
	s.SetError("response_url", "expired_url")
	s.SendSlashCommand("C0GENERAL", jane, "/salesforce", "help")
	s.SendDM(jane, "frobnicate") // runs after the slash command: jane's work is in order
	mustMessage(t, s, func(m slacktest.Message) bool { return strings.Contains(m.Text, "frobnicate") })
	logs := r.logs.String()
	host := strings.TrimPrefix(s.URL, "http://")
	for _, want := range []string{"reply not sent", "response_url on " + host + ": answered 404"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "/commands/") {
		t.Errorf("the response_url is in the log:\n%s", logs)
	}
}

// count is how many messages sent so far contain s.
func count(srv *slacktest.Server, s string) int {
	n := 0
	for _, m := range srv.Messages() {
		if strings.Contains(m.Text, s) {
			n++
		}
	}
	return n
}

// The retry policy: a call that did nothing is sent again; one that may
// have posted is not; no wait outlasts the call's deadline.
func TestRetryPolicy(t *testing.T) {
	hook := &fakeHook{}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String() + "/api/"
	dead.Close() // nothing listens there now: connections are refused

	tests := []struct {
		name      string
		url       string
		answers   []int // status of each answer, in turn; then 200
		call      func(ctx context.Context, api *API) error
		wantCalls int
		retries   int // -1: at least one
		wantErr   bool
	}{
		{name: "429 then ok", url: srv.URL + "/api/", answers: []int{429},
			call: postMessage, wantCalls: 2, retries: 1},
		{name: "5xx on a post is not repeated", url: srv.URL + "/api/", answers: []int{503},
			call: postMessage, wantCalls: 1, wantErr: true},
		{name: "5xx on a read is repeated", url: srv.URL + "/api/", answers: []int{503, 502},
			call: func(ctx context.Context, api *API) error {
				_, err := api.AuthTestContext(ctx)
				return err
			}, wantCalls: 3, retries: 2},
		{name: "refused connection is repeated until the deadline", url: deadURL,
			call: postMessage, retries: -1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook.reset(tt.answers)
			logs := &syncBuffer{}
			api := NewAPI(APIConfig{BotToken: "xoxb-test", URL: tt.url, Logger: zerolog.New(logs)})
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			err := tt.call(ctx, api)
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, want error %v", err, tt.wantErr)
			}
			if got := hook.calls(); got != tt.wantCalls {
				t.Errorf("%d requests reached Slack, want %d", got, tt.wantCalls)
			}
			got := strings.Count(logs.String(), "will be sent again")
			if got != tt.retries && !(tt.retries < 0 && got > 0) {
				t.Errorf("sent again %d times, want %d:\n%s", got, tt.retries, logs.String())
			}
		})
	}
}

// postMessage posts as every answer is posted: through the API's own
// chat poster.
func postMessage(ctx context.Context, api *API) error {
	return api.postChat(ctx, "chat.postMessage", chatMessage{Channel: jane, Text: "hi"})
}

// fakeHook answers each request with the next of its statuses (429s with
// Retry-After: 1), then with 200 and {"ok":true}. It stands for the Web API
// and for a response URL alike.
type fakeHook struct {
	mu      sync.Mutex
	answers []int
	n       int
	bodies  []string
}

func (f *fakeHook) reset(answers []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers, f.n, f.bodies = answers, 0, nil
}

func (f *fakeHook) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *fakeHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.n++
	status := http.StatusOK
	if len(f.answers) > 0 {
		status, f.answers = f.answers[0], f.answers[1:]
	}
	f.mu.Unlock()
	switch {
	case status == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
	case status >= 300 && status < 400:
		w.Header().Set("Location", "https://elsewhere.example/commands/T1/2/leak")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status == http.StatusOK {
		_, _ = w.Write([]byte(`{"ok":true,"channel":"D0JANE","ts":"1.1","user_id":"U0BOT","team_id":"T0001","url":"x","team":"Acme","user":"forcebind"}`))
		return
	}
	_, _ = w.Write([]byte(`{"ok":false,"error":"expired_url"}`))
}

// A response URL is posted to on Slack's hosts only, never followed
// elsewhere, and never shown: not in an error, not in the log, however the
// post fails. A URL elsewhere is refused and the answer goes by
// chat.postEphemeral.
func TestResponseURLNeverLeaks(t *testing.T) {
	s := mustSlack(t)
	hook := &fakeHook{}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadOrigin := "http://" + dead.Addr().String()
	dead.Close()
	const secret = "/commands/T0001/123456/s3cr3tPathThatPostsAsTheApp"

	tests := []struct {
		name        string
		apiURL      string // whose origin the Messenger trusts for response URLs
		responseURL string
		answers     []int
		wantErr     bool
		wantPosts   int    // requests that reached the hook
		wantMethod  string // how the answer reached the fake Slack, "" for not at all
	}{
		{name: "posted, after a 429", apiURL: hookSrv.URL + "/api/", responseURL: hookSrv.URL + secret,
			answers: []int{429}, wantPosts: 2},
		{name: "expired", apiURL: hookSrv.URL + "/api/", responseURL: hookSrv.URL + secret,
			answers: []int{404}, wantErr: true, wantPosts: 1},
		{name: "5xx not repeated", apiURL: hookSrv.URL + "/api/", responseURL: hookSrv.URL + secret,
			answers: []int{500}, wantErr: true, wantPosts: 1},
		{name: "redirect not followed", apiURL: hookSrv.URL + "/api/", responseURL: hookSrv.URL + secret,
			answers: []int{307}, wantErr: true, wantPosts: 1},
		{name: "connection refused", apiURL: deadOrigin + "/api/", responseURL: deadOrigin + secret,
			wantErr: true},
		{name: "not on Slack", apiURL: s.APIURL, responseURL: hookSrv.URL + secret,
			wantMethod: "chat.postEphemeral"},
		{name: "userinfo", apiURL: hookSrv.URL + "/api/", responseURL: "http://slack@" + strings.TrimPrefix(hookSrv.URL, "http://") + secret,
			wantMethod: "chat.postEphemeral"},
		{name: "look-alike host", apiURL: "https://slack.com/api/", responseURL: "https://hooks.slack.com.evil.example" + secret,
			wantMethod: "chat.postEphemeral"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook.reset(tt.answers)
			logs := &syncBuffer{}
			log := zerolog.New(logs).Level(zerolog.DebugLevel)
			// The Web API is the fake Slack's whatever apiURL says, so the
			// fallback can be seen; apiURL only decides the trusted origin.
			m := NewMessenger(NewAPI(APIConfig{BotToken: s.BotToken(), URL: s.APIURL, Logger: log}), nil, tt.apiURL, log)
			before := len(s.Messages())
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			r := reply{surface: surfaceSlash, channel: "C0GENERAL", user: jane, responseURL: tt.responseURL, text: "the answer"}
			err := m.send(ctx, r)
			if (err != nil) != tt.wantErr {
				t.Errorf("send: %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				log.Warn().Err(err).Msg("reply not sent") // as handle logs it
			}
			if got := hook.calls(); got != tt.wantPosts {
				t.Errorf("%d posts reached the response URL's host, want %d", got, tt.wantPosts)
			}
			var methods []string
			for _, msg := range s.Messages()[before:] {
				methods = append(methods, msg.Method)
			}
			var want []string
			if tt.wantMethod != "" {
				want = []string{tt.wantMethod}
			}
			if diff := cmp.Diff(want, methods); diff != "" {
				t.Errorf("answers through the Web API mismatch (-want +got):\n%s", diff)
			}
			for _, leak := range []string{"s3cr3tPath", "/commands/", "elsewhere.example"} {
				if strings.Contains(logs.String(), leak) {
					t.Errorf("log shows %q:\n%s", leak, logs.String())
				}
			}
		})
	}
}

func TestResponseOrigins(t *testing.T) {
	tests := []struct {
		apiURL string
		want   []string
	}{
		{"https://slack.com/api/", []string{"https://hooks.slack.com", "https://slack.com"}},
		{"http://127.0.0.1:4444/api/", []string{"https://hooks.slack.com", "http://127.0.0.1:4444"}},
		{"https://Slack-Gov.com:443/api/", []string{"https://hooks.slack.com", "https://slack-gov.com", "https://hooks.slack-gov.com"}},
		{"", []string{"https://hooks.slack.com"}},
		{"ftp://slack.com/", []string{"https://hooks.slack.com"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, responseOrigins(tt.apiURL)); diff != "" {
			t.Errorf("responseOrigins(%q) mismatch (-want +got):\n%s", tt.apiURL, diff)
		}
	}
}

// Calls refused together by a rate limit are not all sent again in the
// same instant: each waits its Retry-After and a little more, at random,
// and the deadline check counts the whole wait.
func TestRateLimitWaitHasJitter(t *testing.T) {
	p := retryPolicy{log: zerolog.Nop()}
	answer := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"2"}}}
	seen := map[time.Duration]bool{}
	for range 50 {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "https://slack.com/api/chat.postMessage", nil)
		retry, wait := p.ShouldRetry(&slack.RetryState{MaxRetries: maxRetries}, req, answer, nil)
		if !retry || wait < 2*time.Second || wait >= 2*time.Second+minJitter {
			t.Fatalf("ShouldRetry = %t, %s; want a retry after 2s and less than %s more", retry, wait, minJitter)
		}
		seen[wait] = true
	}
	if len(seen) < 2 {
		t.Errorf("50 calls refused together all wait exactly %v", seen)
	}
	// A wait that, with its jitter, would outlast the deadline is not started.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second+minJitter/100)
	defer cancel()
	refused := 0
	for range 50 {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "https://slack.com/api/chat.postMessage", nil)
		if retry, _ := p.ShouldRetry(&slack.RetryState{MaxRetries: maxRetries}, req, answer, nil); !retry {
			refused++
		}
	}
	if refused == 0 {
		t.Error("no wait was refused though most outlast the deadline with their jitter")
	}
}
