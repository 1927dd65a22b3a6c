package bot

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce"
)

func TestParseEnvelope(t *testing.T) {
	tests := []struct {
		name    string
		typ     string
		payload string
		want    *incoming
		wantErr bool
	}{
		{"dm", "events_api", `{"type":"event_callback","team_id":"T1","event_id":"Ev1","event":{"type":"message","channel_type":"im","channel":"D1","user":"U1","text":"  search  acme "}}`,
			&incoming{TeamID: "T1", UserID: "U1", ChannelID: "D1", Text: "search  acme", Surface: surfaceDM, dedupeKey: "Ev1"}, false},
		{"mention strips the bot", "events_api", `{"type":"event_callback","team_id":"T1","event_id":"Ev2","event":{"type":"app_mention","channel":"C1","user":"U1","text":"<@U0BOT>: case 00001026"}}`,
			&incoming{TeamID: "T1", UserID: "U1", ChannelID: "C1", Text: "case 00001026", Surface: surfaceMention, dedupeKey: "Ev2"}, false},
		{"mention with label", "events_api", `{"type":"event_callback","event_id":"Ev3","event":{"type":"app_mention","channel":"C1","user":"U1","text":"<@U0BOT|forcebind> help"}}`,
			&incoming{UserID: "U1", ChannelID: "C1", Text: "help", Surface: surfaceMention, dedupeKey: "Ev3"}, false},
		{"bot message kept for the filter", "events_api", `{"type":"event_callback","event_id":"Ev4","event":{"type":"message","channel_type":"im","channel":"D1","bot_id":"B1","subtype":"bot_message","text":"x"}}`,
			&incoming{BotID: "B1", Subtype: "bot_message", ChannelID: "D1", Text: "x", Surface: surfaceDM, dedupeKey: "Ev4"}, false},
		{"slash", "slash_commands", `{"team_id":"T1","user_id":"U1","channel_id":"C1","command":"/salesforce","text":"opp acme","response_url":"https://hooks.example/r","trigger_id":"1.2.3"}`,
			&incoming{TeamID: "T1", UserID: "U1", ChannelID: "C1", Text: "opp acme", Surface: surfaceSlash, ResponseURL: "https://hooks.example/r", dedupeKey: "slash:1.2.3"}, false},
		{"channel message ignored", "events_api", `{"type":"event_callback","event_id":"Ev5","event":{"type":"message","channel_type":"channel","channel":"C1","user":"U1","text":"x"}}`, nil, false},
		{"reaction ignored", "events_api", `{"type":"event_callback","event_id":"Ev6","event":{"type":"reaction_added","user":"U1"}}`, nil, false},
		{"interactive ignored", "interactive", `{"type":"block_actions"}`, nil, false},
		{"url verification ignored", "events_api", `{"type":"url_verification","challenge":"x"}`, nil, false},
		{"not json", "events_api", `{"type":`, nil, true},
		{"no event id", "events_api", `{"type":"event_callback","event":{"type":"message","channel_type":"im","channel":"D1","user":"U1"}}`, nil, true},
		{"no channel", "events_api", `{"type":"event_callback","event_id":"Ev7","event":{"type":"app_mention","user":"U1","text":"hi"}}`, nil, true},
		{"event not an object", "events_api", `{"type":"event_callback","event_id":"Ev8","event":"x"}`, nil, true},
		{"slash without trigger", "slash_commands", `{"user_id":"U1","channel_id":"C1"}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnvelope(tt.typ, []byte(tt.payload))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(incoming{})); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlainText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"search AT&amp;T", "search AT&T"},
		{"contact <mailto:jane@acme.com|jane@acme.com>", "contact jane@acme.com"},
		{"contact <mailto:jane@acme.com>", "contact jane@acme.com"},
		{"account <http://acme.com|acme.com>", "account acme.com"},
		{"search &lt;script&gt;", "search <script>"},
		{"search a|b > c", "search a|b > c"},
	}
	for _, tt := range tests {
		if got := plainText(tt.in); got != tt.want {
			t.Errorf("plainText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLongTextClipped(t *testing.T) {
	long := strings.Repeat("é", maxTextLen)
	in, err := parseEnvelope("slash_commands", []byte(`{"user_id":"U1","channel_id":"C1","trigger_id":"t","text":"`+long+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Text) > maxTextLen || !strings.HasPrefix(long, in.Text) {
		t.Errorf("text of %d bytes not clipped cleanly to %d", len(in.Text), maxTextLen)
	}
}

// FuzzParseEnvelope: any payload gives a message or an error, never a panic,
// and a message always names its user's channel and dedupe key.
func FuzzParseEnvelope(f *testing.F) {
	f.Add("events_api", `{"type":"event_callback","team_id":"T1","event_id":"Ev1","event":{"type":"message","channel_type":"im","channel":"D1","user":"U1","text":"search acme"}}`)
	f.Add("events_api", `{"type":"event_callback","event_id":"Ev2","event":{"type":"app_mention","channel":"C1","user":"U1","text":"<@U0BOT> help"}}`)
	f.Add("slash_commands", `{"user_id":"U1","channel_id":"C1","trigger_id":"1.2","text":"whoami"}`)
	f.Add("events_api", `{"type":"event_callback","event_id":"","event":null}`)
	f.Fuzz(func(t *testing.T, typ, payload string) {
		in, err := parseEnvelope(typ, []byte(payload))
		if err != nil || in == nil {
			return
		}
		if in.ChannelID == "" || in.dedupeKey == "" || len(in.Text) > maxTextLen {
			t.Errorf("accepted an incomplete message: %+v", in)
		}
	})
}

func TestSplitCommand(t *testing.T) {
	tests := []struct{ in, name, args string }{
		{"Search  Acme Corp ", "search", "Acme Corp"},
		{"opp", "opp", ""},
		{"", "", ""},
		{"  WHOAMI", "whoami", ""},
	}
	for _, tt := range tests {
		name, args := splitCommand(tt.in)
		if name != tt.name || args != tt.args {
			t.Errorf("splitCommand(%q) = %q, %q; want %q, %q", tt.in, name, args, tt.name, tt.args)
		}
	}
}

func TestEveryCommandInHelp(t *testing.T) {
	b := &Bot{cmds: commands()}
	b.byName = index(b.cmds)
	r, _ := b.cmdHelp(t.Context(), &incoming{}, "")
	for name := range b.byName {
		if !strings.Contains(r.text, "`"+name) {
			t.Errorf("help does not mention %q", name)
		}
	}
	for _, want := range []string{"help", "connect", "disconnect", "whoami", "search", "account", "contact", "opportunity", "opp", "lead", "case"} {
		if b.byName[want] == nil {
			t.Errorf("command %q missing from the table", want)
		}
	}
}

func TestPoolOrderAndBounds(t *testing.T) {
	var mu sync.Mutex
	var order []int
	release := make(chan struct{})
	p := newPool(2, 3, 3, func(string, any, []byte) {})
	if !p.submit("a", func() { <-release }) {
		t.Fatal("first job refused")
	}
	for i := 1; i <= 3; i++ {
		if !p.submit("a", func() { mu.Lock(); order = append(order, i); mu.Unlock() }) {
			t.Fatalf("job %d refused within depth", i)
		}
	}
	if p.submit("a", func() {}) {
		t.Error("job beyond the user's queue depth accepted")
	}
	if !p.submit("b", func() { <-release }) {
		t.Fatal("second user refused with a free worker")
	}
	if p.submit("c", func() {}) {
		t.Error("third user accepted with both workers busy and every waiting place taken")
	}
	close(release)
	if err := p.close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{1, 2, 3}, order); diff != "" {
		t.Errorf("order mismatch (-want +got):\n%s", diff)
	}
	if p.submit("d", func() {}) {
		t.Error("closed pool accepted a job")
	}
}

// With every worker busy, a new user's work waits its turn instead of being
// refused, and the freed workers take users in turn: one person's long
// queue does not hold back the others, and each person's order is kept.
func TestPoolQueuesInsteadOfRefusing(t *testing.T) {
	var mu sync.Mutex
	var order []string
	record := func(s string) func() {
		return func() { mu.Lock(); order = append(order, s); mu.Unlock() }
	}
	release := make(chan struct{})
	p := newPool(1, 3, 5, func(string, any, []byte) {})
	if !p.submit("a", func() { <-release }) {
		t.Fatal("first job refused")
	}
	for _, job := range []struct{ key, name string }{{"a", "a1"}, {"a", "a2"}, {"b", "b1"}, {"c", "c1"}, {"b", "b2"}} {
		if !p.submit(job.key, record(job.name)) {
			t.Fatalf("%s refused with room to wait", job.name)
		}
	}
	if p.submit("d", record("d1")) {
		t.Error("job accepted beyond the pool's waiting places")
	}
	close(release)
	if err := p.close(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Once a's first job ends, a waits behind b and c, who came first;
	// each then waits behind the others for its next job.
	if diff := cmp.Diff([]string{"b1", "c1", "a1", "b2", "a2"}, order); diff != "" {
		t.Errorf("order mismatch (-want +got):\n%s", diff)
	}
}

// When the drain's deadline passes, work still waiting is dropped: the
// runners finish the job in hand and retire, instead of working through the
// queue after the bot has returned.
func TestPoolCloseDropsWaitingWork(t *testing.T) {
	release := make(chan struct{})
	var ran atomic.Int32
	p := newPool(1, 10, 10, func(string, any, []byte) {})
	p.submit("a", func() { <-release })
	for range 5 {
		p.submit("a", func() { ran.Add(1) })
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := p.close(ctx); err == nil || !strings.Contains(err.Error(), "5 waiting dropped") {
		t.Fatalf("close = %v, want the deadline and 5 waiting dropped", err)
	}
	close(release)
	p.wg.Wait()
	if n := ran.Load(); n != 0 {
		t.Errorf("%d waiting jobs ran after the drain ended, want 0", n)
	}
}

func TestPoolRecoversPanics(t *testing.T) {
	var got any
	p := newPool(1, 1, 1, func(_ string, r any, _ []byte) { got = r })
	p.submit("a", func() { panic("boom") })
	ran := false
	p.submit("a", func() { ran = true })
	if err := p.close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got != "boom" || !ran {
		t.Errorf("panic reported %v, next job ran %v; want boom and true", got, ran)
	}
}

func TestDedupe(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	d := newDedupe(15*time.Minute, 3)
	steps := []struct {
		id   string
		at   time.Duration
		want bool
	}{
		{"a", 0, true},
		{"a", time.Minute, false},        // Slack's retry after 1 minute
		{"a", 5 * time.Minute, false},    // and after 5
		{"a", 16 * time.Minute, true},    // forgotten after the window
		{"b", 16 * time.Minute, true},    //
		{"c", 16 * time.Minute, true},    //
		{"d", 16 * time.Minute, true},    // over max: the oldest ("a") goes
		{"a", 16*time.Minute + 1, true},  //
		{"d", 16*time.Minute + 2, false}, //
	}
	for i, s := range steps {
		if got := d.first(s.id, t0.Add(s.at)); got != s.want {
			t.Errorf("step %d: first(%q) = %v, want %v", i, s.id, got, s.want)
		}
	}
	if len(d.seen) > 3 || len(d.order) > 3 {
		t.Errorf("dedupe holds %d/%d ids; want at most 3", len(d.seen), len(d.order))
	}
}

// Salesforce data is text, never Slack markup: a record named "<!channel>"
// must not ping a channel, nor a "*" turn the rest bold into a link.
func TestResultsEscapeSalesforceData(t *testing.T) {
	in := &incoming{Surface: surfaceMention, ChannelID: "C1", UserID: "U1"}
	r := in.results("<!here>", []salesforce.Result{{
		Type: "Account", ID: "001", Name: "<!channel> & Sons|x>",
		URL:    "https://acme.my.salesforce.com/lightning/r/Account/001/view",
		Fields: []salesforce.Field{{Label: "Phone", Value: "<tel:1>"}, {Label: "Empty", Value: ""}},
	}})
	var blocks strings.Builder
	enc := json.NewEncoder(&blocks)
	enc.SetEscapeHTML(false) // show the text as Slack receives it
	if err := enc.Encode(r.blocks); err != nil {
		t.Fatal(err)
	}
	all := r.text + blocks.String()
	for _, bad := range []string{"<!channel>", "<!here>", "<tel:1>"} {
		if strings.Contains(all, bad) {
			t.Errorf("answer contains live markup %q:\n%s", bad, all)
		}
	}
	for _, want := range []string{"&lt;!channel&gt; &amp; Sons", "<https://acme.my.salesforce.com/lightning/r/Account/001/view|", "Phone: &lt;tel:1&gt;"} {
		if !strings.Contains(all, want) {
			t.Errorf("answer lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "Empty:") {
		t.Error("an empty field was shown")
	}
	if len(r.blocks) != 2 || !r.isEphemeralTo("U1") {
		t.Errorf("want a header and one record, ephemeral to the asker; got %d blocks, %+v", len(r.blocks), r)
	}
	if none := in.results("zzz", nil); !strings.Contains(none.text, "Nothing in Salesforce matches") {
		t.Errorf("empty result answered %q", none.text)
	}
}

func (r reply) isEphemeralTo(user string) bool { return r.surface != surfaceDM && r.user == user }
