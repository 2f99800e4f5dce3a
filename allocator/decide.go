package allocator

import (
	"fmt"
	"sort"
	"strings"
)

// Action is what the replicate queue should do to a range next.
type Action int

const (
	// ActionNone: the range is fully replicated, or waits (a suspect
	// voter is not replaced until its node is dead).
	ActionNone Action = iota
	// ActionAddVoter: add a voter on Decision.Node; if Decision.ReplicaID
	// is not 0, that node already holds the range's non-voter with this
	// replica ID (a half-done change) and promoting it is the step left.
	ActionAddVoter
	// ActionRemoveVoter: remove the voter Decision.ReplicaID on
	// Decision.Node (transferring the lease away first if it holds it).
	ActionRemoveVoter
	// ActionRemoveNonVoter: remove the non-voter Decision.ReplicaID on
	// Decision.Node.
	ActionRemoveNonVoter
	// ActionNoTarget: the range needs a voter but no node can take one;
	// nothing to do until a node joins, comes back or stops draining.
	ActionNoTarget
	// ActionUnavailable: fewer than a majority of the voters are on nodes
	// that are not dead; Raft cannot change the membership of a range that
	// has lost its quorum, so nothing is done (the queue counts it).
	ActionUnavailable
	// ActionRebalance: the range is fully and healthily replicated but one
	// of its voters is on a node with too many replicas: add a voter on
	// Decision.Node, then remove the voter Decision.ReplicaID on
	// Decision.From (transferring the lease away first if it holds it).
	// See balance.go for the rule. The lowest priority of all actions.
	ActionRebalance

	// The actions below come from the scorer (Score) only; Decide never
	// returns them.

	// ActionAddNonVoter: add a non-voter on Decision.Node (the zone asks
	// for more replicas than voters).
	ActionAddNonVoter
	// ActionReplaceVoter: a voter is on a dead, decommissioned or
	// decommissioning node: add a voter on Decision.Node, then remove the
	// voter Decision.ReplicaID on Decision.From.
	ActionReplaceVoter
	// ActionReplaceNonVoter: the same for a non-voter.
	ActionReplaceNonVoter
	// ActionRebalanceNonVoter: move the non-voter Decision.ReplicaID from
	// Decision.From to Decision.Node (add, then remove).
	ActionRebalanceNonVoter
	// ActionTransferLease: transfer the lease from Decision.From (the
	// leaseholder) to the voter on Decision.Node.
	ActionTransferLease
)

func (a Action) String() string {
	switch a {
	case ActionNone:
		return "none"
	case ActionAddVoter:
		return "add-voter"
	case ActionRemoveVoter:
		return "remove-voter"
	case ActionRemoveNonVoter:
		return "remove-non-voter"
	case ActionNoTarget:
		return "no-target"
	case ActionUnavailable:
		return "unavailable"
	case ActionRebalance:
		return "rebalance"
	case ActionAddNonVoter:
		return "add-non-voter"
	case ActionReplaceVoter:
		return "replace-voter"
	case ActionReplaceNonVoter:
		return "replace-non-voter"
	case ActionRebalanceNonVoter:
		return "rebalance-non-voter"
	case ActionTransferLease:
		return "transfer-lease"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Decision is the one next step for a range.
type Decision struct {
	Action Action
	// Node is the node to add a voter on or remove a replica from (0 for
	// none, no-target and unavailable).
	Node uint64
	// ReplicaID is the replica to remove (for a rebalance: the voter that
	// moves), or the non-voter to promote for an add (0 for a new
	// replica).
	ReplicaID uint64
	// From is the node a rebalance moves the voter ReplicaID off (0 for
	// every other action).
	From uint64
	// Priority orders ranges in the replicate queue, the highest first; 0
	// when there is nothing to do. See priority.
	Priority int
	// UnderReplicated: fewer voters are kept (on nodes that are not dead,
	// decommissioned or decommissioning) than the factor asks for.
	UnderReplicated bool
	Reason          string
}

// PriorityRepairMin: Decide's repairs (adding a missing voter, removing a
// lost, leaving or extra one) have priorities of at least this; balance,
// constraint and preference actions stay below it.
const PriorityRepairMin = 1000

// Action ranks, used by priority among ranges equally far from a quorum
// loss and missing as many voters.
const (
	rankAddVoter         = 40
	rankRemoveLost       = 30
	rankRemoveLeaving    = 20
	rankRemoveExtra      = 10
	rankRemoveNonVoter   = 5
	priorityToleratedCap = 4
	priorityMissingCap   = 9
)

// priority puts the ranges closest to losing their quorum first, then
// those missing the most voters, then by action:
//
//	priority = 1000·(5 − min(tolerated, 4)) + 100·min(missing, 9) + rank
//
// tolerated is how many more voters the range can lose before it loses its
// quorum (voters not on dead nodes − majority of the voters), missing is
// factor − voters kept (at least 0), rank is 40 for an add, 30 for removing
// a voter on a dead node, 20 on a decommissioning node, 10 an extra voter,
// 5 a non-voter. A 3-voter range with a dead voter (tolerated 0, missing
// 1) gets 5140, ahead of a 5-voter range with one (tolerated 1: 4140), and
// behind a 5-voter range with two (5240). Ranges with nothing to do get 0.
func priority(tolerated, missing, rank int) int {
	return 1000*(5-min(tolerated, priorityToleratedCap)) + 100*min(max(missing, 0), priorityMissingCap) + rank
}

// Decide returns the one next step for range r given the views of all
// nodes:
//
//   - unavailable if fewer than a majority of its voters are on nodes that
//     are not dead (nothing can be done);
//   - add a voter if fewer voters are kept than r.Factor (a voter on a
//     dead or decommissioned node is lost, one on a decommissioning node
//     must be replaced; a suspect one is kept), promoting a leftover
//     non-voter on a live active node when it is as diverse as the best
//     new placement, else on the node Place picks (no-target if none);
//   - else remove a voter: one on a dead node, else one on a
//     decommissioning node, else one beyond the factor (the worst: suspect
//     first, then the least diverse, then not the leaseholder, then the
//     most loaded);
//   - else remove a non-voter (besides a read replica's, every non-voter
//     is a leftover of a half-done change);
//   - else none.
//
// It returns an ErrInvalid error for a bad factor, a descriptor with no
// voter, two replicas on one node or a replica on a node without a view,
// and node views with a zero or repeated ID.
func Decide(r Range, nodes []Node) (Decision, error) {
	if err := ValidateFactor(r.Factor); err != nil {
		return Decision{}, err
	}
	m, err := nodeMap(nodes)
	if err != nil {
		return Decision{}, err
	}
	voters, nonVoters, err := replicas(r.Desc, m)
	if err != nil {
		return Decision{}, err
	}
	var byHealth [numHealths][]replica
	for _, v := range voters {
		byHealth[v.health] = append(byHealth[v.health], v)
	}
	live := len(voters) - len(byHealth[lost])
	quorum := len(voters)/2 + 1
	kept := len(byHealth[healthy]) + len(byHealth[suspect])
	missing := r.Factor - kept
	d := Decision{UnderReplicated: missing > 0}
	if live < quorum {
		d.Action = ActionUnavailable
		d.Reason = fmt.Sprintf("lost quorum: %d of %d voters are on nodes that are not dead, %d needed (%s); Raft cannot change the membership without a quorum",
			live, len(voters), quorum, describe(byHealth[lost]))
		return d, nil
	}
	tolerated := live - quorum

	if missing > 0 {
		status := fmt.Sprintf("under-replicated: %d of %d voters kept", kept, r.Factor)
		if gone := append(append([]replica(nil), byHealth[lost]...), byHealth[leaving]...); len(gone) > 0 {
			status += " (" + describe(gone) + ")"
		}
		p, best := place(voters, nonVoters, sortedNodes(m))
		nv, ok := promotable(voters, nonVoters)
		if ok && (best == nil || nv.div.compare(best.div) <= 0) {
			d.Action, d.Node, d.ReplicaID = ActionAddVoter, nv.node.ID, nv.replicaID
			d.Priority = priority(tolerated, missing, rankAddVoter)
			d.Reason = fmt.Sprintf("%s; promote the non-voter on n%d (replica %d, left by a half-done change): %s, as diverse as any new placement",
				status, nv.node.ID, nv.replicaID, nv.div)
			return d, nil
		}
		for _, r := range nonVoters {
			switch {
			case ok && r.node == nv.node:
				status += fmt.Sprintf("; the non-voter on n%d is less diverse (%s)", r.node.ID, nv.div)
			case !r.node.canTakeReplica():
				status += fmt.Sprintf("; the non-voter on n%d is not promoted (%s)", r.node.ID, whyIneligible(r.node, false))
			}
		}
		if p.Node == 0 {
			d.Action = ActionNoTarget
			d.Reason = status + "; " + p.Reason
			return d, nil
		}
		d.Action, d.Node = ActionAddVoter, p.Node
		d.Priority = priority(tolerated, missing, rankAddVoter)
		d.Reason = fmt.Sprintf("%s; add a voter: %s", status, p.Reason)
		return d, nil
	}

	removeVoter := func(from []replica, rank int, why string) (Decision, error) {
		v, because := worst(from, staying(voters), r.Leaseholder)
		d.Action, d.Node, d.ReplicaID = ActionRemoveVoter, v.node.ID, v.desc.ReplicaId
		d.Priority = priority(tolerated, missing, rank)
		d.Reason = fmt.Sprintf("%s: remove n%d's voter (replica %d)%s", why, v.node.ID, v.desc.ReplicaId, because)
		if v.node.ID == r.Leaseholder {
			d.Reason += "; it holds the lease: transfer it first"
		}
		return d, nil
	}
	switch {
	case len(byHealth[lost]) > 0:
		return removeVoter(byHealth[lost], rankRemoveLost,
			fmt.Sprintf("%s and %d voters are kept (factor %d)", describe(byHealth[lost]), kept, r.Factor))
	case len(byHealth[leaving]) > 0:
		return removeVoter(byHealth[leaving], rankRemoveLeaving,
			fmt.Sprintf("%s and %d other voters are kept (factor %d)", describe(byHealth[leaving]), kept, r.Factor))
	case kept > r.Factor:
		return removeVoter(append(append([]replica(nil), byHealth[healthy]...), byHealth[suspect]...), rankRemoveExtra,
			fmt.Sprintf("over-replicated: %d voters kept, factor %d", kept, r.Factor))
	case len(nonVoters) > 0:
		nv := nonVoters[0]
		for _, o := range nonVoters[1:] {
			if o.health > nv.health || (o.health == nv.health && o.node.ID < nv.node.ID) {
				nv = o
			}
		}
		d.Action, d.Node, d.ReplicaID = ActionRemoveNonVoter, nv.node.ID, nv.desc.ReplicaId
		d.Priority = priority(tolerated, missing, rankRemoveNonVoter)
		d.Reason = fmt.Sprintf("fully replicated (%d voters, factor %d) and n%d holds a non-voter (replica %d, %s), which the range does not keep (a half-done change): remove it",
			kept, r.Factor, nv.node.ID, nv.desc.ReplicaId, healthWord(nv))
		return d, nil
	}
	if len(byHealth[suspect]) == 0 {
		if mv, ok := rebalance(voters, sortedNodes(m), r.Leaseholder, nil, DefaultThresholds()); ok {
			d.Action, d.Node, d.ReplicaID, d.From = ActionRebalance, mv.to.node.ID, mv.from.desc.ReplicaId, mv.from.node.ID
			d.Priority = priorityRebalance
			d.Reason = fmt.Sprintf("fully replicated: %d of %d voters kept; %s", kept, r.Factor, mv.reason)
			return d, nil
		}
	}
	d.Reason = fmt.Sprintf("fully replicated: %d of %d voters kept", kept, r.Factor)
	if s := byHealth[suspect]; len(s) > 0 {
		d.Reason += "; " + describe(s) + ": not replaced unless dead"
	}
	var draining []uint64
	for _, v := range byHealth[healthy] {
		if v.node.Membership == Draining {
			draining = append(draining, v.node.ID)
		}
	}
	if len(draining) > 0 {
		d.Reason += fmt.Sprintf("; %s draining: keeps its replica", nodeList(draining))
	}
	return d, nil
}

// promotableNonVoter is a non-voter on a node that could take a new voter.
type promotableNonVoter struct {
	node      *Node
	replicaID uint64
	div       diversity
}

// promotable returns the best non-voter to promote: on a live active node,
// ranked like placement candidates.
func promotable(voters, nonVoters []replica) (promotableNonVoter, bool) {
	basis := staying(voters)
	var best *candidate
	var id uint64
	for _, nv := range nonVoters {
		if !nv.node.canTakeReplica() {
			continue
		}
		c := candidate{node: nv.node, div: diversityOf(nv.node, basis)}
		if best == nil {
			best, id = &c, nv.desc.ReplicaId
		} else if cmp, _ := compareCandidates(c, *best); cmp < 0 {
			best, id = &c, nv.desc.ReplicaId
		}
	}
	if best == nil {
		return promotableNonVoter{}, false
	}
	return promotableNonVoter{node: best.node, replicaID: id, div: best.div}, true
}

// worst returns the voter of from to remove first and a short reason why
// it was chosen over the next one: the least healthy (suspect before
// healthy; lost and leaving voters come in sets of their own), then the
// least diverse against the other staying voters, then not the
// leaseholder, then the most replicas, the most leases, the lowest ID.
func worst(from []replica, stay []*Node, leaseholder uint64) (replica, string) {
	type scored struct {
		r   replica
		div diversity
	}
	ss := make([]scored, len(from))
	for i, r := range from {
		var others []*Node
		for _, n := range stay {
			if n.ID != r.node.ID {
				others = append(others, n)
			}
		}
		ss[i] = scored{r: r, div: diversityOf(r.node, others)}
	}
	// cmp orders a before b (a is removed first) if it is worse, and
	// says which criterion decided.
	cmp := func(a, b scored) (bool, string) {
		switch {
		case a.r.health != b.r.health:
			return a.r.health > b.r.health, healthWord(a.r)
		case a.div.compare(b.div) != 0:
			return a.div.compare(b.div) > 0, "least diverse: " + a.div.String()
		case (a.r.node.ID == leaseholder) != (b.r.node.ID == leaseholder):
			return b.r.node.ID == leaseholder, fmt.Sprintf("n%d holds the lease", leaseholder)
		case a.r.node.Replicas != b.r.node.Replicas:
			return a.r.node.Replicas > b.r.node.Replicas, fmt.Sprintf("most replicas: %d", a.r.node.Replicas)
		case a.r.node.Leases != b.r.node.Leases:
			return a.r.node.Leases > b.r.node.Leases, fmt.Sprintf("most leases: %d", a.r.node.Leases)
		default:
			return a.r.node.ID < b.r.node.ID, "tie, lowest ID"
		}
	}
	sort.SliceStable(ss, func(i, j int) bool {
		before, _ := cmp(ss[i], ss[j])
		return before
	})
	if len(ss) == 1 {
		return ss[0].r, ""
	}
	_, why := cmp(ss[0], ss[1])
	return ss[0].r, fmt.Sprintf(", chosen over n%d: %s", ss[1].r.node.ID, why)
}

// healthWord names a replica's health as its node's state.
func healthWord(r replica) string {
	switch r.health {
	case lost:
		if r.node.Liveness == Dead {
			return "dead"
		}
		return "decommissioned"
	case leaving:
		if r.node.Membership != Decommissioning && r.node.ReadReplica {
			return "a voter on a read-replica node"
		}
		return "decommissioning"
	case suspect:
		return "suspect"
	}
	if r.node.Membership == Draining {
		return "draining"
	}
	return "live"
}

// describe prints replicas as "n3 dead, n4 decommissioning".
func describe(rs []replica) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("n%d %s", r.node.ID, healthWord(r))
	}
	return strings.Join(parts, ", ")
}
