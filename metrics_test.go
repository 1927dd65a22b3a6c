package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/bot"
	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/salesforce/sftest"
)

// mustMetrics returns metrics on a fresh registry and a function that
// scrapes its handler over HTTP.
func mustMetrics(tb testing.TB, bindings func() (int, error)) (*metrics, func() string) {
	tb.Helper()
	m := newMetrics(prometheus.NewRegistry(), bindings)
	srv := httptest.NewServer(m.handler())
	tb.Cleanup(srv.Close)
	return m, func() string {
		tb.Helper()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			tb.Fatalf("scrape: %v", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			tb.Fatalf("scrape: status %d, %v", resp.StatusCode, err)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
			tb.Errorf("Content-Type = %q, want the Prometheus text format", ct)
		}
		return string(body)
	}
}

// series returns the sample lines of the metric called name (a histogram's
// name_bucket, name_sum or name_count are their own names), in order.
func series(text, name string) []string {
	var out []string
	for line := range strings.Lines(text) {
		line = strings.TrimSuffix(line, "\n")
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " ")) {
			out = append(out, line)
		}
	}
	return out
}

func TestMetricsSeries(t *testing.T) {
	tests := []struct {
		name  string
		drive func(*metrics)
		want  map[string][]string // metric name -> its sample lines
	}{
		{
			name: "events received",
			drive: func(m *metrics) {
				m.EventReceived("events_api")
				m.EventReceived("hello")
				m.EventReceived("events_api")
			},
			want: map[string][]string{"forcebind_slack_events_received_total": {
				`forcebind_slack_events_received_total{type="events_api"} 2`,
				`forcebind_slack_events_received_total{type="hello"} 1`,
			}},
		},
		{
			name:  "acks start at zero",
			drive: func(*metrics) {},
			want: map[string][]string{
				"forcebind_slack_events_acked_total": {
					`forcebind_slack_events_acked_total{result="error"} 0`,
					`forcebind_slack_events_acked_total{result="ok"} 0`,
				},
				"forcebind_slack_ack_duration_seconds_count": {`forcebind_slack_ack_duration_seconds_count 0`},
			},
		},
		{
			name: "acks",
			drive: func(m *metrics) {
				m.EventAcked(500*time.Microsecond, true)
				m.EventAcked(2*time.Second, false)
			},
			want: map[string][]string{
				"forcebind_slack_events_acked_total": {
					`forcebind_slack_events_acked_total{result="error"} 1`,
					`forcebind_slack_events_acked_total{result="ok"} 1`,
				},
				"forcebind_slack_ack_duration_seconds_count": {`forcebind_slack_ack_duration_seconds_count 2`},
				"forcebind_slack_ack_duration_seconds_sum":   {`forcebind_slack_ack_duration_seconds_sum 2.0005`},
				"forcebind_slack_ack_duration_seconds_bucket": {
					`forcebind_slack_ack_duration_seconds_bucket{le="0.0001"} 0`,
					`forcebind_slack_ack_duration_seconds_bucket{le="0.00025"} 0`,
					`forcebind_slack_ack_duration_seconds_bucket{le="0.0005"} 1`,
					`forcebind_slack_ack_duration_seconds_bucket{le="0.001"} 1`,
					`forcebind_slack_ack_duration_seconds_bucket{le="0.0025"} 1`,
					`forcebind_slack_ack_duration_seconds_bucket{le="0.005"} 1`,
					`forcebind_slack_ack_duration_seconds_bucket{le="0.01"} 1`,
					`forcebind_slack_ack_duration_seconds_bucket{le="0.025"} 1`,
					`forcebind_slack_ack_duration_seconds_bucket{le="0.05"} 1`,
					`forcebind_slack_ack_duration_seconds_bucket{le="0.1"} 1`,
					`forcebind_slack_ack_duration_seconds_bucket{le="0.25"} 1`,
					`forcebind_slack_ack_duration_seconds_bucket{le="0.5"} 1`,
					`forcebind_slack_ack_duration_seconds_bucket{le="1"} 1`,
					`forcebind_slack_ack_duration_seconds_bucket{le="2.5"} 2`,
					`forcebind_slack_ack_duration_seconds_bucket{le="+Inf"} 2`,
				},
			},
		},
		{
			name: "commands; busy ones have no duration",
			drive: func(m *metrics) {
				m.CommandDone("search", "ok", 1500*time.Millisecond)
				m.CommandDone("search", "busy", 0)
				m.CommandDone("help", "ok", 10*time.Millisecond)
				m.CommandDone("search", "ok", 500*time.Millisecond)
			},
			want: map[string][]string{
				"forcebind_commands_total": {
					`forcebind_commands_total{command="help",outcome="ok"} 1`,
					`forcebind_commands_total{command="search",outcome="busy"} 1`,
					`forcebind_commands_total{command="search",outcome="ok"} 2`,
				},
				"forcebind_command_duration_seconds_count": {
					`forcebind_command_duration_seconds_count{command="help"} 1`,
					`forcebind_command_duration_seconds_count{command="search"} 2`,
				},
				"forcebind_command_duration_seconds_sum": {
					`forcebind_command_duration_seconds_sum{command="help"} 0.01`,
					`forcebind_command_duration_seconds_sum{command="search"} 2`,
				},
			},
		},
		{
			name: "slack connection",
			drive: func(m *metrics) {
				m.Connected(2)
				m.Disconnected()
				m.Reconnecting()
				m.Reconnecting()
				m.Connected(1)
			},
			want: map[string][]string{
				"forcebind_slack_connected":        {`forcebind_slack_connected 1`},
				"forcebind_slack_num_connections":  {`forcebind_slack_num_connections 1`},
				"forcebind_slack_reconnects_total": {`forcebind_slack_reconnects_total 2`},
			},
		},
		{
			name: "slack disconnected",
			drive: func(m *metrics) {
				m.Connected(2)
				m.Disconnected()
			},
			want: map[string][]string{
				"forcebind_slack_connected":        {`forcebind_slack_connected 0`},
				"forcebind_slack_num_connections":  {`forcebind_slack_num_connections 0`},
				"forcebind_slack_reconnects_total": {`forcebind_slack_reconnects_total 0`},
			},
		},
		{
			name: "salesforce requests",
			drive: func(m *metrics) {
				m.Request("search", "ok", 250*time.Millisecond)
				m.Request("query", "rate_limited", 100*time.Millisecond)
				m.Request("search", "ok", 750*time.Millisecond)
			},
			want: map[string][]string{
				"forcebind_salesforce_requests_total": {
					`forcebind_salesforce_requests_total{operation="query",outcome="rate_limited"} 1`,
					`forcebind_salesforce_requests_total{operation="search",outcome="ok"} 2`,
				},
				"forcebind_salesforce_request_duration_seconds_sum": {
					`forcebind_salesforce_request_duration_seconds_sum{operation="query",outcome="rate_limited"} 0.1`,
					`forcebind_salesforce_request_duration_seconds_sum{operation="search",outcome="ok"} 1`,
				},
			},
		},
		{
			name: "salesforce API usage, last value per instance",
			drive: func(m *metrics) {
				m.Usage("acme.my.salesforce.com", salesforce.Usage{Used: 25, Max: 15000})
				m.Usage("initech.my.salesforce.com", salesforce.Usage{Used: 7, Max: 100})
				m.Usage("acme.my.salesforce.com", salesforce.Usage{Used: 26, Max: 15000})
			},
			want: map[string][]string{
				"forcebind_salesforce_api_usage_used": {
					`forcebind_salesforce_api_usage_used{instance="acme.my.salesforce.com"} 26`,
					`forcebind_salesforce_api_usage_used{instance="initech.my.salesforce.com"} 7`,
				},
				"forcebind_salesforce_api_usage_max": {
					`forcebind_salesforce_api_usage_max{instance="acme.my.salesforce.com"} 15000`,
					`forcebind_salesforce_api_usage_max{instance="initech.my.salesforce.com"} 100`,
				},
			},
		},
		{
			name: "auth",
			drive: func(m *metrics) {
				m.Refreshed("ok")
				m.Refreshed("relink")
				m.Refreshed("ok")
				m.LinkEnded(auth.FlowWeb, "bound")
				m.LinkEnded(auth.FlowDevice, "expired")
			},
			want: map[string][]string{
				"forcebind_token_refreshes_total": {
					`forcebind_token_refreshes_total{outcome="ok"} 2`,
					`forcebind_token_refreshes_total{outcome="relink"} 1`,
				},
				"forcebind_links_ended_total": {
					`forcebind_links_ended_total{flow="device",outcome="expired"} 1`,
					`forcebind_links_ended_total{flow="web",outcome="bound"} 1`,
				},
			},
		},
		{
			name:  "build info",
			drive: func(*metrics) {},
			want: map[string][]string{
				"forcebind_build_info": {`forcebind_build_info{version="` + version + `"} 1`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, scrape := mustMetrics(t, nil)
			tt.drive(m)
			text := scrape()
			for name, want := range tt.want {
				if diff := cmp.Diff(want, series(text, name)); diff != "" {
					t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
				}
			}
		})
	}
}

// Every family is there with its type once each observer has been called
// through its package's interface, and the standard collectors are too.
func TestMetricsFamilies(t *testing.T) {
	m, scrape := mustMetrics(t, func() (int, error) { return 0, nil })
	var (
		b  bot.Observer        = m
		sf salesforce.Observer = m
		a  auth.Observer       = m
	)
	b.EventReceived("events_api")
	b.EventAcked(time.Millisecond, true)
	b.CommandDone("help", "ok", time.Millisecond)
	b.Connected(1)
	b.Reconnecting()
	sf.Request("search", "ok", time.Millisecond)
	sf.Usage("acme.my.salesforce.com", salesforce.Usage{Used: 1, Max: 2})
	a.Refreshed("ok")
	a.LinkEnded(auth.FlowWeb, "bound")

	text := scrape()
	for name, typ := range map[string]string{
		"go_goroutines":                                 "gauge",
		"process_cpu_seconds_total":                     "counter",
		"forcebind_slack_events_received_total":         "counter",
		"forcebind_slack_events_acked_total":            "counter",
		"forcebind_slack_ack_duration_seconds":          "histogram",
		"forcebind_commands_total":                      "counter",
		"forcebind_command_duration_seconds":            "histogram",
		"forcebind_salesforce_requests_total":           "counter",
		"forcebind_salesforce_request_duration_seconds": "histogram",
		"forcebind_token_refreshes_total":               "counter",
		"forcebind_links_ended_total":                   "counter",
		"forcebind_slack_reconnects_total":              "counter",
		"forcebind_slack_connected":                     "gauge",
		"forcebind_slack_num_connections":               "gauge",
		"forcebind_salesforce_api_usage_used":           "gauge",
		"forcebind_salesforce_api_usage_max":            "gauge",
		"forcebind_bindings":                            "gauge",
		"forcebind_build_info":                          "gauge",
	} {
		if !strings.Contains(text, "\n# TYPE "+name+" "+typ+"\n") {
			t.Errorf("no %s family %s", typ, name)
		}
	}
}

// forcebind_bindings is read on every scrape; a failed read keeps the last
// value, and before the first success there is no sample at all.
func TestMetricsBindings(t *testing.T) {
	type answer struct {
		n   int
		err error
	}
	var mu sync.Mutex
	var next answer
	_, scrape := mustMetrics(t, func() (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return next.n, next.err
	})
	broken := errors.New("store not readable")
	steps := []struct {
		answer answer
		want   []string
	}{
		{answer{0, broken}, nil},
		{answer{3, nil}, []string{"forcebind_bindings 3"}},
		{answer{4, nil}, []string{"forcebind_bindings 4"}},
		{answer{0, broken}, []string{"forcebind_bindings 4"}},
		{answer{0, nil}, []string{"forcebind_bindings 0"}},
	}
	for i, s := range steps {
		mu.Lock()
		next = s.answer
		mu.Unlock()
		if diff := cmp.Diff(s.want, series(scrape(), "forcebind_bindings")); diff != "" {
			t.Errorf("scrape %d: mismatch (-want +got):\n%s", i, diff)
		}
	}
}

// A Salesforce client wired to the metrics, against the fake org.
func TestMetricsFromSalesforceClient(t *testing.T) {
	m, scrape := mustMetrics(t, nil)
	srv := sftest.NewServer(sftest.Options{})
	t.Cleanup(srv.Close)
	g, err := srv.Login("jane@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	srv.SetUsage(41, 15000)
	c, err := salesforce.New(salesforce.Config{InstanceURL: srv.URL, Tokens: salesforce.StaticToken(g.AccessToken), Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Search(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	srv.FailNext(sftest.EndpointSObject, http.StatusForbidden, sftest.BodyRequestLimitExceeded)
	if _, err := c.Get(context.Background(), "Account", "0015g00000AcmeAAAR"); !errors.Is(err, salesforce.ErrRateLimited) {
		t.Fatalf("Get = %v, want ErrRateLimited", err)
	}
	text := scrape()
	host := strings.TrimPrefix(srv.URL, "http://")
	want := map[string][]string{
		"forcebind_salesforce_requests_total": {
			`forcebind_salesforce_requests_total{operation="get",outcome="rate_limited"} 1`,
			// Search first reads which fields jane may read of each object,
			// in one batch.
			`forcebind_salesforce_requests_total{operation="object_info",outcome="ok"} 1`,
			`forcebind_salesforce_requests_total{operation="search",outcome="ok"} 1`,
		},
		"forcebind_salesforce_api_usage_used": {`forcebind_salesforce_api_usage_used{instance="` + host + `"} 43`},
		"forcebind_salesforce_api_usage_max":  {`forcebind_salesforce_api_usage_max{instance="` + host + `"} 15000`},
	}
	for name, w := range want {
		if diff := cmp.Diff(w, series(text, name)); diff != "" {
			t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
		}
	}
}
