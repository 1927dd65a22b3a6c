package salesforce

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// stdDecode is what leanDecode must agree with.
func stdDecode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, errTrailing
	}
	return v, nil
}

var errTrailing = jsonError("trailing data")

type jsonError string

func (e jsonError) Error() string { return string(e) }

func TestLeanDecode(t *testing.T) {
	for _, in := range []string{
		`{"a":"b","n":-1.5e+3,"z":0,"t":true,"f":false,"x":null,"o":{"k":[1,"2",{}]},"e":[]}`,
		` "caf\u00e9 \"q\" \\ \/" `,
		`"déjà vu"`, `"\ud83d\ude00"`, "\"bad \xff utf8\"",
		`{"dup":1,"dup":2}`, `[[[[]]]]`, `12345678901234567890`,
	} {
		want, werr := stdDecode([]byte(in))
		got, gerr := leanDecode([]byte(in))
		if werr != nil || gerr != nil {
			t.Errorf("%s: lean %v, std %v", in, gerr, werr)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s mismatch (-std +lean):\n%s", in, diff)
		}
	}
	for _, bad := range []string{``, `{`, `{"a"}`, `{"a":}`, `[1,]`, `{"a":1,}`, `01`, `-`, `1.`, `1e`, `.5`, `tru`, `nul`, "\"a\nb\"", `"\q"`, `{} {}`, `"abc`, `{1:2}`} {
		if _, err := leanDecode([]byte(bad)); err == nil {
			t.Errorf("leanDecode(%q) accepted it", bad)
		}
	}
	deep := bytes.Repeat([]byte("["), maxLeanDepth+1)
	if _, err := leanDecode(deep); err == nil {
		t.Error("leanDecode accepted nesting past its bound")
	}
}

// FuzzLeanDecode: on any input leanDecode never panics, accepts what
// encoding/json accepts with the same result, and refuses what it
// refuses (but for nesting past maxLeanDepth).
func FuzzLeanDecode(f *testing.F) {
	for _, s := range []string{
		`{"searchRecords":[{"attributes":{"type":"Account","url":"/x/001"},"Id":"001","Name":"Acme","Amount":1.5e3}]}`,
		`"esc \" \\ \u00e9"`, `[1,-0,0.5e-3,true,false,null]`, `{"a":{"b":[{}]}}`, `{"bad":01}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gerr := leanDecode(data)
		want, werr := stdDecode(data)
		if gerr == errLeanDepth {
			return
		}
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("leanDecode(%q) error %v, encoding/json %v", data, gerr, werr)
		}
		if gerr == nil && !cmp.Equal(want, got) {
			t.Fatalf("leanDecode(%q) mismatch (-std +lean):\n%s", data, cmp.Diff(want, got))
		}
	})
}
