package ranges

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// errNotStarted: the replica is not running here (merged away, or the
// store is closing).
var errNotStarted = errors.New("replica not running here")

// waitReady waits until the local replica of rangeID is registered and has
// loaded its state (Dragonboat opened it), or ctx ends.
func (s *Store) waitReady(ctx context.Context, rangeID uint64) error {
	for {
		if m := s.replica(rangeID); m != nil {
			select {
			case <-m.ready:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		s.startMu.Lock()
		gone := s.subsumed[rangeID]
		s.startMu.Unlock()
		if gone || s.stopping.Load() {
			return errNotStarted
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.cfg.TimeSource.After(5 * time.Millisecond):
		}
	}
}

// rightNeighbour returns the local replica of the range starting at
// desc.EndKey. A neighbour that meta says has a replica here, but that is
// not loaded here yet (just split off, still opening), is waited for within
// ctx; one without a replica here is a FAILED_PRECONDITION.
func (s *Store) rightNeighbour(ctx context.Context, snd Sender, desc *rspb.RangeDescriptor) (*stateMachine, *rspb.RangeError) {
	for {
		if rm := s.localByStart()[string(desc.EndKey)]; rm != nil {
			return rm, nil
		}
		recs, err := scanMeta(ctx, snd, keys.MetaKey(keys.Next(desc.EndKey)), keys.MetaSpanEnd)
		if err != nil {
			return nil, rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: looking up its right neighbour in meta: %v", desc.RangeId, err))
		}
		// Meta records are keyed by end key: the first one after
		// desc.EndKey covers it.
		var right *rspb.RangeDescriptor
		if len(recs) > 0 {
			right = recs[0].desc
		}
		if right == nil || !hasReplicaOn(right, s.NodeID()) {
			return nil, rangeErr(rspb.RangeError_FAILED_PRECONDITION, fmt.Sprintf("r%d has no right neighbour with a replica on n%d (merges need colocated replicas)", desc.RangeId, s.NodeID()))
		}
		select {
		case <-ctx.Done():
			return nil, rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: its right neighbour r%d is not loaded on n%d yet: %v", desc.RangeId, right.RangeId, s.NodeID(), ctx.Err()))
		case <-s.cfg.TimeSource.After(20 * time.Millisecond):
		}
	}
}

func hasReplicaOn(d *rspb.RangeDescriptor, nodeID uint64) bool {
	for _, r := range d.Replicas {
		if r.NodeId == nodeID {
			return true
		}
	}
	return false
}
