package node

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestMergeRightAfterSplit merges two ranges right after the split that
// made them, while the right-hand replica opens late (a testing delay
// before it loads its descriptor) on the node that proposes the merge:
//   - on the split's proposer (the left side's leaseholder): the split
//     returns only once that replica has loaded;
//   - on another node, which then takes the left side's lease: the merge
//     waits for the neighbour meta names instead of failing with "no right
//     neighbour with a replica on this node".
func TestMergeRightAfterSplit(t *testing.T) {
	// slow (node index + 1) delays the next replica opening on that node.
	var slow atomic.Int64
	var delay atomic.Int64
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1, CrashPoint: func(node int, name string) {
		if name == "replica-open" && slow.CompareAndSwap(int64(node)+1, 0) {
			time.Sleep(time.Duration(delay.Load()))
		}
	}})
	ctx := ctxT(t)
	left := rangeOf(tc, "k000")
	leaseholder := func() int { return leaseholderIndex(t, tc, left.RangeId) }
	splitMerge := func(t *testing.T, at string, beforeMerge func()) {
		admin := rspb.NewAdminClient(tc.Conn(0))
		sp, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte(at)})
		if err != nil || sp.Left == nil {
			t.Fatalf("split at %s: %v %v", at, sp, err)
		}
		beforeMerge()
		m, err := admin.MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte("k000")})
		if err != nil {
			t.Fatalf("merge right after the split: %v", err)
		}
		if m.Merged.RangeId != sp.Left.RangeId || !bytes.Equal(m.Merged.EndKey, sp.Right.EndKey) {
			t.Fatalf("merged %v, split was %v / %v", m.Merged, sp.Left, sp.Right)
		}
	}
	t.Run("proposer", func(t *testing.T) {
		delay.Store(int64(2 * time.Second))
		slow.Store(int64(leaseholder()) + 1)
		splitMerge(t, "k030", func() {})
	})
	t.Run("lease moved", func(t *testing.T) {
		lh := leaseholder()
		other := (lh + 1) % tc.NumNodes()
		target := tc.Node(other).NodeID()
		delay.Store(int64(4 * time.Second))
		slow.Store(int64(other) + 1)
		splitMerge(t, "k020", func() {
			admin := rspb.NewAdminClient(tc.Conn(0))
			timeutil.WaitFor(t, 15*time.Second, fmt.Sprintf("transfer to n%d", target), func() error {
				_, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: left.RangeId, TargetNodeId: target})
				return err
			})
		})
	})
}
