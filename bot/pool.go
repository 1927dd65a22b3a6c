package bot

import (
	"context"
	"fmt"
	"sync"
)

// pool runs handlers with bounded concurrency while keeping one user's jobs
// in order: each user with work has one runner goroutine that drains that
// user's queue; at most size runners exist at once, and each queue holds at
// most depth jobs. Submit never blocks, so the Socket Mode reader never does.
type pool struct {
	size, depth int
	onPanic     func(key string, recovered any, stack []byte)

	mu      sync.Mutex
	queues  map[string][]func() // key present = a runner is active; value = waiting jobs
	closed  bool
	running sync.WaitGroup
}

func newPool(size, depth int, onPanic func(string, any, []byte)) *pool {
	return &pool{size: size, depth: depth, onPanic: onPanic, queues: make(map[string][]func())}
}

// submit queues job under key. It reports false, without queueing, when
// the pool is full: size users already have runners and key is not one of
// them, or key's queue is at depth, or the pool is closed.
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
	case active:
		p.queues[key] = append(q, job)
		return true
	case len(p.queues) >= p.size:
		return false
	}
	p.queues[key] = nil // the key is active; its queue holds only waiting jobs
	p.running.Add(1)
	go p.run(key, job)
	return true
}

// run runs job, then drains key's queue, then retires the runner.
func (p *pool) run(key string, job func()) {
	defer p.running.Done()
	p.safely(key, job)
	for {
		p.mu.Lock()
		q := p.queues[key]
		if len(q) == 0 {
			delete(p.queues, key)
			p.mu.Unlock()
			return
		}
		job = q[0]
		q[0] = nil
		p.queues[key] = q[1:]
		p.mu.Unlock()
		p.safely(key, job)
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
	go func() { p.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d users' work still running at shutdown: %w", p.inFlight(), ctx.Err())
	}
}
