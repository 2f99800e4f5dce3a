package bench

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/ranges"
)

// BenchmarkWriteParallel is the writes cell in miniature, in one process:
// 128 writers Put uniformly over the 10,000-key space of an in-process
// 3-node plaintext cluster with 64 user ranges and a default Store's
// engine tuning and Raft timing (ranges.DefaultRTTMillisecond, the ticks
// `rangestore start` uses), through client/ to the leaseholders. Besides
// allocs/op it reports cpu-µs/op: the process's user+system CPU time
// (getrusage) per write, client and all three nodes together. It is the
// figure bench/compare's BenchmarkCeilingPut reports for raw Dragonboat
// with the same engine tuning; on a machine whose cores the cell
// saturates, throughput is bounded by cores / cpu-µs per op, whatever
// else runs:
//
//	go test -run '^$' -bench BenchmarkWriteParallel -benchmem -benchtime 20000x ./bench/
//	WRITE_LOOP_CPUPROFILE=/tmp/rs.cpu go test … (a profile of the measured loop only)
func BenchmarkWriteParallel(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{InitialSplits: 63,
		RaftRTTMillisecond: ranges.DefaultRTTMillisecond, ElectionRTT: ranges.DefaultElectionRTT, HeartbeatRTT: ranges.DefaultHeartbeatRTT})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tc.Close)
	db, err := client.Open(ctx, clusterHosts(tc), client.WithDialOptions(tc.ClientDialOptions()...))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)
	value := bytes.Repeat([]byte("w"), DefaultValueSize)
	// Warm-up: a write to every 10th key (every range), filling the range
	// cache and acquiring the leases.
	for i := uint64(0); i < DefaultKeys; i += 10 {
		if _, err := db.Put(ctx, KeyName(i, DefaultKeySize), value); err != nil {
			b.Fatalf("warm-up put: %v", err)
		}
	}
	before := db.Stats()
	var seed atomic.Uint64
	b.SetParallelism(max(1, 128/runtime.GOMAXPROCS(0))) // 128 writers
	b.ReportAllocs()
	stopProfile := loopCPUProfile(b)
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(seed.Add(1), 7))
		for pb.Next() {
			k := KeyName(rng.Uint64N(DefaultKeys), DefaultKeySize)
			if _, err := db.Put(ctx, k, value); err != nil {
				b.Errorf("put %q: %v", k, err)
				return
			}
		}
	})
	b.StopTimer()
	stopProfile()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(time.Microsecond)/float64(max(b.N, 1)), "cpu-µs/op")
	reportClientStats(b, db, before)
}

// loopCPUProfile starts a CPU profile of the measured loop alone (not the
// cluster's start and warm-up) into the file $WRITE_LOOP_CPUPROFILE, if set;
// the returned function stops it.
func loopCPUProfile(b *testing.B) func() {
	path := os.Getenv("WRITE_LOOP_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

// processCPU is the process's user+system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
