package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() error) {
	t.Helper()
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// directoryLists checks that node i's cached directory has n<id> at raft.
func directoryLists(tc *TestCluster, i int, id uint64, raft string) error {
	n := tc.Node(i)
	if n == nil {
		return nil
	}
	for _, d := range n.Directory() {
		if d.NodeId == id {
			if d.RaftAddress != raft {
				return fmt.Errorf("node %d lists n%d at raft address %s, want %s", i, id, d.RaftAddress, raft)
			}
			return nil
		}
	}
	return fmt.Errorf("node %d's directory does not list n%d", i, id)
}

// TestJoin: nodes with empty stores join a running 3-node cluster through
// any subset of its nodes and get the counter's next IDs (never reused);
// every node's directory lists them; `Nodes` shows them live; a joined node
// restarts under its ID; a retried join gets the same ID.
func TestJoin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1})

	i4, err := tc.AddNode(1) // through n2 only, and not naming itself
	if err != nil {
		t.Fatal(err)
	}
	if id, err := tc.WaitJoined(ctx, i4); err != nil || id != 4 {
		t.Fatalf("the first joining node got n%d (%v), want n4", id, err)
	}
	for i := 0; i < 4; i++ {
		waitFor(t, ctx, "directory", func() error { return directoryLists(tc, i, 4, tc.cfgs[i4].RaftAddr) })
	}
	admin := rspb.NewAdminClient(tc.Conn(0))
	waitFor(t, ctx, "n4 live in node list", func() error {
		r, err := admin.Nodes(ctx, &rspb.NodesRequest{})
		if err != nil {
			return err
		}
		if len(r.Nodes) != 4 {
			return fmt.Errorf("%d nodes listed, want 4", len(r.Nodes))
		}
		for k, ns := range r.Nodes {
			if ns.Node.NodeId != uint64(k+1) || ns.Liveness != rspb.NodeLiveness_NODE_LIVE || ns.StatsError != "" || ns.Epoch == 0 {
				return fmt.Errorf("node %d: %v", k+1, ns)
			}
		}
		if r.Nodes[3].ReplicaCount != 0 || r.Nodes[0].ReplicaCount == 0 || r.Nodes[0].Bytes == 0 {
			return fmt.Errorf("replica counts n1 %d (bytes %d), n4 %d: want n1 > 0, n4 0", r.Nodes[0].ReplicaCount, r.Nodes[0].Bytes, r.Nodes[3].ReplicaCount)
		}
		return nil
	})

	i5, err := tc.AddNode(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := tc.WaitJoined(ctx, i5); err != nil || id != 5 {
		t.Fatalf("the second joining node got n%d (%v), want n5", id, err)
	}
	// A stopped node's ID is not reused.
	tc.StopNode(i5)
	i6, err := tc.AddNode(i4) // through the joined node
	if err != nil {
		t.Fatal(err)
	}
	if id, err := tc.WaitJoined(ctx, i6); err != nil || id != 6 {
		t.Fatalf("the node joining after n5 stopped got n%d (%v), want n6", id, err)
	}
	// A restart keeps the ID (the store is not empty: no new join).
	if err := tc.RestartNode(i4); err != nil {
		t.Fatal(err)
	}
	if id, err := tc.WaitJoined(ctx, i4); err != nil || id != 4 {
		t.Fatalf("n4 restarted as n%d (%v)", id, err)
	}

	// Retried joins: the store of n6 gets n6 again; a new store twice gets
	// one ID, one directory record.
	ic := rspb.NewInternalClient(tc.Conn(1))
	sid, err := tc.Node(i6).Store().StoreID()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ic.Join(ctx, &rspb.JoinRequest{StoreId: sid, Node: &rspb.NodeDescriptor{Address: tc.cfgs[i6].ListenAddr, RaftAddress: tc.cfgs[i6].RaftAddr}})
	if err != nil || r.Record.NodeId != 6 {
		t.Fatalf("retried join of n6's store: %v, %v", r, err)
	}
	ghost := &rspb.NodeDescriptor{Address: "127.0.0.1:1", RaftAddress: "127.0.0.1:2"}
	var first uint64
	for try := 0; try < 2; try++ {
		r, err := ic.Join(ctx, &rspb.JoinRequest{StoreId: "retried-store", Node: ghost})
		if err != nil {
			t.Fatal(err)
		}
		if try == 0 {
			first = r.Record.NodeId
		} else if r.Record.NodeId != first {
			t.Fatalf("a retried join got n%d, the first try n%d", r.Record.NodeId, first)
		}
	}
	if first != 7 {
		t.Fatalf("the new store got n%d, want n7", first)
	}
	// Concurrent duplicates of one join (through different nodes) agree on
	// one ID; at most the losers' IDs go unused, with no directory record.
	racer := &rspb.NodeDescriptor{Address: "127.0.0.1:3", RaftAddress: "127.0.0.1:4"}
	got := make([]uint64, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for k := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := rspb.NewInternalClient(tc.Conn(k)).Join(ctx, &rspb.JoinRequest{StoreId: "racing-store", Node: racer})
			got[k], errs[k] = r.GetRecord().GetNodeId(), err
		}()
	}
	wg.Wait()
	for k := range got {
		if errs[k] != nil || got[k] != got[0] || got[k] < 8 {
			t.Fatalf("concurrent joins of one store got %v (%v), want one ID above n7", got, errs)
		}
	}
	nodes, err := admin.Nodes(ctx, &rspb.NodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, ns := range nodes.Nodes {
		ids = append(ids, ns.Node.NodeId)
		if ns.Node.NodeId >= 7 && ns.Liveness != rspb.NodeLiveness_NODE_LIVENESS_UNKNOWN {
			t.Fatalf("n%d never started but is %v", ns.Node.NodeId, ns.Liveness)
		}
	}
	if want := fmt.Sprint([]uint64{1, 2, 3, 4, 5, 6, 7, got[0]}); fmt.Sprint(ids) != want {
		t.Fatalf("node list %v, want %s once each", ids, want)
	}
	// n5 is stopped: suspect once its record expired, counts missing.
	waitFor(t, ctx, "n5 suspect", func() error {
		st, err := admin.NodeStatus(ctx, &rspb.NodeStatusRequest{NodeId: 5})
		if err != nil {
			return err
		}
		if s := st.Status; s.Liveness != rspb.NodeLiveness_NODE_SUSPECT || s.StatsError == "" || !strings.Contains(s.Detail, "expired") {
			return fmt.Errorf("n5: %v", s)
		}
		return nil
	})
}

// TestJoinBadInput: unknown nodes, a malformed join request and a garbage
// join address get clear errors and change nothing.
func TestJoinBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1})
	admin := rspb.NewAdminClient(tc.Conn(0))
	_, err := admin.NodeStatus(ctx, &rspb.NodeStatusRequest{NodeId: 9})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "n9 not found: the directory lists n1, n2, n3") {
		t.Fatalf("status of n9: %v", err)
	}
	if _, err = admin.NodeStatus(ctx, &rspb.NodeStatusRequest{}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "node_id") {
		t.Fatalf("status of n0: %v", err)
	}
	ic := rspb.NewInternalClient(tc.Conn(0))
	for _, c := range []struct {
		req  *rspb.JoinRequest
		want string
	}{
		{&rspb.JoinRequest{Node: &rspb.NodeDescriptor{Address: "127.0.0.1:1", RaftAddress: "127.0.0.1:2"}}, "store_id is empty"},
		{&rspb.JoinRequest{StoreId: "s1"}, "node is missing"},
		{&rspb.JoinRequest{StoreId: "s1", Node: &rspb.NodeDescriptor{Address: "127.0.0.1:1", RaftAddress: "garbage"}}, `node.raft_address "garbage"`},
		{&rspb.JoinRequest{StoreId: "s1", Node: &rspb.NodeDescriptor{Address: "127.0.0.1:x", RaftAddress: "127.0.0.1:2"}}, `node.address "127.0.0.1:x"`},
		{&rspb.JoinRequest{StoreId: "s1", Node: &rspb.NodeDescriptor{NodeId: 3, Address: "127.0.0.1:1", RaftAddress: "127.0.0.1:2"}}, "node.node_id is 3"},
		{&rspb.JoinRequest{StoreId: "s/1", Node: &rspb.NodeDescriptor{Address: "127.0.0.1:1", RaftAddress: "127.0.0.1:2"}}, "store_id"},
		// A live node's address.
		{&rspb.JoinRequest{StoreId: "s1", Node: &rspb.NodeDescriptor{Address: tc.Addr(1), RaftAddress: tc.cfgs[1].RaftAddr}}, ", which is live, has the address " + tc.Addr(1)},
	} {
		_, err := ic.Join(ctx, c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("join %v: got %v, want an error containing %q", c.req, err, c.want)
		}
	}
	r, err := admin.Nodes(ctx, &rspb.NodesRequest{})
	if err != nil || len(r.Nodes) != 3 {
		t.Fatalf("after refused joins: %v, %v (want 3 nodes)", r, err)
	}
	dir := t.TempDir()
	_, err = Start(Config{StoreDir: dir, ListenAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", Join: []string{"garbage"}})
	if err == nil || !strings.Contains(err.Error(), `join address "garbage"`) {
		t.Fatalf("start with a garbage join address: %v", err)
	}
}

// TestJoinOtherClusterStoreRefused: a store of one cluster started with a
// join list of another is refused, naming both cluster IDs.
func TestJoinOtherClusterStoreRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := StartTestCluster(ctx, TestClusterOptions{InitialSplits: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := StartTestCluster(ctx, TestClusterOptions{Nodes: 1, InitialSplits: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.StopNode(0)
	cfg := b.cfgs[0]
	cfg.Join = []string{a.Addr(0), a.Addr(2)}
	n, err := Start(cfg)
	if err == nil {
		n.Stop()
		t.Fatal("a store of another cluster started with that cluster's join list")
	}
	if !strings.Contains(err.Error(), b.Init.ClusterId) || !strings.Contains(err.Error(), a.Init.ClusterId) {
		t.Fatalf("the refusal does not name both clusters (%s, %s): %v", b.Init.ClusterId, a.Init.ClusterId, err)
	}
	t.Log(err)
	// Its own cluster's join list is fine.
	cfg.Join = []string{b.Addr(0)}
	n, err = Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Stop()
}

// TestJoinUpgradedCluster: a cluster from before joins (no node-ID counter,
// not every node in the directory) gets its counter and the missing
// directory records from the cluster record once, and the first join gets
// the ID after the initial nodes.
func TestJoinUpgradedCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tc := startCluster(t, TestClusterOptions{InitialSplits: 1})
	n1 := tc.Node(0)
	del := func(k []byte) *rspb.RequestUnion {
		return &rspb.RequestUnion{Value: &rspb.RequestUnion_Delete{Delete: &rspb.DeleteRequest{Key: k}}}
	}
	if _, err := n1.router.Send(ctx, []*rspb.RequestUnion{del(keys.NodeIDGeneratorKey), del(keys.NodeKey(2)), del(keys.NodeKey(3))}); err != nil {
		t.Fatal(err)
	}
	i4, err := tc.AddNode(0)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := tc.WaitJoined(ctx, i4); err != nil || id != 4 {
		t.Fatalf("the first node joining an upgraded cluster got n%d (%v), want n4", id, err)
	}
	dir, err := n1.readDirectory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, d := range dir {
		ids = append(ids, d.NodeId)
	}
	if fmt.Sprint(ids) != "[1 2 3 4]" {
		t.Fatalf("directory records after the upgrade: %v, want n1..n4", ids)
	}
}

// TestJoinWaitsForInitBootstrap: a node waiting for init, whose join list
// names nodes init has already bootstrapped, is not admitted as a new node
// (its address is an initial node's that never started): it stays
// unnumbered until init's bootstrap reaches it, and no node ID is burned.
func TestJoinWaitsForInitBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	var cfgs []Config
	var addrs []string
	for i := 0; i < 3; i++ {
		ga := freeAddr(t)
		ra := freeAddr(t)
		cfgs = append(cfgs, Config{StoreDir: fmt.Sprintf("%s/n%d", dir, i+1), ListenAddr: ga, RaftAddr: ra,
			Logger: quietLogger(), RaftRTTMillisecond: 20, ElectionRTT: 15, HeartbeatRTT: 2, DrainTimeout: -1})
		addrs = append(addrs, ga)
	}
	var nodes []*Node
	defer func() {
		for _, n := range nodes {
			n.Stop()
		}
	}()
	var descs []*rspb.NodeDescriptor
	for i := range cfgs {
		cfgs[i].Join = addrs
		n, err := Start(cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		descs = append(descs, &rspb.NodeDescriptor{NodeId: uint64(i + 1), Address: n.Addr(), RaftAddress: cfgs[i].RaftAddr})
	}
	plan, err := PlanRanges(descs, nil, 3)
	if err != nil {
		t.Fatal(err)
	}
	req := func(id uint64) *rspb.BootstrapRequest {
		return &rspb.BootstrapRequest{ClusterId: "c-init-race", NodeId: id, Nodes: descs, Ranges: plan, Timestamp: &rspb.Timestamp{WallTime: time.Now().UnixNano()}}
	}
	for _, i := range []int{0, 1} {
		if err := nodes[i].Bootstrap(ctx, req(uint64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	// The third node's loop tries to join through n1/n2 every second; the
	// same request by hand is refused for the reason the loop sees.
	sid, err := nodes[2].Store().StoreID()
	if err != nil {
		t.Fatal(err)
	}
	ic := rspb.NewInternalClient(connTo(t, addrs[0]))
	waitFor(t, ctx, "join of an initial node refused", func() error {
		_, err := ic.Join(ctx, &rspb.JoinRequest{StoreId: sid, Node: &rspb.NodeDescriptor{Address: addrs[2], RaftAddress: cfgs[2].RaftAddr}})
		if status.Code(err) == codes.FailedPrecondition && strings.Contains(err.Error(), "n3") && strings.Contains(err.Error(), "has not started yet") {
			return nil
		}
		return fmt.Errorf("join of n3's store: %w", err)
	})
	waitFor(t, ctx, "the waiting node's own join tries refused", func() error {
		if nodes[2].joinRefusals.Load() < 2 {
			return fmt.Errorf("%d refusals", nodes[2].joinRefusals.Load())
		}
		return nil
	})
	if id := nodes[2].NodeID(); id != 0 {
		t.Fatalf("the initial node joined as n%d before init bootstrapped it", id)
	}
	if err := nodes[2].Bootstrap(ctx, req(3)); err != nil {
		t.Fatal(err)
	}
	r, err := ic.Join(ctx, &rspb.JoinRequest{StoreId: "after-init", Node: &rspb.NodeDescriptor{Address: "127.0.0.1:5", RaftAddress: "127.0.0.1:6"}})
	if err != nil || r.Record.NodeId != 4 {
		t.Fatalf("the first join after init: %v, %v (want n4: no ID burned)", r, err)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func connTo(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
