package bot

import (
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/auth/account"
	"github.com/forcebind/forcebind/bot/slacktest"
	"github.com/forcebind/forcebind/salesforce/sftest"
)

// mustCommand sends text as user's DM and returns the answer, as a person
// reads it, and the outcome the Observer was told.
func mustCommand(tb testing.TB, s *slacktest.Server, rec *recorder, user, text string) (answer, outcome string) {
	tb.Helper()
	before := len(rec.with("command "))
	answer = ask(tb, s, user, text)
	line := rec.mustSee(tb, "command ", before+1)[before]
	return answer, line[strings.LastIndexByte(line, ' ')+1:]
}

// assertNoTokens fails if a message sent to Slack carries a token the fake
// org issued.
func assertNoTokens(tb testing.TB, s *slacktest.Server, srv *sftest.Server) {
	tb.Helper()
	for _, m := range s.Messages() {
		for _, tok := range srv.IssuedTokens() {
			if strings.Contains(m.Text, tok) || strings.Contains(string(m.Blocks), tok) {
				tb.Errorf("a message to %s carries a token the org issued", m.Channel)
			}
		}
	}
}

// A person linked to a user of the fake org uses every command of their
// own, in order, through a real salesforce.Client: what they read comes
// from the org, connect says they are linked, disconnect unlinks them, and
// afterwards the commands that need Salesforce send a link instead. No
// answer carries a token.
func TestCommandsOfALinkedPerson(t *testing.T) {
	srv := sftest.NewServer(sftest.Options{})
	t.Cleanup(srv.Close)
	s := mustSlack(t)
	fa := &fakeAuth{}
	a := fa.mustLink(t, srv, jane, "jane@acme.example")
	rec := newRecorder()
	mustRun(t, s, fa, func(c *Config) { c.Observer = rec })
	steps := []struct {
		text        string
		wantOutcome string
		want, not   []string
	}{
		{"whoami", "ok", []string{"jane@acme.example", a.OrgID, a.InstanceURL, "since"}, nil},
		{"search müller", "ok", []string{"3 results", "Söhne KG", "Hans Müller", "Müller Renewal 2026", "Amount: 32000"}, nil},
		{"account acme", "ok", []string{"2 results", "Acme Corporation", "Acme Labs GmbH"}, nil},
		{"contact smith", "ok", []string{"1 result", "John Smith", "Title: VP Purchasing"}, nil},
		{"opportunity widgets", "ok", []string{"1 result", "Acme - 500 Widgets", "Amount: 125000"}, nil},
		{"opp widgets", "ok", []string{"1 result", "Acme - 500 Widgets"}, nil},
		{"lead lumbergh", "ok", []string{"1 result", "Bill Lumbergh", "Company: Initech"}, nil},
		{"case damaged", "ok", []string{"1 result", "00001001", "Subject: Widgets arrived damaged"}, nil},
		{"case xyzzy", "ok", []string{"Nothing in Salesforce matches"}, nil},
		{"search", "usage", []string{"What should I search for?"}, nil},
		{"lead", "usage", []string{"Which lead?"}, nil},
		{"connect", "already_connected", []string{"already connected as", "jane@acme.example"}, []string{"state="}},
		{"disconnect", "ok", []string{"Disconnected from", "jane@acme.example", "revoked at Salesforce"}, nil},
		{"whoami", "not_connected", []string{"not connected", "Send `connect`"}, []string{"jane@acme.example"}},
		{"search müller", "link_sent", []string{"state=for-" + jane}, []string{"Söhne KG"}},
		{"disconnect", "not_connected", []string{"not connected"}, nil},
		{"connect", "link_sent", []string{"state=for-" + jane}, nil},
	}
	for _, st := range steps {
		got, outcome := mustCommand(t, s, rec, jane, st.text)
		if outcome != st.wantOutcome {
			t.Errorf("%q: outcome %q, want %q", st.text, outcome, st.wantOutcome)
		}
		for _, w := range st.want {
			if !strings.Contains(got, w) {
				t.Errorf("%q: answer lacks %q:\n%s", st.text, w, got)
			}
		}
		for _, n := range append(st.not, "went wrong", "refused") {
			if strings.Contains(got, n) {
				t.Errorf("%q: answer shows %q:\n%s", st.text, n, got)
			}
		}
	}
	starts := fa.startsFor()
	if len(starts) != 2 || starts[0].UserID != jane || starts[0].TeamID != "T0001" || starts[0].ChannelID != s.DMChannel(jane) {
		t.Errorf("links were started for %+v; want 2, for jane in her DM, only once she was unlinked", starts)
	}
	assertNoTokens(t, s, srv)
}

// In a channel, a linked person's results are shown only to them.
func TestResultsInAChannelAreEphemeral(t *testing.T) {
	srv := sftest.NewServer(sftest.Options{})
	t.Cleanup(srv.Close)
	s := mustSlack(t)
	fa := &fakeAuth{}
	fa.mustLink(t, srv, jane, "jane@acme.example")
	mustRun(t, s, fa, nil)
	s.SendMention("C0GENERAL", jane, "<@U0BOT> opp widgets")
	m := mustMessage(t, s, to("C0GENERAL"))
	if !m.Ephemeral || m.User != jane {
		t.Errorf("results in a channel went out as %+v; want ephemeral to %s", m, jane)
	}
	if got := m.Text + blockText(t, m.Blocks); !strings.Contains(got, "Acme - 500 Widgets") {
		t.Errorf("answer lacks the opportunity:\n%s", got)
	}
	assertNoTokens(t, s, srv)
}

// When Salesforce fails a linked person's request, the answer says how, in
// words they can act on, and the outcome names it.
func TestCommandsWhenSalesforceFails(t *testing.T) {
	tests := []struct {
		name        string
		fail        func(*sftest.Server)
		wantOutcome string
		want        string
	}{
		{"session ended", func(srv *sftest.Server) { srv.ExpireAccessTokens() }, "session_rejected", "`disconnect`, then `connect`"},
		{"down", func(srv *sftest.Server) { srv.SetFailure(sftest.EndpointSearch, 503, "<html>maintenance</html>") }, "salesforce_down", "isn't answering"},
		{"out of API requests", func(srv *sftest.Server) {
			srv.SetFailure(sftest.EndpointSearch, 403, `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`)
		}, "rate_limited", "used up its API requests"},
		{"refused", func(srv *sftest.Server) {
			srv.SetFailure(sftest.EndpointSearch, 400, `[{"message":"search <b>too</b> complex","errorCode":"INVALID_SEARCH"}]`)
		}, "salesforce_error", "Salesforce refused the request: search &lt;b&gt;too&lt;/b&gt; complex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := sftest.NewServer(sftest.Options{})
			t.Cleanup(srv.Close)
			s := mustSlack(t)
			fa := &fakeAuth{}
			fa.mustLink(t, srv, jane, "jane@acme.example")
			rec := newRecorder()
			mustRun(t, s, fa, func(c *Config) { c.Observer = rec })
			tt.fail(srv)
			got, outcome := mustCommand(t, s, rec, jane, "search acme")
			if outcome != tt.wantOutcome || !strings.Contains(got, tt.want) {
				t.Errorf("answer %q (outcome %q); want outcome %q and %q", got, outcome, tt.wantOutcome, tt.want)
			}
			if len(fa.startsFor()) != 0 {
				t.Error("a link was sent, though the person is linked")
			}
			assertNoTokens(t, s, srv)
		})
	}
}

// The confirmation DM names the account now linked, and nothing else of it.
func TestMessengerLinked(t *testing.T) {
	s := mustSlack(t)
	m := NewMessenger(NewAPI(APIConfig{BotToken: s.BotToken(), URL: s.APIURL}), nil, s.APIURL, zerolog.Nop())
	a := account.Account{TeamID: "T0001", UserID: jane, OrgID: "00D5g000004FbcDEAS", Username: "jane@acme.example"}
	if err := m.Linked(t.Context(), a); err != nil {
		t.Fatalf("Linked: %v", err)
	}
	msg := mustMessage(t, s, to(s.DMChannel(jane)))
	if !strings.Contains(msg.Text, "*jane@acme.example*") || !strings.Contains(msg.Text, "`00D5g000004FbcDEAS`") {
		t.Errorf("DM %q does not name the account", msg.Text)
	}
}
