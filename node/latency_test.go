package node

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestClusterInterRegionLatency: three nodes in three regions with the
// global latency table. A write commits only after a Raft round trip to
// another region (at least the smallest round trip, 70 ms); a read sent by
// a client through a gateway in another region than the leaseholder's
// takes at least the round trip between the two; a read through the
// leaseholder's own node is not delayed (logged, not asserted).
func TestClusterInterRegionLatency(t *testing.T) {
	tab, err := fault.ParseLatencyTable(fault.GlobalLatencies)
	if err != nil {
		t.Fatal(err)
	}
	net := fault.NewNetwork()
	if err := net.SetLatency(tab); err != nil {
		t.Fatal(err)
	}
	regions := []string{"us-east", "eu-west", "ap-south"}
	var locs [][]*rspb.LocalityTier
	for _, r := range regions {
		locs = append(locs, []*rspb.LocalityTier{{Key: "region", Value: r}, {Key: "zone", Value: r + "-a"}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tc, err := StartTestCluster(ctx, TestClusterOptions{Nodes: 3, InitialSplits: 1, Network: net, Localities: locs,
		RaftRTTMillisecond: 50, ElectionRTT: 20, HeartbeatRTT: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	for i, l := range locs {
		if got := tc.Node(i).cfg.Locality; RegionOf(got) != RegionOf(l) {
			t.Fatalf("node %d has locality %v, want %v", i, got, l)
		}
	}
	key := []byte("latency-key")
	// The leaseholder of key's range, as its own replica sees it.
	lh := -1
	timeutil.WaitFor(t, 60*time.Second, "a leaseholder of the key's range", func() error {
		if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: key, Value: []byte("v0")}); err != nil {
			return err
		}
		for i := 0; i < tc.NumNodes(); i++ {
			r, err := rspb.NewAdminClient(tc.Conn(i)).Ranges(ctx, &rspb.RangesRequest{})
			if err != nil {
				return err
			}
			for _, ri := range r.Ranges {
				d := ri.RangeDescriptor
				uk := keys.UserKey(key)
				if bytes.Compare(uk, d.StartKey) >= 0 && bytes.Compare(uk, d.EndKey) < 0 &&
					ri.LeaseValid && ri.Lease.GetNodeId() == tc.Node(i).NodeID() {
					lh = i
					return nil
				}
			}
		}
		return fmt.Errorf("no node holds a valid lease")
	})
	other := (lh + 1) % 3
	client := func(region string, gateway int) rspb.KVClient {
		opts, err := net.ClientDialOptions(region)
		if err != nil {
			t.Fatal(err)
		}
		c, err := grpc.NewClient(tc.Addr(gateway), append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return rspb.NewKVClient(c)
	}
	local, remote := client(regions[lh], lh), client(regions[other], other)
	// Each measured operation is the fastest of five (warm connections).
	fastest := func(op func() error) time.Duration {
		best := time.Hour
		for i := 0; i < 5; i++ {
			start := time.Now()
			if err := op(); err != nil {
				t.Fatal(err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	write := fastest(func() error {
		_, err := local.Put(ctx, &rspb.PutRequest{Key: key, Value: []byte("v")})
		return err
	})
	localRead := fastest(func() error {
		_, err := local.Get(ctx, &rspb.GetRequest{Key: key})
		return err
	})
	remoteRead := fastest(func() error {
		_, err := remote.Get(ctx, &rspb.GetRequest{Key: key})
		return err
	})
	rtt, _ := tab.RTT(regions[lh], regions[other])
	t.Logf("leaseholder in %s: write %s (fastest of 5), read there %s, read from %s %s (round trip %s)",
		regions[lh], write, localRead, regions[other], remoteRead, rtt)
	if write < 70*time.Millisecond {
		t.Errorf("a write committed in %s, sooner than the smallest inter-region round trip", write)
	}
	if remoteRead < rtt {
		t.Errorf("a read from %s took %s, less than the round trip %s to the leaseholder in %s", regions[other], remoteRead, rtt, regions[lh])
	}
}
