package salesforce

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// leanDecode decodes one JSON value as encoding/json does into an any with
// UseNumber (objects map[string]any, arrays []any, numbers json.Number,
// strings, bools, nil), rejecting what it rejects, but with far fewer
// allocations: a string without escapes is copied once, and no decoder
// state is kept. Every search and query answer is decoded so, once per
// event: encoding/json's decoding of them was a quarter of the daemon's
// allocations (issue 11). Strings with escapes, control characters or
// invalid UTF-8 are handed to encoding/json, so their meaning is its own.
// FuzzLeanDecode holds it to encoding/json's results.
func leanDecode(data []byte) (any, error) {
	d := leanDecoder{data: data}
	d.space()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.space()
	if d.i != len(d.data) {
		return nil, d.errorf("data after the JSON value")
	}
	return v, nil
}

// maxLeanDepth bounds nesting, so hostile input cannot exhaust the stack;
// Salesforce records nest a few levels.
const maxLeanDepth = 512

var errLeanDepth = errors.New("JSON nested too deeply")

type leanDecoder struct {
	data []byte
	i    int
}

func (d *leanDecoder) errorf(format string, a ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", d.i, fmt.Sprintf(format, a...))
}

func (d *leanDecoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *leanDecoder) value(depth int) (any, error) {
	if d.i >= len(d.data) {
		return nil, d.errorf("unexpected end")
	}
	switch c := d.data[d.i]; {
	case c == '{':
		return d.object(depth + 1)
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		return d.string()
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, d.errorf("unexpected %q", d.data[d.i])
}

func (d *leanDecoder) literal(word string) error {
	if len(d.data)-d.i < len(word) || string(d.data[d.i:d.i+len(word)]) != word {
		return d.errorf("not %s", word)
	}
	d.i += len(word)
	return nil
}

func (d *leanDecoder) object(depth int) (any, error) {
	if depth > maxLeanDepth {
		return nil, errLeanDepth
	}
	d.i++ // {
	m := make(map[string]any, 8)
	d.space()
	if d.i < len(d.data) && d.data[d.i] == '}' {
		d.i++
		return m, nil
	}
	for {
		if d.i >= len(d.data) || d.data[d.i] != '"' {
			return nil, d.errorf("want a member name")
		}
		k, err := d.string()
		if err != nil {
			return nil, err
		}
		d.space()
		if d.i >= len(d.data) || d.data[d.i] != ':' {
			return nil, d.errorf("want ':'")
		}
		d.i++
		d.space()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		m[k] = v
		d.space()
		if d.i >= len(d.data) {
			return nil, d.errorf("unexpected end")
		}
		switch d.data[d.i] {
		case ',':
			d.i++
			d.space()
		case '}':
			d.i++
			return m, nil
		default:
			return nil, d.errorf("want ',' or '}'")
		}
	}
}

func (d *leanDecoder) array(depth int) (any, error) {
	if depth > maxLeanDepth {
		return nil, errLeanDepth
	}
	d.i++ // [
	a := make([]any, 0, 8)
	d.space()
	if d.i < len(d.data) && d.data[d.i] == ']' {
		d.i++
		return a, nil
	}
	for {
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.space()
		if d.i >= len(d.data) {
			return nil, d.errorf("unexpected end")
		}
		switch d.data[d.i] {
		case ',':
			d.i++
			d.space()
		case ']':
			d.i++
			return a, nil
		default:
			return nil, d.errorf("want ',' or ']'")
		}
	}
}

// string decodes the string at d.i. The common case, no escapes and plain
// UTF-8, is one copy; anything else is encoding/json's to read.
func (d *leanDecoder) string() (string, error) {
	start := d.i
	simple := true
	for j := start + 1; j < len(d.data); j++ {
		switch c := d.data[j]; {
		case c == '"':
			d.i = j + 1
			raw := d.data[start+1 : j]
			if simple && utf8.Valid(raw) {
				return string(raw), nil
			}
			var s string
			if err := json.Unmarshal(d.data[start:j+1], &s); err != nil {
				return "", err
			}
			return s, nil
		case c == '\\':
			simple = false
			j++ // the escaped character is never the closing quote
		case c < 0x20:
			simple = false // encoding/json refuses it; let it say so
		}
	}
	return "", d.errorf("unterminated string")
}

// number reads a number by JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *leanDecoder) number() (any, error) {
	start := d.i
	digits := func() int {
		n := 0
		for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.data[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.data) && d.data[d.i] == '0':
		d.i++
	case digits() == 0:
		return nil, d.errorf("bad number")
	}
	if d.i < len(d.data) && d.data[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return nil, d.errorf("bad number")
		}
	}
	if d.i < len(d.data) && (d.data[d.i] == 'e' || d.data[d.i] == 'E') {
		d.i++
		if d.i < len(d.data) && (d.data[d.i] == '+' || d.data[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return nil, d.errorf("bad number")
		}
	}
	return json.Number(d.data[start:d.i]), nil
}
