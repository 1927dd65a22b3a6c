package bot

import (
	"context"
	"fmt"
	"sync"
)

// pool runs handlers with bounded concurrency while keeping one user's jobs
// in order. At most size runners (goroutines) exist at once; each runs one
// job at a time, and a user's jobs never run two at once, so each person's
// messages are answered in the order they were sent. Work beyond what the
// runners can take waits in memory, not refused: each user may have depth
// jobs waiting behind the running one, and all users together maxQueued.
// Those two bounds are the only "busy": a waiting job costs its parsed
// event (about a kilobyte), a running one its goroutine and its Salesforce
// call (tens of kilobytes), which is why the runners are the smaller bound.
// Runners take users in turn (round robin), so one person with a long queue
// does not starve the others. Submit never blocks, so the Socket Mode reader
// never does.
type pool struct {
	size, depth, maxQueued int
	onPanic                func(key string, recovered any, stack []byte)

	mu      sync.Mutex
	queues  map[string][]func() // key present = running or waiting its turn; value = its waiting jobs
	ready   []string            // keys with waiting jobs and no runner, in the order they will run
	runners int
	queued  int // jobs waiting in all queues
	closed  bool
	wg      sync.WaitGroup
}

func newPool(size, depth, maxQueued int, onPanic func(string, any, []byte)) *pool {
	return &pool{size: size, depth: depth, maxQueued: maxQueued, onPanic: onPanic, queues: make(map[string][]func())}
}

// submit queues job under key. It reports false, without queueing, when
// key already has depth jobs waiting, when maxQueued jobs wait in all, or
// when the pool is closed.
func (p *pool) submit(key string, job func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	q, active := p.queues[key]
	switch {
	case active && len(q) >= p.depth:
		return false
	case !active && p.runners < p.size:
		p.queues[key] = nil // running; nothing waits behind it yet
		p.runners++
		p.wg.Add(1)
		go p.run(key, job)
		return true
	case p.queued >= p.maxQueued:
		return false
	}
	p.queues[key] = append(q, job)
	p.queued++
	if !active {
		p.ready = append(p.ready, key)
	}
	return true
}

// run runs job for key, then jobs of whichever key's turn it is, until no
// job waits; then the runner retires.
func (p *pool) run(key string, job func()) {
	defer p.wg.Done()
	for {
		p.safely(key, job)
		p.mu.Lock()
		if len(p.queues[key]) == 0 {
			delete(p.queues, key)
		} else {
			p.ready = append(p.ready, key) // its next job waits its turn
		}
		if len(p.ready) == 0 {
			p.runners--
			p.mu.Unlock()
			return
		}
		key = p.ready[0]
		p.ready[0] = ""
		p.ready = p.ready[1:]
		q := p.queues[key]
		job = q[0]
		q[0] = nil
		p.queues[key] = q[1:]
		p.queued--
		p.mu.Unlock()
	}
}

// safely runs job, turning a panic into a report so one bad handler cannot
// take the daemon down.
func (p *pool) safely(key string, job func()) {
	defer func() {
		if r := recover(); r != nil {
			p.onPanic(key, r, stack())
		}
	}()
	job()
}

// inFlight is how many users have work queued or running.
func (p *pool) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queues)
}

// close stops taking jobs and waits until the queued ones finish or ctx ends.
func (p *pool) close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	// The drain is over: what still waits is dropped, so that runners
	// retire after the job in hand instead of running the queue under a
	// cancelled context after the daemon has moved on to closing the store.
	p.mu.Lock()
	dropped := p.queued
	for key, q := range p.queues {
		clear(q)
		p.queues[key] = nil
	}
	clear(p.ready)
	p.ready, p.queued = nil, 0
	p.mu.Unlock()
	return fmt.Errorf("%d users' work still running at shutdown, %d waiting dropped: %w", p.inFlight(), dropped, ctx.Err())
}
