package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/rafttls"
	"github.com/rangestore/rangestore/security"
)

// dialWith is a client connection to addr with creds, closed at the end
// of the test.
func dialWith(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// clientManager creates a client certificate for user in the cluster's
// certs directory and returns its Manager.
func clientManager(t *testing.T, tc *TestCluster, user string) *security.Manager {
	t.Helper()
	if _, err := security.CreateClient(tc.CertsDir(), tc.CAKey(), user, security.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := security.NewManager(security.Config{Dir: tc.CertsDir(), User: user})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// rawTLSRead handshakes with addr as cfg and reads: a server that refuses
// the client's certificate says why in its alert, which the read returns.
func rawTLSRead(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

// raftPreamble dials a rafttls port with cfg (nil: plaintext TCP), sends
// a valid preamble (magic, version, message kind) and returns the byte
// the server answers (0x06: accepted) or the error that ended it.
func raftPreamble(addr string, cfg *tls.Config) (byte, error) {
	nd := &net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if cfg == nil {
		c, err = nd.Dial("tcp", addr)
	} else {
		c, err = (&tls.Dialer{NetDialer: nd, Config: cfg}).DialContext(context.Background(), "tcp", addr)
	}
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{'R', 'S', 'R', 'T', rafttls.Version, 'm'}); err != nil {
		return 0, err
	}
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	return b[0], err
}

// caPool is the pool of the cluster's ca.crt.
func caPool(t *testing.T, tc *TestCluster) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(tc.CertsDir(), security.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatal("ca.crt holds no certificate")
	}
	return p
}

// nodeSerials is the node certificate serial that node status shows for
// each node (n1..), asked of node 0 as root.
func nodeSerials(ctx context.Context, tc *TestCluster) ([]string, error) {
	var out []string
	for i := 0; i < tc.NumNodes(); i++ {
		r, err := rspb.NewAdminClient(tc.Conn(0)).NodeStatus(ctx, &rspb.NodeStatusRequest{NodeId: tc.Node(i).NodeID()})
		if err != nil {
			return nil, err
		}
		ns := r.Status
		serial := ""
		for _, c := range ns.Certs {
			if c.Kind == security.KindNode {
				serial = c.Serial
			}
		}
		if serial == "" {
			return nil, fmt.Errorf("n%d shows no node certificate (certs %v, stats error %q)", ns.Node.NodeId, ns.Certs, ns.StatsError)
		}
		out = append(out, serial)
	}
	return out, nil
}

// TestSecureCluster: a secure 3-node cluster (mutual TLS on gRPC, Raft
// and gossip) serves KV to root; plaintext clients, certificates of
// another CA (on the gRPC and the Raft port) and expired certificates are
// refused; a client certificate may use
// KV but not Internal or Admin, a node certificate not KV; node status
// and the expiry metric show the certificates, and a reload of new
// certificates shows in node status while traffic continues.
func TestSecureCluster(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Secure: true})
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		k := fmt.Sprintf("secure-%d", i)
		kvtPut(t, ctx, tc.KV(i), k, "v")
		kvtWantValue(t, ctx, tc.KV((i+1)%3), k, "v")
	}
	for i := 0; i < 3; i++ {
		if d := tc.Node(i).NodeDescriptor(); !d.Secure {
			t.Fatalf("n%d's descriptor does not say secure: %v", d.NodeId, d)
		}
	}

	// Gossip runs over mutual TLS: every node hears every store.
	waitFor(t, ctx, "gossip over TLS", func() error {
		for i := 0; i < 3; i++ {
			if got := len(tc.Node(i).Stores()); got != 3 {
				return fmt.Errorf("n%d heard %d stores by gossip, want 3", i+1, got)
			}
		}
		return nil
	})

	t.Run("PlaintextClientRefused", func(t *testing.T) {
		addr := tc.Addr(0)
		_, err := rspb.NewKVClient(connTo(t, addr)).Put(ctx, &rspb.PutRequest{Key: []byte("plain"), Value: []byte("v")})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("plaintext put: want Unavailable, got %v", err)
		}
		e := gateway.ExplainModeMismatch(ctx, err, addr, false)
		if e == nil || !strings.Contains(e.Error(), "the peer at "+addr+" serves TLS") {
			t.Fatalf("the refusal (%v) is not explained as a mode mismatch: %v", err, e)
		}
	})

	t.Run("Roles", func(t *testing.T) {
		alice := dialWith(t, tc.Addr(1), clientManager(t, tc, "alice").ClientCredentials())
		kvtPut(t, ctx, rspb.NewKVClient(alice), "alice-key", "a")
		kvtWantValue(t, ctx, rspb.NewKVClient(alice), "alice-key", "a")
		_, err := rspb.NewInternalClient(alice).RangeBatch(ctx, &rspb.RangeRequest{RangeId: 1})
		wantDenied(t, err, `user "alice"`, "/rangestore.v1.Internal/RangeBatch")
		_, err = rspb.NewAdminClient(alice).TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: 1, TargetNodeId: 2})
		wantDenied(t, err, `user "alice"`, "/rangestore.v1.Admin/TransferLease")
		// A node certificate is not a client's.
		asNode := dialWith(t, tc.Addr(1), tc.Security(0).ClientCredentials())
		_, err = rspb.NewKVClient(asNode).Get(ctx, &rspb.GetRequest{Key: []byte("alice-key")})
		wantDenied(t, err, `user "node"`, "/rangestore.v1.KV/Get")
		// Root may use Admin.
		if _, err := rspb.NewAdminClient(tc.Conn(1)).Nodes(ctx, &rspb.NodesRequest{}); err != nil {
			t.Fatalf("root: Admin.Nodes: %v", err)
		}
		// A transaction's handle is its user's: root cannot use alice's.
		b, err := rspb.NewKVClient(alice).BeginTxn(ctx, &rspb.BeginTxnRequest{})
		if err != nil {
			t.Fatal(err)
		}
		put := &rspb.BatchRequest{Txn: b.Txn, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("alice-txn"), Value: []byte("a")}}}}}
		if _, err := rspb.NewKVClient(tc.Conn(1)).Batch(ctx, put); status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "no such open transaction of this user") {
			t.Fatalf("root using alice's transaction: %v", err)
		}
		if _, err := rspb.NewKVClient(alice).Batch(ctx, put); err != nil {
			t.Fatalf("alice using her transaction: %v", err)
		}
		if _, err := rspb.NewKVClient(alice).CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: b.Txn}); err != nil {
			t.Fatalf("alice committing: %v", err)
		}
	})

	t.Run("SecondCARefusedOnGRPCAndRaft", func(t *testing.T) {
		other := t.TempDir()
		if _, err := security.CreateCA(filepath.Join(other, "certs"), filepath.Join(other, "ca.key"), security.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := security.CreateClient(filepath.Join(other, "certs"), filepath.Join(other, "ca.key"), security.RootUser, security.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := security.PathsFor(filepath.Join(other, "certs"), security.RootUser)
		cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			t.Fatal(err)
		}
		// The client trusts the cluster's CA (it sees the server fine),
		// but presents a root certificate of another CA.
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: caPool(t, tc), ServerName: "127.0.0.1"}
		_, err = rspb.NewKVClient(dialWith(t, tc.Addr(0), credentials.NewTLS(cfg))).Put(ctx, &rspb.PutRequest{Key: []byte("other-ca"), Value: []byte("v")})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("second CA put: want Unavailable (refused at the handshake), got %v", err)
		}
		if err := rawTLSRead(t, tc.Addr(0), cfg); err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
			t.Fatalf("second CA: the gRPC port's TLS refusal should name an unknown certificate authority: %v", err)
		}
		// The Raft port (rafttls), dialled directly with a valid preamble:
		// the node certificate is accepted, the second CA's refused at the
		// handshake, a client certificate of the cluster's CA refused as
		// not a node's, plaintext refused.
		raft := tc.cfgs[0].RaftAddr
		nodeCfg := tc.Security(1).ClientTLS()
		nodeCfg.ServerName = "127.0.0.1"
		if b, err := raftPreamble(raft, nodeCfg); err != nil || b != 0x06 {
			t.Fatalf("Raft port, node certificate: want the acceptance byte 0x06, got %#x, %v", b, err)
		}
		if _, err := raftPreamble(raft, cfg); err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
			t.Fatalf("Raft port, second CA: want the handshake refused (unknown certificate authority), got %v", err)
		}
		aliceCfg := clientManager(t, tc, "raftclient").ClientTLS()
		aliceCfg.ServerName = "127.0.0.1"
		if b, err := raftPreamble(raft, aliceCfg); err == nil {
			t.Fatalf("Raft port, client certificate: accepted (answered %#x)", b)
		}
		if b, err := raftPreamble(raft, nil); err == nil {
			t.Fatalf("Raft port, plaintext: accepted (answered %#x)", b)
		}
	})

	t.Run("ExpiredRefused", func(t *testing.T) {
		crt, err := security.CreateClient(tc.CertsDir(), tc.CAKey(), "shortlived", security.CreateOptions{Lifetime: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "the certificate expires", func() error {
			if !time.Now().After(crt.NotAfter) {
				return fmt.Errorf("valid until %s", crt.NotAfter)
			}
			return nil
		})
		p := security.PathsFor(tc.CertsDir(), "shortlived")
		cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			t.Fatal(err)
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: caPool(t, tc), ServerName: "127.0.0.1"}
		if err := rawTLSRead(t, tc.Addr(2), cfg); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("expired certificate: the refusal should say it expired: %v", err)
		}
		_, err = rspb.NewKVClient(dialWith(t, tc.Addr(2), credentials.NewTLS(cfg))).Get(ctx, &rspb.GetRequest{Key: []byte("x")})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("expired certificate: want Unavailable, got %v", err)
		}
		// Loading it is refused too, naming the expiry.
		if _, err := security.NewManager(security.Config{Dir: tc.CertsDir(), User: "shortlived"}); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("loading an expired certificate: %v", err)
		}
	})

	t.Run("ExpiryMetric", func(t *testing.T) {
		mfs, err := tc.Node(0).Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		want := tc.Security(0).Expiries()
		got := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "rangestore_cert_expiry_seconds" {
				continue
			}
			for _, m := range mf.Metric {
				got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
		for _, kind := range []string{security.KindCA, security.KindNode} {
			if got[kind] != float64(want[kind].Unix()) {
				t.Fatalf("rangestore_cert_expiry_seconds{kind=%q} = %v, want %d (metrics %v)", kind, got[kind], want[kind].Unix(), got)
			}
		}
	})

	t.Run("NodeStatusAndReload", func(t *testing.T) {
		before, err := nodeSerials(ctx, tc)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range before {
			if own := tc.Node(i).Certs(); s != own[len(own)-1].Serial {
				t.Fatalf("node status shows n%d's serial %s, the node uses %v", i+1, s, own)
			}
		}
		crt, err := security.CreateNode(tc.CertsDir(), tc.CAKey(), []string{"127.0.0.1", "localhost"}, security.CreateOptions{Overwrite: true})
		if err != nil {
			t.Fatal(err)
		}
		newSerial := fmt.Sprintf("%x", crt.SerialNumber)
		for i := 0; i < tc.NumNodes(); i++ {
			if err := tc.Security(i).Reload(); err != nil {
				t.Fatalf("n%d reload: %v", i+1, err)
			}
		}
		after, err := nodeSerials(ctx, tc)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range after {
			if s != newSerial || s == before[i] {
				t.Fatalf("after the reload node status shows n%d's serial %s, want the new %s (was %s)", i+1, s, newSerial, before[i])
			}
		}
		// Traffic continues: on the established connections, and on new
		// ones (handshakes with the new certificates).
		kvtPut(t, ctx, tc.KV(0), "after-reload", "v")
		fresh := rspb.NewKVClient(dialWith(t, tc.Addr(2), clientManager(t, tc, "bob").ClientCredentials()))
		kvtWantValue(t, ctx, fresh, "after-reload", "v")
		kvtPut(t, ctx, fresh, "after-reload-2", "w")
		kvtWantValue(t, ctx, tc.KV(1), "after-reload-2", "w")
	})
}

// wantDenied checks err is PERMISSION_DENIED naming each of words.
func wantDenied(t *testing.T, err error, words ...string) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("want PermissionDenied, got %v", err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("PermissionDenied %q does not name %q", err, w)
		}
	}
}

// startJoiner starts a node with an empty store and join list join, with
// certificates m (nil: insecure); it is stopped at the end of the test.
func startJoiner(t *testing.T, m *security.Manager, join string) *Node {
	t.Helper()
	n, err := Start(Config{StoreDir: t.TempDir(), ListenAddr: freeAddr(t), RaftAddr: freeAddr(t), Join: []string{join},
		Security: m, Logger: quietLogger(), ReplicateQueueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// TestMixedModesRefused: a secure node cannot join an insecure cluster,
// nor an insecure node a secure one, and each says why; a store of a
// secure cluster does not restart insecure.
func TestMixedModesRefused(t *testing.T) {
	sec := startCluster(t, TestClusterOptions{Secure: true, Nodes: 1, InitialSplits: 1})
	plain := startCluster(t, TestClusterOptions{Nodes: 1, InitialSplits: 1})
	ctx := ctxT(t)

	m, err := sec.nodeSecurity()
	if err != nil {
		t.Fatal(err)
	}
	err = startJoiner(t, m, plain.Addr(0)).tryJoin(ctx, &joinState{})
	for _, w := range []string{"the peer at " + plain.Addr(0) + " serves plaintext", "cannot mix secure and insecure nodes"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Fatalf("secure node joining an insecure cluster: the error should say %q: %v", w, err)
		}
	}
	err = startJoiner(t, nil, sec.Addr(0)).tryJoin(ctx, &joinState{})
	for _, w := range []string{"the peer at " + sec.Addr(0) + " serves TLS", "cannot mix secure and insecure nodes"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Fatalf("insecure node joining a secure cluster: the error should say %q: %v", w, err)
		}
	}

	// The secure cluster's store, restarted insecure.
	sec.StopNode(0)
	cfg := sec.cfgs[0]
	cfg.Security = nil
	if n, err := Start(cfg); err == nil {
		n.Stop()
		t.Fatal("a secure cluster's store restarted insecure")
	} else if !strings.Contains(err.Error(), "runs secure") || !strings.Contains(err.Error(), "started insecure") {
		t.Fatalf("restart in the other mode: %v", err)
	}
}

// TestCheckPeerMode: the descriptor checks of init, join and restart name
// both modes.
func TestCheckPeerMode(t *testing.T) {
	sec, plain := &rspb.NodeDescriptor{Secure: true}, &rspb.NodeDescriptor{}
	if checkPeerMode(sec, sec, "a") != nil || checkPeerMode(plain, plain, "a") != nil {
		t.Fatal("nodes of one mode refused")
	}
	err := checkPeerMode(sec, plain, "10.0.0.2:26257")
	if err == nil || !strings.Contains(err.Error(), "10.0.0.2:26257 is insecure (--insecure) but this node is secure") {
		t.Fatalf("secure self, insecure peer: %v", err)
	}
	err = checkPeerMode(plain, sec, "10.0.0.3:26257")
	if err == nil || !strings.Contains(err.Error(), "10.0.0.3:26257 is secure (mutual TLS, --certs-dir) but this node is insecure") {
		t.Fatalf("insecure self, secure peer: %v", err)
	}
	if checkStoreMode(nil, "c", true) != nil || checkStoreMode(plain, "c", false) != nil {
		t.Fatal("a store restarted in its mode refused")
	}
	if err := checkStoreMode(&rspb.NodeDescriptor{NodeId: 2}, "c1", true); err == nil || !strings.Contains(err.Error(), "cluster c1 as n2, which runs insecure") {
		t.Fatalf("insecure store restarted secure: %v", err)
	}
}

// TestCheckGossipBind: with TLS, gossip needs one specific host.
func TestCheckGossipBind(t *testing.T) {
	for _, c := range []struct {
		addr   string
		secure bool
		ok     bool
	}{
		{"0.0.0.0:0", false, true},
		{"0.0.0.0:0", true, false},
		{"[::]:0", true, false},
		{":0", true, false},
		{"127.0.0.1:0", true, true},
		{"localhost:7946", true, true},
	} {
		err := checkGossipBind(c.addr, c.secure)
		if (err == nil) != c.ok {
			t.Errorf("checkGossipBind(%q, secure=%v) = %v, want ok=%v", c.addr, c.secure, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--gossip-addr") {
			t.Errorf("checkGossipBind(%q): the error does not say what to set: %v", c.addr, err)
		}
	}
	// A secure node listening on every address refuses to start without
	// a gossip address.
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.key")
	if _, err := security.CreateCA(dir, ca, security.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := security.CreateNode(dir, ca, []string{"127.0.0.1"}, security.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := security.NewManager(security.Config{Dir: dir, User: security.NodeUser})
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(Config{StoreDir: filepath.Join(dir, "store"), ListenAddr: "0.0.0.0:0", RaftAddr: freeAddr(t), Security: m, Logger: quietLogger()})
	if err == nil {
		n.Stop()
		t.Fatal("a secure node on 0.0.0.0 started without a gossip address")
	}
	if !strings.Contains(err.Error(), "--gossip-addr") {
		t.Fatalf("secure node on 0.0.0.0: %v", err)
	}
	// A client's certificate is not a node's.
	if _, err := security.CreateClient(dir, ca, "carol", security.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := security.NewManager(security.Config{Dir: dir, User: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(Config{StoreDir: filepath.Join(dir, "store2"), ListenAddr: freeAddr(t), RaftAddr: freeAddr(t), Security: cm}); err == nil ||
		!strings.Contains(err.Error(), `user "carol"`) {
		t.Fatalf("a node with a client certificate: %v", err)
	}
}

// TestServerLimits: the gRPC server refuses a message above the limit
// naming it, and sends GOAWAY (too_many_pings) to a client that pings
// too often.
func TestServerLimits(t *testing.T) {
	limits := gateway.Limits{MaxKeySize: 256, MaxValueSize: 1024, MaxBatchRequests: 4, MaxBatchBytes: 2048}
	n, err := Start(Config{StoreDir: t.TempDir(), ListenAddr: freeAddr(t), RaftAddr: freeAddr(t), Limits: limits,
		Logger: quietLogger(), ReplicateQueueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	ctx := ctxT(t)

	t.Run("MessageSize", func(t *testing.T) {
		limit := MaxMessageSize(limits)
		c := connTo(t, n.Addr())
		_, err := rspb.NewKVClient(c).Put(ctx, &rspb.PutRequest{Key: []byte("k"), Value: make([]byte, limit+1)})
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "larger than max") ||
			!strings.Contains(err.Error(), fmt.Sprint(limit)) {
			t.Fatalf("a message above %d bytes: want ResourceExhausted naming the limit, got %v", limit, err)
		}
	})

	t.Run("TooManyPings", func(t *testing.T) {
		code, debug, err := pingFlood(n.Addr(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if code != 0xb || debug != "too_many_pings" { // ENHANCE_YOUR_CALM
			t.Fatalf("GOAWAY code %#x %q, want ENHANCE_YOUR_CALM (0xb) too_many_pings", code, debug)
		}
	})
}

// pingFlood speaks HTTP/2 (prior knowledge, plaintext) to addr, sends
// pings back to back and returns the GOAWAY frame's error code and debug
// data.
func pingFlood(addr string, pings int) (code uint32, debug string, err error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	frame := func(typ byte, flags byte, payload []byte) []byte {
		h := make([]byte, 9, 9+len(payload))
		h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
		h[3], h[4] = typ, flags
		return append(h, payload...)
	}
	out := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	out = append(out, frame(0x4, 0, nil)...) // SETTINGS
	for i := 0; i < pings; i++ {
		var data [8]byte
		binary.BigEndian.PutUint64(data[:], uint64(i+1))
		out = append(out, frame(0x6, 0, data[:])...) // PING
	}
	if _, err := c.Write(out); err != nil {
		return 0, "", err
	}
	hdr := make([]byte, 9)
	for {
		if _, err := io.ReadFull(c, hdr); err != nil {
			return 0, "", fmt.Errorf("no GOAWAY before: %w", err)
		}
		payload := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
		if _, err := io.ReadFull(c, payload); err != nil {
			return 0, "", fmt.Errorf("no GOAWAY before: %w", err)
		}
		if hdr[3] == 0x7 && len(payload) >= 8 { // GOAWAY
			return binary.BigEndian.Uint32(payload[4:8]), string(payload[8:]), nil
		}
	}
}

// TestRequestDeadlines: a unary call without a deadline gets the default
// one, a longer one is capped, a shorter one is kept.
func TestRequestDeadlines(t *testing.T) {
	d := requestDeadlines{def: DefaultRequestTimeout, max: MaxRequestTimeout}
	run := func(ctx context.Context) time.Duration {
		var left time.Duration
		_, err := d.unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/rangestore.v1.KV/Get"}, func(ctx context.Context, _ any) (any, error) {
			dl, ok := ctx.Deadline()
			if !ok {
				return nil, fmt.Errorf("no deadline")
			}
			left = time.Until(dl)
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return left
	}
	near := func(got, want time.Duration) bool { return got <= want && got > want-2*time.Second }
	if got := run(context.Background()); !near(got, DefaultRequestTimeout) {
		t.Fatalf("no deadline: the call runs with %v left, want the default %v", got, DefaultRequestTimeout)
	}
	long, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if got := run(long); !near(got, MaxRequestTimeout) {
		t.Fatalf("an hour: the call runs with %v left, want the cap %v", got, MaxRequestTimeout)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	if got := run(short); !near(got, 3*time.Second) {
		t.Fatalf("3 s: the call runs with %v left, want 3s", got)
	}
}
