package rafttls

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
)

// GetConnection dials target for Raft message batches.
func (t *transport) GetConnection(ctx context.Context, target string) (raftio.IConnection, error) {
	c, err := t.dial(ctx, target, kindMessages)
	if err != nil {
		return nil, err
	}
	if err := c.watchPeer(); err != nil {
		c.t.release(c.raw)
		return nil, err
	}
	return &msgConn{conn: c, ctx: ctx}, nil
}

// watchPeer starts the goroutine that notices the receiver closing a
// message connection (closing peerGone). After its acceptance byte the
// receiver sends nothing on such a connection, so a read returns only
// when the connection ends: the receiver closed it, or its process died
// and its kernel answered FIN or RST. Without it a sender learns that
// only from a write: the first write after the peer died still succeeds
// into the socket (the batch is lost) and only a later one fails, possibly
// long after the peer restarted. The goroutine ends when the connection
// closes (Close, or the transport's Close), and is counted in the
// transport's WaitGroup.
func (c *conn) watchPeer() error {
	c.peerGone = make(chan struct{})
	c.t.mu.Lock()
	if c.t.closed {
		c.t.mu.Unlock()
		return errClosed
	}
	c.t.wg.Add(1)
	c.t.mu.Unlock()
	go func() {
		defer c.t.wg.Done()
		defer close(c.peerGone)
		var b [1]byte
		_, _ = c.tc.Read(b[:]) // data here would break the protocol: the connection is done either way
	}()
	return nil
}

// GetSnapshotConnection dials target for snapshot chunks.
func (t *transport) GetSnapshotConnection(ctx context.Context, target string) (raftio.ISnapshotConnection, error) {
	c, err := t.dial(ctx, target, kindChunks)
	if err != nil {
		return nil, err
	}
	return &chunkConn{conn: c}, nil
}

// dial connects to target, handshakes with ClientTLS (ServerName the
// target's host unless set), checks the server (TLS 1.3, VerifyPeer),
// sends the preamble of kind and waits for the server's acceptance, all
// within dialTimeout (or ctx's deadline, if sooner). Through TLS 1.3 the
// server's verdict on our certificate comes after our side of the
// handshake; the acceptance byte makes a refusal an error of the dial
// rather than of the first send.
func (t *transport) dial(ctx context.Context, target string, kind byte) (*conn, error) {
	if t.isClosed() {
		return nil, errClosed
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("rafttls: target %q is not host:port: %w", target, err)
	}
	cfg := t.cfg.ClientTLS()
	if err := checkClientConfig(cfg); err != nil {
		return nil, err
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS13)
	// Full-size records from the start: small first records help a
	// browser's time to first byte, not a long-lived bulk stream.
	cfg.DynamicRecordSizingDisabled = true

	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	d := net.Dialer{KeepAliveConfig: keepAlive}
	raw, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, fmt.Errorf("rafttls: dial %s: %w", target, err)
	}
	if !t.adopt(raw, false) {
		_ = raw.Close()
		return nil, errClosed
	}
	ok := false
	defer func() {
		if !ok {
			t.release(raw)
		}
	}()
	if dl, has := ctx.Deadline(); has {
		if err := raw.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("rafttls: dial %s: %w", target, err)
		}
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, t.dialRefused(target, fmt.Errorf("TLS handshake: %w", err))
	}
	st := tc.ConnectionState()
	if err := t.checkPeer(st); err != nil {
		return nil, t.dialRefused(target, err)
	}
	if _, err := tc.Write(appendPreamble(make([]byte, 0, preambleLen), kind)); err != nil {
		return nil, t.dialRefused(target, fmt.Errorf("sending the preamble: %w", err))
	}
	var ack [1]byte
	if _, err := io.ReadFull(tc, ack[:]); err != nil {
		return nil, t.dialRefused(target, fmt.Errorf("%s did not accept the connection (it refuses this node's certificate, or is not a rangestore Raft port): %w", peerName(st), err))
	}
	if ack[0] != ackByte {
		return nil, t.dialRefused(target, fmt.Errorf("%s answered 0x%02x to the preamble, not the acceptance byte 0x%02x", peerName(st), ack[0], ackByte))
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("rafttls: dial %s: %w", target, err)
	}
	ok = true
	return &conn{t: t, raw: raw, tc: tc, target: target}, nil
}

// dialRefused logs (rate-limited) and returns a failed dial past the TCP
// connect: these are certificate and protocol problems an operator must
// see, whereas a refused TCP connect (a peer down) is Dragonboat's to
// retry.
func (t *transport) dialRefused(target string, err error) error {
	err = fmt.Errorf("rafttls: connect to %s: %w", target, err)
	if ok, n := t.refusals.allow(time.Now()); ok {
		t.log.Warn("rafttls: could not open a Raft connection", "target", target, "reason", err, "refusals_not_logged", n)
	}
	return err
}

// conn is a dialled connection: frames out, nothing in (but the
// acceptance byte and, for snapshots, the close).
type conn struct {
	t      *transport
	raw    net.Conn
	tc     *tls.Conn
	target string
	// buf holds the frame being sent (header and body); kept between
	// sends up to keepBuf. The owner sends from one goroutine at a time.
	buf []byte
	// peerGone (message connections) is closed once the receiver closed
	// the connection (watchPeer).
	peerGone chan struct{}

	closeOnce sync.Once
}

// frame returns the connection's buffer sized for a header and a body of
// at most upper bytes.
func (c *conn) frame(upper int) []byte {
	n := frameHeaderLen + upper
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	return c.buf[:n]
}

// write sends a frame whose body (n bytes) is marshaled after the
// header in buf: one write under one deadline up to ioChunk bytes.
func (c *conn) write(buf []byte, n int) error {
	defer func() {
		if cap(c.buf) > keepBuf {
			c.buf = nil
		}
	}()
	if n > c.t.maxFrame {
		return &FrameTooLargeError{Size: n, Limit: c.t.maxFrame}
	}
	putFrameHeader(buf, n)
	out := buf[:frameHeaderLen+n]
	for len(out) > 0 {
		k := min(len(out), ioChunk)
		if err := c.raw.SetWriteDeadline(time.Now().Add(c.t.writeTimeout)); err != nil {
			return fmt.Errorf("rafttls: send to %s: %w", c.target, err)
		}
		if _, err := c.tc.Write(out[:k]); err != nil {
			return fmt.Errorf("rafttls: send to %s: %w", c.target, err)
		}
		out = out[k:]
	}
	return nil
}

// msgConn sends message batches. ctx is the one its dial got (the
// transport user's lifetime): a redial uses it too.
type msgConn struct {
	*conn
	ctx context.Context
}

var _ raftio.IConnection = (*msgConn)(nil)

// SendMessageBatch marshals b into the connection's buffer and writes
// it as one frame. A batch over MaxFrameSize is refused with a
// *FrameTooLargeError before anything is written.
//
// If the receiver closed the connection before this batch (a peer that
// died, and may since have restarted on the same address), the batch
// goes on a new connection, dialled once here: nothing of it was written
// to the old one. Only if that dial fails does the send fail: Dragonboat
// then counts the peer unreachable and backs off (its circuit breaker,
// per address, drops every message to that peer for up to about 1.5 s).
// Failing instead on the dead connection lost the batch, tripped the
// breaker after the peer was already back, and a connection per Raft
// send queue did that once each: elections needing the restarted peer's
// vote stalled for seconds (the failover benchmark's tail, issue 14).
func (c *msgConn) SendMessageBatch(b pb.MessageBatch) error {
	select {
	case <-c.peerGone:
		nc, err := c.t.dial(c.ctx, c.target, kindMessages)
		if err != nil {
			return err
		}
		if err := nc.watchPeer(); err != nil {
			c.t.release(nc.raw)
			return err
		}
		c.closeConn()
		c.conn = nc
	default:
	}
	upper := b.SizeUpperLimit()
	if upper > c.t.maxFrame {
		// The upper bound overestimates; only the exact size decides.
		if n := b.Size(); n > c.t.maxFrame {
			return &FrameTooLargeError{Size: n, Limit: c.t.maxFrame}
		}
	}
	buf := c.frame(upper)
	n, err := b.MarshalTo(buf[frameHeaderLen:])
	if err != nil {
		return fmt.Errorf("rafttls: marshal a message batch for %s: %w", c.target, err)
	}
	return c.write(buf, n)
}

// Close closes the connection (close_notify, then the socket).
func (c *msgConn) Close() { c.closeConn() }

// closeConn closes a message connection (close_notify, then the socket).
func (c *conn) closeConn() {
	c.closeOnce.Do(func() {
		_ = c.tc.Close() // (bounds its close_notify write itself)
		c.t.release(c.raw)
	})
}

// chunkConn sends snapshot chunks.
type chunkConn struct{ *conn }

var _ raftio.ISnapshotConnection = (*chunkConn)(nil)

// SendChunk marshals ch and writes it as one frame.
func (c *chunkConn) SendChunk(ch pb.Chunk) error {
	size := ch.Size()
	if size > c.t.maxFrame {
		return &FrameTooLargeError{Size: size, Limit: c.t.maxFrame}
	}
	buf := c.frame(size)
	n, err := ch.MarshalTo(buf[frameHeaderLen:])
	if err != nil {
		return fmt.Errorf("rafttls: marshal a snapshot chunk for %s: %w", c.target, err)
	}
	return c.write(buf, n)
}

// Close ends the stream gracefully: close_notify, then it waits (at most
// snapshotCloseWait) for the receiver to close its side, which it does
// once it has read and handled every chunk sent; then it closes the
// socket. Closing at once could lose the last chunks in flight.
func (c *chunkConn) Close() {
	c.closeOnce.Do(func() {
		if err := c.raw.SetDeadline(time.Now().Add(snapshotCloseWait)); err == nil {
			if err := c.tc.CloseWrite(); err == nil {
				_, _ = io.Copy(io.Discard, c.tc)
			}
		}
		c.t.release(c.raw)
	})
}
