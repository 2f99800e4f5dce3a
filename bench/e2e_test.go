package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestRangestoreEndToEnd preloads an in-process cluster and runs a short
// mixed workload (reads, writes, scans) through the driver, on the client/
// path (every request straight to its leaseholder) and on the raw gRPC
// path (each node's gateway routing it).
func TestRangestoreEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	for _, raw := range []bool{false, true} {
		name := "client"
		if raw {
			name = "raw-grpc"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			d := startClusterDriver(ctx, t, node.TestClusterOptions{SplitKeys: [][]byte{KeyName(100, DefaultKeySize), KeyName(200, DefaultKeySize)}}, raw)
			if d.RawGRPC() != raw {
				t.Fatalf("driver RawGRPC() = %v, want %v", d.RawGRPC(), raw)
			}
			runEndToEnd(ctx, t, d)
			st, ok := d.ClientStats()
			if ok == raw {
				t.Fatalf("ClientStats ok = %v on the raw=%v path", ok, raw)
			}
			if !raw {
				t.Logf("client stats: %+v", st)
				if st.Attempts == 0 {
					t.Errorf("client path: no attempts counted: the requests did not go through client/")
				}
			}
		})
	}
}

// runEndToEnd preloads 300 keys over the three ranges through d, checks
// point reads and a scan across every range, and runs a mixed workload.
func runEndToEnd(ctx context.Context, t *testing.T, d *RangestoreDriver) {
	spec, _ := KVSpec(60, 20, 5)
	spec.Keys = 300
	if err := Preload(ctx, d, spec, 4, 1); err != nil {
		t.Fatal(err)
	}
	// Every preloaded key is readable, a missing key is not found, and
	// scans see the whole key space.
	for _, i := range []uint64{0, 1, 150, 299} {
		found, err := d.Get(ctx, KeyName(i, spec.KeySize))
		if err != nil || !found {
			t.Fatalf("key %d: found=%v err=%v", i, found, err)
		}
	}
	if found, err := d.Get(ctx, KeyName(5000, spec.KeySize)); err != nil || found {
		t.Fatalf("key 5000 (never written): found=%v err=%v, want not found", found, err)
	}
	if n, err := d.Scan(ctx, []byte("0"), 1000); err != nil || n != int(spec.Keys) {
		t.Fatalf("full scan: %d keys, err %v", n, err)
	}
	if n, err := d.Scan(ctx, KeyName(95, spec.KeySize), 10); err != nil || n != 10 {
		t.Fatalf("10-key scan across a range boundary: %d keys, err %v", n, err)
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
// with root's client certificate (through client/, or raw gRPC); both are
// closed when the test ends.
func startClusterDriver(ctx context.Context, t testing.TB, opts node.TestClusterOptions, raw bool) *RangestoreDriver {
	t.Helper()
	opts.Secure = true
	tc, err := node.StartTestCluster(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	d, err := OpenRangestore(ctx, clusterHosts(tc), RangestoreOptions{RawGRPC: raw, DialOptions: tc.ClientDialOptions()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func clusterHosts(tc *node.TestCluster) []string {
	var hosts []string
	for i := 0; i < tc.NumNodes(); i++ {
		hosts = append(hosts, tc.Addr(i))
	}
	return hosts
}

// TestRangestoreDriverBoundedStaleness: with SetBoundedStaleness the
// driver's Gets and Scans are follower reads (counted by the replicas as
// such, not as lease reads) that see the preloaded keys once the closed
// timestamps pass the preload. On the client path with one locality per
// node, every node's replicas serve a share of them.
func TestRangestoreDriverBoundedStaleness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	for _, raw := range []bool{false, true} {
		name := "client"
		if raw {
			name = "raw-grpc"
		}
		t.Run(name, func(t *testing.T) { testBoundedStaleness(t, raw) })
	}
}

func testBoundedStaleness(t *testing.T, raw bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	zones := [][]*rspb.LocalityTier{{{Key: "zone", Value: "n1"}}, {{Key: "zone", Value: "n2"}}, {{Key: "zone", Value: "n3"}}}
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{ClosedTimestampTarget: 200 * time.Millisecond, Secure: true, Localities: zones})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	hosts := clusterHosts(tc)
	strong, err := OpenRangestore(ctx, hosts, RangestoreOptions{RawGRPC: raw, DialOptions: tc.ClientDialOptions()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = strong.Close() })
	o := RangestoreOptions{RawGRPC: raw, DialOptions: tc.ClientDialOptions()}
	if !raw {
		o.Localities = [][]string{{"zone=n1"}, {"zone=n2"}, {"zone=n3"}}
	}
	d, err := OpenRangestore(ctx, hosts, o)
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
	// reads returns the lease and follower reads each node's replicas
	// served.
	reads := func() (lease, follower []int64) {
		for i := 0; i < tc.NumNodes(); i++ {
			var l, f int64
			st := tc.Node(i).Store()
			for _, ri := range st.Ranges() {
				rl, rf := st.ReplicaReads(ri.RangeDescriptor.GetRangeId())
				l, f = l+rl, f+rf
			}
			lease, follower = append(lease, l), append(follower, f)
		}
		return lease, follower
	}
	sum := func(xs []int64) (s int64) {
		for _, x := range xs {
			s += x
		}
		return s
	}
	// Every preloaded key becomes visible once its range's closed
	// timestamp passes the preload (target 200 ms) on the replica that
	// serves it: read each key once through every node (the driver
	// round-robins over the nodes, or over the clients of the three
	// localities), as closed timestamps only rise.
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
	for i := uint64(0); i < 3*spec.Keys; i++ {
		found, err := d.Get(ctx, KeyName(i%spec.Keys, spec.KeySize))
		if err != nil || !found {
			t.Fatalf("key %d: found=%v err=%v", i%spec.Keys, found, err)
		}
	}
	if n, err := d.Scan(ctx, []byte("0"), 1000); err != nil || n != int(spec.Keys) {
		t.Fatalf("bounded-staleness scan: %d keys, err %v", n, err)
	}
	leaseAfter, followerAfter := reads()
	per := make([]int64, len(followerAfter))
	for i := range per {
		per[i] = followerAfter[i] - followerBefore[i]
	}
	t.Logf("%d Gets and 1 Scan: follower reads +%d (per node %v), lease reads +%d", 3*spec.Keys, sum(followerAfter)-sum(followerBefore), per, sum(leaseAfter)-sum(leaseBefore))
	if got := sum(followerAfter) - sum(followerBefore); got < 3*int64(spec.Keys) {
		t.Errorf("follower reads +%d, want at least %d (one per Get)", got, 3*spec.Keys)
	}
	for i, n := range per {
		if n < int64(spec.Keys)/2 {
			t.Errorf("node %d served %d follower reads of %d Gets, want about a third each (per node %v)", i, n, 3*spec.Keys, per)
		}
	}
}

// TestOpenRangestoreBadOptions: options that cannot work are refused
// before anything is dialled, naming what is wrong.
func TestOpenRangestoreBadOptions(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		hosts []string
		o     RangestoreOptions
		want  string
	}{
		{"no hosts (client)", nil, RangestoreOptions{}, "no hosts"},
		{"no hosts (raw)", nil, RangestoreOptions{RawGRPC: true}, "no hosts"},
		{"localities on the raw path", []string{"127.0.0.1:1"}, RangestoreOptions{RawGRPC: true, Localities: [][]string{{"zone=a"}}}, "Localities need the client path"},
		{"bad locality", []string{"127.0.0.1:1"}, RangestoreOptions{Localities: [][]string{{"zone"}}}, `locality [zone]`},
	} {
		d, err := OpenRangestore(ctx, tc.hosts, tc.o)
		if err == nil {
			_ = d.Close()
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q lacks %q", tc.name, err, tc.want)
		}
	}
}
