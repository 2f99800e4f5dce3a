package node

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// replicaIDOn returns d's replica ID on node nodeID (0: none there).
func replicaIDOn(d *rspb.RangeDescriptor, nodeID uint64) uint64 {
	for _, r := range d.Replicas {
		if r.NodeId == nodeID {
			return r.ReplicaId
		}
	}
	return 0
}

// checkIDMapping checks, on every node, that range d's lease names a
// holder whose ReplicaId is its replica on NodeId, and that the reported
// Raft leader's node is the node of the leader's replica ID. It returns the
// lease and the leader's node as node 0 sees them.
func checkIDMapping(tc *TestCluster, d *rspb.RangeDescriptor) (*rspb.Lease, uint64, error) {
	var lease *rspb.Lease
	var leader uint64
	for i := 0; i < tc.NumNodes(); i++ {
		for _, ri := range tc.Node(i).Ranges() {
			if ri.RangeDescriptor.GetRangeId() != d.RangeId {
				continue
			}
			l := ri.Lease
			if l.GetSequence() == 0 {
				return nil, 0, fmt.Errorf("n%d sees no lease on r%d", tc.Node(i).NodeID(), d.RangeId)
			}
			if want := replicaIDOn(d, l.NodeId); l.ReplicaId != want || want == 0 {
				return nil, 0, fmt.Errorf("n%d: r%d's lease names replica %d on n%d, but n%d holds replica %d", tc.Node(i).NodeID(), d.RangeId, l.ReplicaId, l.NodeId, l.NodeId, want)
			}
			if ri.LeaderReplicaId == 0 {
				return nil, 0, fmt.Errorf("n%d knows no leader of r%d", tc.Node(i).NodeID(), d.RangeId)
			}
			if want := replicaIDOn(d, ri.LeaderNodeId); want != ri.LeaderReplicaId {
				return nil, 0, fmt.Errorf("n%d: r%d's leader is replica %d, reported on n%d (whose replica is %d)", tc.Node(i).NodeID(), d.RangeId, ri.LeaderReplicaId, ri.LeaderNodeId, want)
			}
			if i == 0 {
				lease, leader = l, ri.LeaderNodeId
			}
		}
	}
	return lease, leader, nil
}

// TestReplicaIDsDistinctFromNodeIDs: on a range none of whose replica IDs
// is its node's ID, the lease's ReplicaId/NodeId pair, the Raft leader's
// node and a lease transfer to a named node (leadership following it) all
// come out right; a split's right side keeps the parent's replica IDs and
// next_replica_id, and serves under them too; the merge back keeps them.
func TestReplicaIDsDistinctFromNodeIDs(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})
	ctx := ctxT(t)
	var d *rspb.RangeDescriptor
	for _, r := range tc.Init.Ranges {
		if bytes.Compare(r.StartKey, keys.UserPrefix) < 0 || len(r.Replicas) != 3 {
			continue
		}
		differ := true
		for _, rep := range r.Replicas {
			differ = differ && rep.ReplicaId != rep.NodeId
		}
		if differ {
			d = r
			break
		}
	}
	if d == nil {
		t.Fatalf("no user range whose replica IDs all differ from their node IDs: %v", tc.Init.Ranges)
	}
	if d.NextReplicaId != 4 {
		t.Fatalf("r%d next_replica_id = %d, want 4", d.RangeId, d.NextReplicaId)
	}
	user := append(append([]byte(nil), d.StartKey[len(keys.UserPrefix):]...), "\x00rid"...)
	if !keys.InSpan(keys.UserKey(user), d.StartKey, d.EndKey) {
		t.Fatalf("key %q is not in r%d", user, d.RangeId)
	}
	t.Logf("r%d replicas %v", d.RangeId, d.Replicas)
	if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: user, Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	var lease *rspb.Lease
	timeutil.WaitFor(t, 15*time.Second, "lease and leader of r"+fmt.Sprint(d.RangeId), func() (err error) {
		lease, _, err = checkIDMapping(tc, d)
		return err
	})

	// Transfer the lease to each other node by name; leadership follows.
	admin := rspb.NewAdminClient(tc.Conn(0))
	for _, r := range d.Replicas {
		target := r.NodeId
		if target == lease.NodeId {
			continue
		}
		timeutil.WaitFor(t, 15*time.Second, fmt.Sprintf("transfer r%d to n%d", d.RangeId, target), func() error {
			_, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: d.RangeId, TargetNodeId: target})
			return err
		})
		timeutil.WaitFor(t, 15*time.Second, fmt.Sprintf("r%d's lease and leadership on n%d", d.RangeId, target), func() error {
			l, leader, err := checkIDMapping(tc, d)
			switch {
			case err != nil:
				return err
			case l.NodeId != target || l.ReplicaId != r.ReplicaId:
				return fmt.Errorf("lease on n%d (replica %d), want n%d (replica %d)", l.NodeId, l.ReplicaId, target, r.ReplicaId)
			case leader != target:
				return fmt.Errorf("leader on n%d, want n%d", leader, target)
			}
			return nil
		})
		if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: user, Value: []byte(fmt.Sprint("on n", target))}); err != nil {
			t.Fatalf("write after the transfer to n%d: %v", target, err)
		}
	}

	// Split: the right side keeps the parent's replica IDs and counter.
	at := append(append([]byte(nil), user...), "5"...)
	sp, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: at})
	if err != nil {
		t.Fatalf("split at %q: %v", at, err)
	}
	for _, side := range []*rspb.RangeDescriptor{sp.Left, sp.Right} {
		if side.NextReplicaId != d.NextReplicaId {
			t.Errorf("r%d next_replica_id = %d after the split, want the parent's %d", side.RangeId, side.NextReplicaId, d.NextReplicaId)
		}
		for _, r := range d.Replicas {
			if got := replicaIDOn(side, r.NodeId); got != r.ReplicaId {
				t.Errorf("r%d's replica on n%d is %d after the split, want the parent's %d", side.RangeId, r.NodeId, got, r.ReplicaId)
			}
		}
	}
	rightKey := append(append([]byte(nil), at...), "x"...)
	timeutil.WaitFor(t, 15*time.Second, "write to the right side", func() error {
		_, err := tc.KV(1).Put(ctx, &rspb.PutRequest{Key: rightKey, Value: []byte("r")})
		return err
	})
	timeutil.WaitFor(t, 15*time.Second, fmt.Sprintf("lease and leader of r%d", sp.Right.RangeId), func() error {
		_, _, err := checkIDMapping(tc, sp.Right)
		return err
	})

	// Merge back: the merged range is the left side, replica IDs and all.
	var m *rspb.MergeRangeResponse
	timeutil.WaitFor(t, 15*time.Second, "merge", func() (err error) {
		m, err = admin.MergeRange(ctx, &rspb.MergeRangeRequest{Key: user})
		return err
	})
	if m.Merged.RangeId != d.RangeId || !bytes.Equal(m.Merged.EndKey, d.EndKey) || m.Merged.NextReplicaId != d.NextReplicaId {
		t.Fatalf("merged %v, want r%d up to %s with next_replica_id %d", m.Merged, d.RangeId, keys.Pretty(d.EndKey), d.NextReplicaId)
	}
	for _, r := range d.Replicas {
		if got := replicaIDOn(m.Merged, r.NodeId); got != r.ReplicaId {
			t.Errorf("merged r%d's replica on n%d is %d, want %d", m.Merged.RangeId, r.NodeId, got, r.ReplicaId)
		}
	}
	for _, k := range [][]byte{user, rightKey} {
		if g, err := tc.KV(2).Get(ctx, &rspb.GetRequest{Key: k}); err != nil || !g.Found {
			t.Fatalf("get %q after the merge: %v %v", k, g, err)
		}
	}
}

// TestLegacyReplicaIDsLayout: a cluster bootstrapped as older versions did
// (replica IDs equal to node IDs, no next_replica_id) serves, splits (both
// sides read the missing counter as the largest replica ID + 1 and carry
// it), merges and restarts a node.
func TestLegacyReplicaIDsLayout(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{EditPlan: func(plan []*rspb.RangeDescriptor) {
		for _, d := range plan {
			d.NextReplicaId = 0
			for _, r := range d.Replicas {
				r.ReplicaId = r.NodeId
			}
		}
	}})
	ctx := ctxT(t)
	const k = "legacy"
	d := rangeOf(tc, k)
	if d.NextReplicaId != 0 || replicaIDOn(d, 2) != 2 {
		t.Fatalf("not a legacy layout: %v", d)
	}
	if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 15*time.Second, fmt.Sprintf("lease and leader of r%d", d.RangeId), func() error {
		_, _, err := checkIDMapping(tc, d)
		return err
	})
	admin := rspb.NewAdminClient(tc.Conn(0))
	sp, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte(k + "5")})
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	for _, side := range []*rspb.RangeDescriptor{sp.Left, sp.Right} {
		if side.NextReplicaId != 4 {
			t.Errorf("r%d next_replica_id = %d after splitting a legacy descriptor, want 4", side.RangeId, side.NextReplicaId)
		}
	}
	var m *rspb.MergeRangeResponse
	timeutil.WaitFor(t, 15*time.Second, "merge", func() (err error) {
		m, err = admin.MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte(k)})
		return err
	})
	if m.Merged.NextReplicaId != 4 {
		t.Errorf("merged r%d next_replica_id = %d, want 4", m.Merged.RangeId, m.Merged.NextReplicaId)
	}
	if err := tc.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 20*time.Second, "write and read through the restarted node", func() error {
		if _, err := tc.KV(1).Put(ctx, &rspb.PutRequest{Key: []byte(k + "9"), Value: []byte("w")}); err != nil {
			return err
		}
		g, err := tc.KV(1).Get(ctx, &rspb.GetRequest{Key: []byte(k)})
		if err == nil && !g.Found {
			err = fmt.Errorf("%q not found", k)
		}
		return err
	})
}
