package node

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/internal/metricstest"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// countSpanKeys counts the engine keys of d's data span in eng.
func countSpanKeys(eng *kv.Engine, d *rspb.RangeDescriptor) (int, error) {
	lower, upper, err := kv.DataSpanBounds(d.StartKey, d.EndKey)
	if err != nil {
		return 0, err
	}
	it, err := eng.NewIter(lower, upper)
	if err != nil {
		return 0, err
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n, it.Close()
}

// TestSnapshotRetriedAfterCut: the snapshot that brings a new replica its
// data is cut mid-stream (the link between the sender and the new node is
// partitioned once part of it has been sent); Dragonboat sends it again
// after the link heals and the replica ends with all the data. A reader
// scanning the new node's engine throughout never sees part of the range:
// its span holds either nothing or everything.
func TestSnapshotRetriedAfterCut(t *testing.T) {
	net := fault.NewNetwork()
	// 1 MiB/s: the 6 MiB snapshot takes seconds, long enough to cut it.
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour, Network: net, SnapshotRate: 1 << 20})
	ctx := ctxT(t)
	val := bytes.Repeat([]byte("s"), 64<<10)
	const keys = 96 // 6 MiB
	for j := 0; j < keys; j++ {
		if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(fmt.Sprintf("s%03d", j)), Value: val}); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	d := rangeOf(tc, "s000")
	add := missingNode(t, tc, d)
	addID := tc.Node(add).NodeID()
	// One version per key; wait until a replica has applied every write.
	want := keys
	timeutil.WaitFor(t, 20*time.Second, "a replica holding every key", func() error {
		if n := spanDataKeys(t, tc, indexOfNode(tc, d.Replicas[0].NodeId), d); n != want {
			return fmt.Errorf("n%d holds %d of %d keys of r%d", d.Replicas[0].NodeId, n, want, d.RangeId)
		}
		return nil
	})
	if n := spanDataKeys(t, tc, add, d); n != 0 {
		t.Fatalf("n%d already holds %d keys of r%d", addID, n, d.RangeId)
	}

	// The reader: the new node's span holds 0 or want keys, never between.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var partial []int
	var scans int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			n, err := countSpanKeys(tc.Node(add).Engine(), d)
			if err != nil {
				t.Error(err)
				return
			}
			scans++
			if n != 0 && n != want {
				partial = append(partial, n)
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	done := make(chan error, 1)
	go func() {
		_, err := tc.Node(0).ChangeReplicas(ctx, d.RangeId, []uint64{addID}, nil)
		done <- err
	}()
	// Cut the sender off from the new node once 1 MiB has been streamed.
	sender := -1
	timeutil.WaitFor(t, 30*time.Second, "a snapshot streaming to the new node", func() error {
		for i := 0; i < tc.NumNodes(); i++ {
			reg := tc.Node(i).Registry()
			if metricstest.Sum(t, reg, "rangestore_snapshots_in_flight", map[string]string{"direction": "send"}) > 0 &&
				metricstest.Sum(t, reg, "rangestore_snapshot_bytes_sent_total", nil) >= 1<<20 {
				sender = i
				return nil
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the change ended before a snapshot was seen streaming: %v", err)
		default:
		}
		return fmt.Errorf("no node streams a snapshot yet")
	})
	net.Partition([]int{sender}, []int{add})
	timeutil.WaitFor(t, 30*time.Second, "the sender's stream of the cut snapshot aborted", func() error {
		if f := metricstest.Sum(t, tc.Node(sender).Registry(), "rangestore_snapshot_failures_total", map[string]string{"direction": "send"}); f < 1 {
			return fmt.Errorf("%v send failures", f)
		}
		return nil
	})
	if n := spanDataKeys(t, tc, add, d); n != 0 {
		t.Fatalf("n%d holds %d keys of r%d after the cut", addID, n, d.RangeId)
	}
	net.Heal()
	if err := <-done; err != nil {
		t.Fatalf("add n%d to r%d: %v", addID, d.RangeId, err)
	}
	timeutil.WaitFor(t, 30*time.Second, "the new replica holds the whole range", func() error {
		if n := spanDataKeys(t, tc, add, d); n != want {
			return fmt.Errorf("%d of %d keys", n, want)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	stop = make(chan struct{}) // for the deferred close
	if len(partial) > 0 {
		t.Fatalf("the reader saw part of r%d on n%d: key counts %v (want 0 or %d)", d.RangeId, addID, partial, want)
	}
	reg := tc.Node(add).Registry()
	if got := metricstest.Sum(t, reg, "rangestore_snapshots_received_total", nil); got < 1 {
		t.Errorf("n%d received %v snapshots", addID, got)
	}
	// The snapshot sent again may come from another node (Raft
	// leadership can move while the link is cut, on a loaded machine).
	var sent float64
	for i := 0; i < tc.NumNodes(); i++ {
		sent += metricstest.Sum(t, tc.Node(i).Registry(), "rangestore_snapshots_sent_total", nil)
	}
	if sent < 1 {
		t.Errorf("no node sent a snapshot in full")
	}
	t.Logf("%d scans of n%d's span saw 0 or %d keys; sender n%d: %v bytes sent, %v failed sends", scans, addID, want,
		tc.Node(sender).NodeID(), metricstest.Sum(t, tc.Node(sender).Registry(), "rangestore_snapshot_bytes_sent_total", nil),
		metricstest.Sum(t, tc.Node(sender).Registry(), "rangestore_snapshot_failures_total", map[string]string{"direction": "send"}))
}
