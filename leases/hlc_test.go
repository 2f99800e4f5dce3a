package leases

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv"
)

// hlcManual is a controllable physical clock.
type hlcManual struct{ ns atomic.Int64 }

func (m *hlcManual) now() int64   { return m.ns.Load() }
func (m *hlcManual) set(ns int64) { m.ns.Store(ns) }

const hlcStart = int64(1_700_000_000_000_000_000)

func hlcNew(t *testing.T) (*Clock, *hlcManual) {
	t.Helper()
	m := &hlcManual{}
	m.set(hlcStart)
	return NewClock(m.now, time.Second), m
}

func TestClockDefaults(t *testing.T) {
	c := NewClock(nil, 0)
	if c.MaxOffset() != DefaultMaxOffset {
		t.Fatalf("MaxOffset %v, want %v", c.MaxOffset(), DefaultMaxOffset)
	}
	before := time.Now().UnixNano()
	p := c.PhysicalNow()
	after := time.Now().UnixNano()
	if p < before || p > after {
		t.Fatalf("wall clock reading %d outside [%d, %d]", p, before, after)
	}
	if got := NewClock(nil, -time.Second).MaxOffset(); got != DefaultMaxOffset {
		t.Fatalf("negative max offset gives %v", got)
	}
	if got := NewClock(nil, 250*time.Millisecond).MaxOffset(); got != 250*time.Millisecond {
		t.Fatalf("MaxOffset %v", got)
	}
	if a, b := c.Now(), c.Now(); !a.Less(b) {
		t.Fatalf("wall clock Now not increasing: %s then %s", a, b)
	}
}

func TestClockNowFollowsPhysical(t *testing.T) {
	c, m := hlcNew(t)
	if got := c.PhysicalNow(); got != hlcStart {
		t.Fatalf("PhysicalNow %d", got)
	}
	if got, want := c.Now(), (kv.Timestamp{WallTime: hlcStart}); got != want {
		t.Fatalf("Now = %s, want %s", got, want)
	}
	m.set(hlcStart + 10)
	if got, want := c.Now(), (kv.Timestamp{WallTime: hlcStart + 10}); got != want {
		t.Fatalf("after physical advance: Now = %s, want %s", got, want)
	}
}

func TestClockMonotonic(t *testing.T) {
	type step struct {
		physical int64 // offset from hlcStart
		want     kv.Timestamp
	}
	ts := func(off int64, logical int32) kv.Timestamp {
		return kv.Timestamp{WallTime: hlcStart + off, Logical: logical}
	}
	steps := []step{
		{0, ts(0, 0)},
		{0, ts(0, 1)},  // physical stands still: logical ticks
		{0, ts(0, 2)},  //
		{-5, ts(0, 3)}, // physical goes backwards: still logical
		{-1000, ts(0, 4)},
		{1, ts(1, 0)}, // physical passes: logical resets
		{1, ts(1, 1)},
		{3, ts(3, 0)},
		{2, ts(3, 1)},
	}
	c, m := hlcNew(t)
	var prev kv.Timestamp
	for i, s := range steps {
		m.set(hlcStart + s.physical)
		got := c.Now()
		if got != s.want {
			t.Fatalf("step %d (physical %+d): Now = %s, want %s", i, s.physical, got, s.want)
		}
		if !prev.Less(got) {
			t.Fatalf("step %d: Now %s not after %s", i, got, prev)
		}
		prev = got
	}
}

func TestClockLogicalOverflow(t *testing.T) {
	c, _ := hlcNew(t)
	if err := c.Update(kv.Timestamp{WallTime: hlcStart, Logical: math.MaxInt32}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	got := c.Now()
	if want := (kv.Timestamp{WallTime: hlcStart + 1}); got != want {
		t.Fatalf("Now after max logical = %s, want %s", got, want)
	}
}

func TestClockUpdate(t *testing.T) {
	cases := []struct {
		name     string
		physical int64 // offset at the Now after Update
		remote   kv.Timestamp
		wantNow  kv.Timestamp
	}{
		{"remote ahead wall", 0, kv.Timestamp{WallTime: hlcStart + 500}, kv.Timestamp{WallTime: hlcStart + 500, Logical: 1}},
		{"remote ahead logical", 0, kv.Timestamp{WallTime: hlcStart, Logical: 7}, kv.Timestamp{WallTime: hlcStart, Logical: 8}},
		{"remote ahead by the max offset", 0, kv.Timestamp{WallTime: hlcStart + int64(time.Second), Logical: 3}, kv.Timestamp{WallTime: hlcStart + int64(time.Second), Logical: 4}},
		{"remote behind", 0, kv.Timestamp{WallTime: hlcStart - 100, Logical: 9}, kv.Timestamp{WallTime: hlcStart, Logical: 1}},
		{"remote equal", 0, kv.Timestamp{WallTime: hlcStart}, kv.Timestamp{WallTime: hlcStart, Logical: 1}},
		{"physical passes remote", 1000, kv.Timestamp{WallTime: hlcStart + 500, Logical: 2}, kv.Timestamp{WallTime: hlcStart + 1000}},
		{"empty remote", 0, kv.Timestamp{}, kv.Timestamp{WallTime: hlcStart, Logical: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, m := hlcNew(t)
			first := c.Now() // {hlcStart, 0}
			if err := c.Update(tc.remote); err != nil {
				t.Fatalf("Update(%s): %v", tc.remote, err)
			}
			m.set(hlcStart + tc.physical)
			got := c.Now()
			if got != tc.wantNow {
				t.Fatalf("Now = %s, want %s", got, tc.wantNow)
			}
			if !tc.remote.Less(got) || !first.Less(got) {
				t.Fatalf("Now %s does not exceed remote %s and previous %s", got, tc.remote, first)
			}
		})
	}
	t.Run("before any Now", func(t *testing.T) {
		c, _ := hlcNew(t)
		remote := kv.Timestamp{WallTime: hlcStart + 42, Logical: 1}
		if err := c.Update(remote); err != nil {
			t.Fatalf("Update(%s): %v", remote, err)
		}
		if got := c.Now(); !remote.Less(got) {
			t.Fatalf("Now %s does not exceed remote %s", got, remote)
		}
	})
}

func TestClockConcurrentNowUnique(t *testing.T) {
	c, m := hlcNew(t)
	const goroutines, per = 16, 500
	results := make([][]kv.Timestamp, goroutines)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-start
			out := make([]kv.Timestamp, 0, per)
			for i := 0; i < per; i++ {
				switch {
				case g == 0 && i%50 == 0:
					// One goroutine moves the physical clock back and forth.
					m.set(hlcStart + int64(i%200) - 100)
				case g == 1 && i%40 == 0:
					if err := c.Update(kv.Timestamp{WallTime: hlcStart + int64(i), Logical: int32(i)}); err != nil {
						t.Errorf("Update: %v", err)
					}
				}
				out = append(out, c.Now())
			}
			results[g] = out
		}(g)
	}
	close(start)
	wg.Wait()
	seen := make(map[kv.Timestamp]bool, goroutines*per)
	for g, out := range results {
		for i, ts := range out {
			if seen[ts] {
				t.Fatalf("duplicate timestamp %s (goroutine %d, call %d)", ts, g, i)
			}
			seen[ts] = true
			if i > 0 && !out[i-1].Less(ts) {
				t.Fatalf("goroutine %d: Now went from %s to %s", g, out[i-1], ts)
			}
		}
	}
	if len(seen) != goroutines*per {
		t.Fatalf("%d distinct timestamps, want %d", len(seen), goroutines*per)
	}
}

// TestClockUpdateBoundedByPhysical: a remote timestamp more than the max
// offset ahead of the physical clock must not move the clock (issue 9 item
// 2: 200 reads at "HLC + 490 ms" moved every node 78 s ahead, and one
// Internal call with timestamp 9e18 moved them to the year 2255).
func TestClockUpdateBoundedByPhysical(t *testing.T) {
	c, m := hlcNew(t) // max offset 1 s
	maxOff := int64(c.MaxOffset())
	edge := kv.Timestamp{WallTime: hlcStart + maxOff, Logical: 5}
	if err := c.Update(edge); err != nil { // exactly at the bound: accepted
		t.Fatalf("Update(%s) at the bound: %v", edge, err)
	}
	if got := c.Now(); !edge.Less(got) {
		t.Fatalf("Now %s does not exceed the accepted remote %s", got, edge)
	}
	for _, remote := range []kv.Timestamp{
		{WallTime: hlcStart + maxOff + 1},
		{WallTime: hlcStart + int64(time.Hour)},
		{WallTime: 9e18},
	} {
		if err := c.Update(remote); err == nil {
			t.Fatalf("Update(%s) beyond the bound was not refused", remote)
		}
		if got := c.Now(); got.WallTime > hlcStart+maxOff {
			t.Fatalf("Update(%s) moved the clock to %s: %v past physical %d + max offset %v",
				remote, got, time.Duration(got.WallTime-hlcStart-maxOff), hlcStart, c.MaxOffset())
		}
	}
	// The ratchet: each remote just under "HLC + max offset".
	for i := 0; i < 500; i++ {
		now := c.Now()
		// Accepted or refused, depending on how far the HLC has run
		// ahead: what matters is where the clock ends up.
		_ = c.Update(kv.Timestamp{WallTime: now.WallTime + maxOff - int64(10*time.Millisecond)})
		if got := c.Now(); got.WallTime-m.now() > maxOff {
			t.Fatalf("ratchet step %d: HLC %s is %v ahead of physical (max offset %v)",
				i, got, time.Duration(got.WallTime-m.now()), c.MaxOffset())
		}
	}
	// Once physical time catches up, the same remote is accepted.
	m.set(hlcStart + 2*maxOff)
	later := kv.Timestamp{WallTime: hlcStart + 3*maxOff}
	if err := c.Update(later); err != nil {
		t.Fatalf("Update(%s) within the bound: %v", later, err)
	}
	if got := c.Now(); !later.Less(got) {
		t.Fatalf("Now %s does not exceed remote %s accepted within the bound", got, later)
	}
}

// TestClockRefusedJumpReported: a refused jump returns a ClockJumpError
// naming the timestamp and the bound, leaves the clock (and Offset) as it
// was, is counted, and is logged at most once per interval.
func TestClockRefusedJumpReported(t *testing.T) {
	c, m := hlcNew(t)
	var logs bytes.Buffer
	c.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	if err := c.Update(kv.Timestamp{WallTime: hlcStart + int64(500*time.Millisecond)}); err != nil {
		t.Fatalf("Update within the max offset: %v", err)
	}
	if got := c.Offset(); got != 500*time.Millisecond {
		t.Fatalf("Offset %v, want 500ms", got)
	}
	before := c.Now()
	for i := 0; i < 3; i++ {
		err := c.Update(kv.Timestamp{WallTime: 9e18})
		var jump *ClockJumpError
		if !errors.As(err, &jump) || jump.Physical != hlcStart || jump.MaxOffset != time.Second {
			t.Fatalf("Update(9e18) = %v, want a ClockJumpError at physical %d", err, hlcStart)
		}
		if !strings.Contains(err.Error(), "max clock offset 1s") {
			t.Fatalf("error does not name the bound: %v", err)
		}
	}
	if err := c.Check(kv.Timestamp{WallTime: hlcStart + int64(time.Second) + 1}); err == nil {
		t.Fatalf("Check accepted a timestamp 1ns beyond the bound")
	}
	if err := c.Check(kv.Timestamp{WallTime: hlcStart + int64(time.Second), Logical: 9}); err != nil {
		t.Fatalf("Check refused a timestamp at the bound: %v", err)
	}
	if err := c.CheckPeer(kv.Timestamp{WallTime: hlcStart + int64(2*time.Second)}, time.Second); err != nil {
		t.Fatalf("CheckPeer refused a peer timestamp within twice the max offset: %v", err)
	}
	if err := c.CheckPeer(kv.Timestamp{WallTime: hlcStart + int64(2*time.Second) + 1}, time.Second); err == nil {
		t.Fatalf("CheckPeer accepted a peer timestamp beyond twice the max offset")
	}
	if got := c.Now(); got != before.Next() {
		t.Fatalf("refused updates moved the clock: Now %s after %s", got, before)
	}
	if got := c.Offset(); got != 500*time.Millisecond {
		t.Fatalf("Offset %v after refused jumps, want 500ms", got)
	}
	if got := c.RefusedJumps(); got != 5 {
		t.Fatalf("RefusedJumps %d, want 5", got)
	}
	if n := strings.Count(logs.String(), "refused a clock jump"); n != 1 {
		t.Fatalf("%d warnings for 5 refusals in one interval, want 1:\n%s", n, logs.String())
	}
	m.set(hlcStart + int64(time.Second))
	if got := c.Offset(); got != 0 {
		t.Fatalf("Offset %v once physical passed the HLC, want 0", got)
	}
}

// TestClockWaitFor: a timestamp ahead of the clock (within the max offset)
// is waited for, not jumped to; one beyond the bound is refused at once.
func TestClockWaitFor(t *testing.T) {
	c := NewClock(nil, 200*time.Millisecond)
	ctx := context.Background()
	target := kv.Timestamp{WallTime: c.PhysicalNow() + int64(100*time.Millisecond), Logical: 3}
	start := time.Now()
	if err := c.WaitFor(ctx, target); err != nil {
		t.Fatalf("WaitFor within the max offset: %v", err)
	}
	if got := c.Now(); !target.Less(got) {
		t.Fatalf("Now %s after WaitFor(%s)", got, target)
	}
	if waited := time.Since(start); waited < 90*time.Millisecond {
		t.Fatalf("WaitFor returned after %v for a timestamp 100ms ahead: the clock jumped", waited)
	}
	var jump *ClockJumpError
	if err := c.WaitFor(ctx, kv.Timestamp{WallTime: c.PhysicalNow() + int64(time.Second)}); !errors.As(err, &jump) {
		t.Fatalf("WaitFor 1s ahead with max offset 200ms: %v, want a ClockJumpError", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := c.WaitFor(cctx, kv.Timestamp{WallTime: c.PhysicalNow() + int64(150*time.Millisecond)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor past the context deadline: %v", err)
	}
	if off := c.Offset(); off > 0 {
		t.Fatalf("WaitFor moved the clock %v ahead of physical", off)
	}
}

// TestClockUpdateWait: a locally chosen timestamp up to the max offset past
// the limit is waited for, then observed; the clock never runs more than
// the max offset ahead of the physical clock meanwhile.
func TestClockUpdateWait(t *testing.T) {
	c := NewClock(nil, 100*time.Millisecond)
	ts := kv.Timestamp{WallTime: c.PhysicalNow() + int64(150*time.Millisecond), Logical: 2}
	start := time.Now()
	if err := c.UpdateWait(context.Background(), ts); err != nil {
		t.Fatalf("UpdateWait 150ms ahead with max offset 100ms: %v", err)
	}
	if waited := time.Since(start); waited < 40*time.Millisecond {
		t.Fatalf("UpdateWait returned after %v: it did not wait for the physical clock", waited)
	}
	if got := c.Now(); !ts.Less(got) {
		t.Fatalf("Now %s does not exceed %s after UpdateWait", got, ts)
	}
	if off := c.Offset(); off > c.MaxOffset() {
		t.Fatalf("offset %v beyond the max offset", off)
	}
	var jump *ClockJumpError
	if err := c.UpdateWait(context.Background(), kv.Timestamp{WallTime: c.PhysicalNow() + int64(time.Second)}); !errors.As(err, &jump) {
		t.Fatalf("UpdateWait 1s ahead: %v, want a ClockJumpError at once", err)
	}
}
