package allocator

import (
	"fmt"
	"math"
)

// Thresholds are the scorer's balance settings: how far from the mean a
// node may drift on replicas, leases and QPS before the scorer moves
// something, as CockroachDB's kv.allocator.range_rebalance_threshold,
// lease_rebalance_threshold and load-based rebalancing thresholds. The
// zero value means DefaultThresholds(); any other value is taken field by
// field as it is (start from DefaultThresholds() to change one field).
type Thresholds struct {
	// RangeThreshold and MinRangeRebalance: a node is overfull (underfull)
	// on replicas past mean ± max(RangeThreshold·mean, MinRangeRebalance)
	// (balance.go). MinRangeRebalance is at least 1: with a margin of at
	// least one replica every move narrows the spread by two, so moves
	// terminate and never go back and forth.
	RangeThreshold    float64
	MinRangeRebalance int
	// LeaseThreshold and MinLeaseRebalance: the same margin on leases;
	// MinLeaseRebalance is at least 1 for the same reason.
	LeaseThreshold    float64
	MinLeaseRebalance int
	// QPSThreshold and MinQPSAboveMean: a store serving more than
	// max((1+QPSThreshold)·mean, mean+MinQPSAboveMean) requests per
	// second is hot.
	QPSThreshold    float64
	MinQPSAboveMean float64
	// FollowWorkloadMargin: the hysteresis of follow-the-workload (0 to
	// 1, see workloadScore).
	FollowWorkloadMargin float64
}

// DefaultThresholds are CockroachDB's defaults (research anchors §1.3):
// BalanceThreshold, MinRangeRebalance, LeaseThreshold, MinLeaseRebalance,
// QPSThreshold, MinQPSAboveMean and FollowWorkloadMargin.
func DefaultThresholds() Thresholds {
	return Thresholds{
		RangeThreshold:       BalanceThreshold,
		MinRangeRebalance:    MinRangeRebalance,
		LeaseThreshold:       LeaseThreshold,
		MinLeaseRebalance:    MinLeaseRebalance,
		QPSThreshold:         QPSThreshold,
		MinQPSAboveMean:      MinQPSAboveMean,
		FollowWorkloadMargin: FollowWorkloadMargin,
	}
}

// orDefault is t, or DefaultThresholds() for the zero value.
func (t Thresholds) orDefault() Thresholds {
	if t == (Thresholds{}) {
		return DefaultThresholds()
	}
	return t
}

// Validate returns an ErrInvalid error naming the field if a threshold is
// negative, NaN or infinite, a minimum count is below 1, or
// FollowWorkloadMargin is above 1. The zero value is valid (the defaults).
func (t Thresholds) Validate() error {
	if t == (Thresholds{}) {
		return nil
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"RangeThreshold", t.RangeThreshold},
		{"LeaseThreshold", t.LeaseThreshold},
		{"QPSThreshold", t.QPSThreshold},
		{"MinQPSAboveMean", t.MinQPSAboveMean},
		{"FollowWorkloadMargin", t.FollowWorkloadMargin},
	} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return invalid("thresholds: %s %v: must be a finite number, 0 or more", f.name, f.v)
		}
	}
	if t.MinRangeRebalance < 1 {
		return invalid("thresholds: MinRangeRebalance %d: must be at least 1 (a smaller margin lets a replica move back and forth)", t.MinRangeRebalance)
	}
	if t.MinLeaseRebalance < 1 {
		return invalid("thresholds: MinLeaseRebalance %d: must be at least 1 (a smaller margin lets a lease move back and forth)", t.MinLeaseRebalance)
	}
	if t.FollowWorkloadMargin > 1 {
		return invalid("thresholds: FollowWorkloadMargin %v: must be at most 1 (a locality match is 0 to 1)", t.FollowWorkloadMargin)
	}
	return nil
}

// String renders the thresholds (the defaults for the zero value) as
// `range explain` prints them.
func (t Thresholds) String() string {
	t = t.orDefault()
	return fmt.Sprintf("range %g×mean min %d, lease %g×mean min %d, qps %g×mean min +%g, follow-the-workload margin %g",
		t.RangeThreshold, t.MinRangeRebalance, t.LeaseThreshold, t.MinLeaseRebalance, t.QPSThreshold, t.MinQPSAboveMean, t.FollowWorkloadMargin)
}

// IsDefault reports whether t means the defaults.
func (t Thresholds) IsDefault() bool { return t.orDefault() == DefaultThresholds() }
