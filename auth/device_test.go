package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

const samSF = "sam@acme.example"

var sam = Requester{TeamID: "T0001", TeamName: "Acme", UserID: "U0SAM", ChannelID: "D0SAM", DisplayName: "sam"}

func TestDeviceFlow(t *testing.T) {
	e := mustEnv(t, envOptions{flow: FlowDevice, sfSecret: secret, svcSecret: secret})
	link := e.mustStartDevice(t, jane)
	want := Link{URL: e.sf.URL + "/setup/connect", UserCode: link.UserCode, Expires: e.clock().Add(10 * time.Minute)}
	if diff := cmp.Diff(want, link); diff != "" {
		t.Errorf("link mismatch (-want +got):\n%s", diff)
	}

	e.waits.next(t).release() // Salesforce answers authorization_pending
	w := e.waits.next(t)
	if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bound while pending: %v", err)
	}
	if err := e.sf.ApproveDevice(link.UserCode, janeSF); err != nil {
		t.Fatal(err)
	}
	w.release()
	if how := e.notes.mustEnd(t); how != "linked" {
		t.Fatalf("link ended %q, want linked; logs:\n%s", how, e.logs)
	}

	b, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if b.Username != janeSF || b.OrgID != e.sf.OrgID() || b.InstanceURL != e.sf.URL || b.RefreshToken == "" || b.LinkedAt.IsZero() {
		t.Errorf("stored binding incomplete: %+v", b.Username)
	}
	if diff := cmp.Diff([]time.Duration{5 * time.Second, 5 * time.Second}, e.waits.durations()); diff != "" {
		t.Errorf("waits mismatch (-want +got):\n%s", diff)
	}
	if n := e.sf.Calls(sftest.EndpointToken); n != 3 {
		t.Errorf("%d token calls; want the device code request and two polls", n)
	}
	if _, links := e.obs.got(); !cmp.Equal(links, []string{"device bound"}) {
		t.Errorf("observed links %v, want [device bound]", links)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"audit":"binding created"`) {
		t.Errorf("no audit line; logs:\n%s", logs)
	}
	e.assertNoTokens(t, "logs", logs)
	// The binding works.
	if _, err := e.search(t, b); err != nil {
		t.Errorf("search with the device binding: %v", err)
	}
	// The device flow left no web link in the store.
	e.advance(time.Hour)
	if n, err := e.svc.Sweep(t.Context()); n != 0 || err != nil {
		t.Errorf("Sweep removed %d links (%v); the device flow should have stored none", n, err)
	}
}

// The poller waits the interval Salesforce sends (5s when it sends none)
// and 5s more after each slow_down.
func TestDevicePollIntervals(t *testing.T) {
	s := time.Second
	tests := []struct {
		name  string
		setup func(*sftest.Server)
		want  []time.Duration
	}{
		{"interval sent", func(sf *sftest.Server) { sf.SetDeviceInterval(2) }, []time.Duration{2 * s, 2 * s}},
		{"no interval sent", func(sf *sftest.Server) { sf.SetDeviceInterval(0) }, []time.Duration{5 * s, 5 * s}},
		{"slow_down", func(sf *sftest.Server) { sf.SlowDownNext(1) }, []time.Duration{5 * s, 10 * s, 10 * s}},
		{"two slow_downs", func(sf *sftest.Server) { sf.SlowDownNext(2) }, []time.Duration{5 * s, 10 * s, 15 * s, 15 * s}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{flow: FlowDevice})
			tt.setup(e.sf)
			link := e.mustStartDevice(t, jane)
			for range len(tt.want) - 1 {
				e.waits.next(t).release()
			}
			last := e.waits.next(t)
			if err := e.sf.ApproveDevice(link.UserCode, janeSF); err != nil {
				t.Fatal(err)
			}
			last.release()
			if how := e.notes.mustEnd(t); how != "linked" {
				t.Fatalf("link ended %q, want linked", how)
			}
			if diff := cmp.Diff(tt.want, e.waits.durations()); diff != "" {
				t.Errorf("waits mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// A device link that ends without a binding tells the person why, binds
// nothing and leaves no grant.
func TestDeviceLinkFails(t *testing.T) {
	tests := []struct {
		name    string
		linkTTL time.Duration
		// act runs while the poller waits before its second poll.
		act     func(e *env, userCode string) error
		want    Failure
		wantLog string
	}{
		{name: "denied", act: func(e *env, c string) error { return e.sf.DenyDevice(c) }, want: FailureDenied},
		{name: "expired at Salesforce", act: func(e *env, c string) error { return e.sf.ExpireDevice(c) }, want: FailureExpired},
		{name: "link expired", act: func(e *env, _ string) error { e.advance(10*time.Minute + time.Second); return nil }, want: FailureExpired},
		{name: "short link expired", linkTTL: 3 * time.Minute, act: func(e *env, _ string) error { e.advance(3 * time.Minute); return nil }, want: FailureExpired},
		{name: "code no longer good", act: func(e *env, _ string) error {
			e.sf.FailNext(sftest.EndpointToken, 400, `{"error":"invalid_grant","error_description":"invalid device code"}`)
			return nil
		}, want: FailureExpired},
		{name: "client rejected", act: func(e *env, _ string) error {
			e.sf.FailNext(sftest.EndpointToken, 400, `{"error":"invalid_client","error_description":"invalid client credentials"}`)
			return nil
		}, want: FailureError, wantLog: `"level":"error"`},
		{name: "forged grant", act: func(e *env, c string) error {
			e.sf.RewriteGrants(func(grantType string, g *sftest.Grant) {
				if grantType == "device" {
					g.InstanceURL = "https://salesforce.com.evil.example"
				}
			})
			return e.sf.ApproveDevice(c, janeSF)
		}, want: FailureError, wantLog: "device grant rejected"},
		{name: "device flow turned off", act: func(e *env, _ string) error { e.sf.SetDeviceFlow(false); return nil },
			want: FailureError, wantLog: "device flow setting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{flow: FlowDevice, linkTTL: tt.linkTTL})
			link := e.mustStartDevice(t, jane)
			e.waits.next(t).release()
			w := e.waits.next(t)
			if err := tt.act(e, link.UserCode); err != nil {
				t.Fatal(err)
			}
			w.release()
			if how := e.notes.mustEnd(t); how != tt.want.String() {
				t.Fatalf("link ended %q, want %q; logs:\n%s", how, tt.want, e.logs)
			}
			if diff := cmp.Diff([]Failure{tt.want}, e.notes.failed()); diff != "" {
				t.Errorf("LinkFailed mismatch (-want +got):\n%s", diff)
			}
			if n, _ := e.db.CountBindings(t.Context()); n != 0 {
				t.Errorf("%d bindings after a failed link", n)
			}
			if n := e.sf.LiveRefreshTokens(); n != 0 {
				t.Errorf("%d grants left live at Salesforce", n)
			}
			if linked, _ := e.notes.counts(); linked != 0 {
				t.Error("Linked called for a failed link")
			}
			if _, links := e.obs.got(); !cmp.Equal(links, []string{"device " + tt.want.String()}) {
				t.Errorf("observed links %v, want [device %s]", links, tt.want)
			}
			if !strings.Contains(e.logs.String(), tt.wantLog) {
				t.Errorf("logs lack %q:\n%s", tt.wantLog, e.logs)
			}
		})
	}
}

// A 5xx, an HTML page or a timeout at the token endpoint is retried at the
// interval; the link still binds.
func TestDevicePollRetriesTransient(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*sftest.Server)
	}{
		{"503 HTML", func(sf *sftest.Server) { sf.FailNext(sftest.EndpointToken, 503, sftest.BodyBadGatewayHTML) }},
		{"500 JSON", func(sf *sftest.Server) {
			sf.FailNext(sftest.EndpointToken, 500, `{"error":"server_error","error_description":"try later"}`)
		}},
		{"timeout", func(sf *sftest.Server) { sf.SetLatency(1500 * time.Millisecond) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{flow: FlowDevice, timeout: 500 * time.Millisecond})
			link := e.mustStartDevice(t, jane)
			if err := e.sf.ApproveDevice(link.UserCode, janeSF); err != nil {
				t.Fatal(err)
			}
			tt.setup(e.sf)
			e.waits.next(t).release() // this poll fails
			w := e.waits.next(t)
			e.sf.SetLatency(0)
			w.release()
			if how := e.notes.mustEnd(t); how != "linked" {
				t.Fatalf("link ended %q, want linked; logs:\n%s", how, e.logs)
			}
			if diff := cmp.Diff([]time.Duration{5 * time.Second, 5 * time.Second}, e.waits.durations()); diff != "" {
				t.Errorf("waits mismatch (-want +got):\n%s", diff)
			}
			if !strings.Contains(e.logs.String(), "device poll failed; trying again") {
				t.Errorf("the failed poll was not logged:\n%s", e.logs)
			}
		})
	}
}

// A second Start for the same person while the first code has at least a
// minute left hands out that code again and asks Salesforce for nothing:
// the person may be typing it. One poller binds it.
func TestDeviceStartReusesLiveCode(t *testing.T) {
	tests := []struct {
		name    string
		advance time.Duration // between the two Starts
	}{
		{"at once", 0},
		{"a minute left", 9 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{flow: FlowDevice})
			first := e.mustStartDevice(t, jane)
			w := e.waits.next(t)
			e.advance(tt.advance)
			second := e.mustStartDevice(t, Requester{TeamID: jane.TeamID, UserID: jane.UserID, ChannelID: "C0GENERAL"})
			if diff := cmp.Diff(first, second); diff != "" {
				t.Errorf("second link mismatch (-want +got):\n%s", diff)
			}
			got := map[string]any{"token calls": e.sf.Calls(sftest.EndpointToken), "pending codes": e.sf.PendingUserCodes()}
			want := map[string]any{"token calls": 1, "pending codes": []string{first.UserCode}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("at Salesforce mismatch (-want +got):\n%s", diff)
			}
			if err := e.sf.ApproveDevice(first.UserCode, janeSF); err != nil {
				t.Fatal(err)
			}
			w.release()
			if how := e.notes.mustEnd(t); how != "linked" {
				t.Fatalf("link ended %q, want linked; logs:\n%s", how, e.logs)
			}
			if err := e.svc.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			if linked, _ := e.notes.counts(); linked != 1 || len(e.notes.failed()) != 0 {
				t.Errorf("Linked %d times, LinkFailed %v; want once and never", linked, e.notes.failed())
			}
			if n := len(e.waits.durations()); n != 1 {
				t.Errorf("%d waits; want the one poller's one", n)
			}
		})
	}
}

// Starts of one person at the same time share one code.
func TestDeviceConcurrentStartsShareCode(t *testing.T) {
	e := mustEnv(t, envOptions{flow: FlowDevice})
	// Slow answers keep the first request in flight while the others come.
	e.sf.SetLatency(100 * time.Millisecond)
	const n = 4
	type started struct {
		link Link
		err  error
	}
	ctx := t.Context()
	results := make(chan started, n)
	for range n {
		go func() {
			l, err := e.svc.Start(ctx, jane)
			results <- started{l, err}
		}()
	}
	var got []Link
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatalf("Start: %v", r.err)
		}
		got = append(got, r.link)
	}
	e.sf.SetLatency(0)
	for _, l := range got[1:] {
		if diff := cmp.Diff(got[0], l); diff != "" {
			t.Errorf("links differ (-first +other):\n%s", diff)
		}
	}
	if n := e.sf.Calls(sftest.EndpointToken); n != 1 {
		t.Errorf("%d device code requests, want 1", n)
	}
}

// A second Start when the first code has less than a minute left makes a
// new code and stops the first link's poller without a word: only the
// newer code binds.
func TestDeviceStartReplacesDyingCode(t *testing.T) {
	e := mustEnv(t, envOptions{flow: FlowDevice})
	first := e.mustStartDevice(t, jane)
	e.waits.next(t) // the first poller waits; it is never released
	e.advance(9*time.Minute + time.Second)
	second := e.mustStartDevice(t, jane)
	if first.UserCode == second.UserCode || !second.Expires.After(first.Expires) {
		t.Fatalf("second link %+v is not a new one (first %+v)", second, first)
	}
	e.mustLog(t, "device link stopped: replaced") // the first poller, before anything else could stop it
	w := e.waits.next(t)
	for _, approve := range []struct{ code, user string }{{first.UserCode, janeSF}, {second.UserCode, samSF}} {
		if err := e.sf.ApproveDevice(approve.code, approve.user); err != nil {
			t.Fatal(err)
		}
	}
	w.release()
	if how := e.notes.mustEnd(t); how != "linked" {
		t.Fatalf("link ended %q, want linked", how)
	}
	if err := e.svc.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil || b.Username != samSF {
		t.Errorf("binding = %s, %v; want the second code's user %s", b.Username, err, samSF)
	}
	if linked, _ := e.notes.counts(); linked != 1 || len(e.notes.failed()) != 0 {
		t.Errorf("Linked %d times, LinkFailed %v; want once and never", linked, e.notes.failed())
	}
	if n := e.sf.Calls(sftest.EndpointToken); n != 3 {
		t.Errorf("%d token calls; want two device code requests and the second link's one poll", n)
	}
}

// Close stops every poller and leaves no goroutine behind; each person
// whose code was waiting is told it no longer works, on a live context
// bounded to 5s, except for a code a newer one had replaced. Start then
// refuses.
func TestCloseStopsPollers(t *testing.T) {
	e := mustEnv(t, envOptions{flow: FlowDevice})
	ignore := goleak.IgnoreCurrent()
	e.mustStartDevice(t, jane)
	e.waits.next(t)
	e.advance(9*time.Minute + 30*time.Second)
	e.mustStartDevice(t, jane) // replaces the first
	e.mustLog(t, "device link stopped: replaced")
	e.mustStartDevice(t, sam)
	e.waits.next(t)
	e.waits.next(t)
	if err := e.svc.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := e.svc.Start(t.Context(), jane); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	if diff := cmp.Diff([]Failure{FailureInterrupted, FailureInterrupted}, e.notes.failed()); diff != "" {
		t.Errorf("LinkFailed on shutdown mismatch (-want +got):\n%s", diff)
	}
	for _, c := range e.notes.failedCtxs() {
		if !c.live || !c.deadline || c.left > 5*time.Second {
			t.Errorf("LinkFailed got a context %+v; want a live one with at most 5s left", c)
		}
	}
	if _, links := e.obs.got(); !cmp.Equal(links, []string{"device interrupted", "device interrupted"}) {
		t.Errorf("observed links %v, want two device interrupted", links)
	}
	if n := e.sf.Calls(sftest.EndpointToken); n != 3 {
		t.Errorf("%d token calls; want the three device code requests only", n)
	}
	e.hc.CloseIdleConnections()
	goleak.VerifyNone(t, ignore)
}

func TestDeviceStartErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*sftest.Server)
		want  error
	}{
		{"device flow off", func(sf *sftest.Server) { sf.SetDeviceFlow(false) }, ErrClientRejected},
		{"unknown client", func(sf *sftest.Server) {
			sf.FailNext(sftest.EndpointToken, 400, `{"error":"invalid_client_id","error_description":"client identifier invalid"}`)
		}, ErrClientRejected},
		{"503", func(sf *sftest.Server) { sf.FailNext(sftest.EndpointToken, 503, sftest.BodyBadGatewayHTML) }, salesforce.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{flow: FlowDevice})
			tt.setup(e.sf)
			if _, err := e.svc.Start(t.Context(), jane); !errors.Is(err, tt.want) {
				t.Errorf("Start = %v, want %v", err, tt.want)
			}
			if err := e.svc.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := e.waits.durations(); len(got) != 0 {
				t.Errorf("a poller ran after a failed Start: waits %v", got)
			}
		})
	}
}

// A device code answer that would send the person elsewhere, or that lacks
// a code, is refused.
func TestDeviceCodeAnswerChecked(t *testing.T) {
	tests := []struct {
		name, body string
	}{
		{"foreign verification page", `{"device_code":"d","user_code":"ABCD1234","verification_uri":"https://evil.example/setup/connect","interval":5}`},
		{"look-alike host", `{"device_code":"d","user_code":"ABCD1234","verification_uri":"https://login.salesforce.com.evil.example/setup/connect"}`},
		{"no device code", `{"user_code":"ABCD1234","verification_uri":"https://login.salesforce.com/setup/connect"}`},
		{"user code with markup", `{"device_code":"d","user_code":"<b>x</b>","verification_uri":"https://login.salesforce.com/setup/connect"}`},
		{"not JSON", `<html>ok</html>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(tt.body))
			}))
			defer ts.Close()
			svc, err := New(Config{ClientID: "c", LoginURL: ts.URL, Flow: FlowDevice, Store: (*bolt.DB)(nil), Notifier: newNotes(),
				After: newWaits().After})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				// t.Context is done by now: Cleanup runs after it is cancelled.
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				defer cancel()
				if err := svc.Close(ctx); err != nil {
					t.Error(err)
				}
			})
			if link, err := svc.Start(t.Context(), jane); err == nil {
				t.Errorf("Start = %+v, want an error", link)
			}
		})
	}
}

func TestNewFlowConfig(t *testing.T) {
	tests := []struct {
		flow     Flow
		callback string
		ok       bool
	}{
		{"", "http://localhost:8787/oauth/callback", true},
		{FlowWeb, "http://localhost:8787/oauth/callback", true},
		{FlowWeb, "", false},
		{FlowDevice, "", true}, // no callback needed
		{FlowDevice, "http://localhost:8787/oauth/callback", true},
		{FlowDevice, "not a url", false},
		{"implicit", "http://localhost:8787/oauth/callback", false},
	}
	for _, tt := range tests {
		_, err := New(Config{ClientID: "c", LoginURL: "https://login.salesforce.com", CallbackURL: tt.callback, Flow: tt.flow,
			Store: (*bolt.DB)(nil), Notifier: newNotes()})
		if (err == nil) != tt.ok {
			t.Errorf("New(flow %q, callback %q) = %v, want ok %v", tt.flow, tt.callback, err, tt.ok)
		}
	}
}

// RequireEmailMatch, in both flows: a sign-in whose Salesforce email is not
// the Slack profile's, or is unverified, or that has no Slack email to
// compare with, binds nothing, is revoked at Salesforce, and the person is
// told why (on the callback page too in the web flow).
func TestRequireEmailMatch(t *testing.T) {
	tests := []struct {
		name         string
		requireEmail bool
		slackEmail   string
		slackErr     error
		sfEmail      string // "" keeps the fixture's, jane@acme.example
		sfUnverified bool
		want         string // "linked" or a Failure's String
		wantPage     string // on the web flow's refusal page
		wantLogs     []string
		wantLookups  int
	}{
		{name: "same email, other case and spaces", requireEmail: true, slackEmail: " JANE@Acme.example ", want: "linked", wantLookups: 1},
		{name: "other email", requireEmail: true, slackEmail: "jane@other.example", want: "email_mismatch",
			wantPage: "do not match", wantLogs: []string{`"level":"warn"`, "emails differ"}, wantLookups: 1},
		{name: "no Slack email", requireEmail: true, slackEmail: "", want: "no_slack_email",
			wantPage: "could not read the email address on your Slack profile", wantLogs: []string{`"level":"error"`, "users:read.email"}, wantLookups: 1},
		{name: "blank Slack email", requireEmail: true, slackEmail: " \t", want: "no_slack_email",
			wantPage: "Tell whoever runs forcebind", wantLogs: []string{"users:read.email"}, wantLookups: 1},
		{name: "no Salesforce email", requireEmail: true, slackEmail: "jane@acme.example", sfEmail: " ", want: "email_mismatch",
			wantPage: "do not match", wantLookups: 1},
		{name: "neither has an email", requireEmail: true, slackEmail: "", sfEmail: " ", want: "no_slack_email",
			wantPage: "Tell whoever runs forcebind", wantLookups: 1},
		{name: "Salesforce email changed", requireEmail: true, slackEmail: "jane@acme.example", sfEmail: "jane@personal.example", want: "email_mismatch",
			wantPage: "do not match", wantLookups: 1},
		{name: "Kelvin sign", requireEmail: true, slackEmail: "\u212Aim@acme.example", sfEmail: "kim@acme.example", want: "email_mismatch",
			wantPage: "do not match", wantLookups: 1},
		{name: "Salesforce email unverified", requireEmail: true, slackEmail: "jane@acme.example", sfUnverified: true, want: "email_mismatch",
			wantPage: "not verified", wantLogs: []string{`"level":"warn"`, "not verified"}, wantLookups: 1},
		{name: "Slack not reachable", requireEmail: true, slackErr: errors.New("slack: ratelimited"), want: "error",
			wantPage: "could not read the email address", wantLookups: 1},
		{name: "check off", requireEmail: false, slackEmail: "someone@else.example", want: "linked", wantLookups: 0},
		{name: "check off, unverified", requireEmail: false, slackEmail: "", sfUnverified: true, want: "linked", wantLookups: 0},
	}
	pageStatus := map[string]int{"email_mismatch": http.StatusForbidden, "no_slack_email": http.StatusForbidden, "error": http.StatusBadGateway}
	failures := map[string]Failure{"email_mismatch": FailureEmailMismatch, "error": FailureError, "no_slack_email": FailureNoSlackEmail}
	for _, flow := range []Flow{FlowWeb, FlowDevice} {
		for _, tt := range tests {
			t.Run(string(flow)+"/"+tt.name, func(t *testing.T) {
				e := mustEnv(t, envOptions{flow: flow, requireEmail: tt.requireEmail})
				e.notes.setEmail(tt.slackEmail, tt.slackErr)
				if tt.sfEmail != "" {
					if err := e.sf.SetEmail(janeSF, tt.sfEmail); err != nil {
						t.Fatal(err)
					}
				}
				if err := e.sf.SetEmailVerified(janeSF, !tt.sfUnverified); err != nil {
					t.Fatal(err)
				}
				var how string
				if flow == FlowDevice {
					how = e.mustDeviceLink(t, janeSF)
				} else {
					how = e.webLink(t, pageStatus[tt.want], tt.wantPage)
				}
				if how != tt.want {
					t.Fatalf("link ended %q, want %q; logs:\n%s", how, tt.want, e.logs)
				}
				_, bindErr := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
				wantLive, wantFailures := 1, []Failure(nil)
				if tt.want != "linked" {
					wantLive = 0
					wantFailures = []Failure{failures[tt.want]}
					if !errors.Is(bindErr, store.ErrNotFound) {
						t.Errorf("binding after a refused sign-in: %v", bindErr)
					}
				} else if bindErr != nil {
					t.Errorf("no binding: %v", bindErr)
				}
				got := map[string]any{"live grants": e.sf.LiveRefreshTokens(), "failures": e.notes.failed(), "email lookups": e.notes.lookups()}
				want := map[string]any{"live grants": wantLive, "failures": wantFailures, "email lookups": tt.wantLookups}
				if tt.want == "linked" {
					want["observed"] = []string{string(flow) + " bound"}
				} else {
					want["observed"] = []string{string(flow) + " " + tt.want}
				}
				_, got["observed"] = e.obs.got()
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("mismatch (-want +got):\n%s", diff)
				}
				logs := e.logs.String()
				for _, w := range tt.wantLogs {
					if !strings.Contains(logs, w) {
						t.Errorf("logs lack %q:\n%s", w, logs)
					}
				}
				assertEmailsOnlyInDebug(t, logs)
				e.assertNoTokens(t, "logs", logs)
			})
		}
	}
}

// assertEmailsOnlyInDebug fails if a log line above debug level holds an
// email field: people's addresses stay out of the usual log.
func assertEmailsOnlyInDebug(tb testing.TB, logs string) {
	tb.Helper()
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			tb.Fatalf("log line %q: %v", line, err)
		}
		_, slack := l["slack_email"]
		_, sf := l["sf_email"]
		if (slack || sf) && l["level"] != "debug" {
			tb.Errorf("an email is logged at %v: %s", l["level"], line)
		}
	}
}

// webLink runs the web flow for jane as jane@acme.example: the callback,
// then Confirm if the page offers it. It returns how the link ended, after
// checking that a refused sign-in's page answers wantStatus, says wantPage
// and that nothing was linked, and offers no Confirm.
func (e *env) webLink(tb testing.TB, wantStatus int, wantPage string) string {
	tb.Helper()
	redirect := e.mustRedirect(tb)
	p := browser(tb, http.MethodGet, redirect, nil, nil)
	m := confirmToken.FindStringSubmatch(p.body)
	if m == nil {
		if p.status != wantStatus || wantPage == "" || !strings.Contains(p.body, wantPage) || !strings.Contains(p.body, "nothing was linked") {
			tb.Errorf("refusal page answered %d, want %d saying %q and that nothing was linked:\n%s", p.status, wantStatus, wantPage, p.body)
		}
		e.assertNoTokens(tb, "page", p.body)
		return e.notes.mustEnd(tb)
	}
	if p := e.confirm(tb, m[1], "confirm"); p.status != http.StatusOK {
		tb.Fatalf("confirm answered %d:\n%s", p.status, p.body)
	}
	return e.notes.mustEnd(tb)
}

// The Observer hears every refresh's outcome and every link's end.
func TestObserverRefreshOutcomes(t *testing.T) {
	e := mustEnv(t, envOptions{})
	e.mustBind(t, jane, janeSF)
	reload := func() store.Binding {
		b, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	steps := []struct {
		setup   func()
		wantErr error
	}{
		{func() { e.sf.ExpireAccessTokens() }, nil},
		{func() {
			e.sf.ExpireAccessTokens()
			e.sf.FailNext(sftest.EndpointToken, 503, sftest.BodyBadGatewayHTML)
		}, ErrTransient},
		{func() {
			e.sf.FailNext(sftest.EndpointToken, 400, `{"error":"invalid_client","error_description":"invalid client credentials"}`)
		}, ErrClientRejected},
		{func() {}, nil},
		{func() { e.sf.RevokeAll() }, ErrRelinkRequired},
	}
	for i, st := range steps {
		st.setup()
		if _, err := e.search(t, reload()); !errors.Is(err, st.wantErr) {
			t.Fatalf("step %d: search = %v, want %v", i, err, st.wantErr)
		}
	}
	refreshes, links := e.obs.got()
	if diff := cmp.Diff([]string{"ok", "transient", "client_rejected", "ok", "relink"}, refreshes); diff != "" {
		t.Errorf("refreshes mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"web bound"}, links); diff != "" {
		t.Errorf("links mismatch (-want +got):\n%s", diff)
	}
}

// In the device flow a grant that ended is answered with a fresh device
// link, whose poller binds again.
func TestDeviceRelink(t *testing.T) {
	e := mustEnv(t, envOptions{flow: FlowDevice})
	if how := e.mustDeviceLink(t, janeSF); how != "linked" {
		t.Fatalf("link ended %q", how)
	}
	b, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil {
		t.Fatal(err)
	}
	e.sf.RevokeAll()
	if _, err := e.search(t, b); !errors.Is(err, ErrRelinkRequired) {
		t.Fatalf("search with an ended grant = %v, want ErrRelinkRequired", err)
	}
	link, ok := e.notes.lastRelink()
	if !ok || link.UserCode == "" || link.URL != e.sf.URL+"/setup/connect" {
		t.Fatalf("fresh link %+v is not a device link", link)
	}
	w := e.waits.next(t)
	if err := e.sf.ApproveDevice(link.UserCode, janeSF); err != nil {
		t.Fatal(err)
	}
	w.release()
	if how := e.notes.mustEnd(t); how != "linked" {
		t.Fatalf("relink ended %q, want linked", how)
	}
	nb, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil || nb.RefreshToken == b.RefreshToken {
		t.Errorf("no fresh binding after the relink: %v", err)
	}
}

// The device flow, logged at the most verbose level, leaves no token and
// no device code in the log, whatever happens.
func TestDeviceNoTokenInLogs(t *testing.T) {
	e := mustEnv(t, envOptions{flow: FlowDevice, requireEmail: true, sfSecret: secret, svcSecret: secret})
	e.sf.SetRotation(true)
	e.notes.setEmail("jane@acme.example", nil)
	if how := e.mustDeviceLink(t, janeSF); how != "linked" {
		t.Fatalf("link ended %q", how)
	}
	b, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID)
	if err != nil {
		t.Fatal(err)
	}
	e.sf.ExpireAccessTokens()
	if _, err := e.search(t, b); err != nil {
		t.Fatal(err)
	}
	if how := e.mustDeviceLink(t, samSF); how != "email_mismatch" {
		t.Fatalf("link as another user ended %q", how)
	}
	link := e.mustStartDevice(t, jane)
	e.sf.FailNext(sftest.EndpointToken, 503, `{"error":"server_error","error_description":"down"}`)
	e.waits.next(t).release()
	w := e.waits.next(t)
	if err := e.sf.DenyDevice(link.UserCode); err != nil {
		t.Fatal(err)
	}
	w.release()
	if how := e.notes.mustEnd(t); how != "denied" {
		t.Fatalf("denied link ended %q", how)
	}
	if _, err := e.svc.Unlink(t.Context(), jane); err != nil {
		t.Fatal(err)
	}
	logs := e.logs.String()
	for _, want := range []string{"binding created", "binding refreshed", "emails differ", "denied", "device poll failed", "binding removed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the flow did not run as planned: logs lack %q:\n%s", want, logs)
		}
	}
	e.assertNoTokens(t, "logs", logs)
}
