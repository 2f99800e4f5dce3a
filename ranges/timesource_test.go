package ranges

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4/raftio"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// waitTimers polls (with a deadline) until ts has n armed timers/tickers:
// the goroutine under test is waiting on the manual clock.
func waitTimers(t *testing.T, ts *timeutil.ManualTimeSource, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for ts.NumTimers() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d timers armed, want %d", ts.NumTimers(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEveryRunsOnTheInjectedClock: the store's loops tick on its
// TimeSource, not on the wall clock.
func TestEveryRunsOnTheInjectedClock(t *testing.T) {
	ts := timeutil.NewManualTimeSource(time.Unix(1e9, 0))
	s := &Store{cfg: StoreConfig{TimeSource: ts}, stopc: make(chan struct{})}
	calls := make(chan time.Time, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.every(time.Hour, func() { calls <- s.cfg.TimeSource.Now() })
	}()
	defer func() { close(s.stopc); <-done }()
	waitTimers(t, ts, 1)
	select {
	case <-calls:
		t.Fatal("loop ran before its interval passed on the injected clock")
	case <-time.After(50 * time.Millisecond):
	}
	for i := 1; i <= 3; i++ {
		ts.Advance(time.Hour)
		select {
		case at := <-calls:
			if want := time.Unix(1e9, 0).Add(time.Duration(i) * time.Hour); !at.Equal(want) {
				t.Fatalf("run %d saw time %v, want %v", i, at, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("run %d: loop did not run after the clock advanced an interval", i)
		}
	}
}

// TestWatchFrozenTimesOutOnTheInjectedClock: the freeze timeout is measured
// on the store's TimeSource.
func TestWatchFrozenTimesOutOnTheInjectedClock(t *testing.T) {
	ts := timeutil.NewManualTimeSource(time.Unix(1e9, 0))
	s := &Store{cfg: StoreConfig{TimeSource: ts, FreezeTimeout: time.Minute}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		replicas: map[uint64]*Replica{}}
	m := &stateMachine{rangeID: 5, replicaID: 1}
	m.frozen.Store(4)
	st := &Replica{rangeID: 5, replicaID: 1, store: s, sm: m}
	s.replicas[5] = st
	s.leaders.Store(uint64(5), raftio.LeaderInfo{ShardID: 5, LeaderID: 2}) // another replica leads: no thaw here
	st.watchFrozen()                                                       // first sight: starts the timer
	ts.Advance(59 * time.Second)
	st.watchFrozen()
	if st.lastFrozenCheck.Load() != 0 {
		t.Fatal("frozen range checked before FreezeTimeout passed on the injected clock")
	}
	ts.Advance(time.Second)
	st.watchFrozen() // not the leader: checked (warned), no thaw started
	if got, want := st.lastFrozenCheck.Load(), ts.Now().UnixNano(); got != want {
		t.Fatalf("frozen range last checked at %d, want %d (after FreezeTimeout on the injected clock)", got, want)
	}
}

// TestLoadSplitSeededByRangeID: a range's load-split sampling depends only
// on its range ID, so its decisions can be replayed.
func TestLoadSplitSeededByRangeID(t *testing.T) {
	ts := timeutil.NewManualTimeSource(time.Unix(1e9, 0))
	s := &Store{cfg: StoreConfig{TimeSource: ts, LoadSplitQPS: 100, LoadSplitDuration: time.Second}}
	run := func(rangeID uint64) string {
		tr := s.newSplitTracking(rangeID)
		start := ts.Now()
		// 3 s at 1000 requests/s over 1000 keys, the same sequence for both runs.
		for i := 0; i < 3000; i++ {
			now := start.Add(time.Duration(i) * time.Millisecond)
			key := []byte(fmt.Sprintf("k%04d", (i*7919)%1000))
			tr.recordLoad(now, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: key}}}})
		}
		key, ok := tr.load.MaybeSplitKey(start.Add(3 * time.Second))
		return fmt.Sprintf("%q %v", key, ok)
	}
	for id := uint64(1); id <= 8; id++ {
		a, b := run(id), run(id)
		if a != b {
			t.Fatalf("r%d: two trackers chose different split keys: %s and %s", id, a, b)
		}
		if !bytes.Contains([]byte(a), []byte("true")) {
			t.Fatalf("r%d: no split key found (%s)", id, a)
		}
	}
}
