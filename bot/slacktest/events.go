package slacktest

import (
	"encoding/json"
	"fmt"
	"strings"
)

// verificationToken is the deprecated verification token Slack still puts in
// payloads; slack-go's socketmode client does not check it.
const verificationToken = "slacktest-verification"

// SendDM queues a message.im event: an events_api envelope whose event_callback
// carries {type:"message", channel_type:"im", channel: DMChannel(userID), user,
// text, ts, event_ts}, as Slack sends when userID writes to the bot in its DM.
func (s *Server) SendDM(userID, text string) Delivery {
	ev := s.userEvent("message", s.DMChannel(userID), userID, text)
	ev["channel_type"] = "im"
	return s.sendEvent(ev)
}

// SendMention queues an app_mention event from userID in channelID. Slack puts
// the mention in the text itself, e.g. "<@U0BOT> search acme"; text is sent as
// given.
func (s *Server) SendMention(channelID, userID, text string) Delivery {
	return s.sendEvent(s.userEvent("app_mention", channelID, userID, text))
}

// userEvent is the inner event Slack sends for a person's message of type
// typ ("message", "app_mention") in channelID.
func (s *Server) userEvent(typ, channelID, userID, text string) map[string]any {
	s.mu.Lock()
	ts := s.tsLocked()
	s.mu.Unlock()
	return map[string]any{
		"client_msg_id": uuid(),
		"type":          typ,
		"text":          text,
		"user":          userID,
		"ts":            ts,
		"team":          s.opts.TeamID,
		"channel":       channelID,
		"event_ts":      ts,
	}
}

// SendMessageEvent queues ev as the inner event of an event_callback, for the
// shapes SendDM does not cover: edits (subtype message_changed), bot messages
// (bot_id), joins, other event types. "type" defaults to "message" and "event_ts"
// to "ts" or a fresh timestamp; nothing else is added. ev is not modified.
func (s *Server) SendMessageEvent(ev map[string]any) Delivery {
	inner := make(map[string]any, len(ev)+2)
	for k, v := range ev {
		inner[k] = v
	}
	if _, ok := inner["type"]; !ok {
		inner["type"] = "message"
	}
	if _, ok := inner["event_ts"]; !ok {
		if ts, ok := inner["ts"]; ok {
			inner["event_ts"] = ts
		} else {
			s.mu.Lock()
			inner["event_ts"] = s.tsLocked()
			s.mu.Unlock()
		}
	}
	return s.sendEvent(inner)
}

// sendEvent wraps inner in an event_callback and an events_api envelope.
func (s *Server) sendEvent(inner map[string]any) Delivery {
	s.mu.Lock()
	eventID := fmt.Sprintf("Ev%010X", s.nextSeqLocked())
	eventTime := s.opts.Now().Unix()
	s.mu.Unlock()
	typ, _ := inner["type"].(string)
	payload := map[string]any{
		"token":      verificationToken,
		"team_id":    s.opts.TeamID,
		"api_app_id": s.opts.AppID,
		"event":      inner,
		"type":       "event_callback",
		"event_id":   eventID,
		"event_time": eventTime,
		"authorizations": []map[string]any{{
			"enterprise_id":         nil,
			"team_id":               s.opts.TeamID,
			"user_id":               s.opts.BotUserID,
			"is_bot":                true,
			"is_enterprise_install": false,
		}},
		"is_ext_shared_channel": false,
		"event_context":         "4-" + typ + "-" + s.opts.TeamID + "-" + eventID,
	}
	return s.enqueue(envelope{
		Type:       "events_api",
		EnvelopeID: uuid(),
		Payload:    mustJSON(payload),
		eventID:    eventID,
	})
}

// SendSlashCommand queues a slash_commands envelope with the payload Slack sends:
// the slash command's form fields as JSON strings (token, team_id, team_domain,
// channel_id, channel_name, user_id, user_name, command, text, api_app_id,
// is_enterprise_install, response_url, trigger_id). command includes its slash,
// e.g. "/salesforce". The response_url points at this server; what is posted there
// is recorded as a Message with Method "response_url".
func (s *Server) SendSlashCommand(channelID, userID, command, text string) Delivery {
	s.mu.Lock()
	n := s.nextSeqLocked()
	path := fmt.Sprintf("/commands/%s/%d/%s", s.opts.TeamID, n, randomID(12))
	s.responseURLs[path] = responseTarget{channel: channelID, user: userID}
	userName := s.users[userID].Name
	s.mu.Unlock()

	channelName := "general"
	if strings.HasPrefix(channelID, "D") {
		channelName = "directmessage"
	}
	payload := map[string]string{
		"token":                 verificationToken,
		"team_id":               s.opts.TeamID,
		"team_domain":           strings.ToLower(s.opts.TeamName),
		"channel_id":            channelID,
		"channel_name":          channelName,
		"user_id":               userID,
		"user_name":             userName,
		"command":               command,
		"text":                  text,
		"api_app_id":            s.opts.AppID,
		"is_enterprise_install": "false",
		"response_url":          s.URL + path,
		"trigger_id":            fmt.Sprintf("%d.%s.%s", n, strings.TrimPrefix(s.opts.TeamID, "T"), randomID(16)),
	}
	return s.enqueue(envelope{
		Type:                   "slash_commands",
		EnvelopeID:             uuid(),
		Payload:                mustJSON(payload),
		AcceptsResponsePayload: true,
	})
}

// SendInteractive queues an interactive envelope (block_actions, view_submission,
// …) carrying payload exactly as given; the caller builds the payload Slack would
// send. accepts_response_payload is true only for the payload types whose ack may
// carry a response (view_submission, block_suggestion), as with Slack.
func (s *Server) SendInteractive(payload map[string]any) Delivery {
	typ, _ := payload["type"].(string)
	return s.enqueue(envelope{
		Type:                   "interactive",
		EnvelopeID:             uuid(),
		Payload:                mustJSON(payload),
		AcceptsResponsePayload: typ == "view_submission" || typ == "block_suggestion",
	})
}

// mustJSON marshals v, which the callers build from JSON-safe values; a value
// that is not (a func, a channel) is a bug in the test that passed it.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("slacktest: payload is not JSON: %v", err))
	}
	return b
}
