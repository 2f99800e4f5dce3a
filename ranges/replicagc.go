package ranges

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Replica GC: a first, narrow piece of a replica GC queue. It destroys the
// local replicas that a replica change removed from their range, and the
// orphaned local replicas of ranges merged away while this node missed the
// merge (decideReplicaGC says when that is safe). Removed replicas are also
// collected at once when the leaseholder that removed one says so
// (gcRemovedReplica). It runs from the meta
// loop, on one scan of meta, right before the missing-replica repair, which
// an orphan would block.

// replicaGCGrace is how long a replica must have known no Raft leader
// before the GC may destroy it: two meta check intervals, and at least
// three election timeouts (an ordinary election).
func (s *Store) replicaGCGrace() time.Duration {
	return max(2*s.cfg.MetaCheckInterval, 3*s.electionTimeout())
}

// localGCView lists the local replicas the replica GC looks at (loaded,
// not merged away), as decideReplicaGC sees them, and whether every local
// replica has loaded its descriptor.
func (s *Store) localGCView() (others []replicaGCOther, local []*Replica, allLoaded bool) {
	allLoaded = true
	for _, r := range s.replicaList() {
		switch {
		case r.sm.merged.Load():
		case r.desc() == nil:
			allLoaded = false
		default:
			local = append(local, r)
		}
	}
	others = make([]replicaGCOther, len(local))
	for i, r := range local {
		others[i].Desc = r.desc()
		_, others[i].LeaderKnown = s.leaderOf(r.rangeID)
	}
	return others, local, allLoaded
}

// collectOrphans destroys the local replicas that recs (one scan of meta)
// show to be orphans or removed from their range, and returns their number.
func (s *Store) collectOrphans(ctx context.Context, recs []metaRecord) int {
	meta := make([]*rspb.RangeDescriptor, len(recs))
	for i, r := range recs {
		meta[i] = r.desc
	}
	f := replicaGCFacts{Meta: meta, Grace: s.replicaGCGrace(), NodeID: s.NodeID()}
	others, local, allLoaded := s.localGCView()
	f.AllLoaded = allLoaded
	now := s.cfg.TimeSource.Now()
	ids := make(map[uint64]bool, len(local))
	for _, r := range local {
		ids[r.rangeID] = true
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
		f.ReplicaID = r.replicaID
		f.NoLeaderFor = 0
		if f.LeaderKnown = others[i].LeaderKnown; f.LeaderKnown {
			s.noLeaderSeen.Delete(r.rangeID)
		} else {
			v, _ := s.noLeaderSeen.LoadOrStore(r.rangeID, now)
			f.NoLeaderFor = now.Sub(v.(time.Time))
		}
		action, reason := decideReplicaGC(f)
		if ctx.Err() != nil {
			break
		}
		switch action {
		case replicaGCDestroy:
			if s.destroyOrphan(ctx, r, f.Desc, reason) {
				n++
			}
		case replicaGCDestroyRemoved:
			if s.destroyRemoved(ctx, r, f.Desc, reason) {
				n++
			}
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

// destroyRemoved destroys a local replica that a replica change removed
// from its range, with its data. Unlike an orphan's range, the range lives
// on and may come back to this node later (under a new replica ID), so it
// is not marked subsumed: its state machine is marked merged (it applies
// and serves nothing from now on), its state, ReplicaRecord and data are
// deleted in one synced batch that also marks its replica ID removed here
// (so the missing-replica repair, reading a meta record from before the
// removal, never creates it again), its shard is stopped (Dragonboat may have
// stopped it already, on applying its removal) and Dragonboat's data for
// it removed.
func (s *Store) destroyRemoved(ctx context.Context, r *Replica, d *rspb.RangeDescriptor, reason string) bool {
	r.sm.applyMu.Lock()
	r.sm.merged.Store(true)
	r.sm.applyMu.Unlock()
	tombstone := func(b *kv.Batch) error {
		return b.PutRaw(replicaStateKey(r.rangeID, r.replicaID, suffixRemoved), []byte{1})
	}
	if err := s.deleteReplicaState(r.sm, d, tombstone); err != nil {
		s.log.Error("replica GC: deleting a removed replica", "range", r.rangeID, "err", err)
		return false
	}
	s.removeSubsumed(r.rangeID, r.sm)
	for i := 0; i < 50 && !s.stopping.Load(); i++ {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.nh.SyncRemoveData(rctx, r.rangeID, r.replicaID)
		cancel()
		if err == nil || errors.Is(err, dragonboat.ErrReplicaRemoved) {
			break
		}
		if !errors.Is(err, dragonboat.ErrShardNotStopped) || !s.sleep(ctx, 100*time.Millisecond) {
			s.log.Warn("replica GC: removing the Raft data of a removed replica", "range", r.rangeID, "err", err)
			break
		}
	}
	s.noLeaderSeen.Delete(r.rangeID)
	s.noLeaderSince.Delete(r.rangeID)
	s.leaders.Delete(r.rangeID)
	s.log.Info("replica GC: removed replica destroyed with its data", "range", r.rangeID, "replica", r.replicaID,
		"span", fmt.Sprintf("[%s, %s)", keys.Pretty(d.StartKey), keys.Pretty(d.EndKey)), "reason", reason)
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.replicasGC.Inc()
	}
	return true
}
