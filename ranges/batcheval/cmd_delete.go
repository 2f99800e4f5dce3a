package batcheval

import (
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Delete deletes one key (a tombstone at the commit timestamp, only if the
// key has a live value) and reports whether it had one.
func init() {
	register(spec[*rspb.DeleteRequest, *rspb.DeleteResponse]{
		name:    "delete",
		span:    func(q *rspb.DeleteRequest) Span { return pointSpan(q.Key) },
		payload: func(q *rspb.DeleteRequest) ([][]byte, [][]byte) { return [][]byte{q.Key}, nil },
		check:   func(q *rspb.DeleteRequest, l Limits) error { return l.checkKey("delete", q.Key) },
		toIn: func(q *rspb.DeleteRequest) *rspb.DeleteRequest {
			return &rspb.DeleteRequest{Key: keys.UserKey(q.Key)}
		},
		eval: func(a *Args, q *rspb.DeleteRequest) (*rspb.DeleteResponse, error) {
			_, found, err := a.getForWrite(q.Key)
			if err != nil {
				return nil, err
			}
			if found {
				if err := a.put(q.Key, nil, true); err != nil {
					return nil, err
				}
			}
			return &rspb.DeleteResponse{CommitTimestamp: TSToProto(a.Timestamp), Existed: found}, nil
		},
	})
}
