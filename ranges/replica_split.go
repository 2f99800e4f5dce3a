package ranges

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/lni/dragonboat/v4"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Sender runs requests on internal keys anywhere in the cluster (the
// gateway's router). The store uses it for meta records and ID allocation.
type Sender interface {
	Send(ctx context.Context, reqs []*rspb.RequestUnion) ([]*rspb.ResponseUnion, error)
	// SendToRange sends a request to a range's leaseholder (following
	// redirects); SendToNode to one node's replica.
	SendToRange(ctx context.Context, desc *rspb.RangeDescriptor, req *rspb.RangeRequest) (*rspb.RangeResponse, error)
	SendToNode(ctx context.Context, nodeID uint64, req *rspb.RangeRequest) (*rspb.RangeResponse, error)
}

// SetSender connects the cluster-wide sender (needed for splits and meta
// repair).
func (s *Store) SetSender(snd Sender) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sender = snd
}

func (s *Store) getSender() Sender {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sender
}

// splitApplied is what a committed split hands to the store: the new left
// descriptor, and the record of this node's right-hand replica (nil if this
// replica is not one of the right side's initial members).
type splitApplied struct {
	left     *rspb.RangeDescriptor
	right    *rspb.RangeDescriptor
	rhsLocal *rspb.ReplicaRecord
}

// applySplit shrinks the range to the left descriptor and creates the right
// range's replicated state (descriptor, a copy of the lease, max write
// timestamp and GC threshold) and, if this replica is one of its members,
// its replica record, all in the batch of this entry. The data of the right
// side is already in the shared engine.
func (s *stateMachine) applySplit(b *kv.Batch, st *applyState, sp *rspb.SplitCommand) (*rspb.RaftResult, error) {
	desc := st.desc
	l, r := sp.Left, sp.Right
	reject := func(why string) (*rspb.RaftResult, error) {
		return &rspb.RaftResult{Error: rangeErr(rspb.RangeError_FAILED_PRECONDITION, fmt.Sprintf("r%d: split refused: %s", s.rangeID, why))}, nil
	}
	switch {
	case l == nil || r == nil:
		return reject("missing descriptors")
	case l.RangeId != s.rangeID || r.RangeId == s.rangeID || r.RangeId == 0:
		return reject("bad range IDs")
	case !bytes.Equal(l.StartKey, desc.StartKey) || !bytes.Equal(r.EndKey, desc.EndKey) || !bytes.Equal(l.EndKey, r.StartKey):
		return reject("descriptors do not partition the range")
	case bytes.Compare(l.StartKey, l.EndKey) >= 0 || bytes.Compare(r.StartKey, r.EndKey) >= 0:
		return reject("empty side")
	case l.Generation != desc.Generation+1 || r.Generation != l.Generation:
		return reject("bad generations")
	}
	if v, ok, err := b.GetRaw(rangeStateKey(r.RangeId, suffixDescriptor)); err != nil {
		return nil, err
	} else if ok {
		// Cannot happen with allocated IDs; never overwrite another range.
		other := &rspb.RangeDescriptor{}
		_ = proto.Unmarshal(v, other)
		return reject(fmt.Sprintf("range r%d already exists here as [%s, %s)", r.RangeId, keys.Pretty(other.StartKey), keys.Pretty(other.EndKey)))
	}
	put := func(key []byte, m proto.Message) error {
		data, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		return b.PutRaw(key, data)
	}
	if err := put(rangeStateKey(s.rangeID, suffixDescriptor), l); err != nil {
		return nil, err
	}
	if err := put(rangeStateKey(r.RangeId, suffixDescriptor), r); err != nil {
		return nil, err
	}
	// The right side starts under the same lease (same holder, same replica
	// numbering): whoever served the parent's span keeps serving it.
	if err := put(rangeStateKey(r.RangeId, suffixLease), st.lease); err != nil {
		return nil, err
	}
	if err := b.PutRaw(rangeStateKey(r.RangeId, suffixMaxWriteTS), encodeTS(st.maxWrite)); err != nil {
		return nil, err
	}
	if !st.gc.IsEmpty() {
		if err := b.PutRaw(rangeStateKey(r.RangeId, suffixGCThreshold), encodeTS(st.gc)); err != nil {
			return nil, err
		}
	}
	// The right side inherits the parent's closed timestamp: every write
	// of its span at or below it has applied, and later ones are above it.
	if !st.closed.IsEmpty() {
		if err := b.PutRaw(rangeStateKey(r.RangeId, suffixClosedTS), encodeTS(st.closed)); err != nil {
			return nil, err
		}
	}
	if err := b.PutRaw(rangeStateKey(r.RangeId, suffixSize), encodeUint64(uint64(max(sp.RightBytes, 0)))); err != nil {
		return nil, err
	}
	st.size = max(sp.LeftBytes, 0)
	out := &splitApplied{left: l, right: r}
	if _, member := sp.RightMembers[s.replicaID]; member {
		rec := &rspb.ReplicaRecord{RangeId: r.RangeId, ReplicaId: s.replicaID, InitialMembers: sp.RightMembers,
			CreatedBySplit: true, PendingLogCompaction: true}
		if err := put(replicaStateKey(r.RangeId, s.replicaID, suffixRecord), rec); err != nil {
			return nil, err
		}
		out.rhsLocal = rec
	}
	st.desc = l
	st.splits = append(st.splits, out)
	return &rspb.RaftResult{}, nil
}

// onSplit runs on the parent's apply goroutine after a split committed. The
// right-hand replica is started from another goroutine (starting a shard
// inside Update can deadlock on the apply workers).
func (s *Store) onSplit(sp *splitApplied) {
	if sp.rhsLocal == nil {
		return
	}
	// The right side's timestamp cache starts above every read the parent
	// served on its span (the split held a latch over the whole range, so
	// none is in flight).
	low := s.cfg.Clock.Now()
	low.WallTime += int64(s.cfg.Clock.MaxOffset())
	if parent := s.replica(sp.left.RangeId); parent != nil {
		for _, ts := range rangeTSSpans(sp.right.StartKey, sp.right.EndKey) {
			if hi := parent.tscache.max(ts); low.Less(hi) {
				low = hi
			}
		}
	}
	s.crashPoint("split-applied")
	s.tasks.run(func(ctx context.Context) { s.startSplitRHS(ctx, sp.rhsLocal, low) })
}

// startSplitRHS starts a right-hand replica created by a split, then
// compacts its Raft log (compactNewShard): every entry of the new shard up
// to its first command is dropped, so any replica of it that did not get
// the data from the split (a parent replica that skipped the split through
// a snapshot, a replica added later) is caught up by a snapshot that
// carries the range's state, never by replaying the log from index 1 over
// an empty span.
func (s *Store) startSplitRHS(ctx context.Context, rec *rspb.ReplicaRecord, lowWater kv.Timestamp) {
	if s.stopping.Load() {
		return
	}
	if err := s.startReplicaWith(rec, lowWater); err != nil {
		s.log.Error("starting right-hand replica of a split", "range", rec.RangeId, "err", err)
		return
	}
	s.crashPoint("split-rhs-started")
	s.compactNewShard(ctx, rec)
}

// waitLogCompacted waits (up to 10 s) until a shard's Raft log no longer
// holds entries up to idx. Dragonboat's snapshot request returns once the
// snapshot is saved, but drops the log behind it later, from the shard's
// own loop; until then a leader can still send those entries, so the
// record must not yet say the log is compacted (an empty replica created
// from meta on that word would be sent the entries instead of a snapshot:
// "applied entry 5 without a descriptor").
func (s *Store) waitLogCompacted(ctx context.Context, rangeID, idx uint64) bool {
	deadline := s.cfg.TimeSource.Now().Add(10 * time.Second)
	for {
		lr, err := s.nh.GetLogReader(rangeID)
		if err != nil {
			return false
		}
		if first, _ := lr.GetRange(); first > idx {
			return true
		}
		if !s.cfg.TimeSource.Now().Before(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-s.cfg.TimeSource.After(20 * time.Millisecond):
		}
	}
}

// compactNewShard compacts the log of a new right-hand replica behind its
// first command (compactPastFirstCommand), retrying until that is done,
// then clears the record's pending flag (a restart before that compacts
// again). Only then does the replica answer that its initial log is
// compacted (logCompacted), which is what lets the missing-replica repair
// create an empty replica of the range elsewhere.
func (s *Store) compactNewShard(stopCtx context.Context, rec *rspb.ReplicaRecord) {
	rangeID := rec.RangeId
	deadline := s.cfg.TimeSource.Now().Add(time.Minute)
	for s.cfg.TimeSource.Now().Before(deadline) && stopCtx.Err() == nil {
		ctx, cancel := context.WithTimeout(stopCtx, 5*time.Second)
		idx, err := s.compactPastFirstCommand(ctx, rangeID)
		cancel()
		if err == nil && s.waitLogCompacted(stopCtx, rangeID, idx) {
			if s.cfg.Metrics != nil {
				s.cfg.Metrics.splitCompactions.Inc()
			}
			done := proto.Clone(rec).(*rspb.ReplicaRecord)
			done.PendingLogCompaction = false
			if err := s.putRecord(done); err != nil {
				s.log.Warn("recording log compaction", "range", rangeID, "err", err)
			}
			return
		}
		if errors.Is(err, dragonboat.ErrShardNotFound) || errors.Is(err, dragonboat.ErrClosed) || errors.Is(err, errNotStarted) {
			return
		}
		select {
		case <-s.stopc:
			return
		case <-s.cfg.TimeSource.After(100 * time.Millisecond):
		}
	}
	s.log.Warn("could not compact the log of a new right-hand range", "range", rangeID)
}

// compactPastFirstCommand compacts the local replica's Raft log behind a
// snapshot taken once the replica has applied the range's first command
// (an entry passed to Update), proposing a command that changes nothing if
// it has applied none yet, and returns the snapshot's index.
//
// Why the first command: Dragonboat loads a snapshot into an on-disk state
// machine (RecoverFromSnapshot) only if the snapshot's on-disk index (the
// last entry its sender applied through Update) is above the receiver's
// own; otherwise it only moves the receiver's applied index to the
// snapshot's, taking the state at that on-disk index to be the same on
// every replica. A right-hand range's state before its first command is
// the split's, which an empty replica (created from meta by the
// missing-replica repair) does not have, and its own on-disk index is 0:
// a snapshot sent by a replica that has applied no command yet (on-disk
// index 0, the bootstrap membership and a leader's no-op being no commands)
// would leave it empty, and the range's first command would then apply
// over an empty span ("applied entry 5 without a descriptor"). So no
// replica says its initial log is compacted before its own on-disk index is
// above 0: whichever of them leads, the snapshot it sends an empty replica
// is loaded. The snapshot is past the bootstrap membership entries too (a
// command comes after them), so no such replica is sent the entries after
// them instead.
func (s *Store) compactPastFirstCommand(ctx context.Context, rangeID uint64) (uint64, error) {
	if err := s.waitReady(ctx, rangeID); err != nil {
		return 0, err
	}
	r := s.replica(rangeID)
	if r == nil || r.sm.merged.Load() {
		return 0, errNotStarted
	}
	if r.sm.applied.Load() == 0 {
		// A GC command without a threshold: any replica may propose it
		// (no lease), and applying it changes nothing (a lower threshold
		// is a no-op), but it goes through Update on every replica.
		cmd := &rspb.RaftCommand{Timestamp: TSToProto(s.cfg.Clock.Now()), Command: &rspb.RaftCommand_Gc{Gc: &rspb.GCCommand{}}}
		if _, rerr := r.propose(ctx, cmd); rerr != nil {
			return 0, wrapRangeError(rerr)
		}
	}
	first := r.sm.applied.Load()
	if first == 0 {
		return 0, fmt.Errorf("ranges: r%d: the replica has applied no command yet", rangeID)
	}
	idx, err := s.CompactRaftLog(ctx, rangeID)
	if err != nil {
		return 0, err
	}
	if idx < first {
		return 0, fmt.Errorf("ranges: r%d: snapshot at %d is before the applied command %d", rangeID, idx, first)
	}
	return idx, nil
}

// removeNonVotersForSplit removes the range's standing non-voters (a
// read replica's, a zone's: standingNonVoter; in the descriptor and Raft
// non-voters) before a split, through the replica change path. They must
// go: the right-hand Raft group starts with the split's voters as its
// initial members, and a non-voter can only join a running group by a
// membership change with a snapshot (it has no replica of the new range
// to replay the group's first entries on); the replicate queue adds them
// to both halves again. Any other non-voter (the learner of a replica
// change in flight, one in Raft alone) refuses the split, as splits of
// ranges with non-voters always were refused before read replicas:
// removing a move's learner under it let an empty replica be sent log
// entries (a CI chaos run: "r37 replica 3 applied entry 5 without a
// descriptor").
func (r *Replica) removeNonVotersForSplit(ctx context.Context, desc *rspb.RangeDescriptor, nonVoting map[uint64]string) *rspb.RangeError {
	var nodes []uint64
	readReplicas := map[uint64]bool{}
	for _, rep := range desc.Replicas {
		if r.store.ReadReplicaNode(rep.NodeId) {
			readReplicas[rep.NodeId] = true
		}
	}
	for _, rep := range desc.Replicas {
		if _, ok := nonVoting[rep.ReplicaId]; ok && standingNonVoter(rep, readReplicas) {
			nodes = append(nodes, rep.NodeId)
		}
	}
	if len(nodes) != len(nonVoting) {
		// A learner of a replica change in flight: the split waits, as
		// it always did.
		return rangeErr(rspb.RangeError_FAILED_PRECONDITION, fmt.Sprintf("r%d has non-voting replicas that are not standing ones (a replica change in flight); split it once the change is done", r.rangeID))
	}
	r.store.log.Info("split: removing the range's non-voters first (the replicate queue adds them to both halves again)", "range", r.rangeID, "nodes", nodes)
	if _, err := r.store.ChangeReplicas(ctx, r.rangeID, nil, nodes); err != nil {
		// Transient (another change of the range running, a lease
		// moving): the split may be asked again.
		return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: removing its non-voters on %v before the split: %v; retry", r.rangeID, nodes, err))
	}
	return nil
}

// adminSplit splits the range at key: it allocates the right side's range
// ID, stops the range's traffic with a write latch over all of it, proposes
// the split under the current lease and descriptor generation, and then
// records both sides in meta.
func (r *Replica) adminSplit(ctx context.Context, lease *rspb.Lease, req *rspb.AdminSplitRequest) *rspb.RangeResponse {
	fail := func(code rspb.RangeError_Code, format string, args ...any) *rspb.RangeResponse {
		return &rspb.RangeResponse{Error: rangeErr(code, fmt.Sprintf(format, args...))}
	}
	desc := r.desc()
	key := req.SplitKey
	if bytes.Equal(key, desc.StartKey) {
		// Already split there (e.g. a retry of a split that succeeded, whose
		// first answer was lost to the router's per-attempt timeout): answer
		// as the split did, with the left side when it is local.
		return &rspb.RangeResponse{Admin: &rspb.RangeResponse_AdminSplit{AdminSplit: &rspb.AdminSplitResponse{Left: r.store.localEndingAt(key), Right: desc}}}
	}
	if !keys.InSpan(key, desc.StartKey, desc.EndKey) {
		return &rspb.RangeResponse{Error: &rspb.RangeError{Code: rspb.RangeError_RANGE_KEY_MISMATCH, RangeDescriptor: desc,
			Message: fmt.Sprintf("split key %s is outside r%d", keys.Pretty(key), r.rangeID)}}
	}
	if !keys.IsUserKey(desc.StartKey) || !keys.IsUserKey(key) {
		return fail(rspb.RangeError_INVALID_ARGUMENT, "r%d is a system range; only ranges of the user span split", r.rangeID)
	}
	if g := req.ExpectedGeneration; g != 0 && g != desc.Generation {
		return fail(rspb.RangeError_FAILED_PRECONDITION, "r%d changed since the split was decided (generation %d, expected %d)", r.rangeID, desc.Generation, g)
	}
	if rm := r.store.localByStart()[string(desc.EndKey)]; rm != nil && rm.sm.frozen.Load() == r.rangeID {
		// The merge needs this range's current end key: after a split it
		// could never apply, nor be rolled back (this range still exists),
		// and the neighbour would serve nothing for good.
		return fail(rspb.RangeError_FAILED_PRECONDITION, "r%d cannot split now: its right neighbour r%d is frozen for a merge into it, which must finish first", r.rangeID, rm.rangeID)
	}
	snd := r.store.getSender()
	if snd == nil {
		return fail(rspb.RangeError_UNAVAILABLE, "splits need the cluster sender, which is not connected")
	}
	members, err := r.store.nh.SyncGetShardMembership(ctx, r.rangeID)
	if err != nil {
		return &rspb.RangeResponse{Error: r.mapRaftError(err)}
	}
	if len(members.Witnesses) > 0 {
		return fail(rspb.RangeError_FAILED_PRECONDITION, "r%d has witness replicas; splitting such ranges is not supported", r.rangeID)
	}
	if len(members.NonVotings) > 0 {
		// Standing non-voters (a read replica's, a zone's) do not follow a
		// split: the right-hand Raft group starts with the voters alone.
		// They are removed first; the replicate queue adds them to both
		// halves again (a snapshot each).
		if rerr := r.removeNonVotersForSplit(ctx, desc, members.NonVotings); rerr != nil {
			return &rspb.RangeResponse{Error: rerr}
		}
		desc = r.desc()
		if !keys.InSpan(key, desc.StartKey, desc.EndKey) || bytes.Equal(key, desc.StartKey) {
			return &rspb.RangeResponse{Error: &rspb.RangeError{Code: rspb.RangeError_RANGE_KEY_MISMATCH, RangeDescriptor: desc,
				Message: fmt.Sprintf("r%d changed while its non-voters were removed for the split at %s", r.rangeID, keys.Pretty(key))}}
		}
		if members, err = r.store.nh.SyncGetShardMembership(ctx, r.rangeID); err != nil {
			return &rspb.RangeResponse{Error: r.mapRaftError(err)}
		}
		if len(members.NonVotings) > 0 {
			return fail(rspb.RangeError_UNAVAILABLE, "r%d: a non-voter was added again before the split; retry", r.rangeID)
		}
	}
	// Measure both sides (before stopping traffic: an estimate either way).
	snap := r.store.eng.NewSnapshot()
	leftBytes, err := spanBytes(snap, desc.StartKey, key)
	var rightBytes int64
	if err == nil {
		rightBytes, err = spanBytes(snap, key, desc.EndKey)
	}
	_ = snap.Close()
	if err != nil {
		return fail(rspb.RangeError_UNKNOWN, "r%d: measuring the split: %v", r.rangeID, err)
	}
	rhsID, err := r.store.allocateRangeID(ctx, snd)
	if err != nil {
		code := rspb.RangeError_UNAVAILABLE
		var bad *errBadRangeIDCounter
		if errors.As(err, &bad) {
			code = rspb.RangeError_FAILED_PRECONDITION
		}
		return fail(code, "r%d: allocating a range ID for the split: %v", r.rangeID, err)
	}

	// Stop the range's traffic: in-flight requests finish, new ones wait and
	// then see the new descriptor.
	release, rerr := r.holdRange(ctx, lease, desc, "split")
	if rerr != nil {
		return &rspb.RangeResponse{Error: rerr}
	}
	defer release()
	left := proto.Clone(desc).(*rspb.RangeDescriptor)
	left.EndKey = append([]byte(nil), key...)
	left.Generation++
	left.NextReplicaId = NextReplicaID(desc)
	// The right side keeps the parent's replica IDs and their counter.
	right := &rspb.RangeDescriptor{RangeId: rhsID, StartKey: append([]byte(nil), key...), EndKey: desc.EndKey, Generation: left.Generation,
		Sticky: req.Sticky, NextReplicaId: left.NextReplicaId}
	rightMembers := map[uint64]string{}
	for _, rep := range desc.Replicas {
		addr, ok := members.Nodes[rep.ReplicaId]
		if !ok || rep.Type != rspb.ReplicaType_VOTER {
			return fail(rspb.RangeError_FAILED_PRECONDITION, "r%d: replica %d in the descriptor is not a voter of the raft group", r.rangeID, rep.ReplicaId)
		}
		rightMembers[rep.ReplicaId] = addr
		right.Replicas = append(right.Replicas, proto.Clone(rep).(*rspb.ReplicaDescriptor))
	}
	if len(rightMembers) != len(members.Nodes) {
		return fail(rspb.RangeError_FAILED_PRECONDITION, "r%d: descriptor and raft membership differ", r.rangeID)
	}
	sort.Slice(right.Replicas, func(i, j int) bool { return right.Replicas[i].ReplicaId < right.Replicas[j].ReplicaId })
	cmd := &rspb.RaftCommand{ProposalId: newID(), Timestamp: TSToProto(r.store.cfg.Clock.Now()), LeaseSequence: lease.Sequence,
		Generation: desc.Generation, Command: &rspb.RaftCommand_Split{Split: &rspb.SplitCommand{Left: left, Right: right, RightMembers: rightMembers,
			LeftBytes: leftBytes, RightBytes: rightBytes}}}
	r.store.crashPoint("split-before-propose")
	res, rerr := r.propose(ctx, cmd)
	if rerr != nil {
		return &rspb.RangeResponse{Error: rerr}
	}
	if res.Error != nil {
		return &rspb.RangeResponse{Error: res.Error}
	}
	r.store.crashPoint("split-before-meta")
	if r.store.cfg.Metrics != nil {
		r.store.cfg.Metrics.splits.Inc()
	}
	r.store.log.Info("range split", "range", r.rangeID, "key", keys.Pretty(key), "right", rhsID)
	// Meta: left first (it adds a record; the old record at the parent's end
	// key keeps covering the right side until it is replaced), then right.
	// A crash in between is repaired by the meta loop.
	if _, err := r.store.fixMeta(ctx, snd, left); err != nil {
		r.store.log.Warn("meta update after split failed; the meta loop will repair it", "range", r.rangeID, "err", err)
	} else {
		r.store.crashPoint("split-between-meta")
		if _, err := r.store.fixMeta(ctx, snd, right); err != nil {
			r.store.log.Warn("meta update after split failed; the meta loop will repair it", "range", rhsID, "err", err)
		}
	}
	// Wait (bounded by ctx) until the local right-hand replica has loaded
	// its descriptor, so a client following up on the split (a merge of
	// the two sides, a request) finds it here.
	if err := r.store.waitReady(ctx, rhsID); err != nil {
		r.store.log.Warn("split: the right-hand replica is not loaded yet", "range", rhsID, "err", err)
	}
	return &rspb.RangeResponse{Admin: &rspb.RangeResponse_AdminSplit{AdminSplit: &rspb.AdminSplitResponse{Left: left, Right: right}}}
}

// holdRange stops a range's traffic for an admin command (split, merge):
// it takes a write latch over the whole range, so in-flight requests finish
// and new ones wait (and then see the new descriptor), and checks that the
// lease and descriptor are still the ones the command was prepared with.
func (r *Replica) holdRange(ctx context.Context, lease *rspb.Lease, desc *rspb.RangeDescriptor, what string) (func(), *rspb.RangeError) {
	l, err := r.latches.acquire(ctx, []span{{start: desc.StartKey, end: desc.EndKey}}, true)
	if err != nil {
		return nil, r.mapRaftError(err)
	}
	release := func() { r.latches.release(l) }
	if cur := r.lease(); cur.Sequence != lease.Sequence {
		release()
		return nil, notLeaseholder(r.rangeID, cur.NodeId, "lease changed before the %s", what)
	}
	if cur := r.desc(); cur.Generation != desc.Generation {
		release()
		return nil, &rspb.RangeError{Code: rspb.RangeError_RANGE_KEY_MISMATCH, RangeDescriptor: cur,
			Message: fmt.Sprintf("r%d changed while preparing the %s; retry", r.rangeID, what)}
	}
	return release, nil
}

// errBadRangeIDCounter: the range-ID counter cannot give a usable ID (not
// an integer, overflowing, or behind the existing ranges). Retrying does
// not help; an operator must repair the counter.
type errBadRangeIDCounter struct{ msg string }

func (e *errBadRangeIDCounter) Error() string { return e.msg }

// allocateRangeID takes the next range ID from the cluster-wide counter and
// checks it: it must be above every range ID this node has and every range
// ID in meta (a counter set back would reuse an existing range's ID).
func (s *Store) allocateRangeID(ctx context.Context, snd Sender) (uint64, error) {
	counter := keys.Pretty(keys.RangeIDGeneratorKey)
	resps, err := snd.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Increment{
		Increment: &rspb.IncrementRequest{Key: keys.RangeIDGeneratorKey, Delta: 1}}}})
	if err != nil {
		var re interface{ RangeErr() *rspb.RangeError }
		if errors.As(err, &re) && re.RangeErr().GetCode() == rspb.RangeError_FAILED_PRECONDITION {
			// Not a decimal integer, or incrementing it overflows.
			return 0, &errBadRangeIDCounter{fmt.Sprintf("range-ID counter %s is unusable: %v", counter, err)}
		}
		return 0, err
	}
	n := resps[0].GetIncrement().GetNewValue()
	if n <= int64(SystemRangeID) {
		return 0, &errBadRangeIDCounter{fmt.Sprintf("range-ID counter %s returned %d, below the first range ID after the system range (not initialized at bootstrap, or reset)", counter, n)}
	}
	id := uint64(n)
	highest := uint64(0)
	s.mu.RLock()
	for rid := range s.replicas {
		highest = max(highest, rid)
	}
	s.mu.RUnlock()
	if highest < id {
		recs, err := scanMeta(ctx, snd, keys.MetaPrefix, keys.MetaSpanEnd)
		if err != nil {
			return 0, fmt.Errorf("checking range ID r%d against meta: %w", id, err)
		}
		for _, r := range recs {
			highest = max(highest, r.desc.RangeId)
		}
	}
	if id <= highest {
		return 0, &errBadRangeIDCounter{fmt.Sprintf("range-ID counter %s gave r%d, at or below the highest existing range ID r%d: the counter is behind (was it reset?); set it to at least %d", counter, id, highest, highest)}
	}
	return id, nil
}

// RangeIDCounterValue is the initial value of the range ID counter for a
// cluster bootstrapped with the given highest range ID.
func RangeIDCounterValue(maxID uint64) []byte { return []byte(strconv.FormatUint(maxID, 10)) }

// fixMeta makes the meta record at d's end key describe d, unless it already
// describes d or a newer descriptor (higher generation: a later split or
// merge). It uses a conditional put on the exact bytes it read, so two
// repairers never overwrite a newer record with an older one.
func (s *Store) fixMeta(ctx context.Context, snd Sender, d *rspb.RangeDescriptor) (wrote bool, err error) {
	want, err := proto.Marshal(d)
	if err != nil {
		return false, err
	}
	mk := keys.MetaKey(d.EndKey)
	for attempt := 0; attempt < 5; attempt++ {
		resps, err := snd.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: mk}}}})
		if err != nil {
			return false, err
		}
		g := resps[0].GetGet()
		cput := &rspb.ConditionalPutRequest{Key: mk, Value: want}
		if g.GetFound() {
			val := g.GetKv().GetValue()
			cur := &rspb.RangeDescriptor{}
			if err := proto.Unmarshal(val, cur); err != nil {
				return false, fmt.Errorf("meta record %s: %w", keys.Pretty(mk), err)
			}
			if decideMetaRecord(d, cur).Action == metaKeep {
				return false, nil
			}
			cput.ExpectedValue = val
		} else {
			cput.ExpectAbsent = true
		}
		resps, err = snd.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: cput}}})
		if err != nil {
			return false, err
		}
		if resps[0].GetConditionalPut().GetSucceeded() {
			if s.cfg.Metrics != nil {
				s.cfg.Metrics.metaUpdates.Inc()
			}
			return true, nil
		}
	}
	return false, fmt.Errorf("meta record %s kept changing", keys.Pretty(mk))
}

// putRecord durably rewrites a local replica record, unless the replica was
// removed meanwhile (its record is gone).
func (s *Store) putRecord(rec *rspb.ReplicaRecord) error {
	key := replicaStateKey(rec.RangeId, rec.ReplicaId, suffixRecord)
	if _, ok, err := s.eng.GetRaw(key); err != nil || !ok {
		return err
	}
	data, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	b := s.eng.NewBatch()
	defer func() { _ = b.Close() }()
	if err := b.PutRaw(key, data); err != nil {
		return err
	}
	return b.Commit(true)
}
