package ranges

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// DefaultScanChunkBytes bounds one scan response from a replica; the gateway
// pages through larger results.
const DefaultScanChunkBytes = 1 << 20

// failf returns a deterministic, per-command evaluation failure (an
// *Error): the command applies nothing and reports it to its proposer.
func failf(code rspb.RangeError_Code, format string, args ...any) error {
	return errorf(code, format, args...)
}

// RequestSpan returns the key span a request touches: [key, key\x00) for
// point requests, [start, end) for span requests.
func RequestSpan(r *rspb.RequestUnion) (start, end []byte, point bool) {
	switch v := r.Value.(type) {
	case *rspb.RequestUnion_Get:
		return v.Get.Key, nil, true
	case *rspb.RequestUnion_Put:
		return v.Put.Key, nil, true
	case *rspb.RequestUnion_Delete:
		return v.Delete.Key, nil, true
	case *rspb.RequestUnion_ConditionalPut:
		return v.ConditionalPut.Key, nil, true
	case *rspb.RequestUnion_Increment:
		return v.Increment.Key, nil, true
	case *rspb.RequestUnion_Scan:
		return v.Scan.StartKey, v.Scan.EndKey, false
	case *rspb.RequestUnion_DeleteRange:
		return v.DeleteRange.StartKey, v.DeleteRange.EndKey, false
	}
	return nil, nil, true
}

// IsReadOnly reports whether every request only reads.
func IsReadOnly(reqs []*rspb.RequestUnion) bool {
	for _, r := range reqs {
		switch r.Value.(type) {
		case *rspb.RequestUnion_Get, *rspb.RequestUnion_Scan:
		default:
			return false
		}
	}
	return true
}

// checkSpans verifies that every request lies within the descriptor.
func checkSpans(desc *rspb.RangeDescriptor, reqs []*rspb.RequestUnion) error {
	for _, r := range reqs {
		if r.Value == nil {
			return failf(rspb.RangeError_INVALID_ARGUMENT, "empty request in batch")
		}
		s, e, point := RequestSpan(r)
		if len(s) == 0 {
			return failf(rspb.RangeError_INVALID_ARGUMENT, "empty key is not allowed")
		}
		ok := keys.InSpan(s, desc.StartKey, desc.EndKey)
		if !point {
			ok = keys.ContainsSpan(s, e, desc.StartKey, desc.EndKey)
		}
		if !ok {
			// Keys as the client wrote them (keys.Pretty), not internal.
			return &Error{E: &rspb.RangeError{
				Code:            rspb.RangeError_RANGE_KEY_MISMATCH,
				Message:         fmt.Sprintf("key %s is outside range r%d [%s, %s)", keys.Pretty(s), desc.RangeId, keys.Pretty(desc.StartKey), keys.Pretty(desc.EndKey)),
				RangeDescriptor: desc,
			}}
		}
	}
	return nil
}

// readBudget bounds the key/value bytes of one replica response
// (Limits.responseBudget; kvResponseOverhead charged per key).
type readBudget struct{ total, used int64 }

func newReadBudget(total int64) *readBudget {
	if total <= 0 {
		total = DefaultLimits.responseBudget()
	}
	return &readBudget{total: total}
}

func (b *readBudget) left() int64 { return b.total - b.used }

// chargeGet charges a point read; over the budget it is an error (a batch
// of point reads cannot be paged).
func (b *readBudget) chargeGet(res *rspb.GetResponse) error {
	b.used += int64(len(res.GetKv().GetKey())+len(res.GetKv().GetValue())) + kvResponseOverhead
	if b.used > b.total {
		return errResponseTooLarge(b.used, b.total)
	}
	return nil
}

// scan runs a scan within what is left of the budget (and at most chunk
// bytes if chunk > 0): once the budget is spent, a scan returns nothing and
// resumes where it starts, so the caller pages through the rest.
func (b *readBudget) scan(r kv.Reader, s *rspb.ScanRequest, ts kv.Timestamp, chunk int64) (*rspb.ScanResponse, error) {
	maxBytes := b.left()
	if chunk > 0 {
		maxBytes = min(maxBytes, chunk)
	}
	if maxBytes <= 0 {
		resume := s.StartKey
		if s.Reverse {
			resume = s.EndKey
		}
		if len(resume) > 0 {
			return &rspb.ScanResponse{ResumeKey: resume}, nil
		}
		maxBytes = 1 // (an open end cannot be a resume key: one key)
	}
	res, err := evalScan(r, s, ts, maxBytes)
	if err != nil {
		return nil, err
	}
	for _, x := range res.Kvs {
		b.used += int64(len(x.Key)+len(x.Value)) + kvResponseOverhead
	}
	b.used += int64(len(res.ResumeKey))
	return res, nil
}

// evalWrite applies the requests of one command to b at ts. Reads inside the
// command see the command's earlier writes; their results must fit the
// response budget (a write batch is atomic and cannot be paged). On error
// the caller discards b.
func evalWrite(b *kv.Batch, reqs []*rspb.RequestUnion, ts kv.Timestamp, budget int64) ([]*rspb.ResponseUnion, error) {
	out := make([]*rspb.ResponseUnion, 0, len(reqs))
	tsp := TSToProto(ts)
	rb := newReadBudget(budget)
	for _, r := range reqs {
		switch v := r.Value.(type) {
		case *rspb.RequestUnion_Get:
			// Reads in a write batch see the batch's earlier writes: they
			// read at the commit timestamp unless they ask for as_of.
			res, err := evalGet(b, v.Get, asOfOr(v.Get.AsOf, ts))
			if err != nil {
				return nil, err
			}
			if err := rb.chargeGet(res); err != nil {
				return nil, err
			}
			out = append(out, &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Get{Get: res}})
		case *rspb.RequestUnion_Scan:
			res, err := rb.scan(b, v.Scan, asOfOr(v.Scan.AsOf, ts), 0)
			if err != nil {
				return nil, err
			}
			if len(res.ResumeKey) > 0 && (v.Scan.Limit == 0 || int64(len(res.Kvs)) < v.Scan.Limit) {
				return nil, failf(rspb.RangeError_INVALID_ARGUMENT, "scan in a write batch returns more than max_batch_bytes of %d: scan outside the write batch, or with a limit", rb.total)
			}
			out = append(out, &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Scan{Scan: res}})
		case *rspb.RequestUnion_Put:
			if err := b.PutMVCC(v.Put.Key, ts, v.Put.Value); err != nil {
				return nil, err
			}
			out = append(out, &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Put{Put: &rspb.PutResponse{CommitTimestamp: tsp}}})
		case *rspb.RequestUnion_Delete:
			_, found, err := kv.MVCCGet(b, v.Delete.Key, kv.MaxTimestamp)
			if err != nil {
				return nil, err
			}
			if found {
				if err := b.DeleteMVCC(v.Delete.Key, ts); err != nil {
					return nil, err
				}
			}
			out = append(out, &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Delete{Delete: &rspb.DeleteResponse{CommitTimestamp: tsp, Existed: found}}})
		case *rspb.RequestUnion_ConditionalPut:
			c := v.ConditionalPut
			cur, found, err := kv.MVCCGet(b, c.Key, kv.MaxTimestamp)
			if err != nil {
				return nil, err
			}
			ok := (c.ExpectAbsent && !found) || (!c.ExpectAbsent && found && bytes.Equal(cur.Value, c.ExpectedValue))
			res := &rspb.ConditionalPutResponse{Succeeded: ok}
			if ok {
				if c.Delete {
					if found {
						if err := b.DeleteMVCC(c.Key, ts); err != nil {
							return nil, err
						}
					}
				} else if err := b.PutMVCC(c.Key, ts, c.Value); err != nil {
					return nil, err
				}
				res.CommitTimestamp = tsp
			} else {
				res.ActualExists = found
				res.ActualValue = cur.Value
			}
			out = append(out, &rspb.ResponseUnion{Value: &rspb.ResponseUnion_ConditionalPut{ConditionalPut: res}})
		case *rspb.RequestUnion_Increment:
			inc := v.Increment
			cur, found, err := kv.MVCCGet(b, inc.Key, kv.MaxTimestamp)
			if err != nil {
				return nil, err
			}
			var n int64
			if found {
				n, err = strconv.ParseInt(string(cur.Value), 10, 64)
				if err != nil {
					return nil, failf(rspb.RangeError_FAILED_PRECONDITION, "cannot increment key %s: its value %q is not a decimal integer", keys.Pretty(inc.Key), truncate(cur.Value))
				}
			}
			if (inc.Delta > 0 && n > math.MaxInt64-inc.Delta) || (inc.Delta < 0 && n < math.MinInt64-inc.Delta) {
				return nil, failf(rspb.RangeError_FAILED_PRECONDITION, "cannot increment key %s: %d + %d overflows int64", keys.Pretty(inc.Key), n, inc.Delta)
			}
			n += inc.Delta
			if err := b.PutMVCC(inc.Key, ts, []byte(strconv.FormatInt(n, 10))); err != nil {
				return nil, err
			}
			out = append(out, &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Increment{Increment: &rspb.IncrementResponse{NewValue: n, CommitTimestamp: tsp}}})
		case *rspb.RequestUnion_DeleteRange:
			deleted, _, err := kv.MVCCDeleteRange(b, v.DeleteRange.StartKey, v.DeleteRange.EndKey, ts, 0)
			if err != nil {
				return nil, err
			}
			out = append(out, &rspb.ResponseUnion{Value: &rspb.ResponseUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeResponse{Deleted: int64(len(deleted)), CommitTimestamp: tsp}}})
		default:
			return nil, failf(rspb.RangeError_INVALID_ARGUMENT, "unknown request type %T", r.Value)
		}
	}
	return out, nil
}

// evalRead serves read-only requests from r at readTS. The response stays
// within budget bytes (0 = the default limits): scans stop early with a
// resume key, point reads beyond it are an error.
func evalRead(r kv.Reader, reqs []*rspb.RequestUnion, readTS kv.Timestamp, budget int64) ([]*rspb.ResponseUnion, error) {
	out := make([]*rspb.ResponseUnion, 0, len(reqs))
	rb := newReadBudget(budget)
	for _, req := range reqs {
		switch v := req.Value.(type) {
		case *rspb.RequestUnion_Get:
			res, err := evalGet(r, v.Get, readTimestamp(req, readTS))
			if err != nil {
				return nil, err
			}
			if err := rb.chargeGet(res); err != nil {
				return nil, err
			}
			out = append(out, &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Get{Get: res}})
		case *rspb.RequestUnion_Scan:
			res, err := rb.scan(r, v.Scan, readTimestamp(req, readTS), DefaultScanChunkBytes)
			if err != nil {
				return nil, err
			}
			out = append(out, &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Scan{Scan: res}})
		default:
			return nil, failf(rspb.RangeError_INVALID_ARGUMENT, "request %T is not a read", req.Value)
		}
	}
	return out, nil
}

func asOfOr(asOf *rspb.Timestamp, def kv.Timestamp) kv.Timestamp {
	if asOf != nil {
		return TSFromProto(asOf)
	}
	return def
}

// readTimestamp is the timestamp a read request reads at: its own as_of, or
// the batch's read timestamp def. Non-read requests get def.
func readTimestamp(r *rspb.RequestUnion, def kv.Timestamp) kv.Timestamp {
	switch v := r.Value.(type) {
	case *rspb.RequestUnion_Get:
		return asOfOr(v.Get.AsOf, def)
	case *rspb.RequestUnion_Scan:
		return asOfOr(v.Scan.AsOf, def)
	}
	return def
}

func evalGet(r kv.Reader, g *rspb.GetRequest, ts kv.Timestamp) (*rspb.GetResponse, error) {
	x, found, err := kv.MVCCGet(r, g.Key, ts)
	if err != nil {
		return nil, err
	}
	if !found {
		return &rspb.GetResponse{}, nil
	}
	return &rspb.GetResponse{Found: true, Kv: kvToProto(x, false)}, nil
}

func evalScan(r kv.Reader, s *rspb.ScanRequest, ts kv.Timestamp, maxBytes int64) (*rspb.ScanResponse, error) {
	kvs, resume, err := kv.MVCCScan(r, s.StartKey, s.EndKey, ts, kv.ScanOptions{Limit: int(s.Limit), Reverse: s.Reverse, MaxBytes: maxBytes, KeyOverhead: kvResponseOverhead})
	if err != nil {
		return nil, err
	}
	res := &rspb.ScanResponse{ResumeKey: resume, Kvs: make([]*rspb.KeyValue, 0, len(kvs))}
	for _, x := range kvs {
		res.Kvs = append(res.Kvs, kvToProto(x, s.KeysOnly))
	}
	return res, nil
}

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return append(append([]byte(nil), b[:32]...), "…"...)
	}
	return b
}

// asRangeError extracts a replica's verdict (in evaluation: a
// deterministic evaluation error) from err.
func asRangeError(err error) (*rspb.RangeError, bool) {
	var ee *Error
	if errors.As(err, &ee) {
		return ee.E, true
	}
	return nil, false
}
