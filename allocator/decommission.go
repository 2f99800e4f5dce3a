package allocator

import (
	"fmt"
	"slices"

	"github.com/rangestore/rangestore/proto/rspb"
)

// canHoldReplicas reports whether n can keep or take voters once the
// nodes in leaving are gone: live, active or draining (a drain is
// temporary: the node stays a member), not leaving, not a read replica.
func canHoldReplicas(n *Node, leaving map[uint64]bool) bool {
	return !leaving[n.ID] && !n.ReadReplica && n.Liveness == Live && (n.Membership == Active || n.Membership == Draining)
}

func leavingSet(m map[uint64]*Node, leaving []uint64) (map[uint64]bool, error) {
	if len(leaving) == 0 {
		return nil, invalid("no node to decommission")
	}
	set := make(map[uint64]bool, len(leaving))
	for _, id := range leaving {
		if _, ok := m[id]; !ok {
			return nil, invalid("n%d is not a node", id)
		}
		set[id] = true
	}
	return set, nil
}

// CanDecommission reports whether decommissioning the nodes in leaving
// leaves at least factor nodes that can hold replicas (live, active or
// draining), so that every range can still get factor voters. Suspect and
// dead nodes do not count. The reason names the nodes left and the
// shortfall.
func CanDecommission(nodes []Node, leaving []uint64, factor int) (ok bool, reason string, err error) {
	if err := ValidateFactor(factor); err != nil {
		return false, "", err
	}
	m, err := nodeMap(nodes)
	if err != nil {
		return false, "", err
	}
	set, err := leavingSet(m, leaving)
	if err != nil {
		return false, "", err
	}
	var left []uint64
	for _, n := range sortedNodes(m) {
		if canHoldReplicas(n, set) {
			left = append(left, n.ID)
		}
	}
	what := fmt.Sprintf("decommissioning %s leaves %d nodes that can hold replicas", nodeList(sortedIDs(set)), len(left))
	if len(left) > 0 {
		what += " (" + nodeList(left) + ")"
	}
	if len(left) < factor {
		return false, fmt.Sprintf("%s, %d fewer than the replication factor %d", what, factor-len(left), factor), nil
	}
	return true, fmt.Sprintf("%s, enough for the replication factor %d", what, factor), nil
}

// Shortfall is a range that cannot be fully replicated once some nodes
// are decommissioned.
type Shortfall struct {
	Desc   *rspb.RangeDescriptor
	Reason string
}

// Unplaceable returns, in the order given, the ranges that could not have
// Factor voters once the nodes in leaving are decommissioned: a range
// keeps its voters on suspect or healthy nodes that are not leaving, and
// can add voters on any other node that can hold replicas (live, active or
// draining, not leaving); fewer than Factor such nodes in all is a
// shortfall. A range that has lost its quorum and has a replica on a
// leaving node is one too: that replica cannot be moved.
func Unplaceable(nodes []Node, leaving []uint64, ranges []Range) ([]Shortfall, error) {
	m, err := nodeMap(nodes)
	if err != nil {
		return nil, err
	}
	set, err := leavingSet(m, leaving)
	if err != nil {
		return nil, err
	}
	all := sortedNodes(m)
	var out []Shortfall
	for _, r := range ranges {
		if err := ValidateFactor(r.Factor); err != nil {
			return nil, err
		}
		voters, nonVoters, err := replicas(r.Desc, m)
		if err != nil {
			return nil, err
		}
		usable := make(map[uint64]bool)
		var kept []uint64
		live := 0
		for _, v := range voters {
			if v.health != lost {
				live++
			}
			if (v.health == healthy || v.health == suspect) && !set[v.node.ID] {
				usable[v.node.ID] = true
				kept = append(kept, v.node.ID)
			}
		}
		if live < len(voters)/2+1 {
			for _, rep := range append(voters, nonVoters...) {
				if set[rep.node.ID] {
					out = append(out, Shortfall{Desc: r.Desc, Reason: fmt.Sprintf(
						"r%d has lost its quorum (%d of %d voters on nodes that are not dead): its replica on n%d cannot be moved",
						r.Desc.RangeId, live, len(voters), rep.node.ID)})
					break
				}
			}
			continue
		}
		var extra []uint64
		for _, n := range all {
			if !usable[n.ID] && canHoldReplicas(n, set) {
				usable[n.ID] = true
				extra = append(extra, n.ID)
			}
		}
		if len(usable) < r.Factor {
			reason := fmt.Sprintf("r%d needs %d voters: it keeps %d", r.Desc.RangeId, r.Factor, len(kept))
			if len(kept) > 0 {
				reason += " (" + nodeList(kept) + ")"
			}
			if len(extra) > 0 {
				reason += fmt.Sprintf(" and only %s can take one", nodeList(extra))
			} else {
				reason += " and no other node can take one"
			}
			out = append(out, Shortfall{Desc: r.Desc, Reason: fmt.Sprintf("%s, %d short", reason, r.Factor-len(usable))})
		}
	}
	return out, nil
}

func sortedIDs(set map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
