package batcheval

import (
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Put writes one key at the commit timestamp.
func init() {
	register(spec[*rspb.PutRequest, *rspb.PutResponse]{
		name:    "put",
		span:    func(q *rspb.PutRequest) Span { return pointSpan(q.Key) },
		payload: func(q *rspb.PutRequest) ([][]byte, [][]byte) { return [][]byte{q.Key}, [][]byte{q.Value} },
		check: func(q *rspb.PutRequest, l Limits) error {
			if err := l.checkKey("put", q.Key); err != nil {
				return err
			}
			return l.checkValue("put", q.Value)
		},
		toIn: func(q *rspb.PutRequest) *rspb.PutRequest {
			return &rspb.PutRequest{Key: keys.UserKey(q.Key), Value: q.Value}
		},
		eval: func(a *Args, q *rspb.PutRequest) (*rspb.PutResponse, error) {
			if err := a.put(q.Key, q.Value, false); err != nil {
				return nil, err
			}
			return &rspb.PutResponse{CommitTimestamp: TSToProto(a.Timestamp)}, nil
		},
	})
}
