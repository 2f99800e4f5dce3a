package batcheval

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/txnwait"
)

// EndTxn commits, stages or aborts a transaction at its record (key = the
// anchor), as txnwait.DecideEndTxn decides: the record is written
// COMMITTED, STAGING or ABORTED (created if it has none and may still be),
// and a final transaction's intents in lock_spans that lie in this range
// are resolved in the same command; the coordinator resolves the others.
// A commit whose timestamp was pushed (the record's, or the timestamp
// cache's push marker) is TXN_RETRY with the pushed transaction: the
// coordinator refreshes its reads to the new timestamp and commits again,
// or restarts. A commit of an aborted transaction is TXN_ABORTED.
//
// Parallel commits: a commit with in_flight_writes (point writes sent in
// the same round, this command among them) writes a STAGING record
// instead. The transaction is then committed if and only if every one of
// those writes left its intent at or below the staging timestamp; its
// coordinator makes that explicit with a second EndTxn (STAGING →
// COMMITTED), or, if it died, recovery does (QueryIntent, RecoverTxn). A
// staging EndTxn whose batch was pushed above its timestamp (its own
// range's writes would land higher) is TXN_RETRY. A rollback that meets
// a STAGING record of its epoch writes nothing and answers
// needs_recovery: only recovery can tell whether it committed.
//
// A final record whose intents all lay in this range (resolved by the
// same command) is not kept; one whose intents are resolved elsewhere is
// removed by a later EndTxn with gc_record from its coordinator. Internal.
func init() {
	register(spec[*rspb.EndTxnRequest, *rspb.EndTxnResponse]{
		name:     "end_txn",
		internal: true,
		span:     func(q *rspb.EndTxnRequest) Span { return pointSpan(q.Key) },
		payload:  func(q *rspb.EndTxnRequest) ([][]byte, [][]byte) { return [][]byte{q.Key}, nil },
		check:    checkEndTxn,
		toIn:     identityIn[*rspb.EndTxnRequest],
		minTS:    func(q *rspb.EndTxnRequest) *rspb.Timestamp { return q.GetTxn().GetMeta().GetWriteTimestamp() },
		eval:     evalEndTxn,
	})
}

func checkEndTxn(q *rspb.EndTxnRequest, l Limits) error {
	if err := l.checkInternalKey("end_txn", q.Key); err != nil {
		return err
	}
	if err := checkTxnMeta("end_txn", q.GetTxn().GetMeta()); err != nil {
		return err
	}
	if !bytes.Equal(q.Key, q.Txn.Meta.Key) {
		return invalidf("end_txn: key %q is not the transaction's anchor %q", q.Key, q.Txn.Meta.Key)
	}
	if len(q.InFlightWrites) > 0 && (!q.Commit || q.GcRecord) {
		return invalidf("end_txn: in_flight_writes are only for a commit (a parallel commit's STAGING record), not a rollback or gc_record")
	}
	for i, sp := range q.InFlightWrites {
		if len(sp.Key) == 0 || len(sp.EndKey) > 0 {
			return invalidf("end_txn: in_flight_writes[%d] must be a single key (a point write), not empty or a span", i)
		}
	}
	for i, sp := range q.LockSpans {
		if len(sp.Key) == 0 || (len(sp.EndKey) > 0 && bytes.Compare(sp.EndKey, sp.Key) <= 0) {
			return invalidf("end_txn: lock_spans[%d] [%q, %q) is empty or inverted", i, sp.Key, sp.EndKey)
		}
	}
	return nil
}

func evalEndTxn(a *Args, q *rspb.EndTxnRequest) (*rspb.EndTxnResponse, error) {
	env, err := envOf(a, "end_txn")
	if err != nil {
		return nil, err
	}
	if err := checkEndTxn(q, Limits{MaxKeySize: 1 << 30}); err != nil {
		return nil, err
	}
	meta := q.Txn.Meta
	rec, err := readRecord(a.Batch, meta)
	if err != nil {
		return nil, err
	}
	if q.GcRecord {
		return gcRecord(a, env, q, rec)
	}
	kind := txnwait.EndAbort
	commitTS := TSFromProto(meta.WriteTimestamp)
	if q.Commit && q.CanForward {
		// Nothing to refresh: commit at whatever the transaction was
		// pushed to.
		for _, t := range []kv.Timestamp{a.Timestamp, env.PushedTo(meta), TSFromProto(rec.GetMeta().GetWriteTimestamp())} {
			if commitTS.Less(t) {
				commitTS = t
			}
		}
	}
	switch {
	case q.Commit && len(q.InFlightWrites) > 0:
		kind = txnwait.EndStage
		if ts := commitTS; ts.Less(a.Timestamp) {
			// This range's writes in the batch go above the staging
			// timestamp: no implicit commit at it.
			out := withTxnWriteTS(q.Txn, a.Timestamp)
			return nil, &Error{E: &rspb.RangeError{Code: rspb.RangeError_TXN_RETRY, Txn: out,
				Message: fmt.Sprintf("txn %s: the staging batch was pushed from %s to %s (the timestamp cache, the closed timestamp or a newer value): refresh to it, or restart",
					txnwait.TxnID(waitID(meta.Id)), ts, a.Timestamp)}}
		}
	case q.Commit:
		kind = txnwait.EndCommit
	}
	d, err := txnwait.DecideEndTxn(txnwait.EndTxnInput{
		Req: txnwait.EndTxnRequest{Txn: *txnState(q.Txn), Kind: kind, CommitTS: toWaitTS(TSToProto(commitTS)),
			Deadline: toWaitTS(q.Deadline), InFlightWrites: len(q.InFlightWrites)},
		Record: txnState(rec), RecordCheck: env.RecordCheck(meta), PushedTo: toWaitTS(TSToProto(env.PushedTo(meta))),
		Now: toWaitTS(TSToProto(env.Now())),
	})
	if err != nil {
		return nil, invalidf("end_txn: %v", err)
	}
	base := rec
	if base == nil {
		base = q.Txn
	}
	out := applyState(base, d.Txn)
	switch d.Action {
	case txnwait.EndWriteRecord:
	case txnwait.EndAlreadyCommitted:
		return &rspb.EndTxnResponse{Txn: out}, nil
	case txnwait.EndRefuse:
		return nil, &Error{E: &rspb.RangeError{Code: rspb.RangeError_TXN_ABORTED, Txn: out,
			Message: "txn " + txnwait.TxnID(waitID(meta.Id)).String() + ": " + d.Reason}}
	case txnwait.EndRecoverStaging:
		return &rspb.EndTxnResponse{Txn: rec, NeedsRecovery: true}, nil
	case txnwait.EndRetrySerializable, txnwait.EndDeadlineExceeded:
		return nil, &Error{E: &rspb.RangeError{Code: rspb.RangeError_TXN_RETRY, Txn: out,
			Message: "txn " + txnwait.TxnID(waitID(meta.Id)).String() + ": " + d.Action.String() + ": " + d.Reason}}
	default:
		return nil, Errorf(rspb.RangeError_FAILED_PRECONDITION, "end_txn of txn %x: %s: %s", meta.Id, d.Action, d.Reason)
	}
	out.LockSpans = mergeLockSpans(base.LockSpans, q.LockSpans)
	out.InFlightWrites = nil
	if out.Status == rspb.TransactionStatus_TXN_STAGING {
		out.InFlightWrites = q.InFlightWrites
	}
	resolvedAll, err := finishRecord(a, env, out)
	if err != nil {
		return nil, err
	}
	return &rspb.EndTxnResponse{Txn: out, ResolvedAll: resolvedAll}, nil
}

// finishRecord writes the record out. A final one (COMMITTED, ABORTED)
// first resolves its intents in this range, and is not kept if that was
// all of them (resolvedAll): a tombstone marker keeps a late heartbeat
// from creating it again, and pushers of a resolved transaction find
// nothing to push.
func finishRecord(a *Args, env TxnEnv, out *rspb.Transaction) (resolvedAll bool, err error) {
	final := out.Status == rspb.TransactionStatus_TXN_COMMITTED || out.Status == rspb.TransactionStatus_TXN_ABORTED
	start, end := env.RangeSpan()
	if final {
		if err := resolveLocal(a.Batch, out, start, end); err != nil {
			return false, err
		}
	}
	if final && allWithin(out.LockSpans, start, end) {
		if err := a.Batch.DeleteRaw(RecordKey(out.Meta.Key, out.Meta.Id)); err != nil {
			return false, err
		}
		env.Mark(TombstoneKey(out.Meta.Key, out.Meta.Id), env.Now())
		return true, nil
	}
	return false, writeRecord(a.Batch, out)
}

// withTxnWriteTS returns a copy of t writing at ts.
func withTxnWriteTS(t *rspb.Transaction, ts kv.Timestamp) *rspb.Transaction {
	out := proto.Clone(t).(*rspb.Transaction)
	out.Meta.WriteTimestamp = TSToProto(ts)
	return out
}

// gcRecord removes a final record once its coordinator resolved every
// intent (EndTxnRequest.gc_record).
func gcRecord(a *Args, env TxnEnv, q *rspb.EndTxnRequest, rec *rspb.Transaction) (*rspb.EndTxnResponse, error) {
	if rec == nil {
		return &rspb.EndTxnResponse{Txn: q.Txn}, nil // removed before
	}
	if rec.Status != rspb.TransactionStatus_TXN_COMMITTED && rec.Status != rspb.TransactionStatus_TXN_ABORTED {
		return nil, Errorf(rspb.RangeError_FAILED_PRECONDITION, "end_txn: gc_record of txn %x whose record is %s: only a final record can be removed", rec.Meta.Id, rec.Status)
	}
	if err := a.Batch.DeleteRaw(RecordKey(rec.Meta.Key, rec.Meta.Id)); err != nil {
		return nil, err
	}
	env.Mark(TombstoneKey(rec.Meta.Key, rec.Meta.Id), env.Now())
	return &rspb.EndTxnResponse{Txn: rec}, nil
}

// allWithin reports whether every span lies in [start, end).
func allWithin(spans []*rspb.Span, start, end []byte) bool {
	for _, sp := range spans {
		if bytes.Compare(sp.Key, start) < 0 || (len(end) > 0 && bytes.Compare(sp.Key, end) >= 0) {
			return false
		}
		if len(sp.EndKey) > 0 && len(end) > 0 && bytes.Compare(sp.EndKey, end) > 0 {
			return false
		}
	}
	return true
}

// mergeLockSpans returns a's spans followed by those of b not in a.
func mergeLockSpans(a, b []*rspb.Span) []*rspb.Span {
	out := append([]*rspb.Span(nil), a...)
	seen := map[string]bool{}
	for _, sp := range a {
		seen[string(sp.Key)+"\x00"+string(sp.EndKey)] = true
	}
	for _, sp := range b {
		if k := string(sp.Key) + "\x00" + string(sp.EndKey); !seen[k] {
			seen[k] = true
			out = append(out, sp)
		}
	}
	return out
}

// resolveLocal resolves the intents of the final transaction t in its lock
// spans, clipped to the range's span [start, end).
func resolveLocal(b *kv.Batch, t *rspb.Transaction, start, end []byte) error {
	commit := t.Status == rspb.TransactionStatus_TXN_COMMITTED
	ts := TSFromProto(t.Meta.WriteTimestamp)
	for _, sp := range t.LockSpans {
		if len(sp.EndKey) == 0 {
			if bytes.Compare(sp.Key, start) < 0 || (len(end) > 0 && bytes.Compare(sp.Key, end) >= 0) {
				continue
			}
			if _, err := kv.MVCCResolveIntent(b, sp.Key, t.Meta.Id, t.Meta.Epoch, commit, ts); err != nil {
				return err
			}
			continue
		}
		lo, hi := sp.Key, sp.EndKey
		if bytes.Compare(lo, start) < 0 {
			lo = start
		}
		if len(end) > 0 && bytes.Compare(hi, end) > 0 {
			hi = end
		}
		if bytes.Compare(lo, hi) >= 0 {
			continue
		}
		if _, _, err := kv.MVCCResolveIntentRange(b, lo, hi, t.Meta.Id, t.Meta.Epoch, commit, ts, 0); err != nil {
			return err
		}
	}
	return nil
}
