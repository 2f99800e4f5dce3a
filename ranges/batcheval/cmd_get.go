package batcheval

import (
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Get reads one key, at its as_of or at the batch's timestamp (in a write
// batch: the commit timestamp, so it sees the batch's earlier writes).
func init() {
	register(spec[*rspb.GetRequest, *rspb.GetResponse]{
		name:     "get",
		readOnly: true,
		span:     func(q *rspb.GetRequest) Span { return pointSpan(q.Key) },
		payload:  func(q *rspb.GetRequest) ([][]byte, [][]byte) { return [][]byte{q.Key}, nil },
		check:    func(q *rspb.GetRequest, l Limits) error { return l.checkKey("get", q.Key) },
		asOf:     func(q *rspb.GetRequest) *rspb.Timestamp { return q.AsOf },
		toIn: func(q *rspb.GetRequest) *rspb.GetRequest {
			return &rspb.GetRequest{Key: keys.UserKey(q.Key), AsOf: q.AsOf}
		},
		toCli: func(p *rspb.GetResponse) { stripUserPrefix(p.Kv) },
		eval:  evalGet,
	})
}

// evalGet reads the key; its key and value count against the response
// budget, and a point read beyond it is an error (it cannot be paged).
func evalGet(a *Args, q *rspb.GetRequest) (*rspb.GetResponse, error) {
	x, found, err := a.get(a.Reader, q.Key, a.readTS(q.AsOf))
	if err != nil {
		return nil, err
	}
	res := &rspb.GetResponse{}
	if found {
		res = &rspb.GetResponse{Found: true, Kv: kvToProto(x, false)}
	}
	if err := a.Budget.chargeGet(res); err != nil {
		return nil, err
	}
	return res, nil
}

// stripUserPrefix maps an internal key back to the client's, in place.
func stripUserPrefix(x *rspb.KeyValue) {
	if x != nil {
		if k, err := keys.ClientKey(x.Key); err == nil {
			x.Key = k
		}
	}
}
