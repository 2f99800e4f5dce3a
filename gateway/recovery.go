package gateway

import (
	"context"
	"fmt"
	"strings"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Parallel-commit recovery, as the router runs it for a pusher that won
// against a STAGING record (its coordinator is gone, or lost to a higher
// priority) and as a coordinator runs it when its own staging round
// failed:
//
//  1. QueryIntent on every in-flight write of the STAGING record, as a
//     read at the staging timestamp: each is found, found above (pushed),
//     or missing, and a missing one is prevented (the key enters the
//     timestamp cache at the staging timestamp, so the write can only land
//     above it now);
//  2. RecoverTxn at the record: all found → COMMITTED (it was implicitly
//     committed, and its coordinator may have acknowledged it); any other
//     → ABORTED; a record that moved on meanwhile (finalized, or
//     restaged) is left alone (txnwait.DecideRecovery);
//  3. a final record's intents are resolved, in its range by the
//     RecoverTxn itself, elsewhere by the recoverer, and the record is
//     removed (EndTxn gc_record).
//
// Recovery never guesses: a transaction whose writes all landed commits,
// whoever decides; one with a write missing can no longer commit at its
// staging timestamp.

// recoverTxn runs steps 1 and 2 for staging (a STAGING record as a push or
// rollback returned it) and returns the RecoverTxn's answer.
func (r *Router) recoverTxn(ctx context.Context, staging *rspb.Transaction) (*rspb.RecoverTxnResponse, error) {
	reqs := make([]*rspb.RequestUnion, len(staging.InFlightWrites))
	for i, w := range staging.InFlightWrites {
		reqs[i] = &rspb.RequestUnion{Value: &rspb.RequestUnion_QueryIntent{QueryIntent: &rspb.QueryIntentRequest{Key: w.Key, Txn: staging.Meta}}}
	}
	writes := make([]rspb.InFlightWriteStatus, len(reqs))
	if len(reqs) > 0 {
		out, err := r.Send(ctx, reqs)
		if err != nil {
			return nil, fmt.Errorf("recovering txn %x: querying its %d in-flight writes: %w", staging.Meta.Id, len(reqs), err)
		}
		for i, o := range out {
			writes[i] = o.GetQueryIntent().GetStatus()
		}
	}
	rec := &rspb.RecoverTxnRequest{Key: staging.Meta.Key, Txn: staging, Writes: writes}
	out, err := r.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_RecoverTxn{RecoverTxn: rec}}})
	if err != nil {
		return nil, fmt.Errorf("recovering txn %x: %w", staging.Meta.Id, err)
	}
	res := out[0].GetRecoverTxn()
	if r.metrics != nil {
		outcome := "stop"
		switch {
		case strings.HasPrefix(res.GetReason(), "COMMIT"):
			outcome = "commit"
		case strings.HasPrefix(res.GetReason(), "ABORT"):
			outcome = "abort"
		}
		r.metrics.recoveries.WithLabelValues(outcome).Inc()
	}
	r.log.Info("txn recovery", "txn", fmt.Sprintf("%x", staging.Meta.Id), "in_flight_writes", len(writes), "outcome", res.GetReason())
	return res, nil
}

// isFinal reports whether t is COMMITTED or ABORTED.
func isFinal(t *rspb.Transaction) bool {
	s := t.GetStatus()
	return s == rspb.TransactionStatus_TXN_COMMITTED || s == rspb.TransactionStatus_TXN_ABORTED
}

// resolveTxn resolves the intents of the final txn in spans (those already
// resolved, say in its anchor's range by its EndTxn, are simply not found
// again), then removes its record. A failure is returned after the first
// span that could not be resolved: the record stays, so readers and
// pushers still learn the outcome from it.
func (r *Router) resolveTxn(ctx context.Context, txn *rspb.Transaction, spans []*rspb.Span) error {
	for _, s := range spans {
		key := s.Key
		for {
			q := &rspb.ResolveIntentRequest{Key: key, EndKey: s.EndKey, Txn: txn.Meta, Status: txn.Status}
			out, err := r.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_ResolveIntent{ResolveIntent: q}}})
			if err != nil {
				return fmt.Errorf("resolving the intents of txn %x on %s: %w", txn.Meta.Id, keys.Pretty(s.Key), err)
			}
			resume := out[0].GetResolveIntent().GetResumeKey()
			if len(s.EndKey) == 0 || len(resume) == 0 {
				break
			}
			key = resume
		}
	}
	gc := &rspb.EndTxnRequest{Key: txn.Meta.Key, Txn: txn, Commit: txn.Status == rspb.TransactionStatus_TXN_COMMITTED, GcRecord: true}
	if _, err := r.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_EndTxn{EndTxn: gc}}}); err != nil {
		return fmt.Errorf("removing the record of txn %x: %w", txn.Meta.Id, err)
	}
	return nil
}
