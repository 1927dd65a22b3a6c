package bot

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/slack-go/slack"
)

// APIConfig says how to reach Slack's Web API.
type APIConfig struct {
	BotToken string // xoxb-…, for every method but apps.connections.open
	AppToken string // xapp-…, for apps.connections.open (Socket Mode)
	// URL is the Web API base, SLACK_API_URL; empty means slack.APIURL.
	URL string
	// HTTPClient carries the calls; nil means a client of slack-go's own.
	HTTPClient *http.Client
	// Logger is told of each call sent again.
	Logger zerolog.Logger
}

// API is the Slack Web API client of a Bot and its Messenger: slack-go's,
// for every method, and a lean poster of its own for the two that carry
// every answer, chat.postMessage and chat.postEphemeral. slack-go decodes
// those answers whole, Block Kit echo included, and that was a quarter of
// the daemon's CPU per event (issue 11); forcebind reads only ok, error and
// ts of them. It is safe for concurrent use.
type API struct {
	*slack.Client
	token string
	base  string // the Web API base URL, ending in "/"
	hc    *http.Client
	log   zerolog.Logger
}

// NewAPI returns the Web API client for a Bot and its Messenger. Calls that
// fail in a way that is safe to repeat are sent again, by slack-go's retry
// support or by the poster, under the rules of retryPolicy: a 429 after
// its Retry-After, when the call's context leaves time for that, so a
// person's answer waits out a rate limit instead of being dropped.
func NewAPI(c APIConfig) *API {
	opts := []slack.Option{slack.OptionAppLevelToken(c.AppToken)}
	if c.URL != "" {
		opts = append(opts, slack.OptionAPIURL(c.URL))
	}
	if c.HTTPClient != nil {
		opts = append(opts, slack.OptionHTTPClient(c.HTTPClient))
	}
	// After OptionHTTPClient: slack-go wraps whatever client is set by then.
	opts = append(opts, slack.OptionRetryConfig(slack.RetryConfig{
		MaxRetries:     maxRetries,
		Handlers:       []slack.RetryHandler{retryPolicy{log: c.Logger}},
		BackoffInitial: 250 * time.Millisecond,
		BackoffMax:     4 * time.Second,
		BackoffJitter:  100 * time.Millisecond,
	}))
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	base := cmpOr(c.URL, slack.APIURL)
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	return &API{Client: slack.New(c.BotToken, opts...), token: c.BotToken, base: base, hc: hc, log: c.Logger}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// maxRetries bounds how often one call is sent again; the call's deadline
// usually ends it first.
const maxRetries = 5

// retryPolicy decides which failed Web API calls are sent again, and when.
//
// A person who asked gets exactly one answer, so a call that may already
// have acted is never repeated. A 429 did nothing (Slack refused it before
// acting) and a connection that was never made carried nothing: both are
// sent again for every method. A 5xx, or a connection that broke after the
// request went out, may come after chat.postMessage has posted: repeating
// it could post the answer (or the connect link) twice, so those are sent
// again only for methods that change nothing (readOnly). The caller then
// logs the failure; a person who got no answer can ask again, while a
// doubled message cannot be taken back.
//
// Every wait is bounded by the call's context: a wait that would outlast
// its deadline is not started, so the caller hears "rate limited" at once
// and can say so, instead of sleeping into a timeout.
type retryPolicy struct {
	log zerolog.Logger
}

var _ slack.RetryHandler = retryPolicy{}

// ShouldRetry implements slack.RetryHandler.
func (p retryPolicy) ShouldRetry(state *slack.RetryState, req *http.Request, resp *http.Response, err error) (bool, time.Duration) {
	if state.Attempt >= state.MaxRetries || req.Context().Err() != nil {
		return false, 0
	}
	method := path.Base(req.URL.Path)
	var wait time.Duration
	reason := ""
	switch {
	case resp != nil && resp.StatusCode == http.StatusTooManyRequests:
		wait, reason = withJitter(retryAfter(resp.Header)), "rate limited"
	case resp != nil && resp.StatusCode >= 500 && readOnly(method):
		wait, reason = state.Backoff.Duration(), resp.Status
	case resp == nil && err != nil && (neverSent(err) || readOnly(method)):
		wait, reason = state.Backoff.Duration(), "connection failed"
	default:
		return false, 0
	}
	if !fits(req.Context(), wait) {
		p.log.Warn().Str("method", method).Str("reason", reason).Dur("retry_after", wait).Msg("Slack call failed, and waiting to send it again would outlast its deadline")
		return false, 0
	}
	p.log.Info().Str("method", method).Str("reason", reason).Dur("wait", wait).Int("attempt", state.Attempt+1).Msg("Slack call will be sent again")
	return true, wait
}

// readOnly reports whether sending the Web API method twice does no harm:
// it reads, or it opens what is already open.
func readOnly(method string) bool {
	switch method {
	case "auth.test", "users.info", "conversations.open", "conversations.info", "apps.connections.open":
		return true
	}
	return false
}

// neverSent reports whether err is a failure to connect, so the request
// never reached Slack (refused, unreachable, no such host).
func neverSent(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var op *net.OpError
	for errors.As(err, &op) { // a proxy's failure wraps the dial's
		if op.Op == "dial" || op.Op == "proxyconnect" {
			return true
		}
		err = op.Err
	}
	return false
}

// retryAfter is how long a 429 asks to wait: its Retry-After in seconds,
// or a second when it gives none (Slack always does; a proxy may not).
func retryAfter(h http.Header) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After"))); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return time.Second
}

// withJitter is a wait of d and a little more, chosen at random: up to a
// tenth of d, or up to minJitter when that is more. Slack gives every call
// refused in one window the same Retry-After; without it, every worker
// waiting out a rate limit would send again in the same instant and be
// refused together again. The caller's deadline check sees the whole wait.
func withJitter(d time.Duration) time.Duration {
	spread := max(d/10, minJitter)
	return d + rand.N(spread)
}

// minJitter is the least spread withJitter may add to a wait.
const minJitter = 250 * time.Millisecond

// fits reports whether waiting d still leaves ctx time to send again.
func fits(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d
}

// sleep waits d, or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
