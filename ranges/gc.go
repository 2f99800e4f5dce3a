package ranges

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
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

// gcLoop periodically proposes GC for every range whose lease is held here
// (so each range is collected by one node), at the threshold decideGC
// picks: now - GCTTL, kept below every protected timestamp (backups'
// protection records, read once per pass) overlapping the range.
func (s *Store) gcLoop(ctx context.Context, interval, ttl time.Duration) {
	s.every(interval, func() {
		var prots []gcProtection
		protErr := ""
		if snd := s.getSender(); snd == nil {
			protErr = "no sender yet"
		} else {
			rctx, cancel := context.WithTimeout(ctx, DefaultRequestTimeout)
			recs, err := ReadProtections(rctx, snd)
			cancel()
			if err != nil {
				protErr = err.Error()
			}
			for _, r := range recs {
				prots = append(prots, gcProtection{ID: r.Id, TS: TSFromProto(r.Timestamp), Start: r.StartKey, End: r.EndKey})
			}
		}
		now := s.cfg.Clock.Now()
		for _, info := range s.Ranges() {
			d := info.RangeDescriptor
			if d == nil || info.Lease.GetNodeId() != s.NodeID() || !info.LeaseValid {
				continue
			}
			r := s.replica(d.RangeId)
			if r == nil {
				continue
			}
			r.sm.mu.RLock()
			cur := r.sm.gcThreshold
			r.sm.mu.RUnlock()
			action, threshold, reason := decideGC(gcFacts{Now: now, TTL: ttl, Current: cur, Start: d.StartKey, End: d.EndKey,
				Protections: prots, ProtectionsErr: protErr})
			if action != gcRaise {
				s.log.Debug("gc skipped", "range", d.RangeId, "reason", reason)
				continue
			}
			ctx, cancel := context.WithTimeout(ctx, DefaultRequestTimeout)
			if err := s.GC(ctx, d.RangeId, threshold); err != nil {
				s.log.Warn("gc failed", "range", d.RangeId, "err", err)
			}
			cancel()
		}
	})
}

// ReadProtections reads every protection record (protected timestamps of
// backups, keys.ProtectionPrefix) through snd.
func ReadProtections(ctx context.Context, snd leases.KV) ([]*rspb.ProtectionRecord, error) {
	resps, err := snd.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{
		StartKey: keys.ProtectionPrefix, EndKey: keys.PrefixEnd(keys.ProtectionPrefix)}}}})
	if err != nil {
		return nil, err
	}
	var out []*rspb.ProtectionRecord
	for _, x := range resps[0].GetScan().GetKvs() {
		rec := &rspb.ProtectionRecord{}
		if err := proto.Unmarshal(x.Value, rec); err != nil {
			return nil, fmt.Errorf("protection record %s: %w", keys.Pretty(x.Key), err)
		}
		out = append(out, rec)
	}
	return out, nil
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
