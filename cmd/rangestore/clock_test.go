package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestProcessClockRatchetFailover (issue 9 item 2, acceptance): against
// three `rangestore start` processes, ratchet the clocks through the public
// API (reads with as_of = last commit + 490 ms) and the Internal API
// (RangeBatch with a far-future timestamp), then kill -9 a leaseholder: the
// writes to its range must resume through a survivor in a normal failover
// time. A pushed clock used to stretch this to ~100 s (HLC 100 s ahead), or
// forever (year 2255), since liveness and lease expirations are in HLC time.
func TestProcessClockRatchetFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const failoverBound = 15 * time.Second
	maxOff := leases.DefaultMaxOffset
	pc := newProcCluster(t, 3)
	pc.initCluster()
	kvs := make([]rspb.KVClient, 3)
	internals := make([]rspb.InternalClient, 3)
	admins := make([]rspb.AdminClient, 3)
	for i := range pc.addrs {
		kvs[i], internals[i], admins[i] = pc.KV(i), rspb.NewInternalClient(pc.NodeConn(i)), rspb.NewAdminClient(pc.Conn(i))
	}
	call := func(d time.Duration) (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), d)
	}
	// One key per user range (splits at C, O, b, n).
	userKeys := []string{"Apple", "Dragon", "Pebble", "cherry", "raft"}
	// offset: how far the leaseholders' HLCs run ahead of the (shared)
	// physical clock, from the commit timestamps of one write per range.
	offset := func() (time.Duration, error) {
		var worst time.Duration
		for _, k := range userKeys {
			ctx, cancel := call(5 * time.Second)
			p, err := kvs[0].Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("o")})
			cancel()
			if err != nil {
				return 0, fmt.Errorf("put %s: %w", k, err)
			}
			worst = max(worst, time.Duration(p.CommitTimestamp.WallTime-time.Now().UnixNano()))
		}
		return worst, nil
	}
	var off0 time.Duration
	timeutil.WaitFor(t, 30*time.Second, "writes to every user range", func() (err error) { off0, err = offset(); return err })

	// Public API: 300 reads at the allowed edge, 30 attackers over 3 nodes.
	const workers, perWorker = 30, 10
	edge := maxOff - 10*time.Millisecond
	start := time.Now()
	var wg sync.WaitGroup
	var refusedReads atomic.Int64
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			key := []byte(fmt.Sprintf("ratchet-%02d", w))
			for i := 0; i < perWorker; i++ {
				ctx, cancel := call(10 * time.Second)
				p, err := kvs[w%3].Put(ctx, &rspb.PutRequest{Key: key, Value: []byte("x")})
				if err == nil {
					asOf := &rspb.Timestamp{WallTime: p.CommitTimestamp.WallTime + int64(edge)}
					_, err = kvs[w%3].Get(ctx, &rspb.GetRequest{Key: key, AsOf: asOf})
				}
				cancel()
				if status.Code(err) == codes.InvalidArgument {
					refusedReads.Add(1) // beyond physical + max offset
				} else if err != nil {
					errs <- fmt.Errorf("attacker %d round %d: %w", w, i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	offReads, err := offset()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reads at commit+%v took %v (%d refused as beyond the bound); HLC offset before %v, after %v",
		workers*perWorker, edge, time.Since(start).Round(time.Millisecond), refusedReads.Load(), off0, offReads)

	// Internal API: far-future batch timestamps to every replica of every
	// user range.
	var descs []*rspb.RangeDescriptor
	{
		ctx, cancel := call(5 * time.Second)
		r, err := admins[0].Ranges(ctx, &rspb.RangesRequest{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, ri := range r.Ranges {
			descs = append(descs, ri.RangeDescriptor)
		}
	}
	far := &rspb.Timestamp{WallTime: 9e18}
	refused := 0
	for _, k := range userKeys {
		ik := keys.UserKey([]byte(k))
		for _, d := range descs {
			if string(d.StartKey) > string(ik) || string(ik) >= string(d.EndKey) {
				continue
			}
			for i := range internals {
				for _, req := range []*rspb.RangeRequest{
					{RangeId: d.RangeId, Timestamp: far, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: ik, Value: []byte("future")}}}}},
					{RangeId: d.RangeId, ReadTimestamp: far, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: ik}}}}},
				} {
					ctx, cancel := call(5 * time.Second)
					resp, err := internals[i].RangeBatch(ctx, req)
					cancel()
					if err == nil && resp.Error.GetCode() == rspb.RangeError_INVALID_ARGUMENT {
						refused++
					}
				}
			}
		}
	}
	offAll, err := offset()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the Internal calls (%d of %d refused): HLC offset %v", refused, 2*3*len(userKeys), offAll)
	if offReads > maxOff || offAll > maxOff {
		t.Errorf("clock offset after the attack: %v (public API), %v (plus Internal API); max offset %v", offReads, offAll, maxOff)
	}

	// kill -9 the leaseholder of "raft"'s range; write through a survivor.
	const key = "raft"
	holder := func() (int, error) {
		for i := range pc.addrs {
			ctx, cancel := call(time.Second)
			r, err := admins[i].Ranges(ctx, &rspb.RangesRequest{})
			cancel()
			if err != nil {
				continue
			}
			for _, ri := range r.Ranges {
				d := ri.RangeDescriptor
				if ik := string(keys.UserKey([]byte(key))); string(d.StartKey) <= ik && ik < string(d.EndKey) && ri.LeaseValid {
					return pc.indexOfNodeID(ri.Lease.NodeId), nil
				}
			}
		}
		return -1, fmt.Errorf("no valid lease of %q's range", key)
	}
	var h int
	timeutil.WaitFor(t, 30*time.Second, "a valid lease", func() (err error) { h, err = holder(); return err })
	survivor := (h + 1) % 3
	killed := time.Now()
	pc.kill(h)
	for {
		ctx, cancel := call(time.Second)
		_, err := kvs[survivor].Put(ctx, &rspb.PutRequest{Key: []byte(key), Value: []byte("after")})
		cancel()
		if err == nil {
			break
		}
		if time.Since(killed) > failoverBound {
			t.Fatalf("writes to %q's range still unavailable %v after kill -9 of its leaseholder (process %d): %v",
				key, failoverBound, h, err)
		}
	}
	gap := time.Since(killed)
	t.Logf("kill -9 of the leaseholder (process %d): writes resumed through process %d after %v", h, survivor, gap.Round(time.Millisecond))
}
