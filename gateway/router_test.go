package gateway

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// rtNode is a one-node cluster for router tests: it resolves only itself
// (n1), and its store serves meta scans from one record and gets on r3.
type rtNode struct {
	meta     *rspb.RangeDescriptor
	record   *rspb.RangeDescriptor // the meta record of the user range
	metaHits atomic.Int64
	addrs    map[uint64]string // other nodes the router can resolve
	// gateways: the gateway_node_id of each batch served (r3's only).
	gateways []uint64
}

func (n *rtNode) NodeAddress(nodeID uint64) (string, bool) {
	a, ok := n.addrs[nodeID]
	return a, ok
}
func (n *rtNode) MetaRange() *rspb.RangeDescriptor { return n.meta }
func (n *rtNode) NodeID() uint64                   { return 1 }

func (n *rtNode) Send(_ context.Context, req *rspb.RangeRequest) *rspb.RangeResponse {
	switch req.RangeId {
	case n.meta.RangeId:
		n.metaHits.Add(1)
		b, _ := proto.Marshal(n.record)
		kv := &rspb.KeyValue{Key: keys.MetaKey(n.record.EndKey), Value: b}
		return &rspb.RangeResponse{Responses: []*rspb.ResponseUnion{{Value: &rspb.ResponseUnion_Scan{Scan: &rspb.ScanResponse{Kvs: []*rspb.KeyValue{kv}}}}}}
	case n.record.RangeId:
		n.gateways = append(n.gateways, req.GatewayNodeId)
		return &rspb.RangeResponse{Responses: []*rspb.ResponseUnion{{Value: &rspb.ResponseUnion_Get{Get: &rspb.GetResponse{}}}}}
	}
	return &rspb.RangeResponse{Error: &rspb.RangeError{Code: rspb.RangeError_RANGE_NOT_FOUND, Message: "not here"}}
}

// TestRouterDropsDescriptorWithUnknownNode: a cached descriptor naming a
// node the router cannot resolve (a forged meta record, since removed) is
// dropped and meta is read again, instead of retrying the unknown node
// until the deadline.
func TestRouterDropsDescriptorWithUnknownNode(t *testing.T) {
	n := &rtNode{
		meta:   &rspb.RangeDescriptor{RangeId: 1, StartKey: keys.KeyMin, EndKey: keys.SystemStart, Generation: 1, Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}},
		record: &rspb.RangeDescriptor{RangeId: 3, StartKey: keys.UserPrefix, EndKey: keys.KeyMax, Generation: 1, Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}},
	}
	r := NewRouter(n, n, nil, nil)
	defer r.Close()
	forged := &rspb.RangeDescriptor{RangeId: 3, StartKey: keys.UserPrefix, EndKey: keys.KeyMax, Generation: 999,
		Replicas: []*rspb.ReplicaDescriptor{{NodeId: 9, ReplicaId: 9}}}
	r.cache.insert(forged)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := r.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.UserKey([]byte("A"))}}}})
	if err != nil {
		t.Fatalf("get through a cache holding a descriptor with unknown node n9: %v (after %s)", err, time.Since(start).Round(time.Millisecond))
	}
	if d := r.cache.lookup(keys.UserKey([]byte("A")), false); d == nil || d.Generation != 1 {
		t.Fatalf("cache holds %v, want the meta record (generation 1)", d)
	}
	if n.metaHits.Load() == 0 {
		t.Fatalf("meta was not read again")
	}

	// A meta record naming an unknown node is not cached and the error
	// names the node.
	n.record = forged
	r2 := NewRouter(n, n, nil, nil)
	defer r2.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	_, err = r2.Send(ctx2, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.UserKey([]byte("A"))}}}})
	if err == nil || !strings.Contains(err.Error(), "n9") {
		t.Fatalf("forged meta record: got %v, want an error naming n9", err)
	}
	if d := r2.cache.lookup(keys.UserKey([]byte("A")), false); d != nil {
		t.Fatalf("descriptor with an unknown node was cached: %v", d)
	}
}

// TestRouterDropsDeniedDescriptorWithDownNode: a cached descriptor of a
// range that was merged away, whose replicas either deny it or sit on a
// stopped node, is dropped and meta read again. Before, the router kept
// retrying it from the cache until the deadline (a stress run's split
// after a merge, with the third node stopped).
func TestRouterDropsDeniedDescriptorWithDownNode(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	_ = l.Close() // nothing listens there: connection refused
	n := &rtNode{
		meta:   &rspb.RangeDescriptor{RangeId: 1, StartKey: keys.KeyMin, EndKey: keys.SystemStart, Generation: 1, Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}},
		record: &rspb.RangeDescriptor{RangeId: 3, StartKey: keys.UserPrefix, EndKey: keys.KeyMax, Generation: 4, Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}},
		addrs:  map[uint64]string{2: down},
	}
	r := NewRouter(n, n, nil, nil)
	defer r.Close()
	// r7 was merged into r3: n1 denies it, n2 is stopped.
	r.cache.insert(&rspb.RangeDescriptor{RangeId: 7, StartKey: keys.UserKey([]byte("M")), EndKey: keys.KeyMax, Generation: 3,
		Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}, {NodeId: 2, ReplicaId: 2}}})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := r.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.UserKey([]byte("P"))}}}}); err != nil {
		t.Fatalf("get through a cache holding merged-away r7 (n1 denies it, n2 is down): %v (after %s)", err, time.Since(start).Round(time.Millisecond))
	}
	if d := r.cache.lookup(keys.UserKey([]byte("P")), false); d == nil || d.RangeId != 3 {
		t.Fatalf("cache holds %v, want r3 from meta", d)
	}
}

// Large requests get longer tries (and twice that after one ran out of
// time); small ones keep the fixed bound.
func TestAttemptTimeoutFor(t *testing.T) {
	for _, c := range []struct {
		timedOut, size int
		want           time.Duration
	}{
		{0, 100, attemptTimeout},
		{5, 100, attemptTimeout},
		{3, attemptBytes - 1, attemptTimeout},
		{0, attemptBytes, 2250 * time.Millisecond},
		{0, 1 << 20, 4500 * time.Millisecond},
		{1, 1 << 20, 9 * time.Second},
		{4, 1 << 20, 9 * time.Second},
	} {
		if got := attemptTimeoutFor(c.timedOut, c.size); got != c.want {
			t.Errorf("attemptTimeoutFor(%d timed out, %d bytes) = %v, want %v", c.timedOut, c.size, got, c.want)
		}
	}
}

// TestRouterStampsGateway: every batch the router sends carries its node's
// ID as the gateway (the leaseholder counts requests per gateway for
// follow-the-workload); a batch that already names one keeps it.
func TestRouterStampsGateway(t *testing.T) {
	n := &rtNode{
		meta:   &rspb.RangeDescriptor{RangeId: 1, StartKey: keys.KeyMin, EndKey: keys.SystemStart, Generation: 1, Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}},
		record: &rspb.RangeDescriptor{RangeId: 3, StartKey: keys.UserPrefix, EndKey: keys.KeyMax, Generation: 1, Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}},
	}
	r := NewRouter(n, n, nil, nil)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 2; i++ {
		if _, err := r.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.UserKey([]byte("A"))}}}}); err != nil {
			t.Fatal(err)
		}
	}
	desc := r.cache.lookup(keys.UserKey([]byte("A")), false)
	if _, err := r.sendToRange(ctx, desc, &rspb.RangeRequest{RangeId: 3, GatewayNodeId: 7,
		Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.UserKey([]byte("A"))}}}}}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(n.gateways); got != "[1 1 7]" {
		t.Fatalf("gateways seen by r3: %s, want [1 1 7]", got)
	}
}

// locNode resolves every node and knows their localities (region, zone).
type locNode struct {
	rtNode
	loc map[uint64][]*rspb.LocalityTier
}

func (n *locNode) NodeAddress(uint64) (string, bool) { return "127.0.0.1:1", true }
func (n *locNode) NodeLocality(id uint64) ([]*rspb.LocalityTier, bool) {
	l, ok := n.loc[id]
	return l, ok
}

// TestFollowerOrder: follower reads try this node's replica, then the
// replicas sharing most locality tiers with it, the last known leaseholder
// last among equals; without localities, descriptor order with the
// leaseholder last.
func TestFollowerOrder(t *testing.T) {
	tiers := func(region, zone string) []*rspb.LocalityTier {
		return []*rspb.LocalityTier{{Key: "region", Value: region}, {Key: "zone", Value: zone}}
	}
	n := &locNode{loc: map[uint64][]*rspb.LocalityTier{
		1: tiers("eu", "a"), 2: tiers("us", "a"), 3: tiers("eu", "b"), 4: tiers("eu", "a"), 5: tiers("eu", "b"),
	}}
	desc := &rspb.RangeDescriptor{RangeId: 9}
	for _, id := range []uint64{2, 3, 1, 5, 4} {
		desc.Replicas = append(desc.Replicas, &rspb.ReplicaDescriptor{NodeId: id})
	}
	r := NewRouter(n, n, nil, nil)
	defer r.Close()
	r.setLeader(9, 3)
	if got := fmt.Sprint(r.followerOrder(desc)); got != "[1 4 5 3 2]" {
		t.Errorf("with localities: %s, want [1 4 5 3 2] (self, same zone, same region with the leaseholder n3 last, other region)", got)
	}
	plain := &rtNode{}
	r2 := NewRouter(plain, plain, nil, nil)
	defer r2.Close()
	r2.setLeader(9, 2)
	if got := fmt.Sprint(r2.followerOrder(desc)); got != "[1 3 5 4 2]" {
		t.Errorf("without localities: %s, want [1 3 5 4 2]", got)
	}
}
