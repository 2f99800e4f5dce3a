package allocator

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/rangestore/rangestore/proto/rspb"
)

// applyScored carries out a scorer action on desc the way the replicate
// queue would (a replace adds the new replica; the lost one goes in a
// later step) and keeps the node counts in step. It reports false for an
// action that is not a replica repair (moves for balance, lease
// transfers, none), which ends a run.
func applyScored(t *testing.T, desc *rspb.RangeDescriptor, nodes []Node, d Decision) bool {
	t.Helper()
	count := func(id uint64, delta int) {
		for i := range nodes {
			if nodes[i].ID == id {
				nodes[i].Replicas += delta
			}
		}
	}
	add := func(node uint64, typ rspb.ReplicaType) {
		desc.Replicas = append(desc.Replicas, &rspb.ReplicaDescriptor{NodeId: node, ReplicaId: desc.NextReplicaId, Type: typ})
		desc.NextReplicaId++
		count(node, 1)
	}
	remove := func(id uint64) {
		for i, rd := range desc.Replicas {
			if rd.ReplicaId == id {
				count(rd.NodeId, -1)
				desc.Replicas = append(desc.Replicas[:i], desc.Replicas[i+1:]...)
				return
			}
		}
		t.Fatalf("no replica %d to remove: %s", id, d.Reason)
	}
	switch d.Action {
	case ActionAddVoter:
		if d.ReplicaID != 0 {
			for _, rd := range desc.Replicas {
				if rd.ReplicaId == d.ReplicaID {
					rd.Type = rspb.ReplicaType_VOTER
				}
			}
			return true
		}
		add(d.Node, rspb.ReplicaType_VOTER)
	case ActionReplaceVoter:
		add(d.Node, rspb.ReplicaType_VOTER)
	case ActionAddNonVoter, ActionReplaceNonVoter:
		add(d.Node, rspb.ReplicaType_NON_VOTER)
	case ActionRebalanceNonVoter:
		add(d.Node, rspb.ReplicaType_NON_VOTER)
		remove(d.ReplicaID)
	case ActionRemoveVoter, ActionRemoveNonVoter:
		remove(d.ReplicaID)
	default:
		return false
	}
	return true
}

// TestReadReplicaZoneRulesConverge plays the scorer's actions on seeded
// random clusters of ordinary and read-replica nodes (some read replicas
// dead, draining or with a full disk) under zones of each read-replica
// rule, from random starting descriptors (non-voters anywhere), until it
// stops repairing (at most 40 steps: no action undoes another). The end
// state must be the rule's:
//   - neither field: every read replica that can hold a non-voter holds
//     one, and no dead one holds any;
//   - non_voter_constraints alone: exactly the selected read replicas
//     that can hold one do;
//   - num_non_voters N: N non-voters in all when the nodes allow it, no
//     read replica that breaks the constraints holds one, and an ordinary
//     node holds one only if no read replica could take it.
func TestReadReplicaZoneRulesConverge(t *testing.T) {
	zones := []map[string]string{
		{},
		{"num_replicas": "4", "num_voters": "3"},
		{"non_voter_constraints": "+region=eu"},
		{"constraints": "-zone=b", "non_voter_constraints": "+region=us"},
		{"num_voters": "3", "num_non_voters": "1"},
		{"num_voters": "3", "num_non_voters": "2"},
		{"num_voters": "3", "num_non_voters": "0"},
		{"num_voters": "3", "num_non_voters": "2", "non_voter_constraints": "+region=eu"},
	}
	regions := []string{"us", "eu", "ap"}
	rules := map[readReplicaRule]int{}
	for seed := int64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var nodes []Node
		ordinary := 3 + rng.Intn(4)
		reads := 1 + rng.Intn(4)
		for i := 0; i < ordinary+reads; i++ {
			n := Node{ID: uint64(i + 1), Locality: parseTiers(fmt.Sprintf("region=%s,zone=%c", regions[rng.Intn(3)], 'a'+rune(rng.Intn(2)))),
				Replicas: 10, CapacityBytes: 100, UsedBytes: 10, ReadReplica: i >= ordinary}
			if n.ReadReplica {
				switch rng.Intn(8) {
				case 0:
					n.Liveness = Dead
				case 1:
					n.Membership = Draining
				case 2:
					n.UsedBytes = 99
				}
			}
			nodes = append(nodes, n)
		}
		z, err := ParseZoneConfig(zones[rng.Intn(len(zones))])
		if err != nil {
			t.Fatal(err)
		}
		if z, err = z.Resolve(); err != nil {
			t.Fatal(err)
		}
		rule := z.readReplicaRule()
		rules[rule]++
		// Three voters on ordinary nodes, then random non-voters on the
		// other nodes.
		desc := &rspb.RangeDescriptor{RangeId: 1, NextReplicaId: 1}
		for i, p := range rng.Perm(ordinary) {
			typ := rspb.ReplicaType_VOTER
			if i >= 3 {
				if rng.Intn(3) != 0 {
					continue
				}
				typ = rspb.ReplicaType_NON_VOTER
			}
			desc.Replicas = append(desc.Replicas, &rspb.ReplicaDescriptor{NodeId: uint64(p + 1), ReplicaId: desc.NextReplicaId, Type: typ})
			desc.NextReplicaId++
		}
		for i := ordinary; i < len(nodes); i++ {
			if rng.Intn(2) == 0 {
				desc.Replicas = append(desc.Replicas, &rspb.ReplicaDescriptor{NodeId: uint64(i + 1), ReplicaId: desc.NextReplicaId, Type: rspb.ReplicaType_NON_VOTER})
				desc.NextReplicaId++
			}
		}
		var steps []string
		var last Recommendation
		for i := 0; ; i++ {
			rec, err := Score(ScoreInput{Desc: desc, Zone: z, Nodes: nodes, Leaseholder: desc.Replicas[0].NodeId})
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			last = rec
			if i == 40 {
				t.Fatalf("seed %d (zone %s): no end after 40 steps: %v", seed, z, steps)
			}
			if !applyScored(t, desc, nodes, rec.Decision) {
				break
			}
			steps = append(steps, fmt.Sprintf("%s n%d", rec.Action, rec.Node))
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d (zone %s): %s\nsteps %v\nended with %v\nlast:\n%s", seed, z, fmt.Sprintf(format, args...), steps, desc.Replicas, last)
		}
		s := &scorer{in: ScoreInput{Zone: z}}
		holds := map[uint64]bool{}
		nonVoters, onOrdinary := 0, 0
		for _, rd := range desc.Replicas {
			if rd.Type == rspb.ReplicaType_NON_VOTER {
				holds[rd.NodeId] = true
				nonVoters++
				if !nodes[rd.NodeId-1].ReadReplica {
					onOrdinary++
				}
			}
		}
		free := 0 // read replicas that could take one and hold none
		for i := range nodes {
			n := &nodes[i]
			if !n.ReadReplica {
				continue
			}
			sel, _ := s.selects(n, rule)
			switch {
			case holds[n.ID] && n.Liveness == Dead:
				fail("dead read replica n%d holds a non-voter", n.ID)
			case holds[n.ID] && !sel:
				fail("read replica n%d holds a non-voter the zone does not select it for", n.ID)
			case rule != rrCounted && sel && n.canTakeReadReplica() && !holds[n.ID]:
				fail("read replica n%d is selected and holds none", n.ID)
			case sel && n.canTakeReadReplica() && !holds[n.ID]:
				free++
			}
		}
		if rule == rrCounted {
			want := z.NonVoters()
			if nonVoters > want {
				fail("%d non-voters, num_non_voters %d", nonVoters, want)
			}
			if nonVoters < want && (free > 0 || last.Action != ActionNoTarget) {
				fail("%d non-voters of %d, and %d read replicas free (last action %s)", nonVoters, want, free, last.Action)
			}
			if onOrdinary > 0 && free > 0 {
				fail("%d non-voters on ordinary nodes while %d read replicas could take one", onOrdinary, free)
			}
		}
	}
	t.Logf("rules over 300 random cases: every %d, selected %d, counted %d", rules[rrEvery], rules[rrSelected], rules[rrCounted])
	for _, r := range []readReplicaRule{rrEvery, rrSelected, rrCounted} {
		if rules[r] == 0 {
			t.Errorf("rule %d never came up", r)
		}
	}
}
