package ranges

import (
	"errors"
	"fmt"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

// Each request type (its span, read or write, limits and evaluation) is
// declared in one file of batcheval; the functions here apply the registry
// to a batch.

// failf returns a deterministic, per-command evaluation failure (an
// *Error): the command applies nothing and reports it to its proposer.
func failf(code rspb.RangeError_Code, format string, args ...any) error {
	return errorf(code, format, args...)
}

// RequestSpan returns the key span a request touches: [key, key\x00) for
// point requests, [start, end) for span requests.
func RequestSpan(r *rspb.RequestUnion) (start, end []byte, point bool) {
	c, err := batcheval.Lookup(r)
	if err != nil {
		return nil, nil, true
	}
	sp := c.Span(r)
	return sp.Key, sp.EndKey, sp.Point
}

// IsReadOnly reports whether every request only reads.
func IsReadOnly(reqs []*rspb.RequestUnion) bool {
	for _, r := range reqs {
		if c, err := batcheval.Lookup(r); err != nil || !c.ReadOnly() {
			return false
		}
	}
	return true
}

// checkSpans verifies that every request lies within the descriptor.
func checkSpans(desc *rspb.RangeDescriptor, reqs []*rspb.RequestUnion) error {
	for _, r := range reqs {
		c, err := batcheval.Lookup(r)
		if err != nil {
			return err
		}
		sp := c.Span(r)
		if len(sp.Key) == 0 {
			return failf(rspb.RangeError_INVALID_ARGUMENT, "empty key is not allowed")
		}
		ok := keys.InSpan(sp.Key, desc.StartKey, desc.EndKey)
		if !sp.Point {
			ok = keys.ContainsSpan(sp.Key, sp.EndKey, desc.StartKey, desc.EndKey)
		}
		if !ok {
			// Keys as the client wrote them (keys.Pretty), not internal.
			return &Error{E: &rspb.RangeError{
				Code:            rspb.RangeError_RANGE_KEY_MISMATCH,
				Message:         fmt.Sprintf("key %s is outside range r%d [%s, %s)", keys.Pretty(sp.Key), desc.RangeId, keys.Pretty(desc.StartKey), keys.Pretty(desc.EndKey)),
				RangeDescriptor: desc,
			}}
		}
	}
	return nil
}

// evalWrite applies the requests of one command to b at ts
// (batcheval.EvalWrite). Reads inside the command see the command's
// earlier writes; their results must fit the response budget (a write
// batch is atomic and cannot be paged). On error the caller discards b.
func evalWrite(b *kv.Batch, reqs []*rspb.RequestUnion, ts kv.Timestamp, budget int64) ([]*rspb.ResponseUnion, error) {
	return batcheval.EvalWrite(b, reqs, ts, budget)
}

// readTimestamp is the timestamp a read request reads at: its own as_of, or
// the batch's read timestamp def. Non-read requests get def.
func readTimestamp(r *rspb.RequestUnion, def kv.Timestamp) kv.Timestamp {
	return batcheval.ReadTimestamp(r, def)
}

// sinceTimestamp is the oldest timestamp whose versions a read needs
// (batcheval Command.Since: an incremental export's start_ts), or nil.
func sinceTimestamp(r *rspb.RequestUnion) *rspb.Timestamp {
	c, err := batcheval.Lookup(r)
	if err != nil {
		return nil
	}
	return c.Since(r)
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
