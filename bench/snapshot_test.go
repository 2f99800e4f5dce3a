package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// TestSnapshotThroughput measures how fast a 64 MiB range is copied to a
// new replica by snapshot: a 4-node in-process cluster (real Dragonboat
// TCP transport on loopback, on-disk Pebble) loads 64 MiB into one range
// held by 3 nodes, then adds a replica on the fourth (ChangeReplicas), once
// at the default --snapshot-rate and once unlimited. It prints, per run,
// the streams Dragonboat delivered and aborted (an aborted one is sent
// again), the sender's streaming rate (snapshot bytes / SaveSnapshot time), the
// receiver's apply time (staging sstables + ingestion) and the whole add
// (non-voter, snapshot, promotion). In-process rather than multi-process:
// the snapshot path is the same (Pebble snapshot, Dragonboat chunks over
// TCP, chunk file, ingestion) and the metrics are read directly; the
// processes would share the same cores. Skipped unless
// RANGESTORE_SNAPSHOT_BENCH=1:
//
//	RANGESTORE_SNAPSHOT_BENCH=1 go test -count=1 -v -run TestSnapshotThroughput -timeout 20m ./bench/
func TestSnapshotThroughput(t *testing.T) {
	if os.Getenv("RANGESTORE_SNAPSHOT_BENCH") == "" {
		t.Skip("set RANGESTORE_SNAPSHOT_BENCH=1 to measure snapshot throughput")
	}
	type run struct {
		name string
		rate int64
	}
	var lines []string
	for _, r := range []run{{"--snapshot-rate 32MiB (default)", 0}, {"--snapshot-rate 0 (unlimited)", -1}} {
		lines = append(lines, snapshotRun(t, r.name, r.rate))
	}
	t.Logf("snapshot of a 64 MiB range to a new replica (%d CPUs, %s):\n%s", runtime.NumCPU(), runtime.Version(),
		"| rate setting | snapshot bytes | streams delivered / aborted | stream s | MiB/s streamed | apply s | add replica s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"+
			fmt.Sprint(lines[0], "\n", lines[1]))
}

func snapshotRun(t *testing.T, name string, rate int64) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{Nodes: 4, SplitKeys: [][]byte{[]byte("s"), []byte("t")},
		SplitCheckInterval: time.Hour, RangeMaxBytes: -1, RangeMinBytes: -1, SnapshotRate: rate})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	// 64 MiB: 256 values of 256 KiB under "s", written by 8 clients.
	// Random bytes (seeded), so Pebble's block compression does not shrink
	// them.
	const values, size = 256, 256 << 10
	val := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(val)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := w; j < values; j += 8 {
				if _, err := tc.KV(j%3).Put(ctx, &rspb.PutRequest{Key: []byte(fmt.Sprintf("s%04d", j)), Value: val}); err != nil {
					errs <- fmt.Errorf("put: %w", err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	var d *rspb.RangeDescriptor
	ik := string(keys.UserKey([]byte("s0000")))
	for _, r := range tc.Init.Ranges {
		if string(r.StartKey) <= ik && (len(r.EndKey) == 0 || ik < string(r.EndKey)) {
			d = r
		}
	}
	if d == nil {
		t.Fatal("no range holds s0000")
	}
	add := -1
	for i := 0; i < tc.NumNodes() && add < 0; i++ {
		held := false
		for _, rep := range d.Replicas {
			held = held || rep.NodeId == tc.Node(i).NodeID()
		}
		if !held {
			add = i
		}
	}
	if add < 0 {
		t.Fatalf("r%d is on every node", d.RangeId)
	}
	before := make([]snapStats, tc.NumNodes())
	for i := range before {
		before[i] = readSnapStats(t, tc.Node(i).Registry())
	}
	start := time.Now()
	if _, err := tc.Node(0).ChangeReplicas(ctx, d.RangeId, []uint64{tc.Node(add).NodeID()}, nil); err != nil {
		t.Fatalf("add n%d to r%d: %v", tc.Node(add).NodeID(), d.RangeId, err)
	}
	total := time.Since(start)
	var sent, streamSecs, applySecs, streams, aborted float64
	for i := 0; i < tc.NumNodes(); i++ {
		a := readSnapStats(t, tc.Node(i).Registry())
		streams += a.streams - before[i].streams
		aborted += a.aborted - before[i].aborted
		sent += a.bytesSent - before[i].bytesSent
		streamSecs += a.sendSecs - before[i].sendSecs
		applySecs += a.applySecs - before[i].applySecs
	}
	if sent < values*size || streamSecs == 0 {
		t.Fatalf("%s: %v snapshot bytes sent in %v s; want >= %d", name, sent, streamSecs, values*size)
	}
	line := fmt.Sprintf("| %s | %.1f MiB | %.0f / %.0f | %.2f | %.1f | %.2f | %.2f |", name, sent/(1<<20), streams, aborted,
		streamSecs, sent/(1<<20)/streamSecs, applySecs, total.Seconds())
	t.Log(line)
	if rate == 0 && sent/(1<<20)/streamSecs > float64(ranges.DefaultSnapshotRate>>20)*1.1 {
		t.Errorf("%s: streamed faster than the default rate", name)
	}
	return line
}

type snapStats struct {
	bytesSent, sendSecs, applySecs, streams, aborted float64
}

func readSnapStats(t *testing.T, reg *prometheus.Registry) snapStats {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var s snapStats
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			dir := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "direction" {
					dir = l.GetValue()
				}
			}
			switch {
			case mf.GetName() == "rangestore_snapshot_bytes_sent_total":
				s.bytesSent += m.GetCounter().GetValue()
			case mf.GetName() == "rangestore_snapshots_sent_total":
				s.streams += m.GetCounter().GetValue()
			case mf.GetName() == "rangestore_snapshot_failures_total" && dir == "send":
				s.aborted += m.GetCounter().GetValue()
			case mf.GetName() == "rangestore_snapshot_seconds" && dir == "send":
				s.sendSecs += m.GetHistogram().GetSampleSum()
			case mf.GetName() == "rangestore_snapshot_seconds" && dir == "apply":
				s.applySecs += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return s
}
