package main

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/bot"
	"github.com/forcebind/forcebind/salesforce"
)

// metrics is forcebind's Prometheus instrumentation. bot, salesforce and auth
// do not import Prometheus: each declares an Observer, and metrics implements
// all three. Its methods are safe for concurrent use and never block.
//
// Label values are bounded: command names come from the bot's command table
// (or "unknown"), outcomes, event types, operations and flows are fixed
// strings documented on each Observer, and instance hosts are one per
// Salesforce org that has a binding.
type metrics struct {
	reg prometheus.Gatherer

	eventsReceived *prometheus.CounterVec // type
	eventsAcked    *prometheus.CounterVec // result
	ackDuration    prometheus.Histogram
	commands       *prometheus.CounterVec   // command, outcome
	commandTime    *prometheus.HistogramVec // command
	requests       *prometheus.CounterVec   // operation, outcome
	requestTime    *prometheus.HistogramVec // operation, outcome
	refreshes      *prometheus.CounterVec   // outcome
	linksEnded     *prometheus.CounterVec   // flow, outcome
	reconnects     prometheus.Counter
	connected      prometheus.Gauge
	numConnections prometheus.Gauge
	apiUsed        *prometheus.GaugeVec // instance
	apiMax         *prometheus.GaugeVec // instance
}

var (
	_ bot.Observer        = (*metrics)(nil)
	_ salesforce.Observer = (*metrics)(nil)
	_ auth.Observer       = (*metrics)(nil)
)

// registry is what metrics needs of a Prometheus registry: somewhere to
// register, and something to gather from for the handler.
// *prometheus.Registry is one.
type registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// newMetrics registers forcebind's metrics, the Go runtime's and the
// process's with reg, and returns the observers that feed them. bindings
// counts the bindings in the store; it is called on every scrape, from the
// scraping goroutine, and must bound its own time (nil leaves
// forcebind_bindings out). reg must not hold these metrics yet: registering
// twice is a programming error, and panics.
func newMetrics(reg registry, bindings func() (int, error)) *metrics {
	m := &metrics{
		reg: reg,
		eventsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forcebind_slack_events_received_total",
			Help: "Frames read from the Socket Mode connection, by envelope type (events_api, slash_commands, interactive, hello, unknown, malformed, oversized).",
		}, []string{"type"}),
		eventsAcked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forcebind_slack_events_acked_total",
			Help: "Socket Mode envelopes acknowledged, by result (ok, or error when the ack could not be queued in time).",
		}, []string{"result"}),
		ackDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "forcebind_slack_ack_duration_seconds",
			Help: "Time from an envelope's receipt to its ack being queued. Slack retries envelopes not acked within 3 seconds.",
			// Acks normally take well under a millisecond; AckTimeout (2s by
			// default) bounds them.
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forcebind_commands_total",
			Help: "Commands handled, by command and outcome (busy: refused because the workers were full).",
		}, []string{"command", "outcome"}),
		commandTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "forcebind_command_duration_seconds",
			Help: "Time to handle one command, answer sent included. Refused (busy) commands are not in it.",
			// From a help text (milliseconds) to HandlerTimeout (60s by default).
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"command"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forcebind_salesforce_requests_total",
			Help: "HTTP requests to the Salesforce REST API, by operation and outcome.",
		}, []string{"operation", "outcome"}),
		requestTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "forcebind_salesforce_request_duration_seconds",
			Help: "Latency of one HTTP request to the Salesforce REST API, body read included.",
			// Salesforce answers in tens to hundreds of milliseconds; the
			// client's timeout is 30s.
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"operation", "outcome"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forcebind_token_refreshes_total",
			Help: "Salesforce access token refreshes, by outcome (ok, relink, moved, org_not_allowed, restricted, timeout, transient, rejected, client_rejected, error).",
		}, []string{"outcome"}),
		linksEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forcebind_links_ended_total",
			Help: "Binding links that ended, by flow (web, device) and outcome (bound, or why not).",
		}, []string{"flow", "outcome"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forcebind_slack_reconnects_total",
			Help: "Attempts to open the Socket Mode connection again, after a drop or a failed attempt.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "forcebind_slack_connected",
			Help: "1 while the Socket Mode connection is up, else 0.",
		}),
		numConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "forcebind_slack_num_connections",
			Help: "Socket Mode connections Slack counts for the app token, as of the last hello; 0 while disconnected. Above 1, another process shares the events.",
		}),
		apiUsed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "forcebind_salesforce_api_usage_used",
			Help: "API requests the org has used in the last 24 hours, from the last Sforce-Limit-Info header, by instance host.",
		}, []string{"instance"}),
		apiMax: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "forcebind_salesforce_api_usage_max",
			Help: "The org's 24-hour API request limit, from the last Sforce-Limit-Info header, by instance host.",
		}, []string{"instance"}),
	}
	// Series that alerts divide by exist from the start, at zero.
	m.eventsAcked.WithLabelValues("ok")
	m.eventsAcked.WithLabelValues("error")

	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "forcebind_build_info",
		Help:        "Always 1; the version label is forcebind's.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	buildInfo.Set(1)

	reg.MustRegister(
		m.eventsReceived, m.eventsAcked, m.ackDuration, m.commands, m.commandTime,
		m.requests, m.requestTime, m.refreshes, m.linksEnded, m.reconnects,
		m.connected, m.numConnections, m.apiUsed, m.apiMax,
		buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if bindings != nil {
		reg.MustRegister(newBindingsCollector(bindings))
	}
	return m
}

// handler serves the metrics in the Prometheus text format (or OpenMetrics,
// when the scraper asks for it).
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// EventReceived counts one Socket Mode frame by type.
func (m *metrics) EventReceived(typ string) { m.eventsReceived.WithLabelValues(typ).Inc() }

// EventAcked counts one ack and observes its latency.
func (m *metrics) EventAcked(latency time.Duration, ok bool) {
	result := "ok"
	if !ok {
		result = "error"
	}
	m.eventsAcked.WithLabelValues(result).Inc()
	m.ackDuration.Observe(latency.Seconds())
}

// CommandDone counts one command and observes its duration, unless it was
// refused: work that never ran would drag the quantiles down just when the
// bot is loaded.
func (m *metrics) CommandDone(command, outcome string, took time.Duration) {
	m.commands.WithLabelValues(command, outcome).Inc()
	if outcome != "busy" {
		m.commandTime.WithLabelValues(command).Observe(took.Seconds())
	}
}

// Connected marks the Socket Mode connection up.
func (m *metrics) Connected(numConnections int) {
	m.connected.Set(1)
	m.numConnections.Set(float64(numConnections))
}

// Disconnected marks the Socket Mode connection down.
func (m *metrics) Disconnected() {
	m.connected.Set(0)
	m.numConnections.Set(0)
}

// Reconnecting counts one attempt to connect again.
func (m *metrics) Reconnecting() { m.reconnects.Inc() }

// Request counts one Salesforce request and observes its latency.
func (m *metrics) Request(op, outcome string, took time.Duration) {
	m.requests.WithLabelValues(op, outcome).Inc()
	m.requestTime.WithLabelValues(op, outcome).Observe(took.Seconds())
}

// Usage records an org's API usage.
func (m *metrics) Usage(instance string, u salesforce.Usage) {
	m.apiUsed.WithLabelValues(instance).Set(float64(u.Used))
	m.apiMax.WithLabelValues(instance).Set(float64(u.Max))
}

// Refreshed counts one token refresh.
func (m *metrics) Refreshed(outcome string) { m.refreshes.WithLabelValues(outcome).Inc() }

// LinkEnded counts one binding link that ended.
func (m *metrics) LinkEnded(flow auth.Flow, outcome string) {
	m.linksEnded.WithLabelValues(string(flow), outcome).Inc()
}

// bindingsCollector reports forcebind_bindings by calling count on every
// scrape. When count fails it reports the last value it read, and nothing
// before the first success: an error is the store's to log, not a scrape's,
// and a made-up value would be worse than a gap.
type bindingsCollector struct {
	desc  *prometheus.Desc
	count func() (int, error)

	mu   sync.Mutex
	last int
	ok   bool // last holds a value read
}

func newBindingsCollector(count func() (int, error)) *bindingsCollector {
	return &bindingsCollector{
		desc:  prometheus.NewDesc("forcebind_bindings", "Slack users bound to a Salesforce user.", nil, nil),
		count: count,
	}
}

// Describe sends the one metric's description.
func (c *bindingsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect counts the bindings.
func (c *bindingsCollector) Collect(ch chan<- prometheus.Metric) {
	n, err := c.count()
	c.mu.Lock()
	if err == nil {
		c.last, c.ok = n, true
	}
	n, ok := c.last, c.ok
	c.mu.Unlock()
	if ok {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
	}
}
