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
	"github.com/lni/dragonboat/v4/config"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/reqload"
)

// tsCacheEntries bounds each replica's timestamp cache.
const tsCacheEntries = 50000

// Replica is one local replica of a range: the apply side (sm, the
// Dragonboat state machine holding the replicated state) and the
// leaseholder machinery that serves requests and proposes commands
// through Raft. The store holds one Replica per local range (Store.replicas)
// from the moment Dragonboat creates its state machine until a merge or a
// wider snapshot removes it; ready is closed once Dragonboat has opened
// it (its descriptor and lease are loaded).
type Replica struct {
	rangeID, replicaID uint64
	store              *Store
	sm                 *stateMachine
	ready              chan struct{}
	readyOnce          sync.Once

	latches *latchManager
	tscache *tsCache
	split   *splitTracking
	// closed: what this replica promised as leaseholder, and its writes in
	// flight (closedts.go).
	closed closedTracker
	// leaseReads and followerReads count the reads this replica served
	// under the lease and below its closed timestamp (ReplicaReads).
	leaseReads, followerReads atomic.Int64

	acquireMu    sync.Mutex    // one acquisition at a time per range
	transferring atomic.Uint64 // target node of a transfer in progress (0 = none)
	// transferDone is closed when the transfer in progress ends.
	transferDone atomic.Pointer[chan struct{}]
	// lastLeaderTransfer is when Raft leadership was last asked to move
	// to the leaseholder (unix nanos).
	lastLeaderTransfer atomic.Int64
	// lastSendEnd is when a snapshot stream of the local replica last
	// finished writing (unix nanos; Dragonboat's transport may still be
	// sending it).
	lastSendEnd atomic.Int64
	// lastStreamIndex is the applied index of the state that stream
	// carried.
	lastStreamIndex atomic.Uint64
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
	// change: replica changes led by this replica (replica_change.go).
	change changeState
	// reqLoad: where the batches this replica served as leaseholder came
	// from (per gateway node; follow-the-workload).
	reqLoad *reqload.Tracker
}

// newReplica builds the replica of rangeID around a new state machine
// (not yet registered or opened). Its timestamp cache starts at now + max
// offset (anything this node served before a restart was below that), or
// at lowWater if that is higher (a split's right side: above every read
// the parent served on its span).
func (s *Store) newReplica(rangeID, replicaID uint64, lowWater kv.Timestamp) *Replica {
	r := &Replica{rangeID: rangeID, replicaID: replicaID, store: s, ready: make(chan struct{}),
		latches: newLatchManager(), tscache: newTSCache(tsCacheEntries), split: s.newSplitTracking(rangeID),
		reqLoad: reqload.New(reqload.DefaultTau)}
	now := s.cfg.Clock.Now()
	r.tscache.setLowWater(kv.Timestamp{WallTime: now.WallTime + int64(s.cfg.Clock.MaxOffset())})
	if !lowWater.IsEmpty() {
		r.tscache.setLowWater(lowWater)
	}
	m := newStateMachine(s.eng, rangeID, replicaID, func(_ uint64, l *rspb.Lease) { r.leaseApplied(l) })
	m.onSplit, m.onMerge, m.onSnapshot, m.subsume = s.onSplit, s.onMerge, s.onSnapshot, s.subsume
	m.snaps = s.snaps
	m.sendEnded = func(index uint64) {
		r.lastStreamIndex.Store(index)
		r.lastSendEnd.Store(s.cfg.TimeSource.Now().UnixNano())
	}
	m.beforeSend = r.snapshotStillNeeded
	m.beforeOpen = func() { s.crashPoint("replica-open") }
	// A received snapshot staged in sstables, not yet ingested (fault
	// tests: the replica must come back with its old state and apply the
	// snapshot again).
	m.beforeIngest = func() error { s.crashPoint("snapshot-before-ingest"); return nil }
	m.beforeRecover = func() { s.crashPoint("snapshot-recover") }
	// Inside a snapshot stream (replica_apply.go, snapshotMidBytes). On
	// the sender, the Raft leader dies with two chunks or more delivered
	// and no tail chunk: the receiver holds a partial file in a
	// .receiving directory that is never applied (dropped by Dragonboat's
	// chunk GC after SnapshotChunkTimeoutTick without progress, or when the
	// receiving replica restarts), and a new leader sends the snapshot
	// again from its start. On the receiver, the whole stream arrived and
	// part of it is written into unapplied sstables.
	m.midSend = func() { s.crashPoint("snapshot-send-mid") }
	m.midRecover = func() { s.crashPoint("snapshot-receive-mid") }
	m.onOpen = r.markReady
	r.sm = m
	return r
}

// markReady closes ready (Dragonboat opened the state machine).
func (r *Replica) markReady() { r.readyOnce.Do(func() { close(r.ready) }) }

// desc is the replica's current descriptor (nil until it is opened, for a
// replica created empty).
func (r *Replica) desc() *rspb.RangeDescriptor { return r.sm.desc.Load() }

// lease is the range's current lease as applied here (never nil).
func (r *Replica) lease() *rspb.Lease { return r.sm.lease.Load() }

func (s *Store) replicaConfig(rec *rspb.ReplicaRecord) config.Config {
	c := RaftReplicaConfig(rec.RangeId, rec.ReplicaId, s.cfg.ElectionRTT, s.cfg.HeartbeatRTT, s.cfg.SnapshotEntries, s.cfg.CompactionOverhead, !s.cfg.DisableQuiesce)
	c.IsNonVoting = rec.JoinedNonVoting
	return c
}

func (s *Store) startReplica(rec *rspb.ReplicaRecord) error {
	return s.startReplicaWith(rec, kv.Timestamp{})
}

// startReplicaWith starts a local replica; its timestamp cache starts at
// lowWater if that is above the default (now + max offset). The Replica is
// registered when Dragonboat creates its state machine (before Open), and
// stays until a merge or a wider snapshot removes it (removeSubsumed).
func (s *Store) startReplicaWith(rec *rspb.ReplicaRecord, lowWater kv.Timestamp) error {
	// A merge applying meanwhile waits for this start (and then stops the
	// replica); a replica already merged away is not started.
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.subsumed[rec.RangeId] {
		return nil
	}
	var members map[uint64]dragonboat.Target
	join := false
	if !s.nh.HasNodeInfo(rec.RangeId, rec.ReplicaId) {
		// First start (or a crash before it): bootstrap exactly as recorded.
		join = rec.Join
		if !join {
			members = map[uint64]dragonboat.Target{}
			for id, addr := range rec.InitialMembers {
				members[id] = addr
			}
		}
	}
	create := func(shardID, replicaID uint64) sm.IOnDiskStateMachine {
		r := s.newReplica(shardID, replicaID, lowWater)
		s.mu.Lock()
		s.replicas[shardID] = r
		s.mu.Unlock()
		return r.sm
	}
	err := s.nh.StartOnDiskReplica(members, join, create, s.replicaConfig(rec))
	if err != nil && !errors.Is(err, dragonboat.ErrShardAlreadyExist) {
		return fmt.Errorf("ranges: start replica r%d/%d: %w", rec.RangeId, rec.ReplicaId, err)
	}
	return nil
}

// removeSubsumed stops a local replica whose range was merged away (or
// overwritten by a wider snapshot) and drops it from the store.
// m is the state machine that was merged away (nil: whichever replica of
// rangeID is registered); a newer replica of the range is left alone.
func (s *Store) removeSubsumed(rangeID uint64, m *stateMachine) {
	s.mu.Lock()
	if r := s.replicas[rangeID]; r != nil && (m == nil || r.sm == m) {
		delete(s.replicas, rangeID)
	}
	s.mu.Unlock()
	for i := 0; i < 50 && !s.stopping.Load(); i++ {
		err := s.nh.StopShard(rangeID)
		if err == nil || isShardGone(err) {
			break
		}
		<-s.cfg.TimeSource.After(100 * time.Millisecond)
	}
	s.log.Info("replica of a merged range removed", "range", rangeID)
}

// replica returns the local replica of a range (nil if none).
func (s *Store) replica(rangeID uint64) *Replica {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.replicas[rangeID]
}

// replicaList returns the local replicas at this moment (a copy: callers
// iterate without holding s.mu).
func (s *Store) replicaList() []*Replica {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Replica, 0, len(s.replicas))
	for _, r := range s.replicas {
		out = append(out, r)
	}
	return out
}

// localByStart indexes the local replicas by start key.
func (s *Store) localByStart() map[string]*Replica {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]*Replica, len(s.replicas))
	for _, r := range s.replicas {
		if d := r.desc(); d != nil && !r.sm.merged.Load() {
			out[string(d.StartKey)] = r
		}
	}
	return out
}

// localEndingAt returns the descriptor of the local replica whose range
// ends at key (nil if none here).
func (s *Store) localEndingAt(key []byte) *rspb.RangeDescriptor {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range s.replicas {
		if d := r.desc(); d != nil && !r.sm.merged.Load() && bytes.Equal(d.EndKey, key) {
			return d
		}
	}
	return nil
}

// errNotStarted: the replica is not running here (merged away, or the
// store is closing).
var errNotStarted = errors.New("replica not running here")

// waitReady waits until the local replica of rangeID is registered and has
// loaded its state (Dragonboat opened it), or ctx ends.
func (s *Store) waitReady(ctx context.Context, rangeID uint64) error {
	for {
		if r := s.replica(rangeID); r != nil {
			select {
			case <-r.ready:
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

// waitOpened waits until Dragonboat has opened the replica (its state is
// loaded), within ctx or DefaultRequestTimeout; the error is retryable.
func (r *Replica) waitOpened(ctx context.Context) *rspb.RangeError {
	select {
	case <-r.ready:
		return nil
	default:
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	select {
	case <-r.ready:
		return nil
	case <-r.store.stopc:
		return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("node n%d is shutting down", r.store.NodeID()))
	case <-ctx.Done():
		return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d on n%d is still starting: %v", r.rangeID, r.store.NodeID(), ctx.Err()))
	}
}
