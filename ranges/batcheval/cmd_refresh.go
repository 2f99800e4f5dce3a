package batcheval

import (
	"errors"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Refresh proves that a transaction's reads of a key (end_key empty) or a
// span, made at refresh_from, still hold at the batch timestamp, to which
// its read timestamp moves: no committed version in (refresh_from,
// timestamp] and no intent of another transaction at or below the
// timestamp (kv.MVCCCheckRefresh); its own intents never conflict. It is a
// read of the transaction at that timestamp, so the replica records the
// span in its timestamp cache there, as the transaction's, and no write
// can land under the refreshed reads afterwards. It needs the versions
// back to refresh_from (Since: refused below the GC threshold, where they
// may be gone). A failure is TXN_RETRY: the transaction restarts.
// Internal.
func init() {
	register(spec[*rspb.RefreshRequest, *rspb.RefreshResponse]{
		name:     "refresh",
		readOnly: true,
		internal: true,
		span: func(q *rspb.RefreshRequest) Span {
			if len(q.EndKey) == 0 {
				return pointSpan(q.Key)
			}
			return keySpan(q.Key, q.EndKey)
		},
		payload: func(q *rspb.RefreshRequest) ([][]byte, [][]byte) { return [][]byte{q.Key, q.EndKey}, nil },
		check:   checkRefresh,
		since:   func(q *rspb.RefreshRequest) *rspb.Timestamp { return q.RefreshFrom },
		toIn:    identityIn[*rspb.RefreshRequest],
		clip: func(q *rspb.RefreshRequest, start, end []byte) *rspb.RefreshRequest {
			return &rspb.RefreshRequest{Key: start, EndKey: end, RefreshFrom: q.RefreshFrom}
		},
		merge: func(*rspb.RefreshRequest, []*rspb.RefreshResponse) *rspb.RefreshResponse {
			return &rspb.RefreshResponse{}
		},
		eval: evalRefresh,
	})
}

func checkRefresh(q *rspb.RefreshRequest, l Limits) error {
	if err := l.checkInternalKey("refresh", q.Key); err != nil {
		return err
	}
	if len(q.EndKey) > 0 {
		if err := l.checkInternalKey("refresh: end_key", q.EndKey); err != nil {
			return err
		}
		if string(q.EndKey) <= string(q.Key) {
			return invalidf("refresh: end key %s is not after key %s", keys.Pretty(q.EndKey), keys.Pretty(q.Key))
		}
	}
	if from := TSFromProto(q.RefreshFrom); from.IsEmpty() || from.WallTime < 0 || from.Logical < 0 {
		return invalidf("refresh: refresh_from must be a valid, non-empty timestamp (got %s)", from)
	}
	return nil
}

func evalRefresh(a *Args, q *rspb.RefreshRequest) (*rspb.RefreshResponse, error) {
	if a.Txn == nil {
		return nil, invalidf("refresh must run in a transaction: the batch has none")
	}
	if err := checkTxnMetaNoAnchor("refresh", a.Txn.Meta); err != nil {
		return nil, err
	}
	if err := checkRefresh(q, Limits{MaxKeySize: 1 << 30}); err != nil {
		return nil, err
	}
	from := TSFromProto(q.RefreshFrom)
	if a.Timestamp.Less(from) {
		return nil, invalidf("refresh of txn %x: refresh_from %s is above the read timestamp %s", a.Txn.Meta.Id, from, a.Timestamp)
	}
	var end []byte // nil: a point
	if len(q.EndKey) > 0 {
		end = q.EndKey
	}
	err := kv.MVCCCheckRefresh(a.Reader, q.Key, end, from, a.Timestamp, a.intentTxn())
	var rc *kv.RefreshConflictError
	if errors.As(err, &rc) {
		if rc.Intent {
			return nil, Errorf(rspb.RangeError_TXN_RETRY, "refresh of txn %x failed: key %s has an intent of another transaction at %s, at or below %s",
				a.Txn.Meta.Id, keys.Pretty(rc.Key), rc.Timestamp, a.Timestamp)
		}
		return nil, Errorf(rspb.RangeError_TXN_RETRY, "refresh of txn %x failed: key %s was written at %s, after the read at %s (refreshing to %s)",
			a.Txn.Meta.Id, keys.Pretty(rc.Key), rc.Timestamp, from, a.Timestamp)
	}
	if err != nil {
		return nil, err
	}
	return &rspb.RefreshResponse{}, nil
}
