package rafttls

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/rangestore/rangestore/security"
)

// nodeHosts are the hosts of the test node certificates.
var nodeHosts = []string{"127.0.0.1", "localhost"}

// pki is a certs directory with a CA (its key outside it), a node
// certificate for loopback and a client certificate of user root.
type pki struct {
	dir, caKey string
}

func newPKI(tb testing.TB) *pki {
	tb.Helper()
	base := tb.TempDir()
	p := &pki{dir: filepath.Join(base, "certs"), caKey: filepath.Join(base, "ca.key")}
	if _, err := security.CreateCA(p.dir, p.caKey, security.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	if _, err := security.CreateNode(p.dir, p.caKey, nodeHosts, security.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	if _, err := security.CreateClient(p.dir, p.caKey, security.RootUser, security.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	return p
}

func (p *pki) manager(tb testing.TB, user string) *security.Manager {
	tb.Helper()
	m, err := security.NewManager(security.Config{Dir: p.dir, User: user})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// requireNode is the VerifyPeer the node wiring passes: the peer's
// certificate is a node certificate.
func requireNode(st tls.ConnectionState) error {
	if len(st.PeerCertificates) == 0 {
		return fmt.Errorf("no peer certificate")
	}
	if cn := st.PeerCertificates[0].Subject.CommonName; cn != security.NodeUser {
		return fmt.Errorf("certificate of %q is not a node certificate (CN %q)", cn, security.NodeUser)
	}
	return nil
}

// nodeConfig is the Config of a node whose identity is m (user node).
func nodeConfig(tb testing.TB, m *security.Manager, logs *logBuffer) Config {
	tb.Helper()
	srv, err := m.ServerTLS()
	if err != nil {
		tb.Fatal(err)
	}
	return Config{ServerTLS: srv, ClientTLS: m.ClientTLS, VerifyPeer: requireNode, Logger: logs.logger()}
}

// logBuffer collects a transport's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// recorder is a transport's handlers: it keeps what arrives.
type recorder struct {
	mu      sync.Mutex
	batches []pb.MessageBatch
	chunks  []pb.Chunk
	// rejectChunks makes the chunk handler refuse every chunk.
	rejectChunks bool
	// hold, if set, blocks the message handler until it is closed (a
	// receiver that stopped reading).
	hold    chan struct{}
	changed chan struct{} // signalled (non-blocking) on every arrival
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) onMessages(b pb.MessageBatch) {
	r.mu.Lock()
	r.batches = append(r.batches, b)
	hold := r.hold
	r.mu.Unlock()
	r.signal()
	if hold != nil {
		<-hold
	}
}

func (r *recorder) onChunk(c pb.Chunk) bool {
	r.mu.Lock()
	r.chunks = append(r.chunks, c)
	reject := r.rejectChunks
	r.mu.Unlock()
	r.signal()
	return !reject
}

func (r *recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) counts() (batches, chunks int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.batches), len(r.chunks)
}

// waitFor waits until cond holds, for at most d.
func (r *recorder) waitFor(tb testing.TB, d time.Duration, what string, cond func(batches, chunks int) bool) {
	tb.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		if cond(r.counts()) {
			return
		}
		select {
		case <-r.changed:
		case <-timer.C:
			b, c := r.counts()
			tb.Fatalf("after %v: still waiting for %s (have %d batches, %d chunks)", d, what, b, c)
		}
	}
}

// node is a started transport with its recorder and log.
type node struct {
	tr   *transport
	addr string
	rec  *recorder
	logs *logBuffer
}

// freeAddr returns a loopback address with a port that was free.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// configFor is the NodeHost configuration of a transport at addr.
func configFor(addr string) config.NodeHostConfig { return config.NodeHostConfig{RaftAddress: addr} }

// startNode starts a transport of f on a free loopback port; it is
// closed when the test ends.
func startNode(tb testing.TB, f *Factory, logs *logBuffer) *node {
	tb.Helper()
	n := &node{addr: freeAddr(tb), rec: newRecorder(), logs: logs}
	n.tr = f.Create(configFor(n.addr), n.rec.onMessages, n.rec.onChunk).(*transport)
	if err := n.tr.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = n.tr.Close() })
	return n
}

// dial opens n's connection to peer, failing the test if it cannot; the
// caller closes it.
func (n *node) dial(tb testing.TB, peer *node) raftio.IConnection {
	tb.Helper()
	conn, err := n.tr.GetConnection(ctxTimeout(tb, 10*time.Second), peer.addr)
	if err != nil {
		tb.Fatal(err)
	}
	return conn
}

// startSecureNode starts a transport with m's identity.
func startSecureNode(tb testing.TB, m *security.Manager) *node {
	tb.Helper()
	logs := &logBuffer{}
	return startNode(tb, New(nodeConfig(tb, m, logs)), logs)
}

func testBatch(source string, n, entryBytes int) pb.MessageBatch {
	b := pb.MessageBatch{SourceAddress: source, BinVer: 210, DeploymentId: 1}
	for i := range n {
		cmd := bytes.Repeat([]byte{byte('a' + i%26)}, entryBytes)
		b.Requests = append(b.Requests, pb.Message{Type: pb.Replicate, ShardID: 7, From: 1, To: 2, Term: 3,
			LogIndex: uint64(10 + i), LogTerm: 3, Commit: 9,
			Entries: []pb.Entry{{Term: 3, Index: uint64(11 + i), Cmd: cmd}}})
	}
	return b
}

func testChunk(id, count uint64, dataBytes int) pb.Chunk {
	return pb.Chunk{ShardID: 7, ReplicaID: 2, From: 1, ChunkId: id, ChunkCount: count, ChunkSize: uint64(dataBytes),
		Index: 100, Term: 3, FileSize: uint64(dataBytes) * count, Filepath: "snapshot.gbsnap", DeploymentId: 1,
		Data: bytes.Repeat([]byte{byte(id)}, dataBytes)}
}

// marshaled returns m's encoding, for comparing what was sent with what
// arrived.
func marshaled(tb testing.TB, m interface{ Marshal() ([]byte, error) }) []byte {
	tb.Helper()
	b, err := m.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func ctxTimeout(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// rawTLS dials addr with cfg and, if the handshake completes, writes the
// preamble of kind; it returns the connection (closed when the test
// ends) and the error of reading the acceptance byte (nil: accepted).
func rawTLS(tb testing.TB, addr string, cfg *tls.Config, kind byte) (*tls.Conn, error) {
	tb.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { _ = c.Close() })
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Write(appendPreamble(nil, kind)); err != nil {
		return c, err
	}
	var ack [1]byte
	if _, err := c.Read(ack[:]); err != nil {
		return c, err
	}
	if ack[0] != ackByte {
		return c, fmt.Errorf("ack 0x%02x", ack[0])
	}
	return c, nil
}

// unlimitLogs empties the node's log and lets the next refusal and
// failure lines through the rate limits (tests that provoke several in a
// row, each checked by its own line).
func (n *node) unlimitLogs() {
	n.logs.mu.Lock()
	n.logs.b.Reset()
	n.logs.mu.Unlock()
	for _, l := range []*logLimiter{&n.tr.refusals, &n.tr.failures} {
		l.mu.Lock()
		l.next = time.Time{}
		l.mu.Unlock()
	}
}
