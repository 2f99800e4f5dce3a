package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestSkippedSplitOfIdleRange is TestSkippedSplitGetsSnapshot for a
// right-hand side that stays idle: no client write reaches it between the
// split and the lagging node's missing-replica repair (it serves under the
// lease copied from the parent, so not even a lease request applies).
//
// Dragonboat loads a snapshot into an on-disk state machine only if the
// sender has applied a command (an entry passed to Update) beyond the
// receiver's on-disk index, which is 0 for the empty replica the repair
// creates. Before the right side's replicas compacted their log behind a
// command of their own (ranges.compactPastFirstCommand), the snapshot of
// such an idle range carried on-disk index 0: Dragonboat only moved the
// empty replica's index to it, the replica never got the range's
// descriptor or data, and the range's first write then crashed its node
// ("r5 replica 3 applied entry 5 without a descriptor"; chaos
// TestSplitsUnderLoad, "r46 replica 1 applied entry 5"). Here the empty
// replica must load the snapshot (the descriptor and every key written
// before the split), and a write after it must apply everywhere.
func TestSkippedSplitOfIdleRange(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1, MetaCheckInterval: 300 * time.Millisecond})
	ctx := ctxT(t)
	lagging := 2
	laggingID := tc.Node(lagging).NodeID()
	// A write on the left side only: the right side applies no client
	// command until the lagging node has its replica.
	sp := skipSplitOnLaggingNode(ctx, t, tc, lagging, "k010")
	st := tc.Node(lagging).Store()
	timeutil.WaitFor(t, 30*time.Second, "the lagging node loads both sides", func() error {
		l := st.Descriptor(sp.Left.RangeId)
		if l == nil || l.Generation < sp.Left.Generation {
			return fmt.Errorf("parent replica still at %v", l)
		}
		if st.Descriptor(sp.Right.RangeId) == nil {
			return fmt.Errorf("the replica of r%d created from meta has no descriptor (its snapshot was not loaded)", sp.Right.RangeId)
		}
		return nil
	})
	// The right side's first client write applies on every replica, and
	// the formerly lagging node serves every key of it as leaseholder.
	if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte("k040"), Value: []byte("after-split")}); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 20*time.Second, "lease transfer to the lagging node", func() error {
		_, err := rspb.NewAdminClient(tc.Conn(0)).TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: sp.Right.RangeId, TargetNodeId: laggingID})
		return err
	})
	for i := 30; i < 60; i++ {
		k := fmt.Sprintf("k%03d", i)
		want := "v" + k
		if k == "k040" {
			want = "after-split"
		}
		g, err := tc.KV(lagging).Get(ctx, &rspb.GetRequest{Key: []byte(k)})
		if err != nil || !g.Found || string(g.Kv.Value) != want {
			t.Fatalf("get %s from the right side led by the formerly lagging node: %v %v", k, g, err)
		}
	}
}
