package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestCLIDrainDecommission: node drain, decommission (refused, without
// waiting, recommissioned, then waited for while the replicas are moved
// away) and recommission against a 4-node cluster, and what node list
// shows meanwhile.
func TestCLIDrainDecommission(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{Nodes: 4, InitialSplits: 1, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	meta := tc.Node(0).MetaRange()
	victim, gw := -1, -1 // the node without a meta replica, and one with
	for i := 0; i < tc.NumNodes(); i++ {
		if !slices.ContainsFunc(meta.Replicas, func(r *rspb.ReplicaDescriptor) bool { return r.NodeId == tc.Node(i).NodeID() }) {
			victim = i
		} else {
			gw = i
		}
	}
	vid, gid := tc.Node(victim).NodeID(), tc.Node(gw).NodeID()
	vn, gn := fmt.Sprintf("n%d", vid), fmt.Sprintf("n%d", gid)
	h := tc.Addr(gw)
	run := func(args ...string) cliResult {
		return runTC(t, tc, append([]string{"node", "--host", h}, args...)...)
	}
	expect := func(r cliResult, ok bool, out string) {
		t.Helper()
		if (r.code == 0) != ok || !strings.Contains(r.out+r.errOut, out) {
			t.Fatalf("want ok=%t and %q:\n%s", ok, out, r)
		}
	}
	expect(run("decommission", vn, gn), false, "fewer than the replication factor 3")
	expect(run("decommission"), false, "takes at least one node")
	expect(run("drain", "n99"), false, "node n99 not found")
	expect(run("recommission", vn), true, vn+": active: "+vn+" is active: nothing to recommission")
	expect(run("drain", vn), true, vn+" drained: ")
	expect(run("list"), true, "draining")

	r := run("decommission", vn, "--wait=false")
	expect(r, true, vn+": decommissioning: "+vn+" is active: mark it decommissioning")
	expect(r, true, vn+": 3 replicas left (r")
	if l := run("list"); !strings.Contains(l.out, "decommissioning") {
		t.Fatalf("node list does not show decommissioning:\n%s", l)
	}
	expect(run("status", vn), true, "membership:  decommissioning")
	expect(run("recommission", vn), true, vn+": active: "+vn+" is decommissioning: mark it active again")

	// Decommission and wait while its replicas are moved away (what the
	// replicate queue does).
	bin, err := chaos.BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, withSecArgs(tcSecArgs(tc), []string{"node", "--host", h, "decommission", vn, "--poll", "100ms"})...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	admin := rspb.NewAdminClient(tc.Conn(gw))
	timeutil.WaitFor(t, 20*time.Second, vn+" decommissioning", func() error {
		st, err := admin.NodeStatus(ctx, &rspb.NodeStatusRequest{NodeId: vid})
		if err != nil || st.Status.Membership != rspb.MembershipState_MEMBERSHIP_DECOMMISSIONING {
			return fmt.Errorf("%v %w", st, err)
		}
		return nil
	})
	descs, err := tc.Node(gw).MetaRanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		var has []uint64
		for _, r := range d.Replicas {
			has = append(has, r.NodeId)
		}
		if !slices.Contains(has, vid) {
			continue
		}
		var add uint64
		for i := 0; i < tc.NumNodes(); i++ {
			if id := tc.Node(i).NodeID(); !slices.Contains(has, id) {
				add = id
			}
		}
		if _, err := admin.ChangeReplicas(ctx, &rspb.ChangeReplicasRequest{RangeId: d.RangeId, AddNodeIds: []uint64{add}, RemoveNodeIds: []uint64{vid}}); err != nil {
			t.Fatalf("move r%d from %s to n%d: %v", d.RangeId, vn, add, err)
		}
		time.Sleep(300 * time.Millisecond) // let the CLI print the progress (not needed for correctness)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("decommission: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
		}
	case <-ctx.Done():
		t.Fatalf("decommission did not finish\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	t.Logf("node decommission %s:\n%s", vn, out.String())
	for _, want := range []string{vn + ": 3 replicas left", vn + ": 0 replicas left", vn + ": decommissioned"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("decommission output lacks %q:\n%s", want, out.String())
		}
	}
	l := run("list")
	t.Logf("node list:\n%s", l.out)
	if !strings.Contains(l.out, "decommissioned") {
		t.Fatalf("node list does not show decommissioned:\n%s", l)
	}
	expect(run("recommission", vn), false, "cannot be recommissioned")
	expect(run("decommission", vn), true, vn+" is already decommissioned")
}
