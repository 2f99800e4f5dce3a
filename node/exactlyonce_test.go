package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/timeutil"
)

// TestRetriedWriteAnsweredAcrossMerge: a write that applied on a range is
// answered from its dedup record when it is retried (same proposal ID and
// timestamp) after the range froze for a merge, on every replica; once the
// merge applied, every node names the left range as the one that subsumed
// it, and the left range answers the retry from the moved record: the
// increment applies once.
func TestRetriedWriteAnsweredAcrossMerge(t *testing.T) {
	// No split queue: it would finish the frozen merge before the retries.
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1, SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	sp, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k030")})
	if err != nil {
		t.Fatal(err)
	}
	left, right := sp.Left, sp.Right
	key := keys.UserKey([]byte("k040"))
	retry := func(rangeID uint64) *rspb.RangeRequest {
		return &rspb.RangeRequest{RangeId: rangeID, ProposalId: []byte("the-one-increment"), Timestamp: ranges.TSToProto(tc.Node(0).cfg.Clock.Now()),
			Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: key, Delta: 1}}}}}
	}
	req := retry(right.RangeId)
	first, err := tc.Node(0).router.SendToRange(ctx, right, req)
	if err != nil || first.Error != nil {
		t.Fatalf("increment on r%d: %v %v", right.RangeId, err, first.GetError())
	}
	want := first.Responses[0].GetIncrement().GetNewValue()

	// Freeze the right range for a merge into the left one; every replica
	// answers the retry from its record.
	fr, err := tc.Node(0).router.SendToRange(ctx, right, &rspb.RangeRequest{RangeId: right.RangeId,
		Admin: &rspb.RangeRequest_AdminFreeze{AdminFreeze: &rspb.AdminFreezeRequest{MergeInto: left.RangeId, ExpectedGeneration: right.Generation}}})
	if err != nil || fr.Error != nil {
		t.Fatalf("freeze r%d: %v %v", right.RangeId, err, fr.GetError())
	}
	for n := 0; n < 3; n++ {
		timeutil.WaitFor(t, 10*time.Second, fmt.Sprintf("n%d answers the retry on frozen r%d", n+1, right.RangeId), func() error {
			resp := tc.Node(n).store.Send(ctx, req)
			if resp.Error != nil {
				return fmt.Errorf("%v: %s", resp.Error.Code, resp.Error.Message)
			}
			if got := resp.Responses[0].GetIncrement().GetNewValue(); got != want {
				t.Fatalf("n%d answered the retry with %d, the increment answered %d", n+1, got, want)
			}
			return nil
		})
	}

	// Merge: every node names the left range for the right one, and the
	// left range answers the retry.
	if _, err := rspb.NewAdminClient(tc.Conn(1)).MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte("k000")}); err != nil {
		t.Fatalf("merge: %v", err)
	}
	moved := retry(left.RangeId)
	moved.ProposalId, moved.Timestamp = req.ProposalId, req.Timestamp
	for n := 0; n < 3; n++ {
		timeutil.WaitFor(t, 10*time.Second, fmt.Sprintf("n%d names r%d as the range that subsumed r%d", n+1, left.RangeId, right.RangeId), func() error {
			resp := tc.Node(n).store.Send(ctx, req)
			if e := resp.Error; e == nil || e.Code != rspb.RangeError_RANGE_NOT_FOUND || e.RangeDescriptor.GetRangeId() != left.RangeId {
				return fmt.Errorf("retry on r%d answered %v", right.RangeId, e)
			}
			return nil
		})
		timeutil.WaitFor(t, 10*time.Second, fmt.Sprintf("n%d answers the retry on r%d", n+1, left.RangeId), func() error {
			resp := tc.Node(n).store.Send(ctx, moved)
			if resp.Error != nil {
				return fmt.Errorf("%v: %s", resp.Error.Code, resp.Error.Message)
			}
			if got := resp.Responses[0].GetIncrement().GetNewValue(); got != want {
				t.Fatalf("n%d answered the retry on r%d with %d, the increment answered %d: it applied again", n+1, left.RangeId, got, want)
			}
			return nil
		})
	}
	g, err := tc.KV(2).Get(ctx, &rspb.GetRequest{Key: []byte("k040")})
	if err != nil || string(g.GetKv().GetValue()) != fmt.Sprint(want) {
		t.Fatalf("k040 is %q (%v), want %d", g.GetKv().GetValue(), err, want)
	}
}

// TestSplitWaitsForFrozenNeighbour: while a range is frozen for a merge
// into its left neighbour, that neighbour does not split (the merge needs
// its end key: the frozen range would serve nothing for good, since its
// merge target still exists and the freeze is never rolled back); once the
// merge finished, the split goes ahead.
func TestSplitWaitsForFrozenNeighbour(t *testing.T) {
	// No split queue: it would finish the frozen merge at once.
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1, SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	sp, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k060")})
	if err != nil {
		t.Fatal(err)
	}
	left, right := sp.Left, sp.Right
	fr, err := tc.Node(0).router.SendToRange(ctx, right, &rspb.RangeRequest{RangeId: right.RangeId,
		Admin: &rspb.RangeRequest_AdminFreeze{AdminFreeze: &rspb.AdminFreezeRequest{MergeInto: left.RangeId, ExpectedGeneration: right.Generation}}})
	if err != nil || fr.Error != nil {
		t.Fatalf("freeze r%d into r%d: %v %v", right.RangeId, left.RangeId, err, fr.GetError())
	}
	for n := 0; n < 3; n++ {
		timeutil.WaitFor(t, 10*time.Second, fmt.Sprintf("n%d applied the freeze", n+1), func() error {
			resp := tc.Node(n).store.Send(ctx, &rspb.RangeRequest{RangeId: right.RangeId, Admin: &rspb.RangeRequest_AdminFreeze{AdminFreeze: &rspb.AdminFreezeRequest{MergeInto: left.RangeId, Probe: true}}})
			if resp.Error != nil {
				return fmt.Errorf("%s", resp.Error.Message)
			}
			return nil
		})
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = admin.SplitRange(sctx, &rspb.SplitRangeRequest{Key: []byte("k030")})
	cancel()
	if err == nil || !strings.Contains(err.Error(), "frozen for a merge into it") {
		t.Fatalf("splitting r%d while r%d is frozen into it: got %v, want a refusal", left.RangeId, right.RangeId, err)
	}
	if _, err := admin.MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte("k000")}); err != nil {
		t.Fatalf("merge r%d into r%d: %v", right.RangeId, left.RangeId, err)
	}
	if _, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("k030")}); err != nil {
		t.Fatalf("split after the merge finished: %v", err)
	}
	if _, err := tc.KV(1).Put(ctx, &rspb.PutRequest{Key: []byte("k070"), Value: []byte("v")}); err != nil {
		t.Fatalf("write in the formerly frozen span: %v", err)
	}
}
