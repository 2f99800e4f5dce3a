package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/timeutil"
)

// rangeOf returns the descriptor of the range holding client key k.
func rangeOf(tc *TestCluster, k string) *rspb.RangeDescriptor {
	ik := string(keys.UserKey([]byte(k)))
	for _, d := range tc.Init.Ranges {
		if string(d.StartKey) <= ik && ik < string(d.EndKey) {
			return d
		}
	}
	return nil
}

// leaseOf returns the lease of a range as node i sees it.
func leaseOf(tc *TestCluster, i int, rangeID uint64) *rspb.Lease {
	for _, ri := range tc.Node(i).Ranges() {
		if ri.RangeDescriptor.GetRangeId() == rangeID {
			return ri.Lease
		}
	}
	return nil
}

// leaseholderIndex waits until node 0 sees a lease of rangeID and returns
// the index of its holder.
func leaseholderIndex(t *testing.T, tc *TestCluster, rangeID uint64) int {
	t.Helper()
	var idx int
	timeutil.WaitFor(t, 10*time.Second, fmt.Sprintf("lease of r%d", rangeID), func() error {
		l := leaseOf(tc, 0, rangeID)
		if l.GetNodeId() == 0 {
			return fmt.Errorf("no lease")
		}
		idx = indexOfNode(tc, l.NodeId)
		return nil
	})
	return idx
}

func indexOfNode(tc *TestCluster, nodeID uint64) int {
	for i := 0; i < tc.NumNodes(); i++ {
		if n := tc.Node(i); n != nil && n.NodeID() == nodeID {
			return i
		}
	}
	return -1
}

func getReq(k string) *rspb.RangeRequest {
	return &rspb.RangeRequest{Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.UserKey([]byte(k))}}}}}
}

// TestStaleLeaseholderCannotServe: the leaseholder of a range is partitioned
// away; once its liveness record expires, the others take the lease and
// write; the old holder can neither serve a (stale) read nor land a write,
// and after the partition heals its attempts have left no trace.
func TestStaleLeaseholderCannotServe(t *testing.T) {
	net := fault.NewNetwork()
	tc := startCluster(t, TestClusterOptions{Network: net})
	ctx := ctxT(t)
	const k = "stale"
	if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	d := rangeOf(tc, k)
	var holder int
	timeutil.WaitFor(t, 10*time.Second, "lease of the range", func() error {
		l := leaseOf(tc, 0, d.RangeId)
		if l.GetSequence() == 0 || l.GetEpoch() == 0 {
			return fmt.Errorf("no epoch lease yet: %v", l)
		}
		holder = indexOfNode(tc, l.NodeId)
		return nil
	})
	old := tc.Node(holder)
	all := []int{0, 1, 2}
	net.Isolate(holder, all)
	other := (holder + 1) % 3

	// The majority side takes over once the holder's liveness expires.
	var p2 *rspb.PutResponse
	timeutil.WaitFor(t, 20*time.Second, "write on the majority side", func() error {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		p2, err = tc.KV(other).Put(c, &rspb.PutRequest{Key: []byte(k), Value: []byte("v2")})
		return err
	})
	newLease := leaseOf(tc, other, d.RangeId)
	if newLease.NodeId == old.NodeID() {
		t.Fatalf("lease still on the partitioned node: %v", newLease)
	}

	// The old holder refuses to serve: no stale v1.
	readReq := getReq(k)
	readReq.RangeId = d.RangeId
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	resp := old.Store().Send(c, readReq)
	cancel()
	if resp.Error == nil {
		t.Fatalf("partitioned old leaseholder served a read: %v", resp.Responses)
	}
	t.Logf("old leaseholder refused the read: %v %s", resp.Error.Code, resp.Error.Message)
	// And cannot land a write.
	c, cancel = context.WithTimeout(ctx, 2*time.Second)
	wresp := old.Store().Send(c, &rspb.RangeRequest{RangeId: d.RangeId, ProposalId: []byte("stale-write-0001"),
		Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: keys.UserKey([]byte(k)), Value: []byte("stale")}}}}})
	cancel()
	if wresp.Error == nil {
		t.Fatalf("partitioned old leaseholder landed a write: %v", wresp)
	}
	t.Logf("old leaseholder refused the write: %v %s", wresp.Error.Code, wresp.Error.Message)

	// Heal: the value is the majority's, everywhere.
	net.Heal()
	for i := 0; i < 3; i++ {
		timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("read via n%d after heal", tc.Node(i).NodeID()), func() error {
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			g, err := tc.KV(i).Get(c, &rspb.GetRequest{Key: []byte(k)})
			if err != nil {
				return err
			}
			if string(g.Kv.GetValue()) != "v2" || ranges.TSFromProto(g.Kv.Timestamp) != ranges.TSFromProto(p2.CommitTimestamp) {
				t.Fatalf("after heal n%d reads %q@%v, want v2@%v", tc.Node(i).NodeID(), g.Kv.GetValue(), g.Kv.GetTimestamp(), p2.CommitTimestamp)
			}
			return nil
		})
	}
}

// TestLeaseTransfer moves a lease with the Admin API under load and checks
// that Raft leadership follows it and that reads are served without
// ReadIndex.
func TestLeaseTransfer(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{HTTP: true})
	ctx := ctxT(t)
	const k = "moving"
	d := rangeOf(tc, k)
	stop := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				close(errs)
				return
			default:
			}
			c, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := tc.KV(i%3).Increment(c, &rspb.IncrementRequest{Key: []byte(k), Delta: 1})
			cancel()
			if err != nil {
				errs <- err
				close(errs)
				return
			}
		}
	}()
	admin := rspb.NewAdminClient(tc.Conn(0))
	for round := 0; round < 3; round++ {
		var target uint64
		timeutil.WaitFor(t, 10*time.Second, "current lease", func() error {
			l := leaseOf(tc, 0, d.RangeId)
			if l.GetSequence() == 0 {
				return fmt.Errorf("no lease")
			}
			for _, r := range d.Replicas {
				if r.NodeId != l.NodeId {
					target = r.NodeId
				}
			}
			return nil
		})
		// The target must be live; on a loaded machine a heartbeat can lag,
		// so retry until the deadline.
		timeutil.WaitFor(t, 15*time.Second, fmt.Sprintf("transfer to n%d", target), func() error {
			_, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: d.RangeId, TargetNodeId: target})
			return err
		})
		ti := indexOfNode(tc, target)
		timeutil.WaitFor(t, 10*time.Second, "leadership follows the lease", func() error {
			for _, ri := range tc.Node(ti).Ranges() {
				if ri.RangeDescriptor.GetRangeId() == d.RangeId {
					if ri.Lease.GetNodeId() != target || ri.LeaderNodeId != target {
						return fmt.Errorf("lease n%d, leader n%d, want n%d", ri.Lease.GetNodeId(), ri.LeaderNodeId, target)
					}
				}
			}
			return nil
		})
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Fatalf("increment during transfers: %v", err)
	}
	g, err := tc.KV(0).Get(ctx, &rspb.GetRequest{Key: []byte(k)})
	if err != nil || !g.Found {
		t.Fatalf("final get: %v %v", g, err)
	}
	t.Logf("value after 3 transfers under load: %s", g.Kv.Value)
}
