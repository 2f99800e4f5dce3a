package gossip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// errTransportShutdown is what sends after Shutdown get. memberlist's
// probes still in flight when it shuts down meet it; the log writer
// (gossip.go) keeps those at debug level.
var errTransportShutdown = errors.New("gossip: TLS: the transport is shut down")

// TLSConfig makes gossip use mutual TLS (TLSTransport) instead of
// memberlist's plaintext UDP and TCP. The functions are called for every
// new connection, so that a certificate reload takes effect without a
// restart.
type TLSConfig struct {
	// Server returns the configuration of accepted connections. It must
	// require and verify client certificates
	// (tls.RequireAndVerifyClientCert) and present a certificate.
	Server func() *tls.Config
	// Client returns the configuration of dialed connections. It must
	// present a certificate and verify the server's
	// (InsecureSkipVerify unset).
	Client func() *tls.Config
	// VerifyPeer, if set, is given the peer's verified leaf certificate
	// on both sides of every connection once the handshake is done; an
	// error refuses the connection (e.g. a certificate of the right CA
	// that is not a node's). Unset, any certificate the configs verify is
	// accepted.
	VerifyPeer func(*x509.Certificate) error
}

// Defaults of TLSTransportConfig.
const (
	// DefaultMaxPacketBytes bounds a packet (one of memberlist's UDP
	// messages), as memberlist's own UDP receive buffer does.
	DefaultMaxPacketBytes = 64 << 10
	// DefaultHandshakeTimeout bounds an accepted connection's handshake
	// and its header (kind byte, packet sender's address), and a dialed
	// packet connection's.
	DefaultHandshakeTimeout = 5 * time.Second
)

const (
	// The first byte a dialer writes on a new connection, once the TLS
	// handshake is done.
	kindPacket byte = 'p' // length-prefixed packets follow, one way
	kindStream byte = 's' // one memberlist stream follows

	// packetQueueLen bounds the packets waiting for one peer's
	// connection; beyond it WriteTo drops (packets are best effort).
	packetQueueLen = 256
	// packetIdle: a packet connection with nothing to send this long is
	// closed and its sender exits (members that left, old ports).
	packetIdle = 30 * time.Second
	// packetReadIdle: a received packet connection with no packet this
	// long is closed (its sender vanished without closing it); well
	// above packetIdle, after which a live sender closes it itself.
	packetReadIdle = 3 * packetIdle
	// packetWriteTimeout bounds writing one packet.
	packetWriteTimeout = 2 * time.Second
	// maxAddrLen bounds the sender's address in a packet connection's
	// header (its length is one byte).
	maxAddrLen = 255
)

// TLSTransportConfig configures a TLSTransport.
type TLSTransportConfig struct {
	// BindAddr is the host:port (an IP literal) of the TLS listener;
	// port 0 picks a free one.
	BindAddr string
	TLS      TLSConfig
	// MaxPacketBytes bounds a packet, sent or received
	// (0 = DefaultMaxPacketBytes).
	MaxPacketBytes int
	// HandshakeTimeout: 0 = DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	Logger           *slog.Logger
}

// TLSTransport is a memberlist transport that carries both memberlist's
// packets and its streams over mutual TLS, on one TCP listener (no UDP).
//
// Every connection starts, after the handshake, with a kind byte. A
// stream connection is handed to memberlist as is. Packets to a peer
// travel on one cached connection per peer address, opened on the first
// packet and re-dialed after an error: its header is the sender's
// advertised gossip address (a length byte, then host:port), which the
// receiver gives memberlist as the packet's origin (memberlist answers
// there, not to the connection's ephemeral port); then each packet is a
// 4-byte big-endian length and the bytes, at most MaxPacketBytes (a
// larger frame closes the connection).
//
// Goroutines: the accept loop, one per accepted connection (handshake,
// then a packet reader until the connection ends; a stream leaves it,
// memberlist owns it then), and one sender per peer address (exits after
// packetIdle without packets). Shutdown stops them all, closing the
// listener and every connection the transport owns, and waits for them.
type TLSTransport struct {
	cfg      TLSTransportConfig
	ln       net.Listener
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	// ctx is cancelled by Shutdown: the owned goroutines' stop signal
	// and the dials' context.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	// conns: the TCP connections this transport owns (accepted ones until
	// handed to memberlist as a stream, and the packet connections it
	// dialed), closed by Shutdown.
	conns map[net.Conn]struct{}
	peers map[string]*packetPeer // by address
	// advertise is this node's gossip address as memberlist advertises it
	// (FinalAdvertiseAddr), sent in packet headers.
	advertise string
}

// packetPeer is the packet sender of one peer address.
type packetPeer struct {
	addr  string
	queue chan []byte
}

var _ memberlist.NodeAwareTransport = (*TLSTransport)(nil)

// NewTLSTransport checks the configuration and starts listening.
func NewTLSTransport(cfg TLSTransportConfig) (*TLSTransport, error) {
	if cfg.TLS.Server == nil {
		return nil, errors.New("gossip: TLS: a Server config function is required")
	}
	if cfg.TLS.Client == nil {
		return nil, errors.New("gossip: TLS: a Client config function is required")
	}
	if err := checkServerTLS(cfg.TLS.Server()); err != nil {
		return nil, err
	}
	if err := checkClientTLS(cfg.TLS.Client()); err != nil {
		return nil, err
	}
	if cfg.MaxPacketBytes == 0 {
		cfg.MaxPacketBytes = DefaultMaxPacketBytes
	}
	if cfg.MaxPacketBytes < 0 {
		return nil, fmt.Errorf("gossip: TLS: MaxPacketBytes %d is negative", cfg.MaxPacketBytes)
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.HandshakeTimeout < 0 {
		return nil, fmt.Errorf("gossip: TLS: HandshakeTimeout %v is negative", cfg.HandshakeTimeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ap, err := netip.ParseAddrPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip: TLS: bind address %q (an IP and a port): %w", cfg.BindAddr, err)
	}
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("gossip: TLS: listen on %s: %w", cfg.BindAddr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &TLSTransport{cfg: cfg, ln: ln, packetCh: make(chan *memberlist.Packet), streamCh: make(chan net.Conn),
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}, peers: map[string]*packetPeer{},
		advertise: ln.Addr().String()}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

// checkServerTLS refuses a server config that would not authenticate
// its clients by certificate, or has no certificate of its own.
func checkServerTLS(c *tls.Config) error {
	switch {
	case c == nil:
		return errors.New("gossip: TLS: the Server config function returned nil")
	case c.GetConfigForClient != nil:
		return nil // decides per client
	case c.ClientAuth != tls.RequireAndVerifyClientCert:
		return fmt.Errorf("gossip: TLS: the server config must set ClientAuth to RequireAndVerifyClientCert (it is %v): gossip peers authenticate by certificate", c.ClientAuth)
	case len(c.Certificates) == 0 && c.GetCertificate == nil:
		return errors.New("gossip: TLS: the server config has no certificate (Certificates or GetCertificate)")
	}
	return nil
}

// checkClientTLS refuses a client config that would not present a
// certificate or would not verify the server's.
func checkClientTLS(c *tls.Config) error {
	switch {
	case c == nil:
		return errors.New("gossip: TLS: the Client config function returned nil")
	case c.InsecureSkipVerify:
		return errors.New("gossip: TLS: the client config sets InsecureSkipVerify: gossip peers must verify each other's certificates")
	case len(c.Certificates) == 0 && c.GetClientCertificate == nil:
		return errors.New("gossip: TLS: the client config has no certificate (Certificates or GetClientCertificate): gossip uses mutual TLS")
	}
	return nil
}

// Port is the listener's port.
func (t *TLSTransport) Port() int { return t.ln.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr implements memberlist.Transport: ip and port if
// given, else the listener's address, which must then be a specific IP
// (peers dial the advertised address and check the node certificate
// against it).
func (t *TLSTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	var addr net.IP
	if ip != "" {
		if addr = net.ParseIP(ip); addr == nil {
			return nil, 0, fmt.Errorf("gossip: TLS: advertise address %q is not an IP", ip)
		}
	} else {
		la := t.ln.Addr().(*net.TCPAddr)
		if la.IP.IsUnspecified() {
			return nil, 0, fmt.Errorf("gossip: TLS: bound to the unspecified address %s: give a specific IP in the bind address (peers dial it and check the node certificate against it)", la)
		}
		addr, port = la.IP, la.Port
	}
	if ip4 := addr.To4(); ip4 != nil {
		addr = ip4
	}
	t.mu.Lock()
	t.advertise = net.JoinHostPort(addr.String(), strconv.Itoa(port))
	t.mu.Unlock()
	return addr, port, nil
}

// PacketCh implements memberlist.Transport.
func (t *TLSTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh implements memberlist.Transport.
func (t *TLSTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// WriteTo implements memberlist.Transport.
func (t *TLSTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport: it queues the
// packet for the peer's connection (opened by its sender if need be) and
// returns at once, as a UDP send would; a full queue drops it.
func (t *TLSTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if len(b) == 0 {
		return time.Time{}, errors.New("gossip: TLS: an empty packet")
	}
	if len(b) > t.cfg.MaxPacketBytes {
		return time.Time{}, fmt.Errorf("gossip: TLS: a packet of %d bytes to %s exceeds MaxPacketBytes (%d)", len(b), a.Addr, t.cfg.MaxPacketBytes)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return time.Time{}, errTransportShutdown
	}
	p := t.peers[a.Addr]
	if p == nil {
		p = &packetPeer{addr: a.Addr, queue: make(chan []byte, packetQueueLen)}
		t.peers[a.Addr] = p
		t.wg.Add(1)
		go t.sendPackets(p)
	}
	select {
	case p.queue <- append([]byte(nil), b...):
		return time.Now(), nil
	default:
		return time.Time{}, fmt.Errorf("gossip: TLS: %d packets already wait for %s: packet dropped", packetQueueLen, a.Addr)
	}
}

// DialTimeout implements memberlist.Transport.
func (t *TLSTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport: a stream
// connection, handshake done and kind byte written, within timeout. The
// caller (memberlist) owns and closes it.
func (t *TLSTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.dial(a.Addr, kindStream, timeout)
}

// dial opens a TLS connection to addr within timeout (or until Shutdown),
// checks the peer and writes the kind byte (and, for packets, the header).
func (t *TLSTransport) dial(addr string, kind byte, timeout time.Duration) (*tls.Conn, error) {
	cfg := t.cfg.TLS.Client()
	if err := checkClientTLS(cfg); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gossip: TLS dial %s: %w", addr, err)
	}
	tc := c.(*tls.Conn)
	if err := t.verifyPeer(tc); err != nil {
		_ = tc.NetConn().Close()
		return nil, fmt.Errorf("gossip: TLS dial %s: %w", addr, err)
	}
	hdr := []byte{kind}
	if kind == kindPacket {
		t.mu.Lock()
		self := t.advertise
		t.mu.Unlock()
		if len(self) > maxAddrLen {
			_ = tc.NetConn().Close()
			return nil, fmt.Errorf("gossip: TLS dial %s: this node's address %q exceeds %d bytes", addr, self, maxAddrLen)
		}
		hdr = append(append(hdr, byte(len(self))), self...)
	}
	deadline, _ := ctx.Deadline()
	_ = tc.SetWriteDeadline(deadline)
	if _, err := tc.Write(hdr); err != nil {
		_ = tc.NetConn().Close()
		return nil, fmt.Errorf("gossip: TLS dial %s: writing the header: %w", addr, err)
	}
	_ = tc.SetWriteDeadline(time.Time{})
	return tc, nil
}

// verifyPeer applies TLSConfig.VerifyPeer to the peer's leaf certificate.
func (t *TLSTransport) verifyPeer(tc *tls.Conn) error {
	if t.cfg.TLS.VerifyPeer == nil {
		return nil
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return errors.New("the peer presented no certificate")
	}
	if err := t.cfg.TLS.VerifyPeer(certs[0]); err != nil {
		return fmt.Errorf("peer certificate %q refused: %w", certs[0].Subject.CommonName, err)
	}
	return nil
}

// track makes the transport own c (Shutdown closes it); false once shut
// down (the caller closes c).
func (t *TLSTransport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *TLSTransport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// accept hands each accepted connection to a goroutine of its own.
func (t *TLSTransport) accept() {
	defer t.wg.Done()
	var backoff time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t.cfg.Logger.Error("gossip: TLS: accept", "err", err, "retry_in", backoff)
			timer := time.NewTimer(backoff)
			select {
			case <-t.ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		backoff = 0
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			_ = c.Close()
			return
		}
		t.conns[c] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go t.serve(c)
	}
}

// serve does an accepted connection's handshake and reads its kind: a
// stream goes to memberlist, a packet connection is read here until it
// ends.
func (t *TLSTransport) serve(raw net.Conn) {
	defer t.wg.Done()
	owned := true
	defer func() {
		if owned {
			t.untrack(raw)
			_ = raw.Close()
		}
	}()
	cfg := t.cfg.TLS.Server()
	if err := checkServerTLS(cfg); err != nil {
		t.cfg.Logger.Error("gossip: TLS: connection refused", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	_ = raw.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	tc := tls.Server(raw, cfg)
	if err := tc.HandshakeContext(t.ctx); err != nil {
		level := slog.LevelWarn
		if errors.Is(err, io.EOF) || t.ctx.Err() != nil {
			level = slog.LevelDebug // a closed probe, or our Shutdown
		}
		t.cfg.Logger.Log(t.ctx, level, "gossip: TLS: handshake failed, connection refused", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	if err := t.verifyPeer(tc); err != nil {
		t.cfg.Logger.Warn("gossip: TLS: connection refused", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	var kind [1]byte
	if _, err := io.ReadFull(tc, kind[:]); err != nil {
		t.cfg.Logger.Debug("gossip: TLS: no connection kind", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	switch kind[0] {
	case kindStream:
		_ = raw.SetDeadline(time.Time{})
		select {
		case t.streamCh <- tc:
			owned = false
			t.untrack(raw)
		case <-t.ctx.Done():
		}
	case kindPacket:
		t.readPackets(tc)
	default:
		t.cfg.Logger.Warn("gossip: TLS: unknown connection kind, connection closed", "remote", raw.RemoteAddr().String(), "kind", kind[0])
	}
}

// readPackets reads a packet connection's header (its sender's address;
// the handshake deadline still applies), then its packets, delivering
// them to memberlist until the connection ends, breaks the framing or
// stays idle packetReadIdle.
func (t *TLSTransport) readPackets(tc *tls.Conn) {
	remote := tc.RemoteAddr().String()
	from, err := readPacketHeader(tc)
	if err != nil {
		t.cfg.Logger.Warn("gossip: TLS: bad packet connection header, connection closed", "remote", remote, "err", err)
		return
	}
	var lenBuf [4]byte
	for {
		_ = tc.SetReadDeadline(time.Now().Add(packetReadIdle))
		if _, err := io.ReadFull(tc, lenBuf[:]); err != nil {
			if !errors.Is(err, io.EOF) && t.ctx.Err() == nil {
				t.cfg.Logger.Debug("gossip: TLS: packet connection ended", "from", from.String(), "remote", remote, "err", err)
			}
			return
		}
		n := binary.BigEndian.Uint32(lenBuf[:])
		if n == 0 || n > uint32(t.cfg.MaxPacketBytes) {
			t.cfg.Logger.Warn("gossip: TLS: packet size out of bounds, connection closed", "from", from.String(), "remote", remote,
				"bytes", n, "max_packet_bytes", t.cfg.MaxPacketBytes)
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(tc, buf); err != nil {
			t.cfg.Logger.Debug("gossip: TLS: packet cut short", "from", from.String(), "remote", remote, "err", err)
			return
		}
		select {
		case t.packetCh <- &memberlist.Packet{Buf: buf, From: from, Timestamp: time.Now()}:
		case <-t.ctx.Done():
			return
		}
	}
}

// readPacketHeader reads a packet connection's header: a length byte,
// then the sender's gossip address, an IP and a port.
func readPacketHeader(r io.Reader) (*net.TCPAddr, error) {
	var l [1]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	if l[0] == 0 {
		return nil, errors.New("an empty sender address")
	}
	b := make([]byte, l[0])
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(string(b))
	if err != nil {
		return nil, fmt.Errorf("sender address: %w", err)
	}
	return net.TCPAddrFromAddrPort(ap), nil
}

// sendPackets is one peer's packet sender: it writes the queued packets
// on its connection, dialing it when needed, until Shutdown or packetIdle
// without packets. Failures are logged when they start and when they end
// (memberlist keeps sending to a dead member for a while).
func (t *TLSTransport) sendPackets(p *packetPeer) {
	defer t.wg.Done()
	var conn *tls.Conn
	defer func() { t.closePacketConn(conn) }()
	failing := false
	idle := time.NewTimer(packetIdle)
	defer idle.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-idle.C:
			t.mu.Lock()
			if len(p.queue) == 0 {
				delete(t.peers, p.addr) // WriteTo (under t.mu) starts a new sender
				t.mu.Unlock()
				return
			}
			t.mu.Unlock()
		case b := <-p.queue:
			var err error
			conn, err = t.sendPacket(conn, p.addr, b)
			switch {
			case err != nil && !failing && t.ctx.Err() == nil:
				t.cfg.Logger.Debug("gossip: TLS: packets dropped until the peer answers again", "to", p.addr, "err", err)
				failing = true
			case err == nil && failing:
				t.cfg.Logger.Debug("gossip: TLS: packets delivered again", "to", p.addr)
				failing = false
			}
		}
		idle.Reset(packetIdle)
	}
}

// sendPacket writes one packet on conn (dialing if nil), and once more
// on a new connection if a cached one failed; it returns the connection
// to keep (nil after a failure: the packet is lost, as a UDP one may be).
func (t *TLSTransport) sendPacket(conn *tls.Conn, addr string, b []byte) (*tls.Conn, error) {
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	frame = append(frame, b...)
	for cached := conn != nil; ; cached = false {
		if conn == nil {
			c, err := t.dial(addr, kindPacket, t.cfg.HandshakeTimeout)
			if err != nil {
				return nil, err
			}
			if !t.track(c.NetConn()) {
				_ = c.NetConn().Close()
				return nil, errTransportShutdown
			}
			conn = c
		}
		_ = conn.SetWriteDeadline(time.Now().Add(packetWriteTimeout))
		_, err := conn.Write(frame)
		if err == nil {
			return conn, nil
		}
		t.closePacketConn(conn)
		conn = nil
		if !cached || t.ctx.Err() != nil {
			return nil, fmt.Errorf("gossip: TLS: writing a packet to %s: %w", addr, err)
		}
	}
}

// closePacketConn closes a dialed packet connection (nil: nothing).
func (t *TLSTransport) closePacketConn(c *tls.Conn) {
	if c == nil {
		return
	}
	_ = c.Close() // close_notify (bounded by crypto/tls; Shutdown cuts it short), then the connection
	t.untrack(c.NetConn())
}

// Shutdown implements memberlist.Transport: it closes the listener and
// every connection the transport owns, and returns once its goroutines
// have exited. Streams handed to memberlist are memberlist's to close.
func (t *TLSTransport) Shutdown() error {
	t.mu.Lock()
	first := !t.closed
	t.closed = true
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	var err error
	if first {
		t.cancel()
		if cerr := t.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("gossip: TLS: closing the listener: %w", cerr)
		}
		for _, c := range conns {
			_ = c.Close()
		}
	}
	t.wg.Wait()
	return err
}
