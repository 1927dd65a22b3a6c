package bot

import (
	"bytes"
	"encoding/json"
	"errors"
)

// errScan is returned by topFields for text that is not a JSON object.
var errScan = errors.New("not a JSON object")

// topFields calls found with the raw value of each top-level member of the
// JSON object data whose name is one of names (names without escapes), and
// skips every other member's value without decoding it. It exists for
// Slack's chat answers, which echo the whole message back: encoding/json
// would scan and check every byte of that echo to skip it, which showed in
// the daemon's profile; skipping here only matches brackets and strings.
// It checks the structure it walks (strings closed, brackets balanced) but
// leaves values it skips otherwise unchecked; the values it hands to found
// are for json.Unmarshal, which checks them.
func topFields(data []byte, names []string, found func(name string, raw []byte) error) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errScan
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return errScan
		}
		end, ok := skipString(data, i)
		if !ok {
			return errScan
		}
		name := data[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			// An escaped name ("\u006fk"): rare, so it is unquoted the slow way.
			var n string
			if err := json.Unmarshal(data[i:end], &n); err != nil {
				return errScan
			}
			name = []byte(n)
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return errScan
		}
		start := skipSpace(data, i+1)
		end, ok = skipValue(data, start)
		if !ok {
			return errScan
		}
		for _, n := range names {
			// encoding/json matches member names without regard to case.
			if bytes.EqualFold(name, []byte(n)) {
				if err := found(n, data[start:end]); err != nil {
					return err
				}
				break
			}
		}
		i = skipSpace(data, end)
		if i >= len(data) {
			return errScan
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			if skipSpace(data, i+1) != len(data) {
				return errScan
			}
			return nil
		default:
			return errScan
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at i.
func skipString(data []byte, i int) (int, bool) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index just past the value that starts at i.
func skipValue(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, ok := skipString(data, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	// A number, true, false or null: up to the next delimiter.
	j := i
	for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' && data[j] != ' ' && data[j] != '\n' && data[j] != '\r' && data[j] != '\t' {
		j++
	}
	return j, j > i
}

// decodeChatAnswer reads ok, error and ts of a chat method's answer.
func decodeChatAnswer(data []byte) (chatAnswer, error) {
	var ans chatAnswer
	err := topFields(data, []string{"ok", "error", "ts"}, func(name string, raw []byte) error {
		switch name {
		case "ok":
			return json.Unmarshal(raw, &ans.OK)
		case "error":
			return json.Unmarshal(raw, &ans.Error)
		default:
			return json.Unmarshal(raw, &ans.TS)
		}
	})
	return ans, err
}
