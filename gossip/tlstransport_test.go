package gossip

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// testCA is a certificate authority made for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue signs a certificate for cn (with 127.0.0.1 as its IP SAN) and
// the given extended key usages.
func (ca *testCA) issue(t *testing.T, cn string, usage ...x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// nodeCert is a node certificate (CN node, server and client use).
func (ca *testCA) nodeCert(t *testing.T) tls.Certificate {
	return ca.issue(t, "node", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}

// onlyNodes is the VerifyPeer check the tests use: a node certificate.
func onlyNodes(c *x509.Certificate) error {
	if c.Subject.CommonName != "node" {
		return fmt.Errorf("CN %q is not a node's", c.Subject.CommonName)
	}
	return nil
}

// mtls is the mutual TLS setting of a member presenting cert and
// trusting roots.
func mtls(cert tls.Certificate, roots *x509.CertPool) *TLSConfig {
	return &TLSConfig{
		Server: func() *tls.Config {
			return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: roots, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
		},
		Client: func() *tls.Config {
			return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, MinVersion: tls.VersionTLS13}
		},
		VerifyPeer: onlyNodes,
	}
}

// logBuffer collects a test node's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startTLSNode starts a gossiping test node with the TLS setting tc (nil:
// plaintext), logging to logs (nil: nowhere).
func startTLSNode(t *testing.T, id uint64, tc *TLSConfig, logs *logBuffer) *node {
	t.Helper()
	n := &node{}
	logger := slog.New(slog.DiscardHandler)
	if logs != nil {
		logger = logs.logger()
	}
	g, err := Start(Config{NodeID: id, BindAddr: "127.0.0.1:0", Interval: 100 * time.Millisecond, TTL: 5 * time.Second, TLS: tc,
		Logger: logger,
		Describe: func() *rspb.StoreDescriptor {
			return &rspb.StoreDescriptor{ReplicaCount: n.replicas.Load(), Locality: []*rspb.LocalityTier{{Key: "region", Value: fmt.Sprintf("r%d", id)}}}
		}})
	if err != nil {
		t.Fatal(err)
	}
	n.g = g
	t.Cleanup(g.Close)
	return n
}

// secureCluster starts members 1..n over mutual TLS (certificates of
// ca), joined through member 1, each seeing all.
func secureCluster(t *testing.T, ca *testCA, n int, logs *logBuffer) map[uint64]*node {
	t.Helper()
	nodes := map[uint64]*node{}
	for id := uint64(1); id <= uint64(n); id++ {
		var l *logBuffer
		if id == 1 {
			l = logs
		}
		nodes[id] = startTLSNode(t, id, mtls(ca.nodeCert(t), ca.pool), l)
		nodes[id].replicas.Store(int64(10 * id))
	}
	for id := uint64(2); id <= uint64(n); id++ {
		if _, err := nodes[id].g.Join([]string{nodes[1].g.Addr()}); err != nil {
			t.Fatalf("n%d joins over TLS: %v", id, err)
		}
	}
	for id := uint64(1); id <= uint64(n); id++ {
		waitSeen(t, nodes, id, fmt.Sprintf("%d", 10*id))
	}
	return nodes
}

// TestTLSGossipMembers: three members over mutual TLS join, see each
// other's descriptors and updates; a clean leave is seen at once, a
// restarted member joins again, and a member that dies is declared dead
// by SWIM, whose probes travel as TLS packets.
func TestTLSGossipMembers(t *testing.T) {
	ca := newTestCA(t, "ca")
	logs := &logBuffer{}
	nodes := secureCluster(t, ca, 3, logs)
	for id, n := range nodes {
		if m := n.g.Members(); m != 3 {
			t.Fatalf("n%d sees %d members, want 3", id, m)
		}
	}
	nodes[2].replicas.Store(42)
	waitSeen(t, nodes, 2, "42")

	start := time.Now()
	nodes[3].g.Close()
	delete(nodes, 3)
	waitSeen(t, nodes, 3, "")
	if d := time.Since(start); d >= 5*time.Second {
		t.Fatalf("a member that left was forgotten only after %v (the TTL is 5s)", d)
	}
	t.Logf("a clean leave over TLS was forgotten in %v", time.Since(start).Round(time.Millisecond))
	timeutil.WaitFor(t, 10*time.Second, "n1 and n2 see 2 members after n3 left", func() error {
		for id, n := range nodes {
			if m := n.g.Members(); m != 2 {
				return fmt.Errorf("n%d sees %d members", id, m)
			}
		}
		return nil
	})

	// A restarted n3 (new process and port) joins again; then n2 dies
	// without leaving: SWIM over TLS declares it dead, while n1 and n3,
	// probing each other by packet, stay members.
	n3 := startTLSNode(t, 3, mtls(ca.nodeCert(t), ca.pool), nil)
	n3.replicas.Store(5)
	if _, err := n3.g.Join([]string{nodes[1].g.Addr()}); err != nil {
		t.Fatal(err)
	}
	nodes[3] = n3
	waitSeen(t, nodes, 3, "5")
	start = time.Now()
	crash(nodes[2].g)
	delete(nodes, 2)
	waitSeen(t, nodes, 2, "")
	t.Logf("a member that died without leaving was forgotten over TLS in %v", time.Since(start).Round(time.Millisecond))
	timeutil.WaitFor(t, 10*time.Second, "n1 and n3 see 2 members after n2 died", func() error {
		for id, n := range nodes {
			if m := n.g.Members(); m != 2 {
				return fmt.Errorf("n%d sees %d members", id, m)
			}
		}
		return nil
	})
	// memberlist says so when a probe's packets failed and its stream
	// fallback worked: packets did not, then.
	if l := logs.String(); strings.Contains(l, "probes failed") {
		t.Fatalf("n1's probes by packet failed:\n%s", l)
	}
}

// assertNotMember: once a later update of n2 has reached n1 (gossip
// rounds went by), no member knows the rogue node id and the rogue knows
// only itself.
func assertNotMember(t *testing.T, nodes map[uint64]*node, rogue *node, id uint64, replicas int64) {
	t.Helper()
	nodes[2].replicas.Store(replicas)
	waitSeen(t, nodes, 2, fmt.Sprintf("%d", replicas))
	for nid, n := range nodes {
		if got := seen(n, id); got != "" {
			t.Fatalf("n%d sees the refused node n%d (%s)", nid, id, got)
		}
		if m := n.g.Members(); m != len(nodes) {
			t.Fatalf("n%d sees %d members, want %d", nid, m, len(nodes))
		}
	}
	if m := rogue.g.Members(); m != 1 {
		t.Fatalf("the refused node n%d sees %d members", id, m)
	}
}

// TestTLSGossipRefusesOtherCertificates: a member whose certificate was
// signed by another CA cannot join (its handshake with the members
// fails, from either side), nor can one presenting a client certificate
// of the right CA (VerifyPeer refuses it); the members are not disturbed.
func TestTLSGossipRefusesOtherCertificates(t *testing.T) {
	ca, other := newTestCA(t, "ca"), newTestCA(t, "other-ca")
	logs := &logBuffer{}
	nodes := secureCluster(t, ca, 2, logs)

	// All of the other CA: it does not trust n1's certificate.
	foreign := startTLSNode(t, 9, mtls(other.nodeCert(t), other.pool), nil)
	_, err := foreign.g.Join([]string{nodes[1].g.Addr()})
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("a member of another CA joined, or failed otherwise: %v", err)
	}
	t.Logf("other CA, dialer's side: %v", err)
	assertNotMember(t, nodes, foreign, 9, 21)

	// It trusts our CA but presents the other CA's certificate (even
	// though n1 asks for one of our CA): n1 refuses it.
	mixedTLS := mtls(other.nodeCert(t), ca.pool)
	mixedClient := mixedTLS.Client
	mixedTLS.Client = func() *tls.Config {
		c := mixedClient()
		cert := c.Certificates[0]
		c.Certificates = nil
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		return c
	}
	mixed := startTLSNode(t, 8, mixedTLS, nil)
	if _, err := mixed.g.Join([]string{nodes[1].g.Addr()}); err == nil {
		t.Fatal("a member presenting another CA's certificate joined")
	} else {
		t.Logf("other CA, listener's side: the joiner saw %v", err)
	}
	assertNotMember(t, nodes, mixed, 8, 22)
	if l := logs.String(); !strings.Contains(l, "handshake failed, connection refused") || !strings.Contains(l, "certificate signed by unknown authority") {
		t.Fatalf("n1 did not log refusing the other CA's certificate:\n%s", l)
	}

	// A client certificate (CN root) of our CA: verified, then refused as not a node's.
	client := startTLSNode(t, 7, mtls(ca.issue(t, "root", x509.ExtKeyUsageClientAuth), ca.pool), nil)
	if _, err := client.g.Join([]string{nodes[1].g.Addr()}); err == nil {
		t.Fatal("a member presenting a client certificate joined")
	}
	assertNotMember(t, nodes, client, 7, 23)
	if l := logs.String(); !strings.Contains(l, `peer certificate \"root\" refused: CN \"root\" is not a node's`) {
		t.Fatalf("n1 did not log refusing the client certificate:\n%s", l)
	}
}

// TestTLSGossipRefusesPlaintext: a plaintext TCP connection to a TLS
// member's gossip port is closed without an answer, a plaintext
// memberlist member cannot join, and a UDP packet finds no listener (the
// port is refused, and free to bind); the members carry on.
func TestTLSGossipRefusesPlaintext(t *testing.T) {
	ca := newTestCA(t, "ca")
	logs := &logBuffer{}
	nodes := secureCluster(t, ca, 2, logs)
	addr := nodes[1].g.Addr()

	// Raw plaintext TCP: closed by n1, with at most a TLS alert.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\nplaintext gossip\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("n1 kept a plaintext connection open (read %q)", got)
	}
	if len(got) > 0 && got[0] != 0x15 { // a TLS alert record
		t.Fatalf("n1 answered plaintext with %q", got)
	}
	t.Logf("plaintext TCP: n1 closed the connection (read %d bytes, %v)", len(got), err)

	// A plaintext memberlist member.
	plain := startTLSNode(t, 6, nil, nil)
	if _, err := plain.g.Join([]string{addr}); err == nil {
		t.Fatal("a plaintext member joined a TLS gossip")
	} else {
		t.Logf("a plaintext member's join: %v", err)
	}
	assertNotMember(t, nodes, plain, 6, 31)
	if l := logs.String(); !strings.Contains(l, "handshake failed, connection refused") {
		t.Fatalf("n1 did not log refusing plaintext:\n%s", l)
	}

	// UDP: nothing listens on n1's gossip port (a datagram is refused and
	// the port can be bound), unlike a plaintext member's.
	udpRefused := func(a string) error {
		u, err := net.Dial("udp", a)
		if err != nil {
			return err
		}
		defer u.Close()
		if _, err := u.Write([]byte{0x00, 0x01, 0x02}); err != nil {
			return err
		}
		_ = u.SetReadDeadline(time.Now().Add(time.Second))
		_, err = u.Read(make([]byte, 16))
		return err
	}
	if err := udpRefused(addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a UDP datagram to the TLS gossip port %s: %v, want connection refused (no listener)", addr, err)
	}
	if err := udpRefused(plain.g.Addr()); errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("the check cannot tell: a plaintext member's UDP port %s refused a datagram", plain.g.Addr())
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	u, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatalf("binding UDP %s (a TLS member's gossip port): %v", addr, err)
	}
	_ = u.Close()

	// The members carry on.
	nodes[1].replicas.Store(77)
	waitSeen(t, nodes, 1, "77")
	if m := nodes[2].g.Members(); m != 2 {
		t.Fatalf("n2 sees %d members, want 2", m)
	}
}

// transportPair starts two transports with node certificates of one CA;
// b's packets are bounded at maxPacket bytes.
func transportPair(t *testing.T, maxPacket int, logs *logBuffer) (a, b *TLSTransport, bTLS *TLSConfig) {
	t.Helper()
	ca := newTestCA(t, "ca")
	start := func(tc *TLSConfig, maxPacket int, l *slog.Logger) *TLSTransport {
		tr, err := NewTLSTransport(TLSTransportConfig{BindAddr: "127.0.0.1:0", TLS: *tc, MaxPacketBytes: maxPacket, Logger: l})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Shutdown() })
		if _, _, err := tr.FinalAdvertiseAddr("", 0); err != nil {
			t.Fatal(err)
		}
		return tr
	}
	bTLS = mtls(ca.nodeCert(t), ca.pool)
	return start(mtls(ca.nodeCert(t), ca.pool), 0, slog.New(slog.DiscardHandler)), start(bTLS, maxPacket, logs.logger()), bTLS
}

// recvPacket waits for b's next packet.
func recvPacket(t *testing.T, b *TLSTransport) (string, string) {
	t.Helper()
	select {
	case p := <-b.PacketCh():
		return string(p.Buf), p.From.String()
	case <-time.After(10 * time.Second):
		t.Fatal("no packet within 10s")
		return "", ""
	}
}

// TestTLSTransportPacketsAndStreams: packets arrive in order, with the
// sender's gossip address (not its connection's port) as their origin;
// a packet above the limit is refused by the sender and, sent by hand,
// closes the receiver's connection, naming the limit, without disturbing
// the others; a stream carries bytes both ways.
func TestTLSTransportPacketsAndStreams(t *testing.T) {
	logs := &logBuffer{}
	a, b, bTLS := transportPair(t, 1024, logs)
	aAddr := fmt.Sprintf("127.0.0.1:%d", a.Port())
	bAddr := fmt.Sprintf("127.0.0.1:%d", b.Port())
	for i := range 3 {
		if _, err := a.WriteTo([]byte(fmt.Sprintf("packet %d", i)), bAddr); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		buf, from := recvPacket(t, b)
		if want := fmt.Sprintf("packet %d", i); buf != want || from != aAddr {
			t.Fatalf("received %q from %s, want %q from %s", buf, from, want, aAddr)
		}
	}
	if _, err := b.WriteTo(make([]byte, 1025), aAddr); err == nil || !strings.Contains(err.Error(), "exceeds MaxPacketBytes (1024)") {
		t.Fatalf("a 1025-byte packet with a 1024-byte limit: %v", err)
	}

	// A frame above b's limit, by hand: b closes the connection.
	cli := bTLS.Client()
	c, err := tls.Dial("tcp", bAddr, cli)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	self := "127.0.0.1:1"
	msg := append([]byte{kindPacket, byte(len(self))}, self...)
	msg = binary.BigEndian.AppendUint32(msg, 1025)
	if _, err := c.Write(append(msg, make([]byte, 1025)...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("b answered an oversized frame (%d bytes)", n)
	} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("b kept a connection with an oversized frame open")
	}
	if l := logs.String(); !strings.Contains(l, "packet size out of bounds") || !strings.Contains(l, "bytes=1025 max_packet_bytes=1024") {
		t.Fatalf("b did not log the oversized frame naming the limit:\n%s", l)
	}
	if _, err := a.WriteTo([]byte("still here"), bAddr); err != nil {
		t.Fatal(err)
	}
	if buf, from := recvPacket(t, b); buf != "still here" || from != aAddr {
		t.Fatalf("after the oversized frame: %q from %s", buf, from)
	}

	// A stream.
	sc, err := a.DialTimeout(bAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	var accepted net.Conn
	select {
	case accepted = <-b.StreamCh():
	case <-time.After(10 * time.Second):
		t.Fatal("no stream within 10s")
	}
	defer accepted.Close()
	if _, err := sc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	_ = accepted.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(accepted, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("stream read %q, %v", buf, err)
	}
	if _, err := accepted.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("stream answer %q, %v", buf, err)
	}

	// Shutdown stops the senders and readers; packets are refused after.
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteTo([]byte("late"), bAddr); err == nil || !strings.Contains(err.Error(), "shut down") {
		t.Fatalf("a packet after Shutdown: %v", err)
	}
}

// TestTLSTransportBadConfig: settings that would not be mutual TLS, or
// cannot work, are refused, naming what is wrong.
func TestTLSTransportBadConfig(t *testing.T) {
	ca := newTestCA(t, "ca")
	good := mtls(ca.nodeCert(t), ca.pool)
	with := func(server, client func(*tls.Config)) TLSConfig {
		tc := *good
		tc.Server = func() *tls.Config { c := good.Server(); server(c); return c }
		tc.Client = func() *tls.Config { c := good.Client(); client(c); return c }
		return tc
	}
	none := func(*tls.Config) {}
	for _, tc := range []struct {
		name string
		cfg  TLSTransportConfig
		want string
	}{
		{"no server", TLSTransportConfig{BindAddr: "127.0.0.1:0", TLS: TLSConfig{Client: good.Client}}, "Server config function is required"},
		{"no client", TLSTransportConfig{BindAddr: "127.0.0.1:0", TLS: TLSConfig{Server: good.Server}}, "Client config function is required"},
		{"client certs optional", TLSTransportConfig{BindAddr: "127.0.0.1:0", TLS: with(func(c *tls.Config) { c.ClientAuth = tls.VerifyClientCertIfGiven }, none)}, "ClientAuth to RequireAndVerifyClientCert"},
		{"server without cert", TLSTransportConfig{BindAddr: "127.0.0.1:0", TLS: with(func(c *tls.Config) { c.Certificates = nil }, none)}, "server config has no certificate"},
		{"client without cert", TLSTransportConfig{BindAddr: "127.0.0.1:0", TLS: with(none, func(c *tls.Config) { c.Certificates = nil })}, "client config has no certificate"},
		{"client skips verification", TLSTransportConfig{BindAddr: "127.0.0.1:0", TLS: with(none, func(c *tls.Config) { c.InsecureSkipVerify = true })}, "InsecureSkipVerify"},
		{"host name", TLSTransportConfig{BindAddr: "localhost:0", TLS: *good}, "bind address"},
		{"negative limit", TLSTransportConfig{BindAddr: "127.0.0.1:0", TLS: *good, MaxPacketBytes: -1}, "MaxPacketBytes"},
	} {
		tr, err := NewTLSTransport(tc.cfg)
		if err == nil {
			_ = tr.Shutdown()
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to name %q", tc.name, err, tc.want)
		}
	}
	// Through Start: an unspecified bind address cannot be advertised.
	g, err := Start(Config{NodeID: 1, BindAddr: "0.0.0.0:0", TLS: good, Logger: slog.New(slog.DiscardHandler),
		Describe: func() *rspb.StoreDescriptor { return &rspb.StoreDescriptor{} }})
	if err == nil {
		g.Close()
		t.Fatal("TLS gossip on the unspecified address was accepted")
	}
	if !strings.Contains(err.Error(), "unspecified address") {
		t.Fatalf("TLS gossip on 0.0.0.0: %v, want it to name the unspecified address", err)
	}
}
