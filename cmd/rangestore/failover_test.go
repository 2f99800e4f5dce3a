package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// BenchmarkLeaseholderKillFailover measures unavailability after kill -9 of
// a leaseholder on a 3-process cluster with default settings: writers go
// through the surviving nodes; the figure is the time from the kill to the
// first write to that range that succeeds. Each iteration kills the current
// leaseholder of the range, measures, restarts it and waits until a write
// succeeds and the range has a valid lease: the previous victim may still be
// rejoining (its Raft log behind) when the next one is killed, so a trial
// can need the restarted node's vote (the tail before issue 14's rafttls
// fix: its peers' connections to its old process failed late and tripped
// Dragonboat's circuit breaker). Run: make bench-failover (or
// go test -run '^$' -bench LeaseholderKillFailover -benchtime 20x ./cmd/rangestore).
//
// With FAILOVER_TIMELINE=1 the processes log at debug level and each trial
// logs its timeline (failoverTimeline): the benchmark's write attempts, and
// from the survivors' logs the Raft leader changes of the meta, system and
// user ranges, their liveness heartbeat failures, the epoch increment of the
// victim (with when its record expired) and the lease proposals.
func BenchmarkLeaseholderKillFailover(b *testing.B) {
	timeline := os.Getenv("FAILOVER_TIMELINE") != ""
	var args []string
	if timeline {
		args = []string{"--log-level", "debug"}
	}
	pc := newProcClusterArgs(b, 3, args)
	pc.initCluster()
	clients := make([]rspb.KVClient, 3)
	admins := make([]rspb.AdminClient, 3)
	for i, a := range pc.addrs {
		c, err := pc.Dial(a)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i], admins[i] = rspb.NewKVClient(c), rspb.NewAdminClient(c)
	}
	const key = "raft" // user range [n, Max)
	put := func(i int, d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		_, err := clients[i].Put(ctx, &rspb.PutRequest{Key: []byte(key), Value: []byte("x")})
		return err
	}
	// holder returns the node index holding a valid lease of key's range,
	// and the range's ID.
	holder := func() (int, uint64, error) {
		for i := range pc.addrs {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			r, err := admins[i].Ranges(ctx, &rspb.RangesRequest{})
			cancel()
			if err != nil {
				continue
			}
			for _, ri := range r.Ranges {
				d := ri.RangeDescriptor
				if string(d.StartKey) <= "u"+key && "u"+key < string(d.EndKey) && ri.LeaseValid {
					return pc.indexOfNodeID(ri.Lease.NodeId), d.RangeId, nil
				}
			}
		}
		return -1, 0, fmt.Errorf("no valid lease found")
	}
	var gaps []time.Duration
	var details []string // per trial, with the system leases the victim held
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		// Healthy: a write succeeds and the lease is known.
		var h int
		var rangeID uint64
		deadline := time.Now().Add(60 * time.Second)
		for {
			err := put(0, 2*time.Second)
			if err == nil {
				if h, rangeID, err = holder(); err == nil {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("cluster not healthy: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		survivor := (h + 1) % 3
		// Did the victim also hold the meta/system (expiration) leases?
		sys := ""
		if r, err := admins[survivor].Ranges(context.Background(), &rspb.RangesRequest{}); err == nil {
			for _, ri := range r.Ranges {
				if id := ri.RangeDescriptor.GetRangeId(); id <= 2 && pc.indexOfNodeID(ri.Lease.GetNodeId()) == h {
					sys += fmt.Sprintf("r%d", id)
				}
			}
		}
		b.StartTimer()
		killed := time.Now()
		pc.kill(h)
		var attempts []failoverAttempt
		for {
			start := time.Now()
			err := put(survivor, time.Second)
			if timeline {
				attempts = append(attempts, failoverAttempt{start: start, end: time.Now(), err: err})
			}
			if err == nil {
				break
			}
			if time.Since(killed) > 60*time.Second {
				b.Fatalf("no write succeeded within 60 s of killing the leaseholder")
			}
		}
		gap := time.Since(killed)
		b.StopTimer()
		gaps = append(gaps, gap.Round(time.Millisecond))
		details = append(details, fmt.Sprintf("%v%s", gap.Round(time.Millisecond), map[bool]string{true: "(+" + sys + ")", false: ""}[sys != ""]))
		b.Logf("trial %d: killed leaseholder (process %d), writes resumed after %v", it, h, gap.Round(time.Millisecond))
		if timeline {
			var logs []string
			for i := range pc.addrs {
				if i != h {
					logs = append(logs, pc.Log(i, 4<<20))
				}
			}
			b.Logf("trial %d timeline (ms after the kill; victim held system leases: %q):\n%s", it, sys,
				failoverTimeline(killed, attempts, rangeID, survivorIndexes(h), logs))
		}
		pc.start(h)
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	pct := func(p float64) time.Duration { return gaps[min(len(gaps)-1, int(p*float64(len(gaps))))] }
	b.ReportMetric(float64(pct(0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(pct(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(float64(gaps[len(gaps)-1].Milliseconds()), "max-ms")
	if f := os.Getenv("FAILOVER_REPORT"); f != "" {
		line := fmt.Sprintf("trials=%d p50=%v p99=%v max=%v trials=%v\n", len(gaps), pct(0.5), pct(0.99), gaps[len(gaps)-1], details)
		_ = os.WriteFile(f, []byte(line), 0o644)
	}
}
