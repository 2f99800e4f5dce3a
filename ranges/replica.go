package ranges

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	sm "github.com/lni/dragonboat/v4/statemachine"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// DefaultExpirationLeaseDuration is the length of expiration-based leases
// (meta and system ranges); holders extend them once less than half is left.
const DefaultExpirationLeaseDuration = 1500 * time.Millisecond

// tsCacheEntries bounds each replica's timestamp cache.
const tsCacheEntries = 50000

// LivenessSource is what the store needs of node liveness.
type LivenessSource interface {
	Self() *rspb.Liveness
	Get(ctx context.Context, nodeID uint64, fresh bool) (*rspb.Liveness, error)
	Cached(nodeID uint64) *rspb.Liveness
	IncrementEpoch(ctx context.Context, nodeID uint64) (*rspb.Liveness, error)
}

// replicaState is the leaseholder machinery of one local replica: span
// latches, the timestamp cache, and lease acquisition / transfer state.
type replicaState struct {
	latches *latchManager
	tscache *tsCache
	split   *splitTracking

	acquireMu    sync.Mutex    // one acquisition at a time per range
	transferring atomic.Uint64 // target node of a transfer in progress (0 = none)
	// transferDone is closed when the transfer in progress ends.
	transferDone atomic.Pointer[chan struct{}]
	// lastLeaderTransfer is when Raft leadership was last asked to move
	// to the leaseholder (unix nanos).
	lastLeaderTransfer atomic.Int64
	// lastWake is when the replica last woke its quiesced shard (unix nanos).
	lastWake atomic.Int64
	// lastLeaseFailureLog is when a failed background lease operation was
	// last logged (unix nanos); leaseFailuresUnlogged counts those since.
	lastLeaseFailureLog   atomic.Int64
	leaseFailuresUnlogged atomic.Int64
	// frozenSince is when this process first saw the range frozen (unix
	// nanos, 0 = not frozen); lastFrozenCheck when it last warned and
	// checked the freeze; thawing is set while a rollback check runs.
	frozenSince     atomic.Int64
	lastFrozenCheck atomic.Int64
	thawing         atomic.Bool
}

func (s *Store) electionTimeout() time.Duration {
	return time.Duration(s.cfg.ElectionRTT*s.cfg.RTTMillisecond) * time.Millisecond
}

func (s *Store) newReplicaState() *replicaState {
	rs := &replicaState{latches: newLatchManager(), tscache: newTSCache(tsCacheEntries)}
	// Anything this node served before a restart was below now + max offset.
	now := s.cfg.Clock.Now()
	rs.tscache.setLowWater(kv.Timestamp{WallTime: now.WallTime + int64(s.cfg.Clock.MaxOffset())})
	return rs
}

func (s *Store) state(rangeID uint64) *replicaState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.states[rangeID]
}

// onLease runs (on the apply goroutine) when a new lease applies locally.
func (s *Store) onLease(rangeID uint64, l *rspb.Lease) {
	if l == nil {
		return
	}
	// A lease start beyond physical + max offset (never proposed by a node
	// whose clock is bounded) leaves the clock alone; the clock reports it.
	_ = s.cfg.Clock.Update(TSFromProto(l.Start))
	if l.NodeId == s.NodeID() {
		if st := s.state(rangeID); st != nil {
			st.tscache.setLowWater(TSFromProto(l.Start))
		}
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

// drainHint names a node to send a draining replica's requests to: the
// Raft leader if it is elsewhere, else another voter.
func (s *Store) drainHint(m *stateMachine) uint64 {
	me := s.NodeID()
	if n := s.leaderNode(m.rangeID); n != 0 && n != me {
		return n
	}
	for _, r := range m.desc.Load().GetReplicas() {
		if r.NodeId != me && r.Type == rspb.ReplicaType_VOTER {
			return r.NodeId
		}
	}
	return 0
}

func notLeaseholder(rangeID, hint uint64, format string, args ...any) *rspb.RangeError {
	return &rspb.RangeError{Code: rspb.RangeError_NOT_LEASEHOLDER, LeaderNodeId: hint,
		Message: fmt.Sprintf("r%d: ", rangeID) + fmt.Sprintf(format, args...)}
}

// ensureLease returns the lease under which this replica may serve now, or
// the error telling the caller where to go. It acquires the lease when
// nobody holds a valid one.
func (s *Store) ensureLease(ctx context.Context, m *stateMachine, st *replicaState) (*rspb.Lease, *rspb.RangeError) {
	me := s.NodeID()
	for attempt := 0; attempt < 3; attempt++ {
		transferring := st.transferring.Load()
		done := st.transferDone.Load()
		l := m.lease.Load()
		in := leaseInput{NodeID: me, ReplicaID: m.replicaID, Lease: l, StartTS: s.startTS,
			Transferring: transferring, TransferWaitable: done != nil, Draining: s.draining.Load()}
		if in.Transferring == 0 {
			in.State = s.leaseStatus(l, s.cfg.Clock.Now())
		}
		if in.Draining {
			in.DrainHint = s.drainHint(m)
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
			return nil, notLeaseholder(m.rangeID, d.Hint, "lease is being transferred to n%d", d.Hint)
		case leaseRedirect:
			return nil, notLeaseholder(m.rangeID, d.Hint, "%s", d.Reason)
		case leaseLearnLiveness:
			// Learn the holder's liveness; if it is live, redirect.
			lv := s.live()
			if lv == nil {
				return nil, rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: node liveness is not running on n%d", m.rangeID, me))
			}
			if _, err := lv.Get(ctx, l.NodeId, false); err != nil {
				return nil, rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: reading liveness of n%d: %v", m.rangeID, l.NodeId, err))
			}
		case leaseAcquire:
			if err := s.acquireLease(ctx, m, st, l); err != nil {
				return nil, err
			}
		}
	}
	return nil, rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: could not obtain a valid lease", m.rangeID))
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
func (s *Store) acquireLease(ctx context.Context, m *stateMachine, st *replicaState, prev *rspb.Lease) *rspb.RangeError {
	st.acquireMu.Lock()
	defer st.acquireMu.Unlock()
	if cur := m.lease.Load(); !proto.Equal(cur, prev) {
		return nil // someone (maybe us) changed it meanwhile; re-evaluate
	}
	desc := m.desc.Load()
	if desc == nil {
		return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d has no data on n%d yet", m.rangeID, s.NodeID()))
	}
	lv := s.live()
	if lv == nil {
		return rangeErr(rspb.RangeError_UNAVAILABLE, "node liveness is not running")
	}
	me := s.NodeID()
	if leases.IsEpoch(prev) && prev.NodeId != me {
		rec, err := lv.Get(ctx, prev.NodeId, true)
		if err != nil {
			return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: reading liveness of n%d: %v", m.rangeID, prev.NodeId, err))
		}
		switch d := decideTakeover(prev, rec, s.cfg.Clock.Now()); d.Action {
		case leaseRedirect:
			return notLeaseholder(m.rangeID, d.Hint, "%s", d.Reason)
		case leaseIncrementEpoch:
			if _, err := lv.IncrementEpoch(ctx, prev.NodeId); err != nil {
				return notLeaseholder(m.rangeID, prev.NodeId, "cannot take over from n%d: %v", prev.NodeId, err)
			}
		}
	}
	now := s.cfg.Clock.Now()
	next := &rspb.Lease{ReplicaId: m.replicaID, NodeId: me, Start: TSToProto(now), Sequence: prev.Sequence + 1}
	if usesExpirationLease(desc) {
		if prev.Sequence != 0 && prev.NodeId != me && !TSFromProto(prev.Expiration).Less(now) {
			return notLeaseholder(m.rangeID, prev.NodeId, "expiration lease of n%d not expired yet", prev.NodeId)
		}
		next.Expiration = TSToProto(kv.Timestamp{WallTime: now.WallTime + int64(s.cfg.ExpirationLeaseDuration)})
	} else {
		self := lv.Self()
		if self == nil || !now.Less(TSFromProto(self.Expiration)) {
			return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: n%d cannot take a lease: its liveness record is not live", m.rangeID, me))
		}
		next.Epoch = self.Epoch
	}
	return s.proposeLease(ctx, m, next, prev)
}

func (s *Store) proposeLease(ctx context.Context, m *stateMachine, next, prev *rspb.Lease) *rspb.RangeError {
	cmd := &rspb.RaftCommand{Timestamp: next.Start, Command: &rspb.RaftCommand_RequestLease{RequestLease: &rspb.RequestLeaseCommand{Lease: next, Prev: prev}}}
	res, rerr := s.propose(ctx, m.rangeID, cmd)
	if rerr != nil {
		return rerr
	}
	if res.Error != nil && !proto.Equal(m.lease.Load(), next) {
		// (A re-proposal of a request that already applied is rejected
		// because the lease changed — to the one we asked for.)
		return res.Error
	}
	s.metricsLease(next, prev)
	return nil
}

// proposeRetry is how long one try of a proposal may take before it is
// proposed again. Dragonboat silently drops proposals forwarded to a leader
// that is transferring leadership or died, leaving the proposer waiting;
// re-proposing the same bytes is safe because writes carry a proposal ID
// (deduplicated at apply), lease requests carry their precondition and GC is
// idempotent.
const proposeRetry = 500 * time.Millisecond

// propose sends a command through Raft and decodes its result.
func (s *Store) propose(ctx context.Context, rangeID uint64, cmd *rspb.RaftCommand) (*rspb.RaftResult, *rspb.RangeError) {
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, rangeErr(rspb.RangeError_UNKNOWN, err.Error())
	}
	res, rerr, _ := s.proposeData(ctx, rangeID, data, isRetryable(cmd))
	return res, rerr
}

// isRetryable: a command that may be proposed again as the same bytes.
func isRetryable(cmd *rspb.RaftCommand) bool {
	return len(cmd.ProposalId) > 0 || cmd.GetRequestLease() != nil || cmd.GetGc() != nil
}

// proposeData proposes data (re-proposing a retryable command every
// proposeRetry until ctx ends) and decodes its result. inFlight reports an
// error returned while some copy of the command was accepted by Raft and
// none has a result: the command may still apply, at any later time, and
// whoever proposed it must keep what it evaluated under (its latches, a
// transfer's refusal to serve) until settle learns its fate.
func (s *Store) proposeData(ctx context.Context, rangeID uint64, data []byte, retryable bool) (_ *rspb.RaftResult, _ *rspb.RangeError, inFlight bool) {
	for {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if retryable {
			tctx, cancel = context.WithTimeout(ctx, proposeRetry)
		}
		r, accepted, err := s.syncPropose(tctx, rangeID, data)
		cancel()
		inFlight = inFlight || accepted
		if err != nil {
			if errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, dragonboat.ErrShardNotReady) {
				// A quiesced follower is not woken by proposals (its dead
				// leader would never be replaced): wake it.
				s.wake(rangeID)
			}
			if retryable && ctx.Err() == nil && (errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
				errors.Is(err, dragonboat.ErrShardNotReady) || errors.Is(err, dragonboat.ErrSystemBusy)) {
				if errors.Is(err, dragonboat.ErrShardNotReady) || errors.Is(err, dragonboat.ErrSystemBusy) {
					select {
					case <-ctx.Done():
					case <-s.cfg.TimeSource.After(20 * time.Millisecond):
					}
				}
				continue
			}
			if inFlight && !replicaGone(err) {
				// Some copy may still apply: whatever the last try ran
				// into (no leader, busy), the caller must treat the command
				// as possibly applied, never as refused (a router re-sends
				// a NOT_LEASEHOLDER write elsewhere under a new proposal).
				return nil, s.incompleteErr(rangeID, err), true
			}
			return nil, s.mapRaftError(rangeID, err), false
		}
		res := &rspb.RaftResult{}
		if err := proto.Unmarshal(r.Data, res); err != nil {
			return nil, rangeErr(rspb.RangeError_UNKNOWN, err.Error()), false
		}
		return res, nil, false
	}
}

// replicaGone: the local replica (or the whole NodeHost) is closed; nothing
// proposed through it will report back, and nothing is served here.
func replicaGone(err error) bool {
	return errors.Is(err, dragonboat.ErrShardClosed) || errors.Is(err, dragonboat.ErrClosed) ||
		errors.Is(err, dragonboat.ErrShardNotFound) || errors.Is(err, errReplicaClosed)
}

// settle holds on to what an in-flight command was evaluated under until
// its fate is known, then calls release. A proposal whose caller gave up
// (deadline, cancellation, a Raft timeout) can still be committed later,
// by this leader or by the next one that has it in its log. Releasing its
// latches at once let the next write on the same keys evaluate against
// state without it, and both applied: two increments answered the same
// value, two conditional deletes of one value both succeeded.
//
// The fate is known when a copy of the command gets a result (it applied,
// or was refused at apply: a refusal is permanent, since lease sequences
// and generations only grow), or when decided reports that it can no
// longer apply (the lease or descriptor it was evaluated under has been
// replaced locally, so every earlier entry has applied here and every
// later copy is refused), or when the replica or store closes. Meanwhile
// the same bytes are proposed again every proposeRetry, deduplicated at
// apply by their proposal ID, so a range that regains a quorum decides
// soon; one that does not keeps the keys latched, as CockroachDB does.
func (s *Store) settle(rangeID uint64, data []byte, decided func() bool, release func()) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.settling.Inc()
	}
	done := func() {
		release()
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.settling.Dec()
		}
	}
	ok := s.tasks.run(func(ctx context.Context) {
		defer done()
		for ctx.Err() == nil && !decided() {
			tctx, cancel := context.WithTimeout(ctx, proposeRetry)
			_, _, err := s.syncPropose(tctx, rangeID, data)
			cancel()
			if err == nil || replicaGone(err) {
				return
			}
			s.wake(rangeID)
			if !errors.Is(err, dragonboat.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				// Refused at once (no leader, busy): do not spin.
				select {
				case <-ctx.Done():
				case <-s.cfg.TimeSource.After(proposeRetry / 10):
				}
			}
		}
	})
	if !ok {
		done() // the store is closing: nothing is served here any more
	}
}

// syncPropose proposes data and waits for its result or for ctx. The Raft
// proposal timeout is not ctx's deadline: Dragonboat refuses a timeout
// below one Raft tick (ErrTimeoutTooSmall), so a client deadline shorter
// than a tick (200 ms under `start`) made every write fail although the
// write itself takes a few ms. The proposal gets at least two ticks; the
// caller's deadline is enforced by waiting on ctx. When ctx ends first the
// command may still apply: the caller reports an ambiguous result (and
// settles the command), and a retry with the same proposal ID is
// deduplicated at apply. accepted reports that Raft took the proposal.
func (s *Store) syncPropose(ctx context.Context, rangeID uint64, data []byte) (_ sm.Result, accepted bool, _ error) {
	timeout := DefaultRequestTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if ctx.Err() != nil {
		return sm.Result{}, false, ctx.Err()
	}
	if min := 2 * time.Duration(s.cfg.RTTMillisecond) * time.Millisecond; timeout < min {
		timeout = min
	}
	rs, err := s.nh.Propose(s.nh.GetNoOPSession(rangeID), data, timeout)
	if err != nil {
		return sm.Result{}, false, err
	}
	select {
	case r := <-rs.AppliedC():
		switch {
		case r.Completed():
			rs.Release()
			return r.GetResult(), true, nil
		case r.Rejected():
			return sm.Result{}, true, dragonboat.ErrRejected
		case r.Timeout():
			return sm.Result{}, true, dragonboat.ErrTimeout
		case r.Terminated():
			return sm.Result{}, true, dragonboat.ErrShardClosed
		case r.Dropped():
			return sm.Result{}, true, dragonboat.ErrShardNotReady
		case r.Aborted():
			return sm.Result{}, true, dragonboat.ErrAborted
		}
		return sm.Result{}, true, fmt.Errorf("r%d: unexpected proposal result %v", rangeID, r)
	case <-ctx.Done():
		return sm.Result{}, true, ctx.Err()
	}
}

// replicaLive reports whether the node of a replica of m's range has a
// live liveness record as far as this node knows (unknown counts as live).
func (s *Store) replicaLive(m *stateMachine, replicaID uint64) bool {
	d, lv := m.desc.Load(), s.live()
	if d == nil || lv == nil {
		return true
	}
	for _, r := range d.Replicas {
		if r.ReplicaId == replicaID {
			rec := lv.Cached(r.NodeId)
			if rec == nil {
				return true
			}
			return s.cfg.Clock.Now().Less(TSFromProto(rec.Expiration))
		}
	}
	return true
}

// wake makes a quiesced shard active again: a local ReadIndex wakes it (a
// proposal does not), so heartbeats resume and, if its leader died, an
// election follows. It is rate-limited per replica and never waits.
func (s *Store) wake(rangeID uint64) {
	if s.cfg.DisableQuiesce {
		return
	}
	st := s.state(rangeID)
	if st == nil {
		return
	}
	now := s.cfg.TimeSource.Now().UnixNano()
	last := st.lastWake.Load()
	if now-last < int64(s.electionTimeout()) || !st.lastWake.CompareAndSwap(last, now) {
		return
	}
	rs, err := s.readIndex(rangeID, 2*s.electionTimeout())
	if err != nil {
		return
	}
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.wakeups.Inc()
	}
	s.tasks.run(func(ctx context.Context) {
		select {
		case <-rs.ResultC():
			rs.Release()
		case <-ctx.Done():
		}
	})
}

// readIndex is the one place the store asks Raft for a ReadIndex, and
// counts every call (rangestore_read_index_total). Only wake uses it: reads
// are served under the lease and never call it.
func (s *Store) readIndex(rangeID uint64, timeout time.Duration) (*dragonboat.RequestState, error) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.readIndex.Inc()
	}
	return s.nh.ReadIndex(rangeID, timeout)
}

// serveRead serves read-only requests from local state under the lease,
// without a Raft round trip: it waits for overlapping in-flight writes
// (latches), records the read in the timestamp cache so no later write can
// land at or below it, and reads a Pebble snapshot at the read timestamp.
func (s *Store) serveRead(ctx context.Context, m *stateMachine, st *replicaState, req *rspb.RangeRequest) *rspb.RangeResponse {
	now := s.cfg.Clock.Now()
	readTS := TSFromProto(req.ReadTimestamp)
	if readTS.IsEmpty() {
		readTS = now
	}
	spans := requestSpans(req.Requests)
	l, err := st.latches.acquire(ctx, spans, false)
	if err != nil {
		return &rspb.RangeResponse{Error: s.mapRaftError(m.rangeID, err)}
	}
	defer st.latches.release(l)
	for i, r := range req.Requests {
		st.tscache.add(spans[i], readTimestamp(r, readTS))
	}
	// The lease must still be valid now that we hold the latches.
	if lease := m.lease.Load(); lease.NodeId != s.NodeID() || s.leaseStatus(lease, s.cfg.Clock.Now()) != leases.Valid {
		return &rspb.RangeResponse{Error: notLeaseholder(m.rangeID, lease.NodeId, "lease changed while reading")}
	}
	out, err := m.Lookup(&ReadQuery{Requests: req.Requests, ReadTS: readTS, MaxResponseBytes: s.cfg.Limits.responseBudget()})
	if err != nil {
		return &rspb.RangeResponse{Error: s.mapRaftError(m.rangeID, err)}
	}
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.leaseReads.Inc()
	}
	res := out.(*rspb.RaftResult)
	return &rspb.RangeResponse{Responses: res.Responses, Error: res.Error, Timestamp: TSToProto(readTS)}
}

// serveWrite evaluates a write at the leaseholder under write latches, at a
// timestamp above every read of its spans (timestamp cache) and every
// earlier write of the range, then proposes the resulting engine batch
// under the current lease and waits until it has applied locally.
func (s *Store) serveWrite(ctx context.Context, m *stateMachine, st *replicaState, lease *rspb.Lease, req *rspb.RangeRequest) *rspb.RangeResponse {
	spans := requestSpans(req.Requests)
	l, err := st.latches.acquire(ctx, spans, true)
	if err != nil {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNAVAILABLE,
			fmt.Sprintf("r%d: gave up waiting on n%d for an earlier write to the same keys (%v); this write was not proposed", m.rangeID, s.NodeID(), err))}
	}
	settling := false
	defer func() {
		if !settling {
			st.latches.release(l)
		}
	}()
	if cur := m.lease.Load(); cur.Sequence != lease.Sequence || s.leaseStatus(cur, s.cfg.Clock.Now()) != leases.Valid {
		return &rspb.RangeResponse{Error: notLeaseholder(m.rangeID, cur.NodeId, "lease changed while waiting for latches")}
	}
	desc := m.desc.Load()
	if err := checkSpans(desc, req.Requests); err != nil {
		re, _ := asRangeError(err)
		s.addLocalDescriptors(re, req.Requests)
		return &rspb.RangeResponse{Error: re}
	}
	ts := s.cfg.Clock.Now()
	for _, sp := range spans {
		if hi := st.tscache.max(sp); !hi.Less(ts) {
			ts = hi.Next()
		}
	}
	m.mu.RLock()
	if mw := m.maxWriteTS; !mw.Less(ts) {
		ts = mw.Next()
	}
	m.mu.RUnlock()
	if start := TSFromProto(lease.Start); ts.Less(start) {
		ts = start
	}
	b := s.eng.NewBatch()
	resps, err := evalWrite(b, req.Requests, ts, s.cfg.Limits.responseBudget())
	if err != nil {
		_ = b.Close()
		if re, ok := asRangeError(err); ok {
			return &rspb.RangeResponse{Error: re}
		}
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNKNOWN, err.Error())}
	}
	repr := b.Repr()
	_ = b.Close()
	reqTS := req.Timestamp
	if reqTS == nil {
		reqTS = TSToProto(ts)
	}
	cmd := &rspb.RaftCommand{ProposalId: req.ProposalId, Timestamp: reqTS, LeaseSequence: lease.Sequence, Generation: desc.Generation,
		Command: &rspb.RaftCommand_Write{Write: &rspb.WriteCommand{WriteBatch: repr, Result: &rspb.RaftResult{Responses: resps, Timestamp: TSToProto(ts)}}}}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNKNOWN, err.Error())}
	}
	res, rerr, inFlight := s.proposeData(ctx, m.rangeID, data, isRetryable(cmd))
	if rerr != nil {
		if inFlight {
			// The latches stay until the command's fate is known.
			settling = true
			s.settle(m.rangeID, data, func() bool { return evaluatedUnderReplaced(m, lease.Sequence, desc.Generation) },
				func() { st.latches.release(l) })
		}
		return &rspb.RangeResponse{Error: rerr}
	}
	return &rspb.RangeResponse{Responses: res.Responses, Error: res.Error, Timestamp: res.Timestamp}
}

// evaluatedUnderReplaced: the lease or descriptor a command was evaluated
// under has been replaced on m, so no copy of it can apply any more.
func evaluatedUnderReplaced(m *stateMachine, leaseSeq, generation uint64) bool {
	return m.lease.Load().Sequence != leaseSeq || m.desc.Load().GetGeneration() != generation || m.closed.Load()
}

// TransferLease moves the lease of a range held here to the replica on
// target. This replica stops serving first; the new lease starts at this
// node's clock, above everything it served. What a replica refuses is an
// *Error carrying its code.
func (s *Store) TransferLease(ctx context.Context, rangeID, target uint64) error {
	return s.transferLease(ctx, rangeID, target, false)
}

// transferLease is TransferLease; with lead, the range's Raft leadership
// moves to target first (bounded): after the lease, it would move while
// the new leaseholder proposes, and a leader in transfer silently drops
// proposals forwarded to it, stalling them until re-proposed.
func (s *Store) transferLease(ctx context.Context, rangeID, target uint64, lead bool) error {
	m, st := s.replica(rangeID), s.state(rangeID)
	if m == nil || st == nil {
		return errorf(rspb.RangeError_RANGE_NOT_FOUND, "range r%d not found on node n%d", rangeID, s.NodeID())
	}
	lease, rerr := s.ensureLease(ctx, m, st)
	if rerr != nil {
		return wrapRangeError(rerr)
	}
	if target == s.NodeID() {
		return nil
	}
	// A draining node takes no lease; for an epoch lease the target must be
	// live (its current epoch goes into the lease).
	lv := s.live()
	if lv == nil {
		return errorf(rspb.RangeError_UNAVAILABLE, "node liveness is not running on n%d", s.NodeID())
	}
	rec, err := lv.Get(ctx, target, true)
	if err != nil {
		return err
	}
	if rec.GetDraining() {
		return errorf(rspb.RangeError_FAILED_PRECONDITION, "n%d is draining and takes no leases", target)
	}
	var targetReplica uint64
	for _, r := range m.desc.Load().Replicas {
		if r.NodeId == target && r.Type == rspb.ReplicaType_VOTER {
			targetReplica = r.ReplicaId
		}
	}
	if targetReplica == 0 {
		return errorf(rspb.RangeError_FAILED_PRECONDITION, "r%d has no voter on n%d", rangeID, target)
	}
	st.acquireMu.Lock()
	defer st.acquireMu.Unlock()
	if !st.transferring.CompareAndSwap(0, target) {
		return errorf(rspb.RangeError_UNAVAILABLE, "r%d: a lease transfer is already in progress", rangeID)
	}
	done := make(chan struct{})
	st.transferDone.Store(&done)
	var l *latch
	finish := func() {
		if l != nil {
			st.latches.release(l)
		}
		st.transferring.Store(0)
		st.transferDone.Store(nil)
		close(done)
	}
	settling := false
	defer func() {
		if !settling {
			finish()
		}
	}()
	// Wait for in-flight requests: take a write latch over the whole range.
	desc := m.desc.Load()
	if l, err = st.latches.acquire(ctx, []span{{start: desc.StartKey, end: desc.EndKey}}, true); err != nil {
		return err
	}
	if lead {
		// Leadership first, while nothing of the range is in flight here.
		s.waitPeerApplied(ctx, m, target, 500*time.Millisecond)
		s.moveLeader(ctx, m, targetReplica, 2*s.electionTimeout())
	}
	if cur := m.lease.Load(); !proto.Equal(cur, lease) {
		return errorf(rspb.RangeError_NOT_LEASEHOLDER, "r%d: the lease changed during the transfer", rangeID)
	}
	now := s.cfg.Clock.Now()
	next := &rspb.Lease{ReplicaId: targetReplica, NodeId: target, Start: TSToProto(now), Sequence: lease.Sequence + 1}
	if usesExpirationLease(desc) {
		next.Expiration = TSToProto(kv.Timestamp{WallTime: now.WallTime + int64(s.cfg.ExpirationLeaseDuration)})
	} else {
		if rec == nil || !now.Less(TSFromProto(rec.Expiration)) {
			return errorf(rspb.RangeError_UNAVAILABLE, "r%d: n%d is not live", rangeID, target)
		}
		next.Epoch = rec.Epoch
	}
	cmd := &rspb.RaftCommand{Timestamp: next.Start, Command: &rspb.RaftCommand_RequestLease{RequestLease: &rspb.RequestLeaseCommand{Lease: next, Prev: lease}}}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return err
	}
	res, rerr, inFlight := s.proposeData(ctx, m.rangeID, data, true)
	if rerr != nil {
		if inFlight {
			// The target may get the lease at any later time, starting
			// at next.Start: serving here meanwhile could answer a read
			// the new holder has already overwritten. Keep refusing
			// until the transfer applied or can no longer apply.
			settling = true
			s.settle(m.rangeID, data, func() bool { return m.lease.Load().Sequence != lease.Sequence || m.closed.Load() }, finish)
		}
		return wrapRangeError(rerr)
	}
	if res.Error != nil && !proto.Equal(m.lease.Load(), next) {
		return wrapRangeError(res.Error)
	}
	s.metricsLease(next, lease)
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
		ms := s.replicaList()
		for _, m := range ms {
			s.watchFrozen(m)
			// Epoch leases (or none yet): every fifth round.
			if l := m.lease.Load(); round%5 != 0 && (l.Sequence == 0 || leases.IsEpoch(l)) {
				continue
			}
			s.tendLease(m.rangeID)
		}
	})
}

func (s *Store) tendLease(rangeID uint64) {
	m, st := s.replica(rangeID), s.state(rangeID)
	if m == nil || st == nil || m.desc.Load() == nil || s.stopping.Load() {
		return
	}
	leaderID, ok := s.leaderOf(rangeID)
	l := m.lease.Load()
	now := s.cfg.Clock.Now()
	state := s.leaseStatus(l, now)
	if leaderID != m.replicaID && (!ok || state == leases.Expired || state == leases.None || !s.replicaLive(m, leaderID)) {
		// No known leader, nobody may serve, or the leader's node is dead:
		// a quiesced shard stays that way until it is woken.
		s.wake(rangeID)
	}
	if !ok {
		return
	}
	mine := l.NodeId == s.NodeID() && l.ReplicaId == m.replicaID && s.ownLeaseUsable(l)
	if leaderID != m.replicaID && !mine {
		return // a follower without the lease: nothing to do (the common case)
	}
	// Short: ranges are tended one after another, and a liveness read
	// blocked on a recovering system range must not hold up the others.
	ctx, cancel := context.WithTimeout(s.tasks.ctx, 500*time.Millisecond)
	defer cancel()
	switch {
	case mine && state == leases.Valid && !leases.IsEpoch(l):
		remaining := TSFromProto(l.Expiration).WallTime - now.WallTime
		if remaining < int64(s.cfg.ExpirationLeaseDuration)/2 && st.transferring.Load() == 0 {
			next := proto.Clone(l).(*rspb.Lease)
			next.Expiration = TSToProto(kv.Timestamp{WallTime: now.WallTime + int64(s.cfg.ExpirationLeaseDuration)})
			st.acquireMu.Lock()
			if proto.Equal(m.lease.Load(), l) {
				if rerr := s.proposeLease(ctx, m, next, l); rerr != nil {
					s.leaseFailed(m, st, "extend", rerr.Code.String(), rerr.Message)
				}
			}
			st.acquireMu.Unlock()
		}
	case leaderID == m.replicaID && !mine && state == leases.Valid && l.NodeId != s.NodeID():
		// Leadership follows the lease (the holder is a voter: leases only
		// go to voters). A transfer drops proposals while it runs, so ask
		// at most once per election timeout.
		if last := st.lastLeaderTransfer.Load(); s.cfg.TimeSource.Since(time.Unix(0, last)) > s.electionTimeout() {
			st.lastLeaderTransfer.Store(s.cfg.TimeSource.Now().UnixNano())
			// Not to a draining holder: it is handing its leases off,
			// leadership first (see transferLease).
			// (Liveness is connected: leaseLoop tends nothing before.)
			rec, err := s.live().Get(ctx, l.NodeId, true)
			if err != nil {
				s.leaseFailed(m, st, "leader_transfer", "liveness", fmt.Sprintf("reading liveness of n%d: %v", l.NodeId, err))
			} else if !rec.GetDraining() {
				if err := s.nh.RequestLeaderTransfer(rangeID, l.ReplicaId); err != nil {
					s.leaseFailed(m, st, "leader_transfer", "raft", fmt.Sprintf("to n%d: %v", l.NodeId, err))
				}
			}
		}
	case leaderID == m.replicaID && (l.NodeId == s.NodeID() && !mine || state != leases.Valid && state != leases.Stasis):
		// No usable lease (none, expired, or ours from before a restart).
		if _, rerr := s.ensureLease(ctx, m, st); rerr != nil {
			s.leaseFailed(m, st, "acquire", rerr.Code.String(), rerr.Message)
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
func (s *Store) leaseFailed(m *stateMachine, st *replicaState, op, code, reason string) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.leaseFailures.WithLabelValues(op).Inc()
	}
	now := s.cfg.TimeSource.Now().UnixNano()
	last := st.lastLeaseFailureLog.Load()
	if now-last < int64(leaseFailureLogInterval) || !st.lastLeaseFailureLog.CompareAndSwap(last, now) {
		st.leaseFailuresUnlogged.Add(1)
		return
	}
	s.log.Warn("background lease operation failed", "range", m.rangeID, "op", op, "code", code, "reason", reason,
		"unlogged_since_last", st.leaseFailuresUnlogged.Swap(0))
}
