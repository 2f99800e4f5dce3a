package batcheval

import (
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/txnwait"
)

// PushTxn pushes a conflicting transaction at its record (key = the
// pushee's anchor), as txnwait.DecidePush decides: a reader moves a
// PENDING pushee's write timestamp above its own (a push marker in the
// timestamp cache; the record is not rewritten), a writer aborts it (its
// record rewritten ABORTED, or, without a record, a tombstone marker so
// that none can be created); an expired pushee is aborted by anyone. A
// pusher that does not outrank a live pushee gets pushed=false (WAIT) and
// backs off; the answer carries the decision's reason. Internal.
func init() {
	register(spec[*rspb.PushTxnRequest, *rspb.PushTxnResponse]{
		name:     "push_txn",
		internal: true,
		span:     func(q *rspb.PushTxnRequest) Span { return pointSpan(q.Key) },
		payload:  func(q *rspb.PushTxnRequest) ([][]byte, [][]byte) { return [][]byte{q.Key}, nil },
		check:    checkPushTxn,
		toIn:     identityIn[*rspb.PushTxnRequest],
		eval:     evalPushTxn,
	})
}

func checkPushTxn(q *rspb.PushTxnRequest, l Limits) error {
	if err := l.checkInternalKey("push_txn", q.Key); err != nil {
		return err
	}
	if err := checkTxnMeta("push_txn pushee", q.Pushee); err != nil {
		return err
	}
	if string(q.Key) != string(q.Pushee.Key) {
		return invalidf("push_txn: key %q is not the pushee's anchor %q", q.Key, q.Pushee.Key)
	}
	if q.Pusher != nil {
		if err := checkTxnMetaNoAnchor("push_txn pusher", q.Pusher.Meta); err != nil {
			return err
		}
	}
	if q.PushType == rspb.PushType_PUSH_TIMESTAMP && TSFromProto(q.PushTo).IsEmpty() {
		return invalidf("push_txn: PUSH_TIMESTAMP needs push_to")
	}
	return nil
}

// DecidePushAt decides the push q against the record r holds and env (the
// leaseholder's clock and timestamp cache), as evalPushTxn does; the
// leaseholder also asks it before a push, without latches, to find out
// whether the pusher would wait (Replica.waitForPush). It returns the
// record read (nil: none) and the time the decision was made at.
func DecidePushAt(r kv.Reader, env TxnEnv, q *rspb.PushTxnRequest) (txnwait.PushDecision, *rspb.Transaction, kv.Timestamp, error) {
	rec, err := readRecord(r, q.Pushee)
	if err != nil {
		return txnwait.PushDecision{}, nil, kv.Timestamp{}, err
	}
	now := env.Now()
	if t := TSFromProto(q.Now); now.Less(t) {
		now = t
	}
	d, err := txnwait.DecidePush(txnwait.PushRequest{
		Pusher: txnState(q.Pusher), Pushee: metaState(q.Pushee), Record: txnState(rec), RecordCheck: env.RecordCheck(q.Pushee),
		Type: toWaitPush[q.PushType], PushTo: toWaitTS(q.PushTo), Now: toWaitTS(TSToProto(now)), Force: q.Force,
	})
	if err != nil {
		return txnwait.PushDecision{}, nil, kv.Timestamp{}, invalidf("push_txn: %v", err)
	}
	return d, rec, now, nil
}

var toWaitPush = map[rspb.PushType]txnwait.PushType{
	rspb.PushType_PUSH_TIMESTAMP: txnwait.PushTimestamp, rspb.PushType_PUSH_ABORT: txnwait.PushAbort, rspb.PushType_PUSH_TOUCH: txnwait.PushTouch,
}

func evalPushTxn(a *Args, q *rspb.PushTxnRequest) (*rspb.PushTxnResponse, error) {
	env, err := envOf(a, "push_txn")
	if err != nil {
		return nil, err
	}
	if err := checkPushTxn(q, Limits{MaxKeySize: 1 << 30}); err != nil {
		return nil, err
	}
	d, rec, now, err := DecidePushAt(a.Batch, env, q)
	if err != nil {
		return nil, err
	}
	base := rec
	if base == nil {
		base = &rspb.Transaction{Meta: q.Pushee}
	}
	out := applyState(base, d.Pushee)
	if d.WriteRecord {
		if err := writeRecord(a.Batch, out); err != nil {
			return nil, err
		}
	}
	switch d.Marker {
	case txnwait.PushMarker:
		env.Mark(PushMarkerKey(q.Pushee.Key, q.Pushee.Id), TSFromProto(out.Meta.WriteTimestamp))
	case txnwait.TombstoneMarker:
		env.Mark(TombstoneKey(q.Pushee.Key, q.Pushee.Id), now)
	}
	pushed := false
	switch d.Action {
	case txnwait.PushAlreadyFinalized, txnwait.PushNoopAlreadyAbove, txnwait.PushPushedTimestamp, txnwait.PushAborted:
		pushed = true
	}
	return &rspb.PushTxnResponse{Pushee: out, Pushed: pushed, Reason: d.Action.String() + ": " + d.Reason,
		NeedsRecovery: d.Action == txnwait.PushRecoverStaging}, nil
}
