package rafttls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
)

// Name is the transport's name (raftio.ITransport.Name).
const Name = "rangestore-rafttls"

// Timeouts (doc.go says why each is what it is).
const (
	// dialTimeout bounds a dial: TCP connect, handshake, preamble and the
	// server's acceptance.
	dialTimeout = 5 * time.Second
	// handshakeTimeout bounds an accepted connection's handshake and
	// preamble.
	handshakeTimeout = 5 * time.Second
	// writeTimeout bounds each write of at most ioChunk bytes: a dead or
	// stalled peer fails a send within it.
	writeTimeout = 10 * time.Second
	// readTimeout bounds each read of at most ioChunk bytes of a frame's
	// body once its header arrived.
	readTimeout = 10 * time.Second
	// readIdleTimeout closes an accepted connection on which no frame
	// started for that long. Dragonboat's sender closes a connection it
	// has not used for a minute, so a live sender always closes first;
	// this only reaps connections whose sender vanished without closing.
	readIdleTimeout = 2 * time.Minute
	// snapshotCloseWait bounds how long closing a snapshot connection
	// waits for the receiver to have read every chunk.
	snapshotCloseWait = 10 * time.Second
	// logEvery: at most one refusal line, and one line about a failed
	// connection, per interval.
	logEvery = 10 * time.Second
)

// Sizes.
const (
	// ioChunk is the most one read or write of a frame moves under one
	// deadline: every batch below it goes out in one write.
	ioChunk = 4 << 20
	// keepBuf: a connection keeps its frame buffer between frames up to
	// this capacity (a snapshot chunk's 2 MiB fits); larger frames get a
	// buffer of their own that is dropped after use.
	keepBuf = 4 << 20
)

// keepAlive probes an idle TCP connection after 10 s, then every 5 s, and
// gives up after 3 unanswered probes: a peer that vanished (power loss,
// partition) is noticed within about 25 s even on an idle connection.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3}

// errClosed is returned by dials on a closed transport.
var errClosed = errors.New("rafttls: the transport is closed")

// Config configures the transport.
type Config struct {
	// ServerTLS is the configuration of accepted connections, built once
	// (security.Manager.ServerTLS decides per handshake through
	// GetConfigForClient, so a certificate reload applies to new
	// connections). It must require and verify client certificates.
	ServerTLS *tls.Config
	// ClientTLS returns the configuration of a dial; it is called for
	// every dial, so a reload applies to new connections. ServerName is
	// set to the target's host when empty.
	ClientTLS func() *tls.Config
	// VerifyPeer, if set, is given every connection's state once its
	// handshake verified the peer's chain, on both sides (the dialled
	// server, the accepted client); an error refuses the connection.
	// The node wiring passes "the certificate's CN is node", so that a
	// client certificate of the same CA cannot act as a node.
	VerifyPeer func(tls.ConnectionState) error
	// Logger receives refusals and failed connections (rate-limited);
	// nil is slog.Default().
	Logger *slog.Logger
}

// Factory makes the transport of a NodeHost: it implements Dragonboat's
// config.TransportFactory (NodeHostConfig.Expert.TransportFactory).
type Factory struct {
	cfg Config
	lim limits
}

// limits are the frame limit and the timeouts tests lower; New sets
// MaxFrameSize, writeTimeout and readIdleTimeout.
type limits struct {
	maxFrame     int
	writeTimeout time.Duration
	readIdle     time.Duration
}

var _ config.TransportFactory = (*Factory)(nil)

// New returns a factory of transports configured by cfg. The
// configuration is checked when the transport starts (NodeHost creation
// fails with the reason).
func New(cfg Config) *Factory {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Factory{cfg: cfg, lim: limits{maxFrame: MaxFrameSize, writeTimeout: writeTimeout, readIdle: readIdleTimeout}}
}

// Create implements config.TransportFactory: a transport that listens on
// nhc's listen address (ListenAddress, or RaftAddress) once started, and
// hands received message batches to mh and snapshot chunks to ch.
func (f *Factory) Create(nhc config.NodeHostConfig, mh raftio.MessageHandler, ch raftio.ChunkHandler) raftio.ITransport {
	return &transport{
		cfg: f.cfg, limits: f.lim, listenAddr: nhc.GetListenAddress(), self: nhc.RaftAddress,
		onMessages: mh, onChunk: ch, log: f.cfg.Logger.With("raft_addr", nhc.RaftAddress),
		refusals: logLimiter{every: logEvery}, failures: logLimiter{every: logEvery},
		conns: map[net.Conn]struct{}{}, stop: make(chan struct{}),
	}
}

// Validate implements config.TransportFactory: addr must be host:port
// with a port of 1 to 65535.
func (f *Factory) Validate(addr string) bool { return checkAddress(addr) == nil }

// checkConfig refuses a configuration under which the transport would
// not be mutually authenticated.
func checkConfig(c Config) error {
	switch {
	case c.ServerTLS == nil:
		return errors.New("rafttls: Config.ServerTLS is nil: the Raft transport serves over mutual TLS only")
	case c.ClientTLS == nil:
		return errors.New("rafttls: Config.ClientTLS is nil: the Raft transport dials over mutual TLS only")
	case c.ServerTLS.GetConfigForClient != nil:
		return nil // decides per handshake
	case c.ServerTLS.ClientAuth != tls.RequireAndVerifyClientCert:
		return fmt.Errorf("rafttls: Config.ServerTLS.ClientAuth is %v, want RequireAndVerifyClientCert: Raft peers authenticate by certificate", c.ServerTLS.ClientAuth)
	case len(c.ServerTLS.Certificates) == 0 && c.ServerTLS.GetCertificate == nil:
		return errors.New("rafttls: Config.ServerTLS has no certificate (Certificates or GetCertificate)")
	}
	return nil
}

// serverConfig is base with TLS 1.3 required, also in the configuration
// its GetConfigForClient chooses per handshake, so that a TLS 1.2 client
// fails the handshake itself (checkPeer would refuse it after).
func serverConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.MinVersion = max(c.MinVersion, tls.VersionTLS13)
	if get := base.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			per, err := get(hello)
			if err != nil || per == nil || per.MinVersion >= tls.VersionTLS13 {
				return per, err
			}
			per = per.Clone()
			per.MinVersion = tls.VersionTLS13
			return per, nil
		}
	}
	return c
}

// checkClientConfig refuses a dial configuration that would not present
// a certificate or would not verify the server's.
func checkClientConfig(c *tls.Config) error {
	switch {
	case c == nil:
		return errors.New("rafttls: Config.ClientTLS returned nil")
	case c.InsecureSkipVerify:
		return errors.New("rafttls: Config.ClientTLS sets InsecureSkipVerify: Raft peers must verify each other's certificates")
	case len(c.Certificates) == 0 && c.GetClientCertificate == nil:
		return errors.New("rafttls: Config.ClientTLS has no certificate (Certificates or GetClientCertificate): Raft peers use mutual TLS")
	}
	return nil
}

// transport is the raftio.ITransport of one NodeHost.
type transport struct {
	cfg       Config
	serverTLS *tls.Config // cfg.ServerTLS requiring TLS 1.3 (Start)
	limits
	listenAddr string
	self       string
	onMessages raftio.MessageHandler
	onChunk    raftio.ChunkHandler
	log        *slog.Logger
	// refusals limits lines about connections refused before they carried
	// anything (handshake, peer check, preamble), accepted or dialled;
	// failures those about accepted connections that broke off (a bad
	// frame, a rejected chunk).
	refusals, failures logLimiter

	// wg counts the accept loop and the accepted connections' goroutines.
	wg   sync.WaitGroup
	stop chan struct{} // closed by Close

	mu      sync.Mutex
	started bool
	closed  bool
	ln      net.Listener
	// conns are the open TCP connections, accepted and dialled; Close
	// closes them all.
	conns map[net.Conn]struct{}
}

var _ raftio.ITransport = (*transport)(nil)

func (t *transport) Name() string { return Name }

// Start checks the configuration and listens.
func (t *transport) Start() error {
	if err := checkConfig(t.cfg); err != nil {
		return err
	}
	t.serverTLS = serverConfig(t.cfg.ServerTLS)
	lc := net.ListenConfig{KeepAliveConfig: keepAlive}
	ln, err := lc.Listen(context.Background(), "tcp", t.listenAddr)
	if err != nil {
		return fmt.Errorf("rafttls: listen on %s: %w", t.listenAddr, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started || t.closed {
		_ = ln.Close()
		return errors.New("rafttls: Start called twice, or after Close")
	}
	t.started, t.ln = true, ln
	t.wg.Add(1)
	go t.acceptLoop(ln)
	return nil
}

// Close stops the listener, closes every connection (accepted and
// dialled) and waits for the transport's goroutines to end.
func (t *transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.stop)
	ln := t.ln
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	t.wg.Wait()
	return nil
}

// adopt registers an open connection, and a goroutine serving it if
// serve; false if the transport is closed (the caller closes c).
func (t *transport) adopt(c net.Conn, serve bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	if serve {
		t.wg.Add(1)
	}
	return true
}

// release forgets c and closes it.
func (t *transport) release(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	_ = c.Close()
}

func (t *transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// acceptLoop accepts connections until the listener closes; each gets a
// goroutine (handshake, then frames) counted in wg.
func (t *transport) acceptLoop(ln net.Listener) {
	defer t.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if t.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, then retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t.logFailure("rafttls: accept failed; retrying", "error", err, "retry_in", backoff)
			timer := time.NewTimer(backoff)
			select {
			case <-t.stop:
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		backoff = 0
		if !t.adopt(c, true) {
			_ = c.Close()
			return
		}
		go t.serve(c)
	}
}

// checkPeer applies the transport's own requirements to a verified
// handshake: TLS 1.3, then VerifyPeer.
func (t *transport) checkPeer(st tls.ConnectionState) error {
	if st.Version != tls.VersionTLS13 {
		return fmt.Errorf("negotiated TLS version 0x%04x, the Raft transport requires TLS 1.3", st.Version)
	}
	if t.cfg.VerifyPeer != nil {
		if err := t.cfg.VerifyPeer(st); err != nil {
			return fmt.Errorf("peer certificate refused: %w", err)
		}
	}
	return nil
}

// peerName describes the verified peer of st for logs.
func peerName(st tls.ConnectionState) string {
	if len(st.PeerCertificates) == 0 {
		return "(no certificate)"
	}
	leaf := st.PeerCertificates[0]
	return fmt.Sprintf("CN %q serial %x", leaf.Subject.CommonName, leaf.SerialNumber)
}

// serve runs one accepted connection: handshake, peer check, preamble,
// acceptance, then frames until the connection ends.
func (t *transport) serve(raw net.Conn) {
	defer t.wg.Done()
	defer t.release(raw)
	remote := raw.RemoteAddr().String()
	tc := tls.Server(raw, t.serverTLS)
	if err := raw.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return
	}
	if err := tc.Handshake(); err != nil {
		t.refused(remote, fmt.Errorf("TLS handshake: %w", err))
		return
	}
	st := tc.ConnectionState()
	if err := t.checkPeer(st); err != nil {
		t.refused(remote, err)
		return
	}
	var pre [preambleLen]byte
	if _, err := io.ReadFull(tc, pre[:]); err != nil {
		t.refused(remote, fmt.Errorf("reading the preamble from %s: %w", peerName(st), err))
		return
	}
	kind, err := parsePreamble(pre)
	if err != nil {
		t.refused(remote, fmt.Errorf("%s: %w", peerName(st), err))
		return
	}
	if _, err := tc.Write([]byte{ackByte}); err != nil {
		return
	}
	if err := t.readFrames(tc, raw, kind); err != nil {
		t.logFailure("rafttls: closed an incoming Raft connection", "peer", remote, "kind", kindName(kind), "reason", err)
	}
	// Close sends close_notify: a snapshot sender waiting in Close learns
	// that every chunk was read.
	_ = tc.Close()
}

// readFrames hands the connection's frames to the handlers until the
// peer closes it (nil), or an error.
func (t *transport) readFrames(tc *tls.Conn, raw net.Conn, kind byte) error {
	var hdr [frameHeaderLen]byte
	var buf []byte
	for {
		if err := raw.SetReadDeadline(time.Now().Add(t.readIdle)); err != nil {
			return err
		}
		if _, err := io.ReadFull(tc, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil // the sender closed it, or Close did
			}
			return fmt.Errorf("reading a frame header: %w", err)
		}
		size := frameSize(hdr[:])
		if err := checkFrameSize(size, t.maxFrame); err != nil {
			return err
		}
		body := frameBuffer(&buf, int(size))
		for off := 0; off < len(body); {
			n := min(len(body)-off, ioChunk)
			if err := raw.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
				return err
			}
			if _, err := io.ReadFull(tc, body[off:off+n]); err != nil {
				return fmt.Errorf("reading a frame of %d bytes: %w", size, err)
			}
			off += n
		}
		// Unmarshal copies what it keeps (entries' Cmd, chunks' Data), so
		// the buffer is reused.
		if kind == kindMessages {
			var b pb.MessageBatch
			if err := b.Unmarshal(body); err != nil {
				return fmt.Errorf("decoding a message batch of %d bytes: %w", size, err)
			}
			t.onMessages(b)
		} else {
			var c pb.Chunk
			if err := c.Unmarshal(body); err != nil {
				return fmt.Errorf("decoding a snapshot chunk of %d bytes: %w", size, err)
			}
			if !t.onChunk(c) {
				return fmt.Errorf("snapshot chunk %d of shard %d replica %d rejected by the receiver", c.ChunkId, c.ShardID, c.ReplicaID)
			}
		}
		if cap(buf) > keepBuf {
			buf = nil
		}
	}
}

// frameBuffer returns a slice of size bytes, *buf's if big enough (it
// grows *buf when the size is at most keepBuf).
func frameBuffer(buf *[]byte, size int) []byte {
	if cap(*buf) < size {
		*buf = make([]byte, size)
	}
	return (*buf)[:size]
}

// refused logs a connection refused before it carried anything.
func (t *transport) refused(remote string, reason error) {
	if ok, n := t.refusals.allow(time.Now()); ok {
		t.log.Warn("rafttls: refused a Raft connection", "peer", remote, "reason", reason, "refusals_not_logged", n)
	}
}

// logFailure logs a connection that broke off, or an accept error.
func (t *transport) logFailure(msg string, args ...any) {
	if ok, n := t.failures.allow(time.Now()); ok {
		t.log.Warn(msg, append(args, "failures_not_logged", n)...)
	}
}
