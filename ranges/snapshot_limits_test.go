package ranges

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4/raftio"
	sm "github.com/lni/dragonboat/v4/statemachine"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rangestore/rangestore/internal/metricstest"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestTokenBucket: credit up to the burst is free, a write beyond it waits
// its cost at the rate, and credit refills with time, never above the
// burst.
func TestTokenBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const mib = 1 << 20
	b := newTokenBucket(2*mib, t0) // burst 1 MiB
	for i, c := range []struct {
		at   time.Duration
		n    int
		wait time.Duration
	}{
		{0, mib / 2, 0},                  // within the burst
		{0, mib / 2, 0},                  // burst used up
		{0, mib, 500 * time.Millisecond}, // 1 MiB of debt at 2 MiB/s
		{500 * time.Millisecond, mib / 2, 250 * time.Millisecond}, // debt repaid, half a MiB more
		{10 * time.Second, mib, 0},                                // refilled, but only to the burst
		{10 * time.Second, 1, time.Second / (2 * mib)},
	} {
		if got := b.take(t0.Add(c.at), c.n); got != c.wait {
			t.Errorf("step %d: take(%v, %d) waits %v, want %v", i, c.at, c.n, got, c.wait)
		}
	}
	small := newTokenBucket(1000, t0) // burst is the rate when below 1 MiB
	if got := small.take(t0, 1000); got != 0 {
		t.Errorf("small bucket first second waits %v", got)
	}
	if got := small.take(t0, 500); got != 500*time.Millisecond {
		t.Errorf("small bucket over its burst waits %v, want 500ms", got)
	}
}

// TestSnapshotSlots: at most maxInFlight snapshots hold a slot per
// direction; a waiting one gives up when its stop channel closes; the
// in-flight gauge follows.
func TestSnapshotSlots(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	l := newSnapshotLimits(-1, 2, timeutil.DefaultTimeSource{}, m)
	never := make(chan struct{})
	r1, err := l.acquire(snapSend, never)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.acquire(snapSend, never)
	if err != nil {
		t.Fatal(err)
	}
	// Apply slots are separate.
	ra, err := l.acquire(snapApply, never)
	if err != nil {
		t.Fatal(err)
	}
	if got := metricstest.Sum(t, reg, "rangestore_snapshots_in_flight", map[string]string{"direction": snapSend}); got != 2 {
		t.Fatalf("send in flight %v, want 2", got)
	}
	stop := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		rel, err := l.acquire(snapSend, stop)
		if err == nil {
			rel()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a third send got a slot: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(stop)
	if err := <-got; !errors.Is(err, sm.ErrSnapshotStopped) {
		t.Fatalf("stopped wait for a slot: %v, want ErrSnapshotStopped", err)
	}
	r1()
	r3, err := l.acquire(snapSend, never)
	if err != nil {
		t.Fatal(err)
	}
	r2()
	r3()
	ra()
	for _, d := range []string{snapSend, snapApply} {
		if got := metricstest.Sum(t, reg, "rangestore_snapshots_in_flight", map[string]string{"direction": d}); got != 0 {
			t.Errorf("%s in flight after release %v", d, got)
		}
	}
}

// TestLimitedWriterWaitsForTheRate: with a manual clock, a write beyond
// the burst blocks until the clock has advanced by its cost, and a closed
// stop channel ends the wait with ErrSnapshotStopped.
func TestLimitedWriterWaitsForTheRate(t *testing.T) {
	clock := timeutil.NewManualTimeSource(time.Unix(1000, 0))
	l := newSnapshotLimits(1<<20, 1, clock, nil)
	var sink bytes.Buffer
	w := &limitedWriter{w: &sink, l: l, stopc: make(chan struct{})}
	if _, err := w.Write(make([]byte, 1<<20)); err != nil { // the burst
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.Write(make([]byte, 1<<19))
		done <- err
	}()
	timeutil.WaitFor(t, 10*time.Second, "the writer waits on a timer", func() error {
		if clock.NumTimers() != 1 {
			return fmt.Errorf("%d timers", clock.NumTimers())
		}
		return nil
	})
	clock.Advance(499 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("write returned before its cost elapsed: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	clock.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if w.n != 3<<19 || sink.Len() != 3<<19 {
		t.Fatalf("wrote %d (sink %d), want %d", w.n, sink.Len(), 3<<19)
	}
	stop := make(chan struct{})
	close(stop)
	w.stopc = stop
	if _, err := w.Write(make([]byte, 1<<20)); !errors.Is(err, sm.ErrSnapshotStopped) {
		t.Fatalf("write with a closed stop channel: %v, want ErrSnapshotStopped", err)
	}
}

// TestSnapshotMetrics: a sent and an applied snapshot are counted with
// their bytes and durations; a failed apply counts as a failure only;
// delivered and aborted streams are counted from Dragonboat's events.
func TestSnapshotMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	lim := newSnapshotLimits(-1, 2, timeutil.DefaultTimeSource{}, m)
	src := smtNew(t)
	src.sm.snaps = lim
	src.write(smtTS(time.Second, 0), smtPut("ub", "b1"), smtPut("uc", "c1"))
	snap := src.saveSnapshot()
	dstEng := smtOpenEngine(t)
	dst := smtOpen(t, dstEng, 2)
	dst.sm.snaps = lim
	if err := dst.sm.RecoverFromSnapshot(bytes.NewReader(snap[:len(snap)-3]), make(chan struct{})); err == nil {
		t.Fatal("recovery from a truncated stream succeeded")
	}
	if err := dst.sm.RecoverFromSnapshot(bytes.NewReader(snap), make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	// Dragonboat reports whether streams it sent were delivered.
	ev := snapshotEvents{m: m}
	ev.SendSnapshotCompleted(raftio.SnapshotInfo{})
	ev.SendSnapshotAborted(raftio.SnapshotInfo{})
	ev.SendSnapshotAborted(raftio.SnapshotInfo{})
	n := float64(len(snap))
	for what, c := range map[string]struct {
		got, want float64
	}{
		"sent":            {metricstest.Sum(t, reg, "rangestore_snapshots_sent_total", nil), 1},
		"received":        {metricstest.Sum(t, reg, "rangestore_snapshots_received_total", nil), 1},
		"bytes sent":      {metricstest.Sum(t, reg, "rangestore_snapshot_bytes_sent_total", nil), n},
		"bytes received":  {metricstest.Sum(t, reg, "rangestore_snapshot_bytes_received_total", nil), n + n - 3},
		"apply failures":  {metricstest.Sum(t, reg, "rangestore_snapshot_failures_total", map[string]string{"direction": snapApply}), 1},
		"send failures":   {metricstest.Sum(t, reg, "rangestore_snapshot_failures_total", map[string]string{"direction": snapSend}), 2},
		"send durations":  {metricstest.Sum(t, reg, "rangestore_snapshot_seconds", map[string]string{"direction": snapSend}), 1},
		"apply durations": {metricstest.Sum(t, reg, "rangestore_snapshot_seconds", map[string]string{"direction": snapApply}), 1},
		"apply in flight": {metricstest.Sum(t, reg, "rangestore_snapshots_in_flight", map[string]string{"direction": snapApply}), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", what, c.got, c.want)
		}
	}
	if v, _ := dst.get("ub"); v != "b1" {
		t.Fatalf("after recovery ub = %q", v)
	}
}

// TestRecoverAbortedBeforeIngest: a recovery that fails after staging the
// whole snapshot (just before the ingestion) leaves the old state intact:
// readers during the recovery and after the failure see only the old
// data, applied index and descriptor; after the engine is reopened (a
// crash at that point), Open still answers the old applied index, so
// Dragonboat applies the snapshot again; a retry then installs all of it.
func TestRecoverAbortedBeforeIngest(t *testing.T) {
	src := smtNew(t)
	var reqs []*rspb.RequestUnion
	for i := 0; i < 2000; i++ {
		reqs = append(reqs, smtPut(fmt.Sprintf("ub%05d", i), "new"))
	}
	src.write(smtTS(time.Second, 0), reqs...)
	snap := src.saveSnapshot()

	dir := t.TempDir()
	dstEng, err := kv.Open(dir, kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	smtWriteDesc(t, dstEng, smtDesc())
	dst := smtOpen(t, dstEng, 2)
	dst.write(smtTS(time.Hour, 0), smtPut("ub00007", "old"), smtPut("uk", "old"))
	oldApplied := dst.sm.applied.Load()
	oldData := smtRawData(t, dstEng, smtStart, smtEnd)

	staged := 0
	dst.sm.beforeIngest = func() error {
		staged++
		// A reader in the middle of the recovery sees the old state only.
		if got := smtRawData(t, dstEng, smtStart, smtEnd); !smtEqual(got, oldData) {
			t.Errorf("data visible before the ingestion:\n%v\nwant the old\n%v", got, oldData)
		}
		if v, _ := dst.get("uk"); v != "old" {
			t.Errorf("uk during recovery = %q, want old", v)
		}
		return errors.New("injected failure before the ingestion")
	}
	if err := dst.sm.RecoverFromSnapshot(bytes.NewReader(snap), make(chan struct{})); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("recovery with a failing hook: %v", err)
	}
	if staged != 1 {
		t.Fatalf("hook ran %d times", staged)
	}
	if got := smtRawData(t, dstEng, smtStart, smtEnd); !smtEqual(got, oldData) {
		t.Fatalf("data after the failed recovery:\n%v\nwant the old\n%v", got, oldData)
	}
	if got := dst.sm.applied.Load(); got != oldApplied {
		t.Fatalf("applied after the failed recovery %d, want %d", got, oldApplied)
	}
	if names, _ := os.ReadDir(filepath.Join(dir, "ingest-tmp")); len(names) != 0 {
		t.Fatalf("staged files left after the failure: %v", names)
	}
	// A crash at that point: the reopened replica is at the old index.
	if err := dstEng.Close(); err != nil {
		t.Fatal(err)
	}
	dstEng, err = kv.Open(dir, kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dstEng.Close()
	dst = smtOpen(t, dstEng, 2)
	if dst.index != oldApplied {
		t.Fatalf("Open after the failed recovery = %d, want the old %d", dst.index, oldApplied)
	}
	// Dragonboat applies the snapshot again: all of it arrives.
	if err := dst.sm.RecoverFromSnapshot(bytes.NewReader(snap), make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	if got, want := smtRawData(t, dstEng, smtStart, smtEnd), smtRawData(t, src.eng, smtStart, smtEnd); !smtEqual(got, want) {
		t.Fatalf("data after the retry: %d entries, want the source's %d", len(got), len(want))
	}
	if v, _ := dst.get("uk"); v != "" {
		t.Fatalf("uk after the retry = %q, want absent", v)
	}
	if idx, err := newStateMachine(dstEng, smtRangeID, 2, nil).Open(nil); err != nil || idx != src.index {
		t.Fatalf("Open after the retry = %d, %v; want %d", idx, err, src.index)
	}
}

// TestRecoverMemoryBounded: applying a 32 MiB snapshot holds a small part
// of it in memory (the live heap midway through the stream stays far
// below the snapshot's size; a single write batch would hold all of it).
func TestRecoverMemoryBounded(t *testing.T) {
	const value, count = 4 << 10, 8 << 10 // 32 MiB
	srcEng, err := kv.Open(t.TempDir(), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srcEng.Close()
	smtWriteDesc(t, srcEng, smtDesc())
	v := bytes.Repeat([]byte("v"), value)
	for i := 0; i < count; i += 1024 {
		b := srcEng.NewBatch()
		for j := i; j < i+1024; j++ {
			if err := b.PutMVCC([]byte(fmt.Sprintf("ub%06d", j)), smtTS(time.Second, 0), v); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		_ = b.Close()
	}
	src := smtOpen(t, srcEng, 1)
	ctx, err := src.sm.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "snap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := src.sm.SaveSnapshot(ctx, f, make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil || size < count*value {
		t.Fatalf("snapshot file of %d bytes (%v)", size, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}

	dstEng, err := kv.Open(t.TempDir(), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dstEng.Close()
	dst := smtOpen(t, dstEng, 2)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	probe := &heapProbe{r: f, at: size / 2}
	if err := dst.sm.RecoverFromSnapshot(probe, make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	if !probe.measured {
		t.Fatal("the stream was not read past its middle")
	}
	grew := int64(probe.heap) - int64(base)
	t.Logf("live heap midway through a %d MiB snapshot: %+.1f MiB", size>>20, float64(grew)/(1<<20))
	if grew > 8<<20 {
		t.Fatalf("live heap grew by %d MiB while applying a %d MiB snapshot", grew>>20, size>>20)
	}
	if v, _ := dst.get(fmt.Sprintf("ub%06d", count-1)); len(v) != value {
		t.Fatalf("last key after recovery has %d bytes", len(v))
	}
}

// heapProbe reads r and, once at bytes have been read, measures the live
// heap (after a collection).
type heapProbe struct {
	r        io.Reader
	at, n    int64
	heap     uint64
	measured bool
}

func (p *heapProbe) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if !p.measured && p.n >= p.at {
		p.measured = true
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		p.heap = ms.HeapAlloc
	}
	return n, err
}
