package fault

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// maxQueued bounds the batches (or chunks) waiting out their delay on one
// connection; a sender beyond it waits, as on a full TCP send buffer.
const maxQueued = 4096

// ErrTransportClosed is returned by sends on a delayed connection of a
// closed transport.
var ErrTransportClosed = errors.New("fault: transport closed")

// Place puts a member in a region: its traffic to members of other regions
// is delayed by the latency table (SetLatency).
func (n *Network) Place(member int, region string) error {
	if err := checkRegionName(region); err != nil {
		return fmt.Errorf("fault: member %d: %w", member, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.latency != nil {
		if err := n.latency.Check(append(n.placedLocked(), region)); err != nil {
			return fmt.Errorf("fault: member %d in %s: %w", member, region, err)
		}
	}
	n.regions[member] = region
	return nil
}

// SetLatency sets the table of round trips between the members' regions;
// it must cover every pair of regions placed so far (and members placed
// later must be in regions it covers). Set it before the transports and
// clients connect: connections made while it is nil (or while their link
// has no delay) are not wrapped and stay undelayed.
func (n *Network) SetLatency(t *LatencyTable) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if t != nil {
		if err := t.Check(n.placedLocked()); err != nil {
			return fmt.Errorf("fault: %w", err)
		}
	}
	n.latency = t
	return nil
}

// Latency is the table set by SetLatency (nil: none).
func (n *Network) Latency() *LatencyTable {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.latency
}

func (n *Network) placedLocked() []string {
	var rs []string
	seen := map[string]bool{}
	for _, r := range n.regions {
		if !seen[r] {
			seen[r] = true
			rs = append(rs, r)
		}
	}
	sort.Strings(rs)
	return rs
}

// Delay is the one-way latency from one address to another: 0 without a
// table, or when either address is not registered with a placed member.
func (n *Network) Delay(from, to string) time.Duration {
	n.mu.RLock()
	defer n.mu.RUnlock()
	f, ok := n.regionLocked(from)
	if !ok {
		return 0
	}
	return n.delayLocked(f, to)
}

// DelayFrom is the one-way latency from a region to an address.
func (n *Network) DelayFrom(region, to string) time.Duration {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.delayLocked(region, to)
}

func (n *Network) delayLocked(from, to string) time.Duration {
	if n.latency == nil {
		return 0
	}
	t, ok := n.regionLocked(to)
	if !ok {
		return 0
	}
	return n.latency.OneWay(from, t)
}

func (n *Network) regionLocked(addr string) (string, bool) {
	m, ok := n.names[addr]
	if !ok {
		return "", false
	}
	r, ok := n.regions[m]
	return r, ok
}

// delayQueue holds one connection's batches for their delay and sends
// them in the order they came, from its own goroutine, so that a send
// returns at once. close flushes what is queued (a snapshot's last chunks
// must arrive); the transport's stop drops it.
type delayQueue struct {
	q       chan pending
	closing chan struct{}
	stopAll <-chan struct{}
	done    chan struct{}
	once    sync.Once

	mu  sync.Mutex
	err error // the first failed send; later sends return it
}

type pending struct {
	at   time.Time
	send func() error
}

func newDelayQueue(stopAll <-chan struct{}, wg *sync.WaitGroup) *delayQueue {
	d := &delayQueue{q: make(chan pending, maxQueued), closing: make(chan struct{}), stopAll: stopAll, done: make(chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.run()
	}()
	return d
}

func (d *delayQueue) push(at time.Time, send func() error) error {
	if err := d.failed(); err != nil {
		return err
	}
	select {
	case <-d.stopAll:
		return ErrTransportClosed
	default:
	}
	select {
	case d.q <- pending{at: at, send: send}:
		return nil
	case <-d.stopAll:
		return ErrTransportClosed
	}
}

func (d *delayQueue) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (d *delayQueue) run() {
	defer close(d.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	deliver := func(p pending) bool {
		if wait := time.Until(p.at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-d.stopAll:
				return false
			}
		}
		if d.failed() == nil {
			if err := p.send(); err != nil {
				d.mu.Lock()
				d.err = err
				d.mu.Unlock()
			}
		}
		return true
	}
	if !timer.Stop() {
		<-timer.C
	}
	for {
		select {
		case p := <-d.q:
			if !deliver(p) {
				return
			}
		case <-d.closing:
			for {
				select {
				case p := <-d.q:
					if !deliver(p) {
						return
					}
				default:
					return
				}
			}
		case <-d.stopAll:
			return
		}
	}
}

// close delivers what is queued (unless the transport stops first) and
// waits for the goroutine to end.
func (d *delayQueue) close() {
	d.once.Do(func() { close(d.closing) })
	<-d.done
}

// delayedConn delays each batch by the one-way latency of its link.
type delayedConn struct {
	c *conn
	q *delayQueue
}

// SendMessageBatch queues a copy of the batch (Dragonboat reuses its
// buffers once the call returns) to be sent when its delay has passed.
func (c *delayedConn) SendMessageBatch(b pb.MessageBatch) error {
	return delaySend(c.c.t, c.c.target, c.q, pb.MustMarshal(&b), func(data []byte) error {
		var nb pb.MessageBatch
		if err := nb.Unmarshal(data); err != nil {
			return err
		}
		return c.c.IConnection.SendMessageBatch(nb)
	})
}

// delaySend queues data (a marshalled copy of what is sent) on q, to be
// sent to target by send once the link's one-way delay has passed; a link
// cut now, or while the data is in flight, fails with ErrPartitioned.
func delaySend(t *transport, target string, q *delayQueue, data []byte, send func([]byte) error) error {
	if t.net.Blocked(t.self, target) {
		return ErrPartitioned
	}
	at := time.Now().Add(t.net.Delay(t.self, target))
	return q.push(at, func() error {
		if t.net.Blocked(t.self, target) {
			return ErrPartitioned // cut while in flight
		}
		return send(data)
	})
}

func (c *delayedConn) Close() {
	c.q.close()
	c.c.Close()
}

// delayedSnapConn delays each snapshot chunk like delayedConn a batch.
type delayedSnapConn struct {
	c *snapConn
	q *delayQueue
}

func (c *delayedSnapConn) SendChunk(ch pb.Chunk) error {
	return delaySend(c.c.t, c.c.target, c.q, pb.MustMarshal(&ch), func(data []byte) error {
		var nc pb.Chunk
		if err := nc.Unmarshal(data); err != nil {
			return err
		}
		return c.c.ISnapshotConnection.SendChunk(nc)
	})
}

func (c *delayedSnapConn) Close() {
	c.q.close()
	c.c.Close()
}

// delayConn wraps a connection whose link has a delay (at connect time).
func (t *transport) delayConn(c *conn) (raftio.IConnection, error) {
	if t.net.Delay(t.self, c.target) <= 0 {
		return c, nil
	}
	q, err := t.newQueue()
	if err != nil {
		c.Close()
		return nil, err
	}
	return &delayedConn{c: c, q: q}, nil
}

func (t *transport) delaySnapConn(c *snapConn) (raftio.ISnapshotConnection, error) {
	if t.net.Delay(t.self, c.target) <= 0 {
		return c, nil
	}
	q, err := t.newQueue()
	if err != nil {
		c.Close()
		return nil, err
	}
	return &delayedSnapConn{c: c, q: q}, nil
}

// newQueue starts a delay queue owned by the transport (none once it is
// closing: Close waits for the ones it has).
func (t *transport) newQueue() (*delayQueue, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrTransportClosed
	}
	return newDelayQueue(t.stop, &t.wg), nil
}

// Close stops the delay queues (what they hold is dropped, as by a
// closed socket), then the inner transport.
func (t *transport) Close() error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.stop)
	}
	t.mu.Unlock()
	t.wg.Wait()
	return t.ITransport.Close()
}

// PeerDialOptions are the dial options of member self's node-to-node
// connections: calls across cut links fail (UnaryInterceptor) and, with a
// latency table, calls to other regions are delayed (LatencyInterceptors).
func (n *Network) PeerDialOptions(self string) []grpc.DialOption {
	opts := []grpc.DialOption{grpc.WithChainUnaryInterceptor(n.UnaryInterceptor(self))}
	if n.Latency() == nil {
		return opts
	}
	u, s := n.LatencyInterceptors(func(target string) time.Duration { return n.Delay(self, target) })
	return append(opts, grpc.WithChainUnaryInterceptor(u), grpc.WithChainStreamInterceptor(s))
}

// ClientDialOptions are the dial options of a client in region: its calls
// to members of other regions are delayed by the latency table. Without a
// table there are none; a region the table does not cover is refused.
func (n *Network) ClientDialOptions(region string) ([]grpc.DialOption, error) {
	if err := checkRegionName(region); err != nil {
		return nil, fmt.Errorf("fault: client: %w", err)
	}
	n.mu.RLock()
	t := n.latency
	var err error
	if t != nil {
		err = t.Check(append(n.placedLocked(), region))
	}
	n.mu.RUnlock()
	if t == nil {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fault: client in %s: %w", region, err)
	}
	u, s := n.LatencyInterceptors(func(target string) time.Duration { return n.DelayFrom(region, target) })
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(u), grpc.WithChainStreamInterceptor(s)}, nil
}

// LatencyInterceptors delay gRPC calls by delay(target), the one-way
// latency to the connection's target: a unary call before it is sent and
// again when its reply (or error) is back; a stream when it is opened and
// again at its first received message (later messages were pipelined
// behind it, so they are not delayed again).
func (n *Network) LatencyInterceptors(delay func(target string) time.Duration) (grpc.UnaryClientInterceptor, grpc.StreamClientInterceptor) {
	unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		d := delay(cc.Target())
		if d <= 0 {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		if err := sleepCtx(ctx, d); err != nil {
			return err
		}
		err := invoker(ctx, method, req, reply, cc, opts...)
		if serr := sleepCtx(ctx, d); serr != nil && err == nil {
			return serr
		}
		return err
	}
	stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		d := delay(cc.Target())
		if d <= 0 {
			return streamer(ctx, desc, cc, method, opts...)
		}
		if err := sleepCtx(ctx, d); err != nil {
			return nil, err
		}
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			_ = sleepCtx(ctx, d)
			return nil, err
		}
		return &delayedStream{ClientStream: s, d: d}, nil
	}
	return unary, stream
}

// delayedStream delays the first received message (or end of stream) by
// the one-way latency. gRPC calls RecvMsg from one goroutine at a time.
type delayedStream struct {
	grpc.ClientStream
	d    time.Duration
	seen bool
}

func (s *delayedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if !s.seen {
		s.seen = true
		if serr := sleepCtx(s.Context(), s.d); serr != nil && err == nil {
			return serr
		}
	}
	return err
}

// sleepCtx waits d, or returns the context's error as a gRPC status.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}
