package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestReadReplicaClosedLagOnWhiteboard: a read replica's gossiped store
// descriptor carries its closed-timestamp lag (the most behind replica's,
// and which range), as a voter's node hears it: about the target while it
// is healthy, growing while it is cut off from the voters (gossip is not
// cut: the descriptor still arrives), and back near the target once
// healed. The routing table's read servers carry it too.
func TestReadReplicaClosedLagOnWhiteboard(t *testing.T) {
	const target = 300 * time.Millisecond
	net := fault.NewNetwork()
	tc := startCluster(t, TestClusterOptions{Nodes: 3, Network: net, ReplicateQueueInterval: queueInterval, SplitCheckInterval: time.Hour,
		ClosedTimestampTarget: target, ClosedTimestampInterval: 100 * time.Millisecond})
	ctx := ctxQueue(t)
	putKeys(t, tc, 0, "cl", 5)
	rri, err := tc.AddReadReplica()
	if err != nil {
		t.Fatal(err)
	}
	rr, err := tc.WaitJoined(ctx, rri)
	if err != nil {
		t.Fatal(err)
	}
	heard := func() (*rspb.StoreDescriptor, error) {
		e, ok := tc.Node(0).Stores()[rr]
		if !ok {
			return nil, fmt.Errorf("n%d's store descriptor not heard at n1", rr)
		}
		return e.Desc, nil
	}
	lagOf := func(d *rspb.StoreDescriptor) time.Duration { return time.Duration(d.GetMaxClosedTimestampLagNanos()) }
	healthy := func() error {
		descs, err := tc.Node(0).MetaRanges(ctx)
		if err != nil {
			return err
		}
		for _, d := range descs {
			if nv := nodesOf(d, rspb.ReplicaType_NON_VOTER); len(nv) != 1 || nv[0] != rr {
				return fmt.Errorf("r%d: non-voters %v", d.RangeId, nv)
			}
		}
		d, err := heard()
		if err != nil {
			return err
		}
		if lag := lagOf(d); lag <= 0 || lag > 2*time.Second || d.ClosedLaggingRangeId == 0 {
			return fmt.Errorf("closed-timestamp lag %v (r%d), want in (0, 2s] with its range", lag, d.ClosedLaggingRangeId)
		}
		return nil
	}
	timeutil.WaitFor(t, 60*time.Second, "a non-voter of every range on the read replica, its gossiped closed-timestamp lag near the target", healthy)
	d, _ := heard()
	t.Logf("healthy read replica n%d: closed-timestamp lag %v (r%d) on the whiteboard (target %v), applied-index lag %d",
		rr, lagOf(d), d.ClosedLaggingRangeId, target, d.MaxAppliedIndexLag)

	disc := rspb.NewDiscoveryClient(tc.Conn(1))
	timeutil.WaitFor(t, 20*time.Second, "the read replica's lag in the routing table", func() error {
		rt, err := disc.GetRoutingTable(ctx, &rspb.GetRoutingTableRequest{})
		if err != nil {
			return err
		}
		for _, e := range rt.Ranges {
			for _, r := range e.Readers {
				if r.NodeId == rr && r.ClosedTimestampLagNanos > 0 {
					t.Logf("routing table: r%d reader n%d (%s) closed-timestamp lag %v", e.RangeId, rr, r.Role, time.Duration(r.ClosedTimestampLagNanos))
					return nil
				}
			}
		}
		return fmt.Errorf("no reader n%d with a lag in %v", rr, rt.Ranges)
	})

	// Cut off from the voters (Raft and gRPC, so no side transport), its
	// closed timestamps stop and the gossiped lag grows.
	all := []int{0, 1, 2, rri}
	net.Isolate(rri, all)
	cut := time.Now()
	timeutil.WaitFor(t, 30*time.Second, "the cut-off read replica's gossiped lag to grow past 3 s", func() error {
		d, err := heard()
		if err != nil {
			return err
		}
		if lag := lagOf(d); lag < 3*time.Second {
			return fmt.Errorf("lag %v", lag)
		}
		return nil
	})
	d, _ = heard()
	t.Logf("cut off for %v: closed-timestamp lag %v (r%d) on the whiteboard", time.Since(cut).Round(100*time.Millisecond), lagOf(d), d.ClosedLaggingRangeId)

	net.Heal()
	healed := time.Now()
	timeutil.WaitFor(t, 60*time.Second, "the healed read replica's gossiped lag back near the target", healthy)
	d, _ = heard()
	t.Logf("healed: closed-timestamp lag %v (r%d) after %v", lagOf(d), d.ClosedLaggingRangeId, time.Since(healed).Round(100*time.Millisecond))
}
