package fault

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rangestore/rangestore/timeutil"
)

// arrivals records what a transport received, in order, and when.
type arrivals struct {
	mu    sync.Mutex
	terms []uint64 // a batch's first message's Term, a chunk's ChunkId
	at    []time.Time
}

func (a *arrivals) add(id uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.terms = append(a.terms, id)
	a.at = append(a.at, time.Now())
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.terms)
}

// latencyPair is a network with member 0 (Raft address "ra") in us-east
// and member 1 ("rb") in eu-west, 70 ms apart, and member 2 ("rc") in
// us-east with 0 ms to member 0.
func latencyPair(t *testing.T) *Network {
	t.Helper()
	n := NewNetwork()
	for i := range 3 {
		n.Register(i, fmt.Sprintf("r%c", 'a'+i))
	}
	placeGlobal(t, n, "us-east", "eu-west", "us-east")
	return n
}

// placeGlobal places members 0, 1, ... of n in regions and gives n the
// GlobalLatencies table, which it returns.
func placeGlobal(t *testing.T, n *Network, regions ...string) *LatencyTable {
	t.Helper()
	for i, r := range regions {
		if err := n.Place(i, r); err != nil {
			t.Fatal(err)
		}
	}
	tab, err := ParseLatencyTable(GlobalLatencies)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.SetLatency(tab); err != nil {
		t.Fatal(err)
	}
	return tab
}

func startTransport(t *testing.T, net *Network, addr string, msgs, chunks *arrivals) raftio.ITransport {
	t.Helper()
	tr := (&TransportFactory{Net: net}).Create(config.NodeHostConfig{RaftAddress: addr},
		func(b pb.MessageBatch) {
			for _, m := range b.Requests {
				msgs.add(m.Term)
			}
		},
		func(c pb.Chunk) bool { chunks.add(c.ChunkId); return true })
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestTransportDelaysAcrossRegions: Raft batches and snapshot chunks from
// us-east to eu-west arrive no sooner than the one-way latency (35 ms)
// after they were sent, in the order they were sent, and sending does not
// wait for them; inside a region the connection is not wrapped.
func TestTransportDelaysAcrossRegions(t *testing.T) {
	net := latencyPair(t)
	oneWay := net.Delay("ra", "rb")
	if oneWay != 35*time.Millisecond {
		t.Fatalf("one-way us-east -> eu-west = %s", oneWay)
	}
	var gotA, gotB, gotC, chunksB arrivals
	a := startTransport(t, net, "ra", &gotA, &arrivals{})
	b := startTransport(t, net, "rb", &gotB, &chunksB)
	c := startTransport(t, net, "rc", &gotC, &arrivals{})
	defer func() {
		for _, tr := range []raftio.ITransport{a, b, c} {
			if err := tr.Close(); err != nil {
				t.Error(err)
			}
		}
	}()
	ctx := context.Background()
	dc, err := a.GetConnection(ctx, "rb")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := dc.(*delayedConn); !ok {
		t.Fatalf("connection across regions is a %T, not delayed", dc)
	}
	const n = 50
	sent := make([]time.Time, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		sent[i] = time.Now()
		// One reused slice, as Dragonboat reuses its batch buffers.
		batch := pb.MessageBatch{Requests: []pb.Message{{Term: uint64(i), Type: pb.Heartbeat}}}
		if err := dc.SendMessageBatch(batch); err != nil {
			t.Fatal(err)
		}
		batch.Requests[0].Term = 999
	}
	sendTook := time.Since(start)
	timeutil.WaitFor(t, 30*time.Second, "every batch to arrive", func() error {
		if got := gotB.count(); got < n {
			return fmt.Errorf("%d of %d arrived", got, n)
		}
		return nil
	})
	dc.Close()
	gotB.mu.Lock()
	var minLat, maxLat time.Duration
	for i, term := range gotB.terms {
		if term != uint64(i) {
			t.Fatalf("arrival %d is batch %d: order not kept (%v)", i, term, gotB.terms)
		}
		lat := gotB.at[i].Sub(sent[i])
		if lat < oneWay {
			t.Errorf("batch %d arrived %s after it was sent, before the one-way latency %s", i, lat, oneWay)
		}
		if i == 0 || lat < minLat {
			minLat = lat
		}
		maxLat = max(maxLat, lat)
	}
	gotB.mu.Unlock()
	t.Logf("%d batches us-east -> eu-west: sending took %s in all; arrival after send: min %s, max %s (one-way %s)",
		n, sendTook, minLat, maxLat, oneWay)

	// Snapshot chunks: delayed the same way, and Close delivers the ones
	// still queued.
	sc, err := a.GetSnapshotConnection(ctx, "rb")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sc.(*delayedSnapConn); !ok {
		t.Fatalf("snapshot connection across regions is a %T, not delayed", sc)
	}
	chunkSent := time.Now()
	for i := 0; i < 5; i++ {
		if err := sc.SendChunk(pb.Chunk{ChunkId: uint64(i), Data: []byte("data")}); err != nil {
			t.Fatal(err)
		}
	}
	sc.Close() // returns once every chunk was handed on
	timeutil.WaitFor(t, 30*time.Second, "the chunks queued at Close to arrive", func() error {
		if got := chunksB.count(); got < 5 {
			return fmt.Errorf("%d of 5 arrived", got)
		}
		return nil
	})
	chunksB.mu.Lock()
	for i, id := range chunksB.terms {
		if id != uint64(i) {
			t.Errorf("chunk arrival %d is chunk %d", i, id)
		}
		if lat := chunksB.at[i].Sub(chunkSent); lat < oneWay {
			t.Errorf("chunk %d arrived %s after the first was sent, before %s", i, lat, oneWay)
		}
	}
	chunksB.mu.Unlock()

	// Inside a region (0 ms): not wrapped, delivered as before.
	local, err := a.GetConnection(ctx, "rc")
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if _, ok := local.(*conn); !ok {
		t.Errorf("connection inside a region is a %T", local)
	}
	if err := local.SendMessageBatch(pb.MessageBatch{Requests: []pb.Message{{Term: 7}}}); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 30*time.Second, "the local batch", func() error {
		if gotC.count() != 1 {
			return fmt.Errorf("%d arrived", gotC.count())
		}
		return nil
	})
}

// TestTransportWithoutLatencyUnwrapped: a network with no latency table
// leaves every connection as it was (no delay queue, no goroutine).
func TestTransportWithoutLatencyUnwrapped(t *testing.T) {
	net := NewNetwork()
	net.Register(0, "ra")
	net.Register(1, "rb")
	var got arrivals
	a := startTransport(t, net, "ra", &arrivals{}, &arrivals{})
	b := startTransport(t, net, "rb", &got, &arrivals{})
	defer func() { _ = a.Close(); _ = b.Close() }()
	c, err := a.GetConnection(context.Background(), "rb")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*conn); !ok {
		t.Fatalf("connection without a latency table is a %T", c)
	}
	sc, err := a.GetSnapshotConnection(context.Background(), "rb")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if _, ok := sc.(*snapConn); !ok {
		t.Fatalf("snapshot connection without a latency table is a %T", sc)
	}
	if opts := net.PeerDialOptions("ga"); len(opts) != 1 {
		t.Errorf("peer dial options without a table: %d, want the partition interceptor only", len(opts))
	}
}

// TestTransportCloseStopsQueues: closing the transport ends the queues'
// goroutines and drops what they held; later sends and connections fail.
func TestTransportCloseStopsQueues(t *testing.T) {
	net := latencyPair(t)
	var got arrivals
	a := startTransport(t, net, "ra", &arrivals{}, &arrivals{})
	b := startTransport(t, net, "rb", &got, &arrivals{})
	defer func() { _ = b.Close() }()
	c, err := a.GetConnection(context.Background(), "rb")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMessageBatch(pb.MessageBatch{Requests: []pb.Message{{Term: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil { // waits for the queue's goroutine
		t.Fatal(err)
	}
	if err := c.SendMessageBatch(pb.MessageBatch{Requests: []pb.Message{{Term: 2}}}); err == nil {
		t.Error("a send after the transport closed succeeded")
	}
	c.Close()
	if c2, err := a.GetConnection(context.Background(), "rb"); err == nil {
		c2.Close()
		t.Error("a delayed connection was made after the transport closed")
	}
}

// TestGRPCLatencyInterceptors: a unary call and a stream from a client in
// eu-west to a server in us-east take at least one round trip (70 ms);
// the server's own region calls it undelayed.
func TestGRPCLatencyInterceptors(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(lis) }()
	defer func() { srv.Stop(); wg.Wait() }()
	addr := lis.Addr().String()

	n := NewNetwork()
	n.Register(0, addr)
	tab := placeGlobal(t, n, "us-east")
	rtt, _ := tab.RTT("eu-west", "us-east")
	dial := func(region string) healthpb.HealthClient {
		opts, err := n.ClientDialOptions(region)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return healthpb.NewHealthClient(cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	local, remote := dial("us-east"), dial("eu-west")
	if _, err := local.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil { // connect
		t.Fatal(err)
	}
	if _, err := remote.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	measure := func(c healthpb.HealthClient) (unary, stream time.Duration) {
		start := time.Now()
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		unary = time.Since(start)
		start = time.Now()
		w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatal(err)
		}
		return unary, time.Since(start)
	}
	lu, ls := measure(local)
	ru, rs := measure(remote)
	t.Logf("client in us-east: Check %s, Watch first message %s; in eu-west: Check %s, Watch first message %s (round trip %s)", lu, ls, ru, rs, rtt)
	if ru < rtt || rs < rtt {
		t.Errorf("calls from eu-west took %s (unary) and %s (stream), less than the round trip %s", ru, rs, rtt)
	}
}
