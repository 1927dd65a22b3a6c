package bot

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/forcebind/forcebind/salesforce"
)

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"Acme Corp", "Acme Corp"},
		{"A&B", "A&amp;B"},
		{"<@U123>", "&lt;@U123&gt;"},
		{"&amp;", "&amp;amp;"},
		{"déjà <vu> & ünïcode", "déjà &lt;vu&gt; &amp; ünïcode"},
		{">", "&gt;"},
	}
	for _, tt := range tests {
		if got := escape(tt.in); got != tt.want {
			t.Errorf("escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzEscape: escape agrees with the obvious Replacer on any input, and its
// output never holds a bare control character.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "plain", "a&b<c>d", "&&&", "\xff<\x00>"} {
		f.Add(s)
	}
	ref := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	f.Fuzz(func(t *testing.T, s string) {
		got := escape(s)
		if want := ref.Replace(s); got != want {
			t.Fatalf("escape(%q) = %q, want %q", s, got, want)
		}
		if strings.ContainsAny(got, "<>") {
			t.Fatalf("escape(%q) = %q still holds < or >", s, got)
		}
	})
}

// fiveResults is a typical answer: five records of mixed types with a few
// fields each, one of them with characters that need escaping.
func fiveResults() []salesforce.Result {
	return []salesforce.Result{
		{Type: "Account", ID: "001000000000001AAA", Name: "Acme Corporation", URL: "https://acme.my.salesforce.com/lightning/r/Account/001000000000001AAA/view",
			Fields: []salesforce.Field{{Label: "Industry", Value: "Manufacturing"}, {Label: "Phone", Value: "+1 415 555 0100"}}},
		{Type: "Contact", ID: "003000000000001AAA", Name: "Jane Doe", URL: "https://acme.my.salesforce.com/lightning/r/Contact/003000000000001AAA/view",
			Fields: []salesforce.Field{{Label: "Title", Value: "VP, Sales & Marketing"}, {Label: "Email", Value: "jane@acme.example"}}},
		{Type: "Opportunity", ID: "006000000000001AAA", Name: "Acme - 200 widgets", URL: "https://acme.my.salesforce.com/lightning/r/Opportunity/006000000000001AAA/view",
			Fields: []salesforce.Field{{Label: "Stage", Value: "Negotiation/Review"}, {Label: "Amount", Value: "120000"}, {Label: "Close Date", Value: "2026-12-31"}}},
		{Type: "Lead", ID: "00Q000000000001AAA", Name: "Sam <Acme> Roe", URL: "https://acme.my.salesforce.com/lightning/r/Lead/00Q000000000001AAA/view",
			Fields: []salesforce.Field{{Label: "Company", Value: "Acme Labs"}, {Label: "Status", Value: "Open - Not Contacted"}}},
		{Type: "Case", ID: "500000000000001AAA", Name: "00001001", URL: "https://acme.my.salesforce.com/lightning/r/Case/500000000000001AAA/view",
			Fields: []salesforce.Field{{Label: "Subject", Value: "Widgets arrive bent"}, {Label: "Status", Value: "New"}, {Label: "Priority", Value: "High"}}},
	}
}

// BenchmarkReplyPath: escape and render a five-record answer to the JSON
// Slack receives, as every search answer is. A regression here (such as a
// Replacer built per call) shows in ns/op and allocs/op.
func BenchmarkReplyPath(b *testing.B) {
	in := &incoming{Surface: surfaceDM, ChannelID: "D0JANE", UserID: "U0JANE"}
	rs := fiveResults()
	b.ReportAllocs()
	for b.Loop() {
		r := in.results("acme", rs)
		if _, err := json.Marshal(slack.Blocks{BlockSet: r.blocks}); err != nil {
			b.Fatal(err)
		}
	}
}
