package node

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestReplicateQueueAddsNonVoters: on 4 nodes, a zone of num_replicas 4 /
// num_voters 3 on the keys from "m" makes the replicate queue add a
// non-voter of the range [m, end) on the node without a voter of it
// (issue 13 item 1: ActionAddNonVoter carried out, never promoted): it
// ends with 3 voters and 1 non-voter on 4 distinct nodes, the other
// ranges keep 3 voters and no non-voter, and the data stays readable.
func TestReplicateQueueAddsNonVoters(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 4, SplitKeys: [][]byte{[]byte("m")}, ReplicateQueueInterval: queueInterval, SplitCheckInterval: time.Hour})
	ctx := ctxQueue(t)
	putKeys(t, tc, 0, "nv", 20) // keys "nv..." are in [m, end)
	start := time.Now()
	if _, err := tc.Node(1).SetZone(ctx, &rspb.SetZoneRequest{StartKey: []byte("m"), Fields: map[string]string{"num_replicas": "4", "num_voters": "3"}}); err != nil {
		t.Fatal(err)
	}
	var last string
	timeutil.WaitFor(t, 40*time.Second, "[m, end) on 3 voters and 1 non-voter, the others on 3 voters", func() error {
		descs, err := tc.Node(2).MetaRanges(ctx)
		if err != nil {
			return err
		}
		last = ""
		for _, d := range descs {
			voters, nonVoters := nodesOf(d, rspb.ReplicaType_VOTER), nodesOf(d, rspb.ReplicaType_NON_VOTER)
			seen := map[uint64]bool{}
			for _, id := range append(append([]uint64(nil), voters...), nonVoters...) {
				seen[id] = true
			}
			last += fmt.Sprintf("r%d voters %v non-voters %v; ", d.RangeId, voters, nonVoters)
			want := 0
			if bytes.Equal(d.StartKey, keys.UserKey([]byte("m"))) {
				want = 1
			}
			if len(voters) != 3 || len(nonVoters) != want || len(seen) != 3+want {
				return fmt.Errorf("r%d: voters %v, non-voters %v", d.RangeId, voters, nonVoters)
			}
		}
		return nil
	})
	t.Logf("non-voters added %s after the zone was set: %s", time.Since(start).Round(100*time.Millisecond), last)
	// The descriptor names the non-voter before its step ends (it waits
	// for the snapshot).
	timeutil.WaitFor(t, 30*time.Second, "an add-non-voter step done", func() error {
		if got := metricSum(t, tc, "rangestore_replicate_queue_actions_total", map[string]string{"action": "add-non-voter", "result": "ok"}); got < 1 {
			return fmt.Errorf("add-non-voter actions: %v", got)
		}
		return nil
	})
	if got := metricSum(t, tc, "rangestore_replicate_queue_actions_total", map[string]string{"action": "add-voter"}); got != 0 {
		t.Fatalf("add-voter actions: %v, want 0 (a non-voter is never promoted while the voters are complete)", got)
	}
	// The non-voter runs on its node and has applied the range's state.
	descs, err := tc.Node(0).MetaRanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		for _, nv := range nodesOf(d, rspb.ReplicaType_NON_VOTER) {
			applied := uint64(0)
			for _, ri := range tc.Node(indexOfNode(tc, nv)).store.Ranges() {
				if ri.RangeDescriptor.GetRangeId() == d.RangeId {
					applied = ri.AppliedIndex
				}
			}
			if applied == 0 {
				t.Fatalf("r%d: the non-voter on n%d has applied nothing", d.RangeId, nv)
			}
		}
	}
	checkKeys(t, tc, 3, "nv", 20)
}

// TestReadReplicaNode: 3 voter nodes and a read-replica node (issue 13
// items 1, 2, 5): the replicate queue gives the read replica a non-voter of
// every range, never a voter, and it holds no lease; a lease transfer to
// it and a voter addition on it are refused naming it; its whiteboard
// entry (gossip) carries its address and lag; GetRoutingTable lists it as
// a reader of every range; restarted, its replicas are still non-voters
// (Dragonboat joins them as non-voting) and catch up; a clean stop removes
// its whiteboard entry (the time is logged).
func TestReadReplicaNode(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 3, SplitKeys: [][]byte{[]byte("m")}, ReplicateQueueInterval: queueInterval, SplitCheckInterval: time.Hour})
	ctx := ctxQueue(t)
	putKeys(t, tc, 0, "rr", 20)
	rri, err := tc.AddReadReplica()
	if err != nil {
		t.Fatal(err)
	}
	rr, err := tc.WaitJoined(ctx, rri)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	everyRangeHasNonVoter := func() error {
		descs, err := tc.Node(0).MetaRanges(ctx)
		if err != nil {
			return err
		}
		for _, d := range descs {
			voters, nonVoters := nodesOf(d, rspb.ReplicaType_VOTER), nodesOf(d, rspb.ReplicaType_NON_VOTER)
			if len(voters) != 3 || len(nonVoters) != 1 || nonVoters[0] != rr {
				return fmt.Errorf("r%d: voters %v, non-voters %v (read replica n%d)", d.RangeId, voters, nonVoters, rr)
			}
		}
		return nil
	}
	timeutil.WaitFor(t, 40*time.Second, "a non-voter of every range on the read replica", everyRangeHasNonVoter)
	t.Logf("read replica n%d holds a non-voter of every range %s after it joined", rr, time.Since(start).Round(100*time.Millisecond))
	descs, err := tc.Node(0).MetaRanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rrNode := tc.Node(rri)
	if !rrNode.ReadReplica() || !rrNode.NodeDescriptor().ReadReplica {
		t.Fatal("the read-replica node does not know its role")
	}
	// The descriptor names a non-voter before its replica starts there.
	timeutil.WaitFor(t, 30*time.Second, "every replica of the read replica started, joined as non-voting", func() error {
		for _, d := range descs {
			if rec := rrNode.store.ReplicaRecordOf(d.RangeId); rec == nil || !rec.JoinedNonVoting {
				return fmt.Errorf("r%d: the read replica's replica record %v does not join it as non-voting", d.RangeId, rec)
			}
		}
		return nil
	})
	// No lease, and none can be given to it; no voter can be added on it.
	for _, ri := range rrNode.store.Ranges() {
		if ri.LeaseValid && ri.Lease.GetNodeId() == rr {
			t.Fatalf("r%d: the read replica holds the lease", ri.RangeDescriptor.GetRangeId())
		}
	}
	admin := rspb.NewAdminClient(tc.Conn(0))
	_, err = admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: descs[len(descs)-1].RangeId, TargetNodeId: rr})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "read-replica") {
		t.Fatalf("a lease transfer to the read replica: %v, want FailedPrecondition naming it a read-replica node", err)
	}
	if _, err := tc.Node(1).store.ChangeReplicas(ctx, descs[len(descs)-1].RangeId, []uint64{rr}, nil); err == nil || !strings.Contains(err.Error(), "read-replica") {
		t.Fatalf("a voter added on the read replica: %v, want a refusal naming it a read-replica node", err)
	}
	// The whiteboard lists it on the voters' nodes.
	timeutil.WaitFor(t, 20*time.Second, "the read replica on n1's whiteboard", func() error {
		e, ok := tc.Node(0).Whiteboard()[rr]
		if !ok || e.Hidden || e.Desc.GetAddress() != tc.Addr(rri) {
			return fmt.Errorf("entry %v (present %t)", e, ok)
		}
		return nil
	})
	t.Logf("whiteboard entry of n%d: %v", rr, tc.Node(0).Whiteboard()[rr].Desc)
	// The routing table lists it as a reader of every range.
	disc := rspb.NewDiscoveryClient(tc.Conn(1))
	timeutil.WaitFor(t, 20*time.Second, "the read replica a reader of every range in the routing table", func() error {
		rt, err := disc.GetRoutingTable(ctx, &rspb.GetRoutingTableRequest{})
		if err != nil {
			return err
		}
		if rt.TtlSeconds != 300 || len(rt.Ranges) == 0 {
			return fmt.Errorf("ttl %d, %d ranges", rt.TtlSeconds, len(rt.Ranges))
		}
		for _, e := range rt.Ranges {
			found := false
			for _, r := range e.Readers {
				found = found || (r.NodeId == rr && r.Role == gateway.RoleReadReplica && r.Address == tc.Addr(rri))
			}
			if !found || e.Writer.GetNodeId() == rr {
				return fmt.Errorf("r%d: writer %v, readers %v", e.RangeId, e.Writer, e.Readers)
			}
		}
		return nil
	})
	if _, err := disc.GetRoutingTable(ctx, &rspb.GetRoutingTableRequest{StartKey: []byte("m"), EndKey: []byte("c")}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "end_key") {
		t.Fatalf("end before start: %v, want InvalidArgument naming end_key", err)
	}
	// A split of a range with a non-voter: the non-voter is removed first,
	// and the queue gives the read replica a non-voter of both halves.
	split := time.Now()
	// (Refused while a replica change of the range runs: asked again.)
	timeutil.WaitFor(t, 30*time.Second, "the split at t", func() error {
		_, err := tc.Node(0).SplitRange(ctx, keys.UserKey([]byte("t")))
		return err
	})
	timeutil.WaitFor(t, 40*time.Second, "a non-voter of both halves on the read replica", func() error {
		descs, err := tc.Node(0).MetaRanges(ctx)
		if err != nil {
			return err
		}
		found := false
		for _, d := range descs {
			found = found || bytes.Equal(d.StartKey, keys.UserKey([]byte("t")))
			if rec := rrNode.store.ReplicaRecordOf(d.RangeId); rec == nil {
				return fmt.Errorf("r%d not started on the read replica", d.RangeId)
			}
		}
		if !found {
			return fmt.Errorf("no range starts at t")
		}
		return everyRangeHasNonVoter()
	})
	t.Logf("after the split at t, the read replica held a non-voter of both halves %v later", time.Since(split).Round(100*time.Millisecond))
	checkKeys(t, tc, rri, "rr", 20)
	// A restart keeps its replicas non-voters; they catch up on the writes
	// made while it was down.
	tc.StopNode(rri)
	putKeys(t, tc, 0, "rs", 20)
	if err := tc.RestartNode(rri); err != nil {
		t.Fatal(err)
	}
	rrNode = tc.Node(rri)
	timeutil.WaitFor(t, 30*time.Second, "the restarted read replica caught up", func() error {
		lag, rangeID := rrNode.store.AppliedLag()
		want := map[uint64]uint64{}
		for i := 0; i < 3; i++ {
			for _, ri := range tc.Node(i).store.Ranges() {
				if ri.LeaseValid && ri.Lease.GetNodeId() == tc.Node(i).NodeID() {
					want[ri.RangeDescriptor.GetRangeId()] = ri.AppliedIndex
				}
			}
		}
		got := map[uint64]uint64{}
		for _, ri := range rrNode.store.Ranges() {
			got[ri.RangeDescriptor.GetRangeId()] = ri.AppliedIndex
		}
		for id, w := range want {
			if got[id] < w {
				return fmt.Errorf("r%d applied %d of the leaseholder's %d (lag %d on r%d)", id, got[id], w, lag, rangeID)
			}
		}
		return nil
	})
	if err := everyRangeHasNonVoter(); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	// The lag per replica type is a metric.
	mfs, err := rrNode.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, mf := range mfs {
		if mf.GetName() == "rangestore_replica_applied_index_lag" {
			for _, m := range mf.GetMetric() {
				series++
				t.Logf("rangestore_replica_applied_index_lag %v = %v", m.GetLabel(), m.GetGauge().GetValue())
			}
		}
	}
	if series != 2 {
		t.Fatalf("rangestore_replica_applied_index_lag: %d series, want 2 (voter, non_voter)", series)
	}
	for _, ri := range rrNode.store.Ranges() {
		if ri.LeaseValid && ri.Lease.GetNodeId() == rr {
			t.Fatalf("r%d: the restarted read replica holds the lease", ri.RangeDescriptor.GetRangeId())
		}
	}
	// A clean stop removes its whiteboard entry at once.
	timeutil.WaitFor(t, 20*time.Second, "the restarted read replica back on n1's whiteboard", func() error {
		if e, ok := tc.Node(0).Whiteboard()[rr]; !ok || e.Hidden {
			return fmt.Errorf("entry %v (present %t)", e, ok)
		}
		return nil
	})
	stopped := time.Now()
	tc.StopNode(rri)
	timeutil.WaitFor(t, 10*time.Second, "the read replica gone from every whiteboard", func() error {
		for i := 0; i < 3; i++ {
			if e, ok := tc.Node(i).Whiteboard()[rr]; ok {
				return fmt.Errorf("n%d still lists it: %v", i+1, e)
			}
		}
		return nil
	})
	t.Logf("a clean stop removed the read replica's whiteboard entry in %v", time.Since(stopped).Round(time.Millisecond))
}

// TestReadReplicaDeadRemoved: a read replica that stays down past the
// time-until-store-dead (2 s here) loses its non-voters: the replicate
// queues remove them (remove-non-voter), the voters stay, and the
// routing table stops listing it as soon as its liveness lapses.
func TestReadReplicaDeadRemoved(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 3, SplitKeys: [][]byte{[]byte("m")}, ReplicateQueueInterval: queueInterval,
		TimeUntilStoreDead: 2 * time.Second, SplitCheckInterval: time.Hour})
	ctx := ctxQueue(t)
	rri, err := tc.AddReadReplica()
	if err != nil {
		t.Fatal(err)
	}
	rr, err := tc.WaitJoined(ctx, rri)
	if err != nil {
		t.Fatal(err)
	}
	nonVotersOn := func(id uint64) (int, error) {
		descs, err := tc.Node(0).MetaRanges(ctx)
		if err != nil {
			return 0, err
		}
		n := 0
		for _, d := range descs {
			if len(nodesOf(d, rspb.ReplicaType_VOTER)) != 3 {
				return 0, fmt.Errorf("r%d: voters %v", d.RangeId, nodesOf(d, rspb.ReplicaType_VOTER))
			}
			for _, nv := range nodesOf(d, rspb.ReplicaType_NON_VOTER) {
				if nv == id {
					n++
				}
			}
		}
		return n, nil
	}
	var held int
	timeutil.WaitFor(t, 40*time.Second, "a non-voter of every range on the read replica", func() error {
		descs, err := tc.Node(0).MetaRanges(ctx)
		if err != nil {
			return err
		}
		if held, err = nonVotersOn(rr); err != nil {
			return err
		}
		if held != len(descs) {
			return fmt.Errorf("%d of %d ranges", held, len(descs))
		}
		// Every addition done: the replica runs there (the descriptor
		// names it before).
		for _, d := range descs {
			if rec := tc.Node(rri).store.ReplicaRecordOf(d.RangeId); rec == nil {
				return fmt.Errorf("r%d: not started on the read replica yet", d.RangeId)
			}
		}
		if got := metricSum(t, tc, "rangestore_replicate_queue_actions_total", map[string]string{"action": "add-non-voter", "result": "ok"}); got < float64(held) {
			return fmt.Errorf("add-non-voter steps done: %v of %d", got, held)
		}
		return nil
	})
	stopped := time.Now()
	tc.StopNode(rri)
	disc := rspb.NewDiscoveryClient(tc.Conn(0))
	timeutil.WaitFor(t, 30*time.Second, "the stopped read replica out of the routing table", func() error {
		rt, err := disc.GetRoutingTable(ctx, &rspb.GetRoutingTableRequest{})
		if err != nil {
			return err
		}
		for _, e := range rt.Ranges {
			for _, r := range e.Readers {
				if r.NodeId == rr {
					return fmt.Errorf("r%d still lists n%d", e.RangeId, rr)
				}
			}
		}
		return nil
	})
	t.Logf("the routing table dropped the stopped read replica after %v", time.Since(stopped).Round(100*time.Millisecond))
	timeutil.WaitFor(t, 60*time.Second, "the dead read replica's non-voters removed", func() error {
		n, err := nonVotersOn(rr)
		if err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d non-voters left", n)
		}
		return nil
	})
	t.Logf("%d non-voters of the dead read replica removed %v after it stopped (time-until-store-dead 2s)", held, time.Since(stopped).Round(100*time.Millisecond))
	// (A step may fail after its change committed, e.g. at a lease
	// move: the next pass finds it done.)
	ok := metricSum(t, tc, "rangestore_replicate_queue_actions_total", map[string]string{"action": "remove-non-voter", "result": "ok"})
	failed := metricSum(t, tc, "rangestore_replicate_queue_actions_total", map[string]string{"action": "remove-non-voter", "result": "error"})
	if ok < 1 {
		t.Fatalf("remove-non-voter actions: %v ok, %v failed; want some ok", ok, failed)
	}
	t.Logf("remove-non-voter steps: %v ok, %v failed", ok, failed)
}
