package reqload

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

// feed records rate requests/s from gw for d, evenly spaced, starting at
// start; it returns the time after the last.
func feed(tr *Tracker, start time.Time, gw uint64, rate int, d time.Duration) time.Time {
	step := time.Second / time.Duration(rate)
	now := start
	for end := start.Add(d); now.Before(end); now = now.Add(step) {
		tr.Record(now, gw)
	}
	return now
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Fatalf("%s = %.3f, want %.3f ± %.3f", what, got, want, tol)
	}
}

// A steady rate converges to itself; two gateways are kept apart and sum.
func TestSteadyRates(t *testing.T) {
	tr := New(10 * time.Second)
	now := t0
	step := 10 * time.Millisecond
	for end := t0.Add(time.Minute); now.Before(end); now = now.Add(step) {
		tr.Record(now, 2) // 100/s
		if now.Sub(t0)%(50*time.Millisecond) == 0 {
			tr.Record(now, 5) // 20/s
		}
	}
	total, by := tr.Load(now)
	if len(by) != 2 || by[0].Gateway != 2 || by[1].Gateway != 5 {
		t.Fatalf("gateways %+v, want n2 then n5", by)
	}
	// After 6 Tau the average is within e^-6 (0.25 %) of the rate.
	near(t, "n2 qps", by[0].QPS, 100, 2)
	near(t, "n5 qps", by[1].QPS, 20, 0.5)
	near(t, "total", total, by[0].QPS+by[1].QPS, 1e-9)
}

// Once requests stop, the rate halves every Tau·ln 2 and the gateway is
// forgotten below DropBelow.
func TestDecayAndDrop(t *testing.T) {
	tr := New(10 * time.Second)
	end := feed(tr, t0, 7, 50, time.Minute)
	_, by := tr.Load(end)
	r0 := by[0].QPS
	tau := 10 * time.Second
	half := time.Duration(float64(tau) * math.Ln2)
	_, by = tr.Load(end.Add(half))
	near(t, "after one half-life", by[0].QPS, r0/2, 0.01)
	// ln(r0/DropBelow)·Tau ≈ 85 s to fall under 0.01/s.
	_, by = tr.Load(end.Add(80 * time.Second))
	if len(by) != 1 {
		t.Fatalf("dropped too early: %+v", by)
	}
	total, by := tr.Load(end.Add(90 * time.Second))
	if len(by) != 0 || total != 0 || tr.Len() != 0 {
		t.Fatalf("after 90 s idle: total %v, gateways %+v, kept %d; want all dropped", total, by, tr.Len())
	}
}

// A workload that moves from one gateway to another: the new one passes
// the old one after about Tau·ln 2 and dominates after 3 Tau.
func TestWorkloadMoves(t *testing.T) {
	tr := New(10 * time.Second)
	now := feed(tr, t0, 1, 40, time.Minute)
	start := now
	crossed := time.Duration(0)
	for now.Before(start.Add(30 * time.Second)) {
		now = feed(tr, now, 2, 40, time.Second)
		_, by := tr.Load(now)
		if crossed == 0 && len(by) == 2 && by[1].QPS > by[0].QPS {
			crossed = now.Sub(start)
		}
	}
	if crossed < 5*time.Second || crossed > 9*time.Second {
		t.Fatalf("the new gateway passed the old one after %s, want about 7 s (Tau·ln 2)", crossed)
	}
	_, by := tr.Load(now)
	if share := by[1].QPS / (by[0].QPS + by[1].QPS); share < 0.9 {
		t.Fatalf("after 3 Tau the new gateway has %.2f of the load, want > 0.9", share)
	}
}

// At most MaxGateways are kept: a new one replaces the slowest; a time
// before the last record never raises a count.
func TestBoundedAndMonotonic(t *testing.T) {
	tr := New(time.Second)
	for g := uint64(1); g <= MaxGateways; g++ {
		for i := uint64(0); i < g; i++ {
			tr.Record(t0, g)
		}
	}
	tr.Record(t0, 1000)
	if tr.Len() != MaxGateways {
		t.Fatalf("kept %d gateways, want %d", tr.Len(), MaxGateways)
	}
	_, by := tr.Load(t0)
	for _, g := range by {
		if g.Gateway == 1 {
			t.Fatalf("the slowest gateway n1 was kept: %+v", by[:3])
		}
	}
	before, _ := tr.Load(t0)
	tr.Load(t0.Add(-time.Hour))
	after, _ := tr.Load(t0)
	near(t, "total after an earlier Load", after, before, 1e-9)
}

// Record and Load are cheap enough for the request path.
func BenchmarkRecord(b *testing.B) {
	tr := New(DefaultTau)
	now := t0
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Microsecond)
		tr.Record(now, uint64(i%3))
	}
}

// ForLease: a new lease starts the counts afresh (and says since when);
// the same lease keeps them.
func TestForLease(t *testing.T) {
	tr := New(0)
	if s := tr.ForLease(t0, 7); !s.Equal(t0) {
		t.Fatalf("first ForLease: since %v, want %v", s, t0)
	}
	end := feed(tr, t0, 1, 50, 10*time.Second)
	if s := tr.ForLease(end, 7); !s.Equal(t0) {
		t.Fatalf("same lease: since %v, want %v", s, t0)
	}
	if total, _ := tr.Load(end); total < 10 {
		t.Fatalf("same lease kept %.2f req/s, want the counts kept", total)
	}
	if s := tr.ForLease(end, 8); !s.Equal(end) {
		t.Fatalf("new lease: since %v, want %v", s, end)
	}
	if total, by := tr.Load(end); total != 0 || len(by) != 0 {
		t.Fatalf("new lease: %.2f req/s from %v, want the old lease's counts gone", total, by)
	}
}

// RecordUnder under a new lease starts afresh, then counts the request.
func TestRecordUnder(t *testing.T) {
	tr := New(0)
	end := feed(tr, t0, 1, 50, 10*time.Second)
	tr.ForLease(t0, 3)
	tr.RecordUnder(end, 4, 2)
	if _, by := tr.Load(end); len(by) != 1 || by[0].Gateway != 2 {
		t.Fatalf("after a request under a new lease: %v, want gateway 2 alone", by)
	}
}
