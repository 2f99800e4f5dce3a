package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestFollowTheWorkload: three nodes, the first two in region a, the third
// in region b. The leases of three user ranges are put on the first node
// (region a); a client then reads those ranges' keys only through the
// third (gateway in region b). The leaseholder sees where the requests
// come from (RangeInfo.request_sources: gateway n3) and its replicate
// queue transfers each lease to the voter in region b, within a bounded
// time (logged). The leases then stay there while the reads go on (lease
// counts and load do not move them back), and RangeInfo.request_sources
// there names the gateway. Then the client reads through the second node
// (region a) and the leases follow it back, later (the averages shift).
// (n1, n3 below: the first and third node.)
func TestFollowTheWorkload(t *testing.T) {
	tier := func(region string) []*rspb.LocalityTier {
		return []*rspb.LocalityTier{{Key: "region", Value: region}}
	}
	tc := startCluster(t, TestClusterOptions{Nodes: 3, ReplicateQueueInterval: 500 * time.Millisecond, SplitCheckInterval: time.Hour,
		Localities: [][]*rspb.LocalityTier{tier("a"), tier("a"), tier("b")}})
	ctx := ctxQueue(t)
	ks := []string{"D-fw", "P-fw", "c-fw"}
	var ids []uint64
	for _, k := range ks {
		if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v")}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		ids = append(ids, rangeOf(tc, k).RangeId)
	}
	n1, n3 := tc.Node(0).NodeID(), tc.Node(2).NodeID()
	holders := func() map[uint64]uint64 {
		out := map[uint64]uint64{}
		for i := 0; i < tc.NumNodes(); i++ {
			for _, ri := range tc.Node(i).Ranges() {
				if ri.LeaseValid && ri.Lease.GetNodeId() == tc.Node(i).NodeID() {
					out[ri.RangeDescriptor.GetRangeId()] = ri.Lease.GetNodeId()
				}
			}
		}
		return out
	}
	// No requests yet: the queue has nothing to follow, and these few
	// leases are within the lease-count thresholds wherever they are.
	timeutil.WaitFor(t, 30*time.Second, "leases of the three ranges on n1", func() error {
		h := holders()
		for _, id := range ids {
			if h[id] == n1 {
				continue
			}
			if err := tc.Node(0).TransferLease(ctx, id, n1); err != nil {
				return fmt.Errorf("r%d to n%d: %w", id, n1, err)
			}
			return fmt.Errorf("r%d was on n%d", id, h[id])
		}
		return nil
	})

	// The client in region b reads through n3 only.
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	reads, failed := 0, 0
	var lastErr error
	var gateway atomic.Int32 // the node index the client reads through
	gateway.Store(2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond) // load generation pace, not a correctness wait
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
			}
			_, err := tc.KV(int(gateway.Load())).Get(rctx, &rspb.GetRequest{Key: []byte(ks[i%len(ks)])})
			mu.Lock()
			if err != nil && rctx.Err() == nil {
				failed++
				lastErr = err
			} else if err == nil {
				reads++
			}
			mu.Unlock()
		}
	}()
	defer func() { stop(); wg.Wait() }()

	start := time.Now()
	timeutil.WaitFor(t, 60*time.Second, "the leases follow the reads to n3 (region b)", func() error {
		h := holders()
		var off []string
		for _, id := range ids {
			if h[id] != n3 {
				off = append(off, fmt.Sprintf("r%d on n%d", id, h[id]))
			}
		}
		if len(off) > 0 {
			return errors.New(strings.Join(off, ", "))
		}
		return nil
	})
	moved := time.Since(start)
	// They stay there while the reads go on: while the new holder's
	// request sources are too young to use (reqload.MinStatsAge), and for
	// three passes of every queue once every range's are known.
	var settle time.Time
	timeutil.WaitFor(t, 60*time.Second, "request sources known at n3, then three more queue passes with the leases there", func() error {
		h := holders()
		for _, id := range ids {
			if h[id] != n3 {
				t.Fatalf("r%d's lease left n3 for n%d while the reads still came through n3; %s", id, h[id], whyMoved(tc, id))
			}
		}
		known := 0
		for _, ri := range tc.Node(2).Ranges() {
			if slices.Contains(ids, ri.RangeDescriptor.GetRangeId()) && len(ri.RequestSources) > 0 {
				known++
			}
		}
		switch {
		case known < len(ids):
			return fmt.Errorf("request sources known for %d of %d ranges", known, len(ids))
		case settle.IsZero():
			settle = time.Now()
			return errors.New("sources known: three queue passes to go")
		case time.Since(settle) < 1500*time.Millisecond:
			return errors.New("waiting")
		}
		return nil
	})
	var sources []string
	for _, ri := range tc.Node(2).Ranges() {
		if ri.RangeDescriptor.GetRangeId() != ids[0] {
			continue
		}
		for _, g := range ri.RequestSources {
			sources = append(sources, fmt.Sprintf("n%d %.1f/s", g.GatewayNodeId, g.Qps))
		}
		// The gateway sends nearly all (the counts began with this
		// lease).
		share := 0.0
		for _, g := range ri.RequestSources {
			if g.GatewayNodeId == n3 && ri.RequestQps > 0 {
				share = g.Qps / ri.RequestQps
			}
		}
		if share < 0.9 {
			t.Errorf("r%d at n%d: request sources %v (%.1f/s), want gateway n%d sending more than 90 %%", ids[0], n3, sources, ri.RequestQps, n3)
		}
	}

	// The client moves to region a (reads through the second node): the
	// leases follow it once region a's share of the averaged requests
	// passes region b's by the margin (a few seconds: the leaseholder's
	// average began when it got the lease).
	gateway.Store(1)
	back := time.Now()
	timeutil.WaitFor(t, 60*time.Second, "the leases follow the client back to region a", func() error {
		h := holders()
		var off []string
		for _, id := range ids {
			if i := tc.IndexOfNodeID(h[id]); i != 0 && i != 1 {
				off = append(off, fmt.Sprintf("r%d on n%d", id, h[id]))
			}
		}
		if len(off) > 0 {
			return errors.New(strings.Join(off, ", "))
		}
		return nil
	})
	movedBack := time.Since(back)
	stop()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("the client moved to region a (gateway n%d): the leases followed it in %.1fs (once the averaged requests shifted past the margin)", tc.Node(1).NodeID(), movedBack.Seconds())
	t.Logf("leases of %v moved from n%d (region a) to n%d (region b, the gateway) %.1fs after the reads through n%d began; %d reads (%d failed, last error %v); r%d's sources at n%d: %v",
		ids, n1, n3, moved.Seconds(), n3, reads, failed, lastErr, ids[0], n3, sources)
	for _, id := range ids {
		if d, ok := tc.Node(2).lastDecision.Load(id); ok {
			t.Logf("r%d last decision at n%d: %v", id, n3, d)
		}
		if d, ok := tc.Node(0).lastDecision.Load(id); ok {
			t.Logf("r%d last decision at n%d: %v", id, n1, d)
		}
	}
}

// whyMoved describes, for a failure message, each node's view of a
// range's lease and the last step its replicate queue carried out for it
// (a queue transfer names its reason there; a lease taken over after a
// liveness lapse shows a new epoch and no step).
func whyMoved(tc *TestCluster, rangeID uint64) string {
	var out []string
	for i := 0; i < tc.NumNodes(); i++ {
		for _, ri := range tc.Node(i).Ranges() {
			if ri.RangeDescriptor.GetRangeId() != rangeID {
				continue
			}
			l := ri.Lease
			out = append(out, fmt.Sprintf("n%d sees lease n%d epoch %d seq %d (%s), last queue step: %q",
				tc.Node(i).NodeID(), l.GetNodeId(), l.GetEpoch(), l.GetSequence(), ri.LeaseState, ri.LastDecision))
		}
	}
	return strings.Join(out, "; ")
}
