package node

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// metaRecords reads every meta record (descriptors keyed by end key) through
// node i's router.
func metaRecords(ctx context.Context, t *testing.T, tc *TestCluster, i int) []*rspb.RangeDescriptor {
	t.Helper()
	resps, err := tc.Node(i).router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{
		Scan: &rspb.ScanRequest{StartKey: keys.MetaPrefix, EndKey: keys.MetaSpanEnd}}}})
	if err != nil {
		t.Fatalf("scan meta: %v", err)
	}
	var out []*rspb.RangeDescriptor
	for _, kv := range resps[0].GetScan().GetKvs() {
		d := &rspb.RangeDescriptor{}
		if err := proto.Unmarshal(kv.Value, d); err != nil {
			t.Fatalf("meta record %q: %v", kv.Key, err)
		}
		if !bytes.Equal(kv.Key, keys.MetaKey(d.EndKey)) {
			t.Fatalf("meta record %q holds a descriptor ending at %q", kv.Key, d.EndKey)
		}
		out = append(out, d)
	}
	return out
}

// checkMetaCovers fails unless the meta records tile [KeyMin, KeyMax)
// exactly once, and returns them.
func checkMetaCovers(ctx context.Context, t *testing.T, tc *TestCluster) []*rspb.RangeDescriptor {
	t.Helper()
	descs := metaRecords(ctx, t, tc, 0)
	if err := CheckMetaTiles(descs); err != nil {
		t.Fatal(err)
	}
	return descs
}

func TestManualSplit(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1})
	ctx := ctxT(t)
	kv := tc.KV(0)
	var all []string
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("k%03d", i)
		all = append(all, k)
		if _, err := kv.Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v" + k)}); err != nil {
			t.Fatal(err)
		}
	}
	before := len(checkMetaCovers(ctx, t, tc))
	admin := rspb.NewAdminClient(tc.Conn(1))
	res, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k030")})
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	if !bytes.Equal(res.Left.EndKey, keys.UserKey([]byte("k030"))) || !bytes.Equal(res.Right.StartKey, res.Left.EndKey) || res.Right.RangeId == res.Left.RangeId {
		t.Fatalf("split result: %v", res)
	}
	// Splitting at the same key again is a no-op, answered like the split
	// (the router retries a split whose answer timed out: a retry that
	// finds it done must still name both sides).
	again, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k030")})
	if err != nil {
		t.Fatalf("repeat split: %v", err)
	}
	if again.Left.GetRangeId() != res.Left.RangeId || again.Right.GetRangeId() != res.Right.RangeId {
		t.Fatalf("repeat split answered %v, the split %v", again, res)
	}
	descs := checkMetaCovers(ctx, t, tc)
	if len(descs) != before+1 {
		t.Fatalf("meta has %d ranges, want %d", len(descs), before+1)
	}
	// Every node reads every key through every node; writes land on both sides.
	for n := 0; n < 3; n++ {
		for _, k := range all {
			g, err := tc.KV(n).Get(ctx, &rspb.GetRequest{Key: []byte(k)})
			if err != nil || !g.Found || string(g.Kv.Value) != "v"+k {
				t.Fatalf("get %s via n%d: %v %v", k, n+1, g, err)
			}
		}
		if _, err := tc.KV(n).Increment(ctx, &rspb.IncrementRequest{Key: []byte("k029x"), Delta: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := tc.KV(n).Increment(ctx, &rspb.IncrementRequest{Key: []byte("k030x"), Delta: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// The right side is a raft group of its own on all three nodes.
	timeutil.WaitFor(t, 10*time.Second, "right-hand replicas", func() error {
		for n := 0; n < 3; n++ {
			d := tc.Node(n).store.Descriptor(res.Right.RangeId)
			if d == nil {
				return fmt.Errorf("n%d has no replica of r%d", n+1, res.Right.RangeId)
			}
		}
		return nil
	})
	// Scan across the split.
	st, err := kv.Scan(ctx, &rspb.ScanRequest{StartKey: []byte("k000"), EndKey: []byte("k999")})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		m, err := st.Recv()
		if err != nil {
			break
		}
		n += len(m.Kvs)
	}
	if n != 62 {
		t.Fatalf("scan found %d keys, want 62", n)
	}
}

func TestManualMerge(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1})
	ctx := ctxT(t)
	kv := tc.KV(0)
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("k%03d", i)
		if _, err := kv.Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v" + k)}); err != nil {
			t.Fatal(err)
		}
	}
	admin := rspb.NewAdminClient(tc.Conn(1))
	sp, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k030")})
	if err != nil {
		t.Fatal(err)
	}
	before := len(checkMetaCovers(ctx, t, tc))
	// Writes through the right side before the merge are kept.
	if _, err := tc.KV(2).Put(ctx, &rspb.PutRequest{Key: []byte("k045"), Value: []byte("before-merge")}); err != nil {
		t.Fatal(err)
	}
	m, err := rspb.NewAdminClient(tc.Conn(2)).MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte("k000")})
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	if m.Merged.RangeId != sp.Left.RangeId || !bytes.Equal(m.Merged.EndKey, sp.Right.EndKey) || m.Merged.Generation <= sp.Right.Generation {
		t.Fatalf("merged descriptor %v (split was %v / %v)", m.Merged, sp.Left, sp.Right)
	}
	descs := checkMetaCovers(ctx, t, tc)
	if len(descs) != before-1 {
		t.Fatalf("meta has %d ranges after the merge, want %d", len(descs), before-1)
	}
	timeutil.WaitFor(t, 10*time.Second, "right-hand replicas removed", func() error {
		for n := 0; n < 3; n++ {
			if d := tc.Node(n).store.Descriptor(sp.Right.RangeId); d != nil {
				return fmt.Errorf("n%d still has r%d", n+1, sp.Right.RangeId)
			}
		}
		return nil
	})
	for n := 0; n < 3; n++ {
		for i := 0; i < 60; i++ {
			k := fmt.Sprintf("k%03d", i)
			want := "v" + k
			if k == "k045" {
				want = "before-merge"
			}
			g, err := tc.KV(n).Get(ctx, &rspb.GetRequest{Key: []byte(k)})
			if err != nil || !g.Found || string(g.Kv.Value) != want {
				t.Fatalf("get %s via n%d after merge: %v %v", k, n+1, g, err)
			}
		}
		if _, err := tc.KV(n).Increment(ctx, &rspb.IncrementRequest{Key: []byte("k050x"), Delta: 1}); err != nil {
			t.Fatalf("write after merge via n%d: %v", n+1, err)
		}
	}
	// The merged range splits again at the same key.
	if _, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k030")}); err != nil {
		t.Fatalf("split after merge: %v", err)
	}
	if n := len(checkMetaCovers(ctx, t, tc)); n != before {
		t.Fatalf("meta has %d ranges after splitting again, want %d", n, before)
	}
}

// TestMergeQueue: small ranges split by load/size (not sticky) merge back
// once below range_min_bytes, while a writer keeps writing.
func TestMergeQueue(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1, RangeMaxBytes: 4 << 20, RangeMinBytes: 1 << 20,
		SplitCheckInterval: 100 * time.Millisecond, MetaCheckInterval: 500 * time.Millisecond})
	ctx := ctxT(t)
	before := len(checkMetaCovers(ctx, t, tc))
	for _, k := range []string{"m1", "m2", "m3"} {
		if _, err := tc.Node(0).router.AdminSplit(ctx, keys.UserKey([]byte(k)), false); err != nil {
			t.Fatalf("split at %s: %v", k, err)
		}
	}
	written := 0
	timeutil.WaitFor(t, 20*time.Second, "merge queue", func() error {
		k := fmt.Sprintf("m%d-%d", written%4, written)
		if _, err := tc.KV(written%3).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("x")}); err != nil {
			return err
		}
		written++
		descs := metaRecords(ctx, t, tc, 0)
		if err := CheckMetaTiles(descs); err != nil {
			return err
		}
		if len(descs) != before {
			return fmt.Errorf("%d ranges, want %d", len(descs), before)
		}
		return nil
	})
	for i := 0; i < written; i++ {
		k := fmt.Sprintf("m%d-%d", i%4, i)
		g, err := tc.KV((i+1)%3).Get(ctx, &rspb.GetRequest{Key: []byte(k)})
		if err != nil || !g.Found {
			t.Fatalf("get %s after merges: %v %v", k, g, err)
		}
	}
	t.Logf("ranges merged back to %d; %d writes during the merges all read back", before, written)
}

// TestFrozenRangeIsMerged: a right range frozen for a merge that was never
// proposed (its proposer died) is merged by the left range's merge queue.
func TestFrozenRangeIsMerged(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1, SplitCheckInterval: 100 * time.Millisecond, MetaCheckInterval: 500 * time.Millisecond})
	ctx := ctxT(t)
	sp, err := rspb.NewAdminClient(tc.Conn(0)).SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k100")})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tc.Node(1).router.SendToRange(ctx, sp.Right, &rspb.RangeRequest{RangeId: sp.Right.RangeId,
		Admin: &rspb.RangeRequest_AdminFreeze{AdminFreeze: &rspb.AdminFreezeRequest{MergeInto: sp.Left.RangeId}}})
	if err != nil || resp.Error != nil {
		t.Fatalf("freeze: %v %v", resp, err)
	}
	timeutil.WaitFor(t, 20*time.Second, "frozen range merged by the queue", func() error {
		descs := metaRecords(ctx, t, tc, 0)
		if err := CheckMetaTiles(descs); err != nil {
			return err
		}
		for _, d := range descs {
			if d.RangeId == sp.Right.RangeId {
				return fmt.Errorf("r%d still in meta", d.RangeId)
			}
		}
		return nil
	})
	if _, err := tc.KV(2).Put(ctx, &rspb.PutRequest{Key: []byte("k200"), Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
}

// TestSkippedSplitGetsSnapshot is the divergence trap of research §7: a
// node whose replica of the parent was down during a split and then caught
// up by a snapshot of the (now narrower) parent never applied the split, so
// it has no right-hand replica. It creates one from meta, empty, and that
// replica must be caught up by a snapshot (the right side's log was
// compacted when it started), never by replaying the log from index 1 over
// an empty span: the keys written before the split must be there.
func TestSkippedSplitGetsSnapshot(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1, MetaCheckInterval: 300 * time.Millisecond})
	ctx := ctxT(t)
	lagging := 2
	laggingID := tc.Node(lagging).NodeID()
	// Writes on both sides after the split.
	sp := skipSplitOnLaggingNode(ctx, t, tc, lagging, "k010", "k040")
	st := tc.Node(lagging).Store()
	timeutil.WaitFor(t, 30*time.Second, "lagging node has both sides", func() error {
		l := st.Descriptor(sp.Left.RangeId)
		if l == nil || l.Generation < sp.Left.Generation {
			return fmt.Errorf("parent replica still at %v", l)
		}
		r := st.Descriptor(sp.Right.RangeId)
		if r == nil {
			return fmt.Errorf("no replica of r%d with data yet", sp.Right.RangeId)
		}
		return nil
	})
	// Serve the right side from the formerly lagging node: every key, old
	// and new, must be there.
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
	if l := st.Ranges(); len(l) == 0 {
		t.Fatal("no ranges")
	}
}

// skipSplitOnLaggingNode writes k000..k059, stops node lagging, splits at
// k030, writes "after-split" at each of afterSplit, drops the parent's
// log past the split on the other two nodes (so the lagging replica of the
// parent can only catch up by snapshot, skipping the split) and restarts
// the lagging node. It returns the split.
func skipSplitOnLaggingNode(ctx context.Context, t *testing.T, tc *TestCluster, lagging int, afterSplit ...string) *rspb.SplitRangeResponse {
	t.Helper()
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("k%03d", i)
		if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v" + k)}); err != nil {
			t.Fatal(err)
		}
	}
	tc.StopNode(lagging)
	sp, err := rspb.NewAdminClient(tc.Conn(0)).SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k030")})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range afterSplit {
		if _, err := tc.KV(1).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("after-split")}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if i == lagging {
			continue
		}
		if _, err := tc.Node(i).Store().CompactRaftLog(ctx, sp.Left.RangeId); err != nil {
			t.Fatalf("compacting r%d on node %d: %v", sp.Left.RangeId, i, err)
		}
	}
	if err := tc.RestartNode(lagging); err != nil {
		t.Fatal(err)
	}
	return sp
}
