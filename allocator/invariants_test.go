package allocator

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/rangestore/rangestore/proto/rspb"
)

// randomCluster builds n nodes in up to 3 regions × 2 zones with random
// states and counts.
func randomCluster(rng *rand.Rand, n int) []Node {
	regions := []string{"us", "eu", "ap"}
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = Node{
			ID: uint64(i + 1),
			Locality: []*rspb.LocalityTier{
				{Key: "region", Value: regions[rng.Intn(len(regions))]},
				{Key: "zone", Value: fmt.Sprint(rng.Intn(2))},
			},
			Replicas: rng.Intn(20),
			Leases:   rng.Intn(10),
		}
		switch rng.Intn(10) {
		case 0:
			nodes[i].Liveness = Dead
		case 1:
			nodes[i].Liveness = Suspect
		}
		switch rng.Intn(12) {
		case 0:
			nodes[i].Membership = Draining
		case 1:
			nodes[i].Membership = Decommissioning
		case 2:
			nodes[i].Membership = Decommissioned
		}
	}
	return nodes
}

// randomRange puts 1..7 replicas on distinct random nodes, about one in
// six a non-voter, at least one voter.
func randomRange(rng *rand.Rand, nodes []Node) *rspb.RangeDescriptor {
	d := &rspb.RangeDescriptor{RangeId: 1}
	perm := rng.Perm(len(nodes))
	k := 1 + rng.Intn(min(7, len(nodes)))
	for i := 0; i < k; i++ {
		typ := rspb.ReplicaType_VOTER
		if i > 0 && rng.Intn(6) == 0 {
			typ = rspb.ReplicaType_NON_VOTER
		}
		d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: nodes[perm[i]].ID, ReplicaId: uint64(i + 1), Type: typ})
	}
	return d
}

// TestDecideInvariants checks, over seeded random clusters and ranges,
// what every decision must respect whatever the scoring: the same
// decision whatever the order of the node views; unavailable exactly when
// fewer than a majority of the voters are on nodes that are not dead; a
// new voter only on a live active node without a replica of the range (or
// promoting its non-voter there); a removal only of a replica the range
// has, never the last voter, never below the factor of kept voters;
// priority 0 exactly when there is nothing to do.
func TestDecideInvariants(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	for i := 0; i < 3000; i++ {
		nodes := randomCluster(rng, 1+rng.Intn(9))
		desc := randomRange(rng, nodes)
		r := Range{Desc: desc, Factor: []int{1, 3, 5}[rng.Intn(3)], Leaseholder: desc.Replicas[0].NodeId}
		d, err := Decide(r, nodes)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("case %d: %s\nfactor %d, range %v\nnodes %v\ndecision %+v", i, fmt.Sprintf(format, args...), r.Factor, desc.Replicas, nodes, d)
		}

		shuffled := append([]Node(nil), nodes...)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if d2, _ := Decide(r, shuffled); d2 != d {
			fail("the node views' order changed the decision: %+v", d2)
		}

		byID := map[uint64]*Node{}
		for j := range nodes {
			byID[nodes[j].ID] = &nodes[j]
		}
		var voters, live, kept int
		holds := map[uint64]*rspb.ReplicaDescriptor{}
		for _, rd := range desc.Replicas {
			holds[rd.NodeId] = rd
			if rd.Type != rspb.ReplicaType_VOTER {
				continue
			}
			voters++
			n := byID[rd.NodeId]
			if n.Liveness != Dead && n.Membership != Decommissioned {
				live++
				if n.Membership != Decommissioning {
					kept++
				}
			}
		}
		if (d.Action == ActionUnavailable) != (live < voters/2+1) {
			fail("unavailable is %t with %d of %d voters live", d.Action == ActionUnavailable, live, voters)
		}
		if d.UnderReplicated != (kept < r.Factor) {
			fail("under-replicated is %t with %d voters kept", d.UnderReplicated, kept)
		}
		if d.Reason == "" {
			fail("no reason")
		}
		idle := d.Action == ActionNone || d.Action == ActionNoTarget || d.Action == ActionUnavailable
		if idle != (d.Priority == 0) {
			fail("priority %d for %s", d.Priority, d.Action)
		}
		switch d.Action {
		case ActionAddVoter:
			n := byID[d.Node]
			if n == nil || n.Liveness != Live || n.Membership != Active {
				fail("new voter on a node that cannot take one")
			}
			rd := holds[d.Node]
			switch {
			case d.ReplicaID == 0 && rd != nil:
				fail("new voter on a node that holds a replica")
			case d.ReplicaID != 0 && (rd == nil || rd.Type != rspb.ReplicaType_NON_VOTER || rd.ReplicaId != d.ReplicaID):
				fail("promotes a replica that is not the node's non-voter")
			}
			if kept >= r.Factor {
				fail("adds a voter with %d kept", kept)
			}
		case ActionRemoveVoter, ActionRemoveNonVoter:
			rd := holds[d.Node]
			want := rspb.ReplicaType_VOTER
			if d.Action == ActionRemoveNonVoter {
				want = rspb.ReplicaType_NON_VOTER
			}
			if rd == nil || rd.ReplicaId != d.ReplicaID || rd.Type != want {
				fail("removes a replica the range does not have")
			}
			if d.Action == ActionRemoveVoter {
				n := byID[d.Node]
				stillKept := kept
				if n.Liveness != Dead && n.Membership != Decommissioned && n.Membership != Decommissioning {
					stillKept--
				}
				if voters <= 1 || stillKept < r.Factor {
					fail("removal leaves %d voters, %d kept", voters-1, stillKept)
				}
			}
		case ActionRebalance:
			to, from := byID[d.Node], byID[d.From]
			rd := holds[d.From]
			switch {
			case to == nil || to.Liveness != Live || to.Membership != Active || holds[d.Node] != nil:
				fail("rebalances to a node that cannot take a replica")
			case rd == nil || rd.Type != rspb.ReplicaType_VOTER || rd.ReplicaId != d.ReplicaID:
				fail("rebalances a replica the range does not have as a voter")
			case from.Replicas < to.Replicas+2:
				fail("rebalance from n%d (%d replicas) to n%d (%d) does not reduce the spread", d.From, from.Replicas, d.Node, to.Replicas)
			case kept != r.Factor || voters != kept || len(desc.Replicas) != voters:
				fail("rebalance with %d voters, %d kept, %d replicas", voters, kept, len(desc.Replicas))
			}
			for _, rd := range desc.Replicas {
				if n := byID[rd.NodeId]; n.Liveness != Live || n.Membership != Active {
					fail("rebalance with a voter on n%d, %s %s", n.ID, n.Liveness, n.Membership)
				}
			}
		case ActionNone:
			if kept != r.Factor || voters != kept || len(desc.Replicas) != voters {
				fail("none with %d voters, %d kept, %d replicas", voters, kept, len(desc.Replicas))
			}
		}
	}
}

// apply carries out d on desc the way the replicate queue would, and
// keeps the node counts in step.
func apply(t *testing.T, desc *rspb.RangeDescriptor, nodes []Node, d Decision) {
	t.Helper()
	count := func(id uint64, delta int) {
		for i := range nodes {
			if nodes[i].ID == id {
				nodes[i].Replicas += delta
			}
		}
	}
	switch d.Action {
	case ActionAddVoter:
		if d.ReplicaID != 0 {
			for _, rd := range desc.Replicas {
				if rd.ReplicaId == d.ReplicaID {
					rd.Type = rspb.ReplicaType_VOTER
				}
			}
			return
		}
		desc.Replicas = append(desc.Replicas, &rspb.ReplicaDescriptor{NodeId: d.Node, ReplicaId: desc.NextReplicaId})
		desc.NextReplicaId++
		count(d.Node, 1)
	case ActionRemoveVoter, ActionRemoveNonVoter:
		for i, rd := range desc.Replicas {
			if rd.ReplicaId == d.ReplicaID {
				desc.Replicas = append(desc.Replicas[:i], desc.Replicas[i+1:]...)
				count(d.Node, -1)
				return
			}
		}
		t.Fatalf("no replica %d to remove", d.ReplicaID)
	case ActionRebalance:
		apply(t, desc, nodes, Decision{Action: ActionAddVoter, Node: d.Node})
		apply(t, desc, nodes, Decision{Action: ActionRemoveVoter, Node: d.From, ReplicaID: d.ReplicaID})
	default:
		t.Fatalf("cannot apply %s", d.Action)
	}
}

// converge applies Decide's repair actions to desc until none is left (at
// most 10 steps; a rebalance is not a repair and ends it too: the node
// counts of these cases are not derived from their ranges) and returns
// the actions taken.
func converge(t *testing.T, desc *rspb.RangeDescriptor, factor int, nodes []Node) []string {
	t.Helper()
	var steps []string
	for i := 0; ; i++ {
		d, err := Decide(Range{Desc: desc, Factor: factor}, nodes)
		if err != nil {
			t.Fatal(err)
		}
		if d.Action == ActionNone || d.Action == ActionRebalance {
			return steps
		}
		if i == 10 {
			t.Fatalf("no convergence after 10 steps: %v, then %s: %s", steps, d.Action, d.Reason)
		}
		steps = append(steps, fmt.Sprintf("%s n%d", d.Action, d.Node))
		apply(t, desc, nodes, d)
	}
}

// TestRepairConverges plays whole repairs: from each starting point the
// decisions, applied one by one, end in "none" with the expected steps,
// one voter per region whenever the regions allow it.
func TestRepairConverges(t *testing.T) {
	loc := func(region, zone string) []*rspb.LocalityTier {
		return []*rspb.LocalityTier{{Key: "region", Value: region}, {Key: "zone", Value: zone}}
	}
	cluster := func() []Node {
		return []Node{
			{ID: 1, Locality: loc("us", "a"), Replicas: 10},
			{ID: 2, Locality: loc("eu", "a"), Replicas: 10},
			{ID: 3, Locality: loc("ap", "a"), Replicas: 10},
			{ID: 4, Locality: loc("us", "b"), Replicas: 5},
			{ID: 5, Locality: loc("eu", "b"), Replicas: 5},
			{ID: 6, Locality: loc("ap", "b"), Replicas: 5},
		}
	}
	voters := func(ids ...uint64) *rspb.RangeDescriptor {
		d := &rspb.RangeDescriptor{RangeId: 1}
		for _, id := range ids {
			d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: id, ReplicaId: uint64(len(d.Replicas) + 1)})
		}
		d.NextReplicaId = uint64(len(d.Replicas) + 1)
		return d
	}
	for _, c := range []struct {
		name   string
		desc   *rspb.RangeDescriptor
		factor int
		change func(nodes []Node)
		want   string
	}{
		{"up-replicate from one node", voters(1), 3, nil,
			"[add-voter n5 add-voter n6]"},
		{"a dead node is replaced in its region", voters(1, 2, 3), 3, func(ns []Node) { ns[2].Liveness = Dead },
			"[add-voter n6 remove-voter n3]"},
		{"a decommissioning node is moved off", voters(1, 2, 3), 3, func(ns []Node) { ns[1].Membership = Decommissioning },
			"[add-voter n5 remove-voter n2]"},
		{"factor raised to 5", voters(1, 2, 3), 5, nil,
			"[add-voter n4 add-voter n5]"},
		{"factor lowered to 3", voters(1, 2, 3, 4, 5), 3, nil,
			"[remove-voter n1 remove-voter n2]"},
		{"a leftover non-voter is removed", func() *rspb.RangeDescriptor {
			d := voters(1, 2, 3, 4)
			d.Replicas[3].Type = rspb.ReplicaType_NON_VOTER
			return d
		}(), 3, nil, "[remove-non-voter n4]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			nodes := cluster()
			if c.change != nil {
				c.change(nodes)
			}
			if got := fmt.Sprint(converge(t, c.desc, c.factor, nodes)); got != c.want {
				t.Errorf("steps %s, want %s", got, c.want)
			}
			regions := map[string]bool{}
			for _, rd := range c.desc.Replicas {
				regions[nodes[rd.NodeId-1].Locality[0].Value] = true
			}
			if len(c.desc.Replicas) != c.factor || len(regions) != min(c.factor, 3) {
				t.Errorf("ended with %v over %d regions", c.desc.Replicas, len(regions))
			}
		})
	}
}
