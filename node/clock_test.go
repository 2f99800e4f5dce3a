package node

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// clockOffsetGauge reads rangestore_clock_offset_seconds from node i's
// registry (ok=false when the gauge is missing).
func clockOffsetGauge(tc *TestCluster, i int) (time.Duration, bool) {
	mfs, err := tc.Node(i).Registry().Gather()
	if err != nil {
		return 0, false
	}
	for _, mf := range mfs {
		if mf.GetName() == "rangestore_clock_offset_seconds" && len(mf.GetMetric()) == 1 {
			return time.Duration(mf.GetMetric()[0].GetGauge().GetValue() * float64(time.Second)), true
		}
	}
	return 0, false
}

// clockRefusedJumps reads rangestore_clock_jumps_refused_total of node i.
func clockRefusedJumps(tc *TestCluster, i int) float64 {
	mfs, _ := tc.Node(i).Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() == "rangestore_clock_jumps_refused_total" && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// TestClockRatchetBounded (issue 9 item 2): client as_of timestamps at the
// allowed edge and an Internal.RangeBatch with a far-future timestamp must
// not move any node's HLC more than the max offset past its physical clock.
// 500 reads at "last commit + 490 ms" used to ratchet every node ahead by
// ~0.49 s per read, and one Internal call moved them to the year 2255.
func TestClockRatchetBounded(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})
	ctx := ctxT(t)
	maxOff := tc.Node(0).cfg.Clock.MaxOffset()

	// Sample every node's offset (gauge, and the HLC itself) during the attack.
	var mu sync.Mutex
	var maxGauge, maxHLC [3]time.Duration
	gaugeMissing := false
	sample := func() {
		mu.Lock()
		defer mu.Unlock()
		for i := 0; i < 3; i++ {
			g, ok := clockOffsetGauge(tc, i)
			if !ok {
				gaugeMissing = true
			}
			maxGauge[i] = max(maxGauge[i], g)
			c := tc.Node(i).cfg.Clock
			maxHLC[i] = max(maxHLC[i], time.Duration(c.Now().WallTime-c.PhysicalNow()))
		}
	}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	stopSampler := func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-sampled
		}
	}
	defer stopSampler()

	// 500 reads at the allowed edge: as_of = the last commit timestamp seen
	// + just under the max offset, 50 concurrent attackers over 3 gateways.
	const workers, perWorker = 50, 10
	edge := maxOff - 10*time.Millisecond
	attackStart := time.Now()
	var wg sync.WaitGroup
	var refusedReads atomic.Int64
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			kvc := tc.KV(w % 3)
			key := []byte(fmt.Sprintf("ratchet-%02d", w))
			for i := 0; i < perWorker; i++ {
				p, err := kvc.Put(ctx, &rspb.PutRequest{Key: key, Value: []byte("x")})
				if err != nil {
					errs <- fmt.Errorf("worker %d put %d: %w", w, i, err)
					return
				}
				asOf := &rspb.Timestamp{WallTime: p.CommitTimestamp.WallTime + int64(edge)}
				if _, err := kvc.Get(ctx, &rspb.GetRequest{Key: key, AsOf: asOf}); status.Code(err) == codes.InvalidArgument {
					// The commit timestamp was itself ahead of the clock
					// (timestamp cache low water): beyond the bound.
					refusedReads.Add(1)
				} else if err != nil {
					errs <- fmt.Errorf("worker %d get as_of %v: %w", w, asOf, err)
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
	attackDur := time.Since(attackStart)
	sample()
	mu.Lock()
	afterReads := maxHLC
	mu.Unlock()
	t.Logf("after %d reads at commit+%v (%v, %d refused as beyond the bound): max HLC-physical per node %v",
		workers*perWorker, edge, attackDur.Round(time.Millisecond), refusedReads.Load(), afterReads)

	// The internal path: a far-future batch timestamp, read timestamp and
	// as_of, sent to every replica of the range (one is the leaseholder).
	key := []byte("ratchet-00")
	var rangeID uint64
	for _, d := range tc.Init.Ranges {
		if k := keys.UserKey(key); string(d.StartKey) <= string(k) && string(k) < string(d.EndKey) {
			rangeID = d.RangeId
		}
	}
	far := &rspb.Timestamp{WallTime: 9e18}
	ik := keys.UserKey(key)
	attacks := []*rspb.RangeRequest{
		{RangeId: rangeID, Timestamp: far, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: ik, Value: []byte("y")}}}}},
		{RangeId: rangeID, Timestamp: far, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: ik}}}}},
		{RangeId: rangeID, ReadTimestamp: far, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: ik}}}}},
		{RangeId: rangeID, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: ik, AsOf: far}}}}},
	}
	refusedBefore := 0.0
	for i := 0; i < 3; i++ {
		refusedBefore += clockRefusedJumps(tc, i)
	}
	for i := 0; i < 3; i++ {
		ic := rspb.NewInternalClient(tc.Conn(i))
		for j, req := range attacks {
			resp, err := ic.RangeBatch(ctx, req)
			if err != nil {
				t.Errorf("n%d attack %d: rpc error %v", i+1, j, err)
				continue
			}
			if resp.Error == nil || resp.Error.Code != rspb.RangeError_INVALID_ARGUMENT {
				t.Errorf("n%d attack %d (far-future timestamp) not refused as INVALID_ARGUMENT: %v", i+1, j, resp)
			}
		}
	}
	// Internal timestamps at the edge are accepted but cannot ratchet: each
	// is bounded by the receiving node's physical clock + max offset.
	// The last few are up to a peer's allowance (its physical clock may run
	// a max offset ahead): waited for, not jumped to.
	for i := 0; i < 33; i++ {
		ahead := edge
		if i >= 30 {
			ahead = maxOff + edge
		}
		edgeTS := &rspb.Timestamp{WallTime: time.Now().UnixNano() + int64(ahead)}
		req := &rspb.RangeRequest{RangeId: rangeID, Timestamp: edgeTS, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: ik}}}}}
		if resp, err := rspb.NewInternalClient(tc.Conn(i%3)).RangeBatch(ctx, req); err != nil || resp.Error.GetCode() == rspb.RangeError_INVALID_ARGUMENT {
			t.Fatalf("internal read %v ahead: %v %v", ahead, resp.GetError(), err)
		}
	}
	// Let replies, heartbeats and writes spread whatever they carry.
	for i := 0; i < 5; i++ {
		if _, err := tc.KV(i%3).Put(ctx, &rspb.PutRequest{Key: key, Value: []byte("z")}); err != nil {
			t.Fatalf("put after the attack: %v", err)
		}
	}
	stopSampler()
	sample()
	refusedAfter := 0.0
	for i := 0; i < 3; i++ {
		refusedAfter += clockRefusedJumps(tc, i)
	}
	t.Logf("after the Internal calls: max HLC-physical per node %v (gauge %v); refused jumps %v -> %v",
		maxHLC, maxGauge, refusedBefore, refusedAfter)
	if gaugeMissing {
		t.Errorf("rangestore_clock_offset_seconds is not registered")
	}
	if refusedAfter-refusedBefore < float64(len(attacks)) {
		t.Errorf("rangestore_clock_jumps_refused_total rose by %v, want >= %d", refusedAfter-refusedBefore, len(attacks))
	}
	for i := 0; i < 3; i++ {
		if maxHLC[i] > maxOff || maxGauge[i] > maxOff {
			t.Errorf("n%d: HLC ran %v (gauge %v) ahead of its physical clock; max offset %v", i+1, maxHLC[i], maxGauge[i], maxOff)
		}
	}
}
