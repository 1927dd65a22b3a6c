package bot

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/slack-go/slack"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/store"
)

// Each way a session refresh or a binding can fail gets its own plain
// sentence. None that leaves a good grant in place tells the person to
// disconnect, which would revoke it; the 401 that started a refresh does
// not decide the answer, even where it is still wrapped.
func TestExplainBindingErrors(t *testing.T) {
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
		{afterRefresh(fmt.Errorf("%w: %w", auth.ErrTimeout, context.DeadlineExceeded)), "refresh_timeout", "did not answer in time"},
		{afterRefresh(fmt.Errorf("refresh: %w: bad signature", auth.ErrRefreshRejected)), "refresh_rejected", "could not verify Salesforce's answer"},
		{afterRefresh(auth.ErrRestricted), "login_restricted", "login IP ranges or login hours"},
		{afterRefresh(auth.ErrLoginMoved), "login_moved", "moved it to another Salesforce"},
		{afterRefresh(auth.ErrRelinkRequired), "relink", "has ended"},
		{afterRefresh(auth.ErrTransient), "refresh_failed", "try again in a minute"},
		{afterRefresh(fmt.Errorf("refresh: %w: %w", auth.ErrUnreadable, store.ErrCorrupt)), "unreadable", "Send `connect`"},
		{fmt.Errorf("%w: get binding T1/U1: %w", auth.ErrUnreadable, store.ErrWrongKey), "unreadable", "Send `connect`"},
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
		})
	}
}

// bindingAuth is a fakeAuth whose Binding and Unlink answer as given.
type bindingAuth struct {
	fakeAuth
	bindingErr error
	unlinked   auth.Unlinked
	unlinkErr  error
}

func (a *bindingAuth) Binding(context.Context, string, string) (store.Binding, error) {
	return store.Binding{}, a.bindingErr
}

func (a *bindingAuth) Unlink(context.Context, string, string) (auth.Unlinked, error) {
	return a.unlinked, a.unlinkErr
}

// A record that cannot be opened traps nobody: connect sends a link, which
// replaces it; disconnect says the grant could not be revoked and where to
// revoke it; other commands say to connect again.
func TestUnreadableBindingCommands(t *testing.T) {
	unreadable := fmt.Errorf("%w: get binding T0001/U0JANE: %w: record sealed under key id 0a1b2c3d, which is not in the keyring", auth.ErrUnreadable, store.ErrWrongKey)
	tests := []struct {
		command  string
		unlinked auth.Unlinked
		want     []string
	}{
		{"connect", auth.Unlinked{}, []string{"https://login.example/authorize?state=for-" + jane}},
		{"whoami", auth.Unlinked{}, []string{"can no longer read", "Send `connect`"}},
		{"search acme", auth.Unlinked{}, []string{"can no longer read", "Send `connect`"}},
		{"disconnect", auth.Unlinked{NotRevoked: auth.RevokeUnreadable}, []string{"Disconnected", "could not revoke", "Connected Apps OAuth Usage"}},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			s := mustSlack(t)
			fa := &bindingAuth{bindingErr: unreadable, unlinked: tt.unlinked}
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
	fa := &bindingAuth{unlinked: auth.Unlinked{Binding: store.Binding{Username: "jane@acme.example"}, NotRevoked: auth.RevokeLoginMoved}}
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
		why     auth.RelinkReason
		want    string
		notWant string
	}{
		{auth.RelinkGrantEnded, "revoked or expired", "another Salesforce"},
		{auth.RelinkLoginMoved, "moved it to another Salesforce", "revoked or expired"},
	}
	for _, tt := range tests {
		t.Run(tt.why.String(), func(t *testing.T) {
			s := mustSlack(t)
			m := NewMessenger(slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL)), nil, s.APIURL, zerolog.Nop())
			link := auth.Link{URL: "https://login.example/authorize?state=x", Expires: time.Now().Add(10 * time.Minute)}
			if err := m.Relink(mustCtx(t), auth.Requester{TeamID: "T0001", UserID: jane}, link, tt.why); err != nil {
				t.Fatalf("Relink: %v", err)
			}
			msg := mustMessage(t, s, to(s.DMChannel(jane)))
			if !strings.Contains(msg.Text, tt.want) || strings.Contains(msg.Text, tt.notWant) {
				t.Errorf("DM %q: want %q, not %q", msg.Text, tt.want, tt.notWant)
			}
		})
	}
}
