// Package fault injects network partitions, inter-region latency and clock
// offsets into in-process clusters: a partition matrix and a latency table
// shared by a Dragonboat transport wrapper (Raft traffic) and gRPC client
// interceptors (node-to-node RPCs, clients), and physical clocks whose
// offset can be changed at run time.
//
// Latency (latency.go, delay.go) lives here, next to partitions, because
// it is the same simulated network: one Network knows which member each
// address belongs to, so the Raft transport and the gRPC interceptors
// agree on who talks to whom, and partitions and delays compose (a cut
// link drops, a slow one delays). The LatencyTable itself is a pure value
// (round trips per region pair, parsed and checked) that the transports
// only look up. A Network with no table set wraps nothing and delays
// nothing: every path is the one it was before.
package fault

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4/config"
	chantransport "github.com/lni/dragonboat/v4/plugin/chan"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Network is a partition matrix between named members. Every address a
// member uses (Raft, gRPC) is registered under its name.
type Network struct {
	mu      sync.RWMutex
	names   map[string]int  // address -> member
	blocked map[[2]int]bool // (from, to) -> dropped
	regions map[int]string  // member -> region (latency)
	latency *LatencyTable   // nil: no delays
}

// NewNetwork returns a fully connected network.
func NewNetwork() *Network {
	return &Network{names: map[string]int{}, blocked: map[[2]int]bool{}, regions: map[int]string{}}
}

// Register maps an address to a member.
func (n *Network) Register(member int, addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		n.names[a] = member
	}
}

// Isolate cuts member off from everyone, both directions.
func (n *Network) Isolate(member int, all []int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, o := range all {
		if o != member {
			n.blocked[[2]int{member, o}] = true
			n.blocked[[2]int{o, member}] = true
		}
	}
}

// Partition cuts every link between the two groups, both directions.
func (n *Network) Partition(a, b []int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			n.blocked[[2]int{x, y}] = true
			n.blocked[[2]int{y, x}] = true
		}
	}
}

// Heal restores every link.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blocked = map[[2]int]bool{}
}

// Blocked reports whether traffic from one address to another is dropped.
func (n *Network) Blocked(from, to string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	f, ok1 := n.names[from]
	t, ok2 := n.names[to]
	return ok1 && ok2 && n.blocked[[2]int{f, t}]
}

// Partitioned reports whether any link is cut.
func (n *Network) Partitioned() bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.blocked) > 0
}

// ErrPartitioned is returned for traffic across a cut link.
var ErrPartitioned = errors.New("fault: link is partitioned")

// TransportFactory is a Dragonboat transport: the in-process channel
// transport, with Raft messages and snapshot chunks across cut links dropped.
type TransportFactory struct {
	Net *Network
}

var _ config.TransportFactory = (*TransportFactory)(nil)

// Create implements config.TransportFactory.
func (f *TransportFactory) Create(nhc config.NodeHostConfig, h raftio.MessageHandler, ch raftio.ChunkHandler) raftio.ITransport {
	inner := (&chantransport.ChanTransportFactory{}).Create(nhc, h, ch)
	return &transport{ITransport: inner, net: f.Net, self: nhc.RaftAddress, stop: make(chan struct{})}
}

// Validate accepts any non-empty address.
func (f *TransportFactory) Validate(addr string) bool { return addr != "" }

type transport struct {
	raftio.ITransport
	net  *Network
	self string

	// The delay queues of its connections (delay.go): stop is closed, and
	// closed set, once by Close; wg counts the queues' goroutines.
	mu     sync.Mutex
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

func (t *transport) Name() string { return "fault-chan" }

func (t *transport) GetConnection(ctx context.Context, target string) (raftio.IConnection, error) {
	if t.net.Blocked(t.self, target) {
		return nil, ErrPartitioned
	}
	c, err := t.ITransport.GetConnection(ctx, target)
	if err != nil {
		return nil, err
	}
	return t.delayConn(&conn{IConnection: c, t: t, target: target})
}

func (t *transport) GetSnapshotConnection(ctx context.Context, target string) (raftio.ISnapshotConnection, error) {
	if t.net.Blocked(t.self, target) {
		return nil, ErrPartitioned
	}
	c, err := t.ITransport.GetSnapshotConnection(ctx, target)
	if err != nil {
		return nil, err
	}
	return t.delaySnapConn(&snapConn{ISnapshotConnection: c, t: t, target: target})
}

type conn struct {
	raftio.IConnection
	t      *transport
	target string
}

// SendMessageBatch drops the batch (as a lossy network would) across a cut link.
func (c *conn) SendMessageBatch(b pb.MessageBatch) error {
	if c.t.net.Blocked(c.t.self, c.target) {
		return ErrPartitioned
	}
	return c.IConnection.SendMessageBatch(b)
}

type snapConn struct {
	raftio.ISnapshotConnection
	t      *transport
	target string
}

func (c *snapConn) SendChunk(ch pb.Chunk) error {
	if c.t.net.Blocked(c.t.self, c.target) {
		return ErrPartitioned
	}
	return c.ISnapshotConnection.SendChunk(ch)
}

// UnaryInterceptor fails node-to-node RPCs from self across cut links with
// Unavailable, after a short delay (like a connect timeout).
func (n *Network) UnaryInterceptor(self string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if n.Blocked(self, cc.Target()) {
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			return status.Error(codes.Unavailable, fmt.Sprintf("fault: %s -> %s partitioned", self, cc.Target()))
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// Clock is a physical clock with an adjustable offset from the wall clock.
type Clock struct{ offset atomic.Int64 }

// Now returns wall time + offset in nanoseconds (a leases.PhysicalClock).
func (c *Clock) Now() int64 { return time.Now().UnixNano() + c.offset.Load() }

// SetOffset sets the clock's offset.
func (c *Clock) SetOffset(d time.Duration) { c.offset.Store(int64(d)) }

// Offset returns the clock's offset.
func (c *Clock) Offset() time.Duration { return time.Duration(c.offset.Load()) }
