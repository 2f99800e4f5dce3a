package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/ranges/batcheval"
	"github.com/rangestore/rangestore/timeutil"
)

// userIntents counts the intents in the user span of eng.
func userIntents(t *testing.T, eng *kv.Engine) int {
	t.Helper()
	in, _, err := kv.MVCCFindIntents(eng, keys.UserKey(nil), keys.UserKey([]byte{0xff, 0xff, 0xff}), 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(in)
}

// waitNoTxnState waits until no engine of tc holds an intent or a
// transaction record.
func waitNoTxnState(t *testing.T, tc *TestCluster, what string) {
	t.Helper()
	timeutil.WaitFor(t, 30*time.Second, what, func() error {
		for i := 0; i < tc.NumNodes(); i++ {
			n := tc.Node(i)
			if n == nil {
				continue
			}
			if c, r := userIntents(t, n.Engine()), txnRecords(t, n.Engine()); c > 0 || r > 0 {
				return fmt.Errorf("n%d holds %d intents and %d transaction records", n.NodeID(), c, r)
			}
		}
		return nil
	})
}

// recoveries is node i's rangestore_txn_recoveries_total for outcome.
func recoveries(t *testing.T, tc *TestCluster, i int, outcome string) float64 {
	t.Helper()
	mfs, err := tc.Node(i).Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rangestore_txn_recoveries_total" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func sameTS(a, b *rspb.Timestamp) bool {
	return a.GetWallTime() == b.GetWallTime() && a.GetLogical() == b.GetLogical()
}

// TestTxnParallelCommitAcrossRanges: an atomic batch of writes in two
// ranges commits by parallel commit: both writes are visible at the
// commit timestamp the batch returned, and the record and the intents are
// gone afterwards (the coordinator made the record COMMITTED and resolved
// them) on every node.
func TestTxnParallelCommitAcrossRanges(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{SplitKeys: [][]byte{[]byte("m")}})
	ctx := ctxT(t)
	resp, err := tc.KV(0).Batch(ctx, &rspb.BatchRequest{Atomic: true, Requests: []*rspb.RequestUnion{txnPut("a", "a1"), txnPut("z", "z1")}})
	if err != nil {
		t.Fatal(err)
	}
	ts := resp.Responses[0].GetPut().GetCommitTimestamp()
	if ts == nil || !sameTS(ts, resp.Responses[1].GetPut().GetCommitTimestamp()) || len(resp.Bookmark) == 0 {
		t.Fatalf("atomic batch: %v; want one commit timestamp on both writes and a bookmark", resp)
	}
	for _, k := range []string{"a", "z"} {
		g, err := tc.KV(1).Get(ctx, &rspb.GetRequest{Key: []byte(k)})
		if err != nil || string(g.GetKv().GetValue()) != k+"1" || !sameTS(g.Kv.Timestamp, ts) {
			t.Fatalf("read of %s: %v, %v; want %s1 at the commit timestamp %v", k, g, err, k, ts)
		}
	}
	waitNoTxnState(t, tc, "the parallel commit's record and intents gone")
}

// TestTxnParallelCommitCoordinatorStalls: the coordinator of an atomic
// 2-range batch stops right after its staging round succeeded, before it
// answers or makes the record COMMITTED (a crash point that blocks it;
// cmd/rangestore's TestParallelCommitCoordinatorKilled kills the process
// there). A reader on another node meets an intent, finds the STAGING
// record expired, and recovers it: both writes landed, so it commits;
// the reader sees the new value, and recovery resolves every intent and
// removes the record without the coordinator.
func TestTxnParallelCommitCoordinatorStalls(t *testing.T) {
	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	tc := startCluster(t, TestClusterOptions{SplitKeys: [][]byte{[]byte("m")}, CrashPoint: func(node int, name string) {
		if node == 0 && name == "txn-after-stage" {
			once.Do(func() { close(reached) })
			<-release
		}
	}})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	ctx := ctxT(t)
	if _, err := tc.KV(1).Put(ctx, &rspb.PutRequest{Key: []byte("z"), Value: []byte("z0")}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		resp *rspb.BatchResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := tc.KV(0).Batch(ctx, &rspb.BatchRequest{Atomic: true, Requests: []*rspb.RequestUnion{txnPut("a", "a1"), txnPut("z", "z1")}})
		done <- result{r, err}
	}()
	select {
	case <-reached:
	case r := <-done:
		t.Fatalf("the atomic batch finished without reaching the crash point: %v, %v", r.resp, r.err)
	case <-time.After(30 * time.Second):
		t.Fatal("the atomic batch never reached txn-after-stage")
	}
	start := time.Now()
	g, err := tc.KV(1).Get(ctx, &rspb.GetRequest{Key: []byte("z")})
	if err != nil || string(g.GetKv().GetValue()) != "z1" {
		t.Fatalf("read of z while the coordinator is stuck: %v, %v; want z1 (the implicitly committed write)", g, err)
	}
	t.Logf("the reader waited %v, then recovered the STAGING transaction", time.Since(start).Round(time.Millisecond))
	if n := recoveries(t, tc, 1, "commit"); n < 1 {
		t.Fatalf("n%d ran %v committing recoveries; want 1", tc.Node(1).NodeID(), n)
	}
	waitNoTxnState(t, tc, "recovery resolved every intent and removed the record, with the coordinator stuck")
	a, err := tc.KV(2).Get(ctx, &rspb.GetRequest{Key: []byte("a")})
	if err != nil || string(a.GetKv().GetValue()) != "a1" || !sameTS(a.Kv.Timestamp, g.Kv.Timestamp) {
		t.Fatalf("read of a: %v, %v; want a1 at z's commit timestamp %v", a, err, g.Kv.Timestamp)
	}
	close(release)
	r := <-done
	if r.err != nil || !sameTS(r.resp.Responses[0].GetPut().GetCommitTimestamp(), g.Kv.Timestamp) {
		t.Fatalf("the coordinator's answer once it went on: %v, %v; want success at %v", r.resp, r.err, g.Kv.Timestamp)
	}
}

// sendToLeaseholder sends req to the range holding client key k at
// whichever node holds its lease.
func sendToLeaseholder(ctx context.Context, t *testing.T, tc *TestCluster, k string, req *rspb.RangeRequest) *rspb.RangeResponse {
	t.Helper()
	req.RangeId = rangeOf(tc, k).RangeId
	var resp *rspb.RangeResponse
	timeutil.WaitFor(t, 20*time.Second, "a leaseholder of "+k, func() error {
		for i := 0; i < tc.NumNodes(); i++ {
			if n := tc.Node(i); n != nil {
				resp = n.Send(ctx, req)
				if resp.Error.GetCode() != rspb.RangeError_NOT_LEASEHOLDER {
					return nil
				}
			}
		}
		return fmt.Errorf("%v", resp.Error)
	})
	return resp
}

// TestTxnParallelCommitRecoveryAborts: a STAGING transaction whose
// coordinator died after the anchor's range staged it, before its write
// to the other range was sent. A reader of the staged write waits until
// the record expires, then recovers it: the missing write is prevented,
// so the transaction aborts and the reader sees the old value. The late
// write, sent afterwards, cannot revive it: it lands above the staging
// timestamp and is resolved as aborted.
func TestTxnParallelCommitRecoveryAborts(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{SplitKeys: [][]byte{[]byte("m")}})
	ctx := ctxT(t)
	if _, err := tc.KV(1).Put(ctx, &rspb.PutRequest{Key: []byte("a"), Value: []byte("a0")}); err != nil {
		t.Fatal(err)
	}
	put := func(k string) *rspb.RequestUnion {
		return &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: keys.UserKey([]byte(k)), Value: []byte(k + "1")}}}
	}
	spans := []*rspb.Span{{Key: keys.UserKey([]byte("a"))}, {Key: keys.UserKey([]byte("z"))}}
	var txn, rec *rspb.Transaction
	var now *rspb.Timestamp
	// A transaction that began before a lease moved can no longer create
	// its record: begin again until the staging round writes it.
	timeutil.WaitFor(t, 20*time.Second, "a STAGING record", func() error {
		id := make([]byte, batcheval.TxnIDLen)
		if _, err := rand.Read(id); err != nil {
			t.Fatal(err)
		}
		now = ranges.TSToProto(kv.Timestamp{WallTime: time.Now().UnixNano()})
		txn = &rspb.Transaction{Meta: &rspb.TxnMeta{Id: id, Key: keys.UserKey([]byte("a")), WriteTimestamp: now, MinTimestamp: now, Priority: 1, CoordinatorNodeId: 1},
			ReadTimestamp: now}
		stage := &rspb.EndTxnRequest{Key: txn.Meta.Key, Txn: txn, Commit: true, LockSpans: spans, InFlightWrites: spans, CanForward: true}
		resp := sendToLeaseholder(ctx, t, tc, "a", &rspb.RangeRequest{Txn: txn, ProposalId: append([]byte("stage-a-"), id...), Timestamp: now,
			Requests: []*rspb.RequestUnion{put("a"), {Value: &rspb.RequestUnion_EndTxn{EndTxn: stage}}}})
		if resp.Error != nil {
			return fmt.Errorf("%v", resp.Error)
		}
		rec = resp.Responses[1].GetEndTxn().GetTxn()
		if rec.GetStatus() != rspb.TransactionStatus_TXN_STAGING {
			t.Fatalf("staged record: %v", rec)
		}
		return nil
	})
	start := time.Now()
	g, err := tc.KV(2).Get(ctx, &rspb.GetRequest{Key: []byte("a")})
	if err != nil || string(g.GetKv().GetValue()) != "a0" {
		t.Fatalf("read of a: %v, %v; want a0 (the transaction aborted by recovery)", g, err)
	}
	t.Logf("the reader waited %v, then recovered the STAGING transaction", time.Since(start).Round(time.Millisecond))
	if n := recoveries(t, tc, 2, "abort"); n < 1 {
		t.Fatalf("n%d ran %v aborting recoveries; want 1", tc.Node(2).NodeID(), n)
	}
	// The write that never arrived arrives now: above the staging
	// timestamp, and never committed.
	late := sendToLeaseholder(ctx, t, tc, "z", &rspb.RangeRequest{Txn: txn, ProposalId: []byte("late-z"), Timestamp: now,
		Requests: []*rspb.RequestUnion{put("z")}})
	if late.Error == nil && !ranges.TSFromProto(rec.Meta.WriteTimestamp).Less(ranges.TSFromProto(late.Txn.Meta.WriteTimestamp)) {
		t.Fatalf("the late write landed at %v, not above the staging timestamp %v", late.Txn.Meta.WriteTimestamp, rec.Meta.WriteTimestamp)
	}
	if z, err := tc.KV(1).Get(ctx, &rspb.GetRequest{Key: []byte("z")}); err != nil || z.Found {
		t.Fatalf("read of z after the late write: %v, %v; want nothing (its transaction aborted)", z, err)
	}
	waitNoTxnState(t, tc, "the aborted transaction's intents resolved and its record removed")
}
