package node

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// TestClosedTimestampTargetSetting: the closed_timestamp_target cluster
// setting, written through one node, reaches every node, and their
// closed-timestamp lags follow it (up to the new target, then back down);
// bad values are InvalidArgument naming the field and change nothing.
func TestClosedTimestampTargetSetting(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 3, ClosedTimestampTarget: 300 * time.Millisecond, ClosedTimestampInterval: 100 * time.Millisecond})
	ctx := ctxT(t)
	putKeys(t, tc, 0, "cts", 3)
	admin := rspb.NewAdminClient(tc.Conn(0))
	lags := func() []time.Duration {
		var out []time.Duration
		for i := 0; i < tc.NumNodes(); i++ {
			l, _ := tc.Node(i).Store().ClosedLag()
			out = append(out, l.Round(10*time.Millisecond))
		}
		return out
	}
	follows := func(target time.Duration, lo, hi time.Duration) func() error {
		return func() error {
			for i := 0; i < tc.NumNodes(); i++ {
				if got := tc.Node(i).Store().ClosedTimestampTarget(); got != target {
					return fmt.Errorf("n%d: target %v", i+1, got)
				}
			}
			for i, l := range lags() {
				if l < lo || l > hi {
					return fmt.Errorf("n%d: closed-timestamp lag %v, want in [%v, %v] (all: %v)", i+1, l, lo, hi, lags())
				}
			}
			return nil
		}
	}
	timeutil.WaitFor(t, 30*time.Second, "lags near the start flag's 300ms", follows(300*time.Millisecond, 0, time.Second))
	t.Logf("start flag 300ms: closed-timestamp lags %v", lags())

	for _, bad := range []struct{ name, value, want string }{
		{"closed_timestamp_target", "10ms", "closed_timestamp_target"},
		{"closed_timestamp_target", "2h", "closed_timestamp_target"},
		{"closed_timestamp_target", "-1s", "closed_timestamp_target"},
		{"closed_timestamp_target", "soon", "closed_timestamp_target"},
		{"closed_timestamp_targ", "3s", "name"},
		{"", "3s", "name"},
	} {
		_, err := admin.SetClusterSetting(ctx, &rspb.SetClusterSettingRequest{Name: bad.name, Value: bad.value})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("%s=%s: %v, want InvalidArgument naming %s", bad.name, bad.value, err, bad.want)
		}
	}
	if v, found, err := tc.Node(1).closedTargetSetting(ctx); err != nil || found {
		t.Fatalf("setting after the refusals: %q %t %v, want none stored", v, found, err)
	}

	resp, err := admin.SetClusterSetting(ctx, &rspb.SetClusterSettingRequest{Name: "closed_timestamp_target", Value: "2000ms"})
	if err != nil || resp.Value != "2s" || resp.Previous != "" {
		t.Fatalf("set 2000ms: %v %v, want value 2s, no previous", resp, err)
	}
	set := time.Now()
	timeutil.WaitFor(t, 30*time.Second, "every node's lag up to the 2s target", follows(2*time.Second, 1900*time.Millisecond, 3*time.Second))
	t.Logf("setting 2s: closed-timestamp lags %v after %v", lags(), time.Since(set).Round(100*time.Millisecond))

	resp, err = tc.Node(2).SetClusterSetting(ctx, "closed_timestamp_target", "300ms")
	if err != nil || resp.Previous != "2s" {
		t.Fatalf("set 300ms: %v %v, want previous 2s", resp, err)
	}
	set = time.Now()
	timeutil.WaitFor(t, 30*time.Second, "every node's lag back near 300ms", follows(300*time.Millisecond, 0, time.Second))
	t.Logf("setting 300ms: closed-timestamp lags %v after %v", lags(), time.Since(set).Round(100*time.Millisecond))
}
