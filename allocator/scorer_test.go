package allocator

import (
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Scorer and zone config directives of the golden scripts
// (testdata/score*, testdata/zone):
//
//	score [leaseholder=nX] [qps=N] [range-threshold=F] [min-range=N]
//	      [lease-threshold=F] [min-lease=N] [qps-threshold=F] [min-qps=F]
//	      [follow-margin=F]
//	                             the threshold arguments change those of
//	                             DefaultThresholds() (Thresholds)
//	  zone NAME=VALUE ...        optional: the range's zone config, as the
//	                             CLI flags (no spaces inside a value),
//	                             resolved from the default
//	  load LOCALITY:QPS ...      optional: where requests come from
//	  node lines, one range line (as decide)
//	prints the recommendation and its explanation.
//
//	zone
//	  set NAME=VALUE             a field of the config (the rest of the line)
//	  parent NAME=VALUE          a field of the parent (default: the default)
//	  node lines                 optional: checked with Satisfiable
//	prints the parsed config, the resolved one and what is not satisfiable,
//	or the error.
func runScorerDirective(t *testing.T, d *datadriven.TestData) string {
	t.Helper()
	switch d.Cmd {
	case "score":
		return runScore(t, d)
	default:
		return runZone(t, d)
	}
}

func runScore(t *testing.T, d *datadriven.TestData) string {
	t.Helper()
	var rest []string
	flags := map[string]string{}
	var loads []LocalityLoad
	for _, line := range strings.Split(d.Input, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "zone":
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				flags[k] = v
			}
		case len(f) > 0 && f[0] == "load":
			for _, lq := range f[1:] {
				loc, q, ok := strings.Cut(lq, ":")
				if !ok {
					t.Fatalf("%s: load %q: want LOCALITY:QPS", d.Pos, lq)
				}
				qps, err := strconv.ParseFloat(q, 64)
				if err != nil {
					t.Fatalf("%s: load %q: %v", d.Pos, lq, err)
				}
				loads = append(loads, LocalityLoad{Locality: parseTiers(loc), QPS: qps})
			}
		default:
			rest = append(rest, line)
		}
	}
	nodes, ranges := parseInput(t, strings.Join(rest, "\n"))
	if len(ranges) != 1 {
		t.Fatalf("%s: score wants one range line", d.Pos)
	}
	z, err := ParseZoneConfig(flags)
	if err != nil {
		return errString(err)
	}
	if z, err = z.Resolve(); err != nil {
		return errString(err)
	}
	in := ScoreInput{Desc: ranges[0], Zone: z, Nodes: nodes, Requests: loads}
	if d.HasArg("leaseholder") {
		in.Leaseholder = nodeID(t, argVal(t, d, "leaseholder"))
	}
	if d.HasArg("qps") {
		in.QPS = float64(intArg(t, d, "qps"))
	}
	in.Thresholds = thresholdArgs(t, d)
	rec, err := Score(in)
	if err != nil {
		return errString(err)
	}
	return rec.String()
}

// thresholdArgs reads the score directive's threshold arguments: the zero
// value when there are none, else DefaultThresholds() with them applied.
func thresholdArgs(t *testing.T, d *datadriven.TestData) Thresholds {
	t.Helper()
	var th Thresholds
	floats := map[string]*float64{"range-threshold": &th.RangeThreshold, "lease-threshold": &th.LeaseThreshold,
		"qps-threshold": &th.QPSThreshold, "min-qps": &th.MinQPSAboveMean, "follow-margin": &th.FollowWorkloadMargin}
	ints := map[string]*int{"min-range": &th.MinRangeRebalance, "min-lease": &th.MinLeaseRebalance}
	set := false
	for k := range floats {
		set = set || d.HasArg(k)
	}
	for k := range ints {
		set = set || d.HasArg(k)
	}
	if !set {
		return th
	}
	th = DefaultThresholds()
	for k, p := range floats {
		if d.HasArg(k) {
			v, err := strconv.ParseFloat(argVal(t, d, k), 64)
			if err != nil {
				t.Fatalf("%s: %s: %v", d.Pos, k, err)
			}
			*p = v
		}
	}
	for k, p := range ints {
		if d.HasArg(k) {
			*p = intArg(t, d, k)
		}
	}
	return th
}

func parseTiers(s string) []*rspb.LocalityTier {
	var out []*rspb.LocalityTier
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		out = append(out, &rspb.LocalityTier{Key: k, Value: v})
	}
	return out
}

func runZone(t *testing.T, d *datadriven.TestData) string {
	t.Helper()
	set, parent := map[string]string{}, map[string]string{}
	var rest []string
	for _, line := range strings.Split(d.Input, "\n") {
		line = strings.TrimSpace(line)
		for prefix, m := range map[string]map[string]string{"set ": set, "parent ": parent} {
			if strings.HasPrefix(line, prefix) {
				k, v, _ := strings.Cut(strings.TrimPrefix(line, prefix), "=")
				m[k] = v
				line = ""
			}
		}
		rest = append(rest, line)
	}
	nodes, _ := parseInput(t, strings.Join(rest, "\n"))
	z, err := ParseZoneConfig(set)
	if err != nil {
		return errString(err)
	}
	root := DefaultZoneConfig()
	if len(parent) > 0 {
		p, err := ParseZoneConfig(parent)
		if err != nil {
			return "parent " + errString(err)
		}
		root = p.InheritFrom(root)
	}
	r := z.InheritFrom(root)
	var b strings.Builder
	fmt.Fprintf(&b, "set: %s\nresolved: %s\n", z, r)
	if err := r.Validate(); err != nil {
		return b.String() + errString(err)
	}
	if len(nodes) > 0 {
		lines := Satisfiable(r, nodes)
		if len(lines) == 0 {
			b.WriteString("satisfiable\n")
		}
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestZoneConfigRoundTrip: a config printed by String parses back to the
// same config.
func TestZoneConfigRoundTrip(t *testing.T) {
	for _, flags := range []map[string]string{
		{"num_replicas": "5", "num_voters": "3", "constraints": `{"+region=eu": 2, "+region=us,+zone=a": 1}`},
		{"constraints": "+region=eu,-zone=a", "voter_constraints": "-region=ap", "lease_preferences": "[[+region=us,+zone=a],[+region=us]]"},
		{"gc_ttl": "90000", "range_min_bytes": "0", "range_max_bytes": "1048576", "lease_preferences": "[]"},
		{"num_voters": "3", "num_non_voters": "2", "non_voter_constraints": `{"+region=eu": 1}`},
		{},
	} {
		z, err := ParseZoneConfig(flags)
		if err != nil {
			t.Fatalf("%v: %v", flags, err)
		}
		again := map[string]string{}
		if s := z.String(); s != "(inherits everything)" {
			for _, f := range splitFields(s) {
				k, v, _ := strings.Cut(f, "=")
				again[k] = v
			}
		}
		z2, err := ParseZoneConfig(again)
		if err != nil {
			t.Fatalf("%q: %v", z.String(), err)
		}
		if z.String() != z2.String() {
			t.Errorf("round trip: %q became %q", z.String(), z2.String())
		}
	}
}

// splitFields splits "a=1 b={"x": 1, "y": 2}" at the spaces outside
// brackets.
func splitFields(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case ' ':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// TestScoreInvariants: on seeded random clusters (3 regions × 1-3 zones,
// random liveness, membership, counts, disks and load, random ranges,
// zone configs and leaseholders), Score never fails on valid input, and
// every action is well formed: a target holds no replica of the range and
// may take one (live, active, disk not full, meeting the all-replica
// constraints of its role); a removal or a move names a replica of the
// range on From/Node; a lease goes to a live active voter; the same input
// gives the same output.
func TestScoreInvariants(t *testing.T) {
	regions := []string{"us", "eu", "ap"}
	zones := []map[string]string{
		{},
		{"constraints": "-region=ap"},
		{"num_replicas": "5", "num_voters": "3", "lease_preferences": "[+region=eu]"},
		{"constraints": `{"+region=eu": 2}`},
		{"voter_constraints": "+region=us", "num_replicas": "4", "num_voters": "3"},
		{"num_replicas": "5"},
		{"num_voters": "3", "num_non_voters": "2", "non_voter_constraints": "+region=eu"},
	}
	actions := map[Action]int{}
	for seed := int64(1); seed <= 400; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var nodes []Node
		for i := 0; i < 3*(1+rng.Intn(3)); i++ {
			n := Node{ID: uint64(i + 1), Locality: parseTiers(fmt.Sprintf("region=%s,zone=%c", regions[i%3], 'a'+rune(i/3))),
				Replicas: rng.Intn(30), Leases: rng.Intn(10), QPS: float64(rng.Intn(1000)),
				CapacityBytes: 100, UsedBytes: int64(rng.Intn(100))}
			switch rng.Intn(12) {
			case 0:
				n.Liveness = Dead
			case 1:
				n.Liveness = Suspect
			case 2:
				n.Membership = Draining
			case 3:
				n.Membership = Decommissioning
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
		desc := &rspb.RangeDescriptor{RangeId: 1}
		perm := rng.Perm(len(nodes))
		nv := 1 + rng.Intn(min(5, len(nodes)))
		for i := 0; i < nv; i++ {
			typ := rspb.ReplicaType_VOTER
			if i > 0 && rng.Intn(4) == 0 {
				typ = rspb.ReplicaType_NON_VOTER
			}
			desc.Replicas = append(desc.Replicas, &rspb.ReplicaDescriptor{NodeId: uint64(perm[i] + 1), ReplicaId: uint64(i + 1), Type: typ})
		}
		desc.NextReplicaId = uint64(nv + 1)
		in := ScoreInput{Desc: desc, Zone: z, Nodes: nodes, QPS: float64(rng.Intn(200)),
			Requests: []LocalityLoad{{Locality: parseTiers("region=" + regions[rng.Intn(3)]), QPS: 10}}}
		in.Leaseholder = desc.Replicas[0].NodeId
		rec, err := Score(in)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		again, _ := Score(in)
		if again.String() != rec.String() {
			t.Fatalf("seed %d: not deterministic", seed)
		}
		actions[rec.Action]++
		holds := map[uint64]*rspb.ReplicaDescriptor{}
		for _, rd := range desc.Replicas {
			holds[rd.NodeId] = rd
		}
		node := func(id uint64) *Node { return &nodes[id-1] }
		checkTarget := func(voter bool) {
			n := node(rec.Node)
			if _, ok := holds[n.ID]; ok && rec.ReplicaID == 0 {
				t.Fatalf("seed %d: target n%d holds a replica:\n%s", seed, n.ID, rec)
			}
			if holds[n.ID] == nil && (!n.canTakeReplica() || diskFull(n)) {
				t.Fatalf("seed %d: target n%d cannot take a replica:\n%s", seed, n.ID, rec)
			}
			s := &scorer{in: in}
			if ok, why := s.meets(n, voter); !ok && holds[n.ID] == nil {
				t.Fatalf("seed %d: target n%d %s:\n%s", seed, n.ID, why, rec)
			}
		}
		checkFrom := func(id uint64) {
			rd := holds[id]
			if rd == nil || rd.ReplicaId != rec.ReplicaID {
				t.Fatalf("seed %d: replica %d is not on n%d:\n%s", seed, rec.ReplicaID, id, rec)
			}
		}
		switch rec.Action {
		case ActionAddVoter:
			checkTarget(true)
		case ActionAddNonVoter:
			checkTarget(false)
		case ActionReplaceVoter, ActionRebalance:
			checkTarget(true)
			checkFrom(rec.From)
		case ActionReplaceNonVoter, ActionRebalanceNonVoter:
			checkTarget(false)
			checkFrom(rec.From)
		case ActionRemoveVoter, ActionRemoveNonVoter:
			checkFrom(rec.Node)
		case ActionTransferLease:
			rd := holds[rec.Node]
			if rd == nil || rd.Type == rspb.ReplicaType_NON_VOTER || !leaseOK(node(rec.Node)) || rec.From != in.Leaseholder {
				t.Fatalf("seed %d: lease to n%d, not a live active voter:\n%s", seed, rec.Node, rec)
			}
		}
	}
	t.Logf("actions over 400 random inputs: %v", actions)
	if len(actions) < 8 {
		t.Errorf("only %d kinds of action came up: %v", len(actions), actions)
	}
}
