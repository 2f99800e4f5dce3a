package client

import (
	"bytes"
	"slices"
	"sync"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// server is a node holding a replica of a range.
type server struct {
	id    uint64
	addr  string
	voter bool
}

// entry is what the client knows of one range, in client keys. Entries are
// never changed once in the cache (a change inserts a copy), so a caller
// may keep one while the cache moves on.
type entry struct {
	rangeID    uint64
	generation uint64 // 0: unknown
	start      []byte
	end        []byte // nil: the end of the keyspace
	// writer is the node believed to hold the lease (0: unknown: try the
	// voters in order and follow NOT_LEASEHOLDER hints).
	writer uint64
	// servers are the range's replicas, nearest to the client first (the
	// routing table's order).
	servers []server
	expires time.Time
}

// contains reports whether key is in [start, end).
func (e *entry) contains(key []byte) bool {
	return bytes.Compare(e.start, key) <= 0 && endAfter(e.end, key)
}

// endAfter reports whether the exclusive end lies after key (nil: +inf).
func endAfter(end, key []byte) bool { return end == nil || bytes.Compare(end, key) > 0 }

// compareEnd orders exclusive ends, nil (+inf) last.
func compareEnd(a, b []byte) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return bytes.Compare(a, b)
}

func overlaps(a, b *entry) bool {
	return endAfter(b.end, a.start) && endAfter(a.end, b.start)
}

func (e *entry) server(id uint64) (server, bool) {
	for _, s := range e.servers {
		if s.id == id {
			return s, true
		}
	}
	return server{}, false
}

// isVoter reports whether node id holds a voter of the range.
func (e *entry) isVoter(id uint64) bool {
	s, ok := e.server(id)
	return ok && s.voter
}

func (e *entry) clone() *entry {
	c := *e
	return &c
}

// rangeCache holds entries sorted by end key, none overlapping another.
// A descriptor generation orders two entries for overlapping spans: the
// higher one is newer (splits and merges raise it above every descriptor
// they replace). Entries come from routing tables (Discovery) and from the
// RouteHints of refusals; they are hints: a replica's answer is
// authoritative.
type rangeCache struct {
	mu      sync.RWMutex
	entries []*entry
}

// lookup returns the entry containing key, or nil.
func (c *rangeCache) lookup(key []byte) *entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i, _ := slices.BinarySearchFunc(c.entries, key, func(e *entry, k []byte) int {
		if endAfter(e.end, k) {
			return 1
		}
		return -1
	})
	if i < len(c.entries) && c.entries[i].contains(key) {
		return c.entries[i]
	}
	return nil
}

// byID returns the entry of a range, or nil.
func (c *rangeCache) byID(rangeID uint64) *entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.entries {
		if e.rangeID == rangeID {
			return e
		}
	}
	return nil
}

// insert adds x unless an overlapping entry is newer, dropping every entry
// it overlaps. An entry of the same range and generation widens x (routing
// tables clip the first range to the span asked for) and lends it its
// writer; one of the same range at an older generation lends it its writer
// if that node still holds a voter.
func (c *rangeCache) insert(x *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.entries {
		if !overlaps(o, x) {
			continue
		}
		if x.generation != 0 && o.generation > x.generation {
			return
		}
		if o.rangeID != x.rangeID {
			continue
		}
		if o.generation == x.generation {
			if bytes.Compare(o.start, x.start) < 0 {
				x.start = o.start
			}
			if compareEnd(o.end, x.end) > 0 {
				x.end = o.end
			}
		}
		if x.writer == 0 && o.writer != 0 && x.isVoter(o.writer) {
			x.writer = o.writer
		}
	}
	out := make([]*entry, 0, len(c.entries)+1)
	for _, o := range c.entries {
		if !overlaps(o, x) {
			out = append(out, o)
		}
	}
	out = append(out, x)
	slices.SortFunc(out, func(a, b *entry) int { return compareEnd(a.end, b.end) })
	c.entries = out
}

// evict drops the entry of e's range if it is not newer than e.
func (c *rangeCache) evict(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = slices.DeleteFunc(c.entries, func(o *entry) bool {
		return o.rangeID == e.rangeID && (o.generation <= e.generation || e.generation == 0)
	})
}

// setWriter records node as the leaseholder of the range (it served, or a
// replica named it) if it holds a voter of the cached range.
func (c *rangeCache) setWriter(rangeID, node uint64) {
	c.update(rangeID, func(e *entry) bool {
		if e.writer == node || !e.isVoter(node) {
			return false
		}
		e.writer = node
		return true
	})
}

// clearWriter forgets node as the range's leaseholder (it failed, or
// denied holding the lease without naming another).
func (c *rangeCache) clearWriter(rangeID, node uint64) {
	c.update(rangeID, func(e *entry) bool {
		if e.writer != node {
			return false
		}
		e.writer = 0
		return true
	})
}

// update replaces the entry of rangeID by a copy changed by f (if f says
// it changed).
func (c *rangeCache) update(rangeID uint64, f func(e *entry) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range c.entries {
		if e.rangeID == rangeID {
			n := e.clone()
			if f(n) {
				c.entries[i] = n
			}
			return
		}
	}
}

// len is the number of entries.
func (c *rangeCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// entryFromRouting converts a routing table entry (or a RouteHint's).
func entryFromRouting(r *rspb.RoutingEntry, expires time.Time) *entry {
	e := &entry{rangeID: r.GetRangeId(), generation: r.GetGeneration(), start: append([]byte{}, r.GetStartKey()...), expires: expires}
	if len(r.GetEndKey()) > 0 {
		e.end = append([]byte{}, r.GetEndKey()...)
	}
	for _, s := range r.GetReaders() {
		if s.GetAddress() == "" || s.GetNodeId() == 0 {
			continue
		}
		if _, dup := e.server(s.GetNodeId()); !dup {
			e.servers = append(e.servers, server{id: s.GetNodeId(), addr: s.GetAddress(), voter: s.GetRole() == "voter"})
		}
	}
	if w := r.GetWriter(); w.GetNodeId() != 0 && w.GetAddress() != "" {
		if _, ok := e.server(w.GetNodeId()); !ok {
			e.servers = append(e.servers, server{id: w.GetNodeId(), addr: w.GetAddress(), voter: true})
		}
		e.writer = w.GetNodeId()
	}
	return e
}
