package node

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestAdminMergeRetryMergesOnce: the first attempt of an admin merge
// applies but answers only after the router's per-attempt timeout (a
// testing delay right after the merge applied). The router's retry must
// answer that merge as done, not merge the next neighbour too (before the
// fix the retry absorbed [p, end) as well; TestMergeRightAfterSplit failed
// about once in 18 runs with "r4 is the last range; nothing to merge").
func TestAdminMergeRetryMergesOnce(t *testing.T) {
	var delayOnce atomic.Bool
	tc := startCluster(t, TestClusterOptions{SplitKeys: [][]byte{[]byte("g"), []byte("p")},
		CrashPoint: func(node int, name string) {
			if name == "merge-before-meta" && delayOnce.CompareAndSwap(true, false) {
				time.Sleep(2500 * time.Millisecond) // > the router's 1.5 s per attempt
			}
		}})
	ctx := ctxT(t)
	left, mid, right := rangeOf(tc, "a"), rangeOf(tc, "h"), rangeOf(tc, "q")
	if left.RangeId == mid.RangeId || mid.RangeId == right.RangeId {
		t.Fatalf("want three ranges, got %v %v %v", left, mid, right)
	}
	// Ask a node that does not hold the lease: its router's attempt is a
	// gRPC call, abandoned after the per-attempt timeout.
	gw := (waitLeaderIsHolder(t, tc, left.RangeId) + 1) % tc.NumNodes()
	delayOnce.Store(true)
	m, err := rspb.NewAdminClient(tc.Conn(gw)).MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte("a")})
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	if delayOnce.Load() {
		t.Fatal("the merge never reached the delayed step")
	}
	if m.Merged.RangeId != left.RangeId || !bytes.Equal(m.Merged.EndKey, mid.EndKey) {
		t.Fatalf("merged %v; want r%d ending at %s (one neighbour absorbed)", m.Merged, left.RangeId, keys.Pretty(mid.EndKey))
	}
	descs, err := tc.Node(1).MetaRanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range descs {
		if d.RangeId == right.RangeId {
			found = bytes.Equal(d.StartKey, right.StartKey) && bytes.Equal(d.EndKey, right.EndKey)
		}
	}
	if !found {
		t.Fatalf("r%d [%s, %s) is gone or changed after one merge: %v", right.RangeId, keys.Pretty(right.StartKey), keys.Pretty(right.EndKey), descs)
	}
}
