package leases

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/timeutil"
)

// DefaultMaxOffset is the default bound on clock offset between nodes.
const DefaultMaxOffset = 500 * time.Millisecond

// PhysicalClock returns nanoseconds since the Unix epoch.
type PhysicalClock func() int64

// WallClock is the real physical clock.
func WallClock() int64 { return timeutil.DefaultTimeSource{}.Now().UnixNano() }

// PhysicalClockOf reads the physical clock from ts.
func PhysicalClockOf(ts timeutil.TimeSource) PhysicalClock {
	return func() int64 { return ts.Now().UnixNano() }
}

// jumpWarnInterval rate-limits the warning about refused clock jumps.
const jumpWarnInterval = 10 * time.Second

// Clock is a hybrid logical clock: timestamps it hands out never go
// backwards and always exceed every timestamp it has observed via Update.
//
// It never runs more than the max offset ahead of its physical clock
// because of input: Update refuses (and reports) a timestamp beyond
// physical + max offset instead of jumping to it, so no client or peer can
// drag the clock — and the liveness and lease expirations measured by it —
// into the future.
type Clock struct {
	physical  PhysicalClock
	ts        timeutil.TimeSource // timers for the waits on the physical clock
	maxOffset time.Duration

	mu   sync.Mutex
	last kv.Timestamp

	refused  atomic.Uint64 // timestamps refused as beyond physical + max offset
	log      atomic.Pointer[slog.Logger]
	lastWarn atomic.Int64 // wall time (ns) of the last warning
	unwarned atomic.Uint64
}

// ClockJumpError is returned for a timestamp more than the max offset ahead
// of the physical clock; the clock was not changed.
type ClockJumpError struct {
	Remote    kv.Timestamp
	Physical  int64
	MaxOffset time.Duration
}

func (e *ClockJumpError) Error() string {
	return fmt.Sprintf("timestamp %s is %v ahead of the physical clock (%s); the limit is the max clock offset %v",
		e.Remote, time.Duration(e.Remote.WallTime-e.Physical), kv.Timestamp{WallTime: e.Physical}, e.MaxOffset)
}

// NewClock returns an HLC over the given physical clock (nil = wall clock);
// it waits on real timers.
func NewClock(physical PhysicalClock, maxOffset time.Duration) *Clock {
	if physical == nil {
		physical = WallClock
	}
	if maxOffset <= 0 {
		maxOffset = DefaultMaxOffset
	}
	return &Clock{physical: physical, ts: timeutil.DefaultTimeSource{}, maxOffset: maxOffset}
}

// NewClockFrom returns an HLC whose physical clock, and the timers its
// waits use, come from ts (nil = the real clock).
func NewClockFrom(ts timeutil.TimeSource, maxOffset time.Duration) *Clock {
	if ts == nil {
		ts = timeutil.DefaultTimeSource{}
	}
	c := NewClock(PhysicalClockOf(ts), maxOffset)
	c.ts = ts
	return c
}

// TimeSource is the source of the clock's timers (the physical clock
// itself for a clock made by NewClockFrom). Loops timed by this clock's
// users (liveness heartbeats) take their tickers from it.
func (c *Clock) TimeSource() timeutil.TimeSource { return c.ts }

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

// SetLogger sets where refused clock jumps are reported (rate-limited).
func (c *Clock) SetLogger(l *slog.Logger) { c.log.Store(l) }

// Limit is the latest timestamp the clock accepts now: physical + max offset.
func (c *Clock) Limit() kv.Timestamp {
	return kv.Timestamp{WallTime: c.physical() + int64(c.maxOffset)}
}

// Update folds a remote timestamp into the clock so that later Now calls
// exceed it. A timestamp more than the max offset ahead of the physical
// clock is refused with a *ClockJumpError and leaves the clock unchanged;
// the caller must not act as if it had been observed.
func (c *Clock) Update(remote kv.Timestamp) error {
	c.mu.Lock()
	if !c.last.Less(remote) {
		c.mu.Unlock()
		return nil
	}
	phys := c.physical()
	if remote.WallTime > phys+int64(c.maxOffset) {
		c.mu.Unlock()
		return c.refuse(remote, phys)
	}
	c.last = remote
	c.mu.Unlock()
	return nil
}

// UpdateWait is Update for a timestamp up to twice the max offset ahead of
// the physical clock: a write this node pushed above its clock by a
// timestamp cache low water (now + max offset), or a peer's timestamp when
// the peer's physical clock runs ahead. Rather than jump past physical + max
// offset it waits, at most the max offset, until the physical clock allows
// ts, then updates. Anything further ahead is refused like Update.
func (c *Clock) UpdateWait(ctx context.Context, ts kv.Timestamp) error {
	for {
		over := time.Duration(ts.WallTime - c.physical() - int64(c.maxOffset))
		if over <= 0 || over > c.maxOffset {
			return c.Update(ts)
		}
		timer := c.ts.NewTimer(over + time.Microsecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			return c.Update(ts)
		case <-timer.C():
		}
	}
}

// Check refuses (and reports, like Update) a timestamp more than the max
// offset ahead of the physical clock, without changing the clock.
func (c *Clock) Check(ts kv.Timestamp) error { return c.CheckPeer(ts, 0) }

// CheckPeer is Check with extra slack, for a peer's timestamp that
// UpdateWait will wait for: a peer's physical clock may run up to the max
// offset ahead of this one, so UpdateWait accepts up to twice the max offset
// ahead of the physical clock (CheckPeer(ts, MaxOffset())).
func (c *Clock) CheckPeer(ts kv.Timestamp, extra time.Duration) error {
	if phys := c.physical(); ts.WallTime > phys+int64(c.maxOffset+extra) {
		return c.refuse(ts, phys)
	}
	return nil
}

// WaitFor returns once the clock has reached ts (Now() >= ts), waiting for
// the physical clock rather than moving the clock forward. A timestamp
// beyond physical + max offset is refused at once (see Check).
func (c *Clock) WaitFor(ctx context.Context, ts kv.Timestamp) error {
	if err := c.Check(ts); err != nil {
		return err
	}
	for {
		c.mu.Lock()
		reached := !c.last.Less(ts)
		c.mu.Unlock()
		d := time.Duration(ts.WallTime - c.physical())
		if reached || d < 0 {
			return nil // the next Now() exceeds ts
		}
		d = min(d+time.Microsecond, c.maxOffset)
		timer := c.ts.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C():
		}
	}
}

// Offset is how far the clock runs ahead of the physical clock (0 when it
// follows it). Update keeps it within the max offset.
func (c *Clock) Offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(0, time.Duration(c.last.WallTime-c.physical()))
}

// RefusedJumps counts the timestamps refused as beyond physical + max offset.
func (c *Clock) RefusedJumps() uint64 { return c.refused.Load() }

func (c *Clock) refuse(remote kv.Timestamp, phys int64) error {
	c.refused.Add(1)
	err := &ClockJumpError{Remote: remote, Physical: phys, MaxOffset: c.maxOffset}
	now := c.ts.Now().UnixNano()
	last := c.lastWarn.Load()
	if now-last < int64(jumpWarnInterval) || !c.lastWarn.CompareAndSwap(last, now) {
		c.unwarned.Add(1)
		return err
	}
	l := c.log.Load()
	if l == nil {
		l = slog.Default()
	}
	{
		l.Warn("refused a clock jump beyond the max offset", "err", err.Error(),
			"refused_total", c.refused.Load(), "suppressed", c.unwarned.Swap(0))
	}
	return err
}
