package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/forcebind/forcebind/bot/slacktest"
	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// The per-event cost benchmark runs two real processes side by side against
// fakes in this one: forcebind itself (`forcebind run`, this test binary,
// see TestMain) and a bare slack-go pong bot, the floor any Socket Mode bot
// pays. Both are measured the same way, from outside: CPU time from
// /proc/PID/stat, allocations from the process's own runtime counters, peak
// RSS from /proc/PID/status. Only ratios between the two mean anything on a
// shared machine.

// costUsers is how many bound people send events.
const costUsers = 50

// pongChild is the childEnv value that makes the test binary a pong bot.
const pongChild = "pong"

// pongMain is a bare slack-go Socket Mode bot: it acks every envelope and
// answers every DM with one chat.postMessage over a pooled HTTP client, and
// nothing else. It serves its runtime's allocation count on the address it
// prints first on stdout, and stops on SIGTERM.
func pongMain() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	go func() { _ = http.Serve(ln, http.HandlerFunc(serveMallocs)) }()

	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	api := slack.New(os.Getenv("SLACK_BOT_TOKEN"),
		slack.OptionAppLevelToken(os.Getenv("SLACK_APP_TOKEN")),
		slack.OptionAPIURL(os.Getenv("SLACK_API_URL")),
		slack.OptionHTTPClient(&http.Client{Transport: t}))
	sm := socketmode.New(api)
	go func() {
		for evt := range sm.Events {
			if evt.Type != socketmode.EventTypeEventsAPI || evt.Request == nil {
				continue
			}
			sm.Ack(*evt.Request)
			ev, ok := evt.Data.(slackevents.EventsAPIEvent)
			if !ok {
				continue
			}
			if m, ok := ev.InnerEvent.Data.(*slackevents.MessageEvent); ok && m.BotID == "" && m.ChannelType == "im" {
				go func() { _, _, _ = api.PostMessageContext(ctx, m.Channel, slack.MsgOptionText("pong", false)) }()
			}
		}
	}()
	if err := sm.RunContext(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveMallocs(w http.ResponseWriter, _ *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "go_memstats_mallocs_total %d\n", ms.Mallocs)
}

// costProc is one measured child process and the fake Slack it talks to.
type costProc struct {
	name  string
	cmd   *exec.Cmd
	done  chan error
	slack *slacktest.Server
	sf    *sftest.Server // nil for the pong bot
	stats string         // URL whose body has a go_memstats_mallocs_total line
	log   *syncBuffer
	users []string
}

// startCostChild starts cmd with env, and waits until it holds a Socket
// Mode connection to s.
func startCostChild(tb testing.TB, name string, cmd *exec.Cmd, s *slacktest.Server, env map[string]string) *costProc {
	tb.Helper()
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &costProc{name: name, cmd: cmd, done: make(chan error, 1), slack: s, log: &syncBuffer{}}
	cmd.Stderr = p.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	if env[childEnv] == pongChild {
		addr, err := lines.ReadString('\n')
		if err != nil {
			_ = cmd.Process.Kill()
			tb.Fatalf("%s printed no stats address: %v\n%s", name, err, p.log.String())
		}
		p.stats = "http://" + strings.TrimSpace(addr) + "/"
	}
	go func() { _, _ = io.Copy(io.Discard, lines) }()
	go func() { p.done <- cmd.Wait() }()
	tb.Cleanup(func() { p.stop(tb) })
	for deadline := time.Now().Add(20 * time.Second); !s.Connected(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not connect to Slack:\n%s", name, p.log.String())
		}
	}
	return p
}

func (p *costProc) stop(tb testing.TB) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		tb.Errorf("%s did not stop within 20s of SIGTERM", p.name)
	}
}

// cpu returns the process's user + system CPU time so far, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 10ms: Linux's
// USER_HZ is 100 on every architecture Go supports).
func (p *costProc) cpu(tb testing.TB) time.Duration {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The command name in parentheses may hold spaces; fields start after it.
	i := strings.LastIndexByte(string(raw), ')')
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		tb.Fatalf("short /proc stat: %q", raw)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("bad /proc stat: %q", raw)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// peakRSS returns the process's VmHWM in bytes.
func (p *costProc) peakRSS(tb testing.TB) int64 {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("bad VmHWM %q", line)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmHWM in /proc status")
	return 0
}

// resetPeakRSS starts a new VmHWM measurement (clear_refs 5, Linux 4.0+).
func (p *costProc) resetPeakRSS(tb testing.TB) {
	tb.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0); err != nil {
		tb.Fatal(err)
	}
}

// mallocs returns the process's go_memstats_mallocs_total.
func (p *costProc) mallocs(tb testing.TB) uint64 {
	tb.Helper()
	resp, err := http.Get(p.stats)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("bad mallocs line %q", sc.Text())
			}
			return uint64(f)
		}
	}
	tb.Fatalf("%s: no go_memstats_mallocs_total at %s", p.name, p.stats)
	return 0
}

// costRound is what one round of events cost a process.
type costRound struct {
	events  int
	wall    time.Duration
	cpu     time.Duration
	mallocs uint64
}

func (r *costRound) add(o costRound) {
	r.events += o.events
	r.wall += o.wall
	r.cpu += o.cpu
	r.mallocs += o.mallocs
}

// round sends n DMs from the process's users, keeping at most inFlight
// unanswered, and waits until every one is answered.
func (p *costProc) round(tb testing.TB, n, inFlight int) costRound {
	tb.Helper()
	base := p.slack.MessageCount()
	cpu0, m0, t0 := p.cpu(tb), p.mallocs(tb), time.Now()
	answered := func() int { return p.slack.MessageCount() - base }
	deadline := time.Now().Add(5 * time.Minute)
	for sent := 0; sent < n; {
		if sent-answered() >= inFlight {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		p.slack.SendDM(p.users[sent%len(p.users)], "search acme")
		sent++
	}
	for answered() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("%s answered %d of %d events:\n%s", p.name, answered(), n, p.log.String())
		}
		time.Sleep(time.Millisecond)
	}
	wall := time.Since(t0)
	return costRound{events: n, wall: wall, cpu: p.cpu(tb) - cpu0, mallocs: p.mallocs(tb) - m0}
}

// startCostDaemon starts `forcebind run` as a child with n people already
// bound to jane's Salesforce user, in a store written through the store's
// own API.
func startCostDaemon(tb testing.TB, n int) *costProc {
	tb.Helper()
	sf := sftest.NewServer(sftest.Options{})
	tb.Cleanup(sf.Close)
	s := slacktest.NewServer(slacktest.Options{})
	tb.Cleanup(s.Close)
	key, err := store.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	ring, err := store.KeyringFromEnv(key)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "fb.db")
	db, err := bolt.Open(path, bolt.Options{Keyring: ring})
	if err != nil {
		tb.Fatal(err)
	}
	users := make([]string, n)
	var jane sftest.User
	for _, u := range sf.Users() {
		if u.Username == "jane@acme.example" {
			jane = u
		}
	}
	for i := range users {
		users[i] = fmt.Sprintf("U%07d", i)
		g, err := sf.Login(jane.Username)
		if err != nil {
			tb.Fatal(err)
		}
		now := time.Now().UTC()
		if err := db.PutBinding(context.Background(), store.Binding{
			TeamID: s.Options().TeamID, UserID: users[i], SalesforceUserID: jane.ID, OrgID: sf.OrgID(),
			Username: jane.Username, LoginURL: sf.URL, InstanceURL: g.InstanceURL,
			AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, IssuedAt: now, LinkedAt: now,
			Scopes: strings.Fields(g.Scope),
		}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	admin := mustFreeAddr(tb)
	env := daemonEnv(tb, s, sf)
	env["FORCEBIND_DB"], env["FORCEBIND_KEY"] = path, key
	env["FORCEBIND_ADMIN_LISTEN"] = admin
	if os.Getenv("FORCEBIND_BENCH_CPUPROFILE") != "" || os.Getenv("FORCEBIND_BENCH_ALLOCPROFILE") != "" {
		env["FORCEBIND_PPROF"] = "true"
	}
	p := startCostChild(tb, "forcebind", exec.Command(mustBuild(tb), "run"), s, env)
	p.stats = "http://" + admin + "/metrics"
	p.users, p.sf = users, sf
	return p
}

// startCostPong starts the pong bot as a child against its own fake Slack.
func startCostPong(tb testing.TB) *costProc {
	tb.Helper()
	s := slacktest.NewServer(slacktest.Options{})
	tb.Cleanup(s.Close)
	p := startCostChild(tb, "pong", exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$"), s, map[string]string{
		childEnv:          pongChild,
		"SLACK_APP_TOKEN": s.AppToken(), "SLACK_BOT_TOKEN": s.BotToken(), "SLACK_API_URL": s.APIURL,
	})
	p.users = make([]string, costUsers)
	for i := range p.users {
		p.users[i] = fmt.Sprintf("U%07d", i)
	}
	return p
}

// mustFreeAddr returns a loopback address nothing listens on at the moment.
func mustFreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// BenchmarkPerEventCost: forcebind's full path per event (ack, dedupe,
// store lookup and decrypt, one Salesforce search, one chat.postMessage)
// against a bare slack-go pong bot's, measured side by side in one run as
// separate processes over real Socket Mode websockets, with 50 people
// sending and at most 100 events unanswered. The rounds alternate between
// the two so that the machine's noise falls on both. Reports events/s, CPU
// ms per 1,000 events and allocations per event for each, the ratios
// forcebind / baseline (targets: cpu ≤ 2.0, rate ≥ 0.5), and forcebind's
// peak RSS during a burst of 100 events held in flight by a slow Salesforce
// (target ≤ 25 MiB). FORCEBIND_BENCH_EVENTS sets the events per round
// (default 2000); FORCEBIND_BENCH_CPUPROFILE=FILE saves 5 s of the daemon's
// CPU profile, taken while the rounds run, to FILE, and
// FORCEBIND_BENCH_ALLOCPROFILE=FILE its allocations since it started.
func BenchmarkPerEventCost(b *testing.B) {
	perRound := 2000
	if v, err := strconv.Atoi(os.Getenv("FORCEBIND_BENCH_EVENTS")); err == nil && v > 0 {
		perRound = v
	}
	const inFlight = 100
	fb, pong := startCostDaemon(b, costUsers), startCostPong(b)
	// Warm both up: connections pooled, caches filled, heaps grown.
	fb.round(b, 2*costUsers, inFlight)
	pong.round(b, 2*costUsers, inFlight)

	if out := os.Getenv("FORCEBIND_BENCH_CPUPROFILE"); out != "" {
		// The daemon's own profile while the rounds below run: what
		// `go tool pprof` should be pointed at before optimising.
		profiled := make(chan struct{})
		defer func() { <-profiled }()
		go func() {
			defer close(profiled)
			if err := saveProfile(strings.TrimSuffix(fb.stats, "/metrics")+"/debug/pprof/profile?seconds=5", out); err != nil {
				b.Errorf("cpu profile: %v", err)
			}
		}()
	}
	var f, g costRound
	for b.Loop() {
		for range 3 {
			g.add(pong.round(b, perRound, inFlight))
			f.add(fb.round(b, perRound, inFlight))
		}
	}
	b.StopTimer()

	report := func(prefix string, r costRound) (rate, cpuPerK float64) {
		rate = float64(r.events) / r.wall.Seconds()
		cpuPerK = r.cpu.Seconds() * 1000 / float64(r.events) * 1000
		b.ReportMetric(rate, prefix+"-events/s")
		b.ReportMetric(cpuPerK, prefix+"-cpu-ms/1000ev")
		b.ReportMetric(float64(r.mallocs)/float64(r.events), prefix+"-allocs/ev")
		return rate, cpuPerK
	}
	fRate, fCPU := report("fb", f)
	gRate, gCPU := report("pong", g)
	if out := os.Getenv("FORCEBIND_BENCH_ALLOCPROFILE"); out != "" {
		if err := saveProfile(strings.TrimSuffix(fb.stats, "/metrics")+"/debug/pprof/allocs", out); err != nil {
			b.Errorf("alloc profile: %v", err)
		}
	}
	b.ReportMetric(fCPU/gCPU, "cpu-ratio")
	b.ReportMetric(fRate/gRate, "rate-ratio")

	// Peak RSS over the rounds, beside the pong bot's: a slack-go process's
	// floor, its code mapped and its heap grown.
	b.ReportMetric(float64(fb.peakRSS(b))/(1<<20), "fb-peak-RSS-MiB")
	b.ReportMetric(float64(pong.peakRSS(b))/(1<<20), "pong-peak-RSS-MiB")

	// A burst of 100 events held in flight by a Salesforce that takes 1s.
	fb.resetPeakRSS(b)
	fb.sf.SetLatency(time.Second)
	fb.round(b, inFlight, inFlight)
	fb.sf.SetLatency(0)
	b.ReportMetric(float64(fb.peakRSS(b))/(1<<20), "fb-burst-peak-RSS-MiB")
}

// BenchmarkSlowSalesforceQueues: while Salesforce takes 3s per call, 100
// requests a second arrive for 10s from 1,000 bound people. Every request
// must get its answer, not "busy": the work waits in memory within the
// bounds the README states. Reports the answers that said busy (want 0),
// the time until the last answer, and the daemon's peak RSS.
func BenchmarkSlowSalesforceQueues(b *testing.B) {
	const people, rate, seconds = 1000, 100, 10
	fb := startCostDaemon(b, people)
	fb.round(b, 50, 50) // warm up
	for b.Loop() {
		base := fb.slack.MessageCount()
		fb.resetPeakRSS(b)
		fb.sf.SetLatency(3 * time.Second)
		start := time.Now()
		tick := time.NewTicker(time.Second / rate)
		for i := range rate * seconds {
			<-tick.C
			fb.slack.SendDM(fb.users[i%people], "search acme")
		}
		tick.Stop()
		n := rate * seconds
		for deadline := time.Now().Add(2 * time.Minute); fb.slack.MessageCount()-base < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d answered", fb.slack.MessageCount()-base, n)
			}
		}
		took := time.Since(start)
		fb.sf.SetLatency(0)
		busy := 0
		for _, m := range fb.slack.Messages()[base:] {
			if strings.Contains(m.Text, "busy") {
				busy++
			}
		}
		b.ReportMetric(float64(busy), "busy-answers")
		b.ReportMetric(took.Seconds(), "s-to-last-answer")
		b.ReportMetric(float64(fb.peakRSS(b))/(1<<20), "peak-RSS-MiB")
	}
}

// saveProfile writes what the pprof URL u answers to the file out.
func saveProfile(u, out string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mustBuild builds forcebind as `make build` does and returns the binary's
// path: the daemon measured is the one people run, not this test binary
// with its fakes and tests linked in (which maps twice the code).
func mustBuild(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "forcebind")
	if out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", path, ".").CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return path
}
