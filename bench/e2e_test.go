package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/node"
)

// TestRangestoreEndToEnd preloads an in-process cluster and runs a short
// mixed workload (reads, writes, scans) through the gRPC driver.
func TestRangestoreEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := startClusterDriver(ctx, t, node.TestClusterOptions{})

	spec, _ := KVSpec(60, 20, 5)
	spec.Keys = 300
	if err := Preload(ctx, d, spec, 4, 1); err != nil {
		t.Fatal(err)
	}
	// Every preloaded key is readable and scans see the whole key space.
	for _, i := range []uint64{0, 1, 150, 299} {
		found, err := d.Get(ctx, KeyName(i, spec.KeySize))
		if err != nil || !found {
			t.Fatalf("key %d: found=%v err=%v", i, found, err)
		}
	}
	if n, err := d.Scan(ctx, []byte("0"), 1000); err != nil || n != int(spec.Keys) {
		t.Fatalf("full scan: %d keys, err %v", n, err)
	}

	w, err := NewWorkload(spec)
	if err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	res, err := Run(ctx, d, w, Options{Concurrency: 8, Warmup: 250 * time.Millisecond, Duration: time.Second,
		Interval: 250 * time.Millisecond, Progress: &progress, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	res.Driver = "rangestore"
	var sum strings.Builder
	_ = WriteSummary(&sum, res)
	t.Logf("progress:\n%s\n%s", progress.String(), sum.String())
	for _, op := range []string{"read", "write", "scan"} {
		s := res.Op(op)
		if s.Count == 0 || s.Errors != 0 || s.P99Ms <= 0 {
			t.Errorf("%s: %+v (first error %q)", op, s, res.FirstError)
		}
	}
	if len(res.Timeline) < 4 {
		t.Errorf("%d timeline samples", len(res.Timeline))
	}
}

// startClusterDriver starts an in-process cluster and a rangestore driver
// over all its nodes; both are closed when the test ends.
func startClusterDriver(ctx context.Context, t testing.TB, opts node.TestClusterOptions) *RangestoreDriver {
	t.Helper()
	tc, err := node.StartTestCluster(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	var hosts []string
	for i := 0; i < tc.NumNodes(); i++ {
		hosts = append(hosts, tc.Addr(i))
	}
	d, err := NewRangestoreDriver(hosts, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}
