package gateway

import (
	"bytes"
	"sort"
	"sync"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// rangeCache holds descriptors learned from meta, sorted by end key, with no
// two overlapping. Entries may be stale; a replica's RANGE_KEY_MISMATCH or
// RANGE_NOT_FOUND evicts them.
type rangeCache struct {
	mu    sync.RWMutex
	descs []*rspb.RangeDescriptor // sorted by EndKey
}

// lookup returns the cached range containing key, or, with inclusiveEnd, the
// range containing the largest key below key (start < key <= end).
func (c *rangeCache) lookup(key []byte, inclusiveEnd bool) *rspb.RangeDescriptor {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i := sort.Search(len(c.descs), func(i int) bool {
		if inclusiveEnd {
			return bytes.Compare(c.descs[i].EndKey, key) >= 0
		}
		return bytes.Compare(c.descs[i].EndKey, key) > 0
	})
	if i == len(c.descs) {
		return nil
	}
	d := c.descs[i]
	if inclusiveEnd {
		if bytes.Compare(d.StartKey, key) < 0 {
			return d
		}
		return nil
	}
	if bytes.Compare(d.StartKey, key) <= 0 {
		return d
	}
	return nil
}

func overlaps(a, b *rspb.RangeDescriptor) bool {
	return keys.Overlaps(a.StartKey, a.EndKey, b.StartKey, b.EndKey)
}

// insert adds d, dropping every entry it overlaps, unless an overlapping
// entry is newer (higher generation: splits and merges raise it above every
// descriptor they replace), in which case d is stale and ignored.
func (c *rangeCache) insert(d *rspb.RangeDescriptor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.descs {
		if overlaps(x, d) && x.Generation > d.Generation {
			return
		}
	}
	out := c.descs[:0:0]
	for _, x := range c.descs {
		if !overlaps(x, d) {
			out = append(out, x)
		}
	}
	out = append(out, d)
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].EndKey, out[j].EndKey) < 0 })
	c.descs = out
}

// evict drops the entry for d's range if it is still the same generation.
func (c *rangeCache) evict(d *rspb.RangeDescriptor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.descs[:0:0]
	for _, x := range c.descs {
		if x.RangeId == d.RangeId && x.Generation <= d.Generation {
			continue
		}
		out = append(out, x)
	}
	c.descs = out
}
