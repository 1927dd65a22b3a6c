package bot

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/forcebind/forcebind/bot/slacktest"
	"github.com/forcebind/forcebind/salesforce/sftest"
)

// mustOrgAuth is a fakeAuth that links each Slack user in people to the
// fixture user of srv named beside it.
func mustOrgAuth(tb testing.TB, srv *sftest.Server, people map[string]string) *fakeAuth {
	tb.Helper()
	fa := &fakeAuth{}
	for slackUser, username := range people {
		fa.mustLink(tb, srv, slackUser, username)
	}
	return fa
}

// ask sends text as user's DM and returns the answer: its text and the
// text of its blocks, as a person would read them.
func ask(tb testing.TB, s *slacktest.Server, user, text string) string {
	tb.Helper()
	before := len(s.Messages())
	s.SendDM(user, text)
	ctx, cancel := context.WithTimeout(tb.Context(), waitFor)
	defer cancel()
	for {
		msgs := s.Messages()
		for _, m := range msgs[before:] {
			if m.Channel == s.DMChannel(user) {
				return m.Text + "\n" + blockText(tb, m.Blocks)
			}
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("no answer to %q: %+v", text, msgs[before:])
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// blockText collects every "text" string in a Block Kit array.
func blockText(tb testing.TB, blocks json.RawMessage) string {
	tb.Helper()
	if len(blocks) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(blocks, &v); err != nil {
		tb.Fatalf("blocks: %v", err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "text" {
					out = append(out, s)
				} else {
					walk(x)
				}
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return strings.Join(out, "\n")
}

// sam's profile hides Opportunity.Amount and Contact.Phone and he sees only
// his own records. Every command answers him with what he may read, where
// each used to say "Salesforce refused the request"; jane, who may read
// everything, still sees it all. Messages get fresh clients that share
// what each person may read, so only each person's first search reads it.
func TestCommandsShowOnlyWhatThePersonMayRead(t *testing.T) {
	srv := sftest.NewServer(sftest.Options{})
	t.Cleanup(srv.Close)
	s := mustSlack(t)
	mustRun(t, s, mustOrgAuth(t, srv, map[string]string{sam: "sam@acme.example", jane: "jane@acme.example"}), nil)
	tests := []struct {
		user, text string
		want, not  []string
	}{
		{sam, "search müller", []string{"3 results", "Söhne KG", "Hans Müller", "Title: Geschäftsführer", "Müller Renewal 2026", "Stage: Closed Won", "Close Date: 2025-06-30"},
			[]string{"Amount", "32000", "Phone: +49 89 5550 778"}},
		{sam, "account müller", []string{"1 result", "Söhne KG", "Industry: Retail", "Phone: +49 89 5550 777"}, nil},
		{sam, "account acme", []string{"1 result", "Acme Labs GmbH"}, []string{"Acme Corporation"}},
		{sam, "contact hans", []string{"1 result", "Hans Müller", "Email: hans@mueller-soehne.example"}, []string{"Phone"}},
		{sam, "opportunity müller", []string{"1 result", "Müller Renewal 2026", "Stage: Closed Won", "Account: Müller"}, []string{"Amount"}},
		{sam, "opp müller", []string{"1 result", "Müller Renewal 2026"}, []string{"Amount"}},
		{sam, "lead dana", []string{"1 result", "Dana O'Neil", "Company: Acme Labs GmbH", "Status: Working - Contacted"}, nil},
		{sam, "case rechnung", []string{"1 result", "00001003", "Subject: Rechnung fehlt für März", "Priority: Low"}, nil},
		{sam, "case damaged", []string{"Nothing in Salesforce matches"}, nil}, // jane's case
		{sam, "whoami", []string{"sam@acme.example", srv.OrgID()}, nil},
		{jane, "search müller", []string{"3 results", "Amount: 32000", "Phone: +49 89 5550 778"}, nil},
		{jane, "opp müller", []string{"Amount: 32000"}, nil},
	}
	for _, tt := range tests {
		got := ask(t, s, tt.user, tt.text)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s %q: answer lacks %q:\n%s", tt.user, tt.text, w, got)
			}
		}
		for _, n := range append(tt.not, "refused", "went wrong") {
			if strings.Contains(got, n) {
				t.Errorf("%s %q: answer shows %q:\n%s", tt.user, tt.text, n, got)
			}
		}
	}
	if n := srv.Calls(sftest.EndpointObjectInfo); n != 2 {
		t.Errorf("%d object info reads, want 2: the five objects once for each person, in one batch", n)
	}
}

// An administrator hides a field while forcebind trusts what it read
// before: the next command still answers, without that field.
func TestCommandAfterFieldHidden(t *testing.T) {
	srv := sftest.NewServer(sftest.Options{})
	t.Cleanup(srv.Close)
	s := mustSlack(t)
	mustRun(t, s, mustOrgAuth(t, srv, map[string]string{sam: "sam@acme.example"}), nil)
	if got := ask(t, s, sam, "account müller"); !strings.Contains(got, "Industry: Retail") {
		t.Fatalf("before: %s", got)
	}
	if err := srv.SetFieldHidden("sam@acme.example", "Account", "Industry", true); err != nil {
		t.Fatal(err)
	}
	got := ask(t, s, sam, "search müller")
	if !strings.Contains(got, "Söhne KG") || strings.Contains(got, "Industry") || strings.Contains(got, "refused") {
		t.Errorf("after Industry was hidden: %s", got)
	}
}

// A person whose profile may not read an object at all is told so by the
// command for it, and searches still answer with the other objects.
func TestCommandsForAnObjectThePersonMayNotRead(t *testing.T) {
	srv := sftest.NewServer(sftest.Options{})
	t.Cleanup(srv.Close)
	if err := srv.SetObjectDenied("sam@acme.example", "Lead", true); err != nil {
		t.Fatal(err)
	}
	s := mustSlack(t)
	mustRun(t, s, mustOrgAuth(t, srv, map[string]string{sam: "sam@acme.example"}), nil)
	if got := ask(t, s, sam, "lead dana"); !strings.Contains(got, "cannot see leads") {
		t.Errorf("lead dana answered %q, want that sam cannot see leads", got)
	}
	got := ask(t, s, sam, "search müller")
	if !strings.Contains(got, "Hans Müller") || strings.Contains(got, "went wrong") || strings.Contains(got, "refused") {
		t.Errorf("search müller answered %q, want the contacts and accounts sam may read", got)
	}
}
