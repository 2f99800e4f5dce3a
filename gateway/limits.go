package gateway

import (
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

// Limits bound what one request may carry: the same fields as
// ranges.Limits, which the replicas enforce, with the gateway's checks of
// client requests as methods. Violations are InvalidArgument errors naming
// the limit and the offending value.
type Limits ranges.Limits

// DefaultLimits are the limits of a default node (the replicas enforce
// the same ones: ranges.DefaultLimits).
var DefaultLimits = Limits(ranges.DefaultLimits)

// checkRequest validates one client request with its command's checks
// (batcheval: each request type declares them) and returns its key+value
// size.
func (l Limits) checkRequest(r *rspb.RequestUnion) (int, error) {
	if r.Value == nil {
		return 0, invalidf("batch: empty request")
	}
	c, err := batcheval.Lookup(r)
	if err != nil {
		return 0, ToStatus(err)
	}
	n, err := c.Check(r, batcheval.Limits(l))
	return n, ToStatus(err)
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
