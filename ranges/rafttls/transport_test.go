package rafttls

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rangestore/rangestore/security"
)

// TestExchange: message batches one way and snapshot chunks the other
// arrive whole and in order over mutual TLS 1.3; closing a snapshot
// connection returns once the receiver has handled every chunk.
func TestExchange(t *testing.T) {
	p := newPKI(t)
	a := startSecureNode(t, p.manager(t, security.NodeUser))
	b := startSecureNode(t, p.manager(t, security.NodeUser))

	conn := a.dial(t, b)
	defer conn.Close()
	if v := conn.(*msgConn).tc.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated TLS version 0x%04x, want 1.3", v)
	}
	var sent [][]byte
	for i, shape := range [][2]int{{1, 0}, {16, 256}, {3, 200 << 10}, {1, 5 << 20}} {
		batch := testBatch(a.addr, shape[0], shape[1])
		batch.Requests[0].Commit = uint64(i)
		sent = append(sent, marshaled(t, &batch))
		if err := conn.SendMessageBatch(batch); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	b.rec.waitFor(t, 20*time.Second, "4 batches", func(n, _ int) bool { return n >= 4 })
	b.rec.mu.Lock()
	for i := range sent {
		if got := marshaled(t, &b.rec.batches[i]); !bytes.Equal(got, sent[i]) {
			t.Errorf("batch %d arrived different: %d bytes, sent %d", i, len(got), len(sent[i]))
		}
	}
	b.rec.mu.Unlock()

	sc, err := b.tr.GetSnapshotConnection(ctxTimeout(t, 10*time.Second), a.addr)
	if err != nil {
		t.Fatal(err)
	}
	var sentChunks [][]byte
	const chunks = 5
	for i := range uint64(chunks) {
		ch := testChunk(i, chunks, 2<<20)
		sentChunks = append(sentChunks, marshaled(t, &ch))
		if err := sc.SendChunk(ch); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	sc.Close()
	// No wait: Close returned, so every chunk was handled.
	a.rec.mu.Lock()
	defer a.rec.mu.Unlock()
	if len(a.rec.chunks) != chunks {
		t.Fatalf("after the snapshot connection's Close, %d chunks handled, want %d", len(a.rec.chunks), chunks)
	}
	for i := range sentChunks {
		if got := marshaled(t, &a.rec.chunks[i]); !bytes.Equal(got, sentChunks[i]) {
			t.Errorf("chunk %d arrived different", i)
		}
	}
	if len(a.rec.batches) != 0 || len(b.rec.chunks) != 0 {
		t.Errorf("frames crossed kinds: a has %d batches, b %d chunks", len(a.rec.batches), len(b.rec.chunks))
	}
}

// TestChunkRejected: a chunk handler returning false closes that
// connection; the sender's next sends fail.
func TestChunkRejected(t *testing.T) {
	p := newPKI(t)
	a := startSecureNode(t, p.manager(t, security.NodeUser))
	b := startSecureNode(t, p.manager(t, security.NodeUser))
	b.rec.rejectChunks = true
	sc, err := a.tr.GetSnapshotConnection(ctxTimeout(t, 10*time.Second), b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.SendChunk(testChunk(0, 3, 1024)); err != nil {
		t.Fatal(err)
	}
	b.rec.waitFor(t, 10*time.Second, "the first chunk", func(_, n int) bool { return n >= 1 })
	deadline := time.Now().Add(10 * time.Second)
	for i := uint64(1); ; i++ {
		if err := sc.SendChunk(testChunk(i, 3, 64<<10)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sends still succeed 10s after the receiver rejected a chunk")
		}
	}
	if _, n := b.rec.counts(); n != 1 {
		t.Errorf("%d chunks handled after the rejection, want 1", n)
	}
	if !strings.Contains(b.logs.String(), "rejected by the receiver") {
		t.Errorf("log does not say the chunk was rejected:\n%s", b.logs.String())
	}
}

// TestRefusals: a certificate of another CA, a client certificate of
// the same CA, a plaintext client and a stranger's preamble are all
// refused, nothing reaches the handlers, and the refusals are logged
// with the peer and the reason.
func TestRefusals(t *testing.T) {
	p := newPKI(t)
	a := startSecureNode(t, p.manager(t, security.NodeUser))
	other := newPKI(t) // a second CA, with its own node certificate
	om := other.manager(t, security.NodeUser)

	t.Run("other CA, dialled", func(t *testing.T) {
		// A node of the other CA refuses a's certificate in its handshake.
		o := startSecureNode(t, om)
		_, err := o.tr.GetConnection(ctxTimeout(t, 10*time.Second), a.addr)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("dial with another CA's node certificate: err %v, want a certificate error", err)
		}
		// a logs o's verdict (each subtest waits for its refusal's line,
		// so that none arrives during the next one).
		waitLog(t, a.logs, "bad certificate")
	})
	t.Run("other CA, server verdict", func(t *testing.T) {
		a.unlimitLogs()
		// Skipping our own verification, the server's verdict shows.
		cfg := om.ClientTLS()
		cfg.InsecureSkipVerify, cfg.VerifyConnection = true, nil
		if _, err := rawTLS(t, a.addr, cfg, kindMessages); err == nil {
			t.Fatal("a's server accepted a certificate of another CA")
		}
		waitLog(t, a.logs, "TLS handshake")
	})
	t.Run("client certificate", func(t *testing.T) {
		a.unlimitLogs()
		rootM := p.manager(t, security.RootUser)
		logs := &logBuffer{}
		cfg := nodeConfig(t, p.manager(t, security.NodeUser), logs)
		cfg.ClientTLS = rootM.ClientTLS
		c := startNode(t, New(cfg), logs)
		_, err := c.tr.GetConnection(ctxTimeout(t, 10*time.Second), a.addr)
		if err == nil || !strings.Contains(err.Error(), "did not accept") {
			t.Fatalf("dial with the client certificate of root: err %v, want a refusal", err)
		}
		waitLog(t, a.logs, `certificate of \"root\" is not a node certificate`)
		if !strings.Contains(logs.String(), "could not open a Raft connection") {
			t.Errorf("the dialling side did not log its refusal:\n%s", logs.String())
		}
	})
	t.Run("plaintext", func(t *testing.T) {
		a.unlimitLogs()
		c, err := net.DialTimeout("tcp", a.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		frame := appendPreamble(nil, kindMessages)
		frame = binary.BigEndian.AppendUint32(frame, 3)
		frame = append(frame, 1, 2, 3)
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		// The server answers with at most a TLS alert, then closes.
		got, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server kept a plaintext connection open")
		}
		if len(got) > 0 && got[0] == ackByte {
			t.Fatal("the server accepted a plaintext connection")
		}
		waitLog(t, a.logs, "TLS handshake")
	})
	t.Run("TLS 1.2", func(t *testing.T) {
		a.unlimitLogs()
		cfg := p.manager(t, security.NodeUser).ClientTLS()
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		if _, err := rawTLS(t, a.addr, cfg, kindMessages); err == nil {
			t.Fatal("a's server accepted TLS 1.2")
		}
		waitLog(t, a.logs, "unsupported versions")
	})
	t.Run("bad preamble", func(t *testing.T) {
		a.unlimitLogs()
		nm := p.manager(t, security.NodeUser)
		if _, err := rawTLS(t, a.addr, nm.ClientTLS(), 'x'); err == nil {
			t.Fatal("a's server accepted an unknown connection kind")
		}
		waitLog(t, a.logs, "unknown Raft connection kind")
	})
	if n, c := a.rec.counts(); n != 0 || c != 0 {
		t.Errorf("refused connections delivered %d batches and %d chunks", n, c)
	}
}

// waitLog waits (up to 10 s) for the log to contain s: the server logs
// after the client already saw the refusal.
func waitLog(t *testing.T, logs *logBuffer, s string) {
	t.Helper()
	eventually(t, 10*time.Second, func() string { return fmt.Sprintf("the log to contain %q; it has:\n%s", s, logs.String()) },
		func() bool { return strings.Contains(logs.String(), s) })
}

// eventually checks cond every 10 ms until it holds, for at most d.
func eventually(t *testing.T, d time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("after %v: still waiting for %s", d, what())
		}
	}
}

// TestRefusalLogLimited: a peer retrying with a refused certificate gets
// one log line per interval, not one per attempt.
func TestRefusalLogLimited(t *testing.T) {
	p := newPKI(t)
	a := startSecureNode(t, p.manager(t, security.NodeUser))
	rootM := p.manager(t, security.RootUser)
	for range 5 {
		if _, err := rawTLS(t, a.addr, rootM.ClientTLS(), kindMessages); err == nil {
			t.Fatal("a client certificate was accepted")
		}
	}
	waitLog(t, a.logs, "refused a Raft connection")
	eventually(t, 10*time.Second, func() string { return "4 refusals held back" }, func() bool {
		a.tr.refusals.mu.Lock()
		defer a.tr.refusals.mu.Unlock()
		return a.tr.refusals.suppressed == 4
	})
	if n := strings.Count(a.logs.String(), "refused a Raft connection"); n != 1 {
		t.Errorf("%d refusal lines for 5 refusals within %v, want 1:\n%s", n, logEvery, a.logs.String())
	}
}

// TestReload: after the node certificate is recreated and the Managers
// reload, a new connection presents the new serial on both sides, and a
// connection opened before keeps working.
func TestReload(t *testing.T) {
	p := newPKI(t)
	ma, mb := p.manager(t, security.NodeUser), p.manager(t, security.NodeUser)
	var mu sync.Mutex
	var seenByA []*big.Int // serials of the clients a accepted
	logs := &logBuffer{}
	cfg := nodeConfig(t, ma, logs)
	cfg.VerifyPeer = func(st tls.ConnectionState) error {
		mu.Lock()
		seenByA = append(seenByA, st.PeerCertificates[0].SerialNumber)
		mu.Unlock()
		return requireNode(st)
	}
	a := startNode(t, New(cfg), logs)
	b := startSecureNode(t, mb)
	lastSeen := func() *big.Int {
		mu.Lock()
		defer mu.Unlock()
		return seenByA[len(seenByA)-1]
	}

	old, ok := new(big.Int).SetString(mb.Certs()[len(mb.Certs())-1].Serial, 16)
	if !ok {
		t.Fatalf("serial %q is not hex", mb.Certs()[len(mb.Certs())-1].Serial)
	}
	c1 := b.dial(t, a)
	defer c1.Close()
	if got := serverSerial(c1); got.Cmp(old) != 0 {
		t.Fatalf("a presented serial %x, want %x", got, old)
	}

	fresh, err := security.CreateNode(p.dir, p.caKey, nodeHosts, security.CreateOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if fresh.SerialNumber.Cmp(old) == 0 {
		t.Fatal("the recreated certificate has the old serial")
	}
	for _, m := range []*security.Manager{ma, mb} {
		if err := m.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	c2 := b.dial(t, a)
	defer c2.Close()
	if got := serverSerial(c2); got.Cmp(fresh.SerialNumber) != 0 {
		t.Errorf("after the reload a presented serial %x, want the new %x", got, fresh.SerialNumber)
	}
	if got := lastSeen(); got.Cmp(fresh.SerialNumber) != 0 {
		t.Errorf("after the reload b presented serial %x, want the new %x", got, fresh.SerialNumber)
	}
	if err := c1.SendMessageBatch(testBatch(b.addr, 1, 10)); err != nil {
		t.Fatalf("the connection opened before the reload: %v", err)
	}
	if err := c2.SendMessageBatch(testBatch(b.addr, 1, 10)); err != nil {
		t.Fatal(err)
	}
	a.rec.waitFor(t, 10*time.Second, "a batch on each connection", func(n, _ int) bool { return n >= 2 })
}

// serverSerial is the serial of the certificate the server of c presented.
func serverSerial(c any) *big.Int {
	return c.(*msgConn).tc.ConnectionState().PeerCertificates[0].SerialNumber
}

// TestFrameLimits: a sender refuses a batch over the limit by name and
// its connection stays usable; a receiver refuses a frame header over
// the limit (without reading or allocating it) and an empty frame,
// closing only that connection.
func TestFrameLimits(t *testing.T) {
	p := newPKI(t)
	logs := &logBuffer{}
	small := New(nodeConfig(t, p.manager(t, security.NodeUser), logs))
	small.lim.maxFrame = 64 << 10
	s := startNode(t, small, logs)
	r := startSecureNode(t, p.manager(t, security.NodeUser))

	conn := s.dial(t, r)
	defer conn.Close()
	err := conn.SendMessageBatch(testBatch(s.addr, 2, 40<<10))
	var tooLarge *FrameTooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Limit != 64<<10 || !strings.Contains(err.Error(), "max frame size") {
		t.Fatalf("a batch of 80 KiB over a 64 KiB limit: err %v", err)
	}
	if err := conn.SendMessageBatch(testBatch(s.addr, 2, 10<<10)); err != nil {
		t.Fatalf("after a refused batch the connection is unusable: %v", err)
	}
	r.rec.waitFor(t, 10*time.Second, "the batch under the limit", func(n, _ int) bool { return n == 1 })

	nm := p.manager(t, security.NodeUser)
	for _, tc := range []struct {
		size uint32
		want string
	}{
		{MaxFrameSize + 1, "exceeds the max frame size of 100663296 bytes"},
		{0xFFFFFFFF, "frame of 4294967295 bytes exceeds"},
		{0, "empty frame"},
	} {
		c, err := rawTLS(t, r.addr, nm.ClientTLS(), kindMessages)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(binary.BigEndian.AppendUint32(nil, tc.size)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("a frame of %d bytes: the receiver kept the connection open", tc.size)
			}
		}
		waitLog(t, r.logs, tc.want)
		r.unlimitLogs()
	}
	// The receiver still serves.
	c2 := s.dial(t, r)
	defer c2.Close()
	if err := c2.SendMessageBatch(testBatch(s.addr, 1, 10)); err != nil {
		t.Fatal(err)
	}
	r.rec.waitFor(t, 10*time.Second, "a batch on a new connection", func(n, _ int) bool { return n == 2 })
}

// TestStalledPeer: a send to a peer that stopped reading fails at the
// write deadline instead of blocking its sender.
func TestStalledPeer(t *testing.T) {
	p := newPKI(t)
	logs := &logBuffer{}
	f := New(nodeConfig(t, p.manager(t, security.NodeUser), logs))
	f.lim.writeTimeout = 300 * time.Millisecond
	s := startNode(t, f, logs)
	r := startSecureNode(t, p.manager(t, security.NodeUser))
	release := make(chan struct{})
	defer close(release) // before the transports close (cleanups run after)
	r.rec.mu.Lock()
	r.rec.hold = release
	r.rec.mu.Unlock()
	conn := s.dial(t, r)
	defer conn.Close()
	batch := testBatch(s.addr, 1, 1<<20)
	start := time.Now()
	sent := 0
	var err error
	for ; sent < 500; sent++ { // far more than the socket buffers hold
		if err = conn.SendMessageBatch(batch); err != nil {
			break
		}
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after %d sends of 1 MiB to a receiver that stopped reading: err %v, want a write deadline error", sent, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the sender was blocked %v", d)
	}
	t.Logf("%d batches of 1 MiB sent before the deadline hit, after %v", sent, time.Since(start))
}

// TestIdleReaped: an accepted connection on which nothing arrives for
// the idle timeout is closed, and logged.
func TestIdleReaped(t *testing.T) {
	p := newPKI(t)
	logs := &logBuffer{}
	f := New(nodeConfig(t, p.manager(t, security.NodeUser), logs))
	f.lim.readIdle = 200 * time.Millisecond
	r := startNode(t, f, logs)
	s := startSecureNode(t, p.manager(t, security.NodeUser))
	conn := s.dial(t, r)
	defer conn.Close()
	if err := conn.SendMessageBatch(testBatch(s.addr, 1, 10)); err != nil {
		t.Fatal(err)
	}
	r.rec.waitFor(t, 10*time.Second, "the batch", func(n, _ int) bool { return n == 1 })
	waitLog(t, logs, "i/o timeout")
	eventually(t, 10*time.Second, func() string { return "the receiver to drop the idle connection" }, func() bool {
		r.tr.mu.Lock()
		defer r.tr.mu.Unlock()
		return len(r.tr.conns) == 0
	})
}

// TestClose: Close with connections open both ways, a connection stuck
// before its handshake and one stuck after it returns promptly, leaves
// no goroutine, and makes sends and dials fail.
func TestClose(t *testing.T) {
	p := newPKI(t)
	a := startSecureNode(t, p.manager(t, security.NodeUser))
	b := startSecureNode(t, p.manager(t, security.NodeUser))
	ab := a.dial(t, b)
	ba, err := b.tr.GetSnapshotConnection(ctxTimeout(t, 10*time.Second), a.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := ab.SendMessageBatch(testBatch(a.addr, 1, 10)); err != nil {
		t.Fatal(err)
	}
	b.rec.waitFor(t, 10*time.Second, "a batch", func(n, _ int) bool { return n == 1 })
	silent, err := net.DialTimeout("tcp", a.addr, 5*time.Second) // never handshakes
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	idle, err := rawTLS(t, a.addr, p.manager(t, security.NodeUser).ClientTLS(), kindMessages) // accepted, sends nothing
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	start := time.Now()
	for _, n := range []*node{a, b} {
		if err := n.tr.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v with connections open", d)
	}
	if err := ab.SendMessageBatch(testBatch(a.addr, 1, 10)); err == nil {
		t.Error("a send on a closed transport's connection succeeded")
	}
	if _, err := a.tr.GetConnection(ctxTimeout(t, 10*time.Second), b.addr); !errors.Is(err, errClosed) {
		t.Errorf("dial on a closed transport: err %v, want %v", err, errClosed)
	}
	if err := a.tr.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	ab.Close()
	ba.Close()
	if err := a.tr.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
	_ = silent.Close()
	_ = idle.Close()
	goleak.VerifyNone(t)
}

// TestConfigChecked: a transport without TLS, or whose server would not
// require client certificates, does not start; a dial configuration
// that skips verification or has no certificate is refused.
func TestConfigChecked(t *testing.T) {
	p := newPKI(t)
	m := p.manager(t, security.NodeUser)
	good := nodeConfig(t, m, &logBuffer{})
	for name, tc := range map[string]struct {
		mod  func(c *Config)
		want string
	}{
		"no server TLS": {func(c *Config) { c.ServerTLS = nil }, "ServerTLS is nil"},
		"no client TLS": {func(c *Config) { c.ClientTLS = nil }, "ClientTLS is nil"},
		"no client auth": {func(c *Config) {
			c.ServerTLS = &tls.Config{Certificates: m.ClientTLS().Certificates, ClientAuth: tls.VerifyClientCertIfGiven}
		}, "want RequireAndVerifyClientCert"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			tr := New(cfg).Create(configFor(freeAddr(t)), nil, nil)
			err := tr.Start()
			if err == nil {
				_ = tr.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to mention %q", err, tc.want)
			}
			_ = tr.Close()
		})
	}
	a := startSecureNode(t, m)
	for name, tc := range map[string]struct {
		mod  func(c *tls.Config)
		want string
	}{
		"skip verify":    {func(c *tls.Config) { c.InsecureSkipVerify = true }, "InsecureSkipVerify"},
		"no certificate": {func(c *tls.Config) { c.Certificates = nil }, "no certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := good
			cfg.ClientTLS = func() *tls.Config {
				c := m.ClientTLS()
				tc.mod(c)
				return c
			}
			b := startNode(t, New(cfg), &logBuffer{})
			_, err := b.tr.GetConnection(ctxTimeout(t, 10*time.Second), a.addr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestServerConfigRequiresTLS13: the server configuration the transport
// uses requires TLS 1.3, also in what GetConfigForClient returns, and
// leaves the given configuration unchanged.
func TestServerConfigRequiresTLS13(t *testing.T) {
	per := &tls.Config{MinVersion: tls.VersionTLS12}
	base := &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return per, nil }}
	c := serverConfig(base)
	if c.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion 0x%04x, want TLS 1.3", c.MinVersion)
	}
	got, err := c.GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil || got.MinVersion != tls.VersionTLS13 {
		t.Errorf("per-handshake config: MinVersion 0x%04x (%v), want TLS 1.3", got.MinVersion, err)
	}
	if base.MinVersion != tls.VersionTLS12 || per.MinVersion != tls.VersionTLS12 {
		t.Error("serverConfig changed the configurations it was given")
	}
}

func TestValidate(t *testing.T) {
	f := New(Config{})
	for addr, ok := range map[string]bool{
		"127.0.0.1:26257":   true,
		"localhost:1":       true,
		"node-3.dc1:65535":  true,
		"[::1]:26257":       true,
		"127.0.0.1":         false,
		"127.0.0.1:0":       false,
		"127.0.0.1:65536":   false,
		"127.0.0.1:http":    false,
		":26257":            false,
		"a b:1":             false,
		"user@host:1":       false,
		"":                  false,
		"::1:26257":         false,
		"127.0.0.1:26257/x": false,
	} {
		if got := f.Validate(addr); got != ok {
			t.Errorf("Validate(%q) = %v, want %v (%v)", addr, got, ok, checkAddress(addr))
		}
	}
}

func TestPreamble(t *testing.T) {
	for _, k := range []byte{kindMessages, kindChunks} {
		got, err := parsePreamble([preambleLen]byte(appendPreamble(nil, k)))
		if err != nil || got != k {
			t.Errorf("kind %q: got %q, %v", k, got, err)
		}
	}
	for _, tc := range []struct {
		b    string
		want string
	}{
		{"GET / ", "not a rangestore Raft connection"},
		{"RSRT\x02m", "protocol version 2"},
		{"RSRT\x01z", "unknown Raft connection kind 'z'"},
	} {
		_, err := parsePreamble([preambleLen]byte([]byte(tc.b)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.b, err, tc.want)
		}
	}
}

func TestLogLimiter(t *testing.T) {
	l := logLimiter{every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	for _, step := range []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0}, {time.Second, false, 0}, {9 * time.Second, false, 0},
		{10 * time.Second, true, 2}, {11 * time.Second, false, 0}, {60 * time.Second, true, 1},
	} {
		ok, n := l.allow(t0.Add(step.at))
		if ok != step.ok || n != step.suppressed {
			t.Errorf("at +%v: allow = %v, %d; want %v, %d", step.at, ok, n, step.ok, step.suppressed)
		}
	}
}

// TestSendAfterPeerRestart: a message connection whose receiver went away
// (its transport closed, as when its process is killed) fails the next
// send only if the peer cannot be dialled again; once the peer listens on
// the same address again, the next send goes on a new connection and
// arrives, with no failed send in between (a batch written into the dead
// connection was lost, and the failure that followed tripped Dragonboat's
// per-peer circuit breaker after the peer was back).
func TestSendAfterPeerRestart(t *testing.T) {
	p := newPKI(t)
	a := startSecureNode(t, p.manager(t, security.NodeUser))
	b := startSecureNode(t, p.manager(t, security.NodeUser))
	conn := a.dial(t, b)
	defer conn.Close()
	if err := conn.SendMessageBatch(testBatch(a.addr, 1, 10)); err != nil {
		t.Fatal(err)
	}
	b.rec.waitFor(t, 10*time.Second, "the first batch", func(n, _ int) bool { return n == 1 })
	if err := b.tr.Close(); err != nil {
		t.Fatal(err)
	}
	mc := conn.(*msgConn)
	select {
	case <-mc.peerGone:
	case <-time.After(10 * time.Second):
		t.Fatal("the sender did not notice within 10 s that the receiver closed the connection")
	}
	if err := conn.SendMessageBatch(testBatch(a.addr, 1, 10)); err == nil {
		t.Fatal("a send to a peer that is gone (nothing listens) succeeded")
	}

	// The peer comes back on the same address.
	logs := &logBuffer{}
	b2 := &node{addr: b.addr, rec: newRecorder(), logs: logs}
	b2.tr = New(nodeConfig(t, p.manager(t, security.NodeUser), logs)).Create(configFor(b.addr), b2.rec.onMessages, b2.rec.onChunk).(*transport)
	if err := b2.tr.Start(); err != nil {
		t.Fatal(err)
	}
	defer b2.tr.Close()
	for i := range 3 {
		if err := conn.SendMessageBatch(testBatch(a.addr, 1, 10)); err != nil {
			t.Fatalf("send %d after the peer restarted: %v", i, err)
		}
	}
	b2.rec.waitFor(t, 10*time.Second, "3 batches at the restarted peer", func(n, _ int) bool { return n == 3 })
}
