package ranges

import (
	"github.com/rangestore/rangestore/proto/rspb"
)

// Limits bound what one request may carry (the gateway checks client
// requests against the same values; a replica checks every request it
// receives, so the Internal service cannot bypass them).
type Limits struct {
	MaxKeySize       int // bytes of a client key
	MaxValueSize     int // bytes of a value
	MaxBatchRequests int // requests in one Batch
	MaxBatchBytes    int // keys + values of one Batch or write
}

// DefaultLimits are the limits of a default node.
var DefaultLimits = Limits{
	MaxKeySize:       4 << 10,
	MaxValueSize:     1 << 20,
	MaxBatchRequests: 1000,
	MaxBatchBytes:    4 << 20,
}

// internalKeyOverhead is what the store adds to a client key: the user
// prefix, and for meta records the meta prefix plus a successor byte.
const internalKeyOverhead = 16

// kvResponseOverhead is charged per key/value in a read response's budget
// for its encoding (timestamp, field tags and lengths), so many tiny keys
// cannot blow a response up either.
const kvResponseOverhead = 64

// MaxMessageSize is the gRPC message size that every request within l and
// every response a replica builds under l fit in: a request carries at most
// max_batch_bytes of keys and values; a read response at most
// max_batch_bytes of keys, values and per-key overhead plus the one
// key/value that crosses the budget, plus resume keys (bounded by the
// request's keys); plus framing of up to max_batch_requests requests.
func MaxMessageSize(l Limits) int {
	return 2*l.MaxBatchBytes + l.MaxKeySize + l.MaxValueSize + l.MaxBatchRequests*256 + 1<<20
}

// responseBudget is the key+value bytes (with kvResponseOverhead per
// key) one replica read response may carry.
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
		switch v := r.Value.(type) {
		case *rspb.RequestUnion_Get:
			ks = [][]byte{v.Get.Key}
		case *rspb.RequestUnion_Put:
			ks, vs = [][]byte{v.Put.Key}, [][]byte{v.Put.Value}
		case *rspb.RequestUnion_Delete:
			ks = [][]byte{v.Delete.Key}
		case *rspb.RequestUnion_ConditionalPut:
			ks, vs = [][]byte{v.ConditionalPut.Key}, [][]byte{v.ConditionalPut.Value, v.ConditionalPut.ExpectedValue}
		case *rspb.RequestUnion_Increment:
			ks = [][]byte{v.Increment.Key}
		case *rspb.RequestUnion_Scan:
			ks = [][]byte{v.Scan.StartKey, v.Scan.EndKey}
		case *rspb.RequestUnion_DeleteRange:
			ks = [][]byte{v.DeleteRange.StartKey, v.DeleteRange.EndKey}
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

// errResponseTooLarge is the error for point reads whose values together
// exceed the response budget.
func errResponseTooLarge(n, budget int64) error {
	return failf(rspb.RangeError_INVALID_ARGUMENT, "read response of at least %d bytes exceeds max_batch_bytes of %d: read fewer keys per batch", n, budget)
}
