package main

import (
	"bytes"
	"testing"

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
	bench.BenchParallelPuts(b, bytes.Repeat([]byte("w"), bench.DefaultValueSize), c.Put, nil)
}
