package node

import (
	"bytes"
	"fmt"
	"maps"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

func planNodes(n int) []*rspb.NodeDescriptor {
	out := make([]*rspb.NodeDescriptor, n)
	for i := range out {
		id := uint64(i + 1)
		out[i] = &rspb.NodeDescriptor{NodeId: id, Address: fmt.Sprintf("127.0.0.1:%d", 26256+i), RaftAddress: fmt.Sprintf("127.0.0.1:%d", 27256+i)}
	}
	return out
}

func planSplits(ks ...string) [][]byte {
	out := make([][]byte, len(ks))
	for i, k := range ks {
		out[i] = []byte(k)
	}
	return out
}

// planRender renders a plan one range per line: r<id> [start, end) n<ids>.
func planRender(plan []*rspb.RangeDescriptor) string {
	var b strings.Builder
	for _, d := range plan {
		var ns []string
		for _, r := range d.Replicas {
			ns = append(ns, fmt.Sprint(r.NodeId))
		}
		fmt.Fprintf(&b, "r%d [%q, %q) g%d n%s\n", d.RangeId, d.StartKey, d.EndKey, d.Generation, strings.Join(ns, ","))
	}
	return b.String()
}

// planCheckTiling verifies the structural invariants of any plan.
func planCheckTiling(t *testing.T, plan []*rspb.RangeDescriptor, nodes []*rspb.NodeDescriptor, rf int) {
	t.Helper()
	if len(plan) < 3 {
		t.Fatalf("plan has %d ranges, want at least meta, system and user", len(plan))
	}
	if !bytes.Equal(plan[0].StartKey, keys.KeyMin) || !bytes.Equal(plan[len(plan)-1].EndKey, keys.KeyMax) {
		t.Fatalf("plan spans [%q, %q), want [%q, %q)", plan[0].StartKey, plan[len(plan)-1].EndKey, keys.KeyMin, keys.KeyMax)
	}
	if plan[0].RangeId != 1 || !bytes.Equal(plan[0].EndKey, keys.SystemStart) {
		t.Fatalf("r1 = %v, want [KeyMin, SystemStart)", plan[0])
	}
	if plan[1].RangeId != 2 || !bytes.Equal(plan[1].StartKey, keys.SystemStart) || !bytes.Equal(plan[1].EndKey, keys.UserPrefix) {
		t.Fatalf("r2 = %v, want [SystemStart, UserPrefix)", plan[1])
	}
	nodeIDs := map[uint64]bool{}
	for _, n := range nodes {
		nodeIDs[n.NodeId] = true
	}
	load := map[uint64]int{}
	for i, d := range plan {
		if d.RangeId != uint64(i+1) {
			t.Fatalf("range #%d has ID %d", i, d.RangeId)
		}
		if bytes.Compare(d.StartKey, d.EndKey) >= 0 {
			t.Fatalf("r%d is empty or inverted: [%q, %q)", d.RangeId, d.StartKey, d.EndKey)
		}
		if i > 0 && !bytes.Equal(plan[i-1].EndKey, d.StartKey) {
			t.Fatalf("gap or overlap between r%d (end %q) and r%d (start %q)", plan[i-1].RangeId, plan[i-1].EndKey, d.RangeId, d.StartKey)
		}
		if d.Generation != 1 {
			t.Errorf("r%d generation %d", d.RangeId, d.Generation)
		}
		if len(d.Replicas) != rf {
			t.Fatalf("r%d has %d replicas, want %d", d.RangeId, len(d.Replicas), rf)
		}
		if d.NextReplicaId != uint64(rf+1) {
			t.Errorf("r%d next_replica_id = %d, want %d", d.RangeId, d.NextReplicaId, rf+1)
		}
		seen := map[uint64]bool{}
		for j, r := range d.Replicas {
			if !nodeIDs[r.NodeId] {
				t.Fatalf("r%d has a replica on unknown node %d", d.RangeId, r.NodeId)
			}
			if seen[r.NodeId] {
				t.Fatalf("r%d has two replicas on n%d", d.RangeId, r.NodeId)
			}
			seen[r.NodeId] = true
			// Replica IDs are 1..rf in placement order: round-robin from
			// the range's own offset into the node list.
			if want := placementReplicaID(nodes, i, rf, r.NodeId); r.ReplicaId != want {
				t.Errorf("r%d replica on n%d has ID %d, want %d (its place in the round-robin)", d.RangeId, r.NodeId, r.ReplicaId, want)
			}
			if r.Type != rspb.ReplicaType_VOTER {
				t.Errorf("r%d replica on n%d is %v", d.RangeId, r.NodeId, r.Type)
			}
			if j > 0 && d.Replicas[j-1].NodeId >= r.NodeId {
				t.Errorf("r%d replicas not sorted by node ID", d.RangeId)
			}
			load[r.NodeId]++
		}
	}
	// Round-robin placement: every full turn over the nodes places rf
	// replicas on each, so per-node counts differ by at most rf.
	minL, maxL := len(plan)*rf+1, -1
	for id := range nodeIDs {
		minL, maxL = min(minL, load[id]), max(maxL, load[id])
	}
	if maxL-minL > rf {
		t.Errorf("unbalanced placement: %v", load)
	}
	// Every key lands in exactly one range.
	probes := [][]byte{keys.KeyMin, {0x00}, keys.MetaKey(keys.KeyMax), keys.SystemStart, keys.NodeKey(3), keys.UserPrefix, keys.UserKey([]byte("0")), keys.UserKey([]byte("M")), keys.UserKey([]byte("zzz")), keys.UserSpanEnd, {0xff}, {0xff, 0xfe, 0xff}}
	for _, k := range probes {
		n := 0
		for _, d := range plan {
			if keys.InSpan(k, d.StartKey, d.EndKey) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("key %q is in %d ranges", k, n)
		}
	}
}

// placementReplicaID is the replica ID PlanRanges gives range #i's replica
// on node id: its position (from 1) in the round-robin starting at node
// #i, or 0 when the range has no replica there.
func placementReplicaID(nodes []*rspb.NodeDescriptor, i, rf int, id uint64) uint64 {
	for j := 0; j < rf; j++ {
		if nodes[(i+j)%len(nodes)].NodeId == id {
			return uint64(j + 1)
		}
	}
	return 0
}

// TestPlanRangesReplicaIDsAreNotNodeIDs: replica IDs are numbered per
// range, so with several nodes most ranges have replicas whose ID is not
// their node's ID, and the layout passes ValidateLayout.
func TestPlanRangesReplicaIDsAreNotNodeIDs(t *testing.T) {
	nodes := planNodes(3)
	plan, err := PlanRanges(nodes, planSplits("g", "p"), 3)
	if err != nil {
		t.Fatal(err)
	}
	differ := map[uint64]bool{}
	for _, d := range plan {
		for _, r := range d.Replicas {
			if r.ReplicaId != r.NodeId {
				differ[d.RangeId] = true
			}
		}
	}
	// Range #i starts the round-robin at node #i mod 3: only r1 and r4
	// start at n1, where replica IDs happen to equal node IDs.
	want := map[uint64]bool{2: true, 3: true, 5: true}
	if len(plan) != 5 || !maps.Equal(differ, want) {
		t.Fatalf("ranges whose replica IDs differ from their node IDs: %v, want %v\n%v", differ, want, plan)
	}
	req := &rspb.BootstrapRequest{ClusterId: "c", NodeId: 1, Nodes: nodes, Ranges: plan, Timestamp: &rspb.Timestamp{WallTime: 1}}
	if err := ValidateLayout(req); err != nil {
		t.Fatalf("ValidateLayout refused PlanRanges' layout: %v", err)
	}
	// Still refused: two replicas with one ID, two replicas on one node, a
	// zero ID, and a next_replica_id that would hand out a used ID.
	for _, c := range []struct {
		name    string
		corrupt func(d *rspb.RangeDescriptor)
		msg     string
	}{
		{"duplicate replica ID", func(d *rspb.RangeDescriptor) { d.Replicas[1].ReplicaId = d.Replicas[0].ReplicaId }, "replica IDs and nodes must be distinct"},
		{"two replicas on one node", func(d *rspb.RangeDescriptor) { d.Replicas[1].NodeId = d.Replicas[0].NodeId }, "replica IDs and nodes must be distinct"},
		{"replica ID 0", func(d *rspb.RangeDescriptor) { d.Replicas[2].ReplicaId = 0 }, "non-zero"},
		{"next_replica_id not above the replica IDs", func(d *rspb.RangeDescriptor) { d.NextReplicaId = 3 }, "next_replica_id 3"},
	} {
		bad := proto.Clone(req).(*rspb.BootstrapRequest)
		c.corrupt(bad.Ranges[3])
		if err := ValidateLayout(bad); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: ValidateLayout = %v, want an error containing %q", c.name, err, c.msg)
		}
	}
}

func TestPlanRanges(t *testing.T) {
	cases := []struct {
		name   string
		nodes  int
		splits [][]byte
		rf     int
		wantRF int
		want   string
	}{
		{"1 node no splits", 1, nil, 0, 1, `r1 ["", "\x00s") g1 n1
r2 ["\x00s", "u") g1 n1
r3 ["u", "\xff\xff") g1 n1
`},
		{"1 node default splits", 1, planSplits("C", "O", "b", "n"), 0, 1, `r1 ["", "\x00s") g1 n1
r2 ["\x00s", "u") g1 n1
r3 ["u", "uC") g1 n1
r4 ["uC", "uO") g1 n1
r5 ["uO", "ub") g1 n1
r6 ["ub", "un") g1 n1
r7 ["un", "\xff\xff") g1 n1
`},
		{"3 nodes unsorted splits", 3, planSplits("m", "c", "x"), 0, 3, `r1 ["", "\x00s") g1 n1,2,3
r2 ["\x00s", "u") g1 n1,2,3
r3 ["u", "uc") g1 n1,2,3
r4 ["uc", "um") g1 n1,2,3
r5 ["um", "ux") g1 n1,2,3
r6 ["ux", "\xff\xff") g1 n1,2,3
`},
		{"3 nodes rf 1", 3, planSplits("k"), 1, 1, `r1 ["", "\x00s") g1 n1
r2 ["\x00s", "u") g1 n2
r3 ["u", "uk") g1 n3
r4 ["uk", "\xff\xff") g1 n1
`},
		{"3 nodes rf 2", 3, planSplits("k"), 2, 2, `r1 ["", "\x00s") g1 n1,2
r2 ["\x00s", "u") g1 n2,3
r3 ["u", "uk") g1 n1,3
r4 ["uk", "\xff\xff") g1 n1,2
`},
		{"5 nodes default rf", 5, planSplits("a", "b", "c"), 0, 3, `r1 ["", "\x00s") g1 n1,2,3
r2 ["\x00s", "u") g1 n2,3,4
r3 ["u", "ua") g1 n3,4,5
r4 ["ua", "ub") g1 n1,4,5
r5 ["ub", "uc") g1 n1,2,5
r6 ["uc", "\xff\xff") g1 n1,2,3
`},
		{"5 nodes rf 5 binary splits", 5, planSplits("\x00", "\xff\xff", "\x00\x00"), 5, 5, `r1 ["", "\x00s") g1 n1,2,3,4,5
r2 ["\x00s", "u") g1 n1,2,3,4,5
r3 ["u", "u\x00") g1 n1,2,3,4,5
r4 ["u\x00", "u\x00\x00") g1 n1,2,3,4,5
r5 ["u\x00\x00", "u\xff\xff") g1 n1,2,3,4,5
r6 ["u\xff\xff", "\xff\xff") g1 n1,2,3,4,5
`},
		{"5 nodes negative rf is default", 5, nil, -1, 3, `r1 ["", "\x00s") g1 n1,2,3
r2 ["\x00s", "u") g1 n2,3,4
r3 ["u", "\xff\xff") g1 n3,4,5
`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodes := planNodes(tc.nodes)
			splitsBefore := make([][]byte, len(tc.splits))
			for i, s := range tc.splits {
				splitsBefore[i] = append([]byte(nil), s...)
			}
			plan, err := PlanRanges(nodes, tc.splits, tc.rf)
			if err != nil {
				t.Fatal(err)
			}
			if got := planRender(plan); got != tc.want {
				t.Fatalf("plan:\n%s\nwant:\n%s", got, tc.want)
			}
			planCheckTiling(t, plan, nodes, tc.wantRF)
			for i := range tc.splits {
				if !bytes.Equal(tc.splits[i], splitsBefore[i]) {
					t.Fatalf("PlanRanges modified its split keys: %q", tc.splits)
				}
			}
		})
	}
}

func TestPlanRangesManySplits(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 5, 7} {
		for _, splits := range []int{0, 1, 4, 16, 61, 100} {
			nodes := planNodes(n)
			sk := keysDefaultSplits(splits)
			plan, err := PlanRanges(nodes, sk, 0)
			if err != nil {
				t.Fatalf("%d nodes, %d splits: %v", n, splits, err)
			}
			if want := 3 + len(sk); len(plan) != want {
				t.Fatalf("%d nodes, %d splits: %d ranges, want %d", n, splits, len(plan), want)
			}
			planCheckTiling(t, plan, nodes, min(3, n))
		}
	}
}

func keysDefaultSplits(n int) [][]byte { return keys.DefaultSplitKeys(n) }

func TestPlanRangesErrors(t *testing.T) {
	cases := []struct {
		name   string
		nodes  int
		splits [][]byte
		rf     int
		want   string
	}{
		{"no nodes", 0, nil, 0, "no nodes"},
		{"rf exceeds nodes", 1, nil, 3, "replication factor 3 exceeds the 1 nodes"},
		{"rf exceeds 3 nodes", 3, nil, 4, "replication factor 4"},
		{"duplicate split", 3, planSplits("a", "b", "a"), 0, `duplicate split key "a"`},
		{"duplicate binary split", 3, planSplits("\x00", "\x00"), 0, `duplicate split key "\x00"`},
		{"empty split", 3, planSplits("a", ""), 0, "empty split key"},
		{"nil split", 3, [][]byte{nil}, 0, "empty split key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := PlanRanges(planNodes(tc.nodes), tc.splits, tc.rf)
			if err == nil {
				t.Fatalf("no error; plan:\n%s", planRender(plan))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if plan != nil {
				t.Fatalf("error with a plan")
			}
		})
	}
}

func TestBootstrapData(t *testing.T) {
	nodes := planNodes(3)
	plan, err := PlanRanges(nodes, planSplits("g", "p"), 0)
	if err != nil {
		t.Fatal(err)
	}
	req := &rspb.BootstrapRequest{ClusterId: "c1", NodeId: 2, Nodes: nodes, Ranges: plan, Timestamp: &rspb.Timestamp{WallTime: 1}}
	data := BootstrapData(req)
	if len(data) != len(plan)+len(nodes)+2 {
		t.Fatalf("%d records, want %d", len(data), len(plan)+len(nodes)+2)
	}
	seen := map[string]bool{}
	metaCount, nodeCount := 0, 0
	for _, x := range data {
		if seen[string(x.Key)] {
			t.Fatalf("duplicate key %q", x.Key)
		}
		seen[string(x.Key)] = true
		// Every record lives in exactly one planned range: meta records in
		// r1, node records in r2.
		var owner *rspb.RangeDescriptor
		for _, d := range plan {
			if keys.InSpan(x.Key, d.StartKey, d.EndKey) {
				owner = d
			}
		}
		switch {
		case bytes.HasPrefix(x.Key, keys.MetaPrefix):
			metaCount++
			if owner == nil || owner.RangeId != 1 {
				t.Errorf("meta record %q not in r1 (owner %v)", x.Key, owner)
			}
		case bytes.HasPrefix(x.Key, keys.NodePrefix):
			nodeCount++
			if owner == nil || owner.RangeId != 2 {
				t.Errorf("node record %q not in r2 (owner %v)", x.Key, owner)
			}
		case bytes.Equal(x.Key, keys.RangeIDGeneratorKey):
			if owner == nil || owner.RangeId != 2 || string(x.Value) != fmt.Sprint(len(plan)) {
				t.Errorf("range ID counter %q = %q (owner %v), want %d in r2", x.Key, x.Value, owner, len(plan))
			}
		case bytes.Equal(x.Key, keys.NodeIDGeneratorKey):
			if owner == nil || owner.RangeId != 2 || string(x.Value) != fmt.Sprint(len(nodes)) {
				t.Errorf("node ID counter %q = %q (owner %v), want %d in r2", x.Key, x.Value, owner, len(nodes))
			}
		default:
			t.Errorf("unexpected record key %q", x.Key)
		}
	}
	if metaCount != len(plan) || nodeCount != len(nodes) {
		t.Fatalf("%d meta and %d node records, want %d and %d", metaCount, nodeCount, len(plan), len(nodes))
	}
	byKey := map[string][]byte{}
	for _, x := range data {
		byKey[string(x.Key)] = x.Value
	}
	for _, d := range plan {
		v, ok := byKey[string(keys.MetaKey(d.EndKey))]
		if !ok {
			t.Fatalf("no meta record for r%d under %q", d.RangeId, keys.MetaKey(d.EndKey))
		}
		got := &rspb.RangeDescriptor{}
		if err := proto.Unmarshal(v, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, d) {
			t.Fatalf("meta record of r%d = %v, want %v", d.RangeId, got, d)
		}
	}
	for _, n := range nodes {
		v, ok := byKey[string(keys.NodeKey(n.NodeId))]
		if !ok {
			t.Fatalf("no node record for n%d", n.NodeId)
		}
		got := &rspb.NodeDescriptor{}
		if err := proto.Unmarshal(v, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, n) {
			t.Fatalf("node record of n%d = %v, want %v", n.NodeId, got, n)
		}
	}
	// The meta lookup for any key finds the record of the range holding it.
	for _, k := range [][]byte{keys.KeyMin, keys.NodeKey(1), keys.UserKey([]byte("a")), keys.UserKey([]byte("g")), keys.UserKey([]byte("zz"))} {
		start := string(keys.MetaLookupStart(k))
		var first string
		for key := range byKey {
			if strings.HasPrefix(key, string(keys.MetaPrefix)) && key >= start && (first == "" || key < first) {
				first = key
			}
		}
		d := &rspb.RangeDescriptor{}
		if err := proto.Unmarshal(byKey[first], d); err != nil {
			t.Fatal(err)
		}
		if !keys.InSpan(k, d.StartKey, d.EndKey) {
			t.Errorf("meta lookup for %q found r%d [%q, %q)", k, d.RangeId, d.StartKey, d.EndKey)
		}
	}
	// Every node derives the same data from the same request.
	other := proto.Clone(req).(*rspb.BootstrapRequest)
	other.NodeId = 3
	data2 := BootstrapData(other)
	if len(data2) != len(data) {
		t.Fatalf("node 3 derives %d records, node 2 %d", len(data2), len(data))
	}
	for i := range data {
		if !bytes.Equal(data[i].Key, data2[i].Key) || !bytes.Equal(data[i].Value, data2[i].Value) {
			t.Fatalf("record %d differs between nodes: %q vs %q", i, data[i].Key, data2[i].Key)
		}
	}
	if got := BootstrapData(&rspb.BootstrapRequest{}); len(got) != 0 {
		t.Fatalf("empty request gives %d records", len(got))
	}
}

// TestPlanRangesDiverse: with localities, every initial range has one
// replica per region (3 regions of 2 nodes, factor 3), and the replicas
// stay spread over the nodes; with 2 regions, the third replica goes to
// the other zone of a used region, never to a node of a used zone.
func TestPlanRangesDiverse(t *testing.T) {
	for _, tc := range []struct {
		regions []string
		want    int // distinct regions per range
	}{{[]string{"us", "us", "eu", "eu", "ap", "ap"}, 3}, {[]string{"us", "us", "us", "eu", "eu", "eu"}, 2}} {
		nodes := planNodes(len(tc.regions))
		for i, n := range nodes {
			n.Locality = []*rspb.LocalityTier{{Key: "region", Value: tc.regions[i]}, {Key: "zone", Value: fmt.Sprintf("%s-%d", tc.regions[i], i%3)}}
		}
		plan, err := PlanRanges(nodes, planSplits("c", "f", "i", "l", "o", "r", "u"), 3)
		if err != nil {
			t.Fatal(err)
		}
		per := map[uint64]int{}
		for _, d := range plan {
			regions, zones := map[string]bool{}, map[string]bool{}
			for _, r := range d.Replicas {
				per[r.NodeId]++
				loc := nodes[r.NodeId-1].Locality
				regions[loc[0].Value], zones[loc[1].Value] = true, true
			}
			if len(regions) != tc.want || len(zones) != 3 {
				t.Errorf("regions %v: r%d on %v: %d regions, %d zones, want %d and 3", tc.regions, d.RangeId, d.Replicas, len(regions), len(zones), tc.want)
			}
		}
		for id, c := range per {
			if c < 3 || c > 7 {
				t.Errorf("regions %v: n%d holds %d of %d replicas: %v", tc.regions, id, c, 3*len(plan), per)
			}
		}
	}
}
