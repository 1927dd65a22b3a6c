package bot

import (
	"sync"
	"time"
)

// dedupe remembers event ids for a while so that Slack's retries of an
// event (at once, after 1 and after 5 minutes) are handled once. It holds at
// most max ids; the oldest go first.
type dedupe struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	seen  map[string]time.Time
	order []seenID // oldest first
}

type seenID struct {
	id string
	at time.Time
}

func newDedupe(ttl time.Duration, max int) *dedupe {
	return &dedupe{ttl: ttl, max: max, seen: make(map[string]time.Time)}
}

// first reports whether id is new at now, and remembers it.
func (d *dedupe) first(id string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(now)
	if _, ok := d.seen[id]; ok {
		return false
	}
	d.seen[id] = now
	d.order = append(d.order, seenID{id, now})
	return true
}

func (d *dedupe) expire(now time.Time) {
	n := 0
	for n < len(d.order) && (now.Sub(d.order[n].at) > d.ttl || len(d.order)-n > d.max-1) {
		delete(d.seen, d.order[n].id)
		n++
	}
	// Re-slicing is amortised: append copies only the live tail when it grows.
	d.order = d.order[n:]
}
