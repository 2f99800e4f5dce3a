package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// Parallel commits (CockroachDB's, after its txnCommitter): a
// transaction's last batch of point writes and its commit go out in one
// round. The EndTxn travels with the writes of the anchor's range and
// writes the record STAGING, listing every write of the batch as
// in-flight; the writes of the other ranges are sent at the same time. The
// transaction is committed the moment every in-flight write holds its
// intent at or below the staging timestamp, whether or not anyone knows it
// yet: so a 2-range transaction costs one round of consensus, like a
// 1-range batch. The coordinator answers the client then, and afterwards
// makes the record COMMITTED (finishLocked, commitStaged) and resolves the
// intents. If it dies before that, the first reader that meets an intent
// and wins the push against the STAGING record recovers it (recovery.go).

// parallelCommittable reports whether reqs can go out with a staging
// EndTxn: point writes whose responses carry nothing a recovered commit
// could not give back (Put, Delete), and at least one of them.
func parallelCommittable(reqs []*rspb.RequestUnion) bool {
	if len(reqs) == 0 {
		return false
	}
	for _, q := range reqs {
		switch q.Value.(type) {
		case *rspb.RequestUnion_Put, *rspb.RequestUnion_Delete:
		default:
			return false
		}
	}
	return true
}

// CommitWith runs reqs, the last requests of the transaction of handle,
// and commits it. Point writes (parallelCommittable) go out with the
// commit in one round; anything else runs as Execute, then Commit.
func (c *TxnCoordinator) CommitWith(ctx context.Context, handle []byte, reqs []*rspb.RequestUnion) ([]*rspb.ResponseUnion, kv.Timestamp, error) {
	if !parallelCommittable(reqs) {
		resps, err := c.Execute(ctx, handle, reqs)
		if err != nil {
			return nil, kv.Timestamp{}, err
		}
		ts, err := c.Commit(ctx, handle)
		return resps, ts, err
	}
	t, err := c.get(ctx, handle)
	if err != nil {
		return nil, kv.Timestamp{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return nil, kv.Timestamp{}, err
	}
	t.lastUsed = time.Now()
	_, writes, err := c.spansLocked(t, reqs)
	if err != nil {
		return nil, kv.Timestamp{}, err
	}
	if err := c.refreshLocked(ctx, t); err != nil {
		c.abortLocked(t, "refresh failed: "+err.Error())
		c.countRestart(err)
		return nil, kv.Timestamp{}, err
	}
	return c.stageLocked(ctx, t, reqs, writes)
}

// stageLocked sends reqs (point writes, spans writes) with a staging
// EndTxn (t.mu held) and settles the outcome.
func (c *TxnCoordinator) stageLocked(ctx context.Context, t *coordTxn, reqs []*rspb.RequestUnion, writes []*rspb.Span) ([]*rspb.ResponseUnion, kv.Timestamp, error) {
	c.anchorLocked(t, writes)
	t.addLockSpansLocked(writes)
	defer t.snapshotLocked()
	end := &rspb.EndTxnRequest{Key: t.txn.Meta.Key, Txn: proto.Clone(t.txn).(*rspb.Transaction), Commit: true,
		LockSpans: t.lockSpans, InFlightWrites: writes, CanForward: len(t.readSpans) == 0}
	all := append(append(make([]*rspb.RequestUnion, 0, len(reqs)+1), reqs...), &rspb.RequestUnion{Value: &rspb.RequestUnion_EndTxn{EndTxn: end}})
	ts := &txnSend{txn: proto.Clone(t.txn).(*rspb.Transaction), onWait: func(w *waitInfo) { t.waiting.Store(w) }, aborted: t.pushedOut.Load}
	out, err := c.router.Send(withTxnSend(ctx, ts), all)
	t.waiting.Store(nil)
	if w := ts.writeTS; ranges.TSFromProto(t.txn.Meta.WriteTimestamp).Less(w) {
		t.txn.Meta.WriteTimestamp = ranges.TSToProto(w)
	}
	if err != nil {
		return nil, kv.Timestamp{}, c.settleLocked(ctx, t, err)
	}
	resps, rec := out[:len(reqs)], out[len(reqs)].GetEndTxn().GetTxn()
	stagedAt := ranges.TSFromProto(rec.GetMeta().GetWriteTimestamp())
	switch {
	case rec.GetStatus() == rspb.TransactionStatus_TXN_COMMITTED:
		// A recovery already found every write (its coordinator looked
		// dead to a pusher): committed all the same.
		t.txn = rec
		c.finishLocked(t, txnCommitted, "")
		return resps, stagedAt, nil
	case rec.GetStatus() != rspb.TransactionStatus_TXN_STAGING:
		return nil, kv.Timestamp{}, c.settleLocked(ctx, t, txnErr(rspb.RangeError_UNKNOWN, "txn %x: a staging EndTxn answered status %s", t.txn.Meta.Id, rec.GetStatus()))
	case stagedAt.Less(ts.writeTS):
		// A write elsewhere was pushed above the staging timestamp: no
		// implicit commit. Every write is done, so an explicit commit at
		// the higher timestamp finishes it (the STAGING record lets it).
		c.log.Debug("parallel commit: a write was pushed above the staging timestamp; committing explicitly", "txn", fmt.Sprintf("%x", t.txn.Meta.Id),
			"staged", stagedAt, "written", ts.writeTS)
		t.txn.Meta.WriteTimestamp = ranges.TSToProto(ts.writeTS)
		commitTS, err := c.commitLocked(ctx, t)
		if err != nil {
			return nil, kv.Timestamp{}, err
		}
		return resps, commitTS, nil
	}
	if cp := c.cfg.CrashPoint; cp != nil {
		cp("txn-after-stage")
	}
	t.txn = rec
	c.finishLocked(t, txnCommitted, "")
	return resps, stagedAt, nil
}

// settleLocked decides the outcome of a staging round that failed with
// cause (t.mu held) before anything is answered: the round may have left
// a STAGING record, and writes that all landed would make it committed.
// A rollback settles it: it aborts a transaction without a STAGING record,
// and for one with it runs recovery, which prevents any missing write.
// Aborted: cause is returned (retryable as it was; the client may run the
// transaction again). Committed: AMBIGUOUS, since the writes' responses
// are lost. Unknown (the rollback failed): AMBIGUOUS.
func (c *TxnCoordinator) settleLocked(ctx context.Context, t *coordTxn, cause error) error {
	var re *RangeError
	if errors.As(cause, &re) && re.E.Code == rspb.RangeError_INVALID_ARGUMENT {
		// Refused before any evaluation: nothing was written.
		c.abortLocked(t, "a write failed: "+cause.Error())
		return cause
	}
	txn := proto.Clone(t.txn).(*rspb.Transaction)
	end := &rspb.EndTxnRequest{Key: txn.Meta.Key, Txn: txn, Commit: false, LockSpans: t.lockSpans}
	out, err := c.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_EndTxn{EndTxn: end}}})
	var rec *rspb.Transaction
	resolvedAll := false
	if err == nil {
		e := out[0].GetEndTxn()
		rec, resolvedAll = e.GetTxn(), e.GetResolvedAll()
		if e.GetNeedsRecovery() {
			res, rerr := c.router.recoverTxn(ctx, rec)
			if rerr != nil {
				err = rerr
			} else {
				rec, resolvedAll = res.GetTxn(), res.GetResolvedAll()
			}
		}
	}
	switch {
	case err == nil && rec.GetStatus() == rspb.TransactionStatus_TXN_ABORTED:
		c.finishLocked(t, txnAborted, "its parallel commit failed: "+cause.Error())
		if c.metrics != nil {
			c.metrics.aborts.WithLabelValues("conflict").Inc()
		}
		if !resolvedAll {
			spans := t.lockSpans
			c.async(func(ctx context.Context) { c.resolve(ctx, rec, spans) })
		}
		c.countRestart(cause)
		if re == nil || re.E.Code == rspb.RangeError_AMBIGUOUS {
			// The round's outcome was unknown, the transaction's is not:
			// aborted, so it may run again.
			return &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_TXN_ABORTED, Txn: rec,
				Message: fmt.Sprintf("txn %x: its parallel commit failed (%v) and it was rolled back", txn.Meta.Id, cause)}}
		}
		return cause
	case err == nil && rec.GetStatus() == rspb.TransactionStatus_TXN_COMMITTED:
		t.txn = rec
		if resolvedAll {
			t.lockSpans = nil // nothing left to resolve
		}
		c.finishLocked(t, txnCommitted, "") // resolves the rest
		return &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_AMBIGUOUS, Txn: rec,
			Message: fmt.Sprintf("txn %x committed at %s (recovery found every write of its parallel commit), but the round failed (%v): the writes' responses are lost",
				txn.Meta.Id, ranges.TSFromProto(rec.Meta.WriteTimestamp), cause)}}
	}
	c.finishLocked(t, txnUnknown, "")
	why := fmt.Sprintf("record %s", rec.GetStatus())
	if err != nil {
		why = err.Error()
	}
	return &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_AMBIGUOUS,
		Message: fmt.Sprintf("txn %x: its parallel commit failed (%v) and its outcome could not be settled (%s): it may or may not have committed", txn.Meta.Id, cause, why)}}
}
