package main

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/rangestore/rangestore/proto/rspb"
)

// freeLowAddr returns a free loopback address whose port p and p+10000
// (the derived Raft port) are both free and valid.
func freeLowAddr(t *testing.T) (string, int) {
	t.Helper()
	for i := 0; i < 200; i++ {
		p := 20000 + rand.Intn(25000)
		l1, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+raftPortOffset)))
		_ = l1.Close()
		if err != nil {
			continue
		}
		_ = l2.Close()
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), p
	}
	t.Fatal("no free port pair")
	return "", 0
}

// TestRestartWithNewListenAddr restarts a node on a new --listen-addr:
//   - without --raft-addr, the derived Raft address changes too: the start
//     is refused with a message naming --raft-addr and both ports;
//   - with its old --raft-addr, it starts, and once it holds the leases of
//     every range, keys of every user range are readable and writable
//     through the two other nodes (which must learn its new address).
func TestRestartWithNewListenAddr(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pc := newProcCluster(t, 3)
	pc.initCluster()
	keysA := []string{"Apple", "Dragon", "Pebble", "cherry", "raft"} // one per user range
	for _, k := range keysA {
		pc.cliRetry(30*time.Second, "kv", "put", "--host", pc.addrs[0], k, "v1-"+k)
	}
	const v = 2
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	info, err := rspb.NewInternalClient(pc.NodeConn(v)).NodeInfo(ctx, &rspb.NodeInfoRequest{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	vid, oldRaft := info.Node.NodeId, info.Node.RaftAddress
	_, oldRaftPort, _ := net.SplitHostPort(oldRaft)
	pc.kill(v)

	// 1. New listen address, no --raft-addr: refused, with a clear message.
	newAddr, newPort := freeLowAddr(t)
	pc.SetArg(v, "--listen-addr", newAddr, false)
	pc.SetArg(v, "--raft-addr", "", true)
	pc.start(v)
	if !pc.WaitExit(v, 30*time.Second) {
		t.Fatalf("n%d started although its derived Raft address changed from %s to port %d", vid, oldRaft, newPort+raftPortOffset)
	}
	msg := pc.Log(v, 2000)
	t.Logf("start refused:\n%s", msg)
	for _, want := range []string{"--raft-addr", oldRaftPort, strconv.Itoa(newPort + raftPortOffset)} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error for a changed derived Raft address does not mention %q:\n%s", want, msg)
		}
	}

	// 2. New listen address, old --raft-addr: the node starts and the
	// cluster learns its new address.
	pc.SetArg(v, "--raft-addr", oldRaft, false)
	restarted := time.Now()
	pc.start(v)
	conn, err := pc.Dial(newAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Give every lease to the moved node (through its own Admin API; the
	// transfer is forwarded to the current holders, whose addresses did not
	// change).
	admin := rspb.NewAdminClient(conn)
	var rangeIDs []uint64
	if !waitUntil(60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := admin.Ranges(ctx, &rspb.RangesRequest{})
		if err != nil || len(r.Ranges) != 7 {
			return false
		}
		rangeIDs = rangeIDs[:0]
		for _, ri := range r.Ranges {
			rangeIDs = append(rangeIDs, ri.RangeDescriptor.RangeId)
		}
		return true
	}) {
		t.Fatalf("moved node n%d does not list its 7 ranges", vid)
	}
	// User ranges first: a transfer of an epoch lease reads the target's
	// liveness record from the system range (r2), moved last.
	sort.Slice(rangeIDs, func(i, j int) bool { return rangeIDs[i] > rangeIDs[j] })
	var lastErr error
	for _, id := range rangeIDs {
		if !waitUntil(30*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: id, TargetNodeId: vid})
			lastErr = err
			return err == nil
		}) {
			t.Fatalf("transferring the lease of r%d to n%d failed: %v", id, vid, lastErr)
		}
	}
	t.Logf("n%d restarted on %s and took every lease %.1fs after its start", vid, newAddr, time.Since(restarted).Seconds())

	// 3. Reads and writes through the other nodes reach it.
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for i, k := range keysA {
		via := []rspb.KVClient{pc.KV(0), pc.KV(1)}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := via[i%2].Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v2-" + k)})
			var g *rspb.GetResponse
			if err == nil {
				g, err = via[(i+1)%2].Get(ctx, &rspb.GetRequest{Key: []byte(k)})
				if err == nil && string(g.GetKv().GetValue()) != "v2-"+k {
					err = fmt.Errorf("read %q", g.GetKv().GetValue())
				}
			}
			cancel()
			if err == nil {
				break
			}
			lastErr = err
			if time.Now().After(deadline) {
				t.Fatalf("key %s not writable/readable through n1/n2 %s after n%d moved to %s: %v", k, time.Since(start).Round(time.Millisecond), vid, newAddr, lastErr)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("all user ranges served through the other nodes %.1fs after the lease transfers", time.Since(start).Seconds())
	if held := leasesHeldVia(conn, vid); held == 0 {
		t.Fatalf("n%d holds no lease any more: the reads did not go through it", vid)
	} else {
		t.Logf("n%d holds %d leases", vid, held)
	}
}

func leasesHeldVia(conn *grpc.ClientConn, id uint64) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := rspb.NewAdminClient(conn).Ranges(ctx, &rspb.RangesRequest{})
	if err != nil {
		return -1
	}
	n := 0
	for _, ri := range r.Ranges {
		if ri.Lease.GetNodeId() == id && ri.LeaseValid {
			n++
		}
	}
	return n
}
