package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestSplitCompactsRightLog: every replica of a split's right-hand side
// drops its initial Raft log and records that it did (counted in
// rangestore_split_log_compactions_total), which is what lets a replica
// created empty from meta elsewhere rely on being sent a snapshot. The
// record is written only once the log is really gone (not merely when the
// snapshot behind it is saved), so this also checks that the wait for the
// compaction ends.
func TestSplitCompactsRightLog(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1})
	ctx := ctxT(t)
	count := func() float64 {
		total := 0.0
		for i := 0; i < tc.NumNodes(); i++ {
			mfs, err := tc.Node(i).Registry().Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() == "rangestore_split_log_compactions_total" {
					for _, m := range mf.GetMetric() {
						total += m.GetCounter().GetValue()
					}
				}
			}
		}
		return total
	}
	before := count()
	if _, err := rspb.NewAdminClient(tc.Conn(0)).SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k050")}); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 30*time.Second, "the right side's replicas compact their initial log", func() error {
		if n := count() - before; n < float64(tc.NumNodes()) {
			return fmt.Errorf("%v of %d replicas compacted", n, tc.NumNodes())
		}
		return nil
	})
}
