package allocator

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// ErrInvalid marks every error of this package: the caller passed input
// that no decision can be made from (a bad replication factor, a
// descriptor with two replicas on one node or a replica on a node it has
// no view of, a node listed twice). Callers map it to InvalidArgument.
var ErrInvalid = errors.New("allocator: invalid input")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Liveness is what a node's liveness record says about it at the time of
// the decision (ClassifyLiveness).
type Liveness int

const (
	// Live: the record has not expired.
	Live Liveness = iota
	// Suspect: the record has expired, but for less than the time until
	// store dead. The node takes no new replica; its replicas count towards
	// quorum and are not replaced yet (it may only be restarting).
	Suspect
	// Dead: the record has been expired for the time until store dead or
	// longer. Its replicas count as lost and are replaced.
	Dead
)

func (l Liveness) String() string {
	switch l {
	case Live:
		return "live"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	}
	return fmt.Sprintf("Liveness(%d)", int(l))
}

// ClassifyLiveness classifies a node whose liveness record expires at
// expiration, at now: live before the expiration, suspect for
// timeUntilDead after it, dead from then on (the --time-until-store-dead
// setting, 5 min by default).
func ClassifyLiveness(expiration, now time.Time, timeUntilDead time.Duration) Liveness {
	switch {
	case now.Before(expiration):
		return Live
	case now.Sub(expiration) < timeUntilDead:
		return Suspect
	default:
		return Dead
	}
}

// Membership is a node's membership state, set by an operator.
type Membership int

const (
	// Active: a full member, takes replicas and leases.
	Active Membership = iota
	// Draining: keeps its replicas (they are not replaced) but takes no
	// new replica and no lease; a restart or a decommission drains first.
	Draining
	// Decommissioning: its replicas are moved away (replaced, then
	// removed) and it takes nothing new.
	Decommissioning
	// Decommissioned: the node has left for good; a replica still on it
	// counts as lost, like one on a dead node.
	Decommissioned
)

func (m Membership) String() string {
	switch m {
	case Active:
		return "active"
	case Draining:
		return "draining"
	case Decommissioning:
		return "decommissioning"
	case Decommissioned:
		return "decommissioned"
	}
	return fmt.Sprintf("Membership(%d)", int(m))
}

// Node is the allocator's view of one node.
type Node struct {
	ID uint64
	// Locality lists the node's tiers from the widest down, e.g.
	// region=us, zone=a. Every node should list the same keys in the same
	// order; tiers are compared as prefixes (zone=a in region=us is not
	// zone=a in region=eu).
	Locality   []*rspb.LocalityTier
	Liveness   Liveness
	Membership Membership
	Replicas   int // replicas the node holds, of all ranges
	Leases     int // leases the node holds
	// CapacityBytes and UsedBytes are the store's disk (0 capacity:
	// unknown, never counted as full); QPS the requests per second its
	// leaseholders serve. Only the scorer (Score) reads them.
	CapacityBytes int64
	UsedBytes     int64
	QPS           float64
	// ReadReplica: the node is a read replica (rangestore start
	// --read-replica): it takes no voter and no lease, only non-voters:
	// one of every range, or of the ranges its zone selects by
	// num_non_voters and non_voter_constraints (doc.go, "Read
	// replicas"; readReplicaRepair, countedNonVoterRepair).
	ReadReplica bool
}

// canTakeReplica reports whether a new voter (or a zone's non-voter on an
// ordinary node) may be placed on n: never on a read-replica node (whose
// non-voters canTakeReadReplica admits).
func (n *Node) canTakeReplica() bool {
	return n.Liveness == Live && n.Membership == Active && !n.ReadReplica
}

// canTakeReadReplica reports whether n is a read-replica node that may
// get its non-voter of a range now.
func (n *Node) canTakeReadReplica() bool {
	return n.Liveness == Live && n.Membership == Active && n.ReadReplica && !diskFull(n)
}

// Range is the allocator's view of one range.
type Range struct {
	Desc *rspb.RangeDescriptor
	// Factor is the number of voters the range should have: odd, at least
	// 1 (3 by default, 5 allowed).
	Factor int
	// Leaseholder is the node holding the range's lease, 0 if unknown. A
	// removal avoids it when another voter is as good.
	Leaseholder uint64
}

// ValidateFactor returns an ErrInvalid error naming the problem if f is
// not a usable replication factor: Raft majorities of an even number of
// voters tolerate no more failures than one voter fewer, and a range
// needs at least one voter.
func ValidateFactor(f int) error {
	if f < 1 {
		return invalid("replication factor %d: must be at least 1", f)
	}
	if f%2 == 0 {
		return invalid("replication factor %d: must be odd (%d voters tolerate no more failures than %d)", f, f, f-1)
	}
	return nil
}

// nodeMap indexes the node views by ID; it refuses an ID of 0 or one
// listed twice.
func nodeMap(nodes []Node) (map[uint64]*Node, error) {
	m := make(map[uint64]*Node, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		if n.ID == 0 {
			return nil, invalid("node view %d has node ID 0", i)
		}
		if _, ok := m[n.ID]; ok {
			return nil, invalid("n%d is listed twice in the node views", n.ID)
		}
		m[n.ID] = n
	}
	return m, nil
}

// health is what a replica's node means for the replica.
type health int

const (
	healthy    health = iota // live or draining: kept
	suspect                  // not heard from lately: kept, not replaced yet
	leaving                  // on a decommissioning node: replaced, then removed
	lost                     // on a dead or decommissioned node: replaced, then removed
	numHealths               // the number of health values
)

func healthOf(n *Node) health {
	switch {
	case n.Liveness == Dead || n.Membership == Decommissioned:
		return lost
	case n.Membership == Decommissioning:
		return leaving
	case n.Liveness == Suspect:
		return suspect
	default:
		return healthy
	}
}

// replica is one replica of the range being decided, with its node.
type replica struct {
	desc   *rspb.ReplicaDescriptor
	node   *Node
	health health
}

// replicas checks r's descriptor against the node views and returns its
// voters and non-voters in descriptor order. The non-voters on
// read-replica nodes are left out (readReplicas returns them: they are
// not the zone's); a voter on a read-replica node is leaving (replaced,
// then removed: such a node never votes).
func replicas(desc *rspb.RangeDescriptor, nodes map[uint64]*Node) (voters, nonVoters []replica, err error) {
	if desc == nil {
		return nil, nil, invalid("no range descriptor")
	}
	seen := make(map[uint64]bool, len(desc.Replicas))
	for _, rd := range desc.Replicas {
		if seen[rd.NodeId] {
			return nil, nil, invalid("r%d has two replicas on n%d", desc.RangeId, rd.NodeId)
		}
		seen[rd.NodeId] = true
		n, ok := nodes[rd.NodeId]
		if !ok {
			return nil, nil, invalid("r%d has a replica on n%d, which has no node view", desc.RangeId, rd.NodeId)
		}
		r := replica{desc: rd, node: n, health: healthOf(n)}
		switch {
		case rd.Type == rspb.ReplicaType_NON_VOTER && n.ReadReplica:
		case rd.Type == rspb.ReplicaType_NON_VOTER:
			nonVoters = append(nonVoters, r)
		default:
			if n.ReadReplica && (r.health == healthy || r.health == suspect) {
				r.health = leaving
			}
			voters = append(voters, r)
		}
	}
	if len(voters) == 0 {
		return nil, nil, invalid("r%d has no voter", desc.RangeId)
	}
	return voters, nonVoters, nil
}

// readReplicas returns the non-voters of desc on read-replica nodes, in
// descriptor order (desc already checked by replicas).
func readReplicas(desc *rspb.RangeDescriptor, nodes map[uint64]*Node) []replica {
	var out []replica
	for _, rd := range desc.GetReplicas() {
		if n, ok := nodes[rd.NodeId]; ok && n.ReadReplica && rd.Type == rspb.ReplicaType_NON_VOTER {
			out = append(out, replica{desc: rd, node: n, health: healthOf(n)})
		}
	}
	return out
}

// sortedNodes returns the node views ordered by ID, so that every walk over
// them is deterministic.
func sortedNodes(nodes map[uint64]*Node) []*Node {
	out := make([]*Node, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// formatLocality prints tiers as "region=us,zone=a".
func formatLocality(tiers []*rspb.LocalityTier) string {
	parts := make([]string, len(tiers))
	for i, t := range tiers {
		parts[i] = t.Key + "=" + t.Value
	}
	return strings.Join(parts, ",")
}

// sharedTiers is the number of leading tiers a and b have in common (same
// key and value): 0 if they differ at the widest tier.
func sharedTiers(a, b []*rspb.LocalityTier) int {
	i := 0
	for i < len(a) && i < len(b) && a[i].Key == b[i].Key && a[i].Value == b[i].Value {
		i++
	}
	return i
}

// nodeList prints node IDs as "n1,n2".
func nodeList(ids []uint64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("n%d", id)
	}
	return strings.Join(parts, ",")
}
