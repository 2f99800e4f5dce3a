package batcheval

import (
	"bytes"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// QueryIntent looks for the intent of a STAGING transaction on one of its
// in-flight writes: the first step of parallel-commit recovery. It is a
// read at the staging timestamp (as_of = txn.write_timestamp), so the
// leaseholder enters the key into its timestamp cache there under read
// latches before it reads: a write of the transaction still in flight
// either applied before (its intent is found) or is evaluated after, above
// the staging timestamp (it can no longer make the transaction implicitly
// committed at it). That is CockroachDB's QueryIntent with its
// prevention. An intent of an older epoch counts as missing. Internal.
func init() {
	register(spec[*rspb.QueryIntentRequest, *rspb.QueryIntentResponse]{
		name:     "query_intent",
		readOnly: true,
		internal: true,
		span:     func(q *rspb.QueryIntentRequest) Span { return pointSpan(q.Key) },
		payload:  func(q *rspb.QueryIntentRequest) ([][]byte, [][]byte) { return [][]byte{q.Key}, nil },
		check:    checkQueryIntent,
		asOf:     func(q *rspb.QueryIntentRequest) *rspb.Timestamp { return q.GetTxn().GetWriteTimestamp() },
		toIn:     identityIn[*rspb.QueryIntentRequest],
		eval:     evalQueryIntent,
	})
}

func checkQueryIntent(q *rspb.QueryIntentRequest, l Limits) error {
	if err := l.checkInternalKey("query_intent", q.Key); err != nil {
		return err
	}
	return checkTxnMeta("query_intent", q.Txn)
}

func evalQueryIntent(a *Args, q *rspb.QueryIntentRequest) (*rspb.QueryIntentResponse, error) {
	if err := checkQueryIntent(q, Limits{MaxKeySize: 1 << 30}); err != nil {
		return nil, err
	}
	intents, _, err := kv.MVCCFindIntents(a.Reader, q.Key, append(append([]byte(nil), q.Key...), 0), 1)
	if err != nil {
		return nil, err
	}
	return &rspb.QueryIntentResponse{Status: InFlightStatus(intents, q.Txn)}, nil
}

// InFlightStatus is what the intents found on an in-flight write's key
// (at most one: a key's newest version) say of the write of txn.
func InFlightStatus(intents []kv.Intent, txn *rspb.TxnMeta) rspb.InFlightWriteStatus {
	if len(intents) == 0 || !bytes.Equal(intents[0].Txn.ID, txn.Id) || intents[0].Txn.Epoch != txn.Epoch {
		return rspb.InFlightWriteStatus_WRITE_PREVENTED
	}
	if TSFromProto(txn.WriteTimestamp).Less(intents[0].Timestamp) {
		return rspb.InFlightWriteStatus_WRITE_FOUND_ABOVE
	}
	return rspb.InFlightWriteStatus_WRITE_FOUND
}
