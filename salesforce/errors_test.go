package salesforce_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/google/go-cmp/cmp"
)

func TestParseError(t *testing.T) {
	html := http.Header{"Content-Type": {"text/html; charset=utf-8"}}
	tests := []struct {
		name     string
		status   int
		header   http.Header
		body     string
		want     *salesforce.APIError
		wantIs   []error
		wantIsnt []error
	}{
		{
			name: "session array", status: 401, body: `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`,
			want:   &salesforce.APIError{StatusCode: 401, ErrorCode: "INVALID_SESSION_ID", Message: "Session expired or invalid"},
			wantIs: []error{salesforce.ErrSessionExpired}, wantIsnt: []error{salesforce.ErrUnavailable, salesforce.ErrRateLimited},
		},
		{
			name: "rate limit", status: 403, body: `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`,
			want:   &salesforce.APIError{StatusCode: 403, ErrorCode: "REQUEST_LIMIT_EXCEEDED", Message: "TotalRequests Limit exceeded."},
			wantIs: []error{salesforce.ErrRateLimited}, wantIsnt: []error{salesforce.ErrSessionExpired, salesforce.ErrUnavailable},
		},
		{
			name: "fields and more", status: 400, body: `[{"message":"No such column","errorCode":"INVALID_FIELD","fields":["Foo"]},{"message":"x","errorCode":"Y"}]`,
			want: &salesforce.APIError{StatusCode: 400, ErrorCode: "INVALID_FIELD", Message: "No such column (and 1 more)", Fields: []string{"Foo"}},
		},
		{
			name: "not found object", status: 404, body: `{"message":"The requested resource does not exist","errorCode":"NOT_FOUND"}`,
			want:   &salesforce.APIError{StatusCode: 404, ErrorCode: "NOT_FOUND", Message: "The requested resource does not exist"},
			wantIs: []error{salesforce.ErrNotFound},
		},
		{
			name: "oauth form", status: 400, body: `{"error":"invalid_grant","error_description":"expired access/refresh token"}`,
			want: &salesforce.APIError{StatusCode: 400, ErrorCode: "invalid_grant", Message: "expired access/refresh token"},
		},
		{
			name: "html 502", status: 502, header: html, body: "<html><title>502</title><script>alert(1)</script></html>",
			want:   &salesforce.APIError{StatusCode: 502, Message: "Bad Gateway (HTML page instead of an API answer)"},
			wantIs: []error{salesforce.ErrUnavailable},
		},
		{
			name: "empty 503", status: 503, body: "",
			want:   &salesforce.APIError{StatusCode: 503, Message: "Service Unavailable (empty body)"},
			wantIs: []error{salesforce.ErrUnavailable},
		},
		{
			name: "broken json", status: 400, body: `[{"message":`,
			want:   &salesforce.APIError{StatusCode: 400, Message: "Bad Request (unreadable error body)"},
			wantIs: []error{salesforce.ErrUnavailable},
		},
		{
			name: "empty array", status: 400, body: `[]`,
			want: &salesforce.APIError{StatusCode: 400, Message: "Bad Request (unreadable error body)"},
		},
		{
			name: "control characters", status: 400, body: `[{"message":"a\nb\u0000c","errorCode":"X"}]`,
			want: &salesforce.APIError{StatusCode: 400, ErrorCode: "X", Message: "a b c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := tt.header
			if header == nil {
				header = http.Header{}
			}
			got := salesforce.ParseError(tt.status, header, []byte(tt.body))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseError mismatch (-want +got):\n%s", diff)
			}
			for _, target := range tt.wantIs {
				if !errors.Is(got, target) {
					t.Errorf("errors.Is(%v, %v) = false", got, target)
				}
			}
			for _, target := range tt.wantIsnt {
				if errors.Is(got, target) {
					t.Errorf("errors.Is(%v, %v) = true", got, target)
				}
			}
		})
	}

	t.Run("long message capped", func(t *testing.T) {
		body := `[{"message":"` + strings.Repeat("é", 5000) + `","errorCode":"X"}]`
		got := salesforce.ParseError(400, http.Header{}, []byte(body))
		if len(got.Message) > 512 || !utf8.ValidString(got.Message) {
			t.Errorf("message is %d bytes, valid UTF-8: %v", len(got.Message), utf8.ValidString(got.Message))
		}
	})
}

func FuzzParseError(f *testing.F) {
	f.Add(401, []byte(`[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`))
	f.Add(400, []byte(`{"error":"invalid_grant","error_description":"expired access/refresh token"}`))
	f.Add(502, []byte("<html>bad gateway</html>"))
	f.Add(503, []byte(""))
	f.Add(400, []byte(`[{"message":null,"errorCode":7,"fields":"x"}]`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := salesforce.ParseError(status, http.Header{}, body)
		if e == nil {
			t.Fatal("nil error")
		}
		if e.StatusCode != status {
			t.Errorf("StatusCode = %d, want %d", e.StatusCode, status)
		}
		if len(e.Message) > 512 || !utf8.ValidString(e.Message) || !utf8.ValidString(e.ErrorCode) {
			t.Errorf("message not capped or not valid UTF-8: %q", e.Message)
		}
		if strings.ContainsAny(e.Error(), "\n\r") {
			t.Errorf("Error() spans lines: %q", e.Error())
		}
		if status >= 500 && !errors.Is(e, salesforce.ErrUnavailable) {
			t.Errorf("status %d does not match ErrUnavailable", status)
		}
	})
}
