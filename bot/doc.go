// Package bot is forcebind's Slack side: one Socket Mode connection, an
// event loop that acknowledges every envelope at once, and a bounded pool of
// workers that run the users' commands against Salesforce as those users.
//
// The loop never blocks on work: it acks (AckCtx with a deadline), drops
// duplicates (Slack retries an event it thinks was not acked), drops the bot's
// own messages, other bots', edits and other teams' events, and hands the rest
// to the pool. The pool runs at most Workers users' work at once and keeps
// each user's messages in order; when it is full the user is told to try
// again instead of hearing nothing.
//
// Bot.Ready reports whether the Socket Mode connection is up, for a
// readiness probe. An Observer, when configured, hears of every frame, ack,
// command and connection change, for metrics; the package itself does not
// import a metrics library.
//
// The package declares what it needs of the binding flow (Auth) in the
// words of package auth/account: a requester, a token-free Account, and a
// salesforce client for the requester. It imports neither auth nor the
// store, and no value it is given exposes a token (the client keeps its
// token source to itself), so no token can reach a reply. Messenger
// implements account.Notifier over the Slack Web API. NewAPI builds the
// Web API client both use, which waits out Slack's rate limits (429 and
// Retry-After) within each call's deadline, and never repeats a post that
// may have gone out. A slash command's response_url is posted to only on
// Slack's hosts and never logged. bot/slacktest is a fake Slack for tests
// and the demo.
package bot
