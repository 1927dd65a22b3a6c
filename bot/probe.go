package bot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// Probe checks forcebind's Slack tokens as Run uses them, and changes
// nothing: auth.test with the bot token, which also names the token's
// scopes, and apps.connections.open with the app-level token, whose answer
// (a websocket URL with a one-time ticket) is neither dialled nor kept. It
// is what `forcebind doctor` asks. Unlike NewAPI's client it sends no call
// again: a rate limit is reported, not waited out. A Probe is for one
// goroutine.
type Probe struct {
	api     *slack.Client
	scopes  *scopeRecorder
	timeout time.Duration
}

// NewProbe returns a Probe of c's tokens and URL, each call bounded by
// timeout. c.Logger is not used.
func NewProbe(c APIConfig, timeout time.Duration) *Probe {
	hc := http.Client{}
	if c.HTTPClient != nil {
		hc = *c.HTTPClient
	}
	rec := &scopeRecorder{next: hc.Transport}
	if rec.next == nil {
		rec.next = http.DefaultTransport
	}
	hc.Transport = rec
	opts := []slack.Option{slack.OptionAppLevelToken(c.AppToken), slack.OptionHTTPClient(&hc)}
	if c.URL != "" {
		opts = append(opts, slack.OptionAPIURL(c.URL))
	}
	return &Probe{api: slack.New(c.BotToken, opts...), scopes: rec, timeout: timeout}
}

// BotUser is the bot as auth.test names it, with its token's scopes.
type BotUser struct {
	Team, TeamID, User, UserID string
	// Scopes are the token's scopes as Slack's X-OAuth-Scopes header names
	// them; nil when Slack did not say.
	Scopes []string
}

// Missing returns the scopes of Scopes() that the token lacks, in that
// order; nil when it has them all or Slack did not name its scopes.
func (u BotUser) Missing() []string {
	if u.Scopes == nil {
		return nil
	}
	var missing []string
	for _, s := range Scopes() {
		if !slices.Contains(u.Scopes, s) {
			missing = append(missing, s)
		}
	}
	return missing
}

// BotToken calls auth.test with the bot token. A failure is a *CallError.
func (p *Probe) BotToken(ctx context.Context) (BotUser, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	p.scopes.header = nil
	who, err := p.api.AuthTestContext(ctx)
	if err != nil {
		return BotUser{}, callError("auth.test", err)
	}
	u := BotUser{Team: who.Team, TeamID: who.TeamID, User: who.User, UserID: who.UserID}
	if p.scopes.header != nil {
		u.Scopes = []string{}
		for s := range strings.SplitSeq(*p.scopes.header, ",") {
			if s = strings.TrimSpace(s); s != "" {
				u.Scopes = append(u.Scopes, s)
			}
		}
	}
	return u, nil
}

// AppToken calls apps.connections.open with the app-level token: it
// succeeds when the token is valid and Socket Mode is on for the app. A
// failure is a *CallError.
func (p *Probe) AppToken(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if _, _, err := p.api.StartSocketModeContext(ctx); err != nil {
		return callError("apps.connections.open", err)
	}
	return nil
}

// CallError is a Web API call of a Probe that did not succeed. Its text
// names the method and what Slack answered, never a token.
type CallError struct {
	// Method is the Web API method, such as "auth.test".
	Method string
	// Code is Slack's error code, such as "invalid_auth"; "" when Slack did
	// not answer with one.
	Code string
	// Needed is the scope Slack names for "missing_scope".
	Needed string
	// Status is the HTTP status of an answer that was not Slack's JSON:
	// 429 when Slack is rate limiting (see RetryAfter), 502 from a proxy.
	// It is 0 for an answer with a Code, and when no answer came.
	Status int
	// RetryAfter is how long Slack asked to wait, with Status 429.
	RetryAfter time.Duration
	// Fatal reports that Code is one Run stops on (ErrSlackAuth):
	// restarting will not help until an administrator acts.
	Fatal bool
	// Err is what slack-go returned, for errors.As and errors.Is (a
	// timeout, a DNS failure).
	Err error
}

func (e *CallError) Error() string {
	switch {
	case e.Code != "":
		return fmt.Sprintf("%s answered %s", e.Method, e.Code)
	case e.Status != 0:
		return fmt.Sprintf("%s: HTTP %d", e.Method, e.Status)
	}
	return fmt.Sprintf("%s: %v", e.Method, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

// callError reads a slack-go error of method into a *CallError.
func callError(method string, err error) *CallError {
	ce := &CallError{Method: method, Err: err}
	var rl *slack.RateLimitedError
	var se slack.SlackErrorResponse
	var sc slack.StatusCodeError
	switch {
	case errors.As(err, &rl):
		ce.Status, ce.RetryAfter = http.StatusTooManyRequests, rl.RetryAfter
	case errors.As(err, &se):
		ce.Code, ce.Needed, ce.Fatal = se.Err, se.Needed, isFatalCode(se.Err)
	case errors.As(err, &sc):
		ce.Status = sc.Code
	}
	return ce
}

// scopeRecorder keeps the X-OAuth-Scopes header of auth.test's answer:
// Slack names the token's scopes there, and slack-go does not expose it.
type scopeRecorder struct {
	next   http.RoundTripper
	header *string // nil until an answer carried one
}

func (r *scopeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err == nil && strings.HasSuffix(req.URL.Path, "/auth.test") {
		if v, ok := resp.Header["X-Oauth-Scopes"]; ok && len(v) > 0 {
			r.header = &v[0]
		}
	}
	return resp, err
}
