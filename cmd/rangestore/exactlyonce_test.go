package main

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestIncrementExactlyOnceUnderMerges runs concurrent Increments on four
// counters while their ranges are merged into their left neighbours and
// split off again, leases move, and one process is killed with SIGKILL and
// restarted. Every node holds back the reply to an applied Increment
// (RANGESTORE_TESTING_ACK_DELAY, above the router's per-attempt timeout),
// so the router retries writes that did apply, often after their range was
// frozen or merged away: a retry must be answered from the write's dedup
// record, never applied a second time. Each final counter must be at least
// its acknowledged increments and at most those plus the increments that
// failed (their outcome is unknown).
func TestIncrementExactlyOnceUnderMerges(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	began := time.Now()
	pc := newProcClusterB(t, 3, "RANGESTORE_TESTING_ACK_DELAY=2s")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Counter i is the first key of its own range; its left neighbour holds
	// the filler key before it. Merging the filler's range absorbs the
	// counter's range; splitting at the counter brings it back (as a new
	// range).
	const n = 4
	counter := func(i int) string { return fmt.Sprintf("x%d-counter", i) }
	filler := func(i int) string { return fmt.Sprintf("x%d-a", i) }
	var splitKeys [][]byte
	for i := 0; i < n; i++ {
		splitKeys = append(splitKeys, []byte(counter(i)))
	}
	if !waitUntil(60*time.Second, func() bool {
		ictx, c := context.WithTimeout(ctx, 10*time.Second)
		defer c()
		_, err := rspb.NewAdminClient(pc.Conn(0)).Init(ictx, &rspb.InitRequest{SplitKeys: splitKeys})
		return err == nil
	}) {
		t.Fatal("init did not succeed")
	}
	admin := func(i int) rspb.AdminClient { return rspb.NewAdminClient(pc.Conn(i)) }
	var down atomic.Int32 // index+1 of the killed process (0 = none)
	live := func(i int) int {
		for d := 0; d < 3; d++ {
			if j := (i + d) % 3; int(down.Load()) != j+1 {
				return j
			}
		}
		return 0
	}
	t.Logf("cluster initialized: %s", time.Since(began).Round(time.Millisecond))
	var acked, failed [n]atomic.Int64
	var errMu sync.Mutex
	errCodes := map[codes.Code]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 12; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				i := (w + j) % n
				actx, c := context.WithTimeout(ctx, 20*time.Second)
				_, err := pc.KV(live(w+j)).Increment(actx, &rspb.IncrementRequest{Key: []byte(counter(i)), Delta: 1})
				c()
				if err != nil {
					failed[i].Add(1)
					errMu.Lock()
					errCodes[status.Code(err)]++
					errMu.Unlock()
				} else {
					acked[i].Add(1)
				}
			}
		}()
	}

	// One kill -9 and restart while the merges below run.
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	victim := rng.Intn(3)
	faultDone := make(chan struct{})
	go func() {
		defer close(faultDone)
		select {
		case <-time.After(5 * time.Second):
		case <-stop:
			return
		}
		down.Store(int32(victim + 1))
		pc.kill(victim)
		t.Logf("killed process %d", victim)
		select {
		case <-time.After(3 * time.Second):
		case <-stop:
		}
		if err := pc.Start(victim); err != nil {
			t.Errorf("restarting process %d: %v", victim, err)
			return
		}
		down.Store(0)
		t.Logf("restarted process %d", victim)
	}()

	// Merges, splits and lease transfers until the deadline.
	var merges, splits, transfers int
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		i := rng.Intn(n)
		via := live(rng.Intn(3))
		// No merge while another one is unfinished (its range frozen, the
		// merge queue finishing it): if its left side is merged away, the
		// freeze is rolled back at once by a node that applied that merge,
		// but one restarted by the kill -9 since may know nothing of it and
		// wait for the freeze timeout (a minute).
		octx, c := context.WithTimeout(ctx, 5*time.Second)
		rs, err := admin(via).Ranges(octx, &rspb.RangesRequest{})
		c()
		unfinished := err != nil
		for _, r := range rs.GetRanges() {
			unfinished = unfinished || r.FrozenInto != 0
		}
		if !unfinished {
			octx, c = context.WithTimeout(ctx, 15*time.Second)
			if _, err := admin(via).MergeRange(octx, &rspb.MergeRangeRequest{Key: []byte(filler(i))}); err == nil {
				merges++
			}
			c()
		}
		// Let the retries of increments acknowledged late reach the
		// merged range, then split the counter off again.
		time.Sleep(time.Duration(300+rng.Intn(700)) * time.Millisecond)
		octx, c = context.WithTimeout(ctx, 5*time.Second)
		if _, err := admin(via).SplitRange(octx, &rspb.SplitRangeRequest{Key: []byte(counter(i))}); err == nil {
			splits++
		}
		c()
		octx, c = context.WithTimeout(ctx, 5*time.Second)
		if rs, err := admin(via).Ranges(octx, &rspb.RangesRequest{}); err == nil && len(rs.Ranges) > 0 {
			r := rs.Ranges[rng.Intn(len(rs.Ranges))]
			if keys.IsUserKey(r.RangeDescriptor.GetStartKey()) {
				target := uint64(rng.Intn(3) + 1)
				if _, err := admin(via).TransferLease(octx, &rspb.TransferLeaseRequest{RangeId: r.RangeDescriptor.RangeId, TargetNodeId: target}); err == nil {
					transfers++
				}
			}
		}
		c()
	}
	close(stop)
	wg.Wait()
	<-faultDone
	if !pc.Running(victim) {
		pc.start(victim)
	}
	t.Logf("workers stopped: %s; failed increments by code: %v", time.Since(began).Round(time.Millisecond), errCodes)

	for i := 0; i < n; i++ {
		var got int64
		var lastErr error
		if !waitUntil(30*time.Second, func() bool {
			gctx, c := context.WithTimeout(ctx, 5*time.Second)
			defer c()
			resp, err := pc.KV(i%3).Get(gctx, &rspb.GetRequest{Key: []byte(counter(i))})
			if lastErr = err; err != nil {
				return false
			}
			got, err = strconv.ParseInt(string(resp.GetKv().GetValue()), 10, 64)
			return err == nil || !resp.Found
		}) {
			for j := 0; j < 3; j++ {
				out, _ := pc.cli("range", "list", "--verbose", "--host", pc.addrs[j])
				t.Logf("ranges on process %d:\n%s", j, out)
			}
			t.Fatalf("could not read %s: %v", counter(i), lastErr)
		}
		a, f := acked[i].Load(), failed[i].Load()
		t.Logf("%s: %d (acknowledged %d, failed %d)", counter(i), got, a, f)
		if got < a || got > a+f {
			t.Errorf("%s is %d: %d increments were acknowledged and %d failed, so it must be in [%d, %d]: an increment applied twice or an acknowledged one was lost",
				counter(i), got, a, f, a, a+f)
		}
	}
	t.Logf("%d merges, %d splits, %d lease transfers", merges, splits, transfers)
	if merges < 3 {
		t.Errorf("only %d merges happened: the test did not exercise merges", merges)
	}
}
