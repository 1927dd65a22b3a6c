package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/bot"
	"github.com/forcebind/forcebind/bot/slacktest"
	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// mustBindUsers connects n Slack users (U0000000…) to jane's Salesforce user
// through the real flow, 8 at a time.
func mustBindUsers(tb testing.TB, h *harness, n int) []string {
	tb.Helper()
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("U%07d", i)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, u := range users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			dm := h.slack.DMChannel(u)
			h.slack.SendDM(u, "connect")
			m, err := h.slack.WaitMessage(tb.Context(), func(m slacktest.Message) bool { return m.Channel == dm })
			if err != nil {
				tb.Errorf("%s got no link: %v", u, err)
				return
			}
			link := authorizeLink.FindString(m.Text)
			if _, err := h.browse(tb.Context(), link, "approve", "jane@acme.example"); err != nil {
				tb.Errorf("bind %s: %v", u, err)
			}
		})
	}
	wg.Wait()
	return users
}

// answered waits until n answers containing "result" exist.
func answered(tb testing.TB, h *harness, n int) {
	tb.Helper()
	// Polled slowly: each look copies every message the fake has recorded,
	// which would otherwise take CPU from the daemon being measured.
	deadline := time.Now().Add(5 * time.Minute)
	for countResults(h) < n {
		if time.Now().After(deadline) {
			tb.Fatalf("fewer than %d answers", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// BenchmarkEventsHandled: DMs "search acme" from 32 bound users through the
// fake Slack, the daemon and the fake org, all in this process.
func BenchmarkEventsHandled(b *testing.B) {
	h, _ := mustHarness(b, func(c *bot.Config) { c.QueuePerUser, c.MaxQueued = 1<<20, 1<<20 })
	users := mustBindUsers(b, h, 32)
	base := 0
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		h.slack.SendDM(users[i%len(users)], "search acme")
		base++
	}
	answered(b, h, base)
	b.ReportMetric(float64(base)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkAckLatencySlowSalesforce: while every Salesforce call takes 2s,
// envelopes are still acked at once. Reports p50 and p99 of the time from the
// envelope's write to its ack, as the fake Slack measures it.
func BenchmarkAckLatencySlowSalesforce(b *testing.B) {
	h, _ := mustHarness(b, func(c *bot.Config) { c.QueuePerUser, c.MaxQueued = 1<<20, 1<<20 })
	users := mustBindUsers(b, h, 32)
	h.sf.SetLatency(2 * time.Second)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		d := h.slack.SendDM(users[i%len(users)], "search acme")
		a, err := h.slack.WaitAck(b.Context(), d.EnvelopeID)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, a.Latency)
	}
	b.StopTimer()
	h.sf.SetLatency(0) // let the queued work finish before the harness closes
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkHandlersInFlight: 1,000 users' searches held in flight by a slow
// Salesforce. Reports the heap and goroutines per handler in flight, and what
// the second of two identical rounds left behind beyond the first (want ~0:
// the first round fills the connection pools, which stay).
func BenchmarkHandlersInFlight(b *testing.B) {
	const n = 1000
	h, _ := mustHarness(b, func(c *bot.Config) { c.Workers = n })
	users := mustBindUsers(b, h, n)
	round := func() (inG int, inHeap int64, afterG int, afterHeap int64) {
		done := countResults(h)
		h.sf.SetLatency(3 * time.Second)
		for _, u := range users {
			h.slack.SendDM(u, "search acme")
		}
		time.Sleep(1500 * time.Millisecond) // all handlers now wait on Salesforce
		inG, inHeap = settle()
		h.sf.SetLatency(0)
		answered(b, h, done+n)
		time.Sleep(200 * time.Millisecond)
		afterG, afterHeap = settle()
		return
	}
	for b.Loop() {
		baseG, baseHeap := settle()
		inG, inHeap, after1G, after1Heap := round()
		_, _, after2G, after2Heap := round()
		b.ReportMetric(float64(inHeap-baseHeap)/n, "heap-B/handler")
		b.ReportMetric(float64(inG-baseG)/n, "goroutines/handler")
		b.ReportMetric(float64(after2G-after1G), "goroutines-grown")
		// slacktest keeps every message it receives: about n of them a round.
		b.ReportMetric(float64(after2Heap-after1Heap)/1024, "heap-KiB-grown")
	}
}

// countResults counts the search answers sent so far.
func countResults(h *harness) int {
	c := 0
	for _, m := range h.slack.Messages() {
		if m.Method == "chat.postMessage" && len(m.Text) > 0 && m.Text[0] >= '0' && m.Text[0] <= '9' {
			c++
		}
	}
	return c
}

// settle runs the GC and returns the goroutine count and live heap.
func settle() (goroutines int, heap int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), int64(ms.HeapAlloc)
}

// BenchmarkBackupControlSocket: a hot backup of a store of 2,000 bindings,
// through the control socket as `forcebind backup` takes it while the
// daemon runs. Reports MB/s of store copied.
func BenchmarkBackupControlSocket(b *testing.B) {
	dir := b.TempDir()
	key, err := store.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	ring, err := store.KeyringFromEnv(key)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "fb.db")
	mustStoreWith(b, path, ring, 2000)
	db, err := bolt.Open(path, bolt.Options{Keyring: ring})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctl, h, err := listenControl(controlSocketPath(path), controlConfig{db: db, log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	srvs := newServers(zerolog.Nop())
	srvs.serve(ctl, h, nil)
	defer srvs.shutdown(5 * time.Second)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	b.ResetTimer()
	for b.Loop() {
		if _, err := backupFromDaemon(context.Background(), controlSocketPath(path), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMetricsScrape: one GET /metrics with every series present (32
// commands × outcomes, Salesforce operations, the Go and process
// collectors), as Prometheus scrapes it.
func BenchmarkMetricsScrape(b *testing.B) {
	m := newMetrics(prometheus.NewRegistry(), func() (int, error) { return 100000, nil })
	for i := range 32 {
		m.EventReceived("events_api")
		m.EventAcked(time.Duration(i)*time.Microsecond, true)
		m.CommandDone([]string{"search", "account", "contact", "help"}[i%4], []string{"ok", "link_sent"}[i%2], time.Millisecond)
		m.Request([]string{"search", "find", "query"}[i%3], "ok", 100*time.Millisecond)
	}
	m.Usage("acme.my.salesforce.com", salesforce.Usage{Used: 42, Max: 15000})
	srv := httptest.NewServer(m.handler())
	defer srv.Close()
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		b.SetBytes(n)
	}
}
