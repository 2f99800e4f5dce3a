package node

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestOrphanReplicaCollected builds the orphan of the stress failure: a
// node is stopped between the freeze probes of a merge and its proposal,
// so it misses the merge; the merged range is split again at the same key
// and its log compacted, so the node's replica of the left range catches
// up by a snapshot of the narrower range. Its replica of the merged-away
// right range is then an orphan: in no meta record, with no leader, and
// overlapping the new right-hand range, whose replica the missing-replica
// repair would create there. The replica GC must destroy the orphan (and
// it must stay gone across a restart), the new right-hand replica must be
// created, and the new right-hand range must serve and merge.
func TestOrphanReplicaCollected(t *testing.T) {
	var tc *TestCluster
	var stopAt atomic.Int64 // node index + 1 to stop at the next merge proposal
	stopped := make(chan struct{}, 1)
	tc = startCluster(t, TestClusterOptions{InitialSplits: 1, SplitCheckInterval: time.Hour,
		MetaCheckInterval: 100 * time.Millisecond, FreezeTimeout: time.Hour,
		CrashPoint: func(node int, name string) {
			if name != "merge-before-propose" {
				return
			}
			if i := int(stopAt.Load()) - 1; i >= 0 && i != node && stopAt.CompareAndSwap(int64(i)+1, 0) {
				tc.stopNode(i, false)
				stopped <- struct{}{}
			}
		}})
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	for _, k := range []string{"k010", "k070", "k080"} {
		if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("before-" + k)}); err != nil {
			t.Fatal(err)
		}
	}
	sp, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k060")})
	if err != nil {
		t.Fatal(err)
	}
	left, orphan := sp.Left, sp.Right
	// The node to miss the merge: not the left range's leaseholder (the
	// merge's proposer).
	lh := leaseholderIndex(t, tc, left.RangeId)
	lagging := (lh + 1) % tc.NumNodes()
	live := (lh + 2) % tc.NumNodes()
	stopAt.Store(int64(lagging) + 1)
	// Sent to the leaseholder's store under the test's whole deadline, not
	// through the router: its tries end after 1.5 s, and stopping a node
	// from the crash point outlasted one on a loaded machine (a stress run).
	// The retried merge then waited for the stopped node to acknowledge the
	// freeze until the deadline (FreezeTimeout is an hour here).
	mresp := tc.Node(lh).Store().Send(ctx, &rspb.RangeRequest{RangeId: left.RangeId,
		Admin: &rspb.RangeRequest_AdminMerge{AdminMerge: &rspb.AdminMergeRequest{ExpectedGeneration: left.Generation}}})
	if mresp.Error != nil {
		t.Fatalf("merge r%d into r%d: %v", orphan.RangeId, left.RangeId, mresp.Error)
	}
	m := mresp.GetAdminMerge()
	select {
	case <-stopped:
	default:
		t.Fatalf("node %d was not stopped before the merge was proposed (leaseholder moved?)", lagging)
	}
	if m.Absorbed.RangeId != orphan.RangeId {
		t.Fatalf("merge absorbed r%d, want r%d", m.Absorbed.RangeId, orphan.RangeId)
	}
	sp2, err := rspb.NewAdminClient(tc.Conn(lh)).SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k060")})
	if err != nil {
		t.Fatal(err)
	}
	newRight := sp2.Right
	if _, err := tc.KV(lh).Put(ctx, &rspb.PutRequest{Key: []byte("k070"), Value: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	// The lagging replica of the left range can only catch up by snapshot.
	for _, i := range []int{lh, live} {
		if _, err := tc.Node(i).Store().CompactRaftLog(ctx, left.RangeId); err != nil {
			t.Fatalf("compacting r%d on node %d: %v", left.RangeId, i, err)
		}
	}
	if err := tc.RestartNode(lagging); err != nil {
		t.Fatal(err)
	}
	st := tc.Node(lagging).Store()
	timeutil.WaitFor(t, 30*time.Second, fmt.Sprintf("node %d: the orphan r%d gone and r%d created", lagging, orphan.RangeId, newRight.RangeId), func() error {
		if d := st.Descriptor(orphan.RangeId); d != nil {
			return fmt.Errorf("orphan r%d still here: %v", orphan.RangeId, d)
		}
		if d := st.Descriptor(newRight.RangeId); d == nil {
			return fmt.Errorf("no replica of r%d with data yet", newRight.RangeId)
		}
		return nil
	})
	checkStateGone := func() {
		t.Helper()
		eng := tc.Node(lagging).eng
		for _, tag := range []byte{'r', 'p'} { // range state, replica state (and record)
			p := binary.BigEndian.AppendUint64([]byte{kv.LocalPrefix, tag}, orphan.RangeId)
			it, err := eng.NewIter(p, append(append([]byte(nil), p...), 0xff))
			if err != nil {
				t.Fatal(err)
			}
			found := it.First()
			_ = it.Close()
			if found {
				t.Fatalf("node %d: state of the orphan r%d left under %q", lagging, orphan.RangeId, tag)
			}
		}
	}
	checkStateGone()
	// Serve the new right-hand range from the formerly lagging node.
	laggingID := tc.Node(lagging).NodeID()
	timeutil.WaitFor(t, 20*time.Second, "lease transfer to the formerly lagging node", func() error {
		_, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: newRight.RangeId, TargetNodeId: laggingID})
		return err
	})
	for k, want := range map[string]string{"k070": "after", "k080": "before-k080"} {
		g, err := tc.KV(lagging).Get(ctx, &rspb.GetRequest{Key: []byte(k)})
		if err != nil || !g.Found || string(g.Kv.Value) != want {
			t.Fatalf("get %s from r%d led by node %d: %v %v", k, newRight.RangeId, lagging, g, err)
		}
	}
	if _, err := tc.KV(lagging).Put(ctx, &rspb.PutRequest{Key: []byte("k090"), Value: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	// The orphan does not come back after another restart.
	if err := tc.RestartNode(lagging); err != nil {
		t.Fatal(err)
	}
	st = tc.Node(lagging).Store()
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("node %d reopened r%d", lagging, newRight.RangeId), func() error {
		if st.Descriptor(newRight.RangeId) == nil {
			return fmt.Errorf("r%d not loaded", newRight.RangeId)
		}
		return nil
	})
	if d := st.Descriptor(orphan.RangeId); d != nil {
		t.Fatalf("orphan r%d back after a restart: %v", orphan.RangeId, d)
	}
	checkStateGone()
	// Every replica of the new right-hand range answers its freeze probe:
	// it merges.
	if _, err := admin.MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte("k000")}); err != nil {
		t.Fatalf("merge r%d into r%d: %v", newRight.RangeId, left.RangeId, err)
	}
}
