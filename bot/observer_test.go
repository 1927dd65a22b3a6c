package bot

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/bot/slacktest"
)

// recorder is an Observer that writes every call down as a line such as
// "command search link_sent", and lets a test wait for lines.
type recorder struct {
	// onDisconnect, when set before Run, is called from Disconnected after
	// the line is written; a test blocks in it to hold the reader there.
	onDisconnect func()

	mu      sync.Mutex
	lines   []string
	badTook []string      // calls with an impossible duration
	changed chan struct{} // closed and replaced on every line
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) add(line string, took time.Duration, wantZero bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took < 0 || (wantZero && took != 0) {
		r.badTook = append(r.badTook, fmt.Sprintf("%s took %v", line, took))
	}
	r.lines = append(r.lines, line)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) EventReceived(typ string) { r.add("event "+typ, 0, false) }

func (r *recorder) EventAcked(latency time.Duration, ok bool) {
	r.add(fmt.Sprintf("ack ok=%v", ok), latency, false)
}

func (r *recorder) CommandDone(command, outcome string, took time.Duration) {
	r.add("command "+command+" "+outcome, took, outcome == "busy")
}

func (r *recorder) Connected(n int) { r.add(fmt.Sprintf("connected %d", n), 0, false) }

func (r *recorder) Disconnected() {
	r.add("disconnected", 0, false)
	if r.onDisconnect != nil {
		r.onDisconnect()
	}
}

func (r *recorder) Reconnecting() { r.add("reconnecting", 0, false) }

// with returns the lines that start with prefix, in order.
func (r *recorder) with(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// mustSee waits until n lines start with prefix, and returns them.
func (r *recorder) mustSee(tb testing.TB, prefix string, n int) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), waitFor)
	defer cancel()
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		if got := r.with(prefix); len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-ctx.Done():
			tb.Fatalf("waited for %d %q lines; have %q", n, prefix, r.with(""))
		}
	}
}

func (r *recorder) checkDurations(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.badTook {
		tb.Errorf("bad duration: %s", b)
	}
}

func sorted(lines []string) []string {
	lines = slices.Clone(lines)
	slices.Sort(lines)
	return lines
}

func TestObserverCommands(t *testing.T) {
	s := mustSlack(t)
	rec := newRecorder()
	mustRun(t, s, &fakeAuth{panicFor: "U0PANIC"}, func(c *Config) { c.Observer = rec })
	sends := []func(){
		func() { s.SendDM(jane, "help") },
		func() { s.SendDM(jane, "  ") },
		func() { s.SendDM(jane, "OPP acme") },
		func() { s.SendDM(jane, "frobnicate") },
		func() { s.SendDM(jane, "disconnect") },
		func() { s.SendMention("C0GENERAL", sam, "<@U0BOT> whoami") },
		func() { s.SendSlashCommand("C0GENERAL", sam, "/salesforce", "search acme") },
		func() { s.SendDM("U0PANIC", "case 42") },
	}
	for _, send := range sends {
		send()
	}
	got := rec.mustSee(t, "command ", len(sends))
	want := []string{
		"command case panic",
		"command disconnect not_connected",
		"command help ok",
		"command help ok",
		"command opportunity link_sent",
		"command search link_sent",
		"command unknown unknown_command",
		"command whoami not_connected",
	}
	if diff := cmp.Diff(want, sorted(got)); diff != "" {
		t.Errorf("commands mismatch (-want +got):\n%s", diff)
	}
	rec.checkDurations(t)
}

func TestObserverEvents(t *testing.T) {
	s := mustSlack(t)
	rec := newRecorder()
	mustRun(t, s, &fakeAuth{}, func(c *Config) { c.Observer = rec })
	s.SendDM(jane, "help")
	s.SendSlashCommand("C0GENERAL", sam, "/salesforce", "help")
	s.SendInteractive(map[string]any{"type": "block_actions", "user": map[string]any{"id": jane}, "actions": []any{}})
	s.SendRaw([]byte(`{"type":"brand_new_type","envelope_id":"env-unknown","payload":{"x":1}}`))
	s.SendRaw([]byte(`{"type":"events_api","envelope_id":"env-badpayload","payload":{"type":"event_callback","event":"not an object"}}`))
	s.SendRaw([]byte(`{not json`))
	s.SendRaw([]byte(`[1, 2]`))
	// The loop is ordered: once the last DM is handled, every frame before
	// it was received, and acked where it had an envelope id.
	s.SendDM(jane, "frobnicate")
	rec.mustSee(t, "command unknown", 1)

	got := rec.with("event ")
	want := []string{
		"event events_api", // help
		"event events_api", // the bad payload, still an events_api envelope
		"event events_api", // frobnicate
		"event hello",
		"event interactive",
		"event malformed", // not JSON
		"event malformed", // JSON, not an envelope
		"event slash_commands",
		"event unknown",
	}
	if diff := cmp.Diff(want, sorted(got)); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
	// Every envelope with an id is acked: not hello, not the malformed ones.
	if diff := cmp.Diff(slices.Repeat([]string{"ack ok=true"}, 6), rec.with("ack ")); diff != "" {
		t.Errorf("acks mismatch (-want +got):\n%s", diff)
	}
	rec.checkDurations(t)
}

// A frame over ReadLimit is counted before the connection it costs.
func TestObserverOversizedFrame(t *testing.T) {
	s := mustSlack(t)
	rec := newRecorder()
	mustRun(t, s, &fakeAuth{}, func(c *Config) { c.Observer = rec; c.ReadLimit = 4 << 10 })
	rec.mustSee(t, "connected", 1)
	s.SendRaw([]byte(`{"type":"events_api","envelope_id":"big","payload":{"x":"` + strings.Repeat("a", 8<<10) + `"}}`))
	rec.mustSee(t, "connected", 2)
	if diff := cmp.Diff([]string{"event hello", "event oversized", "event hello"}, rec.with("event ")); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
}

func TestObserverBusy(t *testing.T) {
	s := mustSlack(t)
	rec := newRecorder()
	fa := &fakeAuth{block: make(chan struct{})}
	mustRun(t, s, fa, func(c *Config) { c.Workers, c.QueuePerUser, c.MaxQueued, c.Observer = 1, 1, 1, rec })
	s.SendDM(jane, "search one") // runs, blocked
	s.SendDM(jane, "search two") // waits in jane's queue
	s.SendDM(jane, "opp three")  // refused
	s.SendDM(sam, "whoami")      // refused: no worker free
	busy := rec.mustSee(t, "command ", 2)
	close(fa.block)
	if diff := cmp.Diff([]string{"command opportunity busy", "command whoami busy"}, busy); diff != "" {
		t.Errorf("refused work mismatch (-want +got):\n%s", diff)
	}
	got := rec.mustSee(t, "command ", 4)
	if diff := cmp.Diff([]string{"command search link_sent", "command search link_sent"}, got[2:]); diff != "" {
		t.Errorf("accepted work mismatch (-want +got):\n%s", diff)
	}
	rec.checkDurations(t)
}

// Ready is false until the connection is up, false while it is down, true
// again after the reconnect, and false once Run has returned; the Observer
// hears each change.
func TestReadyFollowsTheConnection(t *testing.T) {
	tests := []struct {
		name string
		drop func(*slacktest.Server)
	}{
		{"network failure", (*slacktest.Server).DropConnection},
		{"refresh requested", func(s *slacktest.Server) { s.Disconnect("refresh_requested") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSlack(t)
			s.SetNumConnections(2)
			rec := newRecorder()
			held, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			// Hold the reader at the first disconnect, so the test sees the
			// state between the two connections however fast the reconnect.
			rec.onDisconnect = func() { once.Do(func() { close(held); <-release }) }

			b, err := New(Config{API: NewAPI(APIConfig{BotToken: s.BotToken()}), Auth: &fakeAuth{}})
			if err != nil {
				t.Fatal(err)
			}
			if b.Ready() {
				t.Error("Ready before Run")
			}

			r := mustRun(t, s, &fakeAuth{}, func(c *Config) { c.Observer = rec })
			rec.mustSee(t, "connected", 1)
			if !r.bot.Ready() {
				t.Error("not Ready after hello")
			}

			tt.drop(s)
			select {
			case <-held:
			case <-time.After(waitFor):
				close(release)
				t.Fatalf("no disconnect seen; observer heard %q", rec.with(""))
			}
			ready := r.bot.Ready()
			close(release)
			if ready {
				t.Error("Ready while the connection is down")
			}

			rec.mustSee(t, "connected", 2)
			if !r.bot.Ready() {
				t.Error("not Ready after the reconnect")
			}
			// The bot works on the new connection.
			mustAck(t, s, s.SendDM(jane, "help"))

			if err := r.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if r.bot.Ready() {
				t.Error("Ready after Run returned")
			}
			var got []string
			for _, l := range rec.with("") {
				if strings.HasPrefix(l, "connected") || l == "disconnected" || l == "reconnecting" {
					got = append(got, l)
				}
			}
			want := []string{"connected 2", "disconnected", "reconnecting", "connected 2", "disconnected"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("connection reports mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// A Run that never connects is never Ready.
func TestNotReadyWhenSlackRefuses(t *testing.T) {
	s := mustSlack(t)
	s.SetError("auth.test", "invalid_auth")
	rec := newRecorder()
	r := mustRun(t, s, &fakeAuth{}, func(c *Config) { c.Observer = rec })
	select {
	case <-r.done:
		r.done <- nil // for the cleanup's stop
	case <-time.After(waitFor):
		t.Fatal("Run did not stop")
	}
	if r.bot.Ready() {
		t.Error("Ready after a refused start")
	}
	if got := rec.with(""); len(got) != 0 {
		t.Errorf("observer heard %q from a run that never connected", got)
	}
}
