package allocator

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/rangestore/rangestore/proto/rspb"
)

// simCluster is a synthetic cluster: node views whose replica counts are
// derived from the range descriptors.
type simCluster struct {
	nodes  []Node
	ranges []*rspb.RangeDescriptor
}

func (c *simCluster) recount() {
	for i := range c.nodes {
		c.nodes[i].Replicas = 0
	}
	for _, d := range c.ranges {
		for _, rd := range d.Replicas {
			c.nodes[rd.NodeId-1].Replicas++
		}
	}
}

// sumSquares is the spread the rebalance rule must lower with every move.
func (c *simCluster) sumSquares() int {
	s := 0
	for _, n := range c.nodes {
		if n.canTakeReplica() {
			s += n.Replicas * n.Replicas
		}
	}
	return s
}

// run applies the decisions range after range, sweep after sweep, until a
// whole sweep changes nothing, and returns the moves made. It fails if a
// move does not lower the spread or more than maxMoves are made.
func (c *simCluster) run(t *testing.T, factor, maxMoves int) int {
	t.Helper()
	moves := 0
	for changed := true; changed; {
		changed = false
		for _, d := range c.ranges {
			c.recount()
			dec, err := Decide(Range{Desc: d, Factor: factor}, c.nodes)
			if err != nil {
				t.Fatal(err)
			}
			switch dec.Action {
			case ActionNone:
				continue
			case ActionRebalance:
			default:
				t.Fatalf("r%d: unexpected %s: %s", d.RangeId, dec.Action, dec.Reason)
			}
			before := c.sumSquares()
			apply(t, d, c.nodes, dec)
			if after := c.sumSquares(); after >= before {
				t.Fatalf("r%d: move n%d->n%d did not lower the spread (%d -> %d): %s", d.RangeId, dec.From, dec.Node, before, after, dec.Reason)
			}
			moves++
			changed = true
			if moves > maxMoves {
				t.Fatalf("more than %d moves; counts %s", maxMoves, c.counts())
			}
		}
	}
	c.recount()
	return moves
}

func (c *simCluster) counts() string {
	s := ""
	for _, n := range c.nodes {
		s += fmt.Sprintf(" n%d=%d", n.ID, n.Replicas)
	}
	return s
}

// checkBalanced fails unless every live active node holds 0.8× to 1.2×
// the mean.
func (c *simCluster) checkBalanced(t *testing.T) {
	t.Helper()
	total, live := 0, 0
	for _, n := range c.nodes {
		if n.canTakeReplica() {
			total += n.Replicas
			live++
		}
	}
	mean := float64(total) / float64(live)
	for _, n := range c.nodes {
		if n.canTakeReplica() && (float64(n.Replicas) < 0.8*mean || float64(n.Replicas) > 1.2*mean) {
			t.Errorf("n%d holds %d replicas, outside 0.8-1.2 of the mean %.2f:%s", n.ID, n.Replicas, mean, c.counts())
		}
	}
}

// TestRebalanceConverges: 3 nodes × 30 ranges of 3 voters, then n4 and
// n5 join empty. Applying the decisions one at a time ends (every move
// lowers the spread) within 0.8-1.2× of the mean (18), in no more moves
// than the 36 replicas above the mean and at least the 30 that bring n4
// and n5 to 0.8× of it.
func TestRebalanceConverges(t *testing.T) {
	c := &simCluster{nodes: []Node{{ID: 1}, {ID: 2}, {ID: 3}}}
	for i := 0; i < 30; i++ {
		d := &rspb.RangeDescriptor{RangeId: uint64(i + 1), NextReplicaId: 4}
		for n := uint64(1); n <= 3; n++ {
			d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: n, ReplicaId: n})
		}
		c.ranges = append(c.ranges, d)
	}
	if moves := c.run(t, 3, 0); moves != 0 {
		t.Fatalf("3 equal nodes: %d moves", moves)
	}
	c.nodes = append(c.nodes, Node{ID: 4}, Node{ID: 5})
	moves := c.run(t, 3, 36)
	c.checkBalanced(t)
	t.Logf("5 nodes: %d moves, counts%s", moves, c.counts())
	if moves < 30 {
		t.Errorf("%d moves cannot bring n4 and n5 to 15 replicas each", moves)
	}
}

// TestRebalanceConvergesRandom: seeded random clusters of 3 regions with
// as many nodes in each (1-3), 10-60 ranges of factor 3 with one voter
// per region on a random node of it; then 1-2 empty nodes join in every
// region. Every run terminates, every move lowers the spread, the ranges
// keep one voter per region, and every node ends within the thresholds:
// neither overfull nor underfull (a region's nodes hold one replica of
// every range between them, so an overfull node always has a same-region
// node below the mean that holds none of its ranges, and an underfull one
// a same-region node above it), which is 0.8-1.2× of the mean from a mean
// of 10.
func TestRebalanceConvergesRandom(t *testing.T) {
	regions := []string{"us", "eu", "ap"}
	for seed := int64(1); seed <= 50; seed++ {
		rng := rand.New(rand.NewSource(seed))
		c := &simCluster{}
		addNodes := func(perRegion int) {
			for i := 0; i < 3*perRegion; i++ {
				id := uint64(len(c.nodes) + 1)
				c.nodes = append(c.nodes, Node{ID: id, Locality: []*rspb.LocalityTier{{Key: "region", Value: regions[int(id-1)%3]}}})
			}
		}
		addNodes(1 + rng.Intn(3))
		for r := 0; r < 10+rng.Intn(51); r++ {
			d := &rspb.RangeDescriptor{RangeId: uint64(r + 1), NextReplicaId: 4}
			for reg := 0; reg < 3; reg++ {
				var in []uint64
				for _, nd := range c.nodes {
					if int(nd.ID-1)%3 == reg {
						in = append(in, nd.ID)
					}
				}
				d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: in[rng.Intn(len(in))], ReplicaId: uint64(reg + 1)})
			}
			c.ranges = append(c.ranges, d)
		}
		addNodes(1 + rng.Intn(2))
		c.recount()
		// Every move lowers the sum of squares by at least 2; the
		// replica count is a far smaller bound the rule should meet.
		moves := c.run(t, 3, 3*len(c.ranges))
		all := make([]*Node, len(c.nodes))
		for i := range c.nodes {
			all[i] = &c.nodes[i]
		}
		b, _ := balanceBounds(all, DefaultThresholds())
		for _, n := range c.nodes {
			if n.Replicas > b.overfullAbove || n.Replicas < b.underfullBelow {
				t.Errorf("n%d holds %d replicas: outside %d..%d (mean %.2f)", n.ID, n.Replicas, b.underfullBelow, b.overfullAbove, b.mean)
			}
		}
		if b.mean >= 10 {
			c.checkBalanced(t)
		}
		for _, d := range c.ranges {
			seen := map[string]bool{}
			for _, rd := range d.Replicas {
				seen[c.nodes[rd.NodeId-1].Locality[0].Value] = true
			}
			if len(seen) != 3 {
				t.Errorf("r%d lost a region: %v", d.RangeId, d.Replicas)
			}
		}
		if t.Failed() {
			t.Fatalf("seed %d: %d nodes, %d ranges, %d moves, counts%s", seed, len(c.nodes), len(c.ranges), moves, c.counts())
		}
	}
}
