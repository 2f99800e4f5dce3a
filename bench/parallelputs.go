package bench

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchParallelPuts is the measured loop of the in-process write
// benchmarks (BenchmarkWriteParallel here, BenchmarkCeilingPut in
// bench/compare), so both measure the same thing: it warms up with a put
// to every 10th key of the default key space (every range or shard), then
// 128 writers put value under uniformly chosen keys until b.N puts are
// done. Besides allocs/op it reports cpu-µs/op, the process's user+system
// CPU time (getrusage) over the loop per put; with $WRITE_LOOP_CPUPROFILE
// set it writes a CPU profile of the loop alone (not the cluster's start
// and warm-up) to that file. warm, if not nil, runs after the warm-up.
func BenchParallelPuts(b *testing.B, value []byte, put func(ctx context.Context, key, value []byte) error, warm func()) {
	b.Helper()
	ctx := context.Background()
	for i := uint64(0); i < DefaultKeys; i += 10 {
		if err := put(ctx, KeyName(i, DefaultKeySize), value); err != nil {
			b.Fatalf("warm-up put: %v", err)
		}
	}
	if warm != nil {
		warm()
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
			k := KeyName(rng.Uint64N(DefaultKeys), DefaultKeySize)
			if err := put(ctx, k, value); err != nil {
				b.Errorf("put %q: %v", k, err)
				return
			}
		}
	})
	b.StopTimer()
	stopProfile()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(time.Microsecond)/float64(max(b.N, 1)), "cpu-µs/op")
}

// loopCPUProfile starts the loop's CPU profile if $WRITE_LOOP_CPUPROFILE
// is set; the returned function stops it.
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
