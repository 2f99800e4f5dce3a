package allocator

import (
	"fmt"
	"math"
	"sort"
)

// Count-based rebalancing: once a range is fully and healthily replicated,
// one of its voters may move from a node holding too many replicas to one
// holding too few.
//
// The mean is the replicas held by the live, active nodes divided by their
// number (draining, suspect, dead and leaving nodes are left out: they
// take nothing new). With the margin max(mean·BalanceThreshold,
// MinRangeRebalance) — 5 % of the mean and at least 2 replicas by
// default, as CockroachDB's kv.allocator.range_rebalance_threshold; both
// are settings (Thresholds, rangestore start --range-rebalance-threshold
// and --min-range-rebalance) — a node is
//
//   - overfull when it holds more than mean + margin replicas;
//   - underfull when it holds fewer than mean − margin.
//
// (Until issue 12 the rule was 10 % and one replica; the scorer's
// thresholds are the ones used now, so Decide's rebalances and the
// scorer's agree. The wider absolute margin keeps small clusters from
// moving replicas over a difference of 2 or 3.)
//
// A voter moves from node s to node t (live, active, without a replica of
// the range) when s is overfull and t is below the mean, or s is above the
// mean and t is underfull. Either way s holds at least two more replicas
// than t, so the move lowers the sum over the nodes of the squared counts
// by at least 2: applied one at a time against fresh counts, moves
// terminate, and a replica never moves back and forth. Once none applies,
// every live active node is within the thresholds of the mean give or
// take one replica or has no range it could swap (the acceptance,
// 0.8× to 1.2× of the mean, follows from a mean of 10 up).
//
// Locality diversity is never made worse: t must be at least as diverse
// as s against the voters that stay (the Place ranking). Among the
// voters, the one on the node with the most replicas moves first, then
// one that does not hold the lease, then the lowest node ID; among the
// targets the Place ranking decides (diversity, fewest replicas, lowest
// ID).

// BalanceThreshold is the fraction of the mean a node's replica count may
// differ from it before replicas move, and MinRangeRebalance the least
// number of replicas (see balance.go): the defaults of
// Thresholds.RangeThreshold and Thresholds.MinRangeRebalance.
const (
	BalanceThreshold  = 0.05
	MinRangeRebalance = 2
)

// priorityRebalance is the priority of a rebalance: below every repair
// (the lowest of which is 1005) and above the idle ranges' 0.
const priorityRebalance = 1

// move is a rebalance: the voter from moves to node to.
type move struct {
	from   replica
	to     candidate
	reason string
}

// bounds are the counts around the mean that trigger a move.
type bounds struct {
	mean           float64
	overfullAbove  int // overfull: more replicas than this
	underfullBelow int // underfull: fewer replicas than this
	live           int // live active nodes the mean is over
}

// balanceBounds computes the mean and thresholds over the live active
// nodes with th's margin; ok is false when there are none.
func balanceBounds(all []*Node, th Thresholds) (bounds, bool) {
	var b bounds
	total := 0
	for _, n := range all {
		if n.canTakeReplica() {
			b.live++
			total += n.Replicas
		}
	}
	if b.live == 0 {
		return b, false
	}
	b.mean = float64(total) / float64(b.live)
	margin := math.Max(b.mean*th.RangeThreshold, float64(th.MinRangeRebalance))
	// Overfull: count > mean + margin, that is count above ⌊mean+margin⌋.
	b.overfullAbove = int(math.Floor(b.mean + margin))
	// Underfull: count < mean − margin, that is count below
	// ⌈mean−margin⌉.
	b.underfullBelow = int(math.Ceil(b.mean - margin))
	return b, true
}

// rebalance returns the move for a fully replicated range with these
// voters, if one applies; every voter must be on a live active node.
// allowed, if not nil, refuses more targets (the scorer's constraints
// and full disks); th are the thresholds (valid, not the zero value).
func rebalance(voters []replica, all []*Node, leaseholder uint64, allowed func(from replica, to *Node) bool, th Thresholds) (move, bool) {
	for _, v := range voters {
		if v.health != healthy || !v.node.canTakeReplica() {
			return move{}, false
		}
	}
	b, ok := balanceBounds(all, th)
	if !ok {
		return move{}, false
	}
	holds := map[uint64]bool{}
	for _, v := range voters {
		holds[v.node.ID] = true
	}
	froms := append([]replica(nil), voters...)
	sort.SliceStable(froms, func(i, j int) bool {
		a, c := froms[i].node, froms[j].node
		switch {
		case a.Replicas != c.Replicas:
			return a.Replicas > c.Replicas
		case (a.ID == leaseholder) != (c.ID == leaseholder):
			return c.ID == leaseholder
		default:
			return a.ID < c.ID
		}
	})
	for _, f := range froms {
		if float64(f.node.Replicas) <= b.mean {
			break // sorted: no later voter is above the mean either
		}
		overfull := f.node.Replicas > b.overfullAbove
		var stay []*Node
		for _, v := range voters {
			if v.node != f.node {
				stay = append(stay, v.node)
			}
		}
		fromDiv := diversityOf(f.node, stay)
		var best *candidate
		for _, n := range all {
			if holds[n.ID] || !n.canTakeReplica() {
				continue
			}
			underfull := n.Replicas < b.underfullBelow
			if !(overfull && float64(n.Replicas) < b.mean) && !underfull {
				continue
			}
			c := candidate{node: n, div: diversityOf(n, stay)}
			if c.div.compare(fromDiv) > 0 {
				continue // less diverse than the voter it replaces
			}
			if allowed != nil && !allowed(f, n) {
				continue
			}
			if best == nil {
				best = &c
			} else if cmp, _ := compareCandidates(c, *best); cmp < 0 {
				best = &c
			}
		}
		if best == nil {
			continue
		}
		why := fmt.Sprintf("n%d holds %d replicas, overfull (more than %d); n%d holds %d, below the mean",
			f.node.ID, f.node.Replicas, b.overfullAbove, best.node.ID, best.node.Replicas)
		if !overfull {
			why = fmt.Sprintf("n%d holds %d replicas, above the mean; n%d holds %d, underfull (fewer than %d)",
				f.node.ID, f.node.Replicas, best.node.ID, best.node.Replicas, b.underfullBelow)
		}
		reason := fmt.Sprintf("rebalance: move n%d's voter (replica %d) to n%d: %s (mean %.2f over %d live active nodes)",
			f.node.ID, f.desc.ReplicaId, best.node.ID, why, b.mean, b.live)
		if len(best.div.tiers) > 0 || len(fromDiv.tiers) > 0 {
			reason += fmt.Sprintf("; n%d %s, as diverse as n%d, which %s", best.node.ID, best.div, f.node.ID, fromDiv)
		}
		if f.node.ID == leaseholder {
			reason += fmt.Sprintf("; n%d holds the lease: transfer it first", f.node.ID)
		}
		return move{from: f, to: *best, reason: reason}, true
	}
	return move{}, false
}
