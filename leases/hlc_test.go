package leases

import (
	"math"
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
	c.Update(kv.Timestamp{WallTime: hlcStart, Logical: math.MaxInt32})
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
		{"remote far ahead", 0, kv.Timestamp{WallTime: hlcStart + int64(time.Hour), Logical: 3}, kv.Timestamp{WallTime: hlcStart + int64(time.Hour), Logical: 4}},
		{"remote behind", 0, kv.Timestamp{WallTime: hlcStart - 100, Logical: 9}, kv.Timestamp{WallTime: hlcStart, Logical: 1}},
		{"remote equal", 0, kv.Timestamp{WallTime: hlcStart}, kv.Timestamp{WallTime: hlcStart, Logical: 1}},
		{"physical passes remote", 1000, kv.Timestamp{WallTime: hlcStart + 500, Logical: 2}, kv.Timestamp{WallTime: hlcStart + 1000}},
		{"empty remote", 0, kv.Timestamp{}, kv.Timestamp{WallTime: hlcStart, Logical: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, m := hlcNew(t)
			first := c.Now() // {hlcStart, 0}
			c.Update(tc.remote)
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
		c.Update(remote)
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
					c.Update(kv.Timestamp{WallTime: hlcStart + int64(i), Logical: int32(i)})
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
