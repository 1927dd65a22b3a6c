package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// A slash command's response_url lets whoever holds it post as the app in
// that channel for 30 minutes. So it is posted to only on Slack's own hosts,
// never follows a redirect, and never appears in a log line or an error:
// errors name its host and the status, nothing of its path.

// slackHooks is the origin of the response URLs Slack hands out.
const slackHooks = "https://hooks.slack.com"

// errForeignResponseURL is returned for a response_url on a host that is not
// Slack's.
var errForeignResponseURL = errors.New("response_url is not on a Slack host")

// responseOrigins returns the origins a response_url may have: Slack's
// hooks host, and the Web API's own origin and its hooks. host, so the fake
// Slack of the tests and the demo (whose response URLs are on its API
// origin) and a Slack on another domain work too.
func responseOrigins(apiURL string) []string {
	origins := []string{slackHooks}
	u, err := url.Parse(apiURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return origins
	}
	more := []string{origin(u)}
	if u.Scheme == "https" {
		more = append(more, origin(&url.URL{Scheme: "https", Host: "hooks." + u.Host}))
	}
	for _, o := range more {
		if !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	return origins
}

// origin is u's scheme and host, lower case, with the default port left out.
func origin(u *url.URL) string {
	host := strings.ToLower(u.Hostname())
	if p := u.Port(); p != "" && !(u.Scheme == "https" && p == "443") && !(u.Scheme == "http" && p == "80") {
		host = net.JoinHostPort(host, p)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]" // an IPv6 literal
	}
	return strings.ToLower(u.Scheme) + "://" + host
}

// responseURL parses raw and checks it is a URL forcebind may post to.
func (m *Messenger) responseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Host == "" {
		return nil, errForeignResponseURL // url.Parse's error would quote raw
	}
	o := origin(u)
	for _, allowed := range m.origins {
		if o == allowed {
			return u, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", errForeignResponseURL, u.Hostname())
}

// respond posts msg to a slash command's response URL, checked by
// responseURL. A 429 is waited out, as its Retry-After says, while ctx
// leaves time, and so is a connection that was never made; a 5xx is not
// repeated, as it may have posted (see retryPolicy).
func (m *Messenger) respond(ctx context.Context, u *url.URL, msg *slack.WebhookMessage) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("response_url: %w", err)
	}
	host := u.Host
	backoff := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("response_url on %s: %w", host, withoutURL(err))
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := m.hooks.Do(req)
		var wait time.Duration
		switch {
		case err != nil:
			err = withoutURL(err)
			if !neverSent(err) || ctx.Err() != nil {
				return fmt.Errorf("response_url on %s: %w", host, err)
			}
			wait, backoff = backoff, 2*backoff
			err = fmt.Errorf("response_url on %s: %w", host, err)
		case resp.StatusCode == http.StatusTooManyRequests:
			drain(resp)
			after := retryAfter(resp.Header)
			wait = withJitter(after)
			err = fmt.Errorf("response_url on %s: %w", host, &slack.RateLimitedError{RetryAfter: after})
		default:
			code := answerCode(resp)
			switch {
			case resp.StatusCode/100 == 2 && code == "":
				return nil
			case code != "":
				return fmt.Errorf("response_url on %s answered %s: %s", host, resp.Status, code)
			}
			return fmt.Errorf("response_url on %s answered %s", host, resp.Status)
		}
		if attempt >= maxRetries || !fits(ctx, wait) {
			return err
		}
		m.log.Info().Str("host", host).Err(err).Dur("wait", wait).Int("attempt", attempt+1).Msg("slash command response will be sent again")
		if !sleep(ctx, wait) {
			return fmt.Errorf("response_url on %s: %w", host, ctx.Err())
		}
	}
}

// withoutURL drops the URL that net/http puts in its errors ("Post
// \"https://hooks.slack.com/commands/…\": …"), keeping what went wrong.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// slackCode is the shape of Slack's error codes, "expired_url", "used_url":
// text of that shape is safe to log.
var slackCode = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// answerCode reads a response URL's answer, and returns Slack's error code
// when it says one ("" for "ok", {"ok":true} or nothing). Anything else it
// might say is left out of the logs.
func answerCode(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	b = bytes.TrimSpace(b)
	var j struct {
		OK    *bool  `json:"ok"`
		Error string `json:"error"`
	}
	switch {
	case len(b) == 0 || string(b) == "ok":
		return ""
	case json.Unmarshal(b, &j) == nil:
		if j.OK != nil && !*j.OK {
			if slackCode.MatchString(j.Error) {
				return j.Error
			}
			return "not ok"
		}
		return ""
	case slackCode.MatchString(string(b)):
		return string(b)
	}
	return ""
}

// drain reads what is left of an answer, so its connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// noRedirects is an http.Client's CheckRedirect that hands a redirect back
// as the answer: a response_url is posted to where Slack said, or nowhere.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
