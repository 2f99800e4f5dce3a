package main

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

	"github.com/rangestore/rangestore/bench"
)

// BenchmarkCeilingPut is bench/ BenchmarkWriteParallel against the raw
// Dragonboat ceiling: 128 writers Put uniformly over the 10,000-key space
// of the 64-shard ceiling (three NodeHosts in this process, rangestore's
// engine tuning), reporting allocs/op and cpu-µs/op (the process's
// user+system CPU time per write):
//
//	go test -run '^$' -bench BenchmarkCeilingPut -benchmem -benchtime 20000x .
func BenchmarkCeilingPut(b *testing.B) {
	if testing.Short() {
		b.Skip("starts three NodeHosts")
	}
	c, err := startDragonboat(b.TempDir(), dbShards)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.close)
	ctx := context.Background()
	value := bytes.Repeat([]byte("w"), bench.DefaultValueSize)
	for i := uint64(0); i < bench.DefaultKeys; i += 10 {
		if err := c.Put(ctx, bench.KeyName(i, bench.DefaultKeySize), value); err != nil {
			b.Fatalf("warm-up put: %v", err)
		}
	}
	var seed atomic.Uint64
	b.SetParallelism(max(1, 128/runtime.GOMAXPROCS(0))) // 128 writers
	b.ReportAllocs()
	stopProfile := loopCPUProfile(b)
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(seed.Add(1), 7))
		for pb.Next() {
			k := bench.KeyName(rng.Uint64N(bench.DefaultKeys), bench.DefaultKeySize)
			if err := c.Put(ctx, k, value); err != nil {
				b.Errorf("put %q: %v", k, err)
				return
			}
		}
	})
	b.StopTimer()
	stopProfile()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(time.Microsecond)/float64(max(b.N, 1)), "cpu-µs/op")
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
