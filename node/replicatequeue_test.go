package node

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/internal/metricstest"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// queueInterval is the replicate queue interval of these tests.
const queueInterval = 300 * time.Millisecond

// ctxQueue bounds a whole queue test's cluster calls: longer than ctxT,
// since a test waits up to 40 s for the queue more than once.
func ctxQueue(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkReplication reads meta through node i and checks that every range
// but the meta range (whose replicas cannot change yet) has exactly
// factor voters, on distinct nodes of allowed (nil: any), and no
// non-voter.
func checkReplication(ctx context.Context, tc *TestCluster, i, factor int, allowed map[uint64]bool) error {
	n := tc.Node(i)
	if n == nil {
		return fmt.Errorf("node %d is stopped", i)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	descs, err := n.MetaRanges(ctx)
	if err != nil {
		return err
	}
	for _, d := range descs {
		voters := nodesOf(d, rspb.ReplicaType_VOTER)
		seen := map[uint64]bool{}
		for _, v := range voters {
			if seen[v] || (allowed != nil && !allowed[v]) {
				return fmt.Errorf("r%d: voters %v (allowed %v)", d.RangeId, voters, allowed)
			}
			seen[v] = true
		}
		if len(voters) != factor || len(d.Replicas) != factor {
			return fmt.Errorf("r%d: voters %v, %d replicas, want %d voters", d.RangeId, voters, len(d.Replicas), factor)
		}
	}
	return nil
}

// metricSum sums a series over the running nodes (label values ignored
// unless labels names some).
func metricSum(t *testing.T, tc *TestCluster, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for i := 0; i < tc.NumNodes(); i++ {
		n := tc.Node(i)
		if n == nil {
			continue
		}
		sum += metricstest.Sum(t, n.Registry(), name, labels)
	}
	return sum
}

// TestReplicateQueueUpReplicates: a 1-node cluster (factor 3 by default)
// grows to 3 nodes by joins; the queue brings every range (meta too) to
// 3 voters on the 3 nodes, and the data is readable through a new node.
func TestReplicateQueueUpReplicates(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 1, InitialSplits: 2, ReplicateQueueInterval: queueInterval, SplitCheckInterval: time.Hour})
	ctx := ctxQueue(t)
	putKeys(t, tc, 0, "u", 30)
	if err := checkReplication(ctx, tc, 0, 1, nil); err != nil {
		t.Fatalf("before the joins: %v", err)
	}
	timeutil.WaitFor(t, 10*time.Second, "the under-replicated gauge counts every range", func() error {
		if got, want := metricSum(t, tc, "rangestore_ranges_underreplicated", nil), float64(len(tc.Init.Ranges)); got != want {
			return fmt.Errorf("gauge %v, want %v", got, want)
		}
		return nil
	})
	var last int
	for j := 0; j < 2; j++ {
		i, err := tc.AddNode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tc.WaitJoined(ctx, i); err != nil {
			t.Fatal(err)
		}
		last = i
	}
	timeutil.WaitFor(t, 40*time.Second, "every range on 3 voters", func() error { return checkReplication(ctx, tc, last, 3, nil) })
	checkKeys(t, tc, last, "u", 30)
	// The meta range too: nothing stays under-replicated.
	timeutil.WaitFor(t, 10*time.Second, "the gauge counts no range", func() error {
		if got := metricSum(t, tc, "rangestore_ranges_underreplicated", nil); got != 0 {
			return fmt.Errorf("gauge %v, want 0", got)
		}
		return nil
	})
	if got := metricSum(t, tc, "rangestore_replicate_queue_actions_total", map[string]string{"action": "add-voter", "result": "ok"}); got < float64(2*len(tc.Init.Ranges)) {
		t.Fatalf("add-voter actions: %v, want at least %d", got, 2*len(tc.Init.Ranges))
	}
}

// TestReplicateQueueRepairsDeadNode: 4 nodes, 3 replicas per range; n4 is
// stopped for good. Once it has been dead for the time until store dead,
// every range it held gets a voter on another node and its voter is
// removed; writes keep working and the gauges go back to 0.
func TestReplicateQueueRepairsDeadNode(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 3, ReplicateQueueInterval: queueInterval,
		TimeUntilStoreDead: 2 * time.Second, SplitCheckInterval: time.Hour})
	ctx := ctxQueue(t)
	putKeys(t, tc, 0, "d", 30)
	// Stop the node with ID 4 (init numbers the nodes by address), which
	// holds no replica of the meta range (n1-n3) but some of the others.
	victim := indexOfNode(tc, 4)
	held := 0
	for _, d := range tc.Init.Ranges {
		for _, r := range d.Replicas {
			if r.NodeId == 4 {
				held++
			}
		}
	}
	if victim < 0 || held == 0 {
		t.Fatalf("n4 at index %d holds %d replicas: nothing to repair", victim, held)
	}
	start := time.Now()
	tc.StopNode(victim)
	live := map[uint64]bool{1: true, 2: true, 3: true}
	other := (victim + 1) % 4
	timeutil.WaitFor(t, 40*time.Second, "every range on 3 live voters", func() error { return checkReplication(ctx, tc, other, 3, live) })
	t.Logf("%d replicas of n4 repaired %s after it stopped", held, time.Since(start).Round(100*time.Millisecond))
	reader := (victim + 2) % 4
	putKeys(t, tc, other, "e", 20)
	checkKeys(t, tc, reader, "d", 30)
	checkKeys(t, tc, reader, "e", 20)
	timeutil.WaitFor(t, 10*time.Second, "the gauges at 0", func() error {
		u, a := metricSum(t, tc, "rangestore_ranges_underreplicated", nil), metricSum(t, tc, "rangestore_ranges_unavailable", nil)
		if u != 0 || a != 0 {
			return fmt.Errorf("under-replicated %v, unavailable %v", u, a)
		}
		return nil
	})
	if got := metricSum(t, tc, "rangestore_replicate_queue_actions_total", map[string]string{"action": "remove-voter", "result": "ok"}); got < float64(held) {
		t.Fatalf("remove-voter actions: %v, want at least %d", got, held)
	}
}

// TestReplicateQueueFactorChange: on 5 nodes the factor goes 3 -> 5 -> 3
// through SetReplicationFactor, and the queue follows; bad factors are
// refused naming the field, and leave the setting as it was.
func TestReplicateQueueFactorChange(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 5, InitialSplits: 2, ReplicateQueueInterval: queueInterval, SplitCheckInterval: time.Hour})
	ctx := ctxQueue(t)
	putKeys(t, tc, 0, "f", 20)
	admin := rspb.NewAdminClient(tc.Conn(1))
	for _, bad := range []int32{2, 0, 4, -1, 11} {
		_, err := admin.SetReplicationFactor(ctx, &rspb.SetReplicationFactorRequest{ReplicationFactor: bad})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "replication_factor") {
			t.Fatalf("set factor %d: %v, want InvalidArgument naming replication_factor", bad, err)
		}
	}
	if f, err := tc.Node(0).ReplicationFactor(ctx); err != nil || f != 3 {
		t.Fatalf("factor after the refusals: %d, %v; want 3", f, err)
	}
	for _, f := range []int{5, 3} {
		// The live count is a snapshot: on a loaded machine (rebalancing
		// moves replicas onto n4 and n5 meanwhile) a node's liveness may
		// lapse for a moment; setting the same factor again is harmless.
		timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("set factor %d, 5 live active nodes", f), func() error {
			resp, err := admin.SetReplicationFactor(ctx, &rspb.SetReplicationFactorRequest{ReplicationFactor: int32(f)})
			if err != nil {
				return err
			}
			if resp.ReplicationFactor != int32(f) || resp.LiveActiveNodes != 5 {
				return fmt.Errorf("set factor %d: %v", f, resp)
			}
			return nil
		})
		timeutil.WaitFor(t, 40*time.Second, fmt.Sprintf("every range on %d voters", f), func() error { return checkReplication(ctx, tc, 2, f, nil) })
		checkKeys(t, tc, 3, "f", 20)
	}
}

// TestInitReplicasRefused: init refuses a bad replication factor naming
// the field and initializes nothing; a good one is stored as the setting.
func TestInitReplicasRefused(t *testing.T) {
	dir := t.TempDir()
	ga := freeAddr(t)
	ra := freeAddr(t)
	n, err := Start(Config{StoreDir: filepath.Join(dir, "n1"), ListenAddr: ga, RaftAddr: ra, ReplicateQueueInterval: -1,
		RaftRTTMillisecond: 20, ElectionRTT: 15, HeartbeatRTT: 2, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	ctx := ctxQueue(t)
	for _, bad := range []int32{2, 4, -3, 11} {
		_, err := n.Init(ctx, &rspb.InitRequest{ReplicationFactor: bad})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "replication_factor") {
			t.Fatalf("init with factor %d: %v, want InvalidArgument naming replication_factor", bad, err)
		}
		if id := n.ClusterID(); id != "" {
			t.Fatalf("init with factor %d initialized cluster %s", bad, id)
		}
	}
	// 5 on one node: one voter per range now, the setting says 5.
	resp, err := n.Init(ctx, &rspb.InitRequest{ReplicationFactor: 5, InitialSplits: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.Ranges {
		if len(d.Replicas) != 1 {
			t.Fatalf("r%d: %d replicas on a 1-node cluster", d.RangeId, len(d.Replicas))
		}
	}
	timeutil.WaitFor(t, 20*time.Second, "the factor setting reads 5", func() error {
		f, err := n.ReplicationFactor(ctx)
		if err != nil || f != 5 {
			return fmt.Errorf("factor %d, %w", f, err)
		}
		return nil
	})
}

// TestReplicateQueueLeavesUnavailableRanges: 5 nodes, 3 replicas per
// range; n4 and n5 stop for good. The ranges with two voters on them lost
// their quorum: they are counted unavailable (and under-replicated) and
// left as they are; every other range is repaired onto n1-n3.
func TestReplicateQueueLeavesUnavailableRanges(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 5, InitialSplits: 3, ReplicateQueueInterval: queueInterval,
		TimeUntilStoreDead: 2 * time.Second, SplitCheckInterval: time.Hour})
	ctx := ctxQueue(t)
	lost := map[uint64]uint64{} // range ID -> generation at init
	for _, d := range tc.Init.Ranges {
		on := 0
		for _, r := range d.Replicas {
			if r.NodeId >= 4 {
				on++
			}
		}
		if on >= 2 {
			lost[d.RangeId] = d.Generation
		}
	}
	if len(lost) == 0 || len(lost) == len(tc.Init.Ranges) {
		t.Fatalf("layout: %d of %d ranges would lose their quorum", len(lost), len(tc.Init.Ranges))
	}
	for _, id := range []uint64{4, 5} {
		tc.StopNode(indexOfNode(tc, id))
	}
	reader := indexOfNode(tc, 1)
	timeutil.WaitFor(t, 60*time.Second, "the available ranges repaired, the others left alone", func() error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		descs, err := tc.Node(reader).MetaRanges(ctx)
		if err != nil {
			return err
		}
		for _, d := range descs {
			if gen, ok := lost[d.RangeId]; ok {
				if d.Generation != gen {
					return fmt.Errorf("r%d lost its quorum but changed: %v", d.RangeId, d)
				}
				continue
			}
			voters := nodesOf(d, rspb.ReplicaType_VOTER)
			for _, v := range voters {
				if v >= 4 {
					return fmt.Errorf("r%d: voters %v", d.RangeId, voters)
				}
			}
			if len(voters) != 3 || len(d.Replicas) != 3 {
				return fmt.Errorf("r%d: voters %v, %d replicas", d.RangeId, voters, len(d.Replicas))
			}
		}
		u, a := metricSum(t, tc, "rangestore_ranges_underreplicated", nil), metricSum(t, tc, "rangestore_ranges_unavailable", nil)
		if u != float64(len(lost)) || a != float64(len(lost)) {
			return fmt.Errorf("gauges: under-replicated %v, unavailable %v; want %d each", u, a, len(lost))
		}
		return nil
	})
}
