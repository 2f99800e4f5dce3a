package ranges

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Replica changes (adding and removing replicas of a range). The store
// that takes the request (ChangeReplicas) drives it: for each replica to
// add or remove it asks the range's leaseholder, again and again, for the
// next step (AdminChangeReplicasRequest); the leaseholder reads the
// descriptor and Dragonboat's membership, asks decideReplicaChange
// (changedecision.go) what comes next, takes that one step and answers.
// Nothing about the change lives in memory but the catch-up mark of a new
// replica, so a change cut off anywhere resumes from what the descriptor
// and the membership show.

// changeStepTimeout bounds the work of one step at the leaseholder.
const changeStepTimeout = 10 * time.Second

// applyChangeReplicas replaces the range's descriptor (checkApply has
// admitted the lease and generation; checkReplicaChange the change).
func (s *stateMachine) applyChangeReplicas(b *kv.Batch, st *applyState, c *rspb.ChangeReplicasCommand) (*rspb.RaftResult, error) {
	if why := checkReplicaChange(st.desc, c.Next, st.lease); why != "" {
		return &rspb.RaftResult{Error: rangeErr(rspb.RangeError_FAILED_PRECONDITION, fmt.Sprintf("r%d: replica change refused: %s", s.rangeID, why))}, nil
	}
	data, err := proto.Marshal(c.Next)
	if err != nil {
		return nil, err
	}
	if err := b.PutRaw(rangeStateKey(s.rangeID, suffixDescriptor), data); err != nil {
		return nil, err
	}
	st.desc = c.Next
	return &rspb.RaftResult{}, nil
}

// NodeRaftAddress is the Raft address of a node as this store knows it
// (the cluster record); the one lookup replica changes use, so that a
// dynamic node directory can replace it.
func (s *Store) NodeRaftAddress(nodeID uint64) (string, bool) {
	cr := s.ClusterRecord()
	if cr == nil {
		return "", false
	}
	for _, n := range cr.Nodes {
		if n.NodeId == nodeID && n.RaftAddress != "" {
			return n.RaftAddress, true
		}
	}
	return "", false
}

// removedHere reports whether the replica's own descriptor no longer lists
// its replica ID (a replica change removed it): it serves nothing from then
// on. A descriptor naming no replica at all (never written by a store:
// every change keeps a voter) names nobody removed.
func (r *Replica) removedHere() bool {
	d := r.desc()
	if d == nil || len(d.Replicas) == 0 {
		return false
	}
	for _, rep := range d.Replicas {
		if rep.ReplicaId == r.replicaID {
			return false
		}
	}
	return true
}

// changeState is a replica's in-memory part of replica changes it leads.
type changeState struct {
	mu sync.Mutex // one step at a time per range at this leaseholder
	// lastStep is when a step of a change of this range last started here
	// (unix nanoseconds; InChange).
	lastStep atomic.Int64
	// want: replica ID -> the applied index it must reach before its
	// promotion (this replica's applied index when it joined Raft).
	want sync.Map
}

// adminChangeReplicas takes the next step of adding or removing the
// replica on req.NodeId (see decideReplicaChange) and reports it.
func (r *Replica) adminChangeReplicas(ctx context.Context, lease *rspb.Lease, req *rspb.AdminChangeReplicasRequest) *rspb.RangeResponse {
	fail := func(code rspb.RangeError_Code, format string, args ...any) *rspb.RangeResponse {
		return &rspb.RangeResponse{Error: rangeErr(code, fmt.Sprintf(format, args...))}
	}
	r.change.lastStep.Store(r.store.cfg.TimeSource.Now().UnixNano())
	if !r.change.mu.TryLock() {
		// A step cut off by its caller may still run; the caller retries.
		return fail(rspb.RangeError_UNAVAILABLE, "r%d: a replica change step is still running on n%d", r.rangeID, r.store.NodeID())
	}
	defer r.change.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, changeStepTimeout)
	defer cancel()
	snd := r.store.getSender()
	if snd == nil {
		return fail(rspb.RangeError_UNAVAILABLE, "replica changes need the cluster sender, which is not connected")
	}
	desc := r.desc()
	m, err := r.store.nh.SyncGetShardMembership(ctx, r.rangeID)
	if err != nil {
		return &rspb.RangeResponse{Error: r.mapRaftError(err)}
	}
	addr, _ := r.store.NodeRaftAddress(req.NodeId)
	if !req.Remove && !req.NonVoter && r.store.ReadReplicaNode(req.NodeId) {
		return fail(rspb.RangeError_FAILED_PRECONDITION, "r%d: n%d is a read-replica node: it never holds a voter", r.rangeID, req.NodeId)
	}
	f := replicaChangeFacts{Desc: desc, Remove: req.Remove, NonVoter: req.NonVoter, NodeID: req.NodeId, NodeAddr: addr,
		Voters: m.Nodes, NonVoters: m.NonVotings, Removed: map[uint64]bool{}, LeaseNode: lease.NodeId,
		ReadReplicaNodes: map[uint64]bool{}}
	for _, rep := range desc.Replicas {
		if r.store.ReadReplicaNode(rep.NodeId) {
			f.ReadReplicaNodes[rep.NodeId] = true
		}
	}
	for id := range m.Removed {
		f.Removed[id] = true
	}
	d := decideReplicaChange(f)
	// Facts that cost a round trip, asked only when the decision needs them.
	if d.Step == changeAskCompaction {
		ok := r.votersCompacted(ctx, snd, desc)
		f.LogsCompacted = &ok
		d = decideReplicaChange(f)
	}
	if d.Step == changeStartReplica {
		applied, rerr := r.startOn(ctx, snd, req.NodeId, desc, d.ReplicaID)
		if rerr != nil {
			return &rspb.RangeResponse{Error: rerr}
		}
		f.TargetApplied = &applied
		if v, ok := r.change.want.Load(d.ReplicaID); ok {
			f.WantApplied = v.(uint64)
		} else {
			// Joined under another leaseholder (or before a restart).
			f.WantApplied = r.sm.applied.Load()
			r.change.want.Store(d.ReplicaID, f.WantApplied)
		}
		d = decideReplicaChange(f)
	}
	out := &rspb.AdminChangeReplicasResponse{Step: d.Step.String(), Reason: d.Reason}
	answer := func() *rspb.RangeResponse {
		out.RangeDescriptor = r.desc()
		return &rspb.RangeResponse{Admin: &rspb.RangeResponse_AdminChangeReplicas{AdminChangeReplicas: out}}
	}
	raftErr := func(what string, err error) *rspb.RangeResponse {
		if errors.Is(err, dragonboat.ErrRejected) {
			// The membership changed since it was read: decide again.
			out.Reason = fmt.Sprintf("%s: the Raft membership changed meanwhile; the next step re-reads it", what)
			return answer()
		}
		re := r.mapRaftError(err)
		re.Message = fmt.Sprintf("r%d: %s: %s", r.rangeID, what, re.Message)
		return &rspb.RangeResponse{Error: re}
	}
	switch d.Step {
	case changeDone, changeRefuse, changeStartReplica, changeAskCompaction:
	default:
		// A step that changes something: fault tests may stop the node
		// before it (crash point "replica-change-<step>").
		r.store.crashPoint("replica-change-" + d.Step.String())
		if r.store.cfg.Metrics != nil {
			r.store.cfg.Metrics.replicaChanges.WithLabelValues(d.Step.String()).Inc()
		}
	}
	switch d.Step {
	case changeDone:
		out.Done = true
		return answer()
	case changeRefuse:
		return fail(rspb.RangeError_FAILED_PRECONDITION, "r%d: %s", r.rangeID, d.Reason)
	case changeStartReplica:
		return answer() // still catching up
	case changeDescAddNonVoter, changeDescPromote, changeDescRemove:
		next := proto.Clone(desc).(*rspb.RangeDescriptor)
		next.Generation++
		next.NextReplicaId = NextReplicaID(desc)
		switch d.Step {
		case changeDescAddNonVoter:
			// A standing non-voter says so in the descriptor: it does not
			// hold other changes or splits up as a learner does.
			next.Replicas = append(next.Replicas, &rspb.ReplicaDescriptor{NodeId: req.NodeId, ReplicaId: d.ReplicaID, Type: rspb.ReplicaType_NON_VOTER,
				Standing: req.NonVoter})
			next.NextReplicaId = d.ReplicaID + 1
		case changeDescPromote:
			for _, rep := range next.Replicas {
				if rep.ReplicaId == d.ReplicaID {
					rep.Type, rep.Standing = rspb.ReplicaType_VOTER, false
				}
			}
		case changeDescRemove:
			kept := next.Replicas[:0]
			for _, rep := range next.Replicas {
				if rep.ReplicaId != d.ReplicaID {
					kept = append(kept, rep)
				}
			}
			next.Replicas = kept
		}
		sort.Slice(next.Replicas, func(i, j int) bool { return next.Replicas[i].ReplicaId < next.Replicas[j].ReplicaId })
		if rerr := r.proposeDescriptor(ctx, lease, desc, next); rerr != nil {
			return &rspb.RangeResponse{Error: rerr}
		}
		r.store.log.Info("replica change: descriptor changed", "range", r.rangeID, "step", d.Step.String(), "generation", next.Generation, "reason", d.Reason)
		// The descriptor changed, meta not yet: crash point
		// "replica-change-<step>-before-meta".
		r.store.crashPoint("replica-change-" + d.Step.String() + "-before-meta")
		// Meta follows (the meta loop repairs it if this fails).
		if _, err := r.store.fixMeta(ctx, snd, next); err != nil {
			r.store.log.Warn("meta update after a replica change failed; the meta loop will repair it", "range", r.rangeID, "err", err)
		}
		return answer()
	case changeAskCompaction:
		return answer() // a voter's log still holds the first entries: asked again
	case changeRaftAddNonVoter:
		if err := r.store.nh.SyncRequestAddNonVoting(ctx, r.rangeID, d.ReplicaID, addr, m.ConfigChangeID); err != nil {
			return raftErr("adding a non-voter to Raft", err)
		}
		r.change.want.Store(d.ReplicaID, r.sm.applied.Load())
	case changeRaftPromote:
		if err := r.store.nh.SyncRequestAddReplica(ctx, r.rangeID, d.ReplicaID, addr, m.ConfigChangeID); err != nil {
			return raftErr("promoting a non-voter in Raft", err)
		}
		r.change.want.Delete(d.ReplicaID)
	case changeTransferLease:
		if d.LeaseTo == 0 {
			return fail(rspb.RangeError_FAILED_PRECONDITION, "r%d: no other voter to take the lease", r.rangeID)
		}
		if err := r.transferLease(ctx, d.LeaseTo, true); err != nil {
			re, ok := asRangeError(err)
			if !ok {
				re = rangeErr(rspb.RangeError_UNAVAILABLE, err.Error())
			}
			if re.Code != rspb.RangeError_NOT_LEASEHOLDER {
				re.Code = rspb.RangeError_UNAVAILABLE // retried by the caller
			}
			re.Message = fmt.Sprintf("r%d: moving the lease off n%d before removing its replica: %s", r.rangeID, req.NodeId, re.Message)
			return &rspb.RangeResponse{Error: re}
		}
		// The next step runs at the new leaseholder.
		return &rspb.RangeResponse{Error: notLeaseholder(r.rangeID, d.LeaseTo, "r%d: lease moved to n%d before removing the replica on n%d", r.rangeID, d.LeaseTo, req.NodeId)}
	case changeRaftRemove:
		if err := r.store.nh.SyncRequestDeleteReplica(ctx, r.rangeID, d.ReplicaID, m.ConfigChangeID); err != nil {
			return raftErr("removing a replica from Raft", err)
		}
		// Tell the node (best effort: its replica GC also finds out from
		// meta).
		gc := &rspb.RangeRequest{RangeId: r.rangeID, Admin: &rspb.RangeRequest_AdminReplicaGc{AdminReplicaGc: &rspb.AdminReplicaGCRequest{RangeDescriptor: r.desc()}}}
		if resp, err := snd.SendToNode(ctx, req.NodeId, gc); err != nil || resp.Error != nil {
			r.store.log.Info("replica change: the removed replica's node did not confirm its GC", "range", r.rangeID, "node", req.NodeId, "err", err, "resp", resp.GetError().GetMessage())
		}
	}
	r.store.log.Info("replica change: raft membership changed", "range", r.rangeID, "step", d.Step.String(), "reason", d.Reason)
	return answer()
}

// proposeDescriptor proposes a ChangeReplicasCommand replacing desc by next,
// with the range's traffic held (writes evaluated under desc finish first).
func (r *Replica) proposeDescriptor(ctx context.Context, lease *rspb.Lease, desc, next *rspb.RangeDescriptor) *rspb.RangeError {
	release, rerr := r.holdRange(ctx, lease, desc, "replica change")
	if rerr != nil {
		return rerr
	}
	defer release()
	cmd := &rspb.RaftCommand{ProposalId: newID(), Timestamp: TSToProto(r.store.cfg.Clock.Now()), LeaseSequence: lease.Sequence,
		Generation: desc.Generation, Command: &rspb.RaftCommand_ChangeReplicas{ChangeReplicas: &rspb.ChangeReplicasCommand{Next: next}}}
	res, rerr := r.propose(ctx, cmd)
	if rerr != nil {
		return rerr
	}
	return res.Error
}

// votersCompacted asks every voter's node to compact its log past the
// range's first entries and reports whether all did. A voter on a dead
// node (liveness record expired for the time until store dead) is not
// asked: it cannot answer, and the replacement of a dead voter must not
// wait for it. It cannot lead before it has caught up with the entry
// adding the new replica; if it came back, caught up and were elected
// before the new replica got its snapshot, it could send the first
// entries instead (a window the repair's removal of the dead voter
// closes).
func (r *Replica) votersCompacted(ctx context.Context, snd Sender, desc *rspb.RangeDescriptor) bool {
	for _, rep := range desc.Replicas {
		if rep.Type != rspb.ReplicaType_VOTER {
			continue
		}
		if r.store.nodeDead(rep.NodeId) {
			r.store.log.Info("replica change: not asking a dead voter to compact its log", "range", r.rangeID, "node", rep.NodeId)
			continue
		}
		resp, err := snd.SendToNode(ctx, rep.NodeId, &rspb.RangeRequest{RangeId: r.rangeID, Admin: &rspb.RangeRequest_AdminCompactLog{AdminCompactLog: true}})
		if err != nil || resp.Error != nil || !resp.GetLogCompacted() {
			r.store.log.Info("replica change: a voter's log still holds the first entries", "range", r.rangeID, "node", rep.NodeId, "err", err, "resp", resp.GetError().GetMessage())
			return false
		}
	}
	return true
}

// startOn asks node to start replica id of the range (idempotent) and
// returns its applied index.
func (r *Replica) startOn(ctx context.Context, snd Sender, node uint64, desc *rspb.RangeDescriptor, id uint64) (uint64, *rspb.RangeError) {
	resp, err := snd.SendToNode(ctx, node, &rspb.RangeRequest{RangeId: r.rangeID, Admin: &rspb.RangeRequest_AdminCreateReplica{
		AdminCreateReplica: &rspb.AdminCreateReplicaRequest{RangeDescriptor: desc, ReplicaId: id}}})
	if err != nil {
		return 0, rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: starting replica %d on n%d: %v", r.rangeID, id, node, err))
	}
	if resp.Error != nil {
		re := proto.Clone(resp.Error).(*rspb.RangeError)
		re.Message = fmt.Sprintf("r%d: starting replica %d on n%d: %s", r.rangeID, id, node, re.Message)
		return 0, re
	}
	return resp.GetAdminCreateReplica().GetAppliedIndex(), nil
}

// compactLogForJoin makes sure the local replica's Raft log no longer
// holds the range's first entry (compacting it behind a snapshot if it
// does): a replica joining without state must get a snapshot, never the
// log from index 1 (the range's initial state is not in the log).
func (r *Replica) compactLogForJoin(ctx context.Context) bool {
	first := func() uint64 {
		lr, err := r.store.nh.GetLogReader(r.rangeID)
		if err != nil {
			return 0
		}
		f, _ := lr.GetRange()
		return f
	}
	if first() > 1 {
		return true
	}
	idx, err := r.store.CompactRaftLog(ctx, r.rangeID)
	if err != nil {
		r.store.log.Info("replica change: compacting the log failed", "range", r.rangeID, "err", err)
		return false
	}
	return idx > 0 && r.store.waitLogCompacted(ctx, r.rangeID, 1)
}

// createJoiningReplica starts replica id of a range on this node as a
// joining non-voter (AdminCreateReplicaRequest): its record (joined as a
// non-voter, which it restarts as forever) is written before it starts. An
// existing replica with that ID answers its applied index; another replica
// of the range (a removed one not yet collected) or a replica overlapping
// the span refuses it.
func (s *Store) createJoiningReplica(ctx context.Context, req *rspb.AdminCreateReplicaRequest) *rspb.RangeResponse {
	fail := func(code rspb.RangeError_Code, format string, args ...any) *rspb.RangeResponse {
		return &rspb.RangeResponse{Error: rangeErr(code, fmt.Sprintf(format, args...))}
	}
	d, me := req.RangeDescriptor, s.NodeID()
	if d == nil || req.ReplicaId == 0 || !hasReplicaID(d, me, req.ReplicaId) {
		return fail(rspb.RangeError_INVALID_ARGUMENT, "create replica: the descriptor does not name replica %d on n%d", req.ReplicaId, me)
	}
	answer := func(applied uint64) *rspb.RangeResponse {
		return &rspb.RangeResponse{Admin: &rspb.RangeResponse_AdminCreateReplica{AdminCreateReplica: &rspb.AdminCreateReplicaResponse{AppliedIndex: applied}}}
	}
	if r := s.replica(d.RangeId); r != nil && !r.sm.merged.Load() {
		if r.replicaID == req.ReplicaId {
			return answer(r.sm.applied.Load())
		}
		s.gcRemovedReplica(ctx, d)
		return fail(rspb.RangeError_UNAVAILABLE, "n%d still holds replica %d of r%d (removed, awaiting replica GC)", me, r.replicaID, d.RangeId)
	}
	if _, gone, err := s.eng.GetRaw(replicaStateKey(d.RangeId, req.ReplicaId, suffixRemoved)); gone || err != nil {
		return fail(rspb.RangeError_FAILED_PRECONDITION, "replica %d of r%d was removed from n%d before; replica IDs are never reused (err: %v)", req.ReplicaId, d.RangeId, me, err)
	}
	if s.overlapsLocal(d) {
		return fail(rspb.RangeError_FAILED_PRECONDITION, "a local replica on n%d overlaps %s", me, spanOf(d))
	}
	if lv := s.live(); lv != nil {
		if m := lv.Self().GetMembership(); m != rspb.LivenessMembership_LIVENESS_ACTIVE {
			return fail(rspb.RangeError_FAILED_PRECONDITION, "n%d takes no new replica: it is %s", me, leases.MembershipWord(m))
		}
	}
	rec := &rspb.ReplicaRecord{RangeId: d.RangeId, ReplicaId: req.ReplicaId, Join: true, JoinedNonVoting: true}
	if err := s.createReplica(rec); err != nil {
		return fail(rspb.RangeError_UNAVAILABLE, "starting replica %d of r%d on n%d: %v", req.ReplicaId, d.RangeId, me, err)
	}
	s.log.Info("replica change: joining replica started (it gets a snapshot)", "range", d.RangeId, "replica", req.ReplicaId)
	return answer(0)
}

// gcRemovedReplica runs the replica GC decision for the local replica of
// d's range against d (a descriptor from the leaseholder that removed a
// replica) and destroys it if it was removed. It returns the decision.
func (s *Store) gcRemovedReplica(ctx context.Context, d *rspb.RangeDescriptor) string {
	if d == nil {
		return "no descriptor"
	}
	r := s.replica(d.RangeId)
	if r == nil || r.sm.merged.Load() {
		return fmt.Sprintf("keep: no replica of r%d here", d.RangeId)
	}
	f := replicaGCFacts{Meta: []*rspb.RangeDescriptor{d}, NodeID: s.NodeID(), ReplicaID: r.replicaID, Desc: r.desc(),
		LeaderKnown: true} // d names the range: the orphan rules keep it anyway
	if f.Desc == nil {
		return fmt.Sprintf("keep: the replica of r%d here has no descriptor yet", d.RangeId)
	}
	f.Others, _, f.AllLoaded = s.localGCView()
	action, reason := decideReplicaGC(f)
	if action == replicaGCDestroyRemoved {
		s.destroyRemoved(ctx, r, f.Desc, reason)
	}
	return fmt.Sprintf("%s: %s", action, reason)
}

// ChangeReplicas adds the replicas on add (in order) and then removes
// those on remove, one replica at a time, by asking the range's
// leaseholder for one step after another until each is done. It returns the
// range's descriptor afterwards.
func (s *Store) ChangeReplicas(ctx context.Context, rangeID uint64, add, remove []uint64) (*rspb.RangeDescriptor, error) {
	snd := s.getSender()
	if snd == nil {
		return nil, errorf(rspb.RangeError_UNAVAILABLE, "replica changes need the cluster sender, which is not connected")
	}
	desc, err := s.lookupRangeByID(ctx, snd, rangeID)
	if err != nil {
		return nil, err
	}
	seen := map[uint64]bool{}
	voters := 0
	for _, rep := range desc.Replicas {
		if rep.Type == rspb.ReplicaType_VOTER {
			voters++
		}
	}
	for i, list := range [][]uint64{add, remove} {
		for _, n := range list {
			if seen[n] {
				return nil, errorf(rspb.RangeError_INVALID_ARGUMENT, "n%d is named twice", n)
			}
			seen[n] = true
			if _, ok := s.NodeRaftAddress(n); !ok {
				return nil, errorf(rspb.RangeError_INVALID_ARGUMENT, "n%d is not a node of the cluster", n)
			}
			var mine *rspb.ReplicaDescriptor
			for _, rep := range desc.Replicas {
				if rep.NodeId == n {
					mine = rep
				}
			}
			if i == 0 && s.ReadReplicaNode(n) {
				return nil, errorf(rspb.RangeError_FAILED_PRECONDITION, "n%d is a read-replica node: it never holds a voter (add it as a non-voter)", n)
			}
			if i == 0 && mine == nil {
				if why := s.takesNoReplicas(ctx, n); why != "" {
					return nil, errorf(rspb.RangeError_FAILED_PRECONDITION, "n%d takes no new replica: %s", n, why)
				}
			}
			switch {
			case i == 0 && mine != nil && mine.Type == rspb.ReplicaType_VOTER:
				return nil, errorf(rspb.RangeError_FAILED_PRECONDITION, "n%d already holds replica %d of r%d", n, mine.ReplicaId, rangeID)
			case i == 0 && mine == nil:
				voters++
			case i == 1 && mine == nil:
				return nil, errorf(rspb.RangeError_FAILED_PRECONDITION, "n%d holds no replica of r%d", n, rangeID)
			case i == 1 && mine.Type == rspb.ReplicaType_VOTER:
				voters--
			}
		}
	}
	if voters < 1 {
		return nil, errorf(rspb.RangeError_FAILED_PRECONDITION, "r%d would be left without a voter (it has %d)", rangeID, voters+len(remove)-len(add))
	}
	if _, busy := s.changing.LoadOrStore(rangeID, true); busy {
		return nil, errorf(rspb.RangeError_FAILED_PRECONDITION, "a replica change of r%d is already running", rangeID)
	}
	defer s.changing.Delete(rangeID)
	for _, n := range add {
		if desc, err = s.runChange(ctx, snd, desc, n, false, false); err != nil {
			return desc, err
		}
	}
	for _, n := range remove {
		if desc, err = s.runChange(ctx, snd, desc, n, true, false); err != nil {
			return desc, err
		}
	}
	return desc, nil
}

// AddNonVoter adds a standing non-voter of the range on node (a read
// replica's, or one a zone's num_replicas above num_voters asks for): the
// same steps as a voter's addition up to its catch-up, and no promotion.
// A node that already holds a non-voter of the range gets nothing new
// (the call waits until it has caught up); one holding a voter is refused.
func (s *Store) AddNonVoter(ctx context.Context, rangeID, node uint64) (*rspb.RangeDescriptor, error) {
	snd := s.getSender()
	if snd == nil {
		return nil, errorf(rspb.RangeError_UNAVAILABLE, "replica changes need the cluster sender, which is not connected")
	}
	if _, ok := s.NodeRaftAddress(node); !ok {
		return nil, errorf(rspb.RangeError_INVALID_ARGUMENT, "n%d is not a node of the cluster", node)
	}
	desc, err := s.lookupRangeByID(ctx, snd, rangeID)
	if err != nil {
		return nil, err
	}
	held := false
	for _, rep := range desc.Replicas {
		if rep.NodeId != node {
			continue
		}
		if rep.Type == rspb.ReplicaType_VOTER {
			return nil, errorf(rspb.RangeError_FAILED_PRECONDITION, "n%d holds voter %d of r%d: a voter is never demoted to a non-voter", node, rep.ReplicaId, rangeID)
		}
		held = true
	}
	if !held {
		if why := s.takesNoReplicas(ctx, node); why != "" {
			return nil, errorf(rspb.RangeError_FAILED_PRECONDITION, "n%d takes no new replica: %s", node, why)
		}
	}
	if _, busy := s.changing.LoadOrStore(rangeID, true); busy {
		return nil, errorf(rspb.RangeError_FAILED_PRECONDITION, "a replica change of r%d is already running", rangeID)
	}
	defer s.changing.Delete(rangeID)
	return s.runChange(ctx, snd, desc, node, false, true)
}

// ReadReplicaNode reports whether the cluster record here marks nodeID as
// a read-replica node (NodeDescriptor.read_replica): it holds non-voters
// only and never a lease.
func (s *Store) ReadReplicaNode(nodeID uint64) bool {
	cr := s.ClusterRecord()
	for _, n := range cr.GetNodes() {
		if n.NodeId == nodeID {
			return n.ReadReplica
		}
	}
	return false
}

// runChange asks the leaseholder of desc's range for the steps of adding
// or removing node's replica until it is done.
func (s *Store) runChange(ctx context.Context, snd Sender, desc *rspb.RangeDescriptor, node uint64, remove, nonVoter bool) (*rspb.RangeDescriptor, error) {
	op := "add"
	switch {
	case remove:
		op = "remove"
	case nonVoter:
		op = "add a non-voter on"
	}
	for {
		req := &rspb.RangeRequest{RangeId: desc.RangeId, Admin: &rspb.RangeRequest_AdminChangeReplicas{
			AdminChangeReplicas: &rspb.AdminChangeReplicasRequest{NodeId: node, Remove: remove, NonVoter: nonVoter && !remove}}}
		resp, err := snd.SendToRange(ctx, desc, req)
		if err == nil && resp.Error != nil {
			err = wrapRangeError(resp.Error)
		}
		if err != nil {
			if re, ok := asRangeError(err); ok && (re.Code == rspb.RangeError_FAILED_PRECONDITION || re.Code == rspb.RangeError_INVALID_ARGUMENT) {
				return desc, err
			}
			if ctx.Err() != nil {
				return desc, errorf(rspb.RangeError_UNAVAILABLE, "r%d: %s n%d: %v (last: %v)", desc.RangeId, op, node, ctx.Err(), err)
			}
			// The range moved on (lease, descriptor): look it up again.
			if d, lerr := s.lookupRangeByID(ctx, snd, desc.RangeId); lerr == nil {
				desc = d
			}
			if !s.sleep(ctx, 100*time.Millisecond) {
				return desc, errorf(rspb.RangeError_UNAVAILABLE, "r%d: %s n%d: %v", desc.RangeId, op, node, err)
			}
			continue
		}
		cr := resp.GetAdminChangeReplicas()
		if d := cr.GetRangeDescriptor(); d != nil {
			desc = d
		}
		if cr.GetDone() {
			return desc, nil
		}
		s.log.Debug("replica change step", "range", desc.RangeId, "op", op, "node", node, "step", cr.GetStep(), "reason", cr.GetReason())
		waiting := cr.GetStep() == changeStartReplica.String() || cr.GetStep() == changeAskCompaction.String()
		if waiting && !s.sleep(ctx, 50*time.Millisecond) {
			return desc, errorf(rspb.RangeError_UNAVAILABLE, "r%d: %s n%d: %v while %s", desc.RangeId, op, node, ctx.Err(), cr.GetReason())
		}
	}
}

// nodeDead reports whether a node's liveness record, as last seen here,
// has been expired for at least the time until store dead (never this
// node, nor one whose record is unknown).
func (s *Store) nodeDead(nodeID uint64) bool {
	l := s.live()
	if l == nil || nodeID == s.NodeID() {
		return false
	}
	rec := l.Cached(nodeID)
	if rec == nil || rec.Expiration == nil {
		return false
	}
	exp := TSFromProto(rec.Expiration)
	return s.cfg.Clock.Now().WallTime-exp.WallTime >= int64(s.cfg.TimeUntilStoreDead)
}

// sleep waits d on the store's time source; false if ctx ended first.
func (s *Store) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-s.stopc:
		return false
	case <-s.cfg.TimeSource.After(d):
		return true
	}
}

// lookupRangeByID finds a range's descriptor in meta.
func (s *Store) lookupRangeByID(ctx context.Context, snd Sender, rangeID uint64) (*rspb.RangeDescriptor, error) {
	descs, err := MetaDescriptors(ctx, snd)
	if err != nil {
		return nil, errorf(rspb.RangeError_UNAVAILABLE, "looking up r%d in meta: %v", rangeID, err)
	}
	for _, d := range descs {
		if d.RangeId == rangeID {
			return d, nil
		}
	}
	return nil, errorf(rspb.RangeError_RANGE_NOT_FOUND, "range r%d not found", rangeID)
}

// ReplicaRecordOf returns this node's replica record of a range (nil if
// there is none).
func (s *Store) ReplicaRecordOf(rangeID uint64) *rspb.ReplicaRecord {
	recs, err := s.replicaRecords()
	if err != nil {
		return nil
	}
	for _, r := range recs {
		if r.RangeId == rangeID {
			return r
		}
	}
	return nil
}

// takesNoReplicas says why node may not get a new replica ("" if it may):
// its liveness record (read afresh) marks it decommissioning or
// decommissioned. A record that cannot be read does not refuse: the
// replica's start on the node checks its own record.
func (s *Store) takesNoReplicas(ctx context.Context, node uint64) string {
	lv := s.live()
	if lv == nil {
		return ""
	}
	rec, err := lv.Get(ctx, node, true)
	if err != nil || rec.GetMembership() == rspb.LivenessMembership_LIVENESS_ACTIVE {
		return ""
	}
	return "it is " + leases.MembershipWord(rec.GetMembership())
}

// ChangeInFlight reports whether a step of a replica change of rangeID
// started at this node's replica (its leaseholder) within the last window:
// a change is being driven, and its non-voter is about to be promoted (the
// replicate queue leaves such a range's non-voters alone).
func (s *Store) ChangeInFlight(rangeID uint64, window time.Duration) bool {
	r := s.replica(rangeID)
	if r == nil {
		return false
	}
	last := r.change.lastStep.Load()
	return last != 0 && s.cfg.TimeSource.Now().UnixNano()-last < int64(window)
}
