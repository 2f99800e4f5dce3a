package ranges

import (
	"context"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// DefaultGCTTL is how long overwritten and deleted versions stay readable
// (as-of reads) before GC may remove them.
const DefaultGCTTL = 25 * time.Hour

// GC raises the range's GC threshold to threshold (a replicated command):
// versions shadowed at or below it are removed on every replica and reads at
// or below it are refused from then on. A lower threshold is a no-op. It runs
// at the leaseholder (elsewhere it fails with the holder's identity), so when
// it returns, reads served under the lease observe the new threshold. What a
// replica refuses is an *Error carrying its code.
func (s *Store) GC(ctx context.Context, rangeID uint64, threshold kv.Timestamp) error {
	r := s.replica(rangeID)
	if r == nil {
		return errorf(rspb.RangeError_RANGE_NOT_FOUND, "range r%d not found on node n%d", rangeID, s.NodeID())
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	if _, rerr := r.ensureLease(ctx); rerr != nil {
		return wrapRangeError(rerr)
	}
	cmd := &rspb.RaftCommand{Timestamp: TSToProto(s.cfg.Clock.Now()), Command: &rspb.RaftCommand_Gc{Gc: &rspb.GCCommand{Threshold: TSToProto(threshold)}}}
	res, rerr := r.propose(ctx, cmd)
	if rerr != nil {
		return wrapRangeError(rerr)
	}
	return wrapRangeError(res.Error)
}

// gcLoop periodically proposes GC, at now - GCTTL, for every range whose
// lease is held here (so each range is collected by one node).
func (s *Store) gcLoop(ctx context.Context, interval, ttl time.Duration) {
	s.every(interval, func() {
		now := s.cfg.Clock.Now()
		threshold := kv.Timestamp{WallTime: now.WallTime - int64(ttl)}
		for _, info := range s.Ranges() {
			if info.RangeDescriptor == nil || info.Lease.GetNodeId() != s.NodeID() || !info.LeaseValid {
				continue
			}
			ctx, cancel := context.WithTimeout(ctx, DefaultRequestTimeout)
			if err := s.GC(ctx, info.RangeDescriptor.RangeId, threshold); err != nil {
				s.log.Warn("gc failed", "range", info.RangeDescriptor.RangeId, "err", err)
			}
			cancel()
		}
	})
}

// every runs fn every interval until the store closes.
func (s *Store) every(interval time.Duration, fn func()) {
	t := s.cfg.TimeSource.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C():
			fn()
		}
	}
}
