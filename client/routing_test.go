package client

import (
	"fmt"
	"testing"
	"time"

	"github.com/rangestore/rangestore/internal/metricstest"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// forwards sums the node-to-node batches the cluster's nodes received
// (Internal/RangeBatch: a gateway forwarding a request to the leaseholder,
// and background traffic such as liveness heartbeats).
func forwards(t *testing.T, tc *node.TestCluster) float64 {
	t.Helper()
	sum := 0.0
	for i := range tc.NumNodes() {
		if n := tc.Node(i); n != nil {
			sum += metricstest.Sum(t, n.Registry(), "rangestore_grpc_requests_total", map[string]string{"method": "/rangestore.v1.Internal/RangeBatch"})
		}
	}
	return sum
}

// testKeys are keys spread over the five ranges.
var testKeys = []string{"a", "b", "d", "e", "g", "k", "n", "q", "t", "z"}

// TestRoutesToLeaseholder: with a warm cache every request goes straight
// to its range's leaseholder: no redirect, and the node-to-node forwarding
// counter stays at its background level, while the same requests sent to
// one node through its own routing are forwarded for the ranges whose
// lease is elsewhere.
func TestRoutesToLeaseholder(t *testing.T) {
	// No closed timestamp side transport (it is node-to-node RangeBatch
	// traffic too): only the forwarding and the liveness heartbeats remain.
	tc := startCluster(t, node.TestClusterOptions{ClosedTimestampInterval: time.Hour})
	db := openDB(t, tc)
	ctx := ctxT(t)
	spreadLeases(t, tc, db)
	for _, k := range testKeys { // warm up: learn every leaseholder
		if _, err := db.Put(ctx, []byte(k), []byte("v")); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	const rounds = 20
	ops := func(put func(k string) error, get func(k string) error) time.Duration {
		start := time.Now()
		for i := range rounds {
			for _, k := range testKeys {
				if err := put(k); err != nil {
					t.Fatalf("round %d: put %s: %v", i, k, err)
				}
				if err := get(k); err != nil {
					t.Fatalf("round %d: get %s: %v", i, k, err)
				}
			}
		}
		return time.Since(start)
	}
	n := float64(2 * rounds * len(testKeys))

	before, f0 := db.Stats(), forwards(t, tc)
	took := ops(func(k string) error { _, err := db.Put(ctx, []byte(k), []byte("v")); return err },
		func(k string) error { _, err := db.Get(ctx, []byte(k)); return err })
	after, f1 := db.Stats(), forwards(t, tc)
	clientForwards := f1 - f0

	// The background level over as long.
	time.Sleep(took)
	idle := forwards(t, tc) - f1

	kv := tc.KV(0)
	f2 := forwards(t, tc)
	ops(func(k string) error {
		_, err := kv.Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v")})
		return err
	},
		func(k string) error { _, err := kv.Get(ctx, &rspb.GetRequest{Key: []byte(k)}); return err })
	gatewayForwards := forwards(t, tc) - f2

	t.Logf("%v requests: client %v forwards (%d attempts, %d redirects), idle %v, one gateway %v forwards",
		n, clientForwards, after.Attempts-before.Attempts, after.Redirects-before.Redirects, idle, gatewayForwards)
	if r := after.Redirects - before.Redirects; r != 0 {
		t.Errorf("%d redirects with a warm cache, want 0", r)
	}
	if a := after.Attempts - before.Attempts; a != int64(n) {
		t.Errorf("%d attempts for %v requests, want one each", a, n)
	}
	if clientForwards > idle+n/50 {
		t.Errorf("client requests: %v forwarded node-to-node (idle level %v) for %v requests, want about none", clientForwards, idle, n)
	}
	if gatewayForwards < idle+n/4 {
		t.Errorf("one gateway forwarded only %v of %v requests (idle %v): the leases are not spread, the test proves nothing", gatewayForwards, n, idle)
	}
}

// spreadLeases moves the leases of the five ranges onto the three nodes in
// turn, so that most requests sent to one node need another node's
// replica.
func spreadLeases(t *testing.T, tc *node.TestCluster, db *DB) {
	t.Helper()
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	for i, k := range []string{"a", "d", "g", "n", "t"} {
		e := db.cache.lookup([]byte(k))
		if e == nil {
			t.Fatalf("no cached range for %q", k)
		}
		target := tc.Node(i % tc.NumNodes()).NodeID()
		timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("lease of r%d on n%d", e.rangeID, target), func() error {
			_, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: e.rangeID, TargetNodeId: target})
			return err
		})
	}
}

// TestCacheFollowsSplitMergeAndLeaseTransfer: a split, a merge and a lease
// transfer the client did not see are each corrected by one refusal's
// hint: the next request lands, and the one after goes straight to the
// right range and leaseholder.
func TestCacheFollowsSplitMergeAndLeaseTransfer(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{SplitCheckInterval: time.Hour})
	db := openDB(t, tc)
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	put := func(k string) {
		t.Helper()
		if _, err := db.Put(ctx, []byte(k), []byte("v-"+k)); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	put("n")
	put("q")
	parent := db.cache.lookup([]byte("q"))

	// Split [m, s) at p behind the client's back.
	sp, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("p")})
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	s0 := db.Stats()
	put("q")
	e := db.cache.lookup([]byte("q"))
	if e.rangeID != sp.Right.RangeId || e.generation != sp.Right.Generation || string(e.start) != "p" {
		t.Fatalf("after the split the cache has r%d gen %d [%q, %q) for q, want r%d gen %d from p", e.rangeID, e.generation, e.start, e.end, sp.Right.RangeId, sp.Right.Generation)
	}
	s1 := db.Stats()
	if s1.StaleRanges == s0.StaleRanges {
		t.Fatalf("the split was not noticed through a refusal (stats %+v)", s1)
	}
	put("q")
	put("n")
	if s2 := db.Stats(); s2.StaleRanges != s1.StaleRanges || s2.Attempts != s1.Attempts+2 {
		t.Fatalf("after learning the split: stats %+v, then %+v: want one attempt per put", s1, s2)
	}
	if l := db.cache.lookup([]byte("n")); l.rangeID != parent.rangeID || string(l.end) != "p" {
		t.Fatalf("left side: r%d [%q, %q), want r%d ending at p", l.rangeID, l.start, l.end, parent.rangeID)
	}

	// Merge them back: the right range is gone.
	if _, err := admin.MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte("n")}); err != nil {
		t.Fatalf("merge: %v", err)
	}
	put("q")
	e = db.cache.lookup([]byte("q"))
	if e.rangeID != parent.rangeID || string(e.start) != "m" || string(e.end) != "s" || e.generation <= sp.Right.Generation {
		t.Fatalf("after the merge the cache has r%d gen %d [%q, %q) for q, want r%d [m, s)", e.rangeID, e.generation, e.start, e.end, parent.rangeID)
	}
	s3 := db.Stats()
	put("q")
	if s4 := db.Stats(); s4.Attempts != s3.Attempts+1 {
		t.Fatalf("after learning the merge: %d attempts for one put", s4.Attempts-s3.Attempts)
	}

	// Move the lease to another voter.
	old := e.writer
	var target uint64
	for _, s := range e.servers {
		if s.voter && s.id != old {
			target = s.id
			break
		}
	}
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("lease of r%d to n%d", e.rangeID, target), func() error {
		_, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: e.rangeID, TargetNodeId: target})
		return err
	})
	s5 := db.Stats()
	put("q")
	s6 := db.Stats()
	if s6.Redirects == s5.Redirects {
		t.Fatalf("the lease transfer was not noticed through NOT_LEASEHOLDER (stats %+v)", s6)
	}
	if w := db.cache.lookup([]byte("q")).writer; w != target {
		t.Fatalf("cached leaseholder n%d after the transfer to n%d (was n%d)", w, target, old)
	}
	put("q")
	if s7 := db.Stats(); s7.Redirects != s6.Redirects || s7.Attempts != s6.Attempts+1 {
		t.Fatalf("after learning the lease: stats %+v, then %+v", s6, s7)
	}
	for _, k := range []string{"n", "q"} {
		if kv, err := db.Get(ctx, []byte(k)); err != nil || string(kv.Value) != "v-"+k {
			t.Fatalf("get %s: %q %v", k, kv.Value, err)
		}
	}
}
