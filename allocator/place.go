package allocator

import (
	"fmt"
	"sort"
	"strings"

	"github.com/rangestore/rangestore/proto/rspb"
)

// diversity is what a node's locality adds to a set of other replicas'
// nodes. Tiers are compared as prefixes from the widest: a node adds a
// tier value when its first shared+1 tiers match no other node's.
type diversity struct {
	shared  int  // leading tiers matched by the closest other node
	sharers int  // how many other nodes match that many tiers
	novel   bool // the node has a tier beyond shared: it adds a tier value
	tiers   []*rspb.LocalityTier
}

func diversityOf(n *Node, others []*Node) diversity {
	d := diversity{tiers: n.Locality}
	for _, o := range others {
		switch s := sharedTiers(n.Locality, o.Locality); {
		case s > d.shared:
			d.shared, d.sharers = s, 1
		case s == d.shared:
			d.sharers++
		}
	}
	d.novel = d.shared < len(n.Locality)
	return d
}

// compare orders by diversity, the more diverse first: adding a tier value
// beats adding none, adding it at a wider tier beats a narrower one, and
// sharing the closest tiers with fewer nodes beats sharing them with more.
func (d diversity) compare(o diversity) int {
	switch {
	case d.novel != o.novel:
		if d.novel {
			return -1
		}
		return 1
	case d.shared != o.shared:
		return d.shared - o.shared
	default:
		return d.sharers - o.sharers
	}
}

func (d diversity) String() string {
	if len(d.tiers) == 0 {
		return "has no locality"
	}
	if !d.novel {
		return fmt.Sprintf("adds no tier, %s is used", formatLocality(d.tiers))
	}
	s := "adds " + formatLocality(d.tiers[d.shared:d.shared+1])
	if d.shared > 0 {
		s += fmt.Sprintf(" next to %d in %s", d.sharers, formatLocality(d.tiers[:d.shared]))
	}
	return s
}

// candidate is an eligible node for a new replica.
type candidate struct {
	node *Node
	div  diversity
}

// criterion names what decided between two candidates.
type criterion int

const (
	byDiversity criterion = iota
	byCount
	byID
)

// compareCandidates orders candidates, the best first: diversity, then
// fewer replicas, then the lower node ID. It returns the criterion that
// decided.
func compareCandidates(a, b candidate) (int, criterion) {
	if c := a.div.compare(b.div); c != 0 {
		return c, byDiversity
	}
	if a.node.Replicas != b.node.Replicas {
		return a.node.Replicas - b.node.Replicas, byCount
	}
	if a.node.ID < b.node.ID {
		return -1, byID
	}
	return 1, byID
}

// whyLost says briefly why c lost to the winner w.
func whyLost(c, w candidate) string {
	switch _, crit := compareCandidates(c, w); crit {
	case byDiversity:
		return fmt.Sprintf("n%d (less diverse: %s)", c.node.ID, c.div)
	case byCount:
		return fmt.Sprintf("n%d (more replicas: %d)", c.node.ID, c.node.Replicas)
	default:
		return fmt.Sprintf("n%d (a tie, higher ID)", c.node.ID)
	}
}

// maxLosersListed caps the losers a placement reason names.
const maxLosersListed = 3

// Placement is the node chosen for a new replica of a range.
type Placement struct {
	// Node is the chosen node, 0 if no node can take the replica.
	Node   uint64
	Reason string
}

// Place picks the node for a new voter of desc: a live, active node that
// holds no replica of the range, the one whose locality adds a tier value
// not yet used by the range's voters that stay (those on nodes that are
// not dead, decommissioned or decommissioning), at the widest tier; among
// equally diverse nodes the one with the fewest replicas; then the lower
// node ID. The reason names why the winner won and why the others lost
// or were not eligible.
func Place(desc *rspb.RangeDescriptor, nodes []Node) (Placement, error) {
	m, err := nodeMap(nodes)
	if err != nil {
		return Placement{}, err
	}
	voters, nonVoters, err := replicas(desc, m)
	if err != nil {
		return Placement{}, err
	}
	p, _ := place(voters, nonVoters, sortedNodes(m))
	return p, nil
}

// ineligibility lists why nodes cannot take the replica, in this order.
var ineligibility = []string{"has a replica", "dead", "decommissioned", "decommissioning", "suspect", "draining", "read replica"}

func whyIneligible(n *Node, holds bool) string {
	switch {
	case holds:
		return "has a replica"
	case n.Liveness == Dead:
		return "dead"
	case n.Membership == Decommissioned:
		return "decommissioned"
	case n.Membership == Decommissioning:
		return "decommissioning"
	case n.Liveness == Suspect:
		return "suspect"
	case n.Membership == Draining:
		return "draining"
	case n.ReadReplica:
		return "read replica"
	}
	return ""
}

// staying returns the nodes of the voters that stay in the range.
func staying(voters []replica) []*Node {
	var out []*Node
	for _, v := range voters {
		if v.health == healthy || v.health == suspect {
			out = append(out, v.node)
		}
	}
	return out
}

// place is Place over checked replicas and the node views sorted by ID;
// it also returns the winning candidate (nil if none).
func place(voters, nonVoters []replica, all []*Node) (Placement, *candidate) {
	holds := make(map[uint64]bool)
	for _, r := range append(append([]replica(nil), voters...), nonVoters...) {
		holds[r.node.ID] = true
	}
	basis := staying(voters)
	var cands []candidate
	excluded := make(map[string][]uint64)
	for _, n := range all {
		if holds[n.ID] || !n.canTakeReplica() {
			why := whyIneligible(n, holds[n.ID])
			excluded[why] = append(excluded[why], n.ID)
			continue
		}
		cands = append(cands, candidate{node: n, div: diversityOf(n, basis)})
	}
	var notEligible []string
	for _, why := range ineligibility {
		if ids := excluded[why]; len(ids) > 0 {
			notEligible = append(notEligible, nodeList(ids)+" ("+why+")")
		}
	}
	if len(cands) == 0 {
		if len(notEligible) == 0 {
			return Placement{Reason: "no candidate: no node"}, nil
		}
		return Placement{Reason: "no candidate: " + strings.Join(notEligible, ", ")}, nil
	}
	sort.Slice(cands, func(i, j int) bool {
		c, _ := compareCandidates(cands[i], cands[j])
		return c < 0
	})
	w := cands[0]
	var b strings.Builder
	fmt.Fprintf(&b, "n%d %s, %d replicas", w.node.ID, w.div, w.node.Replicas)
	if losers := cands[1:]; len(losers) > 0 {
		b.WriteString("; beat ")
		for i, c := range losers {
			if i == maxLosersListed {
				fmt.Fprintf(&b, ", and %d more", len(losers)-i)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(whyLost(c, w))
		}
	}
	if len(notEligible) > 0 {
		b.WriteString("; not eligible: " + strings.Join(notEligible, ", "))
	}
	return Placement{Node: w.node.ID, Reason: b.String()}, &w
}
