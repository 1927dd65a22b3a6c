package bot

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/slack-go/slack"
)

func TestDecodeChatAnswer(t *testing.T) {
	tests := []struct {
		in      string
		want    chatAnswer
		wantErr bool
	}{
		{`{"ok":true,"channel":"D1","ts":"1.2","message":{"text":"a \"}\" b","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"x]"}}]}}`, chatAnswer{OK: true, TS: "1.2"}, false},
		{` { "ok" : false , "error" : "channel_not_found" } `, chatAnswer{Error: "channel_not_found"}, false},
		{`{"message":{"ok":false},"ok":true}`, chatAnswer{OK: true}, false},
		{`{}`, chatAnswer{}, false},
		{`{"\u006fk":true,"OK":true,"Error":"x"}`, chatAnswer{OK: true, Error: "x"}, false},
		{`{"ok":true,"warning":"missing_charset","response_metadata":{"warnings":["missing_charset"]}}`, chatAnswer{OK: true}, false},
		{``, chatAnswer{}, true},
		{`[]`, chatAnswer{}, true},
		{`{"ok":true`, chatAnswer{}, true},
		{`{"ok":"yes"}`, chatAnswer{}, true},
		{`{"ok":true,"message":{"text":"unclosed}`, chatAnswer{}, true},
		{`{"ok":true} trailing`, chatAnswer{}, true},
	}
	for _, tt := range tests {
		got, err := decodeChatAnswer([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("decodeChatAnswer(%s) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("decodeChatAnswer(%s) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// FuzzDecodeChatAnswer: on any answer Slack (or a proxy) might send, the
// lean reader never panics, and where encoding/json reads a valid object
// it agrees with it on ok, error and ts.
func FuzzDecodeChatAnswer(f *testing.F) {
	for _, s := range []string{
		`{"ok":true,"ts":"1.2","message":{"text":"x","blocks":[]}}`,
		`{"ok":false,"error":"ratelimited"}`,
		`{"ok":true,"message":{"text":"\\\"}"}}`,
		`{"a":[1,{"b":"]"}],"ok":true}`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeChatAnswer(data)
		var ref struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
			TS    string `json:"ts"`
		}
		var probe map[string]json.RawMessage
		if json.Unmarshal(data, &probe) != nil || json.Unmarshal(data, &ref) != nil {
			return // not a valid object of this shape: any answer but a panic is fine
		}
		if hasDuplicateOrEscapedKey(data) {
			return // encoding/json matches keys case-insensitively and takes the last; Slack sends neither
		}
		if err != nil {
			t.Fatalf("decodeChatAnswer(%q) = %v, but it is valid JSON", data, err)
		}
		if got.OK != ref.OK || got.Error != ref.Error || got.TS != ref.TS {
			t.Fatalf("decodeChatAnswer(%q) = %+v, encoding/json says %+v", data, got, ref)
		}
	})
}

// hasDuplicateOrEscapedKey reports whether data's top-level keys repeat
// one of ours, differ from ours only in case, or use escapes.
func hasDuplicateOrEscapedKey(data []byte) bool {
	seen := map[string]int{}
	bad := false
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return true
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return true
		}
		k, _ := tok.(string)
		lower := []byte(k)
		for i, c := range lower {
			if c >= 'A' && c <= 'Z' {
				lower[i] = c + 32
			}
		}
		seen[string(lower)]++
		if string(lower) != k && (string(lower) == "ok" || string(lower) == "error" || string(lower) == "ts") {
			bad = true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return true
		}
	}
	for _, k := range []string{"ok", "error", "ts"} {
		if seen[k] > 1 {
			bad = true
		}
	}
	for _, c := range data {
		if c == '\\' {
			return true // an escape in a key would read differently; values with escapes are checked by the table test
		}
	}
	return bad
}

// echoedAnswer is chat.postMessage's answer to a five-record search answer:
// Slack echoes the whole message, blocks and all.
func echoedAnswer(tb testing.TB) []byte {
	tb.Helper()
	in := &incoming{Surface: surfaceDM, ChannelID: "D0JANE", UserID: "U0JANE"}
	r := in.results("acme", fiveResults())
	blocks, err := json.Marshal(slack.Blocks{BlockSet: r.blocks})
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(`{"ok":true,"channel":"D0JANE","ts":"1700000000.000100","message":{"type":"message","text":"x","user":"U0BOT",` +
		`"ts":"1700000000.000100","blocks":` + string(blocks) + `}}`)
}

// BenchmarkChatAnswer: reading ok, error and ts of an echoed answer, with
// the lean reader and, as the baseline in the same run, encoding/json.
func BenchmarkChatAnswer(b *testing.B) {
	data := echoedAnswer(b)
	b.Run("lean", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if a, err := decodeChatAnswer(data); err != nil || !a.OK {
				b.Fatal(a, err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var a struct {
				OK    bool   `json:"ok"`
				Error string `json:"error"`
				TS    string `json:"ts"`
			}
			if err := json.Unmarshal(data, &a); err != nil || !a.OK {
				b.Fatal(a, err)
			}
		}
	})
}
