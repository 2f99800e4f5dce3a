package leases

import (
	"sync"
	"time"

	"github.com/rangestore/rangestore/kv"
)

// DefaultMaxOffset is the default bound on clock offset between nodes.
const DefaultMaxOffset = 500 * time.Millisecond

// PhysicalClock returns nanoseconds since the Unix epoch.
type PhysicalClock func() int64

// WallClock is the real physical clock.
func WallClock() int64 { return time.Now().UnixNano() }

// Clock is a hybrid logical clock: timestamps it hands out never go
// backwards and always exceed every timestamp it has observed via Update.
type Clock struct {
	physical  PhysicalClock
	maxOffset time.Duration

	mu   sync.Mutex
	last kv.Timestamp
}

// NewClock returns an HLC over the given physical clock (nil = wall clock).
func NewClock(physical PhysicalClock, maxOffset time.Duration) *Clock {
	if physical == nil {
		physical = WallClock
	}
	if maxOffset <= 0 {
		maxOffset = DefaultMaxOffset
	}
	return &Clock{physical: physical, maxOffset: maxOffset}
}

// MaxOffset returns the configured maximum clock offset.
func (c *Clock) MaxOffset() time.Duration { return c.maxOffset }

// PhysicalNow returns the physical clock reading.
func (c *Clock) PhysicalNow() int64 { return c.physical() }

// Now returns a timestamp greater than any previously returned or observed.
func (c *Clock) Now() kv.Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.physical(); p > c.last.WallTime {
		c.last = kv.Timestamp{WallTime: p}
	} else {
		c.last = c.last.Next()
	}
	return c.last
}

// Update folds a remote timestamp into the clock so that later Now calls
// exceed it.
func (c *Clock) Update(remote kv.Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.Less(remote) {
		c.last = remote
	}
}
