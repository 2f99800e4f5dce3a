package kv

import (
	"fmt"
	"math"
)

// Timestamp is a hybrid logical clock (HLC) timestamp. WallTime is in
// nanoseconds since the Unix epoch; Logical orders events within the same
// WallTime. The zero value is the empty timestamp. Timestamps are ordered by
// WallTime, then Logical.
type Timestamp struct {
	WallTime int64
	Logical  int32
}

// MaxTimestamp is the largest representable timestamp. Reading at
// MaxTimestamp observes the newest version of every key.
var MaxTimestamp = Timestamp{WallTime: math.MaxInt64, Logical: math.MaxInt32}

// Less reports whether t < o.
func (t Timestamp) Less(o Timestamp) bool {
	return t.WallTime < o.WallTime || (t.WallTime == o.WallTime && t.Logical < o.Logical)
}

// LessEq reports whether t <= o.
func (t Timestamp) LessEq(o Timestamp) bool {
	return t.WallTime < o.WallTime || (t.WallTime == o.WallTime && t.Logical <= o.Logical)
}

// Compare returns -1, 0 or +1 as t is less than, equal to or greater than o.
func (t Timestamp) Compare(o Timestamp) int {
	switch {
	case t.Less(o):
		return -1
	case o.Less(t):
		return 1
	default:
		return 0
	}
}

// IsEmpty reports whether t is the zero timestamp.
func (t Timestamp) IsEmpty() bool {
	return t == Timestamp{}
}

// Next returns the smallest timestamp strictly greater than t. Logical is
// incremented, rolling over into WallTime+1 (Logical 0) on overflow.
// MaxTimestamp.Next() saturates at MaxTimestamp.
func (t Timestamp) Next() Timestamp {
	if t == MaxTimestamp {
		return MaxTimestamp
	}
	if t.Logical == math.MaxInt32 {
		return Timestamp{WallTime: t.WallTime + 1}
	}
	return Timestamp{WallTime: t.WallTime, Logical: t.Logical + 1}
}

// Prev returns the largest timestamp strictly smaller than t. t must be
// non-empty; Prev of the empty timestamp returns the empty timestamp.
func (t Timestamp) Prev() Timestamp {
	if t.IsEmpty() {
		return Timestamp{}
	}
	if t.Logical > 0 {
		return Timestamp{WallTime: t.WallTime, Logical: t.Logical - 1}
	}
	return Timestamp{WallTime: t.WallTime - 1, Logical: math.MaxInt32}
}

// String formats t as "<wall seconds>.<wall nanos, 9 digits>,<logical>",
// e.g. "1700000000.000000123,4".
func (t Timestamp) String() string {
	sec, nsec := t.WallTime/1e9, t.WallTime%1e9
	if nsec < 0 {
		// Keep the nanosecond part non-negative for negative wall times.
		sec--
		nsec += 1e9
	}
	return fmt.Sprintf("%d.%09d,%d", sec, nsec, t.Logical)
}
