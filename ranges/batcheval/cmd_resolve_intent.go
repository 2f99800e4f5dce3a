package batcheval

import (
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// ResolveIntent resolves the intents of a transaction on one key (end_key
// empty) or in a span, once its status is known: COMMITTED rewrites those
// of its epoch as committed versions at its write timestamp, ABORTED
// removes them (an intent of an older epoch is removed either way).
// PENDING (a point only) moves a pushed transaction's intent up to its new
// write timestamp. A missing intent is fine: resolved before, or never
// written. A ranged resolution stops after maxResolvePerCommand intents
// with a resume key. Internal.
func init() {
	register(spec[*rspb.ResolveIntentRequest, *rspb.ResolveIntentResponse]{
		name:     "resolve_intent",
		internal: true,
		span: func(q *rspb.ResolveIntentRequest) Span {
			if len(q.EndKey) == 0 {
				return pointSpan(q.Key)
			}
			return keySpan(q.Key, q.EndKey)
		},
		payload: func(q *rspb.ResolveIntentRequest) ([][]byte, [][]byte) { return [][]byte{q.Key, q.EndKey}, nil },
		check:   checkResolveIntent,
		toIn:    identityIn[*rspb.ResolveIntentRequest],
		minTS:   func(q *rspb.ResolveIntentRequest) *rspb.Timestamp { return q.GetTxn().GetWriteTimestamp() },
		clip: func(q *rspb.ResolveIntentRequest, start, end []byte) *rspb.ResolveIntentRequest {
			return &rspb.ResolveIntentRequest{Key: start, EndKey: end, Txn: q.Txn, Status: q.Status}
		},
		merge: func(_ *rspb.ResolveIntentRequest, parts []*rspb.ResolveIntentResponse) *rspb.ResolveIntentResponse {
			out := &rspb.ResolveIntentResponse{}
			for _, p := range parts {
				out.Resolved += p.GetResolved()
				if out.ResumeKey == nil && len(p.GetResumeKey()) > 0 {
					out.ResumeKey = p.GetResumeKey()
				}
			}
			return out
		},
		eval: evalResolveIntent,
	})
}

// maxResolvePerCommand bounds the intents one ranged resolution resolves.
const maxResolvePerCommand = 1000

func checkResolveIntent(q *rspb.ResolveIntentRequest, l Limits) error {
	if err := l.checkInternalKey("resolve_intent", q.Key); err != nil {
		return err
	}
	if err := checkTxnMeta("resolve_intent", q.Txn); err != nil {
		return err
	}
	if len(q.EndKey) > 0 && string(q.EndKey) <= string(q.Key) {
		return invalidf("resolve_intent: end key %q is not after key %q", q.EndKey, q.Key)
	}
	if q.Status == rspb.TransactionStatus_TXN_STAGING || (q.Status == rspb.TransactionStatus_TXN_PENDING && len(q.EndKey) > 0) {
		return invalidf("resolve_intent: status %s cannot be resolved (a span needs a final status)", q.Status)
	}
	return nil
}

func evalResolveIntent(a *Args, q *rspb.ResolveIntentRequest) (*rspb.ResolveIntentResponse, error) {
	if a.Batch == nil {
		return nil, invalidf("resolve_intent must be evaluated as a write")
	}
	if err := checkResolveIntent(q, Limits{MaxKeySize: 1 << 30}); err != nil {
		return nil, err
	}
	id, epoch, ts := q.Txn.Id, q.Txn.Epoch, TSFromProto(q.Txn.WriteTimestamp)
	commit := q.Status == rspb.TransactionStatus_TXN_COMMITTED
	if q.Status == rspb.TransactionStatus_TXN_PENDING {
		found, err := kv.MVCCPushIntent(a.Batch, q.Key, id, ts)
		return &rspb.ResolveIntentResponse{Resolved: b2i(found)}, err
	}
	if len(q.EndKey) == 0 {
		found, err := kv.MVCCResolveIntent(a.Batch, q.Key, id, epoch, commit, ts)
		return &rspb.ResolveIntentResponse{Resolved: b2i(found)}, err
	}
	n, resume, err := kv.MVCCResolveIntentRange(a.Batch, q.Key, q.EndKey, id, epoch, commit, ts, maxResolvePerCommand)
	return &rspb.ResolveIntentResponse{Resolved: int64(n), ResumeKey: resume}, err
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
