package batcheval

import "bytes"

// Limits bound what one request may carry. The gateway checks client
// requests against them (Command.Check), a replica every request it
// receives (ranges.Limits), so the Internal service cannot bypass them.
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

// checkKey validates a client key of request type what.
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
