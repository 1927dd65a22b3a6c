package main

import (
	"strings"
	"testing"
	"time"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/bot/slacktest"
	"github.com/forcebind/forcebind/salesforce/sftest"
)

// The relink DM is the only word someone gets that their binding is gone
// (it is deleted before the DM is sent): a 429 from Slack must not lose it,
// nor double it.
func TestRelinkDMSurvivesARateLimit(t *testing.T) {
	h, logs := mustHarness(t, nil)
	mustBound(t, h)
	h.sf.RevokeAll()
	h.slack.RateLimit("chat.postMessage", 1, 1)
	mark := len(h.slack.Messages())
	step(t, h, "search acme", 2)
	step(t, h, "help", 1) // jane's work runs in order: nothing more comes of the search
	if links := links(h.slack.Messages()[mark:]); len(links) != 1 {
		t.Errorf("%d fresh links after the revocation and a 429, want 1: %+v", len(links), h.slack.Messages()[mark:])
	}
	if n := h.slack.RateLimited("chat.postMessage"); n != 1 {
		t.Errorf("Slack refused %d posts, want the 1 asked for", n)
	}
	if strings.Contains(logs.String(), "send fresh link") {
		t.Errorf("the fresh link was not sent:\n%s", logs.String())
	}
}

// The relink DM waits out a Retry-After longer than what the refresh that
// found the grant ended has left of its own deadline: once the binding is
// deleted, the fresh link has a deadline of its own.
func TestRelinkDMOutlastsTheRefreshDeadline(t *testing.T) {
	const callTimeout = time.Second
	h, logs := mustHarnessWith(t, func(d *daemon) { d.authTuning = func(c *auth.Config) { c.CallTimeout = callTimeout } })
	mustBound(t, h)
	h.sf.RevokeAll()
	// The refresh's answer takes most of its CallTimeout; Slack then asks
	// for a second (Retry-After is in whole seconds), which is more than
	// is left.
	h.sf.SetEndpointLatency(sftest.EndpointToken, callTimeout*7/10)
	h.slack.RateLimit("chat.postMessage", 1, 1)
	mark := len(h.slack.Messages())
	msgs := step(t, h, "search acme", 2)
	step(t, h, "help", 1)
	found := links(h.slack.Messages()[mark:])
	if len(found) != 1 || !strings.Contains(renderMessage(found[0]), "has ended") {
		t.Fatalf("fresh links after the revocation: %+v, want one DM saying the connection ended\nlog:\n%s", found, logs)
	}
	mustContain(t, msgs[len(msgs)-1], "I've sent you a new link, privately")
	if n := h.slack.RateLimited("chat.postMessage"); n != 1 {
		t.Errorf("Slack refused %d posts, want the 1 asked for", n)
	}
}

// When Slack will not take the relink DM within the link's own deadline
// either, the command's answer carries the fresh link, and says so rather
// than that it was sent.
func TestRelinkLinkInTheAnswerWhenTheDMFails(t *testing.T) {
	h, _ := mustHarness(t, nil)
	mustBound(t, h)
	h.sf.RevokeAll()
	h.slack.RateLimit("chat.postMessage", 1, 3600) // the DM; the answer after it goes through
	mark := len(h.slack.Messages())
	msgs := step(t, h, "search acme", 1)
	step(t, h, "help", 1)
	found := links(h.slack.Messages()[mark:])
	if len(found) != 1 {
		t.Fatalf("%d messages with a fresh link, want the answer's: %+v", len(found), h.slack.Messages()[mark:])
	}
	mustContain(t, msgs[0], "has ended", "Here is a new link", "/services/oauth2/authorize?")
	if strings.Contains(renderMessage(msgs[0]), "I've sent you") {
		t.Errorf("the answer claims a link was sent: %s", renderMessage(msgs[0]))
	}
}

// links returns the messages among ms that carry a fresh link.
func links(ms []slacktest.Message) []slacktest.Message {
	var out []slacktest.Message
	for _, m := range ms {
		if strings.Contains(renderMessage(m), "/services/oauth2/authorize?") {
			out = append(out, m)
		}
	}
	return out
}
