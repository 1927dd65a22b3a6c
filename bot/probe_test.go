package bot

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/slack-go/slack"

	"github.com/forcebind/forcebind/bot/slacktest"
)

// The probes against the fake Slack: who the bot is, what its token lacks,
// and Slack's refusals, without a websocket ever being dialled.
func TestProbe(t *testing.T) {
	const app, bot = "xapp-1-A0APP-probe", "xoxb-probe"
	tests := []struct {
		name        string
		scopes      []string
		setup       func(*slacktest.Server)
		wantBot     *CallError // nil: auth.test succeeds
		wantMissing []string
		wantApp     *CallError
	}{
		{name: "every scope"},
		{name: "no chat:write", scopes: []string{"app_mentions:read", "commands", "im:history", "im:read", "im:write", "users:read", "users:read.email"},
			wantMissing: []string{"chat:write"}},
		{name: "bot token refused", setup: func(s *slacktest.Server) { s.SetError("auth.test", "invalid_auth") },
			wantBot: &CallError{Method: "auth.test", Code: "invalid_auth", Fatal: true}},
		{name: "app token revoked", setup: func(s *slacktest.Server) { s.SetError("apps.connections.open", "token_revoked") },
			wantApp: &CallError{Method: "apps.connections.open", Code: "token_revoked", Fatal: true}},
		{name: "not fatal", setup: func(s *slacktest.Server) { s.SetError("auth.test", "token_expired") },
			wantBot: &CallError{Method: "auth.test", Code: "token_expired"}},
		{name: "rate limited, not waited out", setup: func(s *slacktest.Server) { s.RateLimit("auth.test", 1, 30) },
			wantBot: &CallError{Method: "auth.test", Status: http.StatusTooManyRequests, RetryAfter: 30 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := slacktest.NewServer(slacktest.Options{AppToken: app, BotToken: bot, Scopes: tt.scopes})
			t.Cleanup(s.Close)
			if tt.setup != nil {
				tt.setup(s)
			}
			p := NewProbe(APIConfig{BotToken: bot, AppToken: app, URL: s.APIURL}, 5*time.Second)
			ignore := cmpopts.IgnoreFields(CallError{}, "Err")
			u, err := p.BotToken(t.Context())
			if diff := cmp.Diff(tt.wantBot, callErrorIn(err), ignore); diff != "" {
				t.Errorf("BotToken mismatch (-want +got):\n%s", diff)
			}
			if err == nil {
				if u.TeamID != "T0001" || u.UserID != "U0BOT" || u.Scopes == nil {
					t.Errorf("BotToken = %+v", u)
				}
				if diff := cmp.Diff(tt.wantMissing, u.Missing()); diff != "" {
					t.Errorf("Missing mismatch (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tt.wantApp, callErrorIn(p.AppToken(t.Context())), ignore); diff != "" {
				t.Errorf("AppToken mismatch (-want +got):\n%s", diff)
			}
			if s.Connected() {
				t.Error("the probe dialled the Socket Mode websocket")
			}
		})
	}
}

// Slack's answers as slack-go reports them, including ones the fake does
// not produce.
func TestProbeCallError(t *testing.T) {
	tests := []struct {
		name, method string
		err          error
		want         CallError
	}{
		{"missing scope", "auth.test", slack.SlackErrorResponse{Err: "missing_scope", Needed: "users:read"},
			CallError{Method: "auth.test", Code: "missing_scope", Needed: "users:read"}},
		{"bot token as app token", "apps.connections.open", slack.SlackErrorResponse{Err: "not_allowed_token_type"},
			CallError{Method: "apps.connections.open", Code: "not_allowed_token_type", Fatal: true}},
		{"Socket Mode off", "apps.connections.open", slack.SlackErrorResponse{Err: "link_disabled"},
			CallError{Method: "apps.connections.open", Code: "link_disabled", Fatal: true}},
		{"unknown code", "auth.test", slack.SlackErrorResponse{Err: "fatal_error"}, CallError{Method: "auth.test", Code: "fatal_error"}},
		{"rate limited", "auth.test", &slack.RateLimitedError{RetryAfter: 30 * time.Second},
			CallError{Method: "auth.test", Status: http.StatusTooManyRequests, RetryAfter: 30 * time.Second}},
		{"proxy error", "auth.test", slack.StatusCodeError{Code: http.StatusBadGateway, Status: "502 Bad Gateway"},
			CallError{Method: "auth.test", Status: http.StatusBadGateway}},
		{"timeout", "auth.test", context.DeadlineExceeded, CallError{Method: "auth.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := callError(tt.method, tt.err)
			if diff := cmp.Diff(tt.want, *got, cmpopts.IgnoreFields(CallError{}, "Err")); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
			if got.Unwrap() == nil {
				t.Errorf("%v wraps nothing, want %v", got, tt.err)
			}
		})
	}
}

func callErrorIn(err error) *CallError {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce
	}
	return nil
}
