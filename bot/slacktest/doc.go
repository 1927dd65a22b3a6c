// Package slacktest is a fake Slack for tests and for `forcebind demo`: the Web API
// methods forcebind calls and a Socket Mode websocket, on one local HTTP server.
//
// It is modelled on net/http/httptest. NewServer listens on 127.0.0.1:0 and exposes
// URL and APIURL; the real slack-go client talks to it unmodified:
//
//	srv := slacktest.NewServer(slacktest.Options{})
//	defer srv.Close()
//	api := slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL),
//		slack.OptionAppLevelToken(srv.AppToken()))
//	client := socketmode.New(api)
//
// The server speaks Slack's wire formats: apps.connections.open hands out a
// single-use websocket URL, the websocket greets with a hello frame and pings the
// client, events arrive in events_api, slash_commands and interactive envelopes, and
// the client's acks are read back and recorded. Tests drive the bot with SendDM,
// SendMention, SendSlashCommand, SendInteractive, Redeliver, SendRaw, Disconnect and
// DropConnection, and observe it with Acks, Calls and Messages (or wait for them with
// WaitAck and WaitMessage). Envelopes sent while no client is connected are queued and
// delivered, in order, after the next hello.
//
// Web API methods served: apps.connections.open, auth.test, users.info,
// conversations.open, chat.postMessage, chat.postEphemeral, chat.update, and the
// response_url of each slash command. Any other method answers unknown_method.
// SetError makes a method fail as Slack's do, and RateLimit makes it answer 429
// with a Retry-After header a given number of times, as Slack does when an app
// sends too much.
//
// Every method of Server is safe for concurrent use. Close shuts the websockets,
// stops the HTTP server and waits for every goroutine the server started.
package slacktest
