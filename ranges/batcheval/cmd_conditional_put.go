package batcheval

import (
	"bytes"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// ConditionalPut writes (or with delete, deletes) one key if its newest
// value equals expected_value, or if it has none with expect_absent; on
// failure it reports the actual value.
func init() {
	register(spec[*rspb.ConditionalPutRequest, *rspb.ConditionalPutResponse]{
		name: "conditional_put",
		span: func(q *rspb.ConditionalPutRequest) Span { return pointSpan(q.Key) },
		payload: func(q *rspb.ConditionalPutRequest) ([][]byte, [][]byte) {
			return [][]byte{q.Key}, [][]byte{q.Value, q.ExpectedValue}
		},
		check: checkConditionalPut,
		toIn: func(q *rspb.ConditionalPutRequest) *rspb.ConditionalPutRequest {
			return &rspb.ConditionalPutRequest{Key: keys.UserKey(q.Key), Value: q.Value, ExpectedValue: q.ExpectedValue, ExpectAbsent: q.ExpectAbsent, Delete: q.Delete}
		},
		eval: evalConditionalPut,
	})
}

func checkConditionalPut(q *rspb.ConditionalPutRequest, l Limits) error {
	if err := l.checkKey("conditional_put", q.Key); err != nil {
		return err
	}
	if err := l.checkValue("conditional_put", q.Value); err != nil {
		return err
	}
	if q.ExpectAbsent && len(q.ExpectedValue) > 0 {
		return invalidf("conditional_put: expect_absent and expected_value are mutually exclusive")
	}
	if q.Delete && len(q.Value) > 0 {
		return invalidf("conditional_put: value must be empty with delete (a successful condition deletes the key)")
	}
	return l.checkValue("conditional_put expected", q.ExpectedValue)
}

func evalConditionalPut(a *Args, q *rspb.ConditionalPutRequest) (*rspb.ConditionalPutResponse, error) {
	cur, found, err := a.getForWrite(q.Key)
	if err != nil {
		return nil, err
	}
	ok := (q.ExpectAbsent && !found) || (!q.ExpectAbsent && found && bytes.Equal(cur.Value, q.ExpectedValue))
	res := &rspb.ConditionalPutResponse{Succeeded: ok}
	if !ok {
		res.ActualExists = found
		res.ActualValue = cur.Value
		return res, nil
	}
	if q.Delete {
		if found {
			if err := a.put(q.Key, nil, true); err != nil {
				return nil, err
			}
		}
	} else if err := a.put(q.Key, q.Value, false); err != nil {
		return nil, err
	}
	res.CommitTimestamp = TSToProto(a.Timestamp)
	return res, nil
}
