package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/slack-go/slack"
)

// chatMessage is the JSON body of chat.postMessage and chat.postEphemeral
// as forcebind sends them.
type chatMessage struct {
	Channel string        `json:"channel"`
	User    string        `json:"user,omitempty"` // chat.postEphemeral: who sees it
	Text    string        `json:"text"`
	Blocks  []slack.Block `json:"blocks,omitempty"`
}

// chatAnswer is what forcebind reads of a chat method's answer: whether it
// worked, and Slack's error code when not. The message Slack echoes back
// (Block Kit and all) is skipped unread.
type chatAnswer struct {
	OK    bool
	Error string
	TS    string
}

// postChat sends msg with method (chat.postMessage, chat.postEphemeral) as
// a JSON body, under the rules of retryPolicy: a 429 is waited out as its
// Retry-After says, while ctx leaves time, and so is a connection that was
// never made; a 5xx is not repeated, as it may have posted. Errors are
// slack-go's types (*slack.RateLimitedError, slack.SlackErrorResponse,
// slack.StatusCodeError), as the rest of the bot expects.
func (a *API) postChat(ctx context.Context, method string, msg chatMessage) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return postRetrying(ctx, a.hc, a.base+method, method, body, a.token, func(resp *http.Response) error {
		defer drain(resp)
		if resp.StatusCode != http.StatusOK {
			return slack.StatusCodeError{Code: resp.StatusCode, Status: resp.Status}
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		if err != nil {
			return fmt.Errorf("reading the answer: %w", err)
		}
		ans, err := decodeChatAnswer(data)
		if err != nil {
			return fmt.Errorf("reading the answer: %w", err)
		}
		if !ans.OK {
			return slack.SlackErrorResponse{Err: ans.Error}
		}
		return nil
	}, func(attempt int, wait time.Duration, err error) {
		a.log.Info().Str("method", method).Err(err).Dur("wait", wait).Int("attempt", attempt).Msg("Slack call will be sent again")
	})
}

// postRetrying POSTs body as JSON to u (with a Bearer token unless token is
// ""), and hands the answer to read, sending it again after a 429 (as its
// Retry-After says) or a connection that was never made, while ctx leaves
// time and at most maxRetries times. what names the call in errors, which
// never hold u itself (a response URL is a capability to post). retrying
// is told of each repeat.
func postRetrying(ctx context.Context, hc *http.Client, u, what string, body []byte, token string, read func(*http.Response) error, retrying func(attempt int, wait time.Duration, err error)) error {
	backoff := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("%s: %w", what, withoutURL(err))
		}
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		var wait time.Duration
		switch {
		case err != nil:
			err = withoutURL(err)
			if !neverSent(err) || ctx.Err() != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			wait, backoff = backoff, 2*backoff
			err = fmt.Errorf("%s: %w", what, err)
		case resp.StatusCode == http.StatusTooManyRequests:
			drain(resp)
			after := retryAfter(resp.Header)
			wait = withJitter(after)
			err = fmt.Errorf("%s: rate limited for %s: %w", what, after, &slack.RateLimitedError{RetryAfter: after})
		default:
			if err := read(resp); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		}
		if attempt >= maxRetries || !fits(ctx, wait) {
			return err
		}
		retrying(attempt+1, wait, err)
		if !sleep(ctx, wait) {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
	}
}
