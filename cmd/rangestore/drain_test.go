package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestGracefulStopHandsOffLeases: SIGTERM of a node holding leases (the
// meta and system ranges' expiration leases and the user ranges' epoch
// leases) under load. Writers on a key of each user range write through the
// two surviving nodes; a range's unavailability is the longest time without
// a successful write to its key, from the last success before SIGTERM until
// a second after the process exited. Every trial restarts the node and
// moves the leases back to it. The worst range of the worst trial (p99 of
// the trials) must stay below 200 ms in the measurement run (`make
// bench-drain`: RANGESTORE_DRAIN_TRIALS=10, nothing else running). In the
// default run (3 trials, inside `make test`, where other packages' clusters
// share the 2 cores) the bound is 1 s: still half of what a stop without
// handoff costs (a lease expiration, 2 s or more), so the test fails
// without the handoff, but not because a loaded machine delayed one write.
func TestGracefulStopHandsOffLeases(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	trials, bound := 3, time.Second
	if s := os.Getenv("RANGESTORE_DRAIN_TRIALS"); s != "" {
		bound = 200 * time.Millisecond
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("RANGESTORE_DRAIN_TRIALS=%q: want a positive integer", s)
		}
		trials = n
	}
	pc := newProcCluster(t, 3)
	pc.initCluster()
	const victim = 2
	var victimID uint64
	for id := uint64(1); id <= 3; id++ {
		if pc.indexOfNodeID(id) == victim {
			victimID = id
		}
	}
	// One key in each user range (splits at C, O, b, n).
	userKeys := []string{"Apple", "Dragon", "Pebble", "cherry", "raft"}
	clients := make([]rspb.KVClient, 3)
	admins := make([]rspb.AdminClient, 3)
	for i, a := range pc.addrs {
		c, err := pc.Dial(a)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i], admins[i] = rspb.NewKVClient(c), rspb.NewAdminClient(c)
	}
	// giveLeasesToVictim moves every range's lease to the victim and waits
	// until the victim reports them all valid, and Raft leadership has
	// followed (what a drain measured here must move is then all on the
	// victim, and no leadership transfer is still under way).
	giveLeasesToVictim := func() {
		deadline := time.Now().Add(60 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			r, err := admins[victim].Ranges(ctx, &rspb.RangesRequest{})
			cancel()
			held := 0
			if err == nil {
				for _, ri := range r.Ranges {
					if ri.Lease.GetNodeId() == victimID && ri.LeaseValid {
						if ri.LeaderNodeId == victimID {
							held++
						}
						continue
					}
					id := ri.GetRangeDescriptor().GetRangeId()
					if id == 0 {
						continue // no data yet (just restarted)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					_, err = admins[0].TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: id, TargetNodeId: victimID})
					cancel()
				}
				if held == len(r.Ranges) && held == 7 {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("could not move the leases (and leadership) to n%d (holds %d): %v", victimID, held, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var worst []time.Duration
	for trial := 0; trial < trials; trial++ {
		if trial > 0 {
			pc.start(victim)
		}
		giveLeasesToVictim()
		// Writers: two per key (a slow write alone is no gap), through
		// the survivors.
		var (
			mu   sync.Mutex
			okAt = make([][]time.Time, len(userKeys))
			wg   sync.WaitGroup
		)
		stop := make(chan struct{})
		for k := range userKeys {
			for w := 0; w < 2; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						_, err := clients[(w+i)%2].Put(ctx, &rspb.PutRequest{Key: []byte(userKeys[k]), Value: []byte(fmt.Sprint(i))})
						cancel()
						if err == nil {
							mu.Lock()
							okAt[k] = append(okAt[k], time.Now())
							mu.Unlock()
						} else {
							time.Sleep(5 * time.Millisecond)
						}
					}
				}()
			}
		}
		// Load flows on every key before the stop.
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := 0
			for _, s := range okAt {
				if len(s) >= 5 {
					n++
				}
			}
			mu.Unlock()
			if n == len(userKeys) {
				break
			}
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("trial %d: writes do not flow before the stop", trial)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// A baseline: the longest gap of undisturbed writes over half a
		// second (how loaded the machine is).
		baseStart := time.Now()
		time.Sleep(500 * time.Millisecond)
		sigterm := time.Now()
		graceful := pc.Terminate(victim, 30*time.Second)
		exited := time.Now()
		// Keep writing a second past the exit (anything after the drain
		// that breaks writes shows here), and until every key has a
		// success after the exit.
		deadline = time.Now().Add(30 * time.Second)
		for {
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			n := 0
			for _, s := range okAt {
				if len(s) > 0 && s[len(s)-1].After(exited.Add(time.Second)) {
					n++
				}
			}
			mu.Unlock()
			if n == len(userKeys) || time.Now().After(deadline) {
				break
			}
		}
		close(stop)
		wg.Wait()
		var gaps []string
		var trialWorst, baseline time.Duration
		for k, s := range okAt {
			var prev time.Time
			var gap time.Duration
			for _, at := range s {
				if at.Before(sigterm) {
					if !prev.Before(baseStart) {
						baseline = max(baseline, at.Sub(prev))
					}
					prev = at
					continue
				}
				if d := at.Sub(prev); d > gap {
					gap = d
				}
				prev = at
			}
			if prev.Before(exited) {
				gap = time.Since(sigterm) // no success after the exit
			}
			gap = gap.Round(time.Millisecond)
			gaps = append(gaps, fmt.Sprintf("%s:%v", userKeys[k], gap))
			trialWorst = max(trialWorst, gap)
		}
		worst = append(worst, trialWorst)
		t.Logf("trial %d: SIGTERM -> exit %v (graceful %v); longest write gap per range %v; worst %v (baseline before SIGTERM %v)",
			trial, exited.Sub(sigterm).Round(time.Millisecond), graceful, gaps, trialWorst, baseline.Round(time.Millisecond))
		if !graceful {
			t.Errorf("trial %d: the node did not exit within 30 s of SIGTERM", trial)
		}
	}
	sorted := append([]time.Duration(nil), worst...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	p99 := sorted[len(sorted)-1] // max over ≤ 100 trials
	t.Logf("graceful stop unavailability over %d trials: %v; p50 %v, p99 (max) %v", trials, worst, sorted[len(sorted)/2], p99)
	if p99 >= bound {
		t.Fatalf("p99 write unavailability of a graceful stop is %v, want < %v", p99, bound)
	}
}
