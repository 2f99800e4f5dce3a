package rebalance

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestMakePlan replays testdata/plan.json through MakePlan and compares
// the plans with testdata/plan.golden (regenerate with -rewrite).
//
// A node is "nID" followed by words: live, suspect, dead, draining,
// decommissioning, decommissioned, qps=N (the store's QPS), and key=value
// locality tiers. A range is "rID" followed by voters=n1,n2
// [nonvoters=n4] [lh=nN] [mine] [fixed] [changing] [qps=N] [from=n4:90,n1:10]
// (requests/s per gateway node) [transferred=DURATION] (its lease was
// transferred that long before the pass); replica IDs are given in order
// from 1.
func TestMakePlan(t *testing.T) {
	var cases struct {
		Cases []struct {
			Name   string
			Self   uint64
			Factor int
			Nodes  []string
			Ranges []string
			// SlotsFull: every snapshot send slot of Self is taken.
			SlotsFull bool
		}
	}
	golden.LoadJSON(t, "plan.json", &cases)
	var out strings.Builder
	for _, c := range cases.Cases {
		in := Input{Self: c.Self, Factor: c.Factor, Now: planNow, SnapshotSlotsFull: c.SlotsFull}
		for _, s := range c.Nodes {
			in.Nodes = append(in.Nodes, parseNode(t, s))
		}
		for _, s := range c.Ranges {
			in.Ranges = append(in.Ranges, parseRange(t, s))
		}
		fmt.Fprintf(&out, "== %s\n", c.Name)
		p, err := MakePlan(in)
		if err != nil {
			fmt.Fprintf(&out, "error: %v\n", err)
			continue
		}
		out.WriteString(p.String())
	}
	golden.Check(t, "plan.golden", []byte(out.String()))
}

// TestMakePlanDeterministic: the plan does not depend on the order of the
// node and range views.
func TestMakePlanDeterministic(t *testing.T) {
	in := Input{Self: 1, Factor: 3}
	for _, s := range []string{"n1 region=a", "n2 region=b", "n3 region=c dead", "n4 region=c", "n5 region=c"} {
		in.Nodes = append(in.Nodes, parseNode(t, s))
	}
	for i := 2; i < 12; i++ {
		in.Ranges = append(in.Ranges, parseRange(t, fmt.Sprintf("r%d voters=n1,n2,n3 lh=n1 mine", i)))
	}
	want, err := MakePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	rev := Input{Self: 1, Factor: 3}
	for i := len(in.Nodes) - 1; i >= 0; i-- {
		rev.Nodes = append(rev.Nodes, in.Nodes[i])
	}
	for i := len(in.Ranges) - 1; i >= 0; i-- {
		rev.Ranges = append(rev.Ranges, in.Ranges[i])
	}
	got, err := MakePlan(rev)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("plan depends on the input order:\n%s\nvs\n%s", got, want)
	}
	// The ten additions are spread over n4 and n5, not all on one.
	per := map[uint64]int{}
	for _, s := range want.Steps {
		per[s.Decision.Node]++
	}
	if per[4] == 0 || per[5] == 0 || per[4]+per[5] != 10 {
		t.Fatalf("additions per node: %v\n%s", per, want)
	}
}

// planNow is the time of the golden passes.
var planNow = time.Unix(1_800_000_000, 0)

func parseFloat(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return f
}

func nodeID(t *testing.T, s string) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(strings.TrimPrefix(s, "n"), 10, 64)
	if err != nil {
		t.Fatalf("node %q: %v", s, err)
	}
	return id
}

func parseNode(t *testing.T, s string) allocator.Node {
	t.Helper()
	f := strings.Fields(s)
	n := allocator.Node{ID: nodeID(t, f[0])}
	for _, w := range f[1:] {
		switch w {
		case "live":
			n.Liveness = allocator.Live
		case "suspect":
			n.Liveness = allocator.Suspect
		case "dead":
			n.Liveness = allocator.Dead
		case "draining":
			n.Membership = allocator.Draining
		case "decommissioning":
			n.Membership = allocator.Decommissioning
		case "decommissioned":
			n.Membership = allocator.Decommissioned
		case "read-replica":
			n.ReadReplica = true
		default:
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				t.Fatalf("node %q: unknown word %q", s, w)
			}
			if k == "qps" {
				n.QPS = parseFloat(t, v)
				continue
			}
			n.Locality = append(n.Locality, &rspb.LocalityTier{Key: k, Value: v})
		}
	}
	return n
}

func parseRange(t *testing.T, s string) RangeView {
	t.Helper()
	f := strings.Fields(s)
	id, err := strconv.ParseUint(strings.TrimPrefix(f[0], "r"), 10, 64)
	if err != nil {
		t.Fatalf("range %q: %v", s, err)
	}
	v := RangeView{Desc: &rspb.RangeDescriptor{RangeId: id}}
	next := uint64(1)
	add := func(list string, typ rspb.ReplicaType) {
		for _, n := range strings.Split(list, ",") {
			v.Desc.Replicas = append(v.Desc.Replicas, &rspb.ReplicaDescriptor{NodeId: nodeID(t, n), ReplicaId: next, Type: typ})
			next++
		}
	}
	for _, w := range f[1:] {
		switch k, val, _ := strings.Cut(w, "="); k {
		case "voters":
			add(val, rspb.ReplicaType_VOTER)
		case "nonvoters":
			add(val, rspb.ReplicaType_NON_VOTER)
		case "lh":
			v.Leaseholder = nodeID(t, val)
		case "mine":
			v.Mine = true
		case "fixed":
			v.Fixed = "the range's replicas must not change now"
		case "changing":
			v.ChangeInFlight = "a replica change of this range is in flight here"
		case "qps":
			v.QPS = parseFloat(t, val)
		case "from":
			for _, g := range strings.Split(val, ",") {
				n, q, _ := strings.Cut(g, ":")
				v.Sources = append(v.Sources, Source{Gateway: nodeID(t, n), QPS: parseFloat(t, q)})
			}
		case "transferred":
			d, err := time.ParseDuration(val)
			if err != nil {
				t.Fatalf("range %q: %v", s, err)
			}
			v.LastLeaseTransfer = planNow.Add(-d)
		case "zone":
			// zone=name:value;name:value (allocator.ParseZoneConfig fields,
			// ':' for '='), resolved at factor 3.
			fields := map[string]string{}
			for _, f := range strings.Split(val, ";") {
				k, fv, _ := strings.Cut(f, ":")
				fields[k] = strings.ReplaceAll(fv, "~", "=")
			}
			z, err := allocator.ParseZoneConfig(fields)
			if err != nil {
				t.Fatalf("range %q: %v", s, err)
			}
			def := allocator.DefaultZoneConfig()
			z = z.InheritFrom(def)
			v.Zone = &z
		default:
			t.Fatalf("range %q: unknown word %q", s, w)
		}
	}
	v.Desc.NextReplicaId = next
	return v
}

// TestMakePlanThresholds: Input.Thresholds reach the scorer. n1 holds 6
// replicas and 6 leases, n2-n4 4 replicas each and no lease: within the
// default margins (2 replicas, 5 leases), outside margins of 1, where the
// pass moves a replica off n1 and transfers leases; invalid thresholds
// are refused naming the field.
func TestMakePlanThresholds(t *testing.T) {
	in := Input{Self: 1, Factor: 3, Now: planNow}
	for _, s := range []string{"n1", "n2", "n3", "n4"} {
		in.Nodes = append(in.Nodes, parseNode(t, s))
	}
	for i, pair := range []string{"n2,n3", "n2,n4", "n3,n4", "n2,n3", "n2,n4", "n3,n4"} {
		in.Ranges = append(in.Ranges, parseRange(t, fmt.Sprintf("r%d voters=n1,%s lh=n1 mine", i+2, pair)))
	}
	p, err := MakePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Steps) != 0 {
		t.Fatalf("default thresholds: want no step:\n%s", p)
	}
	in.Thresholds = allocator.DefaultThresholds()
	in.Thresholds.RangeThreshold, in.Thresholds.MinRangeRebalance = 0, 1
	in.Thresholds.LeaseThreshold, in.Thresholds.MinLeaseRebalance = 0, 1
	if p, err = MakePlan(in); err != nil {
		t.Fatal(err)
	}
	kinds := map[allocator.Action]int{}
	for _, s := range p.Steps {
		kinds[s.Decision.Action]++
	}
	if kinds[allocator.ActionRebalance] != RebalancesPerPass || kinds[allocator.ActionTransferLease] == 0 {
		t.Fatalf("lowered thresholds: want %d rebalance and lease transfers, got %v:\n%s", RebalancesPerPass, kinds, p)
	}
	t.Logf("lowered thresholds:\n%s", p)
	in.Thresholds.MinLeaseRebalance = 0
	if _, err := MakePlan(in); err == nil || !strings.Contains(err.Error(), "MinLeaseRebalance") {
		t.Fatalf("MinLeaseRebalance 0: %v, want an error naming it", err)
	}
}
