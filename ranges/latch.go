package ranges

import (
	"bytes"
	"context"
	"sync"

	"github.com/rangestore/rangestore/proto/rspb"
)

// span is a key span [start, end); end == nil means the single key start.
type span struct{ start, end []byte }

func (s span) endKey() []byte {
	if s.end == nil {
		return append(append([]byte(nil), s.start...), 0)
	}
	return s.end
}

func (s span) overlaps(o span) bool {
	return bytes.Compare(s.start, o.endKey()) < 0 && bytes.Compare(o.start, s.endKey()) < 0
}

// latch is a set of spans held for reading or writing by one request.
type latch struct {
	spans []span
	write bool
	done  chan struct{}
}

func (l *latch) conflicts(o *latch) bool {
	if !l.write && !o.write {
		return false
	}
	for _, a := range l.spans {
		for _, b := range o.spans {
			if a.overlaps(b) {
				return true
			}
		}
	}
	return false
}

// latchManager serializes conflicting requests on a range: a write latch
// excludes every overlapping latch, read latches share. A request takes all
// its spans at once, so there is no lock-ordering deadlock; it waits for
// the conflicting latches that were held when it arrived (first come, first
// served for overlapping requests).
type latchManager struct {
	mu   sync.Mutex
	held map[*latch]struct{}
}

func newLatchManager() *latchManager { return &latchManager{held: map[*latch]struct{}{}} }

// acquire blocks until no earlier conflicting latch is held, then holds the
// spans until release is called.
func (m *latchManager) acquire(ctx context.Context, spans []span, write bool) (*latch, error) {
	l := &latch{spans: spans, write: write, done: make(chan struct{})}
	m.mu.Lock()
	var waitFor []*latch
	for o := range m.held {
		if l.conflicts(o) {
			waitFor = append(waitFor, o)
		}
	}
	// Register immediately so later arrivals queue behind this one.
	m.held[l] = struct{}{}
	m.mu.Unlock()
	for _, o := range waitFor {
		select {
		case <-o.done:
		case <-ctx.Done():
			m.release(l)
			return nil, ctx.Err()
		}
	}
	return l, nil
}

func (m *latchManager) release(l *latch) {
	m.mu.Lock()
	delete(m.held, l)
	m.mu.Unlock()
	close(l.done)
}

// requestSpans returns the spans a batch touches.
func requestSpans(reqs []*rspb.RequestUnion) []span {
	out := make([]span, 0, len(reqs))
	for _, r := range reqs {
		s, e, point := RequestSpan(r)
		if point {
			out = append(out, span{start: s})
		} else {
			out = append(out, span{start: s, end: e})
		}
	}
	return out
}
