package gateway

import (
	"bytes"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// Limits bound what one request may carry: the same fields as
// ranges.Limits, which the replicas enforce, with the gateway's checks of
// client requests as methods. Violations are InvalidArgument errors naming
// the limit and the offending value.
type Limits ranges.Limits

// DefaultLimits are the limits of a default node (the replicas enforce
// the same ones: ranges.DefaultLimits).
var DefaultLimits = Limits(ranges.DefaultLimits)

func (l Limits) checkKey(what string, k []byte) error {
	if len(k) == 0 {
		return invalidf("%s: empty key is not allowed", what)
	}
	if len(k) > l.MaxKeySize {
		return invalidf("%s: key of %d bytes exceeds max_key_size of %d bytes", what, len(k), l.MaxKeySize)
	}
	return nil
}

func (l Limits) checkValue(what string, v []byte) error {
	if len(v) > l.MaxValueSize {
		return invalidf("%s: value of %d bytes exceeds max_value_size of %d bytes", what, len(v), l.MaxValueSize)
	}
	return nil
}

// checkSpan validates a client span; empty bounds mean open-ended.
func (l Limits) checkSpan(what string, start, end []byte, requireStart bool) error {
	if requireStart && len(start) == 0 {
		return invalidf("%s: empty start key is not allowed", what)
	}
	if len(start) > l.MaxKeySize {
		return invalidf("%s: start key of %d bytes exceeds max_key_size of %d bytes", what, len(start), l.MaxKeySize)
	}
	if len(end) > l.MaxKeySize {
		return invalidf("%s: end key of %d bytes exceeds max_key_size of %d bytes", what, len(end), l.MaxKeySize)
	}
	if len(end) > 0 && bytes.Compare(start, end) > 0 {
		return invalidf("%s: start key %q is after end key %q", what, start, end)
	}
	return nil
}

// checkRequest validates one client request and returns its key+value size.
func (l Limits) checkRequest(r *rspb.RequestUnion) (int, error) {
	switch v := r.Value.(type) {
	case *rspb.RequestUnion_Get:
		return len(v.Get.Key), l.checkKey("get", v.Get.Key)
	case *rspb.RequestUnion_Put:
		if err := l.checkKey("put", v.Put.Key); err != nil {
			return 0, err
		}
		return len(v.Put.Key) + len(v.Put.Value), l.checkValue("put", v.Put.Value)
	case *rspb.RequestUnion_Delete:
		return len(v.Delete.Key), l.checkKey("delete", v.Delete.Key)
	case *rspb.RequestUnion_ConditionalPut:
		c := v.ConditionalPut
		if err := l.checkKey("conditional_put", c.Key); err != nil {
			return 0, err
		}
		if err := l.checkValue("conditional_put", c.Value); err != nil {
			return 0, err
		}
		if c.ExpectAbsent && len(c.ExpectedValue) > 0 {
			return 0, invalidf("conditional_put: expect_absent and expected_value are mutually exclusive")
		}
		if c.Delete && len(c.Value) > 0 {
			return 0, invalidf("conditional_put: value must be empty with delete (a successful condition deletes the key)")
		}
		return len(c.Key) + len(c.Value) + len(c.ExpectedValue), l.checkValue("conditional_put expected", c.ExpectedValue)
	case *rspb.RequestUnion_Increment:
		return len(v.Increment.Key), l.checkKey("increment", v.Increment.Key)
	case *rspb.RequestUnion_Scan:
		if v.Scan.Limit < 0 {
			return 0, invalidf("scan: negative limit %d", v.Scan.Limit)
		}
		return len(v.Scan.StartKey) + len(v.Scan.EndKey), l.checkSpan("scan", v.Scan.StartKey, v.Scan.EndKey, false)
	case *rspb.RequestUnion_DeleteRange:
		d := v.DeleteRange
		if len(d.EndKey) == 0 {
			return 0, invalidf("delete_range: empty end key is not allowed")
		}
		return len(d.StartKey) + len(d.EndKey), l.checkSpan("delete_range", d.StartKey, d.EndKey, true)
	case nil:
		return 0, invalidf("batch: empty request")
	}
	return 0, invalidf("unknown request type %T", r.Value)
}

// checkBatch validates a whole batch.
func (l Limits) checkBatch(reqs []*rspb.RequestUnion) error {
	if len(reqs) == 0 {
		return invalidf("batch: no requests")
	}
	if len(reqs) > l.MaxBatchRequests {
		return invalidf("batch: %d requests exceed max_batch_requests of %d", len(reqs), l.MaxBatchRequests)
	}
	total := 0
	for i, r := range reqs {
		n, err := l.checkRequest(r)
		if err != nil {
			return err
		}
		total += n
		if total > l.MaxBatchBytes {
			return invalidf("batch: %d bytes of keys and values (at request %d) exceed max_batch_bytes of %d", total, i, l.MaxBatchBytes)
		}
	}
	return nil
}
