package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestDecideMembership: the per-node rule of decommission, its finish and
// recommission (testdata/membership_decision.json -> .golden).
func TestDecideMembership(t *testing.T) {
	var cases struct {
		Cases []struct {
			Name, Op, Current string
			Replicas          int
			RangeIDs          []uint64
		}
	}
	golden.LoadJSON(t, "membership_decision.json", &cases)
	ops := map[string]membershipOp{"decommission": opDecommission, "finish": opFinish, "recommission": opRecommission}
	var out bytes.Buffer
	for _, c := range cases.Cases {
		op, ok := ops[c.Op]
		cur, ok2 := rspb.LivenessMembership_value[c.Current]
		if !ok || !ok2 {
			t.Fatalf("%s: bad op %q or membership %q", c.Name, c.Op, c.Current)
		}
		d := decideMembership(membershipFacts{Op: op, NodeID: 4, Current: rspb.LivenessMembership(cur),
			Replicas: c.Replicas, RangeIDs: c.RangeIDs})
		fmt.Fprintf(&out, "== %s\n%s -> %s", c.Name, d.Action, leases.MembershipWord(d.Target))
		if d.Action == membershipRefuse {
			fmt.Fprintf(&out, " (%s)", d.Code)
		}
		fmt.Fprintf(&out, ": %s\n", d.Reason)
	}
	golden.Check(t, "membership_decision.golden", out.Bytes())
}

// membershipOf reads node id's membership as node i's admin API reports it.
func membershipOf(t *testing.T, tc *TestCluster, i int, id uint64) rspb.MembershipState {
	t.Helper()
	r, err := rspb.NewAdminClient(tc.Conn(i)).NodeStatus(ctxT(t), &rspb.NodeStatusRequest{NodeId: id})
	if err != nil {
		t.Fatalf("node status n%d: %v", id, err)
	}
	return r.Status.Membership
}

// nonMetaIndex is the index of the node without a replica of the meta
// range (whose replicas cannot move yet).
func nonMetaIndex(tc *TestCluster) int {
	for i := 0; i < tc.NumNodes(); i++ {
		if !slices.ContainsFunc(tc.Node(0).MetaRange().Replicas, func(r *rspb.ReplicaDescriptor) bool { return r.NodeId == tc.Node(i).NodeID() }) {
			return i
		}
	}
	return -1
}

// wantCode fails unless err has code c and its message contains every
// part.
func wantCode(t *testing.T, what string, err error, c codes.Code, parts ...string) {
	t.Helper()
	if status.Code(err) != c {
		t.Fatalf("%s: got %v, want %v", what, err, c)
	}
	for _, p := range parts {
		if !strings.Contains(status.Convert(err).Message(), p) {
			t.Fatalf("%s: %q does not say %q", what, status.Convert(err).Message(), p)
		}
	}
}

// TestDecommissionRefusals: bad requests get clear errors and change no
// node's membership.
func TestDecommissionRefusals(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	ids := make([]uint64, 4)
	for i := range ids {
		ids[i] = tc.Node(i).NodeID()
	}
	meta := tc.Node(0).MetaRange()
	var metaNode, free uint64 // a node with a meta replica, and one without
	for _, id := range ids {
		holds := false
		for _, r := range meta.Replicas {
			holds = holds || r.NodeId == id
		}
		if holds && metaNode == 0 {
			metaNode = id
		}
		if !holds {
			free = id
		}
	}
	other := ids[0] // a second node besides free (not the meta one if possible)
	for _, id := range ids {
		if id != free && id != metaNode {
			other = id
		}
	}
	_, err := admin.Decommission(ctx, &rspb.DecommissionRequest{})
	wantCode(t, "no node", err, codes.InvalidArgument, "node_ids must name at least one node")
	_, err = admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{free, 0}})
	wantCode(t, "node 0", err, codes.InvalidArgument, "node_ids[1] must be a node ID")
	_, err = admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{free, free}})
	wantCode(t, "twice", err, codes.InvalidArgument, fmt.Sprintf("n%d is named twice", free))
	_, err = admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{free, 99}})
	wantCode(t, "unknown", err, codes.NotFound, "node n99 not found", "the directory lists n1, n2, n3, n4")
	_, err = admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{free, other}})
	wantCode(t, "too many", err, codes.FailedPrecondition, "leaves 2 nodes that can hold replicas", "1 fewer than the replication factor 3",
		"could not keep 3 voters (replication factor 3)", "needs 3 voters")
	t.Logf("decommission n%d,n%d: %v", free, other, err)
	_, err = admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{free}, Finish: true})
	wantCode(t, "finish an active node", err, codes.FailedPrecondition, fmt.Sprintf("n%d is active, not decommissioning", free))
	_, err = admin.DrainNode(ctx, &rspb.DrainNodeRequest{NodeId: 99})
	wantCode(t, "drain unknown", err, codes.NotFound, "node n99 not found")
	_, err = admin.DrainNode(ctx, &rspb.DrainNodeRequest{})
	wantCode(t, "drain node 0", err, codes.InvalidArgument, "node_id must be set")
	_, err = admin.Recommission(ctx, &rspb.RecommissionRequest{NodeId: 99})
	wantCode(t, "recommission unknown", err, codes.NotFound, "node n99 not found")
	r, err := admin.Recommission(ctx, &rspb.RecommissionRequest{NodeId: free})
	if err != nil || r.Membership != rspb.MembershipState_MEMBERSHIP_ACTIVE || !strings.Contains(r.Message, "nothing to recommission") {
		t.Fatalf("recommission of an active node: %v %v", r, err)
	}
	for i, id := range ids {
		if m := membershipOf(t, tc, i, id); m != rspb.MembershipState_MEMBERSHIP_ACTIVE {
			t.Fatalf("n%d is %v after refused requests", id, m)
		}
	}
}

// TestDrainNode: `node drain` of a running node, asked through another
// node, moves every lease off it and leaves it taking none.
func TestDrainNode(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	const victim = 3
	vid := tc.Node(victim).NodeID()
	// Every lease it can hold to the victim.
	var its []uint64
	for _, ri := range tc.Node(victim).Ranges() {
		its = append(its, ri.RangeDescriptor.RangeId)
	}
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("n%d holds the leases of %v", vid, its), func() error {
		for _, id := range its {
			if l := leaseOf(tc, victim, id); l.GetNodeId() != vid {
				if _, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: id, TargetNodeId: vid}); err != nil {
					return err
				}
				return fmt.Errorf("r%d: lease %v", id, l)
			}
		}
		return nil
	})
	r, err := admin.DrainNode(ctx, &rspb.DrainNodeRequest{NodeId: vid})
	if err != nil {
		t.Fatalf("drain n%d: %v", vid, err)
	}
	if r.LeasesMoved < int64(len(its)) {
		t.Fatalf("drain moved %d leases, want %d", r.LeasesMoved, len(its))
	}
	if held := tc.Node(victim).heldLeases(); len(held) != 0 {
		t.Fatalf("n%d still holds the leases of %v", vid, held)
	}
	if m := membershipOf(t, tc, 1, vid); m != rspb.MembershipState_MEMBERSHIP_DRAINING {
		t.Fatalf("n%d is %v, want draining", vid, m)
	}
	_, err = admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: its[0], TargetNodeId: vid})
	wantCode(t, "lease to a drained node", err, codes.FailedPrecondition, fmt.Sprintf("n%d takes no leases (it is draining)", vid))
	// Draining again is immediate; the data stays available.
	if r, err := admin.DrainNode(ctx, &rspb.DrainNodeRequest{NodeId: vid}); err != nil || r.LeasesMoved != 0 {
		t.Fatalf("second drain: %v %v", r, err)
	}
	putKeys(t, tc, victim, "d", 20)
	checkKeys(t, tc, 0, "d", 20)
}

// TestDecommissionLifecycle: decommission a node (its membership is kept
// by its heartbeats; it drains and refuses new replicas), recommission
// it, decommission it again, move its replicas away with replica changes
// (what the replicate queue does), finish: it is decommissioned, every
// range keeps 3 voters, and restarted with its old store it sits idle.
func TestDecommissionLifecycle(t *testing.T) {
	logs := &logBuffer{}
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	victim := nonMetaIndex(tc)
	vid := tc.Node(victim).NodeID()
	putKeys(t, tc, 0, "k", 30)
	var its []uint64
	for _, ri := range tc.Node(victim).Ranges() {
		its = append(its, ri.RangeDescriptor.RangeId)
	}
	if len(its) == 0 {
		t.Fatalf("n%d holds no replica", vid)
	}
	// A lease on the victim, to be drained away.
	if _, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: its[0], TargetNodeId: vid}); err != nil {
		t.Fatal(err)
	}

	r, err := admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{vid}})
	if err != nil {
		t.Fatalf("decommission n%d: %v", vid, err)
	}
	st := r.Nodes[0]
	if st.NodeId != vid || st.Membership != rspb.MembershipState_MEMBERSHIP_DECOMMISSIONING || st.ReplicaCount != int64(len(its)) ||
		len(st.RangeIds) != len(its) || st.LeaseCount != 0 || !strings.Contains(st.Message, "mark it decommissioning") {
		t.Fatalf("decommission status: %v (n%d holds %v)", st, vid, its)
	}
	// Its own heartbeats keep the membership (they rewrite the record).
	timeutil.WaitFor(t, 10*time.Second, fmt.Sprintf("n%d's own record says decommissioning", vid), func() error {
		if m := tc.Node(victim).liveness.Self().GetMembership(); m != rspb.LivenessMembership_LIVENESS_DECOMMISSIONING {
			return fmt.Errorf("self record: %v", m)
		}
		return nil
	})
	exp := tc.Node(victim).liveness.Self().GetExpiration().GetWallTime()
	timeutil.WaitFor(t, 10*time.Second, "another heartbeat", func() error {
		if tc.Node(victim).liveness.Self().GetExpiration().GetWallTime() == exp {
			return fmt.Errorf("no heartbeat yet")
		}
		return nil
	})
	if m := membershipOf(t, tc, 1, vid); m != rspb.MembershipState_MEMBERSHIP_DECOMMISSIONING {
		t.Fatalf("n%d is %v after a heartbeat, want decommissioning", vid, m)
	}
	_, err = admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: its[0], TargetNodeId: vid})
	wantCode(t, "lease to a decommissioning node", err, codes.FailedPrecondition, "it is decommissioning")
	r, err = admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{vid}})
	if err != nil || !strings.Contains(r.Nodes[0].Message, "already decommissioning") {
		t.Fatalf("decommission again: %v %v", r, err)
	}
	_, err = admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{vid}, Finish: true})
	wantCode(t, "finish too early", err, codes.FailedPrecondition, fmt.Sprintf("n%d still holds %d replicas", vid, len(its)))

	// Recommission: active again, it takes leases again.
	rr, err := admin.Recommission(ctx, &rspb.RecommissionRequest{NodeId: vid})
	if err != nil || rr.Membership != rspb.MembershipState_MEMBERSHIP_ACTIVE {
		t.Fatalf("recommission: %v %v", rr, err)
	}
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("a lease moves to recommissioned n%d", vid), func() error {
		if l := leaseOf(tc, victim, its[0]); l.GetNodeId() == vid {
			return nil
		}
		_, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: its[0], TargetNodeId: vid})
		return fmt.Errorf("lease not on n%d yet (%w)", vid, err)
	})

	// Decommission again; a decommissioning node gets no new replica.
	if _, err := admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{vid}}); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("n%d holds no lease", vid), func() error {
		if held := tc.Node(victim).heldLeases(); len(held) > 0 {
			return fmt.Errorf("holds the leases of %v", held)
		}
		return nil
	})
	// Move every replica away, as the replicate queue will: add the
	// missing node, remove the victim.
	for i, id := range its {
		d := metaDescOf(t, tc, 0, id)
		var add uint64
		for j := 0; j < 4; j++ {
			if nid := tc.Node(j).NodeID(); nid != vid && !slices.Contains(nodesOf(d, rspb.ReplicaType_VOTER), nid) {
				add = nid
			}
		}
		if _, err := admin.ChangeReplicas(ctx, &rspb.ChangeReplicasRequest{RangeId: id, AddNodeIds: []uint64{add}, RemoveNodeIds: []uint64{vid}}); err != nil {
			t.Fatalf("move r%d from n%d to n%d: %v", id, vid, add, err)
		}
		if i == 0 {
			_, err := admin.ChangeReplicas(ctx, &rspb.ChangeReplicasRequest{RangeId: id, AddNodeIds: []uint64{vid}})
			wantCode(t, "replica to a decommissioning node", err, codes.FailedPrecondition, fmt.Sprintf("n%d takes no new replica: it is decommissioning", vid))
		}
	}
	r, err = admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{vid}, Finish: true})
	if err != nil || r.Nodes[0].Membership != rspb.MembershipState_MEMBERSHIP_DECOMMISSIONED || r.Nodes[0].ReplicaCount != 0 {
		t.Fatalf("finish: %v %v", r, err)
	}
	if m := membershipOf(t, tc, 2, vid); m != rspb.MembershipState_MEMBERSHIP_DECOMMISSIONED {
		t.Fatalf("n%d is %v, want decommissioned", vid, m)
	}
	_, err = admin.Recommission(ctx, &rspb.RecommissionRequest{NodeId: vid})
	wantCode(t, "recommission a decommissioned node", err, codes.FailedPrecondition, "cannot be recommissioned", "--join")
	descs, err := tc.Node(0).MetaRanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		if v := nodesOf(d, rspb.ReplicaType_VOTER); len(v) != 3 || slices.Contains(v, vid) {
			t.Fatalf("r%d has voters %v", d.RangeId, v)
		}
	}
	// Stopped, it leaves nothing under-replicated; restarted with its old
	// store it sits idle.
	tc.StopNode(victim)
	checkKeys(t, tc, (victim+1)%4, "k", 30)
	if err := tc.RestartNode(victim); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 20*time.Second, "the restarted decommissioned node says it sits idle", func() error {
		if why := tc.Node(victim).Readiness(); !strings.Contains(why, "is decommissioned") {
			return fmt.Errorf("readiness: %q", why)
		}
		if !strings.Contains(logs.String(), fmt.Sprintf("n%d is decommissioned: it sits idle", vid)) {
			return fmt.Errorf("no log line yet")
		}
		return nil
	})
	checkKeys(t, tc, victim, "k", 30) // as a gateway it still forwards
	if held := tc.Node(victim).heldLeases(); len(held) != 0 {
		t.Fatalf("decommissioned n%d holds leases of %v", vid, held)
	}
}

// replicateQueueMerged reports whether the replicate queue (rebalance/,
// branch i11-queue) runs in this tree's nodes: only the queue moves the
// replicas of a decommissioning node.
func replicateQueueMerged() bool {
	return true
}

// TestDecommissionUnderLoad: 4 nodes, a writer running throughout;
// decommission the node without a meta replica: the replicate queue moves
// its replicas away, the decommission finishes, the node holds 0 replicas,
// every range has 3 voters, and every acknowledged write is there.
func TestDecommissionUnderLoad(t *testing.T) {
	if !replicateQueueMerged() {
		t.Skip("needs the replicate queue (branch i11-queue)")
	}
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 4, SplitCheckInterval: time.Hour,
		ReplicateQueueInterval: 300 * time.Millisecond, ReplicationFactor: 3})
	ctx := ctxT(t)
	victim := nonMetaIndex(tc)
	vid := tc.Node(victim).NodeID()
	gw := (victim + 1) % tc.NumNodes()
	admin := rspb.NewAdminClient(tc.Conn(gw))

	// The writer: sequential puts through gw, each retried until
	// acknowledged (the same value: a retry of an ambiguous put is harmless).
	stop := make(chan struct{})
	var acked []string
	writerDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			k := fmt.Sprintf("w%05d", i)
			for {
				select {
				case <-stop:
					writerDone <- nil
					return
				default:
				}
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := tc.KV(gw).Put(pctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v-" + k)})
				cancel()
				if err == nil {
					acked = append(acked, k)
					break
				}
				if ctx.Err() != nil {
					writerDone <- err
					return
				}
			}
		}
	}()

	// A refusal changes nothing; one for a node that looked not live for a
	// moment (a heartbeat late on a loaded machine: "leaves 2 nodes that
	// can hold replicas") is asked again.
	var r *rspb.DecommissionResponse
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("decommission n%d accepted", vid), func() error {
		var err error
		r, err = admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{vid}})
		if status.Code(err) == codes.FailedPrecondition {
			return err
		}
		if err != nil {
			t.Fatalf("decommission n%d: %v", vid, err)
		}
		return nil
	})
	t.Logf("decommission n%d: %v", vid, r.Nodes[0])
	start := time.Now()
	timeutil.WaitFor(t, 50*time.Second, fmt.Sprintf("the replicate queue empties n%d", vid), func() error {
		r, err := admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{vid}})
		if err != nil {
			return err
		}
		if st := r.Nodes[0]; st.ReplicaCount > 0 {
			return fmt.Errorf("%d replicas left (%v)", st.ReplicaCount, st.RangeIds)
		}
		return nil
	})
	t.Logf("n%d emptied in %v", vid, time.Since(start).Round(time.Millisecond))
	r, err := admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{vid}, Finish: true})
	if err != nil || r.Nodes[0].Membership != rspb.MembershipState_MEMBERSHIP_DECOMMISSIONED {
		t.Fatalf("finish: %v %v", r, err)
	}
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
	descs, err := tc.Node(gw).MetaRanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		if v := nodesOf(d, rspb.ReplicaType_VOTER); len(v) != 3 || slices.Contains(v, vid) {
			t.Fatalf("r%d has voters %v", d.RangeId, v)
		}
	}
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("n%d's replicas collected", vid), func() error {
		if n := len(tc.Node(victim).Ranges()); n > 0 {
			return fmt.Errorf("%d replicas left on n%d", n, vid)
		}
		return nil
	})
	// Stopped, it leaves every range fully replicated and every
	// acknowledged write readable.
	tc.StopNode(victim)
	for _, k := range acked {
		g, err := tc.KV(gw).Get(ctx, &rspb.GetRequest{Key: []byte(k)})
		if err != nil || !g.Found || string(g.Kv.Value) != "v-"+k {
			t.Fatalf("acknowledged write %s lost: %v %v", k, g, err)
		}
	}
	t.Logf("%d acknowledged writes during the decommission, none lost", len(acked))
}

// TestDecommissionDownNode: a stopped node is decommissioned on its behalf
// (its record is changed by another node); restarted, it keeps the
// membership, drains and takes no lease; recommissioned, it takes leases
// again.
func TestDecommissionDownNode(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	victim := nonMetaIndex(tc)
	vid := tc.Node(victim).NodeID()
	gw := (victim + 1) % tc.NumNodes()
	admin := rspb.NewAdminClient(tc.Conn(gw))
	var its []uint64
	for _, ri := range tc.Node(victim).Ranges() {
		its = append(its, ri.RangeDescriptor.RangeId)
	}
	tc.StopNode(victim)
	r, err := admin.Decommission(ctx, &rspb.DecommissionRequest{NodeIds: []uint64{vid}})
	if err != nil {
		t.Fatalf("decommission stopped n%d: %v", vid, err)
	}
	if st := r.Nodes[0]; st.Membership != rspb.MembershipState_MEMBERSHIP_DECOMMISSIONING || st.LeaseCount != -1 ||
		!strings.Contains(st.Message, "drain: ") || st.ReplicaCount != int64(len(its)) {
		t.Fatalf("decommission status of a stopped node: %v", st)
	}
	t.Logf("decommission of stopped n%d: %s", vid, r.Nodes[0].Message)
	if m := membershipOf(t, tc, gw, vid); m != rspb.MembershipState_MEMBERSHIP_DECOMMISSIONING {
		t.Fatalf("n%d is %v", vid, m)
	}
	if err := tc.RestartNode(victim); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("restarted n%d heartbeats, still decommissioning", vid), func() error {
		self := tc.Node(victim).liveness.Self()
		if self.GetMembership() != rspb.LivenessMembership_LIVENESS_DECOMMISSIONING || !tc.Node(victim).Store().Draining() {
			return fmt.Errorf("self record %v, store draining %t", self, tc.Node(victim).Store().Draining())
		}
		return nil
	})
	_, err = admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: its[0], TargetNodeId: vid})
	wantCode(t, "lease to the restarted decommissioning node", err, codes.FailedPrecondition, "it is decommissioning")
	if held := tc.Node(victim).heldLeases(); len(held) != 0 {
		t.Fatalf("restarted decommissioning n%d holds the leases of %v", vid, held)
	}
	if _, err := admin.Recommission(ctx, &rspb.RecommissionRequest{NodeId: vid}); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("recommissioned n%d takes a lease", vid), func() error {
		if l := leaseOf(tc, victim, its[0]); l.GetNodeId() == vid {
			return nil
		}
		_, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: its[0], TargetNodeId: vid})
		return fmt.Errorf("lease not on n%d yet (%w)", vid, err)
	})
	if m := membershipOf(t, tc, gw, vid); m != rspb.MembershipState_MEMBERSHIP_ACTIVE {
		t.Fatalf("recommissioned n%d is %v", vid, m)
	}
}

// TestDrainNodeTimeout: when no other voter of a range takes leases (the
// meta range's other voters are drained), a drain ends at its deadline
// with an error naming the range whose lease is left.
func TestDrainNodeTimeout(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	meta := tc.Node(0).MetaRange()
	gw := nonMetaIndex(tc)
	admin := rspb.NewAdminClient(tc.Conn(gw))
	voters := nodesOf(meta, rspb.ReplicaType_VOTER)
	for _, id := range voters[:2] {
		if _, err := admin.DrainNode(ctx, &rspb.DrainNodeRequest{NodeId: id}); err != nil {
			t.Fatalf("drain n%d: %v", id, err)
		}
	}
	last := voters[2]
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("n%d holds the meta lease", last), func() error {
		if l := leaseOf(tc, indexOfNode(tc, last), meta.RangeId); l.GetNodeId() != last {
			return fmt.Errorf("meta lease %v", l)
		}
		return nil
	})
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := admin.DrainNode(dctx, &rspb.DrainNodeRequest{NodeId: last})
	wantCode(t, "drain the last meta voter", err, codes.DeadlineExceeded, fmt.Sprintf("n%d still holds", last), fmt.Sprintf("r%d", meta.RangeId),
		"no live, non-draining voter took them in time")
	t.Logf("drain n%d: %v", last, err)
	checkKeys(t, tc, gw, "nothing", 0)
	if _, err := tc.KV(gw).Put(ctx, &rspb.PutRequest{Key: []byte("after"), Value: []byte("v")}); err != nil {
		t.Fatalf("write after the drains: %v", err)
	}
}
