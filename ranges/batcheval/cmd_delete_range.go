package batcheval

import (
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// DeleteRange deletes every live key of [start_key, end_key) and counts
// them; across ranges the counts add up and the latest commit timestamp
// is reported.
func init() {
	register(spec[*rspb.DeleteRangeRequest, *rspb.DeleteRangeResponse]{
		name:    "delete_range",
		span:    func(q *rspb.DeleteRangeRequest) Span { return keySpan(q.StartKey, q.EndKey) },
		payload: func(q *rspb.DeleteRangeRequest) ([][]byte, [][]byte) { return [][]byte{q.StartKey, q.EndKey}, nil },
		check: func(q *rspb.DeleteRangeRequest, l Limits) error {
			if len(q.EndKey) == 0 {
				return invalidf("delete_range: empty end key is not allowed")
			}
			return l.checkSpan("delete_range", q.StartKey, q.EndKey, true)
		},
		toIn: func(q *rspb.DeleteRangeRequest) *rspb.DeleteRangeRequest {
			st, en := keys.UserSpan(q.StartKey, q.EndKey)
			return &rspb.DeleteRangeRequest{StartKey: st, EndKey: en}
		},
		clip: func(_ *rspb.DeleteRangeRequest, start, end []byte) *rspb.DeleteRangeRequest {
			return &rspb.DeleteRangeRequest{StartKey: start, EndKey: end}
		},
		merge: func(_ *rspb.DeleteRangeRequest, parts []*rspb.DeleteRangeResponse) *rspb.DeleteRangeResponse {
			if len(parts) == 1 && parts[0] != nil {
				return parts[0]
			}
			out := &rspb.DeleteRangeResponse{}
			for _, p := range parts {
				out.Deleted += p.GetDeleted()
				if TSFromProto(out.CommitTimestamp).Less(TSFromProto(p.GetCommitTimestamp())) {
					out.CommitTimestamp = p.GetCommitTimestamp()
				}
			}
			return out
		},
		eval: func(a *Args, q *rspb.DeleteRangeRequest) (*rspb.DeleteRangeResponse, error) {
			var deleted [][]byte
			if a.Txn == nil {
				var err error
				if deleted, _, err = kv.MVCCDeleteRange(a.Batch, q.StartKey, q.EndKey, a.Timestamp, 0); err != nil {
					return nil, err
				}
			} else {
				// A transaction deletes the keys it sees (its own writes
				// included) with intents; any other transaction's intent in
				// the span conflicts.
				kvs, _, err := kv.MVCCScan(a.Batch, q.StartKey, q.EndKey, kv.MaxTimestamp, kv.ScanOptions{Txn: a.intentTxn()})
				if err != nil {
					return nil, err
				}
				for _, x := range kvs {
					if err := a.put(x.Key, nil, true); err != nil {
						return nil, err
					}
					deleted = append(deleted, x.Key)
				}
			}
			return &rspb.DeleteRangeResponse{Deleted: int64(len(deleted)), CommitTimestamp: TSToProto(a.Timestamp)}, nil
		},
	})
}
