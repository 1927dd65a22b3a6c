package main

import (
	"strings"
	"testing"
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
	links := 0
	for _, m := range h.slack.Messages()[mark:] {
		if strings.Contains(renderMessage(m), "/services/oauth2/authorize?") {
			links++
		}
	}
	if links != 1 {
		t.Errorf("%d fresh links after the revocation and a 429, want 1: %+v", links, h.slack.Messages()[mark:])
	}
	if n := h.slack.RateLimited("chat.postMessage"); n != 1 {
		t.Errorf("Slack refused %d posts, want the 1 asked for", n)
	}
	if strings.Contains(logs.String(), "send fresh link") {
		t.Errorf("the fresh link was not sent:\n%s", logs.String())
	}
}
