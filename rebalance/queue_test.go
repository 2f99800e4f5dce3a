package rebalance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestPassSteps: a pass carries out its plan's steps in order, skips a
// step whose range changed since the plan (lease moved, or a newer
// descriptor), goes on after a failed step, and counts each outcome.
func TestPassSteps(t *testing.T) {
	in := Input{Self: 1, Factor: 3}
	for _, s := range []string{"n1", "n2", "n3", "n4 dead"} {
		in.Nodes = append(in.Nodes, parseNode(t, s))
	}
	// Every range lost one voter: same priority, by range ID.
	for _, s := range []string{"r2 voters=n1,n2,n4 lh=n1 mine", "r3 voters=n1,n2,n4 lh=n1 mine", "r4 voters=n1,n3,n4 lh=n1 mine", "r5 voters=n1,n2,n4 lh=n1 mine"} {
		v := parseRange(t, s)
		v.Desc.Generation = 7
		in.Ranges = append(in.Ranges, v)
	}
	var called, done []string
	cur := map[uint64]struct {
		gen  uint64
		mine bool
	}{2: {7, true}, 3: {7, false}, 4: {8, true}, 5: {7, true}}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	q := New(Config{
		Gather: func(context.Context) (Input, error) { return in, nil },
		Current: func(id uint64) (*rspb.RangeDescriptor, bool) {
			c := cur[id]
			return &rspb.RangeDescriptor{RangeId: id, Generation: c.gen}, c.mine
		},
		Change: func(_ context.Context, id uint64, add, remove []uint64) error {
			called = append(called, fmt.Sprintf("r%d+%v-%v", id, add, remove))
			if id == 2 {
				return errors.New("snapshot failed")
			}
			return nil
		},
		Done: func(s Step, err error) {
			done = append(done, fmt.Sprintf("r%d:%v", s.RangeID, err))
		},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: m,
	})
	p, err := q.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Steps) != 4 || p.Steps[0].RangeID != 2 {
		t.Fatalf("plan:\n%s", p)
	}
	if got, want := fmt.Sprint(called), "[r2+[3]-[] r5+[3]-[]]"; got != want {
		t.Fatalf("changes %s, want %s (r3's lease moved, r4's descriptor changed)\n%s", got, want, p)
	}
	if got, want := fmt.Sprint(done), "[r2:snapshot failed r5:<nil>]"; got != want {
		t.Errorf("outcomes told to Done: %s, want %s", got, want)
	}
	for _, c := range []struct {
		result string
		want   float64
	}{{"error", 1}, {"skipped", 2}, {"ok", 1}} {
		if got := value(t, m.actions.WithLabelValues("replace-voter", c.result)); got != c.want {
			t.Errorf("replace-voter %s: %v, want %v", c.result, got, c.want)
		}
	}
	if got := value(t, m.underReplicated); got != 4 {
		t.Errorf("under-replicated gauge %v, want 4", got)
	}
	// An inactive node does nothing and reports 0.
	q.cfg.Active = func() bool { return false }
	called = nil
	if _, err := q.Pass(context.Background()); !errors.Is(err, errInactive) || len(called) != 0 {
		t.Fatalf("inactive pass: %v, changes %v", err, called)
	}
	if got := value(t, m.underReplicated); got != 0 {
		t.Errorf("under-replicated gauge of an inactive node %v, want 0", got)
	}
}

// value reads a counter's or gauge's value.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue() + m.GetGauge().GetValue()
}

// TestPassRebalance: a rebalance step is one ChangeReplicas call that adds
// the target and then removes the voter that moves; a pass carries out
// one, and the next pass, from views that include it, the next.
func TestPassRebalance(t *testing.T) {
	in := Input{Self: 1, Factor: 3}
	for _, s := range []string{"n1", "n2", "n3", "n4"} {
		in.Nodes = append(in.Nodes, parseNode(t, s))
	}
	for i := 2; i < 10; i++ {
		in.Ranges = append(in.Ranges, parseRange(t, fmt.Sprintf("r%d voters=n1,n2,n3 lh=n1 mine", i)))
	}
	var called []string
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	q := New(Config{
		Gather: func(context.Context) (Input, error) { return in, nil },
		Current: func(id uint64) (*rspb.RangeDescriptor, bool) {
			for _, r := range in.Ranges {
				if r.Desc.RangeId == id {
					return r.Desc, true
				}
			}
			return nil, false
		},
		Change: func(_ context.Context, id uint64, add, remove []uint64) error {
			called = append(called, fmt.Sprintf("r%d+%v-%v", id, add, remove))
			// Carry the change out on the views, as the cluster would.
			for _, r := range in.Ranges {
				if r.Desc.RangeId != id {
					continue
				}
				var reps []*rspb.ReplicaDescriptor
				for _, rd := range r.Desc.Replicas {
					if rd.NodeId != remove[0] {
						reps = append(reps, rd)
					}
				}
				r.Desc.Replicas = append(reps, &rspb.ReplicaDescriptor{NodeId: add[0], ReplicaId: r.Desc.NextReplicaId})
				r.Desc.NextReplicaId++
				r.Desc.Generation++
			}
			return nil
		},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: m,
	})
	for i := 0; i < 5; i++ {
		if _, err := q.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Counts 8/8/8/0, mean 6: n4 is underfull (fewer than mean − 2) until
	// it holds 4; the fullest voter moves first, the one not holding the
	// lease among equals (n2, n3, then n1 at 8 against 7 and 7, then n2).
	if got, want := fmt.Sprint(called), "[r2+[4]-[2] r3+[4]-[3] r4+[4]-[1] r5+[4]-[2]]"; got != want {
		t.Fatalf("changes %s, want %s", got, want)
	}
	if got := value(t, m.actions.WithLabelValues("rebalance", "ok")); got != 4 {
		t.Errorf("rebalance ok: %v, want 4", got)
	}
}

// TestPassLeaseTransferRateLimit: the queue transfers a range's lease at
// most once per MinLeaseTransferInterval, even if the lease is back here
// and the scorer asks again at once (a transfer that failed, or a lease
// that bounced back): the pass in between lists it as waiting.
func TestPassLeaseTransferRateLimit(t *testing.T) {
	in := Input{Self: 1, Factor: 3}
	for _, s := range []string{"n1 region=us", "n2 region=ap", "n3 region=eu"} {
		in.Nodes = append(in.Nodes, parseNode(t, s))
	}
	for _, s := range []string{"r2 voters=n1,n2,n3 lh=n1 mine qps=20 from=n3:20", "r3 voters=n1,n2,n3 lh=n1 mine qps=20 from=n3:20"} {
		in.Ranges = append(in.Ranges, parseRange(t, s))
	}
	clock := timeutil.NewManualTimeSource(planNow)
	var transfers []string
	q := New(Config{
		Gather: func(context.Context) (Input, error) { return in, nil },
		Current: func(id uint64) (*rspb.RangeDescriptor, bool) {
			return &rspb.RangeDescriptor{RangeId: id}, true
		},
		Transfer: func(_ context.Context, id, target uint64) error {
			transfers = append(transfers, fmt.Sprintf("+%s r%d->n%d", clock.Since(planNow), id, target))
			if id == 2 {
				return errors.New("target not caught up")
			}
			return nil // r3's lease comes back (the views say n1 still holds it)
		},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		TimeSource: clock,
	})
	var waits []string
	for _, d := range []time.Duration{0, 400 * time.Millisecond, 599 * time.Millisecond, 1 * time.Millisecond, 1500 * time.Millisecond} {
		clock.Advance(d)
		p, err := q.Pass(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range p.Skips {
			if strings.HasPrefix(s.Why, "waiting: its lease was transferred") {
				waits = append(waits, fmt.Sprintf("+%s r%d", clock.Since(planNow), s.RangeID))
			}
		}
	}
	if got, want := fmt.Sprint(transfers), "[+0s r2->n3 +0s r3->n3 +1s r2->n3 +1s r3->n3 +2.5s r2->n3 +2.5s r3->n3]"; got != want {
		t.Errorf("transfers %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(waits), "[+400ms r2 +400ms r3 +999ms r2 +999ms r3]"; got != want {
		t.Errorf("waiting passes %s, want %s", got, want)
	}
}
