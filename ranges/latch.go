package ranges

import (
	"bytes"
	"context"
	"sync"

	"github.com/rangestore/rangestore/proto/rspb"
)

// span is a key span [start, end); end == nil means the single key start.
type span struct{ start, end []byte }

// overlaps reports whether two spans share a key. A point span {k} is
// [k, k+0x00), k+0x00 being the smallest key above k, so a key is below
// its end exactly when it is at or below k: no end key is built (checked
// for every pair of spans whenever a latch is taken or the timestamp
// cache consulted, this allocated twice per pair).
func (s span) overlaps(o span) bool {
	return s.startsBeforeEnd(o.start) && o.startsBeforeEnd(s.start)
}

// startsBeforeEnd reports whether key is below s's end.
func (s span) startsBeforeEnd(key []byte) bool {
	if s.end == nil {
		return bytes.Compare(key, s.start) <= 0
	}
	return bytes.Compare(key, s.end) < 0
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
