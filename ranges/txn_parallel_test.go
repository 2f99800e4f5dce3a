package ranges

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/timeutil"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/txnwait"
)

func stageReq(txn *rspb.Transaction, canForward bool, inFlight []string, spans ...string) *rspb.RequestUnion {
	q := &rspb.EndTxnRequest{Key: txn.Meta.Key, Txn: txn, Commit: true, CanForward: canForward}
	for _, k := range spans {
		q.LockSpans = append(q.LockSpans, &rspb.Span{Key: uk(k)})
	}
	for _, k := range inFlight {
		q.InFlightWrites = append(q.InFlightWrites, &rspb.Span{Key: uk(k)})
	}
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_EndTxn{EndTxn: q}}
}

func queryIntentReq(k string, meta *rspb.TxnMeta) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_QueryIntent{QueryIntent: &rspb.QueryIntentRequest{Key: uk(k), Txn: meta}}}
}

func recoverReq(staging *rspb.Transaction, writes ...rspb.InFlightWriteStatus) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_RecoverTxn{RecoverTxn: &rspb.RecoverTxnRequest{Key: staging.Meta.Key, Txn: staging, Writes: writes}}}
}

// TestTxnParallelCommitOnOneStore walks the commands of parallel commits
// through one leaseholder: a staging EndTxn sent with the writes, the
// recovery of a STAGING transaction whose writes all landed (committed)
// and of one whose write is missing (the query prevents it: the late
// write lands above the staging timestamp, and the transaction aborts),
// a rollback and a winning push that meet STAGING (needs recovery), and a
// staging batch pushed above its timestamp (TXN_RETRY, or staged higher
// when the transaction read nothing).
func TestTxnParallelCommitOnOneStore(t *testing.T) {
	s, x := newTxnTester(t)
	found, prevented, above := rspb.InFlightWriteStatus_WRITE_FOUND, rspb.InFlightWriteStatus_WRITE_PREVENTED, rspb.InFlightWriteStatus_WRITE_FOUND_ABOVE

	// P: both writes and the staging record in one command.
	p := newTestTxn(s, 'P', "pa", 5)
	resp := x.ok(p, putReq("pa", "a1"), putReq("pb", "b1"), stageReq(p, false, []string{"pa", "pb"}, "pa", "pb"))
	rec := resp.Responses[2].GetEndTxn().GetTxn()
	if rec.GetStatus() != rspb.TransactionStatus_TXN_STAGING || len(rec.InFlightWrites) != 2 {
		t.Fatalf("staging EndTxn wrote %v, want STAGING with 2 in-flight writes", rec)
	}
	q := x.ok(nil, queryIntentReq("pa", rec.Meta), queryIntentReq("pb", rec.Meta))
	if a, b := q.Responses[0].GetQueryIntent().GetStatus(), q.Responses[1].GetQueryIntent().GetStatus(); a != found || b != found {
		t.Fatalf("QueryIntent of P's writes: %v, %v; want both found", a, b)
	}
	r := x.ok(nil, recoverReq(rec, found, found)).Responses[0].GetRecoverTxn()
	if r.Txn.GetStatus() != rspb.TransactionStatus_TXN_COMMITTED || !r.ResolvedAll {
		t.Fatalf("recovery of P: %v (%s); want COMMITTED and every intent resolved", r.Txn.GetStatus(), r.Reason)
	}
	if g := x.ok(nil, getReq("pb")).Responses[0].GetGet(); string(g.GetKv().GetValue()) != "b1" {
		t.Fatalf("pb after P's recovery: %v; want b1", g)
	}

	// Q: its second write never arrived.
	qt := newTestTxn(s, 'Q', "qa", 5)
	resp = x.ok(qt, putReq("qa", "a1"), stageReq(qt, false, []string{"qa", "qb"}, "qa", "qb"))
	rec = resp.Responses[1].GetEndTxn().GetTxn()
	// Its own rollback cannot tell whether it committed.
	if e := x.ok(nil, endTxn(qt, false, "qa", "qb")).Responses[0].GetEndTxn(); !e.NeedsRecovery || e.Txn.GetStatus() != rspb.TransactionStatus_TXN_STAGING {
		t.Fatalf("rollback of a STAGING txn: %v; want needs_recovery and the STAGING record", e)
	}
	// Nor can a pusher that wins.
	hi := newTestTxn(s, 'H', "h", txnwait.MaxPriority)
	if pr := x.ok(nil, pushReq(hi, rec.Meta, rspb.PushType_PUSH_ABORT, TSFromProto(rec.Meta.WriteTimestamp))).Responses[0].GetPushTxn(); !pr.NeedsRecovery || pr.Pushed {
		t.Fatalf("a winning push of a STAGING txn: %v; want needs_recovery, not pushed", pr)
	}
	q = x.ok(nil, queryIntentReq("qa", rec.Meta), queryIntentReq("qb", rec.Meta))
	if a, b := q.Responses[0].GetQueryIntent().GetStatus(), q.Responses[1].GetQueryIntent().GetStatus(); a != found || b != prevented {
		t.Fatalf("QueryIntent of Q's writes: %v, %v; want found, prevented", a, b)
	}
	// The late write can only land above the staging timestamp now.
	late := x.ok(qt, putReq("qb", "b1"))
	if !TSFromProto(rec.Meta.WriteTimestamp).Less(TSFromProto(late.Txn.Meta.WriteTimestamp)) {
		t.Fatalf("Q's late write landed at %s, not above its staging timestamp %s", TSFromProto(late.Txn.Meta.WriteTimestamp), TSFromProto(rec.Meta.WriteTimestamp))
	}
	if st := x.ok(nil, queryIntentReq("qb", rec.Meta)).Responses[0].GetQueryIntent().GetStatus(); st != above {
		t.Fatalf("QueryIntent of Q's late write: %v; want found above", st)
	}
	r = x.ok(nil, recoverReq(rec, found, prevented)).Responses[0].GetRecoverTxn()
	if r.Txn.GetStatus() != rspb.TransactionStatus_TXN_ABORTED {
		t.Fatalf("recovery of Q: %v (%s); want ABORTED", r.Txn.GetStatus(), r.Reason)
	}
	for _, k := range []string{"qa", "qb"} {
		if g := x.ok(nil, getReq(k)).Responses[0].GetGet(); g.GetFound() {
			t.Fatalf("%s after Q aborted: %v; want nothing", k, g)
		}
	}
	// Recovery again changes nothing: the record is final (and gone).
	if r = x.ok(nil, recoverReq(rec, found, found)).Responses[0].GetRecoverTxn(); r.Txn.GetStatus() == rspb.TransactionStatus_TXN_COMMITTED {
		t.Fatalf("a second recovery of the aborted Q committed it: %s", r.Reason)
	}

	// R: a read of ra after R began pushes its staging batch.
	rt := newTestTxn(s, 'R', "ra", 5)
	x.ok(nil, getReq("ra"))
	if resp = x.send(rt, putReq("ra", "a1"), stageReq(rt, false, []string{"ra"}, "ra")); resp.Error.GetCode() != rspb.RangeError_TXN_RETRY {
		t.Fatalf("staging batch pushed above its timestamp, transaction with reads: %v; want TXN_RETRY", resp.Error)
	}
	resp = x.ok(rt, putReq("ra", "a1"), stageReq(rt, true, []string{"ra"}, "ra"))
	rec = resp.Responses[1].GetEndTxn().GetTxn()
	if rec.GetStatus() != rspb.TransactionStatus_TXN_STAGING || !TSFromProto(rt.Meta.WriteTimestamp).Less(TSFromProto(rec.Meta.WriteTimestamp)) ||
		TSFromProto(rec.Meta.WriteTimestamp) != TSFromProto(resp.Txn.Meta.WriteTimestamp) {
		t.Fatalf("staging batch pushed, transaction without reads: record %v, batch at %s; want STAGING at the batch's timestamp, above %s",
			rec, TSFromProto(resp.Txn.Meta.WriteTimestamp), TSFromProto(rt.Meta.WriteTimestamp))
	}

	// Bad input: in-flight writes on a rollback, or a span.
	bad := stageReq(rt, false, []string{"ra"}, "ra")
	bad.GetEndTxn().Commit = false
	if resp = x.send(nil, bad); resp.Error.GetCode() != rspb.RangeError_INVALID_ARGUMENT {
		t.Fatalf("rollback with in-flight writes: %v; want INVALID_ARGUMENT", resp.Error)
	}
	bad = stageReq(rt, false, []string{"ra"}, "ra")
	bad.GetEndTxn().InFlightWrites[0].EndKey = uk("rz")
	if resp = x.send(nil, bad); resp.Error.GetCode() != rspb.RangeError_INVALID_ARGUMENT {
		t.Fatalf("a span as an in-flight write: %v; want INVALID_ARGUMENT", resp.Error)
	}
}

// TestTxnReadInWriteBatchEntersTSCache: a transaction's read evaluated in
// a write batch (a Get beside a Put in one range) enters the timestamp
// cache, so an older transaction's later write of the key it read lands
// above it. Without that, the chaos validator found a transaction that
// committed at a timestamp where its read was stale (seed 50960).
func TestTxnReadInWriteBatchEntersTSCache(t *testing.T) {
	s, x := newTxnTester(t)
	older := newTestTxn(s, 'O', "k", 5)
	reader := newTestTxn(s, 'R', "r", 5)
	if !TSFromProto(older.Meta.WriteTimestamp).Less(TSFromProto(reader.Meta.WriteTimestamp)) {
		t.Fatal("the clock did not move between two transactions")
	}
	resp := x.ok(reader, getReq("k"), putReq("r", "r1"))
	readAt := TSFromProto(resp.Txn.Meta.WriteTimestamp)
	w := x.ok(older, putReq("k", "k1"))
	if got := TSFromProto(w.Txn.Meta.WriteTimestamp); !readAt.Less(got) {
		t.Fatalf("the older transaction's write of k landed at %s, not above the read of k at %s in a write batch", got, readAt)
	}
}

// TestPushWaitsForPusheeToFinish: a push that would lose against a live
// transaction waits in the push wait queue of the record's leaseholder,
// and the pushee's commit wakes it: evaluated then, it finds the
// transaction committed (pushed), rather than answering WAIT at once and
// leaving the pusher to poll.
func TestPushWaitsForPusheeToFinish(t *testing.T) {
	old := maxPushWait
	maxPushWait = 30 * time.Second // woken by the commit, not by the timer
	t.Cleanup(func() { maxPushWait = old })
	s, x := newTxnTester(t)
	a := newTestTxn(s, 'A', "wa", 5)
	x.ok(a, putReq("wa", "1"))
	x.ok(nil, &rspb.RequestUnion{Value: &rspb.RequestUnion_HeartbeatTxn{HeartbeatTxn: &rspb.HeartbeatTxnRequest{Key: a.Meta.Key, Txn: a,
		Now: TSToProto(s.cfg.Clock.Now())}}})
	done := make(chan *rspb.RangeResponse, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- s.Send(ctx, &rspb.RangeRequest{RangeId: userRangeID, ProposalId: []byte("push-waiter"), Timestamp: TSToProto(s.cfg.Clock.Now()),
			Requests: []*rspb.RequestUnion{pushReq(nil, a.Meta, rspb.PushType_PUSH_ABORT, kv.Timestamp{})}})
	}()
	timeutil.WaitFor(t, 10*time.Second, "the push waiting in the queue", func() error {
		s.pushes.mu.Lock()
		defer s.pushes.mu.Unlock()
		select {
		case r := <-done:
			t.Fatalf("the push answered without waiting: %v", r)
		default:
		}
		if s.pushes.waiting[string(a.Meta.Id)] == nil {
			return fmt.Errorf("no waiter on A")
		}
		return nil
	})
	x.ok(nil, endTxn(a, true, "wa"))
	select {
	case r := <-done:
		// A's EndTxn resolved its one intent and removed its record (a
		// tombstone is left): the push finds A finalized.
		p := r.GetResponses()[0].GetPushTxn()
		if r.Error != nil || !p.GetPushed() || !strings.HasPrefix(p.GetReason(), "ALREADY_FINALIZED") {
			t.Fatalf("the woken push: %v; want pushed, A finalized", r)
		}
		if g := x.ok(nil, getReq("wa")).Responses[0].GetGet(); string(g.GetKv().GetValue()) != "1" {
			t.Fatalf("wa after A committed: %v; want 1", g)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting push was not woken by A's commit")
	}
}
