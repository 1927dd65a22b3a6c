package slacktest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// ErrClosed is returned by WaitAck and WaitMessage when the server is closed
// while they wait.
var ErrClosed = errors.New("slacktest: server closed")

// Delivery identifies an envelope the server queued: EnvelopeID is what the client
// must ack; EventID is the Events API event_id (empty for slash commands and
// interactive payloads, which have none). It is a plain value, safe to copy.
type Delivery struct {
	EnvelopeID, EventID string
}

// Ack is an acknowledgement the client sent over the websocket: any JSON object
// with an "envelope_id" field. It is a plain value; Payload must not be modified.
type Ack struct {
	// EnvelopeID is the envelope the client acknowledged; empty when the client
	// acked a frame that has none (hello, disconnect), which it should not do.
	EnvelopeID string
	// Payload is the optional response payload ({"envelope_id":…,"payload":…}), nil
	// when the client sent none.
	Payload json.RawMessage
	// At is when the server read the ack.
	At time.Time
	// Latency is At minus the time the envelope was written to the websocket, zero
	// if the server never wrote that envelope.
	Latency time.Duration
}

// frame is one queued websocket text message.
type frame struct {
	envelopeID string // empty for raw frames
	data       []byte
}

// envelope is what was sent under an envelope id, kept for Redeliver.
type envelope struct {
	Type                   string          `json:"type"`
	EnvelopeID             string          `json:"envelope_id"`
	Payload                json.RawMessage `json:"payload"`
	AcceptsResponsePayload bool            `json:"accepts_response_payload"`
	RetryAttempt           int             `json:"retry_attempt"`
	RetryReason            string          `json:"retry_reason"`
	eventID                string
}

// wsConn is one Socket Mode websocket. Writes are serialized by mu because
// gorilla/websocket allows one concurrent writer; control frames (ping) may be
// written concurrently through WriteControl.
type wsConn struct {
	ws       *websocket.Conn
	mu       sync.Mutex
	done     chan struct{} // closed by kill
	killOnce sync.Once
	// draining is set (under Server.mu) once a disconnect frame was sent: like
	// Slack, the server sends no more envelopes on a connection it asked the client
	// to leave.
	draining bool
}

func (c *wsConn) write(data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeLocked(data)
}

// writeLocked writes one text message; c.mu must be held.
func (c *wsConn) writeLocked(data []byte) error {
	if err := c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.TextMessage, data)
}

// kill closes the network connection without a close frame.
func (c *wsConn) kill() {
	c.killOnce.Do(func() {
		close(c.done)
		_ = c.ws.Close()
	})
}

// handleLink serves the websocket URL handed out by apps.connections.open.
func (s *Server) handleLink(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	ok := !s.closed && s.tickets[ticket]
	delete(s.tickets, ticket) // single use
	s.mu.Unlock()
	if !ok {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client
	}
	c := &wsConn{ws: ws, done: make(chan struct{})}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.kill()
		return
	}
	n := s.numConns
	if n == 0 {
		n = len(s.conns) + 1
	}
	s.conns[c] = true
	s.wg.Add(3) // runPump, runPinger, and runReader on this handler's goroutine
	s.mu.Unlock()

	hello, _ := json.Marshal(map[string]any{
		"type":            "hello",
		"num_connections": n,
		"debug_info": map[string]any{
			"host":                        "applink-slacktest",
			"build_number":                1,
			"approximate_connection_time": 18060,
		},
		"connection_info": map[string]any{"app_id": s.opts.AppID},
	})
	if err := c.write(hello); err != nil {
		c.kill()
	}
	// Ping at once so a client with a short ping timeout is satisfied from the start.
	_ = ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second))

	s.mu.Lock()
	s.notifyLocked() // Connected changed; wakes the pump below too
	s.mu.Unlock()

	go s.runPump(c)
	go s.runPinger(c)
	s.runReader(c)
}

// runReader reads acks until the connection fails, then tears it down.
func (s *Server) runReader(c *wsConn) {
	defer s.wg.Done()
	defer func() {
		c.kill()
		s.mu.Lock()
		delete(s.conns, c)
		s.notifyLocked()
		s.mu.Unlock()
	}()
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var res struct {
			EnvelopeID *string         `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(data, &res) != nil || res.EnvelopeID == nil {
			continue // not an ack; Slack ignores such frames too
		}
		// An ack with an empty envelope_id is recorded: it is what a client sends
		// when it wrongly acks hello or disconnect, and tests may look for it.
		s.mu.Lock()
		now := s.opts.Now()
		a := Ack{EnvelopeID: *res.EnvelopeID, Payload: res.Payload, At: now}
		if t, ok := s.written[a.EnvelopeID]; ok {
			a.Latency = now.Sub(t)
		}
		s.acks = append(s.acks, a)
		s.notifyLocked()
		s.mu.Unlock()
	}
}

// runPump writes queued frames to c, in order, until c dies or drains. A frame
// whose write fails goes back to the front of the queue for the next connection.
func (s *Server) runPump(c *wsConn) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if c.draining || !s.conns[c] {
			s.mu.Unlock()
			return
		}
		if len(s.queue) == 0 {
			ch := s.changed
			s.mu.Unlock()
			select {
			case <-ch:
			case <-c.done:
				return
			}
			continue
		}
		f := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()

		// Check draining while holding the write lock: Disconnect sets it before
		// writing its frame, so no envelope follows a disconnect frame.
		c.mu.Lock()
		s.mu.Lock()
		draining := c.draining
		s.mu.Unlock()
		var err error
		if !draining {
			err = c.writeLocked(f.data)
		}
		c.mu.Unlock()

		s.mu.Lock()
		if draining {
			s.queue = append([]frame{f}, s.queue...)
			s.notifyLocked()
			s.mu.Unlock()
			return
		}
		if err != nil {
			s.queue = append([]frame{f}, s.queue...)
			s.notifyLocked()
			s.mu.Unlock()
			c.kill()
			return
		}
		if f.envelopeID != "" {
			s.written[f.envelopeID] = s.opts.Now()
		}
		s.mu.Unlock()
	}
}

// runPinger pings c every PingInterval, as Slack does; slack-go reconnects when
// pings stop.
func (s *Server) runPinger(c *wsConn) {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if err := c.ws.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(5*time.Second)); err != nil {
				c.kill()
				return
			}
		}
	}
}

// enqueue queues an envelope for delivery and remembers it for Redeliver.
func (s *Server) enqueue(e envelope) Delivery {
	data, _ := json.Marshal(e) // envelope holds only JSON-safe values
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Delivery{EnvelopeID: e.EnvelopeID, EventID: e.eventID}
	}
	s.envelopes[e.EnvelopeID] = e
	s.queue = append(s.queue, frame{envelopeID: e.EnvelopeID, data: data})
	s.notifyLocked()
	return Delivery{EnvelopeID: e.EnvelopeID, EventID: e.eventID}
}

// Redeliver sends the envelope d again, as Slack does for an envelope that was not
// acked in time: the same payload and event_id under a new envelope_id, with
// retry_attempt and retry_reason set (Slack's reason for a missed ack is
// "timeout"). It returns the new Delivery, or a zero Delivery if d is unknown.
func (s *Server) Redeliver(d Delivery, attempt int, reason string) Delivery {
	s.mu.Lock()
	e, ok := s.envelopes[d.EnvelopeID]
	s.mu.Unlock()
	if !ok {
		return Delivery{}
	}
	e.EnvelopeID = uuid()
	e.RetryAttempt = attempt
	e.RetryReason = reason
	return s.enqueue(e)
}

// SendRaw queues data as one websocket text message, unchecked: a malformed JSON
// document, an unknown envelope type, anything. It keeps its place among the
// queued envelopes.
func (s *Server) SendRaw(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.queue = append(s.queue, frame{data: append([]byte(nil), data...)})
	s.notifyLocked()
}

// Disconnect sends {"type":"disconnect","reason":reason,"debug_info":{…}} at once
// on every open websocket (it does not wait in the queue) and stops delivering
// envelopes on those websockets; the client is expected to open a new connection,
// and queued envelopes go there.
//
// For "link_disabled" (Socket Mode was turned off for the app) the server also
// closes the websockets and answers apps.connections.open with error
// "link_disabled" until SetError("apps.connections.open", "") clears it. For any
// other reason ("warning", "refresh_requested", …) the websocket is left for the
// client to close, as Slack does. With no client connected Disconnect only applies
// the link_disabled error.
func (s *Server) Disconnect(reason string) {
	data, _ := json.Marshal(map[string]any{
		"type":       "disconnect",
		"reason":     reason,
		"debug_info": map[string]any{"host": "applink-slacktest"},
	})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		if !c.draining {
			c.draining = true
			conns = append(conns, c)
		}
	}
	if reason == "link_disabled" {
		s.errs["apps.connections.open"] = "link_disabled"
	}
	s.notifyLocked()
	s.mu.Unlock()

	for _, c := range conns {
		if err := c.write(data); err != nil || reason == "link_disabled" {
			c.kill()
		}
	}
}

// DropConnection closes every open websocket's network connection without a close
// frame, as a network failure would. Envelopes already written are lost, as they
// would be with Slack (use Redeliver to model Slack's retry).
func (s *Server) DropConnection() {
	s.mu.Lock()
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
}

// SetNumConnections sets the num_connections reported in later hello frames; 0
// (the default) reports the number of open websockets, the new one included.
func (s *Server) SetNumConnections(n int) {
	s.mu.Lock()
	s.numConns = n
	s.mu.Unlock()
}

// Connections returns how many times apps.connections.open succeeded.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections
}

// Connected reports whether a websocket is open and not draining, that is whether
// an envelope sent now would be written at once.
func (s *Server) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if !c.draining {
			return true
		}
	}
	return false
}

// Pending returns how many frames wait in the queue for a connection.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Acks returns a copy of every ack received so far, in order of arrival.
func (s *Server) Acks() []Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Ack(nil), s.acks...)
}

// WaitAck returns the first ack for envelopeID, waiting for it if it has not
// arrived yet. It returns ctx.Err() when ctx ends first and ErrClosed when the
// server is closed.
func (s *Server) WaitAck(ctx context.Context, envelopeID string) (Ack, error) {
	for {
		s.mu.Lock()
		for _, a := range s.acks {
			if a.EnvelopeID == envelopeID {
				s.mu.Unlock()
				return a, nil
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if err := s.wait(ctx, ch); err != nil {
			return Ack{}, err
		}
	}
}

// wait blocks until ch is closed, ctx ends or the server closes.
func (s *Server) wait(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
}
