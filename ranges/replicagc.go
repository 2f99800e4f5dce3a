package ranges

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Replica GC: a first, narrow piece of a replica GC queue. It destroys the
// orphaned local replicas of ranges merged away while this node missed the
// merge (decideReplicaGC says when that is safe). It runs from the meta
// loop, on one scan of meta, right before the missing-replica repair, which
// an orphan would block.

// replicaGCGrace is how long a replica must have known no Raft leader
// before the GC may destroy it: two meta check intervals, and at least
// three election timeouts (an ordinary election).
func (s *Store) replicaGCGrace() time.Duration {
	return max(2*s.cfg.MetaCheckInterval, 3*s.electionTimeout())
}

// collectOrphans destroys the local replicas that recs (one scan of meta)
// show to be orphans, and returns their number.
func (s *Store) collectOrphans(ctx context.Context, recs []metaRecord) int {
	meta := make([]*rspb.RangeDescriptor, len(recs))
	for i, r := range recs {
		meta[i] = r.desc
	}
	f := replicaGCFacts{Meta: meta, AllLoaded: true, Grace: s.replicaGCGrace()}
	var local []*Replica
	for _, r := range s.replicaList() {
		switch {
		case r.sm.merged.Load():
		case r.desc() == nil:
			f.AllLoaded = false
		default:
			local = append(local, r)
		}
	}
	now := s.cfg.TimeSource.Now()
	ids := make(map[uint64]bool, len(local))
	others := make([]replicaGCOther, len(local))
	for i, r := range local {
		ids[r.rangeID] = true
		others[i].Desc = r.desc()
		_, others[i].LeaderKnown = s.leaderOf(r.rangeID)
	}
	s.noLeaderSeen.Range(func(k, _ any) bool {
		if !ids[k.(uint64)] {
			s.noLeaderSeen.Delete(k)
		}
		return true
	})
	f.Others = others // decideReplicaGC skips the replica's own entry
	n := 0
	for i, r := range local {
		f.Desc = others[i].Desc
		f.NoLeaderFor = 0
		if f.LeaderKnown = others[i].LeaderKnown; f.LeaderKnown {
			s.noLeaderSeen.Delete(r.rangeID)
		} else {
			v, _ := s.noLeaderSeen.LoadOrStore(r.rangeID, now)
			f.NoLeaderFor = now.Sub(v.(time.Time))
		}
		action, reason := decideReplicaGC(f)
		if action != replicaGCDestroy || ctx.Err() != nil {
			continue
		}
		if s.destroyOrphan(ctx, r, f.Desc, reason) {
			n++
		}
	}
	return n
}

// destroyOrphan destroys an orphaned local replica with its data: it is
// marked subsumed (never started again, applies nothing more), its state,
// ReplicaRecord and data are deleted in one synced batch, its shard is
// stopped and Dragonboat's data for it removed (a range ID merged away is
// never used again).
func (s *Store) destroyOrphan(ctx context.Context, r *Replica, d *rspb.RangeDescriptor, reason string) bool {
	s.subsume(r.rangeID)
	if err := s.deleteReplicaState(r.sm, d); err != nil {
		s.log.Error("replica GC: deleting an orphaned replica", "range", r.rangeID, "err", err)
		return false
	}
	s.removeSubsumed(r.rangeID, r.sm)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := s.nh.SyncRemoveData(rctx, r.rangeID, r.replicaID)
	cancel()
	if err != nil && !errors.Is(err, dragonboat.ErrReplicaRemoved) {
		// Only Raft log space is left behind: without its record the
		// replica is never started again.
		s.log.Warn("replica GC: removing the Raft data of an orphaned replica", "range", r.rangeID, "err", err)
	}
	s.noLeaderSeen.Delete(r.rangeID)
	s.noLeaderSince.Delete(r.rangeID)
	s.leaders.Delete(r.rangeID)
	s.log.Info("replica GC: orphaned replica destroyed with its data", "range", r.rangeID,
		"span", fmt.Sprintf("[%s, %s)", keys.Pretty(d.StartKey), keys.Pretty(d.EndKey)), "reason", reason)
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.replicasGC.Inc()
	}
	return true
}
