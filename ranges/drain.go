package ranges

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Draining (a graceful stop): the store takes no new leases, and every
// lease it holds moves, with the range's Raft leadership, to another live
// replica before the node stops, so a planned restart costs no wait for
// lease expiration or an election.

// drainConcurrency bounds the ranges handed off at once.
const drainConcurrency = 8

// SetDraining makes the store refuse to take leases (acquisitions and
// transfers to it), or lifts that.
func (s *Store) SetDraining(draining bool) { s.draining.Store(draining) }

// Draining reports whether the store is draining.
func (s *Store) Draining() bool { return s.draining.Load() }

// DrainLeases moves every lease held here, and the Raft leadership of every
// local range led here, to other live, non-draining voters, until none is
// left or ctx ends. Each lease moves after its leadership, while the range
// is latched here, so no proposal is dropped by a leader in transfer. It
// returns the leases moved and those left (no target, or out of time).
func (s *Store) DrainLeases(ctx context.Context) (moved, left int) {
	var movedN atomic.Int64
	for {
		held, todo := s.drainWork(ctx)
		if len(todo) == 0 || ctx.Err() != nil {
			return int(movedN.Load()), held
		}
		sem := make(chan struct{}, drainConcurrency)
		var wg sync.WaitGroup
		progress := atomic.Bool{}
		for _, w := range todo {
			if w.targetNode == 0 {
				continue // no live, non-draining voter to take it (yet)
			}
			progress.Store(true)
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if w.holds {
					if err := w.r.transferLease(ctx, w.targetNode, true); err != nil {
						s.log.Debug("drain: lease transfer failed", "range", w.r.rangeID, "target", w.targetNode, "err", err)
						return
					}
					movedN.Add(1)
					return
				}
				w.r.moveLeader(ctx, w.targetReplica, 2*s.electionTimeout())
			}()
		}
		wg.Wait()
		if !progress.Load() {
			return int(movedN.Load()), held // nowhere to move the rest
		}
		select {
		case <-ctx.Done():
		case <-s.cfg.TimeSource.After(20 * time.Millisecond):
		}
	}
}

type drainItem struct {
	r                         *Replica
	holds                     bool // the lease (else: only Raft leadership)
	targetNode, targetReplica uint64
}

// drainWork lists the local ranges whose lease or Raft leadership is still
// here, each with the replica to hand it to (0 when none qualifies).
func (s *Store) drainWork(ctx context.Context) (held int, out []drainItem) {
	me := s.NodeID()
	now := s.cfg.Clock.Now()
	for _, r := range s.replicaList() {
		if r.sm.merged.Load() || r.desc() == nil {
			continue
		}
		l := r.lease()
		holds := l.NodeId == me && l.Sequence != 0 && s.leaseStatus(l, now) != leases.Expired
		leader, ok := s.leaderOf(r.rangeID)
		leads := ok && leader == r.replicaID
		if !holds && !leads {
			continue
		}
		if holds {
			held++
		}
		it := drainItem{r: r, holds: holds}
		// Leadership alone goes to the leaseholder when it qualifies.
		prefer := leader
		if !holds && l.NodeId != me {
			prefer = l.ReplicaId
		}
		it.targetNode, it.targetReplica = r.drainTarget(ctx, prefer)
		out = append(out, it)
	}
	return held, out
}

// drainTarget picks the voter (other than this node) to hand a range to:
// one whose node is live and not draining, the preferred replica (the Raft
// leader: certainly up to date) if it qualifies. Liveness comes from the
// cache; a node whose cached record is missing or expired is read afresh
// (a cache that missed refreshes under load must not make a live node look
// dead and leave the lease behind).
func (r *Replica) drainTarget(ctx context.Context, prefer uint64) (nodeID, replicaID uint64) {
	me, lv := r.store.NodeID(), r.store.live()
	if lv == nil {
		return 0, 0
	}
	for _, rep := range r.desc().Replicas {
		if rep.NodeId == me || rep.Type != rspb.ReplicaType_VOTER {
			continue
		}
		usable := func(rec *rspb.Liveness) bool {
			return leases.TakesLeases(rec) && r.store.cfg.Clock.Now().Less(TSFromProto(rec.Expiration))
		}
		rec := lv.Cached(rep.NodeId)
		if !usable(rec) {
			fresh, err := lv.Get(ctx, rep.NodeId, true)
			if err != nil {
				r.store.log.Debug("drain: reading a liveness record failed", "node", rep.NodeId, "err", err)
			}
			rec = fresh
		}
		if !usable(rec) {
			continue
		}
		if rep.ReplicaId == prefer || nodeID == 0 {
			nodeID, replicaID = rep.NodeId, rep.ReplicaId
		}
	}
	return nodeID, replicaID
}

// PeerApplied returns the applied index of a range's replica on another
// node (the node layer asks that node).
type PeerApplied func(ctx context.Context, nodeID, rangeID uint64) (uint64, error)

// SetPeerApplied connects the lookup used before a drain's leadership
// transfers.
func (s *Store) SetPeerApplied(f PeerApplied) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peerApplied = f
}

// waitPeerApplied waits (at most bound) until the replica on node has
// applied everything this one has. A Raft follower skips the campaign a
// leadership transfer asks of it while it has committed entries left to
// apply, and the transfer then stalls, dropping proposals, for an election
// timeout; with the range latched here no new entry comes meanwhile.
func (r *Replica) waitPeerApplied(ctx context.Context, node uint64, bound time.Duration) {
	r.store.mu.RLock()
	f := r.store.peerApplied
	r.store.mu.RUnlock()
	if f == nil {
		return
	}
	want := r.sm.applied.Load()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		if got, err := f(ctx, node, r.rangeID); err == nil && got >= want {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-r.store.cfg.TimeSource.After(2 * time.Millisecond):
		}
	}
}

// moveLeader asks Raft to hand the range's leadership to replica to, and
// waits (at most bound) until this replica no longer leads. Dragonboat's
// transfer is fire-and-forget and abandoned after an election timeout, so
// it is asked again (a request is ignored while one runs).
func (r *Replica) moveLeader(ctx context.Context, to uint64, bound time.Duration) bool {
	deadline := r.store.cfg.TimeSource.Now().Add(bound)
	var asked time.Time
	for {
		// Raft's own view, not the event-fed cache (events lag).
		if lid, _, ok, err := r.store.nh.GetLeaderID(r.rangeID); err == nil && ok && lid != r.replicaID {
			return true
		}
		if r.store.cfg.TimeSource.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		if r.store.cfg.TimeSource.Since(asked) > 100*time.Millisecond {
			asked = r.store.cfg.TimeSource.Now()
			_ = r.store.nh.RequestLeaderTransfer(r.rangeID, to) // ignored while one runs
		}
		select {
		case <-ctx.Done():
		case <-r.store.cfg.TimeSource.After(5 * time.Millisecond):
		}
	}
}
