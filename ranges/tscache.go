package ranges

import (
	"sync"

	"github.com/rangestore/rangestore/kv"
)

// tsCache remembers the highest timestamp at which each key span was read
// by this leaseholder, so that no later write lands at or below a timestamp
// already served: a write on a span gets a timestamp above max(span).
//
// It is bounded: when it holds more than maxEntries entries it forgets them
// all and raises its low-water mark to their maximum, which is conservative
// (later writes may be pushed higher than needed, never lower). A new lease
// sets the low-water mark to the lease start, which covers everything the
// previous holder served.
type tsCache struct {
	mu         sync.Mutex
	low        kv.Timestamp
	points     map[string]kv.Timestamp
	spans      []spanTS
	maxEntries int
}

type spanTS struct {
	s  span
	ts kv.Timestamp
}

func newTSCache(maxEntries int) *tsCache {
	return &tsCache{points: map[string]kv.Timestamp{}, maxEntries: maxEntries}
}

// add records a read of sp at ts.
func (c *tsCache) add(sp span, ts kv.Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts.LessEq(c.low) {
		return
	}
	if sp.end == nil {
		if cur, ok := c.points[string(sp.start)]; !ok || cur.Less(ts) {
			c.points[string(sp.start)] = ts
		}
	} else {
		c.spans = append(c.spans, spanTS{s: sp, ts: ts})
	}
	if len(c.points)+len(c.spans) > c.maxEntries {
		hi := c.low
		for _, t := range c.points {
			if hi.Less(t) {
				hi = t
			}
		}
		for _, x := range c.spans {
			if hi.Less(x.ts) {
				hi = x.ts
			}
		}
		c.low = hi
		c.points = map[string]kv.Timestamp{}
		c.spans = nil
	}
}

// max returns the highest read timestamp recorded on anything overlapping sp.
func (c *tsCache) max(sp span) kv.Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	hi := c.low
	if sp.end == nil {
		if t, ok := c.points[string(sp.start)]; ok && hi.Less(t) {
			hi = t
		}
	} else {
		for k, t := range c.points {
			if hi.Less(t) && sp.overlaps(span{start: []byte(k)}) {
				hi = t
			}
		}
	}
	for _, x := range c.spans {
		if hi.Less(x.ts) && x.s.overlaps(sp) {
			hi = x.ts
		}
	}
	return hi
}

// setLowWater raises the low-water mark.
func (c *tsCache) setLowWater(ts kv.Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.low.Less(ts) {
		c.low = ts
	}
}
