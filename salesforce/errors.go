package salesforce

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors. An *[APIError] matches them through errors.Is; the
// client's own checks wrap them directly.
var (
	// ErrSessionExpired is returned when the API rejects the access token
	// with 401 INVALID_SESSION_ID and the one refresh and retry did not help
	// (or the token source cannot refresh).
	ErrSessionExpired = errors.New("salesforce: session expired or invalid")

	// ErrRateLimited is returned when the org has used up its API requests
	// (403 REQUEST_LIMIT_EXCEEDED). It never triggers a refresh.
	ErrRateLimited = errors.New("salesforce: API request limit exceeded")

	// ErrNotFound is returned when the record or resource does not exist or
	// is not visible to the user (404 NOT_FOUND).
	ErrNotFound = errors.New("salesforce: not found")

	// ErrUnavailable is returned for 5xx answers, for error answers whose
	// body is not Salesforce's JSON (an HTML page or an empty body from a
	// proxy or load balancer), and for network failures.
	ErrUnavailable = errors.New("salesforce: service unavailable")

	// ErrInvalidInput is returned, before any request is sent, when an
	// argument fails validation: an unknown object, a malformed record id, a
	// search text that is too short.
	ErrInvalidInput = errors.New("salesforce: invalid input")

	// ErrNotReadable is returned when the user may not read an object at
	// all (no read access on their profile or permission sets): Find of
	// that object, or a Search of nothing but such objects. It is always
	// a *[NotReadableError], which says which object.
	ErrNotReadable = errors.New("salesforce: object not readable by the user")
)

// NotReadableError says that the client's user may not read an object at
// all. Search leaves such objects out of its answer; Find of one, and a
// Search with nothing else left, return this error. It matches
// [ErrNotReadable] with errors.Is, and never any other sentinel: the
// person is to be told they cannot see these records, not that something
// failed. It is a plain value, safe to read from any goroutine.
type NotReadableError struct {
	Object string // API name, e.g. "Lead"
	Label  string // singular label, e.g. "Lead"
	// Reason is Salesforce's answer to the object info request that said
	// so (e.g. "salesforce: HTTP 403 INSUFFICIENT_ACCESS: …"), for the
	// log. It holds no token.
	Reason string
}

// Error says which object, and why, in one line.
func (e *NotReadableError) Error() string {
	return fmt.Sprintf("salesforce: the user may not read %s records (%s)", e.Object, e.Reason)
}

// Is reports whether target is ErrNotReadable.
func (e *NotReadableError) Is(target error) bool { return target == ErrNotReadable }

// Error codes Salesforce sends that the client acts on.
const (
	codeInvalidSession = "INVALID_SESSION_ID"
	codeRequestLimit   = "REQUEST_LIMIT_EXCEEDED"
	codeNotFound       = "NOT_FOUND"
)

// Caps keep a hostile or broken server from filling logs through errors.
const (
	maxMessageBytes = 512
	maxCodeBytes    = 100
	maxFields       = 16
)

// APIError is an error answer from Salesforce: the HTTP status and the first
// entry of the JSON error array ({"message","errorCode","fields"}).
//
// Its Error text never contains a token or a request header. An APIError is
// a plain value, safe to read from any goroutine once returned.
type APIError struct {
	StatusCode int      // HTTP status code
	ErrorCode  string   // Salesforce errorCode (or OAuth "error"); empty when the body was not JSON
	Message    string   // human-readable message, length-capped
	Fields     []string // fields the error refers to, if any
}

// Error describes the failure in one line.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "salesforce: HTTP %d", e.StatusCode)
	if e.ErrorCode != "" {
		b.WriteString(" ")
		b.WriteString(e.ErrorCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if len(e.Fields) > 0 {
		fmt.Fprintf(&b, " (fields: %s)", strings.Join(e.Fields, ", "))
	}
	return b.String()
}

// Is reports whether e matches one of the package's sentinel errors.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrSessionExpired:
		return e.ErrorCode == codeInvalidSession || (e.StatusCode == http.StatusUnauthorized && e.ErrorCode == "")
	case ErrRateLimited:
		return e.ErrorCode == codeRequestLimit || e.StatusCode == http.StatusTooManyRequests
	case ErrNotFound:
		return e.ErrorCode == codeNotFound || e.StatusCode == http.StatusNotFound
	case ErrUnavailable:
		if e.StatusCode >= 500 {
			return true
		}
		// A body without Salesforce's JSON comes from something in front of
		// Salesforce (proxy, load balancer, maintenance page).
		return e.ErrorCode == "" && e.StatusCode != http.StatusUnauthorized && e.StatusCode != http.StatusNotFound
	}
	return false
}

// ParseError builds an *APIError from an error answer. It understands
// Salesforce's JSON array [{"message","errorCode","fields"}], a single such
// object, the OAuth form {"error","error_description"}, an HTML page and an
// empty body. It never panics, always returns a non-nil error, and caps the
// message length. It is safe for concurrent use.
func ParseError(status int, header http.Header, body []byte) *APIError {
	return parseError(status, header, body, "")
}

// parseError is ParseError that also replaces each token (when not empty) in the
// decoded fields before they are capped. The client redacts the raw body
// too; this second pass catches a token the server sent JSON-escaped
// (\u0021 for "!"), and running it before the cap keeps a token that
// straddles the cut from surviving as a prefix.
func parseError(status int, header http.Header, body []byte, tokens ...string) *APIError {
	e := &APIError{StatusCode: status}
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")))
	var ok bool
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		ok = parseErrorArray(e, trimmed)
	case len(trimmed) > 0 && trimmed[0] == '{':
		ok = parseErrorObject(e, trimmed)
	}
	if !ok {
		e.ErrorCode = ""
		e.Fields = nil
		e.Message = describeBody(status, header, trimmed)
	}
	e.ErrorCode = redact(e.ErrorCode, tokens...)
	e.Message = redact(e.Message, tokens...)
	for i, f := range e.Fields {
		e.Fields[i] = redact(f, tokens...)
	}
	e.ErrorCode = clean(e.ErrorCode, maxCodeBytes)
	e.Message = clean(e.Message, maxMessageBytes)
	if len(e.Fields) > maxFields {
		e.Fields = e.Fields[:maxFields]
	}
	for i, f := range e.Fields {
		e.Fields[i] = clean(f, maxCodeBytes)
	}
	return e
}

type wireError struct {
	Message          string   `json:"message"`
	ErrorCode        string   `json:"errorCode"`
	Fields           []string `json:"fields"`
	Error            string   `json:"error"`
	ErrorDescription string   `json:"error_description"`
}

func (w wireError) fill(e *APIError) bool {
	e.ErrorCode = w.ErrorCode
	if e.ErrorCode == "" {
		e.ErrorCode = w.Error
	}
	e.Message = w.Message
	if e.Message == "" {
		e.Message = w.ErrorDescription
	}
	e.Fields = w.Fields
	return e.ErrorCode != "" || e.Message != ""
}

func parseErrorArray(e *APIError, body []byte) bool {
	var list []wireError
	if err := json.Unmarshal(body, &list); err != nil || len(list) == 0 {
		return false
	}
	if !list[0].fill(e) {
		return false
	}
	if n := len(list) - 1; n > 0 {
		e.Message = fmt.Sprintf("%s (and %d more)", e.Message, n)
	}
	return true
}

func parseErrorObject(e *APIError, body []byte) bool {
	var w wireError
	if err := json.Unmarshal(body, &w); err != nil {
		return false
	}
	return w.fill(e)
}

// describeBody names a non-JSON body without echoing it: proxies put
// arbitrary HTML there.
func describeBody(status int, header http.Header, body []byte) string {
	text := http.StatusText(status)
	if text == "" {
		text = "unexpected status"
	}
	mediaType, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	switch {
	case len(body) == 0:
		return text + " (empty body)"
	case mediaType == "text/html" || bytes.HasPrefix(body, []byte("<")):
		return text + " (HTML page instead of an API answer)"
	default:
		return text + " (unreadable error body)"
	}
}

// clean makes s printable on one line and at most limit bytes long, cut on a
// rune boundary.
func clean(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= limit {
		return s
	}
	const ellipsis = "…"
	cut := limit - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// redacted replaces a bearer token wherever it shows up in an error.
const redacted = "[redacted]"

// redact replaces every occurrence of each token in s, the longest first
// so that a token inside another cannot leave the rest of the outer one
// behind. An empty token would match between every byte, so it is skipped.
func redact(s string, tokens ...string) string {
	for _, t := range longestFirst(tokens) {
		s = strings.ReplaceAll(s, t, redacted)
	}
	return s
}

// longestFirst returns the non-empty tokens, longest first.
func longestFirst(tokens []string) []string {
	out := make([]string, 0, len(tokens))
	for _, t := range tokens {
		if t != "" {
			out = append(out, t)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}
