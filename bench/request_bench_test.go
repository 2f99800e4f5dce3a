package bench

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/node"
)

// The request-path benchmarks send one request at a time through the
// whole single-request path of an in-process 3-node cluster: client/ (a
// warm range cache, so straight to the leaseholder) -> gRPC -> the
// gateway's KV service -> Store -> the replica's lease read or its
// proposal and local apply. allocs/op and B/op count the process, so they
// cover client and server together (plus the cluster's background work
// spread over the operations: liveness heartbeats, Raft ticks, closed
// timestamps); unlike ops/s they hardly depend on how loaded the machine
// is, which is what a profile-driven change is measured by:
//
//	go test -run '^$' -bench 'BenchmarkLeaseRead|BenchmarkWrite' -benchmem -benchtime 3000x ./bench/
//	go test -run '^$' -bench BenchmarkLeaseRead -benchtime 20000x -cpuprofile /tmp/cpu.out ./bench/
//
// The cluster is plaintext (TLS would add the same record costs to every
// change) with a real node's Raft timing (50 ms ticks), as
// TestProfileInProcess uses.

// BenchmarkLeaseRead: a point read served by the leaseholder under its
// lease (no Raft round trip), of 64 preloaded keys in turn.
func BenchmarkLeaseRead(b *testing.B) {
	db, keys := startRequestBench(b)
	ctx := context.Background()
	before := db.Stats()
	i := 0
	for b.Loop() {
		kv, err := db.Get(ctx, keys[i%len(keys)])
		if err != nil {
			b.Fatalf("get %q: %v", keys[i%len(keys)], err)
		}
		if len(kv.Value) != DefaultValueSize {
			b.Fatalf("get %q: %d-byte value, want %d", keys[i%len(keys)], len(kv.Value), DefaultValueSize)
		}
		i++
	}
	reportClientStats(b, db, before)
}

// BenchmarkWrite: a Put through the leaseholder (latches, evaluation, a
// Raft proposal, the wait for its local apply), of 64 keys in turn.
func BenchmarkWrite(b *testing.B) {
	db, keys := startRequestBench(b)
	ctx := context.Background()
	value := bytes.Repeat([]byte("w"), DefaultValueSize)
	before := db.Stats()
	i := 0
	for b.Loop() {
		if _, err := db.Put(ctx, keys[i%len(keys)], value); err != nil {
			b.Fatalf("put %q: %v", keys[i%len(keys)], err)
		}
		i++
	}
	reportClientStats(b, db, before)
}

// startRequestBench starts the cluster (one user range split into five,
// as TestClusterOptions' default), opens a client on every node, writes
// 64 keys and warms up (leases acquired, range cache filled) before the
// timer starts. Everything is closed when the benchmark ends.
func startRequestBench(b *testing.B) (*client.DB, [][]byte) {
	b.Helper()
	if testing.Short() {
		b.Skip("starts a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := benchClient(ctx, b, node.TestClusterOptions{RaftRTTMillisecond: 50, ElectionRTT: 10, HeartbeatRTT: 2})
	keys := make([][]byte, 64)
	value := bytes.Repeat([]byte("v"), DefaultValueSize)
	for i := range keys {
		keys[i] = KeyName(uint64(i)*(DefaultKeys/64), DefaultKeySize)
		if _, err := db.Put(ctx, keys[i], value); err != nil {
			b.Fatalf("preload %q: %v", keys[i], err)
		}
	}
	for range 4 {
		for _, k := range keys {
			if _, err := db.Get(ctx, k); err != nil {
				b.Fatalf("warm-up get %q: %v", k, err)
			}
			if _, err := db.Put(ctx, k, value); err != nil {
				b.Fatalf("warm-up put %q: %v", k, err)
			}
		}
	}
	b.ReportAllocs()
	return db, keys
}

// reportClientStats reports the client's redirects per measured
// operation: a measure of the direct path is only one if it stays near 0.
func reportClientStats(b *testing.B, db *client.DB, before client.Stats) {
	b.ReportMetric(float64(db.Stats().Redirects-before.Redirects)/float64(max(b.N, 1)), "redirects/op")
}

// benchClient starts an in-process test cluster with opts and opens a
// client on every node; both are closed when the benchmark ends.
func benchClient(ctx context.Context, b *testing.B, opts node.TestClusterOptions) *client.DB {
	b.Helper()
	tc, err := node.StartTestCluster(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tc.Close)
	db, err := client.Open(ctx, clusterHosts(tc), client.WithDialOptions(tc.ClientDialOptions()...))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)
	return db
}
