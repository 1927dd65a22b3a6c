package bot

import (
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/auth/account"
)

// Each way a link can fail is explained to the person, in a DM, in words
// that fit it: a missing Slack email is not an email that differs, and a
// restart is not the person's doing.
func TestMessengerLinkFailed(t *testing.T) {
	tests := []struct {
		why     account.Failure
		want    []string
		notWant []string
	}{
		{why: account.FailureEmailMismatch, want: []string{"not the one on your Slack profile", "verified", "`connect`"}},
		{why: account.FailureNoSlackEmail,
			want:    []string{"could not read the email address on your Slack profile", "nothing was connected", "tell whoever runs forcebind"},
			notWant: []string{"not the one on your Slack profile", "`connect`"}},
		{why: account.FailureDenied, want: []string{"denied", "`connect`"}},
		{why: account.FailureExpired, want: []string{"expired", "`connect` for a new one"}},
		{why: account.FailureInterrupted,
			want:    []string{"forcebind was restarted", "before your Salesforce connect code was used", "nothing was connected", "`connect` for a new one"},
			notWant: []string{"went wrong", "expired"}},
		{why: account.FailureError, want: []string{"went wrong", "`connect`"}},
		{why: account.FailureOrgNotAllowed,
			want:    []string{"org this forcebind is not set up for", "signed it out again", "`connect`"},
			notWant: []string{"went wrong", "email"}},
	}
	for _, tt := range tests {
		t.Run(tt.why.String(), func(t *testing.T) {
			s := mustSlack(t)
			m := NewMessenger(NewAPI(APIConfig{BotToken: s.BotToken(), URL: s.APIURL}), nil, s.APIURL, zerolog.Nop())
			if err := m.LinkFailed(t.Context(), account.Requester{TeamID: "T0001", UserID: jane, ChannelID: "C0GENERAL"}, tt.why); err != nil {
				t.Fatalf("LinkFailed: %v", err)
			}
			msg := mustMessage(t, s, to(s.DMChannel(jane)))
			if msg.Method != "chat.postMessage" || msg.Ephemeral {
				t.Errorf("sent as %s (ephemeral %v), want a DM through chat.postMessage", msg.Method, msg.Ephemeral)
			}
			text := strings.ToLower(msg.Text)
			for _, w := range tt.want {
				if !strings.Contains(text, strings.ToLower(w)) {
					t.Errorf("message lacks %q: %s", w, msg.Text)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(text, strings.ToLower(w)) {
					t.Errorf("message says %q: %s", w, msg.Text)
				}
			}
		})
	}
}
