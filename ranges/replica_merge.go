package ranges

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/lni/dragonboat/v4"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Merges (DESIGN.md §4). The left range L subsumes its right neighbour R,
// whose replicas are on the same nodes:
//
//  1. R is frozen: a replicated FreezeCommand after which R serves nothing
//     and applies nothing but no-ops. Its leaseholder reports a timestamp
//     above everything R served.
//  2. L's leaseholder waits until every replica of R has applied the freeze
//     (each answers a freeze probe once it has), so every node's engine
//     holds all of R's data.
//  3. L proposes a MergeCommand: applying it widens L over R's span, raises
//     L's max write timestamp above what R served, moves R's dedup records
//     under L and deletes R's range and replica state (not its data) in the
//     same batch; the local R replica is then stopped.
//
// A freeze names L, which must be R's left neighbour with a replica on R's
// leaseholder's node when the freeze is evaluated (checkMergeTarget); only
// the range a freeze names can subsume R (its probes must find R frozen for
// it). A frozen R is merged later if step 2 or 3 did not happen (the merge
// queue finishes it: roll forward). The freeze is rolled back, by a
// replicated thaw (a FreezeCommand with merge_into 0, which only the store
// proposes), only once L can no longer merge R:
//   - at once, if a merge applied on the node of R's Raft leader subsumed L
//     (mergedAwayHere: L applied its own freeze there first, so it either
//     merged R there before, and R's replica there is marked merged, or
//     never will);
//   - otherwise (e.g. after a restart) once R stays frozen past
//     FreezeTimeout and L has no replica on that node and no meta record:
//     L was merged away or never existed, and since merges need colocated
//     replicas and a subsuming L stops R's replica on every node where it
//     applies, L never subsumed R.

// mergeApplied is what a committed merge hands to the store.
type mergeApplied struct {
	merged  *rspb.RangeDescriptor
	right   *rspb.RangeDescriptor
	rightSM *stateMachine // the local replica of right, marked merged (nil if none)
}

// applyFreeze marks the range frozen for a merge into cmd.MergeInto.
func (s *stateMachine) applyFreeze(b *kv.Batch, st *applyState, f *rspb.FreezeCommand) (*rspb.RaftResult, error) {
	switch {
	case f.MergeInto == 0:
		// The thaw: a rollback of a freeze whose merge cannot happen.
		if st.frozen != 0 {
			if err := b.DeleteRaw(rangeStateKey(s.rangeID, suffixFrozen)); err != nil {
				return nil, err
			}
			st.frozen = 0
		}
		return &rspb.RaftResult{}, nil
	case st.frozen == f.MergeInto:
		return &rspb.RaftResult{}, nil
	case st.frozen != 0:
		return &rspb.RaftResult{Error: rangeErr(rspb.RangeError_FAILED_PRECONDITION,
			fmt.Sprintf("r%d is already frozen for a merge into r%d", s.rangeID, st.frozen))}, nil
	}
	if err := b.PutRaw(rangeStateKey(s.rangeID, suffixFrozen), encodeUint64(f.MergeInto)); err != nil {
		return nil, err
	}
	st.frozen = f.MergeInto
	return &rspb.RaftResult{}, nil
}

// applyMerge widens the range over the frozen right neighbour.
func (s *stateMachine) applyMerge(b *kv.Batch, st *applyState, mg *rspb.MergeCommand) (*rspb.RaftResult, error) {
	desc, r, merged := st.desc, mg.Right, mg.Merged
	reject := func(why string) (*rspb.RaftResult, error) {
		return &rspb.RaftResult{Error: rangeErr(rspb.RangeError_FAILED_PRECONDITION, fmt.Sprintf("r%d: merge refused: %s", s.rangeID, why))}, nil
	}
	switch {
	case r == nil || merged == nil:
		return reject("missing descriptors")
	case !bytes.Equal(r.StartKey, desc.EndKey) || r.RangeId == s.rangeID:
		return reject("not the right neighbour")
	case merged.RangeId != s.rangeID || !bytes.Equal(merged.StartKey, desc.StartKey) || !bytes.Equal(merged.EndKey, r.EndKey):
		return reject("merged descriptor does not cover both ranges")
	case merged.Generation != max(desc.Generation, r.Generation)+1:
		return reject("bad generation")
	}
	// R's dedup records move under L, so a retried write that applied on R
	// is still answered from its record.
	dp := rangeStateKey(r.RangeId, suffixDedup)
	it, err := b.NewIter(dp, prefixEnd(dp))
	if err != nil {
		return nil, err
	}
	type kvPair struct{ k, v []byte }
	var moved []kvPair
	for ok := it.First(); ok; ok = it.Next() {
		k := append(rangeStateKey(s.rangeID, suffixDedup), it.Key()[len(dp):]...)
		moved = append(moved, kvPair{k, append([]byte(nil), it.Value()...)})
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	for _, p := range moved {
		if err := b.PutRaw(p.k, p.v); err != nil {
			return nil, err
		}
	}
	rp := rangeStatePrefix(r.RangeId)
	if err := b.DeleteRawRange(rp, prefixEnd(rp)); err != nil {
		return nil, err
	}
	pp := replicaStateRangePrefix(r.RangeId)
	if err := b.DeleteRawRange(pp, prefixEnd(pp)); err != nil {
		return nil, err
	}
	data, err := proto.Marshal(merged)
	if err != nil {
		return nil, err
	}
	if err := b.PutRaw(rangeStateKey(s.rangeID, suffixDescriptor), data); err != nil {
		return nil, err
	}
	if rs := TSFromProto(mg.RightServedBelow); st.maxWrite.Less(rs) {
		if err := b.PutRaw(rangeStateKey(s.rangeID, suffixMaxWriteTS), encodeTS(rs)); err != nil {
			return nil, err
		}
		st.maxWrite = rs
	}
	st.size += max(mg.RightBytes, 0)
	st.desc = merged
	st.merges = append(st.merges, &mergeApplied{merged: merged, right: r})
	return &rspb.RaftResult{}, nil
}

// subsume runs on the left range's apply goroutine before a merge commits:
// the right range is never started again by this process, and a running
// replica of it is marked merged (its Update writes nothing from now on).
func (s *Store) subsume(rangeID uint64) *stateMachine {
	s.startMu.Lock()
	s.subsumed[rangeID] = true
	s.startMu.Unlock()
	r := s.replica(rangeID)
	if r == nil {
		return nil
	}
	r.sm.applyMu.Lock()
	r.sm.merged.Store(true)
	r.sm.applyMu.Unlock()
	return r.sm
}

// onMerge runs after a merge committed: the subsumed local replica is
// stopped and forgotten (its state was deleted in the merge's batch).
func (s *Store) onMerge(mg *mergeApplied) {
	s.mergedInto.Store(mg.right.RangeId, mg.merged.RangeId)
	s.tasks.run(func(context.Context) { s.removeSubsumed(mg.right.RangeId, mg.rightSM) })
}

// subsumedBy returns the local descriptor of the range that now holds the
// dedup records of rangeID, which merges here moved into it (following
// merges of merges), or nil if no merge here subsumed rangeID.
func (s *Store) subsumedBy(rangeID uint64) *rspb.RangeDescriptor {
	id := rangeID
	for hops := 0; hops < 64; hops++ {
		into, ok := s.mergedInto.Load(id)
		if !ok {
			break
		}
		id = into.(uint64)
	}
	if id == rangeID {
		return nil
	}
	if r := s.replica(id); r != nil && !r.sm.merged.Load() {
		return r.desc()
	}
	return nil
}

// mergedAwayHere reports whether a merge applied here (while this process
// runs) subsumed rangeID. Such a range never merges anything again: every
// replica of it applied its freeze before the merge was proposed, and a
// frozen range applies no merge, so a merge of a right neighbour either
// applied here before that freeze (and marked the neighbour's local replica
// merged) or never will.
func (s *Store) mergedAwayHere(rangeID uint64) bool {
	_, ok := s.mergedInto.Load(rangeID)
	return ok && !s.cfg.TestingForgetMerges
}

// freezeInfo answers a freeze request at a replica that has applied the
// freeze: any replica, no lease needed.
func (r *Replica) freezeInfo() *rspb.AdminFreezeResponse {
	d := r.desc()
	served := r.store.cfg.Clock.Now()
	served.WallTime += int64(r.store.cfg.Clock.MaxOffset())
	for _, sp := range rangeTSSpans(d.StartKey, d.EndKey) {
		if hi := r.tscache.max(sp); served.Less(hi) {
			served = hi
		}
	}
	r.sm.mu.RLock()
	if served.Less(r.sm.maxWriteTS) {
		served = r.sm.maxWriteTS
	}
	r.sm.mu.RUnlock()
	return &rspb.AdminFreezeResponse{FreezeIndex: r.sm.applied.Load(), ServedBelow: TSToProto(served.Next()), Bytes: r.sm.size.Load(), RangeDescriptor: d}
}

// adminFreeze freezes this range for a merge into req.MergeInto. A replica
// that already applied that freeze answers at once (merge step 2 probes
// every replica this way).
func (r *Replica) adminFreeze(ctx context.Context, req *rspb.AdminFreezeRequest) *rspb.RangeResponse {
	if f := r.sm.frozen.Load(); f != 0 {
		if f != req.MergeInto {
			return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_FAILED_PRECONDITION, fmt.Sprintf("r%d is frozen for a merge into r%d", r.rangeID, f))}
		}
		if req.Probe {
			// Make everything this replica applied (all of the range's
			// writes: nothing applies after the freeze) durable before the
			// merge may be proposed: after a crash, the merge must not be
			// re-applied ahead of writes this replica would still replay.
			if err := r.store.eng.Sync(); err != nil {
				return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: syncing before the merge: %v", r.rangeID, err))}
			}
		}
		return &rspb.RangeResponse{Admin: &rspb.RangeResponse_AdminFreeze{AdminFreeze: r.freezeInfo()}}
	}
	if req.Probe {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d on n%d has not applied the freeze yet", r.rangeID, r.store.NodeID()))}
	}
	if rerr := r.checkMergeTarget(req.MergeInto); rerr != nil {
		return &rspb.RangeResponse{Error: rerr}
	}
	lease, rerr := r.ensureLease(ctx)
	if rerr != nil {
		return &rspb.RangeResponse{Error: rerr}
	}
	desc := r.desc()
	if g := req.ExpectedGeneration; g != 0 && g != desc.Generation {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_FAILED_PRECONDITION, fmt.Sprintf("r%d changed (generation %d, expected %d)", r.rangeID, desc.Generation, g))}
	}
	l, err := r.latches.acquire(ctx, []span{{start: desc.StartKey, end: desc.EndKey}}, true)
	if err != nil {
		return &rspb.RangeResponse{Error: r.mapRaftError(err)}
	}
	defer r.latches.release(l)
	if rerr := r.checkMergeTarget(req.MergeInto); rerr != nil {
		return &rspb.RangeResponse{Error: rerr}
	}
	cmd := &rspb.RaftCommand{ProposalId: newID(), Timestamp: TSToProto(r.store.cfg.Clock.Now()), LeaseSequence: lease.Sequence,
		Generation: desc.Generation, Command: &rspb.RaftCommand_Freeze{Freeze: &rspb.FreezeCommand{MergeInto: req.MergeInto}}}
	res, rerr := r.propose(ctx, cmd)
	if rerr != nil {
		return &rspb.RangeResponse{Error: rerr}
	}
	if res.Error != nil {
		return &rspb.RangeResponse{Error: res.Error}
	}
	r.store.crashPoint("merge-frozen")
	return &rspb.RangeResponse{Admin: &rspb.RangeResponse_AdminFreeze{AdminFreeze: r.freezeInfo()}}
}

// checkMergeTarget refuses a freeze unless into is the range's left
// neighbour as this node knows it: a local replica (merges need colocated
// replicas) of a range ending where this one starts. A freeze naming
// anything else would leave the range frozen for a merge that never comes.
func (r *Replica) checkMergeTarget(into uint64) *rspb.RangeError {
	desc := r.desc()
	if desc == nil {
		return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d on n%d has no data yet", r.rangeID, r.store.NodeID()))
	}
	if into == 0 {
		return rangeErr(rspb.RangeError_INVALID_ARGUMENT, fmt.Sprintf("r%d: freeze without a merge target (merge_into 0)", r.rangeID))
	}
	lm := r.store.replica(into)
	var ld *rspb.RangeDescriptor
	if lm != nil && !lm.sm.merged.Load() {
		ld = lm.desc()
	}
	if ld == nil || !bytes.Equal(ld.EndKey, desc.StartKey) {
		where := "no replica of it on this node"
		if ld != nil {
			where = fmt.Sprintf("it spans [%s, %s)", keys.Pretty(ld.StartKey), keys.Pretty(ld.EndKey))
		}
		return rangeErr(rspb.RangeError_FAILED_PRECONDITION, fmt.Sprintf("r%d cannot be frozen for a merge into r%d: r%d is not its left neighbour (%s; r%d starts at %s)",
			r.rangeID, into, into, where, r.rangeID, keys.Pretty(desc.StartKey)))
	}
	return nil
}

// adminMerge merges this range (L, led here) with its right neighbour.
func (r *Replica) adminMerge(ctx context.Context, lease *rspb.Lease, req *rspb.AdminMergeRequest) *rspb.RangeResponse {
	fail := func(code rspb.RangeError_Code, format string, args ...any) *rspb.RangeResponse {
		return &rspb.RangeResponse{Error: rangeErr(code, fmt.Sprintf(format, args...))}
	}
	desc := r.desc()
	if g := req.ExpectedGeneration; g != 0 && g != desc.Generation {
		// The caller's descriptor is stale: RANGE_KEY_MISMATCH carries the
		// current one, so a router can tell a merge an earlier attempt of
		// its own made (the range grew past the end it pinned) from any
		// other change.
		return &rspb.RangeResponse{Error: &rspb.RangeError{Code: rspb.RangeError_RANGE_KEY_MISMATCH, RangeDescriptor: desc,
			Message: fmt.Sprintf("r%d changed since the merge was decided (generation %d, expected %d)", r.rangeID, desc.Generation, g)}}
	}
	if !keys.IsUserKey(desc.StartKey) {
		return fail(rspb.RangeError_INVALID_ARGUMENT, "r%d is a system range; only ranges of the user span merge", r.rangeID)
	}
	snd := r.store.getSender()
	if snd == nil {
		return fail(rspb.RangeError_UNAVAILABLE, "merges need the cluster sender, which is not connected")
	}
	if bytes.Compare(desc.EndKey, keys.UserSpanEnd) >= 0 {
		return fail(rspb.RangeError_FAILED_PRECONDITION, "r%d is the last range; nothing to merge", r.rangeID)
	}
	rm, rerr := r.rightNeighbour(ctx, snd, desc)
	if rerr != nil {
		return &rspb.RangeResponse{Error: rerr}
	}
	right := rm.desc()
	if !keys.IsUserKey(right.StartKey) {
		return fail(rspb.RangeError_INVALID_ARGUMENT, "r%d cannot be merged", right.RangeId)
	}
	if !sameNodes(desc, right) {
		return fail(rspb.RangeError_FAILED_PRECONDITION, "r%d and r%d have replicas on different nodes", r.rangeID, right.RangeId)
	}
	// 1. Freeze the right side (through its leaseholder).
	fr, err := snd.SendToRange(ctx, right, &rspb.RangeRequest{RangeId: right.RangeId,
		Admin: &rspb.RangeRequest_AdminFreeze{AdminFreeze: &rspb.AdminFreezeRequest{MergeInto: r.rangeID, ExpectedGeneration: right.Generation}}})
	if err != nil {
		return fail(rspb.RangeError_UNAVAILABLE, "freezing r%d: %v", right.RangeId, err)
	}
	if fr.Error != nil {
		return &rspb.RangeResponse{Error: fr.Error}
	}
	frozen := fr.GetAdminFreeze()
	right = frozen.RangeDescriptor
	if !bytes.Equal(right.StartKey, desc.EndKey) || !sameNodes(desc, right) {
		return fail(rspb.RangeError_FAILED_PRECONDITION, "r%d changed before it froze", right.RangeId)
	}
	// 2. Every replica of the right side has applied the freeze.
	for _, rep := range right.Replicas {
		for {
			pr, err := snd.SendToNode(ctx, rep.NodeId, &rspb.RangeRequest{RangeId: right.RangeId,
				Admin: &rspb.RangeRequest_AdminFreeze{AdminFreeze: &rspb.AdminFreezeRequest{MergeInto: r.rangeID, Probe: true}}})
			if err == nil && pr.Error == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fail(rspb.RangeError_UNAVAILABLE, "waiting for r%d's replica on n%d to apply the freeze: %v", right.RangeId, rep.NodeId, ctx.Err())
			case <-r.store.cfg.TimeSource.After(50 * time.Millisecond):
			}
		}
	}
	r.store.crashPoint("merge-before-propose")
	// 3. Subsume it.
	release, rerr := r.holdRange(ctx, lease, desc, "merge")
	if rerr != nil {
		return &rspb.RangeResponse{Error: rerr}
	}
	defer release()
	merged := proto.Clone(desc).(*rspb.RangeDescriptor)
	merged.EndKey = right.EndKey
	merged.Generation = max(desc.Generation, right.Generation) + 1
	// The left side's replicas stay; no ID either side used is handed out again.
	merged.NextReplicaId = max(NextReplicaID(desc), NextReplicaID(right))
	cmd := &rspb.RaftCommand{ProposalId: newID(), Timestamp: TSToProto(r.store.cfg.Clock.Now()), LeaseSequence: lease.Sequence,
		Generation: desc.Generation, Command: &rspb.RaftCommand_Merge{Merge: &rspb.MergeCommand{Right: right, Merged: merged, RightServedBelow: frozen.ServedBelow, RightBytes: frozen.Bytes}}}
	res, rerr := r.propose(ctx, cmd)
	if rerr != nil {
		return &rspb.RangeResponse{Error: rerr}
	}
	if res.Error != nil {
		return &rspb.RangeResponse{Error: res.Error}
	}
	// Reads on the right's span here start above everything it served.
	// So do pushes of transactions anchored there (record markers).
	for _, sp := range rangeTSSpans(right.StartKey, right.EndKey) {
		r.tscache.add(sp, TSFromProto(frozen.ServedBelow), "")
	}
	if r.store.cfg.Metrics != nil {
		r.store.cfg.Metrics.merges.Inc()
	}
	r.store.log.Info("ranges merged", "left", r.rangeID, "right", right.RangeId, "span", fmt.Sprintf("[%s, %s)", keys.Pretty(merged.StartKey), keys.Pretty(merged.EndKey)))
	r.store.crashPoint("merge-before-meta")
	if _, err := r.store.fixMeta(ctx, snd, merged); err != nil {
		r.store.log.Warn("meta update after merge failed; the meta loop will repair it", "range", r.rangeID, "err", err)
	} else if err := r.store.cleanMeta(ctx, snd, merged); err != nil {
		r.store.log.Warn("meta cleanup after merge failed; the meta loop will repair it", "range", r.rangeID, "err", err)
	}
	return &rspb.RangeResponse{Admin: &rspb.RangeResponse_AdminMerge{AdminMerge: &rspb.AdminMergeResponse{Merged: merged, Absorbed: right}}}
}

// rightNeighbour returns the local replica of the range starting at
// desc.EndKey. A neighbour that meta says has a replica here, but that is
// not loaded here yet (just split off, still opening), is waited for within
// ctx; one without a replica here is a FAILED_PRECONDITION.
func (r *Replica) rightNeighbour(ctx context.Context, snd Sender, desc *rspb.RangeDescriptor) (*Replica, *rspb.RangeError) {
	for {
		if rm := r.store.localByStart()[string(desc.EndKey)]; rm != nil {
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
		if right == nil || !hasReplicaOn(right, r.store.NodeID()) {
			return nil, rangeErr(rspb.RangeError_FAILED_PRECONDITION, fmt.Sprintf("r%d has no right neighbour with a replica on n%d (merges need colocated replicas)", desc.RangeId, r.store.NodeID()))
		}
		select {
		case <-ctx.Done():
			return nil, rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: its right neighbour r%d is not loaded on n%d yet: %v", desc.RangeId, right.RangeId, r.store.NodeID(), ctx.Err()))
		case <-r.store.cfg.TimeSource.After(20 * time.Millisecond):
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

// cleanMeta deletes meta records strictly inside d's span (ending before
// d's end) that are older than d: the records of ranges d subsumed.
func (s *Store) cleanMeta(ctx context.Context, snd Sender, d *rspb.RangeDescriptor) error {
	recs, err := scanMeta(ctx, snd, keys.MetaKey(keys.Next(d.StartKey)), keys.MetaKey(d.EndKey))
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if err := s.deleteStaleMeta(ctx, snd, rec, d); err != nil {
			return err
		}
	}
	return nil
}

// sameNodes reports whether a and b have voters on the same nodes and no
// other replicas (merges need colocated voters).
func sameNodes(a, b *rspb.RangeDescriptor) bool {
	if len(a.Replicas) != len(b.Replicas) {
		return false
	}
	nodes := map[uint64]bool{}
	for _, r := range a.Replicas {
		nodes[r.NodeId] = r.Type == rspb.ReplicaType_VOTER
	}
	for _, r := range b.Replicas {
		// A non-voter is a replica change in flight: no merge meanwhile.
		if !nodes[r.NodeId] || r.Type != rspb.ReplicaType_VOTER {
			return false
		}
	}
	return true
}

func isShardGone(err error) bool {
	return errors.Is(err, dragonboat.ErrShardNotFound) || errors.Is(err, dragonboat.ErrClosed)
}

func newID() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return b
}

// onSnapshot runs after a replica installed a snapshot. If its new span
// covers other local replicas (ranges it subsumed by merges this replica
// did not apply), those are stale: the snapshot already replaced their data;
// their state is deleted and they are stopped.
func (s *Store) onSnapshot(m *stateMachine) {
	d := m.desc.Load()
	if d == nil {
		return
	}
	s.mu.RLock()
	var stale []*stateMachine
	for id, o := range s.replicas {
		od := o.desc()
		if id == m.rangeID || od == nil || o.sm.merged.Load() {
			continue
		}
		if keys.Overlaps(od.StartKey, od.EndKey, d.StartKey, d.EndKey) && od.Generation < d.Generation {
			stale = append(stale, o.sm)
		}
	}
	s.mu.RUnlock()
	for _, o := range stale {
		s.destroySubsumed(o)
	}
}

// destroySubsumed deletes a stale local replica's range and replica state
// (never data: that belongs to the range now covering it) and stops it.
func (s *Store) destroySubsumed(o *stateMachine) {
	s.subsume(o.rangeID)
	if err := s.deleteReplicaState(o, nil); err != nil {
		s.log.Error("deleting the state of a subsumed replica", "range", o.rangeID, "err", err)
	}
	s.tasks.run(func(context.Context) { s.removeSubsumed(o.rangeID, o) })
}

// deleteReplicaState deletes a local replica's range-local and
// replica-local state (its ReplicaRecord among it, so it is never started
// again) and, if data is set, the MVCC data of data's span, in one synced
// batch, under the replica's applyMu (with what also adds to it). The caller has marked the range
// subsumed (s.subsume) first, so the replica applies nothing more.
func (s *Store) deleteReplicaState(o *stateMachine, data *rspb.RangeDescriptor, also ...func(b *kv.Batch) error) error {
	o.applyMu.Lock()
	defer o.applyMu.Unlock()
	b := s.eng.NewBatch()
	defer b.Close()
	rp, pp := rangeStatePrefix(o.rangeID), replicaStateRangePrefix(o.rangeID)
	if err := b.DeleteRawRange(rp, prefixEnd(rp)); err != nil {
		return err
	}
	if err := b.DeleteRawRange(pp, prefixEnd(pp)); err != nil {
		return err
	}
	if data != nil {
		if err := kv.ClearRangeData(b, data.StartKey, data.EndKey); err != nil {
			return err
		}
	}
	for _, f := range also {
		if err := f(b); err != nil {
			return err
		}
	}
	return b.Commit(true)
}

// DefaultFreezeTimeout is how long a range may stay frozen for a merge
// before its merge is checked (StoreConfig.FreezeTimeout).
const DefaultFreezeTimeout = time.Minute

// watchFrozen runs from the lease loop for every local replica: it tracks
// how long the range has been frozen here, warns while it stays frozen past
// FreezeTimeout, and then (at R's Raft leader, one check at a time) rolls
// the freeze back if its merge can no longer happen (maybeThaw). It checks
// at once when the merge target was merged away here.
func (r *Replica) watchFrozen() {
	if r.sm.merged.Load() {
		return
	}
	into := r.sm.frozen.Load()
	now := r.store.cfg.TimeSource.Now()
	if into == 0 {
		r.frozenSince.Store(0)
		return
	}
	since := r.frozenSince.Load()
	if since == 0 {
		r.frozenSince.Store(now.UnixNano())
		return
	}
	age := now.Sub(time.Unix(0, since))
	// A target merged away here can never merge r: no need to wait.
	gone := r.store.mergedAwayHere(into)
	if age < r.store.cfg.FreezeTimeout && !gone {
		return
	}
	last, every := r.lastFrozenCheck.Load(), r.store.cfg.FreezeTimeout/2
	if gone {
		every = r.store.electionTimeout()
	}
	if now.UnixNano()-last < int64(every) || !r.lastFrozenCheck.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	if !gone {
		r.store.log.Warn("range frozen for a merge that has not completed", "range", r.rangeID, "into", into, "frozen_for", age.Round(time.Second).String())
	}
	if leader, ok := r.store.leaderOf(r.rangeID); !ok || leader != r.replicaID || r.store.stopping.Load() {
		return
	}
	if !r.thawing.CompareAndSwap(false, true) {
		return
	}
	if !r.store.tasks.run(func(ctx context.Context) {
		defer r.thawing.Store(false)
		r.maybeThaw(ctx, into)
	}) {
		r.thawing.Store(false)
	}
}

// maybeThaw rolls back m's freeze for a merge into `into` if that merge can
// no longer happen: into was merged away here, or it has no replica here (a
// range that subsumes m must have one on every node of m) and no meta
// record. Otherwise the merge may
// still come, and the freeze stays (roll forward).
func (r *Replica) maybeThaw(ctx context.Context, into uint64) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	targetLocal := func() bool {
		lm := r.store.replica(into)
		return lm != nil && !lm.sm.merged.Load()
	}
	why := "the range it was to merge into was merged away on this node"
	if !r.store.mergedAwayHere(into) {
		why = "the range it was to merge into no longer exists"
		snd := r.store.getSender()
		if targetLocal() || snd == nil {
			return
		}
		recs, err := scanMeta(ctx, snd, keys.MetaPrefix, keys.MetaSpanEnd)
		if err != nil {
			r.store.log.Debug("frozen range: reading meta failed", "range", r.rangeID, "err", err)
			return
		}
		for _, rec := range recs {
			if rec.desc.RangeId == into {
				return // it exists elsewhere: its merge may still come
			}
		}
	}
	if targetLocal() || r.sm.frozen.Load() != into || r.sm.merged.Load() || r.store.stopping.Load() {
		return
	}
	desc := r.desc()
	if desc == nil {
		return
	}
	cmd := &rspb.RaftCommand{ProposalId: newID(), Timestamp: TSToProto(r.store.cfg.Clock.Now()), LeaseSequence: r.lease().Sequence,
		Generation: desc.Generation, Command: &rspb.RaftCommand_Freeze{Freeze: &rspb.FreezeCommand{}}}
	res, rerr := r.propose(ctx, cmd)
	if rerr == nil && res.Error != nil {
		rerr = res.Error
	}
	if rerr != nil {
		r.store.log.Warn("rolling back a freeze failed; will retry", "range", r.rangeID, "into", into, "err", rerr.Message)
		return
	}
	r.store.log.Warn("freeze rolled back: "+why, "range", r.rangeID, "into", into)
}
