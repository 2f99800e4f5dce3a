package ranges

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Replica change decisions, without I/O. A replica is added or removed in
// steps (replica_change.go runs them at the leaseholder, one per call);
// which step comes next is decided afresh every time from the range's
// descriptor and Dragonboat's membership, so a change interrupted anywhere
// (a crash, a lost answer, a lease moving) is rolled forward by asking
// again. Tests replay testdata/replica_change.json against golden output.

// changeStep is the next step of adding or removing one replica.
type changeStep int

const (
	// changeDone: nothing is left to do.
	changeDone changeStep = iota
	// changeRefuse: the change cannot be made (Reason says why); nothing
	// is done.
	changeRefuse
	// changeDescAddNonVoter: add the node to the descriptor as a non-voter
	// under next_replica_id (and bump it).
	changeDescAddNonVoter
	// changeAskCompaction: ask every voter to drop the range's first log
	// entries (so the new replica gets a snapshot), then decide again; if
	// one still holds them, ask again later.
	changeAskCompaction
	// changeRaftAddNonVoter: add the replica to the Raft group as a
	// non-voter.
	changeRaftAddNonVoter
	// changeStartReplica: start the replica on its node (idempotent) and
	// learn its applied index, then decide again; while it is behind, wait.
	changeStartReplica
	// changeRaftPromote: make the caught-up non-voter a Raft voter.
	changeRaftPromote
	// changeDescPromote: record the promotion in the descriptor.
	changeDescPromote
	// changeTransferLease: the replica to remove holds the lease; move the
	// lease to another voter first.
	changeTransferLease
	// changeDescRemove: remove the replica from the descriptor.
	changeDescRemove
	// changeRaftRemove: remove the replica from the Raft group.
	changeRaftRemove
)

var changeStepNames = [...]string{
	changeDone: "done", changeRefuse: "refuse", changeDescAddNonVoter: "descriptor-add-non-voter",
	changeAskCompaction: "ask-compaction", changeRaftAddNonVoter: "raft-add-non-voter", changeStartReplica: "start-replica",
	changeRaftPromote: "raft-promote", changeDescPromote: "descriptor-promote", changeTransferLease: "transfer-lease",
	changeDescRemove: "descriptor-remove", changeRaftRemove: "raft-remove",
}

func (s changeStep) String() string {
	if s >= 0 && int(s) < len(changeStepNames) {
		return changeStepNames[s]
	}
	return fmt.Sprintf("changeStep(%d)", int(s))
}

// replicaChangeFacts is what decideReplicaChange looks at.
type replicaChangeFacts struct {
	Desc   *rspb.RangeDescriptor
	Remove bool   // remove (true) or add the replica on NodeID
	NodeID uint64 // the node whose replica is added or removed
	// NonVoter: add the replica as a standing non-voter (a read
	// replica's, or a zone's): done once it has caught up, never promoted.
	NonVoter bool
	// ReadReplicaNodes: the nodes marked read replicas in the cluster
	// record (their non-voters are standing ones even in descriptors
	// written before ReplicaDescriptor.standing; standingNonVoter).
	ReadReplicaNodes map[uint64]bool
	// NodeAddr is NodeID's Raft address ("" if the node is unknown).
	NodeAddr string
	// Voters, NonVoters: Dragonboat's membership (replica ID -> Raft
	// address); Removed: the replica IDs it removed.
	Voters, NonVoters map[uint64]string
	Removed           map[uint64]bool
	// LeaseNode is the node holding the lease (the one deciding).
	LeaseNode uint64
	// LogsCompacted: every voter's log no longer holds the range's first
	// entries (nil: not asked yet).
	LogsCompacted *bool
	// TargetApplied is the applied index of the new replica on NodeID (nil:
	// not asked yet); WantApplied what it must reach before promotion (the
	// leaseholder's applied index when the replica joined the Raft group).
	TargetApplied *uint64
	WantApplied   uint64
}

// standingNonVoter reports whether rep is a standing non-voter, one meant
// to stay a non-voter (a read replica's, a zone's), rather than the
// learner of a replica change in flight, about to be promoted: the
// descriptor records it (ReplicaDescriptor.standing, set when
// AdminChangeReplicasRequest.non_voter added it), or, for descriptors
// written before that field, it is on a read-replica node (which never
// holds anything else). Such a non-voter, once a Raft non-voter, holds
// no other replica change up, and a split removes it first (learners
// refuse both).
func standingNonVoter(rep *rspb.ReplicaDescriptor, readReplicaNodes map[uint64]bool) bool {
	return rep.Type == rspb.ReplicaType_NON_VOTER && (rep.Standing || readReplicaNodes[rep.NodeId])
}

// replicaChangeDecision is the next step, the replica it concerns (and,
// for a lease transfer, the node to move the lease to), and why.
type replicaChangeDecision struct {
	Step      changeStep
	ReplicaID uint64
	LeaseTo   uint64
	Reason    string
}

// decideReplicaChange decides the next step of adding (f.Remove false) or
// removing the replica of f.Desc's range on f.NodeID. The order of an
// addition: descriptor (non-voter, a fresh replica ID), the voters' logs
// compacted past the first entries, Raft (non-voter), the replica started
// on its node and caught up (a snapshot), Raft (promotion, same ID and
// address), descriptor (voter). The order of a removal: the lease away from
// it, descriptor, Raft. Each step checks what already happened, so the
// sequence resumes wherever it stopped. Another change half done on the
// range (a non-voter of another node, a Raft member missing from the
// descriptor or the other way round) refuses this one.
func decideReplicaChange(f replicaChangeFacts) replicaChangeDecision {
	d := f.Desc
	dec := func(step changeStep, id uint64, format string, args ...any) replicaChangeDecision {
		return replicaChangeDecision{Step: step, ReplicaID: id, Reason: fmt.Sprintf(format, args...)}
	}
	if f.NodeAddr == "" {
		return dec(changeRefuse, 0, "n%d is not a node of the cluster", f.NodeID)
	}
	var mine *rspb.ReplicaDescriptor
	inDesc := map[uint64]bool{}
	voters := 0
	for _, rep := range d.Replicas {
		inDesc[rep.ReplicaId] = true
		if rep.NodeId == f.NodeID {
			mine = rep
		}
		if rep.Type == rspb.ReplicaType_VOTER {
			voters++
		}
	}
	// Another change in flight: anything inconsistent that is not about
	// NodeID's replica.
	for _, rep := range d.Replicas {
		if rep.NodeId == f.NodeID {
			continue
		}
		_, v := f.Voters[rep.ReplicaId]
		_, nv := f.NonVoters[rep.ReplicaId]
		switch {
		case standingNonVoter(rep, f.ReadReplicaNodes) && nv:
			// A standing non-voter (a read replica's, a zone's): a whole
			// Raft member of its kind, and Raft orders membership changes
			// one at a time, so it does not hold this change up.
		case standingNonVoter(rep, f.ReadReplicaNodes):
			return dec(changeRefuse, 0, "another change of r%d is in flight: standing non-voter %d on n%d is in the descriptor but not yet a Raft non-voter (its addition is not finished; finish it or remove n%d)", d.RangeId, rep.ReplicaId, rep.NodeId, rep.NodeId)
		case rep.Type == rspb.ReplicaType_NON_VOTER:
			// The learner of an addition not finished (about to be
			// promoted): the change waits for it, as it always did.
			return dec(changeRefuse, 0, "another change of r%d is in flight: replica %d on n%d is a non-voter (an addition not finished; finish it or remove n%d)", d.RangeId, rep.ReplicaId, rep.NodeId, rep.NodeId)
		case !v:
			return dec(changeRefuse, 0, "another change of r%d is in flight: voter %d on n%d is not a Raft voter (nv=%t)", d.RangeId, rep.ReplicaId, rep.NodeId, nv)
		}
	}
	for _, m := range []map[uint64]string{f.Voters, f.NonVoters} {
		for _, id := range sortedIDs(m) {
			if inDesc[id] || (m[id] == f.NodeAddr && f.Remove) {
				continue
			}
			if mine == nil && m[id] == f.NodeAddr {
				return dec(changeRefuse, 0, "the removal of replica %d (n%d) from r%d is not finished: it is still a Raft member; remove n%d again first", id, f.NodeID, d.RangeId, f.NodeID)
			}
			return dec(changeRefuse, 0, "another change of r%d is in flight: Raft member %d (%s) is not in the descriptor", d.RangeId, id, m[id])
		}
	}
	if f.Remove {
		return decideRemoval(f, mine, voters)
	}
	if mine == nil {
		id := NextReplicaID(d)
		return dec(changeDescAddNonVoter, id, "n%d holds no replica of r%d: add replica %d to the descriptor as a non-voter", f.NodeID, d.RangeId, id)
	}
	id := mine.ReplicaId
	_, v := f.Voters[id]
	_, nv := f.NonVoters[id]
	if mine.Type == rspb.ReplicaType_VOTER {
		switch {
		case f.NonVoter:
			return dec(changeRefuse, id, "replica %d on n%d is a voter of r%d: a voter is never demoted to a non-voter (remove it first)", id, f.NodeID, d.RangeId)
		case v:
			return dec(changeDone, id, "replica %d on n%d is a voter of r%d in the descriptor and in Raft", id, f.NodeID, d.RangeId)
		case nv:
			return dec(changeRaftPromote, id, "replica %d on n%d is a voter in the descriptor but a Raft non-voter: promote it", id, f.NodeID)
		}
		return dec(changeRefuse, id, "replica %d on n%d is a voter in the descriptor of r%d but no Raft member", id, f.NodeID, d.RangeId)
	}
	switch {
	case f.Removed[id]:
		return dec(changeRefuse, id, "replica %d of r%d was removed from the Raft group and cannot come back; remove n%d, then add it again (under a new replica ID)", id, d.RangeId, f.NodeID)
	case v:
		return dec(changeDescPromote, id, "replica %d on n%d is a Raft voter: record it as a voter in the descriptor", id, f.NodeID)
	case !nv && f.LogsCompacted == nil:
		return dec(changeAskCompaction, id, "before replica %d joins, every voter's log must start past the range's first entries (it has no state to replay them on)", id)
	case !nv && !*f.LogsCompacted:
		return dec(changeAskCompaction, id, "a voter of r%d still holds the range's first log entries: replica %d would be sent them instead of a snapshot; ask again", d.RangeId, id)
	case !nv:
		return dec(changeRaftAddNonVoter, id, "replica %d on n%d is a non-voter in the descriptor only: add it to the Raft group as a non-voter", id, f.NodeID)
	case f.TargetApplied == nil:
		return dec(changeStartReplica, id, "replica %d on n%d is a Raft non-voter: start it there (if it is not running) and ask how far it applied", id, f.NodeID)
	case *f.TargetApplied == 0 || *f.TargetApplied < f.WantApplied:
		return dec(changeStartReplica, id, "replica %d on n%d has applied %d of %d: wait for it to catch up", id, f.NodeID, *f.TargetApplied, f.WantApplied)
	case f.NonVoter:
		return dec(changeDone, id, "replica %d on n%d is a caught-up non-voter of r%d (applied %d >= %d): it stays a non-voter", id, f.NodeID, d.RangeId, *f.TargetApplied, f.WantApplied)
	}
	return dec(changeRaftPromote, id, "replica %d on n%d has caught up (applied %d >= %d): promote it to voter", id, f.NodeID, *f.TargetApplied, f.WantApplied)
}

func decideRemoval(f replicaChangeFacts, mine *rspb.ReplicaDescriptor, voters int) replicaChangeDecision {
	d := f.Desc
	dec := func(step changeStep, id uint64, format string, args ...any) replicaChangeDecision {
		return replicaChangeDecision{Step: step, ReplicaID: id, Reason: fmt.Sprintf(format, args...)}
	}
	if mine == nil {
		for _, m := range []map[uint64]string{f.Voters, f.NonVoters} {
			for _, id := range sortedIDs(m) {
				if m[id] == f.NodeAddr {
					return dec(changeRaftRemove, id, "replica %d on n%d is no longer in the descriptor of r%d but still a Raft member: remove it from the group", id, f.NodeID, d.RangeId)
				}
			}
		}
		return dec(changeDone, 0, "n%d holds no replica of r%d, in the descriptor or in Raft", f.NodeID, d.RangeId)
	}
	id := mine.ReplicaId
	if mine.Type == rspb.ReplicaType_VOTER && voters <= 1 {
		return dec(changeRefuse, id, "replica %d on n%d is the last voter of r%d", id, f.NodeID, d.RangeId)
	}
	if f.LeaseNode == f.NodeID {
		var to uint64
		for _, rep := range d.Replicas {
			if rep.Type == rspb.ReplicaType_VOTER && rep.NodeId != f.NodeID {
				to = rep.NodeId
				break
			}
		}
		out := dec(changeTransferLease, id, "replica %d on n%d holds the lease of r%d: move it to n%d first", id, f.NodeID, d.RangeId, to)
		out.LeaseTo = to
		return out
	}
	return dec(changeDescRemove, id, "remove replica %d on n%d from the descriptor of r%d", id, f.NodeID, d.RangeId)
}

func sortedIDs(m map[uint64]string) []uint64 {
	out := make([]uint64, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// checkReplicaChange checks, at apply, that next may replace cur as the
// range's descriptor (a ChangeReplicasCommand): same range and span,
// generation cur+1, exactly one replica added (a non-voter under a fresh
// ID, standing or not), promoted (non-voter to voter, no longer
// standing) or removed (never the leaseholder's), at least one voter
// left, no voter marked standing, a non-voter's standing flag unchanged,
// IDs unique and below next_replica_id, which never goes back. It returns
// why not ("" if it may).
func checkReplicaChange(cur, next *rspb.RangeDescriptor, lease *rspb.Lease) string {
	switch {
	case next == nil:
		return "no descriptor"
	case next.RangeId != cur.RangeId || !bytes.Equal(next.StartKey, cur.StartKey) || !bytes.Equal(next.EndKey, cur.EndKey) || next.Sticky != cur.Sticky:
		return "the new descriptor is not of the same range and span"
	case next.Generation != cur.Generation+1:
		return fmt.Sprintf("generation %d does not follow %d", next.Generation, cur.Generation)
	case next.NextReplicaId < NextReplicaID(cur):
		return fmt.Sprintf("next_replica_id %d is below %d (replica IDs are never reused)", next.NextReplicaId, NextReplicaID(cur))
	}
	old := map[uint64]*rspb.ReplicaDescriptor{}
	for _, rep := range cur.Replicas {
		old[rep.ReplicaId] = rep
	}
	nodes, ids := map[uint64]bool{}, map[uint64]bool{}
	changes, voters := 0, 0
	for _, rep := range next.Replicas {
		if nodes[rep.NodeId] || ids[rep.ReplicaId] {
			return fmt.Sprintf("node n%d or replica ID %d appears twice", rep.NodeId, rep.ReplicaId)
		}
		nodes[rep.NodeId], ids[rep.ReplicaId] = true, true
		if rep.ReplicaId == 0 || rep.ReplicaId >= next.NextReplicaId {
			return fmt.Sprintf("replica ID %d is not below next_replica_id %d", rep.ReplicaId, next.NextReplicaId)
		}
		if rep.Type == rspb.ReplicaType_VOTER {
			voters++
			if rep.Standing {
				return fmt.Sprintf("voter %d on n%d is marked standing (only a non-voter stands)", rep.ReplicaId, rep.NodeId)
			}
		}
		o := old[rep.ReplicaId]
		switch {
		case o == nil && rep.ReplicaId < NextReplicaID(cur):
			return fmt.Sprintf("replica ID %d was used before", rep.ReplicaId)
		case o == nil && rep.Type != rspb.ReplicaType_NON_VOTER:
			return fmt.Sprintf("replica %d on n%d joins as a voter (a new replica starts as a non-voter)", rep.ReplicaId, rep.NodeId)
		case o == nil:
			changes++
		case o.NodeId != rep.NodeId:
			return fmt.Sprintf("replica %d moved from n%d to n%d", rep.ReplicaId, o.NodeId, rep.NodeId)
		case o.Type != rep.Type && rep.Type != rspb.ReplicaType_VOTER:
			return fmt.Sprintf("replica %d on n%d would be demoted (remove it instead)", rep.ReplicaId, rep.NodeId)
		case o.Type != rep.Type:
			changes++
		case o.Standing != rep.Standing:
			return fmt.Sprintf("non-voter %d on n%d would change from standing=%t to %t (a non-voter's role is fixed when it is added)", rep.ReplicaId, rep.NodeId, o.Standing, rep.Standing)
		}
	}
	for id, o := range old {
		if ids[id] {
			continue
		}
		changes++
		if lease.GetReplicaId() == id {
			return fmt.Sprintf("replica %d on n%d holds the lease (transfer it first)", id, o.NodeId)
		}
	}
	switch {
	case voters == 0:
		return "no voter would be left"
	case changes != 1:
		return fmt.Sprintf("%d replicas change (one at a time)", changes)
	}
	return ""
}

// hasReplicaID reports whether d lists replica id on node.
func hasReplicaID(d *rspb.RangeDescriptor, node, id uint64) bool {
	for _, rep := range d.Replicas {
		if rep.NodeId == node && rep.ReplicaId == id {
			return true
		}
	}
	return false
}
