package ranges

import (
	"context"
	"sync"
)

// stopper owns the store's background goroutines (loops, replica starts,
// removals of merged replicas, wake-ups): each runs with a context that
// Store.Close cancels, and Close waits for all of them before it closes the
// NodeHost, so none touches Raft or the engine after that. A task launched
// once Close has begun is refused.
type stopper struct {
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func newStopper() *stopper {
	ctx, cancel := context.WithCancel(context.Background())
	return &stopper{ctx: ctx, cancel: cancel}
}

// run starts fn on its own goroutine, or returns false (and does not call
// fn) if the stopper has stopped. fn must return soon after ctx is done.
func (s *stopper) run(fn func(ctx context.Context)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn(s.ctx)
	}()
	return true
}

// stop refuses new tasks, cancels the running ones and waits for them.
func (s *stopper) stop() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}
