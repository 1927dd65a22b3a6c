package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/auth/account"
	"github.com/forcebind/forcebind/salesforce"
)

// Each way a session refresh or a binding can fail gets its own plain
// sentence. None that leaves a good grant in place tells the person to
// disconnect, which would revoke it; the 401 that started a refresh does
// not decide the answer, even where it is still wrapped.
func TestExplainBindingErrors(t *testing.T) {
	// What the store says under account.ErrUnreadable; the bot sees only
	// its words, not the store's sentinels.
	corrupt := errors.New("store is corrupt: record does not authenticate")
	wrongKey := errors.New("keyring does not match the store: record sealed under key id 0a1b2c3d")
	expired := &salesforce.APIError{StatusCode: 401, ErrorCode: "INVALID_SESSION_ID", Message: "Session expired or invalid"}
	afterRefresh := func(err error) error {
		// As an older client wrapped them: both in the chain.
		return fmt.Errorf("salesforce search: refresh session: %w (after %w)", err, expired)
	}
	tests := []struct {
		err         error
		wantOutcome string
		wantText    string
	}{
		{afterRefresh(fmt.Errorf("%w: %w", account.ErrTimeout, context.DeadlineExceeded)), "refresh_timeout", "did not answer in time"},
		{afterRefresh(fmt.Errorf("refresh: %w: bad signature", account.ErrRefreshRejected)), "refresh_rejected", "could not verify Salesforce's answer"},
		{afterRefresh(account.ErrRestricted), "login_restricted", "login IP ranges or login hours"},
		{afterRefresh(account.ErrLoginMoved), "login_moved", "moved it to another Salesforce"},
		{afterRefresh(&account.RelinkError{Why: account.RelinkGrantEnded, Link: account.Link{URL: "https://x"}, Sent: true}), "relink", "I've sent you a new link, privately"},
		{afterRefresh(&account.RelinkError{Why: account.RelinkLoginMoved, Link: account.Link{URL: "https://x"}}), "login_moved", "Here is a new link"},
		{afterRefresh(&account.RelinkError{Why: account.RelinkOrgNotAllowed}), "org_not_allowed", "Send `connect`"},
		{afterRefresh(account.ErrOrgNotAllowed), "org_not_allowed", "no longer lets it work with your Salesforce org"},
		{afterRefresh(fmt.Errorf("refresh: %w: bad signature (%w)", account.ErrRefreshRejected, account.ErrRefreshSpent)), "refresh_spent", "can no longer be renewed"},
		{afterRefresh(account.ErrRelinkRequired), "relink", "has ended"},
		{afterRefresh(account.ErrTransient), "refresh_failed", "try again in a minute"},
		{afterRefresh(fmt.Errorf("refresh: %w: %w", account.ErrUnreadable, corrupt)), "unreadable", "Send `connect`"},
		{fmt.Errorf("%w: get binding T1/U1: %w", account.ErrUnreadable, wrongKey), "unreadable", "Send `connect`"},
		{fmt.Errorf("create link: %w: %w", account.ErrStoreUnusable, errors.New("store is locked by another process")), "error", "Something is wrong on forcebind's side"},
		{fmt.Errorf("salesforce search: %w", expired), "session_rejected", "`disconnect`"},
	}
	for _, tt := range tests {
		t.Run(tt.wantOutcome, func(t *testing.T) {
			text, outcome := explain(tt.err)
			if outcome != tt.wantOutcome || !strings.Contains(text, tt.wantText) {
				t.Errorf("explain(%v) = %q, %q; want outcome %q and text with %q", tt.err, text, outcome, tt.wantOutcome, tt.wantText)
			}
			if tt.wantOutcome != "session_rejected" && strings.Contains(text, "disconnect") {
				t.Errorf("explain(%v) = %q tells the person to disconnect", tt.err, text)
			}
			var ended *account.RelinkError
			if errors.As(tt.err, &ended) && !ended.Sent && strings.Contains(text, "I've sent you") {
				t.Errorf("explain(%v) = %q claims a link was sent", tt.err, text)
			}
			if strings.Contains(text, "still connected") && errors.Is(tt.err, account.ErrRefreshSpent) {
				t.Errorf("explain(%v) = %q says the person is still connected", tt.err, text)
			}
		})
	}
}

// A record that cannot be opened traps nobody: connect sends a link, which
// replaces it; disconnect says the grant could not be revoked and where to
// revoke it; other commands say to connect again.
func TestUnreadableBindingCommands(t *testing.T) {
	unreadable := fmt.Errorf("%w: get binding T0001/U0JANE: keyring does not match the store: record sealed under key id 0a1b2c3d, which is not in the keyring", account.ErrUnreadable)
	tests := []struct {
		command  string
		unlinked account.Unlinked
		want     []string
	}{
		{"connect", account.Unlinked{}, []string{"https://login.example/authorize?state=for-" + jane}},
		{"whoami", account.Unlinked{}, []string{"can no longer read", "Send `connect`"}},
		{"search acme", account.Unlinked{}, []string{"can no longer read", "Send `connect`"}},
		{"disconnect", account.Unlinked{NotRevoked: account.RevokeUnreadable}, []string{"Disconnected", "could not revoke", "Connected Apps OAuth Usage"}},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			s := mustSlack(t)
			fa := &fakeAuth{err: unreadable, unlinked: &tt.unlinked}
			r := mustRun(t, s, fa, nil)
			s.SendDM(jane, tt.command)
			m := mustMessage(t, s, to(s.DMChannel(jane)))
			for _, w := range tt.want {
				if !strings.Contains(m.Text+fmt.Sprint(m.Blocks), w) {
					t.Errorf("answer to %q lacks %q:\n%s", tt.command, w, m.Text)
				}
			}
			if strings.Contains(m.Text, "Something went wrong") {
				t.Errorf("answer to %q is a generic failure: %s", tt.command, m.Text)
			}
			if tt.command != "disconnect" && !strings.Contains(r.logs.String(), "0a1b2c3d") {
				t.Errorf("the log does not name the key id:\n%s", r.logs)
			}
		})
	}
}

// A disconnect of a binding made at a Salesforce forcebind no longer uses
// says nothing was sent there.
func TestDisconnectAfterLoginMoved(t *testing.T) {
	s := mustSlack(t)
	fa := &fakeAuth{unlinked: &account.Unlinked{Account: account.Account{Username: "jane@acme.example"}, NotRevoked: account.RevokeLoginMoved}}
	mustRun(t, s, fa, nil)
	s.SendDM(jane, "disconnect")
	m := mustMessage(t, s, to(s.DMChannel(jane)))
	if !strings.Contains(m.Text, "no longer uses") || !strings.Contains(m.Text, "jane@acme.example") {
		t.Errorf("disconnect answer %q does not say the Salesforce moved", m.Text)
	}
}

// The DM with a fresh link says why the old binding ended: a grant that
// ended is not an administrator's move to another Salesforce.
func TestMessengerRelink(t *testing.T) {
	tests := []struct {
		why     account.RelinkReason
		want    string
		notWant string
	}{
		{account.RelinkGrantEnded, "revoked or expired", "another Salesforce"},
		{account.RelinkLoginMoved, "moved it to another Salesforce", "revoked or expired"},
		{account.RelinkOrgNotAllowed, "no longer lets it work with your Salesforce org", "another Salesforce"},
	}
	for _, tt := range tests {
		t.Run(tt.why.String(), func(t *testing.T) {
			s := mustSlack(t)
			m := NewMessenger(NewAPI(APIConfig{BotToken: s.BotToken(), URL: s.APIURL}), nil, s.APIURL, zerolog.Nop())
			link := account.Link{URL: "https://login.example/authorize?state=x", Expires: time.Now().Add(10 * time.Minute)}
			if err := m.Relink(t.Context(), account.Requester{TeamID: "T0001", UserID: jane}, link, tt.why); err != nil {
				t.Fatalf("Relink: %v", err)
			}
			msg := mustMessage(t, s, to(s.DMChannel(jane)))
			if !strings.Contains(msg.Text, tt.want) || strings.Contains(msg.Text, tt.notWant) {
				t.Errorf("DM %q: want %q, not %q", msg.Text, tt.want, tt.notWant)
			}
		})
	}
}

// A binding that ended while its fresh link could not be sent privately
// (Slack refused the message) is answered with the link itself, and the
// answer never claims a link was sent; one whose link was sent says so,
// without the link.
func TestEndedBindingAnswer(t *testing.T) {
	link := account.Link{URL: "https://login.example/authorize?state=fresh-for-jane", Expires: time.Now().Add(10 * time.Minute)}
	tests := []struct {
		name    string
		err     error
		want    []string
		notWant []string
	}{
		{"not sent", &account.RelinkError{Why: account.RelinkGrantEnded, Link: link},
			[]string{"has ended", "Here is a new link", link.URL}, []string{"I've sent you"}},
		{"sent", &account.RelinkError{Why: account.RelinkGrantEnded, Link: link, Sent: true},
			[]string{"has ended", "I've sent you a new link, privately"}, []string{link.URL}},
		{"no link made", &account.RelinkError{Why: account.RelinkLoginMoved},
			[]string{"moved it to another Salesforce", "Send `connect`"}, []string{"I've sent you"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSlack(t)
			r := mustRun(t, s, &fakeAuth{err: fmt.Errorf("salesforce search: refresh session: %w", tt.err)}, nil)
			s.SendDM(jane, "search acme")
			m := mustMessage(t, s, to(s.DMChannel(jane)))
			got := m.Text + string(m.Blocks)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("answer lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("answer has %q:\n%s", w, got)
				}
			}
			if strings.Contains(r.logs.String(), link.URL) {
				t.Errorf("the log has the link:\n%s", r.logs)
			}
		})
	}
}
