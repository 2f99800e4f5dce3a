package ranges

import (
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

// Limits bound what one request may carry (the gateway checks client
// requests against the same values; a replica checks every request it
// receives, so the Internal service cannot bypass them). The fields are
// batcheval.Limits'; which keys and values a request carries, each
// request type declares there (Command.Payload).
type Limits batcheval.Limits

// DefaultLimits are the limits of a default node.
var DefaultLimits = Limits(batcheval.DefaultLimits)

// internalKeyOverhead is what the store adds to a client key: the user
// prefix, and for meta records the meta prefix plus a successor byte.
const internalKeyOverhead = 16

// MaxMessageSize is the gRPC message size that every request within l and
// every response a replica builds under l fit in: a request carries at most
// max_batch_bytes of keys and values; a read response at most
// max_batch_bytes of keys, values and per-key overhead plus the one
// key/value that crosses the budget, plus resume keys (bounded by the
// request's keys); plus framing of up to max_batch_requests requests.
func MaxMessageSize(l Limits) int {
	return 2*l.MaxBatchBytes + l.MaxKeySize + l.MaxValueSize + l.MaxBatchRequests*256 + 1<<20
}

// responseBudget is the key+value bytes (with a per-key encoding
// overhead, batcheval.ReadBudget) one replica read response may carry.
func (l Limits) responseBudget() int64 { return int64(l.MaxBatchBytes) }

// check validates a batch arriving at a replica: request count, key and
// value sizes (keys may carry internalKeyOverhead bytes of internal
// prefixes), and total bytes. Violations are INVALID_ARGUMENT errors naming
// the limit.
func (l Limits) check(rangeID uint64, reqs []*rspb.RequestUnion) error {
	if len(reqs) > l.MaxBatchRequests {
		return failf(rspb.RangeError_INVALID_ARGUMENT, "r%d: batch of %d requests exceeds max_batch_requests of %d", rangeID, len(reqs), l.MaxBatchRequests)
	}
	maxKey := l.MaxKeySize + internalKeyOverhead
	total, slack := 0, 0
	for i, r := range reqs {
		var ks, vs [][]byte
		if c, err := batcheval.Lookup(r); err == nil { // (checkSpans refuses the others)
			ks, vs = c.Payload(r)
		}
		for _, k := range ks {
			if len(k) > maxKey {
				return failf(rspb.RangeError_INVALID_ARGUMENT, "r%d: request %d: key of %d bytes exceeds max_key_size of %d bytes (+%d of internal prefix)", rangeID, i, len(k), l.MaxKeySize, internalKeyOverhead)
			}
			total += len(k)
			slack += internalKeyOverhead
		}
		for _, v := range vs {
			if len(v) > l.MaxValueSize {
				return failf(rspb.RangeError_INVALID_ARGUMENT, "r%d: request %d: value of %d bytes exceeds max_value_size of %d bytes", rangeID, i, len(v), l.MaxValueSize)
			}
			total += len(v)
		}
		if total > l.MaxBatchBytes+slack {
			return failf(rspb.RangeError_INVALID_ARGUMENT, "r%d: batch: %d bytes of keys and values (at request %d) exceed max_batch_bytes of %d", rangeID, total, i, l.MaxBatchBytes)
		}
	}
	return nil
}
