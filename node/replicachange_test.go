package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// Replica changes (issue 11): a 4-node cluster places each range on 3
// nodes; these tests add the fourth, move leases to it, remove an original
// replica and check what the removed node is left with.

// metaDescOf reads range rangeID's meta record through node i.
func metaDescOf(t *testing.T, tc *TestCluster, i int, rangeID uint64) *rspb.RangeDescriptor {
	t.Helper()
	descs, err := tc.Node(i).MetaRanges(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		if d.RangeId == rangeID {
			return d
		}
	}
	t.Fatalf("r%d not in meta", rangeID)
	return nil
}

// nodesOf returns the node IDs of d's replicas of type typ, in order.
func nodesOf(d *rspb.RangeDescriptor, typ rspb.ReplicaType) []uint64 {
	var out []uint64
	for _, r := range d.Replicas {
		if r.Type == typ {
			out = append(out, r.NodeId)
		}
	}
	return out
}

// missingNode returns the index of a node without a replica of d.
func missingNode(t *testing.T, tc *TestCluster, d *rspb.RangeDescriptor) int {
	t.Helper()
outer:
	for i := 0; i < tc.NumNodes(); i++ {
		for _, r := range d.Replicas {
			if r.NodeId == tc.Node(i).NodeID() {
				continue outer
			}
		}
		return i
	}
	t.Fatalf("r%d has a replica on every node", d.RangeId)
	return -1
}

// spanDataKeys counts the MVCC keys node i's engine holds in d's span.
func spanDataKeys(t *testing.T, tc *TestCluster, i int, d *rspb.RangeDescriptor) int {
	t.Helper()
	lower, upper, err := kv.DataSpanBounds(d.StartKey, d.EndKey)
	if err != nil {
		t.Fatal(err)
	}
	it, err := tc.Node(i).eng.NewIter(lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

func putKeys(t *testing.T, tc *TestCluster, i int, prefix string, n int) {
	t.Helper()
	ctx := ctxT(t)
	for j := 0; j < n; j++ {
		k := fmt.Sprintf("%s%03d", prefix, j)
		if _, err := tc.KV(i).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v-" + k)}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
}

func checkKeys(t *testing.T, tc *TestCluster, i int, prefix string, n int) {
	t.Helper()
	ctx := ctxT(t)
	for j := 0; j < n; j++ {
		k := fmt.Sprintf("%s%03d", prefix, j)
		g, err := tc.KV(i).Get(ctx, &rspb.GetRequest{Key: []byte(k)})
		if err != nil || !g.Found || string(g.Kv.Value) != "v-"+k {
			t.Fatalf("get %s via node %d: %v %v", k, i, g, err)
		}
	}
}

// TestChangeReplicasAddRemove adds a replica on the node without one,
// moves the lease there and reads everything from it, then removes the
// replica of an original node: that node's replica and its data are
// collected, and reads through it still work (routed elsewhere).
func TestChangeReplicasAddRemove(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	putKeys(t, tc, 0, "k", 40)
	d := rangeOf(tc, "k000")
	if len(d.Replicas) != 3 {
		t.Fatalf("r%d has %d replicas, want 3 of 4 nodes", d.RangeId, len(d.Replicas))
	}
	add := missingNode(t, tc, d)
	addID := tc.Node(add).NodeID()
	resp, err := admin.ChangeReplicas(ctx, &rspb.ChangeReplicasRequest{RangeId: d.RangeId, AddNodeIds: []uint64{addID}})
	if err != nil {
		t.Fatalf("add n%d to r%d: %v", addID, d.RangeId, err)
	}
	nd := resp.RangeDescriptor
	if got := nodesOf(nd, rspb.ReplicaType_VOTER); len(got) != 4 || nd.Generation != d.Generation+2 || nd.NextReplicaId != 5 {
		t.Fatalf("after the add: %v", nd)
	}
	if md := metaDescOf(t, tc, 0, d.RangeId); md.Generation != nd.Generation {
		t.Fatalf("meta holds generation %d, want %d", md.Generation, nd.Generation)
	}
	// The new replica restarts as a joined non-voter forever.
	rec := tc.Node(add).Store().ReplicaRecordOf(d.RangeId)
	if rec == nil || !rec.Join || !rec.JoinedNonVoting || rec.ReplicaId != 4 {
		t.Fatalf("replica record on n%d: %v", addID, rec)
	}
	if _, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: d.RangeId, TargetNodeId: addID}); err != nil {
		t.Fatalf("lease to n%d: %v", addID, err)
	}
	timeutil.WaitFor(t, 10*time.Second, fmt.Sprintf("n%d sees its lease of r%d", addID, d.RangeId), func() error {
		if l := leaseOf(tc, add, d.RangeId); l.GetNodeId() != addID {
			return fmt.Errorf("lease %v", l)
		}
		return nil
	})
	checkKeys(t, tc, add, "k", 40)
	if n := spanDataKeys(t, tc, add, d); n < 40 {
		t.Fatalf("n%d holds %d keys of r%d, want >= 40", addID, n, d.RangeId)
	}

	// Remove an original replica (not the leaseholder's node).
	rm := indexOfNode(tc, d.Replicas[0].NodeId)
	rmID := tc.Node(rm).NodeID()
	if spanDataKeys(t, tc, rm, d) == 0 {
		t.Fatalf("n%d holds no data of r%d before the removal", rmID, d.RangeId)
	}
	resp, err = admin.ChangeReplicas(ctx, &rspb.ChangeReplicasRequest{RangeId: d.RangeId, RemoveNodeIds: []uint64{rmID}})
	if err != nil {
		t.Fatalf("remove n%d from r%d: %v", rmID, d.RangeId, err)
	}
	for _, r := range resp.RangeDescriptor.Replicas {
		if r.NodeId == rmID {
			t.Fatalf("n%d still in %v", rmID, resp.RangeDescriptor)
		}
	}
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("r%d's replica and data gone from n%d", d.RangeId, rmID), func() error {
		if tc.Node(rm).Store().Descriptor(d.RangeId) != nil {
			return fmt.Errorf("the store still has the replica")
		}
		if rec := tc.Node(rm).Store().ReplicaRecordOf(d.RangeId); rec != nil {
			return fmt.Errorf("replica record left: %v", rec)
		}
		if n := spanDataKeys(t, tc, rm, d); n != 0 {
			return fmt.Errorf("%d data keys left", n)
		}
		return nil
	})
	checkKeys(t, tc, rm, "k", 40)
	if _, err := tc.KV(rm).Put(ctx, &rspb.PutRequest{Key: []byte("k999"), Value: []byte("after")}); err != nil {
		t.Fatalf("write via n%d after its removal: %v", rmID, err)
	}

	// The removed node comes back under a new replica ID.
	resp, err = admin.ChangeReplicas(ctx, &rspb.ChangeReplicasRequest{RangeId: d.RangeId, AddNodeIds: []uint64{rmID}, RemoveNodeIds: []uint64{addID}})
	if err != nil {
		t.Fatalf("re-add n%d, remove n%d: %v", rmID, addID, err)
	}
	var back uint64
	for _, r := range resp.RangeDescriptor.Replicas {
		if r.NodeId == rmID {
			back = r.ReplicaId
		}
	}
	if back != 5 || resp.RangeDescriptor.NextReplicaId != 6 {
		t.Fatalf("n%d came back as replica %d (want 5, a new ID): %v", rmID, back, resp.RangeDescriptor)
	}
	checkKeys(t, tc, add, "k", 40)
}

// TestChangeReplicasBadInput: bad requests are refused with a clear error
// and change nothing; a change half done (a non-voter added to the
// descriptor only) refuses other changes and is finished by repeating it.
func TestChangeReplicasBadInput(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	d := rangeOf(tc, "k000")
	add := missingNode(t, tc, d)
	addID := tc.Node(add).NodeID()
	holders := nodesOf(d, rspb.ReplicaType_VOTER)
	before := metaDescOf(t, tc, 0, d.RangeId)
	for _, c := range []struct {
		name string
		req  *rspb.ChangeReplicasRequest
		code codes.Code
		msg  string
	}{
		{"no range", &rspb.ChangeReplicasRequest{AddNodeIds: []uint64{addID}}, codes.InvalidArgument, "range_id must be set"},
		{"no nodes", &rspb.ChangeReplicasRequest{RangeId: d.RangeId}, codes.InvalidArgument, "both empty"},
		{"node 0", &rspb.ChangeReplicasRequest{RangeId: d.RangeId, AddNodeIds: []uint64{0}}, codes.InvalidArgument, "add_node_ids[0]"},
		{"node twice", &rspb.ChangeReplicasRequest{RangeId: d.RangeId, AddNodeIds: []uint64{addID}, RemoveNodeIds: []uint64{addID}}, codes.InvalidArgument, "named twice"},
		{"unknown range", &rspb.ChangeReplicasRequest{RangeId: 9999, AddNodeIds: []uint64{addID}}, codes.NotFound, "r9999 not found"},
		{"unknown node", &rspb.ChangeReplicasRequest{RangeId: d.RangeId, AddNodeIds: []uint64{77}}, codes.InvalidArgument, "n77 is not a node"},
		{"already holds one", &rspb.ChangeReplicasRequest{RangeId: d.RangeId, AddNodeIds: []uint64{holders[0]}}, codes.FailedPrecondition, "already holds replica"},
		{"remove one not there", &rspb.ChangeReplicasRequest{RangeId: d.RangeId, RemoveNodeIds: []uint64{addID}}, codes.FailedPrecondition, "holds no replica"},
		{"remove every voter", &rspb.ChangeReplicasRequest{RangeId: d.RangeId, RemoveNodeIds: holders}, codes.FailedPrecondition, "without a voter"},
	} {
		_, err := admin.ChangeReplicas(ctx, c.req)
		if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.msg) {
			t.Errorf("%s: got %v, want %v containing %q", c.name, err, c.code, c.msg)
		}
	}
	if _, err := admin.RelocateRange(ctx, &rspb.RelocateRangeRequest{RangeId: d.RangeId}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("relocate to no voters: %v", err)
	}
	if after := metaDescOf(t, tc, 0, d.RangeId); after.Generation != before.Generation {
		t.Fatalf("refused requests changed r%d: generation %d -> %d", d.RangeId, before.Generation, after.Generation)
	}

	// Half an addition: the leaseholder takes only the first step.
	putKeys(t, tc, 0, "k", 5)
	// The leaseholder's answer may be a transient refusal (a shard not
	// ready yet on a loaded machine, the lease moving): ask again, at the
	// leaseholder as then known, until it takes the step.
	var step *rspb.RangeResponse
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("the first step of adding n%d to r%d at its leaseholder", addID, d.RangeId), func() error {
		lh := -1
		for i := 0; i < tc.NumNodes(); i++ {
			if l := leaseOf(tc, i, d.RangeId); l.GetNodeId() != 0 {
				lh = indexOfNode(tc, l.NodeId)
			}
		}
		if lh < 0 {
			return fmt.Errorf("no lease seen")
		}
		step = tc.Node(lh).Send(ctx, &rspb.RangeRequest{RangeId: d.RangeId, Admin: &rspb.RangeRequest_AdminChangeReplicas{
			AdminChangeReplicas: &rspb.AdminChangeReplicasRequest{NodeId: addID}}})
		if e := step.Error; e != nil && (e.Code == rspb.RangeError_NOT_LEASEHOLDER || e.Code == rspb.RangeError_UNAVAILABLE) {
			return fmt.Errorf("%v", e)
		}
		return nil
	})
	if step.Error != nil || step.GetAdminChangeReplicas().GetStep() != "descriptor-add-non-voter" {
		t.Fatalf("first step: %v", step)
	}
	_, err := admin.ChangeReplicas(ctx, &rspb.ChangeReplicasRequest{RangeId: d.RangeId, RemoveNodeIds: []uint64{holders[1]}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "in flight") {
		t.Fatalf("a removal during a half-done addition: %v", err)
	}
	resp, err := admin.ChangeReplicas(ctx, &rspb.ChangeReplicasRequest{RangeId: d.RangeId, AddNodeIds: []uint64{addID}})
	if err != nil {
		t.Fatalf("finishing the addition: %v", err)
	}
	if v := nodesOf(resp.RangeDescriptor, rspb.ReplicaType_VOTER); len(v) != 4 {
		t.Fatalf("after finishing: %v", resp.RangeDescriptor)
	}
}

// TestRelocateRangeUnderLoad relocates a range from its three nodes to two
// of them and the fourth while a writer keeps writing: every acknowledged
// write is there afterwards, read through every node.
func TestRelocateRangeUnderLoad(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	d := rangeOf(tc, "k000")
	add := tc.Node(missingNode(t, tc, d)).NodeID()
	old := nodesOf(d, rspb.ReplicaType_VOTER)
	target := []uint64{old[1], old[2], add}
	putKeys(t, tc, 0, "k", 20)

	var acked sync.Map
	var nAcked, nFailed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for j := 0; ; j++ {
			select {
			case <-stop:
				return
			default:
			}
			k := fmt.Sprintf("w%05d", j)
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := tc.KV(j%4).Put(wctx, &rspb.PutRequest{Key: []byte(k), Value: []byte(k)})
			cancel()
			if err == nil {
				acked.Store(k, true)
				nAcked.Add(1)
			} else {
				nFailed.Add(1)
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()
	timeutil.WaitFor(t, 10*time.Second, "the writer's first writes", func() error {
		if nAcked.Load() < 10 {
			return fmt.Errorf("%d acknowledged", nAcked.Load())
		}
		return nil
	})
	resp, err := rspb.NewAdminClient(tc.Conn(3)).RelocateRange(ctx, &rspb.RelocateRangeRequest{RangeId: d.RangeId, VoterNodeIds: target})
	if err != nil {
		t.Fatalf("relocate r%d to %v: %v", d.RangeId, target, err)
	}
	got := nodesOf(resp.RangeDescriptor, rspb.ReplicaType_VOTER)
	if len(got) != 3 || len(resp.RangeDescriptor.Replicas) != 3 {
		t.Fatalf("after the relocation: %v", resp.RangeDescriptor)
	}
	for _, n := range got {
		if n == old[0] {
			t.Fatalf("n%d still holds a replica: %v", n, resp.RangeDescriptor)
		}
	}
	timeutil.WaitFor(t, 10*time.Second, fmt.Sprintf("n%d sees its lease of r%d", target[0], d.RangeId), func() error {
		if l := leaseOf(tc, indexOfNode(tc, target[0]), d.RangeId); l.GetNodeId() != target[0] {
			return fmt.Errorf("lease %v", l)
		}
		return nil
	})
	before := nAcked.Load()
	timeutil.WaitFor(t, 10*time.Second, "writes after the relocation", func() error {
		if nAcked.Load() < before+10 {
			return fmt.Errorf("%d acknowledged since", nAcked.Load()-before)
		}
		return nil
	})
	close(stop)
	<-done
	t.Logf("writer: %d acknowledged, %d failed", nAcked.Load(), nFailed.Load())
	checkKeys(t, tc, 0, "k", 20)
	for i := 0; i < tc.NumNodes(); i++ {
		missing := 0
		acked.Range(func(k, _ any) bool {
			g, err := tc.KV(i).Get(ctx, &rspb.GetRequest{Key: []byte(k.(string))})
			if err != nil || !g.Found {
				missing++
				t.Errorf("acknowledged write %s not found via node %d: %v %v", k, i, g, err)
			}
			return missing < 5
		})
		if missing > 0 {
			t.FailNow()
		}
	}
}

// TestPromotedReplicaRestarts: a replica added (joined as a non-voter,
// then promoted) restarts with its node (as a non-voter, the role Raft
// then flips from its log) and takes the lease and Raft leadership.
func TestPromotedReplicaRestarts(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	putKeys(t, tc, 0, "k", 10)
	d := rangeOf(tc, "k000")
	add := missingNode(t, tc, d)
	addID := tc.Node(add).NodeID()
	if _, err := rspb.NewAdminClient(tc.Conn(0)).ChangeReplicas(ctx, &rspb.ChangeReplicasRequest{RangeId: d.RangeId, AddNodeIds: []uint64{addID}}); err != nil {
		t.Fatal(err)
	}
	if err := tc.RestartNode(add); err != nil {
		t.Fatalf("restart n%d: %v", addID, err)
	}
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("lease of r%d to the restarted n%d", d.RangeId, addID), func() error {
		tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := rspb.NewAdminClient(tc.Conn(0)).TransferLease(tctx, &rspb.TransferLeaseRequest{RangeId: d.RangeId, TargetNodeId: addID})
		return err
	})
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("n%d leads r%d", addID, d.RangeId), func() error {
		for _, ri := range tc.Node(add).Ranges() {
			if ri.RangeDescriptor.GetRangeId() == d.RangeId && ri.LeaderNodeId == addID && ri.Lease.GetNodeId() == addID {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	checkKeys(t, tc, add, "k", 10)
	if _, err := tc.KV(add).Put(ctx, &rspb.PutRequest{Key: []byte("k500"), Value: []byte("v-k500")}); err != nil {
		t.Fatalf("write led by the restarted n%d: %v", addID, err)
	}
}

// TestRemovedWhileDownCollected removes the replica of a stopped node: the
// node learns nothing at the time (the leaseholder's word does not reach
// it), and after its restart its replica GC finds the removal in meta and
// destroys the replica with its data, for good (also across another
// restart).
func TestRemovedWhileDownCollected(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour,
		MetaCheckInterval: 100 * time.Millisecond})
	ctx := ctxT(t)
	putKeys(t, tc, 0, "k", 20)
	d := rangeOf(tc, "k000")
	victim := -1
	for _, r := range d.Replicas {
		if i := indexOfNode(tc, r.NodeId); i != 0 && victim < 0 {
			victim = i
		}
	}
	victimID := tc.Node(victim).NodeID()
	// The victim holds no lease of the range (it is stopped meanwhile).
	for _, r := range d.Replicas {
		if r.NodeId != victimID {
			if _, err := rspb.NewAdminClient(tc.Conn(0)).TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: d.RangeId, TargetNodeId: r.NodeId}); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	tc.StopNode(victim)
	resp, err := rspb.NewAdminClient(tc.Conn(0)).ChangeReplicas(ctx, &rspb.ChangeReplicasRequest{RangeId: d.RangeId, RemoveNodeIds: []uint64{victimID}})
	if err != nil {
		t.Fatalf("remove the stopped n%d from r%d: %v", victimID, d.RangeId, err)
	}
	if len(resp.RangeDescriptor.Replicas) != 2 {
		t.Fatalf("after the removal: %v", resp.RangeDescriptor)
	}
	if err := tc.RestartNode(victim); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 30*time.Second, fmt.Sprintf("r%d's replica and data gone from the restarted n%d", d.RangeId, victimID), func() error {
		if tc.Node(victim).Store().Descriptor(d.RangeId) != nil || tc.Node(victim).Store().ReplicaRecordOf(d.RangeId) != nil {
			return fmt.Errorf("the replica is still there")
		}
		if n := spanDataKeys(t, tc, victim, d); n != 0 {
			return fmt.Errorf("%d data keys left", n)
		}
		return nil
	})
	if err := tc.RestartNode(victim); err != nil {
		t.Fatal(err)
	}
	checkKeys(t, tc, victim, "k", 20)
	if tc.Node(victim).Store().Descriptor(d.RangeId) != nil || spanDataKeys(t, tc, victim, d) != 0 {
		t.Fatalf("r%d came back on n%d after a restart", d.RangeId, victimID)
	}
}
