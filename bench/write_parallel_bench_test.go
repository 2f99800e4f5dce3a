package bench

import (
	"bytes"
	"context"
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
	db := benchClient(ctx, b, node.TestClusterOptions{InitialSplits: 63,
		RaftRTTMillisecond: ranges.DefaultRTTMillisecond, ElectionRTT: ranges.DefaultElectionRTT, HeartbeatRTT: ranges.DefaultHeartbeatRTT})
	value := bytes.Repeat([]byte("w"), DefaultValueSize)
	var before client.Stats
	BenchParallelPuts(b, value, func(ctx context.Context, k, v []byte) error {
		_, err := db.Put(ctx, k, v)
		return err
	}, func() { before = db.Stats() })
	reportClientStats(b, db, before)
}
