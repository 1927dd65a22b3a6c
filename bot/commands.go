package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/forcebind/forcebind/auth/account"
	"github.com/forcebind/forcebind/salesforce"
)

// command is one thing a person can ask for. The table is the single source
// of the help text and of what DMs, mentions and /salesforce accept.
type command struct {
	Name    string
	Aliases []string
	Args    string // usage of the arguments, "" when it takes none
	Help    string
	Object  string // for the per-object commands: the Salesforce object searched
	run     func(b *Bot, ctx context.Context, in *incoming, args string) (reply, string)
}

// findLimit is how many records a per-object command shows.
const findLimit = 10

// replyTimeout bounds sending one answer to Slack.
const replyTimeout = 10 * time.Second

func commands() []command {
	cmds := []command{
		{Name: "help", Help: "show this help", run: (*Bot).cmdHelp},
		{Name: "connect", Help: "link your Slack user to your Salesforce user", run: (*Bot).cmdConnect},
		{Name: "disconnect", Help: "unlink, and revoke forcebind's access at Salesforce", run: (*Bot).cmdDisconnect},
		{Name: "whoami", Help: "show which Salesforce user you are linked to", run: (*Bot).cmdWhoami},
		{Name: "search", Args: "<words>", Help: "search accounts, contacts, opportunities, leads and cases at once", run: (*Bot).cmdSearch},
	}
	for _, o := range salesforce.Objects() {
		name := strings.ToLower(o.Name)
		object := o.Name
		c := command{Name: name, Args: "<words>", Object: object, Help: "find " + strings.ToLower(pluralLabel(o.Label)) + " by name",
			run: func(b *Bot, ctx context.Context, in *incoming, args string) (reply, string) {
				return b.cmdFind(ctx, in, name, object, args)
			}}
		if name == "opportunity" {
			c.Aliases = []string{"opp"}
		}
		if name == "case" {
			c.Help = "find cases by number or subject"
		}
		cmds = append(cmds, c)
	}
	return cmds
}

func index(cmds []command) map[string]*command {
	m := make(map[string]*command)
	for i := range cmds {
		c := &cmds[i]
		m[c.Name] = c
		for _, a := range c.Aliases {
			m[a] = c
		}
	}
	return m
}

func pluralLabel(label string) string {
	if strings.HasSuffix(label, "y") {
		return strings.TrimSuffix(label, "y") + "ies"
	}
	if strings.HasSuffix(label, "s") {
		return label + "es"
	}
	return label + "s"
}

// splitCommand splits "Search  acme corp" into "search" and "acme corp".
func splitCommand(text string) (name, args string) {
	text = strings.TrimSpace(text)
	name, args, _ = strings.Cut(text, " ")
	return strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(args)
}

// lookup finds the command a typed name asks for, and its name in the table
// (the name of an alias's command; "unknown", with nil, when there is none).
// An empty name asks for help.
func (b *Bot) lookup(typed string) (string, *command) {
	if typed == "" {
		typed = "help"
	}
	if c := b.byName[typed]; c != nil {
		return c.Name, c
	}
	return "unknown", nil
}

// handle runs one message end to end under HandlerTimeout, logs one line
// and reports it to the Observer (a panic too, on its way to the pool).
func (b *Bot) handle(work context.Context, in *incoming) {
	start := b.now()
	ctx, cancel := context.WithTimeout(work, b.cfg.HandlerTimeout)
	defer cancel()
	typed, args := splitCommand(in.Text)
	name, c := b.lookup(typed)
	var r reply
	outcome := "panic" // until the command returns
	defer func() { b.obs.CommandDone(name, outcome, b.now().Sub(start)) }()
	if c == nil {
		r, outcome = in.reply(fmt.Sprintf("I don't know %s. Send `help` to see what I can do.", code(typed))), "unknown_command"
	} else {
		r, outcome = c.run(b, ctx, in, args)
	}
	sendCtx, cancelSend := replyContext(work, ctx)
	defer cancelSend()
	if err := b.msg.send(sendCtx, r); err != nil {
		b.log.Warn().Err(err).Str("team", in.TeamID).Str("user", in.UserID).Msg("reply not sent")
		outcome += "+reply_failed"
	}
	b.log.Info().Str("team", in.TeamID).Str("user", in.UserID).Str("surface", in.Surface.String()).
		Str("command", name).Str("outcome", outcome).Dur("duration", b.now().Sub(start)).Msg("handled")
}

func (b *Bot) cmdHelp(_ context.Context, in *incoming, _ string) (reply, string) {
	var sb strings.Builder
	sb.WriteString("I look things up in Salesforce *as you*: you see what your Salesforce user may see. Send me:\n")
	for _, c := range b.cmds {
		names := append([]string{c.Name}, c.Aliases...)
		usage := strings.Join(names, "`/`")
		if c.Args != "" {
			usage += " " + c.Args
		}
		fmt.Fprintf(&sb, "• `%s` — %s\n", usage, c.Help)
	}
	sb.WriteString("In a channel, mention me (`@forcebind search acme`) or use `/salesforce search acme`; only you see my answers there.")
	return in.reply(sb.String()), "ok"
}

func (b *Bot) cmdConnect(ctx context.Context, in *incoming, _ string) (reply, string) {
	a, err := b.auth.Account(ctx, b.requester(in))
	switch {
	case err == nil:
		return in.reply(fmt.Sprintf("You are already connected as %s. To switch accounts, send `disconnect` first.", bold(a.Username))), "already_connected"
	case errors.Is(err, account.ErrUnreadable):
		// The link's binding replaces the record that cannot be opened.
		b.log.Warn().Err(err).Str("team", in.TeamID).Str("user", in.UserID).Msg("binding record cannot be opened; sending a link that replaces it")
	case !errors.Is(err, account.ErrNotLinked):
		return b.failure(in, err)
	}
	return b.sendLink(ctx, in, "")
}

func (b *Bot) cmdDisconnect(ctx context.Context, in *incoming, _ string) (reply, string) {
	u, err := b.auth.Unlink(ctx, b.requester(in))
	switch {
	case errors.Is(err, account.ErrNotLinked):
		return in.reply("You are not connected to Salesforce. Nothing to do."), "not_connected"
	case err != nil:
		return b.failure(in, err)
	case u.NotRevoked == account.RevokeUnreadable:
		return in.reply("Disconnected. forcebind could no longer read your stored Salesforce connection, so it could not revoke its access at Salesforce: remove forcebind under *Settings → Connected Apps OAuth Usage* in Salesforce."), "ok_unreadable"
	case u.NotRevoked == account.RevokeLoginMoved:
		return in.reply(fmt.Sprintf("Disconnected from %s. That connection was made with a Salesforce forcebind no longer uses, so nothing was sent there to revoke it: remove forcebind under *Settings → Connected Apps OAuth Usage* in that Salesforce.", bold(u.Account.Username))), "ok_unrevoked"
	case !u.Revoked:
		return in.reply(fmt.Sprintf("Disconnected from %s. Salesforce could not be reached to revoke the access, so also remove forcebind under *Settings → Connected Apps OAuth Usage* in Salesforce.", bold(u.Account.Username))), "ok_unrevoked"
	}
	return in.reply(fmt.Sprintf("Disconnected from %s, and forcebind's access was revoked at Salesforce.", bold(u.Account.Username))), "ok"
}

func (b *Bot) cmdWhoami(ctx context.Context, in *incoming, _ string) (reply, string) {
	a, err := b.auth.Account(ctx, b.requester(in))
	if errors.Is(err, account.ErrNotLinked) {
		return in.reply("You are not connected to Salesforce. Send `connect` to link your account."), "not_connected"
	}
	if err != nil {
		return b.failure(in, err)
	}
	return in.reply(fmt.Sprintf("You are connected to Salesforce as %s (org %s, %s) since %s.",
		bold(a.Username), code(a.OrgID), escape(a.InstanceURL), slackDate(a.LinkedAt))), "ok"
}

func (b *Bot) cmdSearch(ctx context.Context, in *incoming, args string) (reply, string) {
	if args == "" {
		return in.reply("What should I search for? For example: `search acme`."), "usage"
	}
	return b.withSalesforce(ctx, in, func(sf *salesforce.Client) ([]salesforce.Result, error) {
		return sf.Search(ctx, args)
	}, args)
}

func (b *Bot) cmdFind(ctx context.Context, in *incoming, name, object, args string) (reply, string) {
	if args == "" {
		return in.reply(fmt.Sprintf("Which %s? For example: `%s acme`.", strings.ToLower(object), name)), "usage"
	}
	return b.withSalesforce(ctx, in, func(sf *salesforce.Client) ([]salesforce.Result, error) {
		return sf.Find(ctx, object, args, findLimit)
	}, args)
}

// withSalesforce runs query as the person's Salesforce user, or sends them a
// link when they have none.
func (b *Bot) withSalesforce(ctx context.Context, in *incoming, query func(*salesforce.Client) ([]salesforce.Result, error), words string) (reply, string) {
	sf, _, err := b.auth.Client(ctx, b.requester(in))
	if errors.Is(err, account.ErrNotLinked) {
		return b.sendLink(ctx, in, "To look things up in Salesforce as you, I need you to connect your account first.")
	}
	if err != nil {
		return b.failure(in, err)
	}
	results, err := query(sf)
	if err != nil {
		return b.failure(in, err)
	}
	return in.results(words, results), "ok"
}

// sendLink creates a binding link and answers with it. The answer goes only
// to the requester: a DM, an ephemeral message, or a slash command response.
func (b *Bot) sendLink(ctx context.Context, in *incoming, intro string) (reply, string) {
	link, err := b.auth.Start(ctx, b.requester(in))
	if err != nil {
		return b.failure(in, err)
	}
	return in.linkReply(intro, link), "link_sent"
}

// requester describes in's sender for the binding flow. auth looks up the
// display name itself, and only when it makes a link.
func (b *Bot) requester(in *incoming) account.Requester {
	return account.Requester{TeamID: in.TeamID, TeamName: b.self.team, UserID: in.UserID, ChannelID: in.ChannelID}
}

// failure turns an error into plain words for the person and a log line for
// the operator. When a binding ended and the private message with its
// fresh link could not be sent, the answer carries the link instead: it
// goes only to the person, as every answer does.
func (b *Bot) failure(in *incoming, err error) (reply, string) {
	text, outcome := explain(err)
	l := b.log.Warn()
	// These need the operator: a failure of forcebind's own, its app
	// settings, an answer it could not verify, a record it cannot open.
	switch outcome {
	case "error", "client_rejected", "refresh_rejected", "refresh_spent", "unreadable":
		l = b.log.Error()
	}
	l.Err(err).Str("team", in.TeamID).Str("user", in.UserID).Str("outcome", outcome).Msg("command failed")
	var ended *account.RelinkError
	if errors.As(err, &ended) && !ended.Sent && ended.Link.URL != "" {
		return in.linkReply(text, ended.Link), outcome
	}
	return in.reply(text), outcome
}

// explain says what went wrong in a sentence a person can act on.
func explain(err error) (text, outcome string) {
	var (
		apiErr      *salesforce.APIError
		notReadable *salesforce.NotReadableError
		ended       *account.RelinkError
	)
	// The binding's own errors come first. A failed refresh keeps the 401
	// that started it only as text, so it cannot be matched here by
	// mistake; the order still puts what the binding says first.
	switch {
	case errors.As(err, &ended):
		return relinkAnswer(ended)
	case errors.Is(err, account.ErrOrgNotAllowed):
		return endedText(account.RelinkOrgNotAllowed) + " I've sent you a new link, privately.", "org_not_allowed"
	case errors.Is(err, account.ErrLoginMoved):
		return endedText(account.RelinkLoginMoved) + " I've sent you a new link, privately.", "login_moved"
	case errors.Is(err, account.ErrRelinkRequired):
		return endedText(account.RelinkGrantEnded) + " I've sent you a new link, privately.", "relink"
	case errors.Is(err, account.ErrNotLinked):
		return "You are not connected to Salesforce any more. Send `connect` to link your account.", "not_connected"
	case errors.Is(err, account.ErrUnreadable):
		return "forcebind can no longer read your stored Salesforce connection. Send `connect` to link your account again.", "unreadable"
	case errors.Is(err, account.ErrClientRejected):
		return "Salesforce rejected forcebind's own app settings. This is not your doing: please tell whoever runs forcebind.", "client_rejected"
	case errors.Is(err, account.ErrRestricted):
		return "Salesforce refused to renew your session: your Salesforce user may not sign in from here or at this hour (login IP ranges or login hours). You are still connected; try again within those limits, or ask your Salesforce administrator.", "login_restricted"
	case errors.Is(err, account.ErrTimeout):
		return "Salesforce did not answer in time while I renewed your session. You are still connected; please try again.", "refresh_timeout"
	case errors.Is(err, account.ErrRefreshSpent):
		return "I could not verify Salesforce's answer while renewing your session, so I did not use it, and Salesforce had already retired your previous session for it: your connection can no longer be renewed. Whoever runs forcebind has been told (it is in the log). The next time you ask me something I'll send you a link to connect again.", "refresh_spent"
	case errors.Is(err, account.ErrRefreshRejected):
		return "I could not verify Salesforce's answer while renewing your session, so I did not use it. You are still connected; whoever runs forcebind has been told (it is in the log). Please try again later.", "refresh_rejected"
	case errors.Is(err, account.ErrTransient):
		return "I couldn't renew your Salesforce session just now. Please try again in a minute.", "refresh_failed"
	case errors.Is(err, salesforce.ErrRateLimited):
		return "Your Salesforce org has used up its API requests for now. Please try again later.", "rate_limited"
	case errors.Is(err, salesforce.ErrUnavailable):
		return "Salesforce isn't answering right now. Please try again in a minute.", "salesforce_down"
	case errors.Is(err, salesforce.ErrSessionExpired):
		return "Salesforce did not accept your session. Send `disconnect`, then `connect` to link again.", "session_rejected"
	case errors.Is(err, salesforce.ErrInvalidInput):
		return "I can't search for that. Try plain words, for example `search acme`.", "bad_input"
	case errors.Is(err, context.DeadlineExceeded):
		return "Salesforce took too long to answer. Please try again.", "timeout"
	case errors.As(err, &notReadable):
		return "Your Salesforce user cannot see " + strings.ToLower(pluralLabel(notReadable.Label)) + ". Your Salesforce administrator can give you access.", "not_readable"
	case errors.As(err, &apiErr):
		return "Salesforce refused the request: " + escape(apiErr.Message), "salesforce_error"
	case errors.Is(err, account.ErrStoreUnusable):
		return "Something is wrong on forcebind's side. It has been logged.", "error"
	}
	return "Something went wrong on forcebind's side. It has been logged; please try again.", "error"
}

// relinkAnswer says that a binding ended, and where the fresh link is:
// sent privately, in this answer (linkReply appends it), or, when none
// could be made, that connect makes one.
func relinkAnswer(e *account.RelinkError) (text, outcome string) {
	outcome = "relink"
	switch e.Why {
	case account.RelinkLoginMoved:
		outcome = "login_moved"
	case account.RelinkOrgNotAllowed:
		outcome = "org_not_allowed"
	}
	text = endedText(e.Why)
	switch {
	case e.Sent:
		return text + " I've sent you a new link, privately.", outcome
	case e.Link.URL != "":
		return text + " Here is a new link:", outcome
	}
	return text + " Send `connect` to link your account again.", outcome
}

// endedText says why a binding ended, for the answer of the command that
// found it ended.
func endedText(why account.RelinkReason) string {
	switch why {
	case account.RelinkLoginMoved:
		return "Whoever runs forcebind has moved it to another Salesforce, so your old connection no longer applies."
	case account.RelinkOrgNotAllowed:
		return "Whoever runs forcebind no longer lets it work with your Salesforce org, so your connection has been removed and its access revoked at Salesforce."
	}
	return "Your Salesforce connection has ended (it was revoked or expired)."
}

// busyText answers work the pool had no room for.
const busyText = "I'm busy with a lot of requests right now. Please try again in a moment."

// slackDate renders t in the reader's own time zone.
func slackDate(t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}
