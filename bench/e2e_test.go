package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/timeutil"
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

// startClusterDriver starts an in-process cluster, secure (mutual TLS, as
// clusters run by default), and a rangestore driver over all its nodes
// with root's client certificate; both are closed when the test ends.
func startClusterDriver(ctx context.Context, t testing.TB, opts node.TestClusterOptions) *RangestoreDriver {
	t.Helper()
	opts.Secure = true
	tc, err := node.StartTestCluster(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	var hosts []string
	for i := 0; i < tc.NumNodes(); i++ {
		hosts = append(hosts, tc.Addr(i))
	}
	d, err := NewRangestoreDriver(hosts, 1, tc.ClientDialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// TestRangestoreDriverBoundedStaleness: with SetBoundedStaleness the
// driver's Gets and Scans are follower reads (counted by the replicas as
// such, not as lease reads) that see the preloaded keys once the closed
// timestamps pass the preload.
func TestRangestoreDriverBoundedStaleness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{ClosedTimestampTarget: 200 * time.Millisecond, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	var hosts []string
	for i := 0; i < tc.NumNodes(); i++ {
		hosts = append(hosts, tc.Addr(i))
	}
	strong, err := NewRangestoreDriver(hosts, 1, tc.ClientDialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = strong.Close() })
	d, err := NewRangestoreDriver(hosts, 1, tc.ClientDialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	d.SetBoundedStaleness(10 * time.Second)

	spec, _ := KVSpec(100, 0, 5)
	spec.Keys = 50
	if err := Preload(ctx, strong, spec, 4, 1); err != nil {
		t.Fatal(err)
	}
	reads := func() (lease, follower int64) {
		for i := 0; i < tc.NumNodes(); i++ {
			st := tc.Node(i).Store()
			for _, ri := range st.Ranges() {
				l, f := st.ReplicaReads(ri.RangeDescriptor.GetRangeId())
				lease, follower = lease+l, follower+f
			}
		}
		return lease, follower
	}
	// Every preloaded key becomes visible once its range's closed
	// timestamp passes the preload (target 200 ms) on the replica that
	// serves it: read each key once through every node (the driver
	// round-robins), as closed timestamps only rise.
	timeutil.WaitFor(t, 30*time.Second, "bounded-staleness reads of every preloaded key through every node", func() error {
		for i := uint64(0); i < spec.Keys; i++ {
			for range hosts {
				found, err := d.Get(ctx, KeyName(i, spec.KeySize))
				if err != nil {
					return err
				}
				if !found {
					return fmt.Errorf("key %d not found yet", i)
				}
			}
		}
		return nil
	})
	leaseBefore, followerBefore := reads()
	for i := uint64(0); i < spec.Keys; i++ {
		found, err := d.Get(ctx, KeyName(i, spec.KeySize))
		if err != nil || !found {
			t.Fatalf("key %d: found=%v err=%v", i, found, err)
		}
	}
	if n, err := d.Scan(ctx, []byte("0"), 1000); err != nil || n != int(spec.Keys) {
		t.Fatalf("bounded-staleness scan: %d keys, err %v", n, err)
	}
	leaseAfter, followerAfter := reads()
	t.Logf("%d Gets and 1 Scan: follower reads +%d, lease reads +%d", spec.Keys, followerAfter-followerBefore, leaseAfter-leaseBefore)
	if got := followerAfter - followerBefore; got < int64(spec.Keys) {
		t.Errorf("follower reads +%d, want at least %d (one per Get)", got, spec.Keys)
	}
}
