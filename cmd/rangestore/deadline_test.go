package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestProcessClusterShortDeadlineWrites (issue 9, item 8): `start` runs
// 200 ms Raft ticks; a write whose client deadline is shorter than a tick
// must still succeed when the write itself fits in it (it takes a few ms).
// The Raft proposal timeout used to be the remaining client deadline, which
// Dragonboat refuses below one tick: every such write failed.
func TestProcessClusterShortDeadlineWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pc := newProcCluster(t, 3)
	pc.initCluster()
	// One key per user range (splits at C, O, b, n): through any node, some
	// are served locally and some forwarded to another leaseholder.
	ks := []string{"Apple", "Dragon", "Pebble", "cherry", "raft"}

	// Warm-up with generous deadlines: elections, leases, connections.
	deadline := time.Now().Add(60 * time.Second)
	for i := range pc.addrs {
		for _, k := range ks {
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := pc.KV(i).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("warm")})
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("warm-up put %s through n%d: %v", k, i, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}

	// 10 writes per node and deadline. A write takes a few ms; on a loaded
	// machine some still miss 50 ms (a slow fsync, a descheduled process:
	// a CI run beside other test runs had rounds of 4/10 and 6/10, and one
	// beside a stress run and a second CI run 18/50 over five rounds), so a
	// round passes with 7 of 10 and a node gets up to 5 rounds; failing
	// that, a quarter of all its writes must have succeeded. Before the fix
	// every one of them failed: this is not a latency test (bench/ has
	// those), it checks that a deadline below two Raft ticks is usable.
	const attempts, minOK, rounds = 10, 7, 5
	for _, d := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond} {
		for i := range pc.addrs {
			total := 0
			for r := 1; r <= rounds; r++ {
				ok := shortDeadlineRound(t, pc, ks, i, d, r, attempts)
				total += ok
				if ok >= minOK {
					break
				}
				if r == rounds && 4*total < rounds*attempts {
					t.Errorf("deadline %v through process %d: no round had %d/%d writes succeed, and only %d of all %d did (want >= a quarter)", d, i, minOK, attempts, total, rounds*attempts)
				}
			}
		}
	}
}

// shortDeadlineRound writes through process i with deadline d and returns
// how many writes succeeded; each acknowledged write must read back.
func shortDeadlineRound(t *testing.T, pc *procCluster, ks []string, i int, d time.Duration, round, attempts int) int {
	t.Helper()
	ok := 0
	var lat []time.Duration
	var errs []string
	for a := 0; a < attempts; a++ {
		k := ks[a%len(ks)]
		v := fmt.Sprintf("d%d-n%d-r%d-%d", d.Milliseconds(), i, round, a)
		ctx, cancel := context.WithTimeout(context.Background(), d)
		start := time.Now()
		_, err := pc.KV(i).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte(v)})
		took := time.Since(start)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v after %v", k, status.Code(err), took.Round(time.Millisecond)))
			continue
		}
		ok++
		lat = append(lat, took)
		// The acknowledged write is there.
		gctx, gcancel := context.WithTimeout(context.Background(), 5*time.Second)
		g, err := pc.KV((i+1)%3).Get(gctx, &rspb.GetRequest{Key: []byte(k)})
		gcancel()
		if err != nil || string(g.GetKv().GetValue()) != v {
			t.Fatalf("get %s after a %v write through process %d: %v %v, want %s", k, d, i, g, err, v)
		}
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	t.Logf("deadline %v through process %d, round %d: %d/%d writes succeeded, latencies %v; failures: %s",
		d, i, round, ok, attempts, lat, strings.Join(errs, "; "))
	return ok
}
