package batcheval

import (
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/txnwait"
)

// RecoverTxn finishes the recovery of a STAGING transaction whose
// coordinator is gone (or lost a push), at its record (key = the anchor):
// the request carries the STAGING record recovery started from and what
// QueryIntent found of each of its in-flight writes. txnwait.DecideRecovery
// decides against the record as it is now: every write found means the
// transaction was implicitly committed (and may have been acknowledged), so
// the record becomes COMMITTED; a prevented write, or one found above the
// staging timestamp, means it never was, so ABORTED; a record that moved on
// (finalized, removed, restaged at a new epoch or timestamp) is left as it
// is. A finalized record resolves its intents in this range in the same
// command, as EndTxn does. Internal.
func init() {
	register(spec[*rspb.RecoverTxnRequest, *rspb.RecoverTxnResponse]{
		name:     "recover_txn",
		internal: true,
		span:     func(q *rspb.RecoverTxnRequest) Span { return pointSpan(q.Key) },
		payload:  func(q *rspb.RecoverTxnRequest) ([][]byte, [][]byte) { return [][]byte{q.Key}, nil },
		check:    checkRecoverTxn,
		toIn:     identityIn[*rspb.RecoverTxnRequest],
		minTS:    func(q *rspb.RecoverTxnRequest) *rspb.Timestamp { return q.GetTxn().GetMeta().GetWriteTimestamp() },
		eval:     evalRecoverTxn,
	})
}

func checkRecoverTxn(q *rspb.RecoverTxnRequest, l Limits) error {
	if err := l.checkInternalKey("recover_txn", q.Key); err != nil {
		return err
	}
	if err := checkTxnMeta("recover_txn", q.GetTxn().GetMeta()); err != nil {
		return err
	}
	switch {
	case string(q.Key) != string(q.Txn.Meta.Key):
		return invalidf("recover_txn: key %q is not the transaction's anchor %q", q.Key, q.Txn.Meta.Key)
	case q.Txn.Status != rspb.TransactionStatus_TXN_STAGING:
		return invalidf("recover_txn: txn is %s: only a STAGING record is recovered", q.Txn.Status)
	case len(q.Writes) != len(q.Txn.InFlightWrites):
		return invalidf("recover_txn: %d write results for %d in-flight writes", len(q.Writes), len(q.Txn.InFlightWrites))
	}
	return nil
}

var toWaitWrite = map[rspb.InFlightWriteStatus]txnwait.WriteResult{
	rspb.InFlightWriteStatus_WRITE_FOUND: txnwait.WriteFound, rspb.InFlightWriteStatus_WRITE_PREVENTED: txnwait.WritePrevented,
	rspb.InFlightWriteStatus_WRITE_FOUND_ABOVE: txnwait.WriteFoundAbove,
}

func evalRecoverTxn(a *Args, q *rspb.RecoverTxnRequest) (*rspb.RecoverTxnResponse, error) {
	env, err := envOf(a, "recover_txn")
	if err != nil {
		return nil, err
	}
	if err := checkRecoverTxn(q, Limits{MaxKeySize: 1 << 30}); err != nil {
		return nil, err
	}
	rec, err := readRecord(a.Batch, q.Txn.Meta)
	if err != nil {
		return nil, err
	}
	writes := make([]txnwait.WriteResult, len(q.Writes))
	for i, w := range q.Writes {
		r, ok := toWaitWrite[w]
		if !ok {
			return nil, invalidf("recover_txn: writes[%d] is %v, not a write status", i, w)
		}
		writes[i] = r
	}
	action, st, reason, err := txnwait.DecideRecovery(*txnState(q.Txn), txnState(rec), writes)
	if err != nil {
		return nil, Errorf(rspb.RangeError_FAILED_PRECONDITION, "recover_txn of txn %x: %v", q.Txn.Meta.Id, err)
	}
	if action == txnwait.RecoverStop {
		out := rec
		if out == nil {
			out = q.Txn // gone: finalized and removed; the status is unknown here
		}
		return &rspb.RecoverTxnResponse{Txn: out, Reason: action.String() + ": " + reason}, nil
	}
	out := applyState(rec, st)
	out.InFlightWrites = nil
	resolvedAll, err := finishRecord(a, env, out)
	if err != nil {
		return nil, err
	}
	return &rspb.RecoverTxnResponse{Txn: out, Reason: action.String() + ": " + reason, ResolvedAll: resolvedAll}, nil
}
