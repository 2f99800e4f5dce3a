package batcheval

import (
	"math"
	"strconv"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Increment adds delta to a key holding a decimal int64 (absent = 0) and
// returns the new value. A value that is not a decimal integer, or a sum
// that overflows, fails the command (FAILED_PRECONDITION).
func init() {
	register(spec[*rspb.IncrementRequest, *rspb.IncrementResponse]{
		name:    "increment",
		span:    func(q *rspb.IncrementRequest) Span { return pointSpan(q.Key) },
		payload: func(q *rspb.IncrementRequest) ([][]byte, [][]byte) { return [][]byte{q.Key}, nil },
		check:   func(q *rspb.IncrementRequest, l Limits) error { return l.checkKey("increment", q.Key) },
		toIn: func(q *rspb.IncrementRequest) *rspb.IncrementRequest {
			return &rspb.IncrementRequest{Key: keys.UserKey(q.Key), Delta: q.Delta}
		},
		eval: evalIncrement,
	})
}

func evalIncrement(a *Args, q *rspb.IncrementRequest) (*rspb.IncrementResponse, error) {
	cur, found, err := a.getForWrite(q.Key)
	if err != nil {
		return nil, err
	}
	var n int64
	if found {
		n, err = strconv.ParseInt(string(cur.Value), 10, 64)
		if err != nil {
			return nil, Errorf(rspb.RangeError_FAILED_PRECONDITION, "cannot increment key %s: its value %q is not a decimal integer", keys.Pretty(q.Key), truncate(cur.Value))
		}
	}
	if (q.Delta > 0 && n > math.MaxInt64-q.Delta) || (q.Delta < 0 && n < math.MinInt64-q.Delta) {
		return nil, Errorf(rspb.RangeError_FAILED_PRECONDITION, "cannot increment key %s: %d + %d overflows int64", keys.Pretty(q.Key), n, q.Delta)
	}
	n += q.Delta
	if err := a.put(q.Key, []byte(strconv.FormatInt(n, 10)), false); err != nil {
		return nil, err
	}
	return &rspb.IncrementResponse{NewValue: n, CommitTimestamp: TSToProto(a.Timestamp)}, nil
}
