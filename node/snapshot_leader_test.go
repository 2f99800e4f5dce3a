package node

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/rangestore/rangestore/internal/metricstest"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestLeaderKeepsLeadershipWhileStreaming: the lease moves away from the
// Raft leader while the leader streams a new replica's snapshot. Raft
// leadership follows the lease only once the stream is over: moved
// mid-stream, the new leader would find the new replica still empty and
// send it the whole range again (seen after a crash mid-stream,
// cmd/rangestore TestSnapshotMidStreamCrash). The new replica gets one
// snapshot, no node sends a second one, and leadership reaches the new
// leaseholder afterwards, once the new replica has restored the snapshot
// (handed over between the stream's end and the restore, the new leader
// finds the new replica's log empty and sends it all again: seen on loaded
// machines).
func TestLeaderKeepsLeadershipWhileStreaming(t *testing.T) {
	// 1 MiB/s: the 6 MiB snapshot streams for about 6 s.
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour, SnapshotRate: 1 << 20})
	ctx := ctxT(t)
	rng := rand.New(rand.NewSource(3))
	for j := 0; j < 96; j++ {
		val := make([]byte, 64<<10)
		rng.Read(val)
		if _, err := tc.KV(j%3).Put(ctx, &rspb.PutRequest{Key: []byte(fmt.Sprintf("t%03d", j)), Value: val}); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	d := rangeOf(tc, "t000")
	add := missingNode(t, tc, d)
	addID := tc.Node(add).NodeID()
	done := make(chan error, 1)
	go func() {
		_, err := tc.Node(0).ChangeReplicas(ctx, d.RangeId, []uint64{addID}, nil)
		done <- err
	}()
	sender := snapshotSender(t, tc, 1<<20)
	senderID := tc.Node(sender).NodeID()
	// The lease goes to another voter (the leaseholder moves it; the
	// sender is the Raft leader).
	var to uint64
	for _, r := range d.Replicas {
		if r.NodeId != senderID && r.Type == rspb.ReplicaType_VOTER {
			to = r.NodeId
		}
	}
	timeutil.WaitFor(t, 15*time.Second, fmt.Sprintf("lease of r%d to n%d", d.RangeId, to), func() error {
		l := leaseOf(tc, sender, d.RangeId)
		if l.GetNodeId() == to {
			return nil
		}
		return tc.Node(indexOfNode(tc, l.GetNodeId())).TransferLease(ctx, d.RangeId, to)
	})
	moved := time.Now()
	if err := <-done; err != nil {
		t.Fatalf("add n%d to r%d: %v", addID, d.RangeId, err)
	}
	timeutil.WaitFor(t, 30*time.Second, "Raft leadership at the new leaseholder", func() error {
		for _, ri := range tc.Node(indexOfNode(tc, to)).Ranges() {
			if ri.RangeDescriptor.GetRangeId() == d.RangeId && ri.LeaderNodeId != to {
				return fmt.Errorf("leader n%d, leaseholder n%d", ri.LeaderNodeId, to)
			}
		}
		return nil
	})
	var sent float64
	for i := 0; i < tc.NumNodes(); i++ {
		sent += metricstest.Sum(t, tc.Node(i).Registry(), "rangestore_snapshots_sent_total", nil)
	}
	got := metricstest.Sum(t, tc.Node(add).Registry(), "rangestore_snapshots_received_total", nil)
	t.Logf("sender n%d, lease moved to n%d mid-stream; the change ended %.1f s later; snapshots sent in full: %v, applied by n%d: %v",
		senderID, to, time.Since(moved).Seconds(), sent, addID, got)
	if sent != 1 || got != 1 {
		t.Fatalf("the new replica's snapshot was sent %v times in full and applied %v times, want once", sent, got)
	}
}

// snapshotSender waits (30 s) until a node streams a snapshot and has sent
// at least minBytes of snapshots, and returns its index.
func snapshotSender(t *testing.T, tc *TestCluster, minBytes float64) int {
	sender := -1
	timeutil.WaitFor(t, 30*time.Second, "a node streaming a snapshot", func() error {
		for i := 0; i < tc.NumNodes(); i++ {
			reg := tc.Node(i).Registry()
			if metricstest.Sum(t, reg, "rangestore_snapshots_in_flight", map[string]string{"direction": "send"}) > 0 &&
				metricstest.Sum(t, reg, "rangestore_snapshot_bytes_sent_total", nil) >= minBytes {
				sender = i
				return nil
			}
		}
		return fmt.Errorf("no node streams a snapshot yet")
	})
	return sender
}
