package ranges

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/batcheval"
	"github.com/rangestore/rangestore/ranges/txnwait"
	"github.com/rangestore/rangestore/timeutil"
)

// txnTester sends range requests to a single-node store's user range.
type txnTester struct {
	t *testing.T
	s *Store
	n int
}

func (x *txnTester) send(txn *rspb.Transaction, reqs ...*rspb.RequestUnion) *rspb.RangeResponse {
	x.t.Helper()
	x.n++
	req := &rspb.RangeRequest{RangeId: userRangeID, Requests: reqs, Txn: txn}
	if !IsReadOnly(reqs) {
		req.ProposalId = []byte(fmt.Sprintf("txn-test-proposal-%04d", x.n))
		req.Timestamp = TSToProto(x.s.cfg.Clock.Now())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return x.s.Send(ctx, req)
}

// ok sends and fails the test on an error.
func (x *txnTester) ok(txn *rspb.Transaction, reqs ...*rspb.RequestUnion) *rspb.RangeResponse {
	x.t.Helper()
	resp := x.send(txn, reqs...)
	if resp.Error != nil {
		x.t.Fatalf("%v: %v", reqs, resp.Error)
	}
	return resp
}

// newTxnTester starts a single-node store and waits until it serves
// writes (its lease).
func newTxnTester(t *testing.T) (*Store, *txnTester) {
	t.Helper()
	s, _ := newSingleNodeStore(t, fakeLiveness{})
	x := &txnTester{t: t, s: s}
	timeutil.WaitFor(t, 20*time.Second, "the lease", func() error {
		if resp := x.send(nil, putReq("z", "0")); resp.Error != nil {
			return fmt.Errorf("%v", resp.Error)
		}
		return nil
	})
	return s, x
}

func uk(s string) []byte { return keys.UserKey([]byte(s)) }

func putReq(k, v string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: uk(k), Value: []byte(v)}}}
}

func getReq(k string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: uk(k)}}}
}

func newTestTxn(s *Store, id byte, anchor string, priority int32) *rspb.Transaction {
	now := TSToProto(s.cfg.Clock.Now())
	idb := make([]byte, batcheval.TxnIDLen)
	idb[0] = id
	return &rspb.Transaction{Meta: &rspb.TxnMeta{Id: idb, Key: uk(anchor), WriteTimestamp: now, MinTimestamp: now, Priority: priority, CoordinatorNodeId: 1},
		ReadTimestamp: now}
}

func endTxn(txn *rspb.Transaction, commit bool, spans ...string) *rspb.RequestUnion {
	q := &rspb.EndTxnRequest{Key: txn.Meta.Key, Txn: txn, Commit: commit}
	for _, k := range spans {
		q.LockSpans = append(q.LockSpans, &rspb.Span{Key: uk(k)})
	}
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_EndTxn{EndTxn: q}}
}

func pushReq(pusher *rspb.Transaction, pushee *rspb.TxnMeta, typ rspb.PushType, to kv.Timestamp) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_PushTxn{PushTxn: &rspb.PushTxnRequest{Key: pushee.Key, Pusher: pusher, Pushee: pushee,
		PushType: typ, PushTo: TSToProto(to)}}}
}

// TestTxnOnOneStore walks transactions through one leaseholder: intents
// and their conflicts, reads of one's own writes, the record (heartbeat,
// query), pushes (a loser waits, a winner moves the timestamp so the
// commit must refresh, an abort without a record), commit with local
// resolution, explicit resolution of an aborted intent, and a write that
// lands above a newer committed value.
func TestTxnOnOneStore(t *testing.T) {
	s, x := newTxnTester(t)

	// D reads z, then writes it: the write goes above the read (its own
	// included), and D commits there.
	d := newTestTxn(s, 'D', "z", 5)
	x.ok(d, getReq("z"))
	r0 := x.ok(d, putReq("z", "z1"))
	if !TSFromProto(d.Meta.WriteTimestamp).Less(TSFromProto(r0.Txn.Meta.WriteTimestamp)) {
		t.Fatalf("D's write after its own read stayed at %s", TSFromProto(r0.Txn.Meta.WriteTimestamp))
	}
	d.Meta.WriteTimestamp, d.ReadTimestamp = r0.Txn.Meta.WriteTimestamp, r0.Txn.Meta.WriteTimestamp // (refreshed)
	x.ok(nil, endTxn(d, true, "z"))
	// Another reader's read does push a later writer.
	e := newTestTxn(s, 'E', "z", 5)
	x.ok(nil, getReq("z"))
	if r := x.ok(e, putReq("z", "z2")); !TSFromProto(e.Meta.WriteTimestamp).Less(TSFromProto(r.Txn.Meta.WriteTimestamp)) {
		t.Fatalf("E's write after a later read stayed at %s", TSFromProto(r.Txn.Meta.WriteTimestamp))
	}
	x.ok(nil, endTxn(e, false, "z"))

	// A writes a and b: intents.
	a := newTestTxn(s, 'A', "a", 5)
	resp := x.ok(a, putReq("a", "a1"), putReq("b", "b1"))
	if resp.Txn == nil || TSFromProto(resp.Txn.Meta.WriteTimestamp).Less(TSFromProto(a.Meta.WriteTimestamp)) {
		t.Fatalf("write response txn %v", resp.Txn)
	}
	// Others meet them; A reads its own.
	if r := x.send(nil, getReq("a")); r.Error == nil || r.Error.Code != rspb.RangeError_WRITE_INTENT ||
		len(r.Error.Intents) != 1 || string(r.Error.Intents[0].Txn.Id) != string(a.Meta.Id) {
		t.Fatalf("non-transactional read of a: %v, want WRITE_INTENT naming A", r.Error)
	}
	if r := x.send(nil, putReq("b", "x")); r.Error == nil || r.Error.Code != rspb.RangeError_WRITE_INTENT {
		t.Fatalf("non-transactional write of b: %v, want WRITE_INTENT", r.Error)
	}
	if r := x.ok(a, getReq("a")); string(r.Responses[0].GetGet().GetKv().GetValue()) != "a1" {
		t.Fatalf("A reads its own a: %v", r.Responses[0])
	}

	// The first heartbeat creates A's record.
	hb := &rspb.RequestUnion{Value: &rspb.RequestUnion_HeartbeatTxn{HeartbeatTxn: &rspb.HeartbeatTxnRequest{Key: a.Meta.Key, Txn: a}}}
	if r := x.ok(nil, hb); r.Responses[0].GetHeartbeatTxn().GetTxn().GetStatus() != rspb.TransactionStatus_TXN_PENDING {
		t.Fatalf("heartbeat: %v", r.Responses[0])
	}
	q := &rspb.RequestUnion{Value: &rspb.RequestUnion_QueryTxn{QueryTxn: &rspb.QueryTxnRequest{Key: a.Meta.Key, Txn: a.Meta}}}
	if r := x.ok(nil, q); !r.Responses[0].GetQueryTxn().GetFound() || r.Responses[0].GetQueryTxn().GetTxn().GetLastHeartbeat() == nil {
		t.Fatalf("query after a heartbeat: %v", r.Responses[0])
	}

	// A reader of normal priority does not outrank A: it must wait.
	readTS := s.cfg.Clock.Now()
	r := x.ok(nil, pushReq(nil, a.Meta, rspb.PushType_PUSH_TIMESTAMP, readTS))
	if p := r.Responses[0].GetPushTxn(); p.Pushed || !strings.HasPrefix(p.Reason, "WAIT") {
		t.Fatalf("normal-priority push: %v, want WAIT", p)
	}
	// A high-priority reader moves A's timestamp: A's commit at its old
	// timestamp must retry (refresh) at the pushed one.
	hi := newTestTxn(s, 'H', "h", txnwait.MaxPriority)
	r = x.ok(nil, pushReq(hi, a.Meta, rspb.PushType_PUSH_TIMESTAMP, readTS))
	if p := r.Responses[0].GetPushTxn(); !p.Pushed || !strings.HasPrefix(p.Reason, "PUSHED_TIMESTAMP") {
		t.Fatalf("max-priority timestamp push: %v", p)
	}
	r = x.send(nil, endTxn(a, true, "a", "b"))
	if r.Error == nil || r.Error.Code != rspb.RangeError_TXN_RETRY || TSFromProto(r.Error.Txn.GetMeta().GetWriteTimestamp()).Less(readTS) {
		t.Fatalf("commit after the push: %v, want TXN_RETRY at %s or above", r.Error, readTS)
	}
	// (The coordinator would refresh its reads here.) A commits at the
	// pushed timestamp; its intents in this range resolve in the same
	// command.
	pushed := TSFromProto(r.Error.Txn.Meta.WriteTimestamp)
	a.Meta.WriteTimestamp, a.ReadTimestamp = TSToProto(pushed), TSToProto(pushed)
	r = x.ok(nil, endTxn(a, true, "a", "b"))
	if e := r.Responses[0].GetEndTxn(); e.GetTxn().GetStatus() != rspb.TransactionStatus_TXN_COMMITTED || !e.GetResolvedAll() {
		t.Fatalf("commit: %v; want COMMITTED, every intent resolved here", r.Responses[0])
	}
	for k, want := range map[string]string{"a": "a1", "b": "b1"} {
		got := x.ok(nil, getReq(k)).Responses[0].GetGet().GetKv()
		if string(got.GetValue()) != want || TSFromProto(got.GetTimestamp()) != pushed {
			t.Fatalf("after the commit %s = %v, want %s at %s", k, got, want, pushed)
		}
	}
	// Every intent was in this range: the commit kept no record, and left
	// a tombstone, so a late heartbeat cannot create one.
	if r := x.ok(nil, q); r.Responses[0].GetQueryTxn().GetFound() {
		t.Fatalf("the record of a transaction resolved in full is kept: %v", r.Responses[0])
	}
	if r := x.ok(nil, hb); r.Responses[0].GetHeartbeatTxn().GetTxn().GetStatus() != rspb.TransactionStatus_TXN_ABORTED {
		t.Fatalf("a late heartbeat after the commit: %v, want ABORTED (no record can be created)", r.Responses[0])
	}
	if r := x.ok(nil, q); r.Responses[0].GetQueryTxn().GetFound() {
		t.Fatalf("a late heartbeat created a record: %v", r.Responses[0])
	}

	// B writes c and has no record yet; a max-priority writer aborts it
	// (a tombstone: its record can never be created), so B's commit is
	// refused; resolving its intent as aborted removes it.
	b := newTestTxn(s, 'B', "c", 5)
	x.ok(b, putReq("c", "c1"))
	r = x.ok(nil, pushReq(hi, b.Meta, rspb.PushType_PUSH_ABORT, s.cfg.Clock.Now()))
	if p := r.Responses[0].GetPushTxn(); !p.Pushed || p.Pushee.Status != rspb.TransactionStatus_TXN_ABORTED {
		t.Fatalf("abort push: %v", p)
	}
	if r := x.send(nil, endTxn(b, true, "c")); r.Error == nil || r.Error.Code != rspb.RangeError_TXN_ABORTED {
		t.Fatalf("commit of an aborted txn: %v, want TXN_ABORTED", r.Error)
	}
	x.ok(nil, &rspb.RequestUnion{Value: &rspb.RequestUnion_ResolveIntent{ResolveIntent: &rspb.ResolveIntentRequest{
		Key: uk("c"), Txn: b.Meta, Status: rspb.TransactionStatus_TXN_ABORTED}}})
	if r := x.ok(nil, getReq("c")); r.Responses[0].GetGet().GetFound() {
		t.Fatalf("aborted intent still readable: %v", r.Responses[0])
	}

	// C writes a at a timestamp below its committed version: the write
	// lands above it, and the response says where.
	c := newTestTxn(s, 'C', "a", 5)
	c.Meta.WriteTimestamp, c.ReadTimestamp = TSToProto(kv.Timestamp{WallTime: pushed.WallTime - 1}), TSToProto(kv.Timestamp{WallTime: pushed.WallTime - 1})
	c.Meta.MinTimestamp = c.ReadTimestamp
	r = x.ok(c, putReq("a", "a2"))
	if got := TSFromProto(r.Txn.Meta.WriteTimestamp); !pushed.Less(got) {
		t.Fatalf("write below a committed version went to %s, want above %s", got, pushed)
	}
	// Refreshed to that timestamp, it commits there.
	c.Meta.WriteTimestamp, c.ReadTimestamp = r.Txn.Meta.WriteTimestamp, r.Txn.Meta.WriteTimestamp
	x.ok(nil, endTxn(c, true, "a"))
	if got := x.ok(nil, getReq("a")).Responses[0].GetGet().GetKv(); string(got.GetValue()) != "a2" ||
		TSFromProto(got.GetTimestamp()) != TSFromProto(c.Meta.WriteTimestamp) {
		t.Fatalf("after C's commit a = %v, want a2 at %s", got, TSFromProto(c.Meta.WriteTimestamp))
	}
}

// TestTxnRetriedEndTxnAnswersFromDedup: an EndTxn sent twice with one
// proposal ID (a router's retry of an attempt whose answer was lost) gets
// the first attempt's answer both times, even when the retry arrives while
// the first is in flight: it waits for the first's latches, and then must
// answer from the dedup record, not evaluate again (the commit removed the
// record: evaluated again it reads as aborted).
func TestTxnRetriedEndTxnAnswersFromDedup(t *testing.T) {
	s, x := newTxnTester(t)
	for i := 0; i < 20; i++ {
		txn := newTestTxn(s, byte('a'+i), fmt.Sprintf("d%02d", i), 5)
		x.ok(txn, putReq(fmt.Sprintf("d%02d", i), "v"))
		req := &rspb.RangeRequest{RangeId: userRangeID, Requests: []*rspb.RequestUnion{endTxn(txn, true, fmt.Sprintf("d%02d", i))},
			ProposalId: []byte(fmt.Sprintf("end-txn-retry-%04d", i)), Timestamp: TSToProto(s.cfg.Clock.Now())}
		resps := make(chan *rspb.RangeResponse, 2)
		for j := 0; j < 2; j++ {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				resps <- s.Send(ctx, proto.Clone(req).(*rspb.RangeRequest))
			}()
		}
		for j := 0; j < 2; j++ {
			r := <-resps
			if r.Error != nil || r.Responses[0].GetEndTxn().GetTxn().GetStatus() != rspb.TransactionStatus_TXN_COMMITTED {
				t.Fatalf("txn %d, attempt %d of one EndTxn: %v %v; want COMMITTED both times", i, j, r.Error, r.Responses)
			}
		}
	}
}
