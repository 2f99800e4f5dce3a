package client

import (
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rangestore/rangestore/proto/rspb"
)

// suspectFor is how long a node whose attempt failed at the transport
// level is tried after the others.
const suspectFor = 2 * time.Second

// pool holds the connections to the nodes, by address: connsPerNode each,
// dialled on first use (gRPC connects lazily and reconnects by itself),
// closed by close. It also remembers which addresses failed lately.
type pool struct {
	opts []grpc.DialOption
	n    int

	mu     sync.Mutex
	closed bool
	conns  map[string]*nodeConns
	failed map[string]time.Time
	// nFailed is len(failed): the hot path skips the lock while no node
	// failed.
	nFailed atomic.Int32
}

type nodeConns struct {
	conns []*grpc.ClientConn
	next  atomic.Uint32
}

func newPool(cfg *config) *pool {
	creds := cfg.creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(cfg.keepalive),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(DefaultMaxMessageSize), grpc.MaxCallSendMsgSize(DefaultMaxMessageSize)),
		// A node that comes back is reconnected to within seconds, not
		// gRPC's default of up to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: 2 * time.Second}),
	}
	opts = append(opts, cfg.dialOpts...)
	return &pool{opts: opts, n: cfg.connsPerNode, conns: map[string]*nodeConns{}, failed: map[string]time.Time{}}
}

// conn returns a connection to addr.
func (p *pool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	nc := p.conns[addr]
	if nc == nil {
		nc = &nodeConns{}
		for range p.n {
			c, err := grpc.NewClient(addr, p.opts...)
			if err != nil {
				for _, c := range nc.conns {
					_ = c.Close()
				}
				return nil, invalidf("open", "address %q: %v", addr, err)
			}
			nc.conns = append(nc.conns, c)
		}
		p.conns[addr] = nc
	}
	if len(nc.conns) == 1 {
		return nc.conns[0], nil
	}
	return nc.conns[nc.next.Add(1)%uint32(len(nc.conns))], nil
}

func (p *pool) kv(addr string) (rspb.KVClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return rspb.NewKVClient(c), nil
}

func (p *pool) discovery(addr string) (rspb.DiscoveryClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return rspb.NewDiscoveryClient(c), nil
}

// markFailed notes a transport failure of addr; markOK clears it.
func (p *pool) markFailed(addr string) {
	p.mu.Lock()
	p.failed[addr] = time.Now()
	p.nFailed.Store(int32(len(p.failed)))
	p.mu.Unlock()
}

func (p *pool) markOK(addr string) {
	if p.nFailed.Load() == 0 {
		return
	}
	p.mu.Lock()
	delete(p.failed, addr)
	p.nFailed.Store(int32(len(p.failed)))
	p.mu.Unlock()
}

// suspect reports whether addr failed within suspectFor.
func (p *pool) suspect(addr string) bool {
	if p.nFailed.Load() == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.failed[addr]
	if ok && time.Since(t) >= suspectFor {
		delete(p.failed, addr) // forgiven
		p.nFailed.Store(int32(len(p.failed)))
		return false
	}
	return ok
}

// close closes every connection; later calls get ErrClosed.
func (p *pool) close() {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = map[string]*nodeConns{}, true
	p.mu.Unlock()
	for _, nc := range conns {
		for _, c := range nc.conns {
			_ = c.Close()
		}
	}
}
