package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/timeutil"
)

// TestMetaRangeMoves: the meta range's replicas move like any range's. On
// 5 nodes, meta is relocated off one of its nodes, then off a second one
// while the first is stopped (which comes back two changes behind). Every
// node follows: it routes through the new replicas, records the new
// descriptor, keeps serving reads and writes after a restart, and removed
// replicas are collected.
func TestMetaRangeMoves(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 5, MetaCheckInterval: 300 * time.Millisecond})
	ctx := ctxT(t)
	start := time.Now()
	meta := tc.Node(0).MetaRange()
	voters := nodesOf(meta, rspb.ReplicaType_VOTER)
	if len(voters) != 3 {
		t.Fatalf("meta has voters %v, want 3", voters)
	}
	out := missingNode(t, tc, meta)
	outID := tc.Node(out).NodeID()
	writeAll := func(round int) {
		t.Helper()
		for i := 0; i < tc.NumNodes(); i++ {
			if tc.Node(i) == nil {
				continue
			}
			k := fmt.Sprintf("meta-move-%d-%d", round, i)
			if _, err := tc.KV(i).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v")}); err != nil {
				t.Fatalf("round %d: put through n%d: %v", round, tc.Node(i).NodeID(), err)
			}
		}
		for i := 0; i < tc.NumNodes(); i++ {
			if tc.Node(i) == nil {
				continue
			}
			for j := 0; j < tc.NumNodes(); j++ {
				if tc.Node(j) == nil {
					continue
				}
				k := fmt.Sprintf("meta-move-%d-%d", round, j)
				if g, err := tc.KV(i).Get(ctx, &rspb.GetRequest{Key: []byte(k)}); err != nil || !g.Found {
					t.Fatalf("round %d: get %s through n%d: %v %v", round, k, tc.Node(i).NodeID(), g, err)
				}
			}
		}
	}
	writeAll(0)

	// Off voters[0], onto the node that had none; the lease follows the
	// first voter.
	first := []uint64{outID, voters[1], voters[2]}
	d, err := tc.Node(0).RelocateRange(ctx, ranges.MetaRangeID, first)
	if err != nil {
		t.Fatalf("relocate meta to %v: %v", first, err)
	}
	t.Logf("%.1fs: meta relocated to %v (generation %d)", time.Since(start).Seconds(), nodesOf(d, rspb.ReplicaType_VOTER), d.Generation)
	waitMetaEverywhere(t, tc, d.Generation)
	writeAll(1)

	// Stop a node that holds no replica of meta, and move meta off
	// voters[1] onto the fifth node while it is down: its copy of meta's
	// descriptor is two changes behind when it comes back.
	down := tc.IndexOfNodeID(voters[0])
	fifth := -1
	for i := 0; i < tc.NumNodes(); i++ {
		if id := tc.Node(i).NodeID(); id != voters[0] && id != voters[1] && id != voters[2] && id != outID {
			fifth = i
		}
	}
	tc.StopNode(down)
	second := []uint64{voters[2], outID, tc.Node(fifth).NodeID()}
	d, err = tc.Node(tc.IndexOfNodeID(voters[2])).RelocateRange(ctx, ranges.MetaRangeID, second)
	if err != nil {
		t.Fatalf("relocate meta to %v with n%d down: %v", second, voters[0], err)
	}
	t.Logf("%.1fs: meta relocated to %v (generation %d) while n%d was down", time.Since(start).Seconds(), nodesOf(d, rspb.ReplicaType_VOTER), d.Generation, voters[0])
	writeAll(2)
	if err := tc.RestartNode(down); err != nil {
		t.Fatal(err)
	}
	waitMetaEverywhere(t, tc, d.Generation)
	writeAll(3)
	timeutil.WaitFor(t, 30*time.Second, "the removed meta replica collected on n"+fmt.Sprint(voters[1]), func() error {
		for _, ri := range tc.Node(tc.IndexOfNodeID(voters[1])).Ranges() {
			if ri.RangeDescriptor.GetRangeId() == ranges.MetaRangeID {
				return fmt.Errorf("n%d still has a replica of meta", voters[1])
			}
		}
		return nil
	})

	t.Logf("%.1fs: every node follows, the removed replica is collected", time.Since(start).Seconds())
	// Every node restarts from its recorded descriptor.
	for i := 0; i < tc.NumNodes(); i++ {
		tc.StopNode(i)
		if err := tc.RestartNode(i); err != nil {
			t.Fatal(err)
		}
	}
	writeAll(4)
	t.Logf("%.1fs: every node restarted and serves", time.Since(start).Seconds())
}

// waitMetaEverywhere waits until every running node's cluster record holds
// the meta range's descriptor at generation gen or later.
func waitMetaEverywhere(t *testing.T, tc *TestCluster, gen uint64) {
	t.Helper()
	timeutil.WaitFor(t, 30*time.Second, "every node records the new meta descriptor", func() error {
		for i := 0; i < tc.NumNodes(); i++ {
			n := tc.Node(i)
			if n == nil {
				continue
			}
			if c := n.store.ClusterRecord(); c.GetMetaRange().GetGeneration() < gen {
				return fmt.Errorf("n%d records meta at generation %d, want %d", n.NodeID(), c.GetMetaRange().GetGeneration(), gen)
			}
		}
		return nil
	})
}
