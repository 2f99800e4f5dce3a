package node

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// TestAmbiguousWriteKeepsLatches: a write whose caller gave up while its
// proposal was still in the Raft log must keep its latches until the
// proposal's fate is known. Otherwise a second write on the same key is
// evaluated against state without the first, and both apply: two
// increments of 1 both answer 2 (a lost update), two conditional deletes of
// the same value both succeed (the porcupine violation of chaos seed 1715).
//
// The leaseholder is cut off from both followers for a moment (shorter
// than an election timeout, so its log survives and nobody else leads):
// the first increment is proposed and its caller's deadline passes; the
// second increment comes next. After the heal both are retried with their
// proposal IDs, which answers each one's applied result.
func TestAmbiguousWriteKeepsLatches(t *testing.T) {
	net := fault.NewNetwork()
	// Election timeout 50 ticks of 20 ms = 1 s: the partition below lasts
	// ~0.4 s, so the leader keeps leading and keeps its log.
	tc := startCluster(t, TestClusterOptions{Network: net, RaftRTTMillisecond: 20, ElectionRTT: 50, HeartbeatRTT: 2})
	ctx := ctxT(t)
	const k = "ambiguous-counter"
	if _, err := tc.KV(0).Increment(ctx, &rspb.IncrementRequest{Key: []byte(k), Delta: 1}); err != nil {
		t.Fatal(err)
	}
	d := rangeOf(tc, k)
	var holder int
	// The proposals must enter the leaseholder's own log: wait until it is
	// the Raft leader too (leadership follows the lease).
	waitFor(t, 20*time.Second, "epoch lease and Raft leadership of the range on one node", func() error {
		l := leaseOf(tc, 0, d.RangeId)
		if l.GetSequence() == 0 || l.GetEpoch() == 0 {
			return fmt.Errorf("no epoch lease yet: %v", l)
		}
		holder = indexOfNode(tc, l.NodeId)
		for _, ri := range tc.Node(holder).Ranges() {
			if ri.RangeDescriptor.GetRangeId() == d.RangeId && ri.LeaderNodeId != l.NodeId {
				return fmt.Errorf("lease on n%d, Raft leader n%d", l.NodeId, ri.LeaderNodeId)
			}
		}
		return nil
	})
	lh := tc.Node(holder)
	// A retry carries the proposal ID and the timestamp of the first try,
	// as the gateway's retries do (the dedup record is keyed by both).
	proposed := map[string]*rspb.Timestamp{}
	inc := func(id string, timeout time.Duration) *rspb.RangeResponse {
		c, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if proposed[id] == nil {
			proposed[id] = ranges.TSToProto(kv.Timestamp{WallTime: time.Now().UnixNano()})
		}
		return lh.Store().Send(c, &rspb.RangeRequest{RangeId: d.RangeId, ProposalId: []byte(id), Timestamp: proposed[id],
			Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: keys.UserKey([]byte(k)), Delta: 1}}}}})
	}
	// Warm: the leaseholder serves this range now.
	if r := inc("ambiguous-warm", 5*time.Second); r.Error != nil {
		t.Fatalf("warm-up increment: %v", r.Error)
	}

	all := []int{0, 1, 2}
	for _, i := range all {
		net.Isolate(i, all)
	}
	first := inc("ambiguous-first", 150*time.Millisecond)
	second := inc("ambiguous-second", 150*time.Millisecond)
	net.Heal()
	t.Logf("during the partition: first %v; second %v", first.Error, second.Error)
	if first.Error == nil || second.Error == nil {
		t.Fatalf("an increment committed without a quorum: %v / %v", first, second)
	}

	result := func(id string) int64 {
		var v int64
		waitFor(t, 20*time.Second, "retry of "+id, func() error {
			r := inc(id, 2*time.Second)
			if r.Error != nil {
				return fmt.Errorf("%v", r.Error)
			}
			v = r.Responses[0].GetIncrement().GetNewValue()
			return nil
		})
		return v
	}
	v1, v2 := result("ambiguous-first"), result("ambiguous-second")
	g := kvtGet(t, ctx, tc.KV(holder), k, nil)
	final := int64(0)
	if g.Found {
		var err error
		if final, err = strconv.ParseInt(string(g.Kv.Value), 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("first answered %d, second %d, final value %d", v1, v2, final)
	if v1 == v2 || final != 4 || v1 < 3 || v2 < 3 {
		t.Fatalf("two increments after 2 answered %d and %d, final value %d (want 3 and 4 in some order, final 4)", v1, v2, final)
	}
}
