package batcheval

import (
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/txnwait"
)

// HeartbeatTxn is the coordinator's heartbeat at its transaction's record
// (key = the anchor): the first creates the record (PENDING), if it can
// still be created; later ones move its last heartbeat. A final record is
// returned as it is (COMMITTED: stop heartbeating; ABORTED, or no record
// and none can be created: the transaction is aborted). Each heartbeat
// records what the transaction waits on (waiting_on), the edge of the
// waits-for graph pushers follow to find deadlocks. Internal.
func init() {
	register(spec[*rspb.HeartbeatTxnRequest, *rspb.HeartbeatTxnResponse]{
		name:     "heartbeat_txn",
		internal: true,
		span:     func(q *rspb.HeartbeatTxnRequest) Span { return pointSpan(q.Key) },
		payload:  func(q *rspb.HeartbeatTxnRequest) ([][]byte, [][]byte) { return [][]byte{q.Key}, nil },
		check: func(q *rspb.HeartbeatTxnRequest, l Limits) error {
			if err := l.checkInternalKey("heartbeat_txn", q.Key); err != nil {
				return err
			}
			return checkTxnMeta("heartbeat_txn", q.GetTxn().GetMeta())
		},
		toIn: identityIn[*rspb.HeartbeatTxnRequest],
		eval: evalHeartbeatTxn,
	})
}

func evalHeartbeatTxn(a *Args, q *rspb.HeartbeatTxnRequest) (*rspb.HeartbeatTxnResponse, error) {
	env, err := envOf(a, "heartbeat_txn")
	if err != nil {
		return nil, err
	}
	if err := checkTxnMeta("heartbeat_txn", q.GetTxn().GetMeta()); err != nil {
		return nil, err
	}
	meta := q.Txn.Meta
	rec, err := readRecord(a.Batch, meta)
	if err != nil {
		return nil, err
	}
	now := env.Now()
	if t := TSFromProto(q.Now); now.Less(t) {
		now = t
	}
	action, st, _ := txnwait.DecideHeartbeat(*txnState(q.Txn), txnState(rec), env.RecordCheck(meta), toWaitTS(TSToProto(now)))
	base := rec
	if base == nil {
		base = q.Txn
	}
	out := applyState(base, st)
	if action == txnwait.HeartbeatWrite {
		if rec == nil {
			// A new record: the coordinator's view, with no lock spans yet.
			out.LockSpans, out.InFlightWrites = nil, nil
		}
		// What it waits on now (pushers look for cycles through it).
		out.WaitingOn = q.Txn.WaitingOn
		if err := writeRecord(a.Batch, out); err != nil {
			return nil, err
		}
	}
	return &rspb.HeartbeatTxnResponse{Txn: out}, nil
}
