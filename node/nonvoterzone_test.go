package node

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestZoneNonVoterConstraints: a zone with num_voters 3, num_non_voters 1
// and non_voter_constraints +region=x puts the span's non-voter in region
// x. Five nodes in regions a, b, c, d, x, the voters moved to three nodes
// outside x: without the constraint the allocator picks either free node
// on its later criteria (a dry run shows which; mostly the other one),
// with it the one in x, and never a non-voter elsewhere. Inconsistent counts are
// InvalidArgument naming num_non_voters and store nothing. Count
// rebalancing is off (huge margins) so the voters stay where they are.
func TestZoneNonVoterConstraints(t *testing.T) {
	region := func(r string) []*rspb.LocalityTier { return []*rspb.LocalityTier{{Key: "region", Value: r}} }
	tc := startCluster(t, TestClusterOptions{Nodes: 5, SplitKeys: [][]byte{[]byte("m")}, ReplicateQueueInterval: queueInterval, SplitCheckInterval: time.Hour,
		Localities: [][]*rspb.LocalityTier{region("a"), region("b"), region("c"), region("d"), region("x")},
		Thresholds: allocator.Thresholds{MinRangeRebalance: 1000, MinLeaseRebalance: 1000}})
	ctx := ctxQueue(t)
	putKeys(t, tc, 0, "nz", 5) // keys "nz..." are in [m, end)
	span := func() (*rspb.RangeDescriptor, error) {
		descs, err := tc.Node(0).MetaRanges(ctx)
		if err != nil {
			return nil, err
		}
		for _, d := range descs {
			if bytes.Equal(d.StartKey, keys.UserKey([]byte("m"))) {
				return d, nil
			}
		}
		return nil, fmt.Errorf("no range starts at m")
	}
	// The voters go to three nodes outside x, leaving free the node in x
	// and one other (the decoy: the lowest node ID outside x).
	x := tc.Node(4).NodeID()
	var others []uint64
	for i := 0; i < 4; i++ {
		others = append(others, tc.Node(i).NodeID())
	}
	sort.Slice(others, func(i, j int) bool { return others[i] < others[j] })
	decoy, voters := others[0], others[1:]
	timeutil.WaitFor(t, 30*time.Second, "[m, end) relocated outside x and the decoy", func() error {
		d, err := span()
		if err != nil {
			return err
		}
		_, err = tc.Node(0).RelocateRange(ctx, d.RangeId, voters)
		return err
	})
	t.Logf("voters on %v, free: decoy n%d and n%d in region x", voters, decoy, x)

	bad := map[string]string{"num_replicas": "5", "num_voters": "3", "num_non_voters": "1"}
	if _, err := tc.Node(1).SetZone(ctx, &rspb.SetZoneRequest{StartKey: []byte("m"), Fields: bad}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "num_non_voters") {
		t.Fatalf("num_replicas 5, num_voters 3, num_non_voters 1: %v, want InvalidArgument naming num_non_voters", err)
	}

	fields := map[string]string{"num_voters": "3", "num_non_voters": "1"}
	dry, err := tc.Node(1).SetZone(ctx, &rspb.SetZoneRequest{StartKey: []byte("m"), Fields: fields, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	// Both free nodes add a region: the allocator's later criteria
	// (replica count, QPS, node ID) decide; mostly the decoy (fewer
	// replicas, lower ID), which makes the constraint's effect visible.
	toDecoy, toX := fmt.Sprintf("add-non-voter n%d:", decoy), fmt.Sprintf("add-non-voter n%d:", x)
	if len(dry.Changes) != 1 || !strings.Contains(dry.Changes[0], toDecoy) && !strings.Contains(dry.Changes[0], toX) {
		t.Fatalf("dry run without non_voter_constraints: %v, want an add-non-voter on n%d or n%d", dry.Changes, decoy, x)
	}
	t.Logf("without non_voter_constraints (dry run; the decoy chosen: %t): %s", strings.Contains(dry.Changes[0], toDecoy), dry.Changes[0])

	fields["non_voter_constraints"] = "+region=x"
	resp, err := tc.Node(1).SetZone(ctx, &rspb.SetZoneRequest{StartKey: []byte("m"), Fields: fields})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("zone set: resolved %s; first step %v", resp.Resolved, resp.Changes)
	if !strings.Contains(resp.Resolved, "num_replicas=4 num_voters=3 num_non_voters=1") {
		t.Fatalf("resolved %q: want num_replicas=4 num_voters=3 num_non_voters=1", resp.Resolved)
	}
	start := time.Now()
	var last *rspb.RangeDescriptor
	timeutil.WaitFor(t, 40*time.Second, "[m, end)'s non-voter in region x", func() error {
		d, err := span()
		if err != nil {
			return err
		}
		last = d
		nv := nodesOf(d, rspb.ReplicaType_NON_VOTER)
		for _, id := range nv {
			if id != x {
				t.Fatalf("r%d: a non-voter on n%d, outside region x: %v", d.RangeId, id, d.Replicas)
			}
		}
		if v := nodesOf(d, rspb.ReplicaType_VOTER); len(nv) != 1 || len(v) != 3 {
			return fmt.Errorf("r%d: voters %v, non-voters %v", d.RangeId, v, nv)
		}
		return nil
	})
	t.Logf("non-voter on n%d (region x) %v after the zone was set: voters %v", x, time.Since(start).Round(100*time.Millisecond), nodesOf(last, rspb.ReplicaType_VOTER))
	checkKeys(t, tc, 4, "nz", 5)
}
