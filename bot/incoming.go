package bot

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// incoming is one person's message to the bot, from any of the three
// surfaces: a DM, a mention in a channel, or the slash command.
type incoming struct {
	TeamID, UserID, BotID, Subtype string
	UserTeam                       string // the sender's own team, when Slack says
	ChannelID                      string
	Text                           string // the command text, without the mention or slash command
	Surface                        surface
	ResponseURL                    string // slash commands only
	dedupeKey                      string // event_id, or the slash command's trigger_id
}

// surface is where a message came from, which decides how to answer it.
type surface int

const (
	surfaceDM surface = iota
	surfaceMention
	surfaceSlash
)

func (s surface) String() string {
	return [...]string{"dm", "mention", "slash"}[s]
}

// maxTextLen bounds what the bot reads of a message; commands are short.
const maxTextLen = 4000

// errBadPayload is returned for a payload that is not what Slack sends.
var errBadPayload = errors.New("malformed payload")

// parseEnvelope turns a Socket Mode envelope's payload into an incoming
// message. It returns nil, nil for payloads the bot does not act on
// (interactive ones, other event types, channel messages).
func parseEnvelope(typ string, payload []byte) (*incoming, error) {
	switch typ {
	case "events_api":
		return parseEventsAPI(payload)
	case "slash_commands":
		return parseSlash(payload)
	}
	return nil, nil
}

func parseEventsAPI(payload []byte) (*incoming, error) {
	var p struct {
		Type    string `json:"type"`
		TeamID  string `json:"team_id"`
		EventID string `json:"event_id"`
		Event   struct {
			Type        string `json:"type"`
			Subtype     string `json:"subtype"`
			User        string `json:"user"`
			BotID       string `json:"bot_id"`
			Text        string `json:"text"`
			Channel     string `json:"channel"`
			ChannelType string `json:"channel_type"`
			Team        string `json:"team"`
			UserTeam    string `json:"user_team"`
		} `json:"event"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadPayload, err)
	}
	if p.Type != "event_callback" {
		return nil, nil
	}
	if p.EventID == "" {
		return nil, fmt.Errorf("%w: event without event_id", errBadPayload)
	}
	ev := p.Event
	in := &incoming{
		TeamID: p.TeamID, UserID: ev.User, BotID: ev.BotID, Subtype: ev.Subtype,
		ChannelID: ev.Channel, dedupeKey: p.EventID,
		// A Slack Connect user writes from their own team; bindings are per
		// workspace member, so such a message counts as the other team's.
		UserTeam: cmp.Or(ev.UserTeam, ev.Team),
	}
	switch {
	case ev.Type == "app_mention":
		in.Surface = surfaceMention
		in.Text = stripMention(ev.Text)
	case ev.Type == "message" && ev.ChannelType == "im":
		in.Surface = surfaceDM
		in.Text = stripMention(ev.Text)
	default:
		return nil, nil
	}
	if in.ChannelID == "" {
		return nil, fmt.Errorf("%w: %s event without channel", errBadPayload, ev.Type)
	}
	in.Text = clip(in.Text)
	return in, nil
}

func parseSlash(payload []byte) (*incoming, error) {
	var p struct {
		TeamID      string `json:"team_id"`
		UserID      string `json:"user_id"`
		ChannelID   string `json:"channel_id"`
		Text        string `json:"text"`
		ResponseURL string `json:"response_url"`
		TriggerID   string `json:"trigger_id"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadPayload, err)
	}
	if p.UserID == "" || p.ChannelID == "" || p.TriggerID == "" {
		return nil, fmt.Errorf("%w: slash command without user, channel or trigger_id", errBadPayload)
	}
	return &incoming{
		TeamID: p.TeamID, UserID: p.UserID, ChannelID: p.ChannelID,
		Text: clip(p.Text), Surface: surfaceSlash, ResponseURL: p.ResponseURL,
		dedupeKey: "slash:" + p.TriggerID,
	}, nil
}

// mention matches a leading user mention, <@U123> or <@U123|name>.
var mention = regexp.MustCompile(`^\s*<@[A-Z0-9]+(\|[^>]*)?>[\s:,]*`)

func stripMention(s string) string {
	return strings.TrimSpace(mention.ReplaceAllString(s, ""))
}

// slackMarkup matches Slack's encoding of links, mailto links, channels and
// users in message text: <https://acme.com|acme.com>, <mailto:a@b.c|a@b.c>.
var slackMarkup = regexp.MustCompile(`<([^<>|]*)(?:\|([^<>]*))?>`)

// plainText undoes Slack's encoding of typed text: a link becomes the text
// shown for it, and &amp; &lt; &gt; become & < >, so "search AT&T" or
// "contact jane@acme.com" search for what the person typed.
func plainText(s string) string {
	s = slackMarkup.ReplaceAllStringFunc(s, func(m string) string {
		sub := slackMarkup.FindStringSubmatch(m)
		if sub[2] != "" {
			return sub[2]
		}
		return strings.TrimPrefix(sub[1], "mailto:")
	})
	return unescapeMarkup.Replace(s)
}

// unescapeMarkup undoes Slack's escaping of &, < and >. A Replacer is
// immutable once built and safe for concurrent use; building one per call
// costs more than the replacing.
var unescapeMarkup = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

func clip(s string) string {
	s = strings.TrimSpace(plainText(s))
	if len(s) > maxTextLen {
		s = strings.ToValidUTF8(s[:maxTextLen], "")
	}
	return s
}
