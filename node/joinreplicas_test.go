package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestJoinedNodeTakesReplicas puts the two halves of issue 11 together: a
// node that joined a running 3-node cluster (no replica at first) gets a
// range relocated onto it, takes its lease and serves all of its data,
// and the node it replaced is left without the range's replica or data.
func TestJoinedNodeTakesReplicas(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1, SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	putKeys(t, tc, 0, "j", 30)
	d := rangeOf(tc, "j000")

	i4, err := tc.AddNode(1)
	if err != nil {
		t.Fatal(err)
	}
	id4, err := tc.WaitJoined(ctx, i4)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < tc.NumNodes(); i++ {
		waitFor(t, ctx, fmt.Sprintf("n%d's directory lists n%d", i+1, id4), func() error { return directoryLists(tc, i, id4, tc.cfgs[i4].RaftAddr) })
	}
	if n := tc.Node(i4).Store().Descriptor(d.RangeId); n != nil {
		t.Fatalf("the joined node holds r%d before any change", d.RangeId)
	}

	// Relocate d from its three original nodes to the other two plus n4.
	out := d.Replicas[0].NodeId
	var voters []uint64
	voters = append(voters, id4)
	for _, r := range d.Replicas {
		if r.NodeId != out {
			voters = append(voters, r.NodeId)
		}
	}
	admin := rspb.NewAdminClient(tc.Conn(0))
	resp, err := admin.RelocateRange(ctx, &rspb.RelocateRangeRequest{RangeId: d.RangeId, VoterNodeIds: voters})
	if err != nil {
		t.Fatalf("relocate r%d to %v: %v", d.RangeId, voters, err)
	}
	if got := nodesOf(resp.RangeDescriptor, rspb.ReplicaType_VOTER); len(got) != 3 || len(resp.RangeDescriptor.Replicas) != 3 {
		t.Fatalf("after the relocation: %v", resp.RangeDescriptor)
	}
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("n%d holds r%d's lease", id4, d.RangeId), func() error {
		if l := leaseOf(tc, i4, d.RangeId); l.GetNodeId() != id4 {
			return fmt.Errorf("lease %v", l)
		}
		return nil
	})
	checkKeys(t, tc, i4, "j", 30)
	if n := spanDataKeys(t, tc, i4, d); n < 30 {
		t.Fatalf("n%d holds %d keys of r%d, want >= 30", id4, n, d.RangeId)
	}
	rm := indexOfNode(tc, out)
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("r%d's replica and data gone from n%d", d.RangeId, out), func() error {
		if tc.Node(rm).Store().Descriptor(d.RangeId) != nil {
			return fmt.Errorf("the store still has the replica")
		}
		if n := spanDataKeys(t, tc, rm, d); n != 0 {
			return fmt.Errorf("%d data keys left", n)
		}
		return nil
	})
	checkKeys(t, tc, rm, "j", 30)
}
