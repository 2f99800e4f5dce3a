package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestCLIChangeReplicas: range add-replica, remove-replica and relocate
// against a 4-node cluster (each range on 3 nodes), and their usage and
// refusal messages.
func TestCLIChangeReplicas(t *testing.T) {
	tc, d, missing := startFourNodes(t)
	h := tc.Addr(0)
	rng := fmt.Sprintf("r%d", d.RangeId)
	run := func(args ...string) cliResult {
		return runTC(t, tc, append([]string{"range", "--host", h}, args...)...)
	}
	if r := run("add-replica", rng, fmt.Sprintf("n%d", missing)); r.code != 0 || !strings.Contains(r.out, fmt.Sprintf("n%d", missing)) {
		t.Fatalf("add-replica: %s", r)
	}
	if r := run("add-replica", rng, fmt.Sprintf("n%d", missing)); r.code == 0 || !strings.Contains(r.errOut, "already holds replica") {
		t.Errorf("add-replica again: %s", r)
	}
	first := d.Replicas[0].NodeId
	if r := run("remove-replica", rng, fmt.Sprintf("n%d", first)); r.code != 0 || strings.Contains(r.out, fmt.Sprintf("n%d,", first)) {
		t.Fatalf("remove-replica: %s", r)
	}
	target := fmt.Sprintf("n%d,n%d,n%d", d.Replicas[1].NodeId, first, missing)
	if r := run("relocate", rng, target); r.code != 0 || !strings.Contains(r.out, "replicas ") {
		t.Fatalf("relocate %s: %s", target, r)
	}
	if r := run("add-replica", rng, "n1,n2"); r.code == 0 || !strings.Contains(r.errOut, "takes one node") {
		t.Errorf("add-replica with two nodes: %s", r)
	}
	if r := run("remove-replica", "rx", "n1"); r.code == 0 || !strings.Contains(r.errOut, "want r<ID>") {
		t.Errorf("remove-replica rx: %s", r)
	}
}

// TestCLIRangeExplain: range explain prints the allocator's decision for a
// range with its inputs (factor, gossiped stores) and the candidates
// table; a range with a fourth voter (factor 3) is to lose one, and
// allocator plan lists that removal. Bad or unknown ranges are refused,
// naming them.
func TestCLIRangeExplain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tc, d, missing := startFourNodes(t)
	if _, err := tc.Node(0).ChangeReplicas(ctx, d.RangeId, []uint64{missing}, nil); err != nil {
		t.Fatal(err)
	}
	rng := fmt.Sprintf("r%d", d.RangeId)
	var r cliResult
	timeutil.WaitFor(t, 60*time.Second, "explain with every store heard and a valid lease", func() error {
		r = runTC(t, tc, "range", "--host", tc.Addr(1), "explain", rng)
		if r.code != 0 || !strings.Contains(r.out, "gossip from n1,n2,n3,n4") || strings.Contains(r.out, "no valid lease") {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	for _, want := range []string{"remove-voter", "over-replicated", "replication factor 3", fmt.Sprintf("n%d", missing)} {
		if !strings.Contains(r.out, want) {
			t.Errorf("explain %s does not say %q:\n%s", rng, want, r.out)
		}
	}
	t.Logf("range explain %s:\n%s", rng, r.out)
	// allocator plan lists the same removal, at the leaseholder, once the
	// add is more than the change-in-flight window (10 s) old: until then
	// the plan says the range waits, its 4 voters maybe a relocation's
	// intermediate state.
	var p cliResult
	timeutil.WaitFor(t, 60*time.Second, "allocator plan lists the removal of the extra voter", func() error {
		p = runTC(t, tc, "allocator", "--host", tc.Addr(2), "plan")
		if p.code != 0 || !strings.Contains(p.out, fmt.Sprintf("%s remove-voter", rng)) || !strings.Contains(p.out, "over-replicated") {
			if p.code == 0 && strings.Contains(p.out, "is being driven here") {
				return fmt.Errorf("still in the change-in-flight window:\n%s", p)
			}
			return fmt.Errorf("%s", p)
		}
		return nil
	})
	t.Logf("allocator plan:\n%s", p.out)
	if p := runTC(t, tc, "allocator", "--host", tc.Addr(2), "explain"); p.code == 0 || !strings.Contains(p.errOut, "allocator plan") {
		t.Errorf("allocator explain: %s", p)
	}
	if r := runTC(t, tc, "range", "--host", tc.Addr(0), "explain", "rx"); r.code == 0 || !strings.Contains(r.errOut, "want r<ID>") {
		t.Errorf("explain rx: %s", r)
	}
	if r := runTC(t, tc, "range", "--host", tc.Addr(0), "explain", "r999"); r.code == 0 || !strings.Contains(r.errOut, "r999 not found") {
		t.Errorf("explain r999: %s", r)
	}
}

// startFourNodes starts a 4-node in-process cluster (each range on 3
// nodes, no replicate queue) and returns it, the range holding "k", and a
// node without a replica of it.
func startFourNodes(t *testing.T) (*node.TestCluster, *rspb.RangeDescriptor, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{Nodes: 4, InitialSplits: 1, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	var d *rspb.RangeDescriptor
	for _, r := range tc.Init.Ranges {
		if keys.InSpan(keys.UserKey([]byte("k")), r.StartKey, r.EndKey) {
			d = r
		}
	}
	has := map[uint64]bool{}
	for _, r := range d.Replicas {
		has[r.NodeId] = true
	}
	var missing uint64
	for i := 0; i < tc.NumNodes(); i++ {
		if id := tc.Node(i).NodeID(); !has[id] {
			missing = id
		}
	}
	return tc, d, missing
}
