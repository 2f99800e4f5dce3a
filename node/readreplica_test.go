package node

import (
	"bytes"
	"fmt"
	"testing"
	"time"

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
