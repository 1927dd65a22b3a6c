package auth

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// HostOnly lets through only requests addressed to the callback URL's
// host, default ports made explicit, and refuses every other with 421 and
// the words it was given; an unparsable callback URL refuses everyone.
func TestHostOnly(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metrics") })
	tests := []struct {
		callback string
		host     string
		tls      bool
		want     int
	}{
		{"http://localhost:8787/oauth/callback", "localhost:8787", false, http.StatusOK},
		{"http://localhost:8787/oauth/callback", "LOCALHOST:8787", false, http.StatusOK},
		{"http://localhost/oauth/callback", "localhost:80", false, http.StatusOK},
		{"http://localhost/oauth/callback", "localhost", false, http.StatusOK},
		{"https://forcebind.example.com/oauth/callback", "forcebind.example.com", false, http.StatusOK}, // behind a TLS proxy
		{"https://forcebind.example.com/oauth/callback", "forcebind.example.com:443", false, http.StatusOK},
		{"https://forcebind.example.com/oauth/callback", "forcebind.example.com:80", false, http.StatusMisdirectedRequest},
		{"http://localhost:8443/oauth/callback", "localhost:8443", true, http.StatusOK},
		{"https://[::1]/oauth/callback", "[::1]:443", false, http.StatusOK},
		{"http://127.0.0.1:8787/oauth/callback", "127.0.0.1:8787", false, http.StatusOK},
		{"http://localhost:8787/oauth/callback", "127.0.0.1:8787", false, http.StatusMisdirectedRequest},
		{"http://localhost:8787/oauth/callback", "attacker.example:8787", false, http.StatusMisdirectedRequest},
		{"http://localhost:8787/oauth/callback", "", false, http.StatusMisdirectedRequest},
		{"%%", "localhost:8787", false, http.StatusMisdirectedRequest},
		{"", "", false, http.StatusMisdirectedRequest},
	}
	for _, tt := range tests {
		t.Run(tt.callback+" "+tt.host, func(t *testing.T) {
			h := HostOnly(tt.callback, "wrong address", ok)
			req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil)
			req.Host = tt.host
			if tt.tls {
				req.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			body := w.Body.String()
			if w.Code != tt.want {
				t.Errorf("status %d, want %d (%q)", w.Code, tt.want, body)
			}
			if tt.want != http.StatusOK && (strings.Contains(body, "metrics") || !strings.Contains(body, "wrong address")) {
				t.Errorf("a refused request got %q", body)
			}
		})
	}
}
