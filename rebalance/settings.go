package rebalance

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/rangestore/rangestore/allocator"
)

// The replication factor cluster setting: stored in the system range at
// keys.ReplicationFactorKey as a decimal number, written by init
// (--replicas, 3 by default) and by the SetReplicationFactor Admin RPC
// (CLI: cluster set-replicas), read by every replicate queue pass.
const (
	// DefaultReplicationFactor is the setting of a cluster initialized
	// without --replicas, and of a cluster from before the setting (no
	// value stored).
	DefaultReplicationFactor = 3
	// MaxReplicationFactor bounds the setting: more voters slow every
	// write's quorum and a typo (31 for 3) would otherwise be accepted.
	MaxReplicationFactor = 9
)

// ErrBadFactor marks a replication factor refused by ValidateFactor.
var ErrBadFactor = errors.New("bad replication factor")

// ValidateFactor checks a replication factor setting: odd (an even
// number of voters tolerates no more failures than one fewer), at least 1
// and at most MaxReplicationFactor. The error names the problem.
func ValidateFactor(f int) error {
	if f > MaxReplicationFactor {
		return fmt.Errorf("%w %d: at most %d", ErrBadFactor, f, MaxReplicationFactor)
	}
	if err := allocator.ValidateFactor(f); err != nil {
		return fmt.Errorf("%w %d: must be odd and at least 1 (1, 3, 5, 7 or 9)", ErrBadFactor, f)
	}
	return nil
}

// EncodeFactor is the stored form of a setting.
func EncodeFactor(f int) []byte { return []byte(strconv.Itoa(f)) }

// DecodeFactor reads a stored setting; found=false (nothing stored) reads
// as DefaultReplicationFactor.
func DecodeFactor(v []byte, found bool) (int, error) {
	if !found {
		return DefaultReplicationFactor, nil
	}
	f, err := strconv.Atoi(string(v))
	if err != nil {
		return 0, fmt.Errorf("%w: the setting holds %q, not a number", ErrBadFactor, v)
	}
	if err := ValidateFactor(f); err != nil {
		return 0, fmt.Errorf("the replication factor setting holds %d: %w", f, err)
	}
	return f, nil
}
