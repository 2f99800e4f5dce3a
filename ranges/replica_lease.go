package ranges

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lni/dragonboat/v4/raftio"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// DefaultExpirationLeaseDuration is the length of expiration-based leases
// (meta and system ranges); holders extend them once less than half is left.
const DefaultExpirationLeaseDuration = 1500 * time.Millisecond

// LivenessSource is what the store needs of node liveness.
type LivenessSource interface {
	Self() *rspb.Liveness
	Get(ctx context.Context, nodeID uint64, fresh bool) (*rspb.Liveness, error)
	Cached(nodeID uint64) *rspb.Liveness
	IncrementEpoch(ctx context.Context, nodeID uint64) (*rspb.Liveness, error)
}

func (s *Store) electionTimeout() time.Duration {
	return time.Duration(s.cfg.ElectionRTT*s.cfg.RTTMillisecond) * time.Millisecond
}

// leaseApplied runs (on the apply goroutine) when a new lease applies
// locally.
func (r *Replica) leaseApplied(l *rspb.Lease) {
	if l == nil {
		return
	}
	// A lease start beyond physical + max offset (never proposed by a node
	// whose clock is bounded) leaves the clock alone; the clock reports it.
	_ = r.store.cfg.Clock.Update(TSFromProto(l.Start))
	if l.NodeId == r.store.NodeID() {
		r.tscache.setLowWater(TSFromProto(l.Start))
	}
}

// usesExpirationLease: ranges below the user span (meta, system — which
// node liveness itself depends on) use expiration leases.
func usesExpirationLease(d *rspb.RangeDescriptor) bool {
	return bytes.Compare(d.StartKey, keys.UserPrefix) < 0
}

// leaseStatus judges the range's current lease at now.
func (s *Store) leaseStatus(l *rspb.Lease, now kv.Timestamp) leases.State {
	var holder *rspb.Liveness
	if lv := s.live(); leases.IsEpoch(l) && lv != nil {
		if l.NodeId == s.NodeID() {
			holder = lv.Self()
		} else {
			holder = lv.Cached(l.NodeId)
		}
	}
	return leases.Status(l, now, holder, s.cfg.Clock.MaxOffset())
}

// voterIn reports whether desc names replica id as a voter.
func voterIn(desc *rspb.RangeDescriptor, id uint64) bool {
	for _, rep := range desc.GetReplicas() {
		if rep.ReplicaId == id {
			return rep.Type == rspb.ReplicaType_VOTER
		}
	}
	return false
}

// drainHint names a node to send a draining replica's requests to: the
// Raft leader if it is elsewhere, else another voter.
func (r *Replica) drainHint() uint64 {
	me := r.store.NodeID()
	if n := r.leaderNode(); n != 0 && n != me {
		return n
	}
	for _, rep := range r.desc().GetReplicas() {
		if rep.NodeId != me && rep.Type == rspb.ReplicaType_VOTER {
			return rep.NodeId
		}
	}
	return 0
}

// noLeasesWhy says why the node of rec takes no leases (leases.TakesLeases).
func noLeasesWhy(rec *rspb.Liveness) string {
	switch {
	case rec == nil:
		return "it has no liveness record"
	case rec.Membership == rspb.LivenessMembership_LIVENESS_DECOMMISSIONING:
		return "it is decommissioning"
	case rec.Membership == rspb.LivenessMembership_LIVENESS_DECOMMISSIONED:
		return "it is decommissioned"
	}
	return "it is draining"
}

func notLeaseholder(rangeID, hint uint64, format string, args ...any) *rspb.RangeError {
	return &rspb.RangeError{Code: rspb.RangeError_NOT_LEASEHOLDER, LeaderNodeId: hint,
		Message: fmt.Sprintf("r%d: ", rangeID) + fmt.Sprintf(format, args...)}
}

// ensureLease returns the lease under which this replica may serve now, or
// the error telling the caller where to go. It acquires the lease when
// nobody holds a valid one.
func (r *Replica) ensureLease(ctx context.Context) (*rspb.Lease, *rspb.RangeError) {
	me := r.store.NodeID()
	for attempt := 0; attempt < 3; attempt++ {
		transferring := r.transferring.Load()
		done := r.transferDone.Load()
		l := r.lease()
		in := leaseInput{NodeID: me, ReplicaID: r.replicaID, Lease: l, StartTS: r.store.startTS,
			Transferring: transferring, TransferWaitable: done != nil, Draining: r.store.draining.Load()}
		if in.Transferring == 0 {
			in.State = r.store.leaseStatus(l, r.store.cfg.Clock.Now())
		}
		if in.Draining {
			in.DrainHint = r.drainHint()
		}
		switch d := decideLease(in); d.Action {
		case leaseServe:
			return l, nil
		case leaseWaitTransfer:
			// Wait for its outcome: answered at once, the caller would
			// bounce between the two nodes, backing off, until the new
			// holder has the lease.
			select {
			case <-*done:
				continue
			case <-ctx.Done():
			}
			return nil, notLeaseholder(r.rangeID, d.Hint, "lease is being transferred to n%d", d.Hint)
		case leaseRedirect:
			return nil, notLeaseholder(r.rangeID, d.Hint, "%s", d.Reason)
		case leaseLearnLiveness:
			// Learn the holder's liveness; if it is live, redirect.
			lv := r.store.live()
			if lv == nil {
				return nil, rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: node liveness is not running on n%d", r.rangeID, me))
			}
			if _, err := lv.Get(ctx, l.NodeId, false); err != nil {
				return nil, rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: reading liveness of n%d: %v", r.rangeID, l.NodeId, err))
			}
		case leaseAcquire:
			if err := r.acquireLease(ctx, l); err != nil {
				return nil, err
			}
		}
	}
	return nil, rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: could not obtain a valid lease", r.rangeID))
}

// ownLeaseUsable: a lease this node acquired before its current process
// started is never served under. After a crash the replica may not yet have
// re-applied committed entries (or may have lost unsynced applied state) and
// the latches and timestamp cache of the old process are gone; re-acquiring
// through Raft makes the new lease visible only after every earlier entry has
// applied locally.
func (s *Store) ownLeaseUsable(l *rspb.Lease) bool {
	return !TSFromProto(l.Start).Less(s.startTS)
}

// acquireLease proposes a new lease for this replica, replacing prev. For an
// epoch lease of another node, that node's record must have expired: its
// epoch is incremented first, which ends all its leases.
func (r *Replica) acquireLease(ctx context.Context, prev *rspb.Lease) *rspb.RangeError {
	r.acquireMu.Lock()
	defer r.acquireMu.Unlock()
	if cur := r.lease(); !proto.Equal(cur, prev) {
		return nil // someone (maybe us) changed it meanwhile; re-evaluate
	}
	desc := r.desc()
	if desc == nil {
		return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d has no data on n%d yet", r.rangeID, r.store.NodeID()))
	}
	if !voterIn(desc, r.replicaID) {
		// A non-voter (a read replica's, a zone's, an addition not yet
		// promoted) never holds the lease: Raft could not elect it.
		return notLeaseholder(r.rangeID, r.drainHint(), "replica %d on n%d is not a voter: it never holds the lease", r.replicaID, r.store.NodeID())
	}
	lv := r.store.live()
	if lv == nil {
		return rangeErr(rspb.RangeError_UNAVAILABLE, "node liveness is not running")
	}
	me := r.store.NodeID()
	if leases.IsEpoch(prev) && prev.NodeId != me {
		rec, err := lv.Get(ctx, prev.NodeId, true)
		if err != nil {
			return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: reading liveness of n%d: %v", r.rangeID, prev.NodeId, err))
		}
		switch d := decideTakeover(prev, rec, r.store.cfg.Clock.Now()); d.Action {
		case leaseRedirect:
			return notLeaseholder(r.rangeID, d.Hint, "%s", d.Reason)
		case leaseIncrementEpoch:
			r.store.log.Debug("lease takeover: incrementing the holder's epoch", "range", r.rangeID, "holder", prev.NodeId, "epoch", prev.Epoch)
			if _, err := lv.IncrementEpoch(ctx, prev.NodeId); err != nil {
				return notLeaseholder(r.rangeID, prev.NodeId, "cannot take over from n%d: %v", prev.NodeId, err)
			}
		}
	}
	now := r.store.cfg.Clock.Now()
	next := &rspb.Lease{ReplicaId: r.replicaID, NodeId: me, Start: TSToProto(now), Sequence: prev.Sequence + 1}
	if usesExpirationLease(desc) {
		if prev.Sequence != 0 && prev.NodeId != me && !TSFromProto(prev.Expiration).Less(now) {
			return notLeaseholder(r.rangeID, prev.NodeId, "expiration lease of n%d not expired yet", prev.NodeId)
		}
		next.Expiration = TSToProto(kv.Timestamp{WallTime: now.WallTime + int64(r.store.cfg.ExpirationLeaseDuration)})
	} else {
		self := lv.Self()
		if self == nil || !now.Less(TSFromProto(self.Expiration)) {
			return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: n%d cannot take a lease: its liveness record is not live", r.rangeID, me))
		}
		next.Epoch = self.Epoch
	}
	// For failover timelines (--log-level debug): proposed and applied.
	r.store.log.Debug("lease proposed", "range", r.rangeID, "sequence", next.Sequence, "prev_holder", prev.NodeId, "epoch", next.Epoch)
	if rerr := r.proposeLease(ctx, next, prev); rerr != nil {
		r.store.log.Debug("lease proposal failed", "range", r.rangeID, "sequence", next.Sequence, "code", rerr.Code.String(), "reason", rerr.Message)
		return rerr
	}
	r.store.log.Debug("lease acquired", "range", r.rangeID, "sequence", next.Sequence, "prev_holder", prev.NodeId)
	return nil
}

func (r *Replica) proposeLease(ctx context.Context, next, prev *rspb.Lease) *rspb.RangeError {
	cmd := &rspb.RaftCommand{Timestamp: next.Start, Command: &rspb.RaftCommand_RequestLease{RequestLease: &rspb.RequestLeaseCommand{Lease: next, Prev: prev}}}
	res, rerr := r.propose(ctx, cmd)
	if rerr != nil {
		return rerr
	}
	if res.Error != nil && !proto.Equal(r.lease(), next) {
		// (A re-proposal of a request that already applied is rejected
		// because the lease changed — to the one we asked for.)
		return res.Error
	}
	r.store.metricsLease(next, prev)
	return nil
}

// TransferLease moves the lease of a range held here to the replica on
// target. This replica stops serving first; the new lease starts at this
// node's clock, above everything it served. What a replica refuses is an
// *Error carrying its code.
func (s *Store) TransferLease(ctx context.Context, rangeID, target uint64) error {
	r := s.replica(rangeID)
	if r == nil {
		return errorf(rspb.RangeError_RANGE_NOT_FOUND, "range r%d not found on node n%d", rangeID, s.NodeID())
	}
	return r.transferLease(ctx, target, false)
}

// transferLease is TransferLease; with lead, the range's Raft leadership
// moves to target first (bounded): after the lease, it would move while
// the new leaseholder proposes, and a leader in transfer silently drops
// proposals forwarded to it, stalling them until re-proposed.
func (r *Replica) transferLease(ctx context.Context, target uint64, lead bool) error {
	lease, rerr := r.ensureLease(ctx)
	if rerr != nil {
		return wrapRangeError(rerr)
	}
	if target == r.store.NodeID() {
		return nil
	}
	if r.store.ReadReplicaNode(target) {
		return errorf(rspb.RangeError_FAILED_PRECONDITION, "n%d is a read-replica node: it never holds a lease", target)
	}
	// A draining node takes no lease; for an epoch lease the target must be
	// live (its current epoch goes into the lease).
	lv := r.store.live()
	if lv == nil {
		return errorf(rspb.RangeError_UNAVAILABLE, "node liveness is not running on n%d", r.store.NodeID())
	}
	rec, err := lv.Get(ctx, target, true)
	if err != nil {
		return err
	}
	if !leases.TakesLeases(rec) {
		return errorf(rspb.RangeError_FAILED_PRECONDITION, "n%d takes no leases (%s)", target, noLeasesWhy(rec))
	}
	var targetReplica uint64
	for _, rep := range r.desc().Replicas {
		if rep.NodeId == target && rep.Type == rspb.ReplicaType_VOTER {
			targetReplica = rep.ReplicaId
		}
	}
	if targetReplica == 0 {
		return errorf(rspb.RangeError_FAILED_PRECONDITION, "r%d has no voter on n%d", r.rangeID, target)
	}
	r.acquireMu.Lock()
	defer r.acquireMu.Unlock()
	if !r.transferring.CompareAndSwap(0, target) {
		return errorf(rspb.RangeError_UNAVAILABLE, "r%d: a lease transfer is already in progress", r.rangeID)
	}
	done := make(chan struct{})
	r.transferDone.Store(&done)
	var l *latch
	finish := func() {
		if l != nil {
			r.latches.release(l)
		}
		r.transferring.Store(0)
		r.transferDone.Store(nil)
		close(done)
	}
	settling := false
	defer func() {
		if !settling {
			finish()
		}
	}()
	// Wait for in-flight requests: take a write latch over the whole range.
	desc := r.desc()
	if l, err = r.latches.acquire(ctx, []span{{start: desc.StartKey, end: desc.EndKey}}, true); err != nil {
		return err
	}
	if lead {
		// Leadership first, while nothing of the range is in flight here.
		r.waitPeerApplied(ctx, target, 500*time.Millisecond)
		r.moveLeader(ctx, targetReplica, 2*r.store.electionTimeout())
	}
	if cur := r.lease(); !proto.Equal(cur, lease) {
		return errorf(rspb.RangeError_NOT_LEASEHOLDER, "r%d: the lease changed during the transfer", r.rangeID)
	}
	now := r.store.cfg.Clock.Now()
	next := &rspb.Lease{ReplicaId: targetReplica, NodeId: target, Start: TSToProto(now), Sequence: lease.Sequence + 1}
	if usesExpirationLease(desc) {
		next.Expiration = TSToProto(kv.Timestamp{WallTime: now.WallTime + int64(r.store.cfg.ExpirationLeaseDuration)})
	} else {
		if rec == nil || !now.Less(TSFromProto(rec.Expiration)) {
			return errorf(rspb.RangeError_UNAVAILABLE, "r%d: n%d is not live", r.rangeID, target)
		}
		next.Epoch = rec.Epoch
	}
	cmd := &rspb.RaftCommand{Timestamp: next.Start, Command: &rspb.RaftCommand_RequestLease{RequestLease: &rspb.RequestLeaseCommand{Lease: next, Prev: lease}}}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return err
	}
	res, rerr, inFlight := r.proposeData(ctx, data, true)
	if rerr != nil {
		if inFlight {
			// The target may get the lease at any later time, starting
			// at next.Start: serving here meanwhile could answer a read
			// the new holder has already overwritten. Keep refusing
			// until the transfer applied or can no longer apply.
			settling = true
			r.settle(data, func() bool { return r.lease().Sequence != lease.Sequence || r.sm.closed.Load() }, finish)
		}
		return wrapRangeError(rerr)
	}
	if res.Error != nil && !proto.Equal(r.lease(), next) {
		return wrapRangeError(res.Error)
	}
	r.store.metricsLease(next, lease)
	return nil
}

// leaseLoop keeps leases and Raft leadership together and leases fresh:
// a Raft leader without a valid lease anywhere acquires it; a Raft leader
// that is not the leaseholder hands leadership to the leaseholder; a holder
// of an expiration lease extends it once less than half remains.
//
// Expiration leases (meta, system) are tended every interval; epoch leases,
// which need nothing while their holder is live, every fifth interval, so
// thousands of idle ranges cost little.
func (s *Store) leaseLoop(interval time.Duration) {
	round := 0
	s.every(interval, func() {
		if s.NodeID() == 0 || s.live() == nil {
			return
		}
		round++
		for _, r := range s.replicaList() {
			r.watchFrozen()
			// Epoch leases (or none yet): every fifth round.
			if l := r.lease(); round%5 != 0 && (l.Sequence == 0 || leases.IsEpoch(l)) {
				continue
			}
			r.tendLease()
		}
	})
}

func (r *Replica) tendLease() {
	if r.sm.merged.Load() || r.desc() == nil || r.store.stopping.Load() {
		return
	}
	leaderID, ok := r.store.leaderOf(r.rangeID)
	l := r.lease()
	now := r.store.cfg.Clock.Now()
	state := r.store.leaseStatus(l, now)
	if leaderID != r.replicaID && (!ok || state == leases.Expired || state == leases.None || !r.replicaLive(leaderID)) {
		// No known leader, nobody may serve, or the leader's node is dead:
		// a quiesced shard stays that way until it is woken.
		r.wake()
	}
	if !ok {
		return
	}
	mine := l.NodeId == r.store.NodeID() && l.ReplicaId == r.replicaID && r.store.ownLeaseUsable(l)
	if leaderID != r.replicaID && !mine {
		return // a follower without the lease: nothing to do (the common case)
	}
	// Short: ranges are tended one after another, and a liveness read
	// blocked on a recovering system range must not hold up the others.
	ctx, cancel := context.WithTimeout(r.store.tasks.ctx, 500*time.Millisecond)
	defer cancel()
	switch {
	case mine && state == leases.Valid && !leases.IsEpoch(l):
		remaining := TSFromProto(l.Expiration).WallTime - now.WallTime
		if remaining < int64(r.store.cfg.ExpirationLeaseDuration)/2 && r.transferring.Load() == 0 {
			next := proto.Clone(l).(*rspb.Lease)
			next.Expiration = TSToProto(kv.Timestamp{WallTime: now.WallTime + int64(r.store.cfg.ExpirationLeaseDuration)})
			r.acquireMu.Lock()
			if proto.Equal(r.lease(), l) {
				if rerr := r.proposeLease(ctx, next, l); rerr != nil {
					r.leaseFailed("extend", rerr.Code.String(), rerr.Message)
				}
			}
			r.acquireMu.Unlock()
		}
	case leaderID == r.replicaID && !mine && state == leases.Valid && l.NodeId != r.store.NodeID():
		// Leadership follows the lease (the holder is a voter: leases only
		// go to voters). A transfer drops proposals while it runs, so ask
		// at most once per election timeout.
		if h := r.leaderHandoff(ctx); h.Hold {
			// Not while this leader streams a snapshot of the range, nor
			// before the receiver restored it: the new leader would know
			// nothing of the stream, find the receiver still without
			// state and send the whole range again (seen after a crash
			// mid-stream, and under load when leadership moved between
			// the end of the stream and the restore;
			// TestLeaderKeepsLeadershipWhileStreaming).
			break
		}
		if last := r.lastLeaderTransfer.Load(); r.store.cfg.TimeSource.Since(time.Unix(0, last)) > r.store.electionTimeout() {
			r.lastLeaderTransfer.Store(r.store.cfg.TimeSource.Now().UnixNano())
			// Not to a draining holder: it is handing its leases off,
			// leadership first (see transferLease).
			// (Liveness is connected: leaseLoop tends nothing before.)
			rec, err := r.store.live().Get(ctx, l.NodeId, true)
			if err != nil {
				r.leaseFailed("leader_transfer", "liveness", fmt.Sprintf("reading liveness of n%d: %v", l.NodeId, err))
			} else if leases.TakesLeases(rec) {
				if err := r.store.nh.RequestLeaderTransfer(r.rangeID, l.ReplicaId); err != nil {
					r.leaseFailed("leader_transfer", "raft", fmt.Sprintf("to n%d: %v", l.NodeId, err))
				}
			}
		}
	case leaderID == r.replicaID && (l.NodeId == r.store.NodeID() && !mine || state != leases.Valid && state != leases.Stasis):
		// No usable lease (none, expired, or ours from before a restart).
		if _, rerr := r.ensureLease(ctx); rerr != nil {
			r.leaseFailed("acquire", rerr.Code.String(), rerr.Message)
		}
	}
}

// leaseFailureLogInterval: a range logs at most one failed background
// lease operation per interval (each one is counted).
const leaseFailureLogInterval = 10 * time.Second

// leaseFailed records a failed background lease operation (op: extend,
// acquire, leader_transfer): counted in rangestore_lease_failures_total,
// and logged with the range and the reason, at most once per
// leaseFailureLogInterval per range (saying how many went unlogged).
func (r *Replica) leaseFailed(op, code, reason string) {
	if r.store.cfg.Metrics != nil {
		r.store.cfg.Metrics.leaseFailures.WithLabelValues(op).Inc()
	}
	now := r.store.cfg.TimeSource.Now().UnixNano()
	last := r.lastLeaseFailureLog.Load()
	if now-last < int64(leaseFailureLogInterval) || !r.lastLeaseFailureLog.CompareAndSwap(last, now) {
		r.leaseFailuresUnlogged.Add(1)
		return
	}
	r.store.log.Warn("background lease operation failed", "range", r.rangeID, "op", op, "code", code, "reason", reason,
		"unlogged_since_last", r.leaseFailuresUnlogged.Swap(0))
}

// replicaLive reports whether the node of a replica of m's range has a
// live liveness record as far as this node knows (unknown counts as live).
func (r *Replica) replicaLive(replicaID uint64) bool {
	d, lv := r.desc(), r.store.live()
	if d == nil || lv == nil {
		return true
	}
	for _, rep := range d.Replicas {
		if rep.ReplicaId == replicaID {
			rec := lv.Cached(rep.NodeId)
			if rec == nil {
				return true
			}
			return r.store.cfg.Clock.Now().Less(TSFromProto(rec.Expiration))
		}
	}
	return true
}

// noteSnapshotStream records a snapshot stream of a local leader, started
// or delivered in full (Dragonboat's SendSnapshotStarted and
// SendSnapshotCompleted events; must not block).
func (s *Store) noteSnapshotStream(i raftio.SnapshotInfo, delivered bool) {
	now := s.cfg.TimeSource.Now().UnixNano()
	rec := streamedSnapshot{replica: i.ReplicaID, at: now}
	if v, ok := s.snapStreams.Load(i.ShardID); ok {
		prev := v.(streamedSnapshot)
		rec.deliveredTo, rec.deliveredAt = prev.deliveredTo, prev.deliveredAt
		if !delivered && prev.replica == i.ReplicaID {
			// Another attempt to the same replica does not extend the
			// wait (attempts repeated against an unreachable node).
			rec.at = prev.at
		}
	}
	if delivered {
		rec.deliveredTo, rec.deliveredAt = i.ReplicaID, now
	}
	s.snapStreams.Store(i.ShardID, rec)
}

// leaderHandoff gathers the facts of decideLeaderHandoff for this replica
// (the Raft leader, not holding the lease): snapshot streams running, and
// for a stream delivered in full, how far its receiver applied (asked of
// its node). A decision to forget the delivery drops its record.
func (r *Replica) leaderHandoff(ctx context.Context) leaderHandoff {
	f := leaderHandoffFacts{Sending: r.sm.sending.Load(), StreamIndex: r.lastStreamIndex.Load(), MaxWait: 10 * r.store.electionTimeout()}
	v, ok := r.store.snapStreams.Load(r.rangeID)
	if ok {
		ds := v.(streamedSnapshot)
		// Since the stream's last sign of life: started, written out
		// (Dragonboat's transport may still be sending), delivered.
		at := max(ds.at, r.lastSendEnd.Load())
		f.Delivered, f.DeliveredAgo = ds.replica, r.store.cfg.TimeSource.Since(time.Unix(0, at))
	}
	if f.Sending == 0 && f.Delivered != 0 && f.DeliveredAgo < f.MaxWait {
		node := uint64(0)
		for _, rep := range r.desc().GetReplicas() {
			if rep.ReplicaId == f.Delivered {
				node = rep.NodeId
			}
		}
		// Gone: no longer in the range, or on a dead node (repeated
		// stream attempts to it must not hold leadership); not asked.
		f.Gone = node == 0 || r.store.nodeDead(node)
		if snd := r.store.getSender(); !f.Gone && snd != nil {
			resp, err := snd.SendToNode(ctx, node, &rspb.RangeRequest{RangeId: r.rangeID, Admin: &rspb.RangeRequest_AdminReplicaProgress{AdminReplicaProgress: true}})
			if err == nil && resp.Error == nil {
				f.Progress = resp.GetReplicaProgress()
			}
		}
	}
	h := decideLeaderHandoff(f)
	if h.Forget {
		r.store.snapStreams.CompareAndDelete(r.rangeID, v)
	}
	if h.Hold {
		r.store.log.Debug("leadership stays with the snapshot sender", "range", r.rangeID, "reason", h.Reason)
	}
	return h
}

// snapshotStillNeeded runs before a snapshot stream of this replica
// (SaveSnapshot). Dragonboat's leader counts a snapshot as delivered once
// its transport sent the last chunk; if it then probes the receiver before
// the receiver has restored it (under load, the restore can start hundreds
// of milliseconds later), the receiver's empty log makes it stream the
// whole range again. So a stream that follows, within
// snapshotRecheckWindow, a stream delivered in full to a replica first
// asks that replica how far it applied, for up to an election timeout: once
// it has restored the delivered snapshot, this stream is not needed and
// ends unsent (Dragonboat's leader moves on when the receiver's
// acknowledgement arrives). Otherwise it streams.
func (r *Replica) snapshotStillNeeded(stopc <-chan struct{}) error {
	v, ok := r.store.snapStreams.Load(r.rangeID)
	if !ok {
		return nil
	}
	ds := v.(streamedSnapshot)
	ts := r.store.cfg.TimeSource
	// The state the delivered stream carried: this stream has not ended,
	// so the last one written out is that one.
	deliveredIndex := r.lastStreamIndex.Load()
	if ds.deliveredTo == 0 || deliveredIndex == 0 || ds.replica != ds.deliveredTo || ts.Since(time.Unix(0, ds.deliveredAt)) > snapshotRecheckWindow {
		return nil
	}
	node := uint64(0)
	for _, rep := range r.desc().GetReplicas() {
		if rep.ReplicaId == ds.replica {
			node = rep.NodeId
		}
	}
	snd := r.store.getSender()
	if node == 0 || snd == nil {
		return nil
	}
	// Up to an election timeout for the restore to start or end, and
	// while the receiver is restoring (at most snapshotRestoreWait).
	start := ts.Now()
	deadline := start.Add(r.store.electionTimeout())
	for {
		actx, acancel := context.WithTimeout(r.store.tasks.ctx, 250*time.Millisecond)
		resp, err := snd.SendToNode(actx, node, &rspb.RangeRequest{RangeId: r.rangeID, Admin: &rspb.RangeRequest_AdminReplicaProgress{AdminReplicaProgress: true}})
		acancel()
		p := resp.GetReplicaProgress()
		ok := err == nil && resp.Error == nil && p.ReplicaId == ds.replica
		if ok && p.Restoring {
			deadline = ts.Now().Add(r.store.electionTimeout())
		}
		// Applied at least the delivered stream's state: it restored it
		// (or caught up past it); a replica that had state before (a
		// lagging follower) shows its older index until it restored it.
		if ok && p.AppliedIndex >= deliveredIndex {
			r.store.log.Info("snapshot not sent: the replica restored the one delivered before", "range", r.rangeID, "replica", ds.replica, "applied", p.AppliedIndex)
			v, _ := r.store.snapSkips.LoadOrStore(r.rangeID, new(atomic.Int32))
			v.(*atomic.Int32).Add(1)
			if m := r.store.cfg.Metrics; m != nil {
				m.snapshotsSkipped.Inc()
			}
			// Aborted, not failed: Dragonboat ends the stream quietly
			// (any other error from SaveSnapshot stops the process).
			return fmt.Errorf("ranges: r%d: replica %d restored the snapshot delivered before (applied %d), this one is not needed: %w", r.rangeID, ds.replica, p.AppliedIndex, sm.ErrSnapshotAborted)
		}
		if now := ts.Now(); now.After(deadline) || now.Sub(start) > snapshotRestoreWait {
			return nil
		}
		select {
		case <-stopc:
			return nil
		case <-r.store.tasks.ctx.Done():
			return nil
		case <-ts.After(50 * time.Millisecond):
		}
	}
}

// takeSnapshotSkip reports whether an aborted stream of i's range was one
// snapshotStillNeeded ended as not needed, counting it off (Dragonboat's
// SendSnapshotAborted event; must not block).
func (s *Store) takeSnapshotSkip(i raftio.SnapshotInfo) bool {
	v, ok := s.snapSkips.Load(i.ShardID)
	if !ok {
		return false
	}
	n := v.(*atomic.Int32)
	for {
		c := n.Load()
		if c <= 0 {
			return false
		}
		if n.CompareAndSwap(c, c-1) {
			return true
		}
	}
}

// snapshotRestoreWait bounds how long a stream waits for the receiver to
// finish restoring the snapshot delivered before it.
const snapshotRestoreWait = 30 * time.Second

// snapshotRecheckWindow: how soon after a stream delivered in full a new
// stream of the range first checks whether it is still needed.
const snapshotRecheckWindow = 5 * time.Second
