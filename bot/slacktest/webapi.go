package slacktest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Call is one Web API request the server received. It is a plain value; Params
// must not be modified.
type Call struct {
	// Method is the Web API method, e.g. "chat.postMessage".
	Method string
	// Params holds the form fields (first value of each) or, for a JSON body, the
	// top-level fields, strings as they are and other values as compact JSON. The
	// "token" field is left out: tokens are not recorded.
	Params map[string]string
	// Auth says which token authenticated the call: "bot", "app", or "" when the
	// token was missing or unknown.
	Auth string
	// At is when the server received the call.
	At time.Time
}

// Message is a message the bot sent: through chat.postMessage,
// chat.postEphemeral, chat.update, or a slash command's response_url. It is a
// plain value; Blocks must not be modified.
type Message struct {
	// Method is the Web API method, or "response_url".
	Method string
	// Channel is the channel the message went to. A user id given to
	// chat.postMessage is resolved to the DM channel, as Slack does.
	Channel string
	// User is the user an ephemeral message is shown to (chat.postEphemeral's user,
	// or the requester of a slash command for an ephemeral response_url reply).
	User string
	// Text is the message text as sent, not unescaped.
	Text string
	// TS is the message timestamp the server assigned (chat.update: the updated
	// message's ts). Ephemeral messages get one too, as Slack's message_ts.
	TS string
	// ThreadTS is the parent's ts for a reply in a thread.
	ThreadTS string
	// Blocks is the Block Kit JSON array, nil when none was sent.
	Blocks json.RawMessage
	// Ephemeral is true for chat.postEphemeral and for response_url replies whose
	// response_type is not "in_channel".
	Ephemeral bool
	// At is when the server received the message.
	At time.Time
}

// subscriberBuffer is the capacity of a channel returned by Subscribe.
const subscriberBuffer = 256

// responseTarget is where a slash command's response_url replies go.
type responseTarget struct {
	channel, user string
}

// SetError makes the Web API method answer {"ok":false,"error":slackError}
// (before checking the token) until it is cleared with an empty slackError. For
// example SetError("auth.test", "invalid_auth") or
// SetError("apps.connections.open", "token_revoked"). The method may be
// "response_url" to make response URLs answer 404 with that text.
func (s *Server) SetError(method, slackError string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slackError == "" {
		delete(s.errs, method)
		return
	}
	s.errs[method] = slackError
}

// rateLimit is a method's pending 429 answers, set by RateLimit.
type rateLimit struct {
	times, retryAfter int
}

// RateLimit makes the next times requests for method answer as Slack does
// when the app is over a rate limit: HTTP 429 Too Many Requests, a
// Retry-After header of retryAfter seconds, and {"ok":false,"error":"ratelimited"}.
// A refused request does nothing else: no message is sent, and it is left out
// of Calls (RateLimited counts it). The method may be "response_url" for the
// response URLs of slash commands. times 0 clears it. The 429 comes before the
// token is checked, and before any error set with SetError.
func (s *Server) RateLimit(method string, times, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if times <= 0 {
		delete(s.limits, method)
		return
	}
	s.limits[method] = rateLimit{times: times, retryAfter: retryAfter}
}

// RateLimited returns how many requests for method (a Web API method or
// "response_url") were answered 429 because of RateLimit.
func (s *Server) RateLimited(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limited[method]
}

// limitedLocked reports whether a request for method is to be answered 429
// (RateLimit asked for one), with the Retry-After to send, and counts it.
// s.mu must be held.
func (s *Server) limitedLocked(method string) (retryAfter int, limited bool) {
	l, ok := s.limits[method]
	if !ok {
		return 0, false
	}
	if l.times--; l.times <= 0 {
		delete(s.limits, method)
	} else {
		s.limits[method] = l
	}
	s.limited[method]++
	s.notifyLocked()
	return l.retryAfter, true
}

// writeRateLimited answers as Slack does a request over a rate limit.
func writeRateLimited(w http.ResponseWriter, retryAfter int) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusTooManyRequests)
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "ratelimited"})
}

// Calls returns a copy of every Web API call received so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Messages returns a copy of every message the bot sent so far, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// MessageCount returns how many messages the bot has sent so far: a cheap
// len(Messages()) for tests that poll.
func (s *Server) MessageCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.messages)
}

// WaitMessage returns the first message, already sent or arriving later, for which
// match returns true. match is called with the server's lock held and must not
// call the Server. It returns ctx.Err() when ctx ends first and ErrClosed when the
// server is closed.
func (s *Server) WaitMessage(ctx context.Context, match func(Message) bool) (Message, error) {
	for {
		s.mu.Lock()
		for _, m := range s.messages {
			if match(m) {
				s.mu.Unlock()
				return m, nil
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if err := s.wait(ctx, ch); err != nil {
			return Message{}, err
		}
	}
}

// Subscribe returns a channel that receives every message sent from now on, and a
// function that ends the subscription and closes the channel. The channel is
// buffered (256 messages); when the reader falls that far behind, further
// messages are dropped for it rather than slowing the server. Close also closes
// the channel. The cancel function is safe to call more than once.
func (s *Server) Subscribe() (<-chan Message, func()) {
	ch := make(chan Message, subscriberBuffer)
	s.mu.Lock()
	if s.closed {
		close(ch)
	} else {
		s.subs[ch] = true
	}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.subs[ch] {
			delete(s.subs, ch)
			close(ch)
		}
	}
}

// addMessageLocked records m and fans it out. s.mu must be held.
func (s *Server) addMessageLocked(m Message) {
	s.messages = append(s.messages, m)
	for ch := range s.subs {
		select {
		case ch <- m:
		default: // reader is behind: drop, never block the server
		}
	}
	s.notifyLocked()
}

// handleAPI serves /api/<method>.
func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	params, err := readParams(r)
	if err != nil {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	token, fromHeader := bearer(r)
	if !fromHeader {
		token = params["token"]
	}
	delete(params, "token")

	auth := ""
	switch token {
	case s.opts.BotToken:
		auth = "bot"
	case s.opts.AppToken:
		auth = "app"
	}

	s.mu.Lock()
	if after, limited := s.limitedLocked(method); limited {
		s.mu.Unlock()
		writeRateLimited(w, after)
		return
	}
	s.calls = append(s.calls, Call{Method: method, Params: params, Auth: auth, At: s.opts.Now()})
	forced := s.errs[method]
	s.notifyLocked()
	s.mu.Unlock()

	if forced != "" {
		writeJSON(w, map[string]any{"ok": false, "error": forced})
		return
	}
	if e := s.checkAuth(method, token, fromHeader, auth); e != "" {
		writeJSON(w, map[string]any{"ok": false, "error": e})
		return
	}
	if auth == "bot" {
		w.Header().Set("X-OAuth-Scopes", strings.Join(s.opts.Scopes, ","))
	}
	var resp map[string]any
	switch method {
	case "apps.connections.open":
		resp = s.appsConnectionsOpen()
	case "auth.test":
		resp = s.authTest()
	case "users.info":
		resp = s.usersInfo(params)
	case "conversations.open":
		resp = s.conversationsOpen(params)
	case "chat.postMessage", "chat.postEphemeral", "chat.update":
		resp = s.chat(method, params)
	default:
		resp = map[string]any{"ok": false, "error": "unknown_method"}
	}
	writeJSON(w, resp)
}

// checkAuth returns the Slack error for a call with this token, or "".
func (s *Server) checkAuth(method, token string, fromHeader bool, auth string) string {
	switch {
	case token == "":
		return "not_authed"
	case method == "apps.connections.open" && auth == "bot":
		return "not_allowed_token_type"
	case method == "apps.connections.open" && auth == "app" && !fromHeader:
		// Slack's docs: this method takes the token in the Authorization header;
		// as a POST parameter it is an error.
		return "invalid_auth"
	case method == "apps.connections.open" && auth != "app":
		return "invalid_auth"
	case method != "apps.connections.open" && auth == "app":
		return "not_allowed_token_type"
	case method != "apps.connections.open" && auth != "bot":
		return "invalid_auth"
	}
	return ""
}

func (s *Server) appsConnectionsOpen() map[string]any {
	ticket := randomID(16)
	s.mu.Lock()
	s.tickets[ticket] = true
	s.connections++
	s.notifyLocked()
	s.mu.Unlock()
	u := "ws" + strings.TrimPrefix(s.URL, "http") + "/link/?ticket=" + ticket + "&app_id=" + s.opts.AppID
	return map[string]any{"ok": true, "url": u}
}

func (s *Server) authTest() map[string]any {
	s.mu.Lock()
	bot := s.users[s.opts.BotUserID]
	s.mu.Unlock()
	return map[string]any{
		"ok":                    true,
		"url":                   s.URL + "/",
		"team":                  s.opts.TeamName,
		"user":                  bot.Name,
		"team_id":               s.opts.TeamID,
		"user_id":               s.opts.BotUserID,
		"bot_id":                s.opts.BotID,
		"is_enterprise_install": false,
	}
}

func (s *Server) usersInfo(params map[string]string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ids, ok := params["users"]; ok { // GetUsersInfo asks for several at once
		var out []map[string]any
		for _, id := range strings.Split(ids, ",") {
			u, ok := s.users[id]
			if !ok {
				return map[string]any{"ok": false, "error": "user_not_found"}
			}
			out = append(out, s.userJSON(u))
		}
		return map[string]any{"ok": true, "users": out}
	}
	u, ok := s.users[params["user"]]
	if !ok {
		return map[string]any{"ok": false, "error": "user_not_found"}
	}
	return map[string]any{"ok": true, "user": s.userJSON(u)}
}

// userJSON is u as users.info has it. Like Slack, it has no email unless
// the token has users:read.email.
func (s *Server) userJSON(u User) map[string]any {
	profile := map[string]any{
		"real_name":               u.RealName,
		"real_name_normalized":    u.RealName,
		"display_name":            u.DisplayName,
		"display_name_normalized": u.DisplayName,
		"team":                    u.TeamID,
	}
	if slices.Contains(s.opts.Scopes, "users:read.email") && u.Email != "" {
		profile["email"] = u.Email
	}
	return map[string]any{
		"id":        u.ID,
		"team_id":   u.TeamID,
		"name":      u.Name,
		"deleted":   false,
		"real_name": u.RealName,
		"tz":        "Europe/London",
		"is_bot":    u.IsBot,
		"profile":   profile,
	}
}

func (s *Server) conversationsOpen(params map[string]string) map[string]any {
	users := params["users"]
	if users == "" || strings.Contains(users, ",") {
		// A group DM is not modelled; with no users Slack wants a channel.
		return map[string]any{"ok": false, "error": "invalid_arguments"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[users]; !ok {
		return map[string]any{"ok": false, "error": "user_not_found"}
	}
	id := s.DMChannel(users)
	already := s.openedDMs[id]
	s.openedDMs[id] = true
	resp := map[string]any{"ok": true, "channel": map[string]any{"id": id}}
	if already {
		resp["no_op"] = true
		resp["already_open"] = true
	}
	return resp
}

// chat serves chat.postMessage, chat.postEphemeral and chat.update.
func (s *Server) chat(method string, params map[string]string) map[string]any {
	channel := params["channel"]
	if channel == "" {
		return map[string]any{"ok": false, "error": "channel_not_found"}
	}
	if strings.HasPrefix(channel, "U") || strings.HasPrefix(channel, "W") {
		channel = s.DMChannel(channel) // Slack posts a user id's messages in the DM
	}
	text, blocks := params["text"], params["blocks"]
	if text == "" && blocks == "" && params["attachments"] == "" {
		return map[string]any{"ok": false, "error": "no_text"}
	}
	var rawBlocks json.RawMessage
	if blocks != "" {
		if !json.Valid([]byte(blocks)) {
			return map[string]any{"ok": false, "error": "invalid_blocks_format"}
		}
		rawBlocks = json.RawMessage(blocks)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	m := Message{
		Method:   method,
		Channel:  channel,
		Text:     text,
		ThreadTS: params["thread_ts"],
		Blocks:   rawBlocks,
		At:       s.opts.Now(),
	}
	switch method {
	case "chat.postEphemeral":
		if params["user"] == "" {
			return map[string]any{"ok": false, "error": "user_not_found"}
		}
		m.User = params["user"]
		m.Ephemeral = true
		m.TS = s.tsLocked()
		s.addMessageLocked(m)
		return map[string]any{"ok": true, "message_ts": m.TS}
	case "chat.update":
		ts := params["ts"]
		if s.posted[ts] != channel {
			return map[string]any{"ok": false, "error": "message_not_found"}
		}
		m.TS = ts
		s.addMessageLocked(m)
		return map[string]any{"ok": true, "channel": channel, "ts": ts, "text": text, "message": s.messageJSON(m)}
	default:
		m.TS = s.tsLocked()
		s.posted[m.TS] = channel
		s.addMessageLocked(m)
		return map[string]any{"ok": true, "channel": channel, "ts": m.TS, "message": s.messageJSON(m)}
	}
}

// messageJSON is the "message" object chat.postMessage and chat.update answer.
func (s *Server) messageJSON(m Message) map[string]any {
	out := map[string]any{
		"type":    "message",
		"subtype": "bot_message",
		"text":    m.Text,
		"ts":      m.TS,
		"user":    s.opts.BotUserID,
		"bot_id":  s.opts.BotID,
		"team":    s.opts.TeamID,
	}
	if m.ThreadTS != "" {
		out["thread_ts"] = m.ThreadTS
	}
	if m.Blocks != nil {
		out["blocks"] = m.Blocks
	}
	return out
}

// handleResponseURL serves the response_url of a slash command. Like Slack's, it
// needs no token: the URL is the secret.
func (s *Server) handleResponseURL(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	target, ok := s.responseURLs[r.URL.Path]
	after, limited := 0, false
	if ok && r.Method == http.MethodPost {
		after, limited = s.limitedLocked("response_url")
	}
	forced := s.errs["response_url"]
	s.mu.Unlock()
	if limited {
		writeRateLimited(w, after)
		return
	}
	if r.Method != http.MethodPost || !ok || forced != "" {
		msg := forced
		if msg == "" {
			msg = "invalid_token"
		}
		http.Error(w, msg, http.StatusNotFound)
		return
	}
	var body struct {
		Text         string          `json:"text"`
		Blocks       json.RawMessage `json:"blocks"`
		ResponseType string          `json:"response_type"`
		ThreadTS     string          `json:"thread_ts"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	if bytes.Equal(bytes.TrimSpace(body.Blocks), []byte("null")) {
		body.Blocks = nil
	}
	s.mu.Lock()
	m := Message{
		Method:    "response_url",
		Channel:   target.channel,
		Text:      body.Text,
		ThreadTS:  body.ThreadTS,
		Blocks:    body.Blocks,
		Ephemeral: body.ResponseType != "in_channel",
		At:        s.opts.Now(),
		TS:        s.tsLocked(),
	}
	if m.Ephemeral {
		m.User = target.user
	}
	s.addMessageLocked(m)
	s.mu.Unlock()
	writeJSON(w, map[string]any{"ok": true})
}

// readParams reads a form-encoded or JSON request (or a GET query) into a flat map.
func readParams(r *http.Request) (map[string]string, error) {
	params := make(map[string]string)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(body)) == 0 { // apps.connections.open sends no body
			return params, nil
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		for k, v := range m {
			var str string
			if json.Unmarshal(v, &str) == nil {
				params[k] = str
				continue
			}
			var buf bytes.Buffer
			if json.Compact(&buf, v) == nil {
				params[k] = buf.String()
			}
		}
		return params, nil
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	for k, v := range r.Form {
		if len(v) > 0 {
			params[k] = v[0]
		}
	}
	return params, nil
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok && t != "" {
		return t, true
	}
	return "", false
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}
