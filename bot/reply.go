package bot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/slack-go/slack"

	"github.com/forcebind/forcebind/auth/account"
	"github.com/forcebind/forcebind/salesforce"
)

// reply is an answer and where it goes. Every reply reaches only the person
// who asked: a DM, an ephemeral message in a channel, or an ephemeral slash
// command response.
type reply struct {
	surface     surface
	channel     string
	user        string
	responseURL string
	text        string // the notification and fallback text
	blocks      []slack.Block
}

func (in *incoming) reply(text string, blocks ...slack.Block) reply {
	return reply{surface: in.Surface, channel: in.ChannelID, user: in.UserID, responseURL: in.ResponseURL, text: text, blocks: blocks}
}

// maxResults is how many records one answer shows; Slack allows 50 blocks.
const maxResults = 20

// results renders records as Block Kit: one section per record with its type,
// name (linked to the record), and key fields.
func (in *incoming) results(words string, rs []salesforce.Result) reply {
	if len(rs) == 0 {
		return in.reply(fmt.Sprintf("Nothing in Salesforce matches %s that you can see.", code(words)))
	}
	shown := rs
	if len(shown) > maxResults {
		shown = shown[:maxResults]
	}
	head := fmt.Sprintf("%d result%s for %s", len(rs), plural(len(rs)), code(words))
	blocks := make([]slack.Block, 0, len(shown)+2)
	blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*"+head+"*", false, false), nil, nil))
	// One builder per record and one for the summary: this runs for every
	// answer, and per-field strings and joins were most of its allocations.
	var names strings.Builder
	for i, r := range shown {
		var sb strings.Builder
		sb.Grow(128)
		sb.WriteString("*")
		sb.WriteString(link(r.URL, cmp.Or(r.Name, r.ID)))
		sb.WriteString("*  ·  _")
		sb.WriteString(escape(r.Type))
		sb.WriteString("_")
		first := true
		for _, f := range r.Fields {
			if f.Value == "" {
				continue
			}
			if first {
				sb.WriteString("\n")
				first = false
			} else {
				sb.WriteString("  ·  ")
			}
			sb.WriteString(escape(f.Label))
			sb.WriteString(": ")
			sb.WriteString(escape(f.Value))
		}
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, sb.String(), false, false), nil, nil))
		if i > 0 {
			names.WriteString(", ")
		}
		names.WriteString(escape(r.Name))
		names.WriteString(" (")
		names.WriteString(escape(r.Type))
		names.WriteString(")")
	}
	if len(rs) > len(shown) {
		blocks = append(blocks, slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType,
			fmt.Sprintf("Showing the first %d. Add words to narrow it down.", len(shown)), false, false)))
	}
	return in.reply(head+": "+names.String(), blocks...)
}

// linkReply offers the binding link. It says the link is personal and when
// it stops working.
func (in *incoming) linkReply(intro string, l account.Link) reply {
	text := linkText(intro, l)
	label := "Connect to Salesforce"
	if l.UserCode != "" {
		label = "Open Salesforce" // the device flow: the page where the code is typed
	}
	btn := slack.NewButtonBlockElement("connect", "connect", slack.NewTextBlockObject(slack.PlainTextType, label, false, false))
	btn.URL = l.URL
	btn.Style = slack.StylePrimary
	return in.reply(text,
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil),
		slack.NewActionBlock("connect", btn))
}

func linkText(intro string, l account.Link) string {
	if intro != "" {
		intro += " "
	}
	if l.UserCode != "" {
		return intro + fmt.Sprintf("Open %s, sign in, and enter the code %s. The code is only for you and works until %s. Don't share it: whoever enters it links *their* Salesforce account to *your* Slack user. I'll message you here once you're connected.",
			"<"+l.URL+">", code(l.UserCode), slackDate(l.Expires))
	}
	return intro + fmt.Sprintf("%s. The link is only for you: it works once, until %s. Don't share it: whoever uses it links *their* Salesforce account to *your* Slack user.",
		link(l.URL, "Connect your Salesforce account"), slackDate(l.Expires))
}

// Messenger sends forcebind's messages through the Slack Web API. It
// implements account.Notifier and is safe for concurrent use.
type Messenger struct {
	api     *API
	hooks   *http.Client // for response URLs: never follows a redirect
	origins []string     // where a response URL may point
	log     zerolog.Logger
}

var _ account.Notifier = (*Messenger)(nil)

// NewMessenger returns a Messenger that posts with api (built by NewAPI, so
// that rate limits are waited out). hc carries slash command responses; nil
// means http.DefaultClient's settings. apiURL is SLACK_API_URL: a response
// URL is posted to only on Slack's hooks host or on apiURL's origin (the
// fake Slack of tests and the demo); any other goes by chat.postEphemeral.
func NewMessenger(api *API, hc *http.Client, apiURL string, log zerolog.Logger) *Messenger {
	hooks := &http.Client{}
	if hc != nil {
		c := *hc
		hooks = &c
	}
	hooks.CheckRedirect = noRedirects
	return &Messenger{api: api, hooks: hooks, origins: responseOrigins(apiURL), log: log}
}

// Linked DMs the Slack user of a the Salesforce identity now linked.
func (m *Messenger) Linked(ctx context.Context, a account.Account) error {
	text := fmt.Sprintf("You're connected to Salesforce as %s (org %s). I'll answer as that user from now on. Send `disconnect` to undo it.",
		bold(a.Username), code(a.OrgID))
	return m.send(ctx, reply{surface: surfaceDM, channel: a.UserID, text: text})
}

// Relink DMs who a fresh link after their binding ended for why.
func (m *Messenger) Relink(ctx context.Context, who account.Requester, l account.Link, why account.RelinkReason) error {
	in := &incoming{Surface: surfaceDM, ChannelID: who.UserID, UserID: who.UserID}
	return m.send(ctx, in.linkReply(relinkText(why), l))
}

// relinkText opens the DM that carries a fresh link.
func relinkText(why account.RelinkReason) string {
	switch why {
	case account.RelinkLoginMoved:
		return "Whoever runs forcebind has moved it to another Salesforce, so your connection to the old one has been removed (nothing was sent to either). Connect again to keep using me."
	case account.RelinkOrgNotAllowed:
		return "Whoever runs forcebind no longer lets it work with your Salesforce org, so your connection has been removed and its access revoked at Salesforce. If you also have a user in an org it works with, connect again with it."
	}
	return "Your Salesforce connection has ended (it was revoked or expired), so I can't answer as you any more."
}

// LinkFailed DMs who why the link they started bound nothing.
func (m *Messenger) LinkFailed(ctx context.Context, who account.Requester, why account.Failure) error {
	var text string
	switch why {
	case account.FailureEmailMismatch:
		text = "I did not connect that Salesforce account: its email address is not the one on your Slack profile, or Salesforce has not verified it, so I signed it out again. Sign in to Salesforce as yourself, then send `connect` to try again."
	case account.FailureNoSlackEmail:
		text = "I could not read the email address on your Slack profile, so I could not check it against Salesforce's and nothing was connected. Please tell whoever runs forcebind."
	case account.FailureOrgNotAllowed:
		text = "I did not connect that Salesforce account: it is in a Salesforce org this forcebind is not set up for, so I signed it out again. If you signed in to the wrong Salesforce (a sandbox, or another company's), sign out there, then send `connect` and sign in to your company's org."
	case account.FailureInterrupted:
		text = "forcebind was restarted before your Salesforce connect code was used, so that code no longer works and nothing was connected. Send `connect` for a new one."
	case account.FailureDenied:
		text = "The Salesforce sign-in was denied, so nothing was connected. Send `connect` to try again."
	case account.FailureExpired:
		text = "Your Salesforce connect code expired before it was used, so nothing was connected. Send `connect` for a new one."
	default:
		text = "Something went wrong while connecting your Salesforce account, so nothing was connected. Please send `connect` to try again."
	}
	return m.send(ctx, reply{surface: surfaceDM, channel: who.UserID, text: text})
}

// replyContext bounds sending the answer to a command that ran under ctx,
// a child of work. The answer has until ctx's deadline, so a rate limit can
// be waited out while the person's request still has time, but at least
// replyTimeout, and it is not cancelled with ctx: a command that ran out of
// time, or was cancelled when the shutdown's drain ended, can still say so.
func replyContext(work, ctx context.Context) (context.Context, context.CancelFunc) {
	detached := context.WithoutCancel(ctx)
	if d, ok := ctx.Deadline(); ok && work.Err() == nil && time.Until(d) > replyTimeout {
		return context.WithDeadline(detached, d)
	}
	return context.WithTimeout(detached, replyTimeout)
}

// send delivers r to where it belongs.
func (m *Messenger) send(ctx context.Context, r reply) error {
	if r.surface == surfaceSlash && r.responseURL != "" {
		u, err := m.responseURL(r.responseURL)
		if err == nil {
			msg := &slack.WebhookMessage{ResponseType: slack.ResponseTypeEphemeral, Text: r.text}
			if len(r.blocks) > 0 {
				msg.Blocks = &slack.Blocks{BlockSet: r.blocks}
			}
			if err := m.respond(ctx, u, msg); err != nil {
				return fmt.Errorf("slash command response: %w", err)
			}
			return nil
		}
		// Only the host is logged: the URL is a capability to post.
		m.log.Warn().Err(err).Str("channel", r.channel).Msg("slash command response_url refused; answering with chat.postEphemeral")
	}
	msg := chatMessage{Channel: r.channel, Text: r.text, Blocks: r.blocks}
	method := "chat.postMessage"
	if r.surface != surfaceDM {
		method, msg.User = "chat.postEphemeral", r.user
	}
	return m.api.postChat(ctx, method, msg)
}

// DisplayName returns the Slack user's real name (or display name) and
// handle, "Jane Doe (@jane)", for the confirmation page, or "" when Slack
// does not say. It implements account.Notifier.
func (m *Messenger) DisplayName(ctx context.Context, userID string) string {
	u, err := m.api.GetUserInfoContext(ctx, userID)
	if err != nil {
		m.log.Debug().Err(err).Str("user", userID).Msg("users.info failed; the page shows the member ID")
		return ""
	}
	// Display names are chosen by their owner and need not be unique, so the
	// page gets the real name and the handle as well (and shows the member ID
	// beside them).
	name := cmp.Or(u.RealName, u.Profile.DisplayName)
	if u.Name != "" {
		name = strings.TrimSpace(name + " (@" + u.Name + ")")
	}
	return name
}

// Email returns the email address on the Slack user's profile, or "" when
// it has none. It needs the users:read.email scope, and implements
// account.Notifier.
func (m *Messenger) Email(ctx context.Context, userID string) (string, error) {
	u, err := m.api.GetUserInfoContext(ctx, userID)
	if err != nil {
		return "", wrapSlack("users.info", err)
	}
	return strings.TrimSpace(u.Profile.Email), nil
}

func wrapSlack(method string, err error) error {
	if err == nil {
		return nil
	}
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return fmt.Errorf("%s: rate limited for %s: %w", method, rl.RetryAfter, err)
	}
	return fmt.Errorf("%s: %w", method, err)
}

// escape makes text safe inside Slack mrkdwn: &, < and > are control
// characters. It runs for every field of every answer, so text without them
// (nearly all of it) is returned as it is, without allocating; building a
// strings.Replacer per call was a fifth of the daemon's CPU (issue 11).
func escape(s string) string {
	i := strings.IndexAny(s, "&<>")
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for _, c := range []byte(s[i:]) {
		switch c {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// link renders a mrkdwn link; the URL must be one forcebind made.
func link(url, text string) string {
	return "<" + url + "|" + strings.ReplaceAll(escape(text), "|", "¦") + ">"
}

func bold(s string) string { return "*" + escape(s) + "*" }

func code(s string) string { return "`" + strings.ReplaceAll(escape(s), "`", "'") + "`" }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
