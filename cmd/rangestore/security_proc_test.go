package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/chaos"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/security"
	"github.com/rangestore/rangestore/timeutil"
)

// Issue 15's process-level acceptance: a secure cluster of three
// `rangestore start --certs-dir` processes (certificates made per test by
// the harness, chaos.ProcCluster) and the CLI against it.

// TestSecureProcessCluster: a plaintext client is refused (told to use
// --certs-dir); a client certificate that is not root's may use KV but
// gets PERMISSION_DENIED on Internal.RangeBatch and Admin.TransferLease; a
// certificate of a second CA is refused on the gRPC port and on the Raft
// port (dialled directly with TLS), where the cluster's node certificate
// is accepted and a client certificate is not; an expired certificate is
// refused, by the CLI and by the server, saying it expired; after the node
// certificate is re-created and every process gets SIGHUP, node status
// shows the new serial and a write loop running throughout keeps
// succeeding; a reload of a bad certificate keeps the one in use; a
// secure node refuses to join an insecure cluster, saying so.
func TestSecureProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pc := newInitProcCluster(t, 3, 2)
	if !pc.Secure() {
		t.Fatal("the process cluster is not secure by default")
	}
	certs, caKey := pc.CertsDir, pc.CAKey
	addr := pc.addrs[0]
	pc.cliRetry(60*time.Second, "kv", "put", "--host", addr, "hello", "world")
	ca := loadPool(t, filepath.Join(certs, security.CAFile))

	// 1. A plaintext client is refused.
	r := runBin(t, nil, "kv", "get", "hello", "--host", addr, "--insecure")
	if r.code != 1 || !strings.Contains(r.errOut, addr+" requires TLS") || !strings.Contains(r.errOut, "--certs-dir") {
		t.Errorf("plaintext CLI against the secure cluster: %s", r)
	}
	t.Logf("plaintext CLI: %s", strings.TrimSpace(r.errOut))
	plain, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := rspb.NewKVClient(plain).Get(ctxFor(t, 10*time.Second), &rspb.GetRequest{Key: []byte("hello")}); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext gRPC Get: %v, want Unavailable", err)
	}

	// 2. A client certificate (alice, not root, not admin): KV yes,
	// Internal.RangeBatch and Admin.TransferLease no.
	if r := runBin(t, nil, "cert", "create-client", "alice", "--certs-dir", certs, "--ca-key", caKey); r.code != 0 {
		t.Fatalf("cert create-client alice: %s", r)
	}
	pc.cliRetry(30*time.Second, "kv", "put", "--host", addr, "--user", "alice", "akey", "aval")
	if out := pc.cliRetry(30*time.Second, "kv", "get", "--host", pc.addrs[1], "--user", "alice", "akey"); out != "aval\n" {
		t.Errorf("alice's get: %q", out)
	}
	aliceM, err := security.NewManager(security.Config{Dir: certs, User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	alice, err := grpc.NewClient(addr, grpc.WithTransportCredentials(aliceM.ClientCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	_, err = rspb.NewInternalClient(alice).RangeBatch(ctxFor(t, 10*time.Second), &rspb.RangeRequest{RangeId: 1})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), "/rangestore.v1.Internal/RangeBatch") {
		t.Errorf("alice's Internal.RangeBatch: %v, want PermissionDenied naming alice and the method", err)
	}
	t.Logf("alice's Internal.RangeBatch: %v", err)
	r = pc.runCLI(t, "range", "transfer-lease", "r1", "n1", "--host", addr, "--user", "alice")
	if r.code != 1 || !strings.Contains(r.errOut, "PermissionDenied") || !strings.Contains(r.errOut, "alice") || !strings.Contains(r.errOut, "TransferLease") {
		t.Errorf("alice's range transfer-lease: %s", r)
	}
	t.Logf("alice's range transfer-lease: %s", strings.TrimSpace(r.errOut))
	out := pc.cliRetry(30*time.Second, "range", "transfer-lease", "r1", "n1", "--host", addr) // root may
	if !strings.Contains(out, "n1") {
		t.Errorf("root's range transfer-lease r1 n1: %q", out)
	}

	// 3. A second CA: its certificates are refused on the gRPC port and on
	// the Raft port. Both CLI sides refuse each other; the server's own
	// refusal is seen by a client that trusts the cluster's CA but
	// presents a certificate of the other one.
	other := t.TempDir()
	otherCerts := filepath.Join(other, "certs")
	if err := chaos.CreateCerts(otherCerts, filepath.Join(other, "ca.key")); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, nil, "kv", "get", "hello", "--host", addr, "--certs-dir", otherCerts)
	if r.code != 1 || !strings.Contains(r.errOut, "certificate") {
		t.Errorf("CLI with the second CA's certificates: %s", r)
	}
	otherRoot := loadPair(t, otherCerts, security.RootUser)
	otherNode := loadPair(t, otherCerts, security.NodeUser)
	err = tlsRefusal(addr, otherRoot, ca)
	if err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Errorf("gRPC port, second CA's client certificate: %v, want a refusal (unknown certificate authority)", err)
	}
	t.Logf("gRPC port %s, second CA's certificate: %v", addr, err)
	raftAddr := raftAddrOf(t, pc, 0)
	err = tlsRefusal(raftAddr, otherNode, ca)
	if err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Errorf("Raft port %s, second CA's node certificate: %v, want a refusal (unknown certificate authority)", raftAddr, err)
	}
	t.Logf("Raft port %s, second CA's node certificate: %v", raftAddr, err)
	if err := tlsRefusal(raftAddr, loadPair(t, certs, security.NodeUser), ca); err != nil {
		t.Errorf("Raft port %s, the cluster's node certificate: refused: %v", raftAddr, err)
	}
	if err := tlsRefusal(raftAddr, loadPair(t, certs, security.RootUser), ca); err == nil {
		t.Errorf("Raft port %s accepted root's client certificate", raftAddr)
	}
	t.Logf("Raft port %s: the second CA's node certificate and a client certificate refused, the cluster's node certificate accepted", raftAddr)

	// 4. An expired client certificate: the CLI refuses to use it, and the
	// server refuses it, each saying it expired.
	if r := runBin(t, nil, "cert", "create-client", "bob", "--lifetime", "1s", "--certs-dir", certs, "--ca-key", caKey); r.code != 0 {
		t.Fatalf("cert create-client bob --lifetime 1s: %s", r)
	}
	bob := loadPair(t, certs, "bob")
	timeutil.WaitFor(t, 10*time.Second, "bob's certificate to expire", func() error {
		if !time.Now().After(bob.Leaf.NotAfter) {
			return fmt.Errorf("valid until %s", bob.Leaf.NotAfter)
		}
		return nil
	})
	r = pc.runCLI(t, "kv", "get", "hello", "--host", addr, "--user", "bob")
	if r.code != 1 || !strings.Contains(r.errOut, "client.bob.crt") || !strings.Contains(r.errOut, "expired on") {
		t.Errorf("CLI with bob's expired certificate: %s", r)
	}
	t.Logf("CLI with an expired certificate: %s", strings.TrimSpace(r.errOut))
	err = tlsRefusal(addr, bob, ca)
	if err == nil || !strings.Contains(err.Error(), "expired certificate") {
		t.Errorf("gRPC port, bob's expired certificate: %v, want a refusal saying it expired", err)
	}
	t.Logf("gRPC port, expired certificate: %v", err)

	// 5. Rotation: a write loop runs while the node certificate is
	// re-created and every process reloads it (SIGHUP).
	var wrote, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := pc.KV(i%3).Put(ctx, &rspb.PutRequest{Key: []byte(fmt.Sprintf("rot-%06d", i)), Value: []byte("v")})
			cancel()
			if err != nil {
				failed.Add(1)
				lastErr.Store(err.Error())
				continue
			}
			wrote.Add(1)
		}
	}()
	stopLoop := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoop()
	waitWrites := func(n int64, what string) {
		t.Helper()
		base := wrote.Load()
		timeutil.WaitFor(t, 30*time.Second, what, func() error {
			if got := wrote.Load() - base; got < n {
				return fmt.Errorf("%d writes (%d failed; last error %v)", got, failed.Load(), lastErr.Load())
			}
			return nil
		})
	}
	waitWrites(20, "20 writes before the rotation")
	oldSerial := nodeCertSerial(t, pc, 1)
	r = runBin(t, nil, "cert", "create-node", "127.0.0.1", "localhost", "--overwrite", "--certs-dir", certs, "--ca-key", caKey)
	m := regexp.MustCompile(`serial ([0-9a-f]+),`).FindStringSubmatch(r.out)
	if r.code != 0 || m == nil {
		t.Fatalf("cert create-node --overwrite: %s", r)
	}
	newSerial := m[1]
	if newSerial == oldSerial {
		t.Fatalf("the new node certificate has the old serial %s", oldSerial)
	}
	for i := 0; i < pc.NumNodes(); i++ {
		if err := syscall.Kill(pc.Pid(i), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < pc.NumNodes(); i++ {
		timeutil.WaitFor(t, 10*time.Second, fmt.Sprintf("process %d to log the reload", i), func() error {
			if l := pc.Log(i, 1<<20); !strings.Contains(l, "certificates reloaded: now") || !strings.Contains(lastLine(l, "certificates reloaded"), "serial "+newSerial) {
				return errors.New("no reload line with the new serial")
			}
			return nil
		})
	}
	for id := uint64(1); id <= 3; id++ {
		timeutil.WaitFor(t, 30*time.Second, fmt.Sprintf("node status n%d to show serial %s", id, newSerial), func() error {
			if s := nodeCertSerial(t, pc, id); s != newSerial {
				return fmt.Errorf("serial %s", s)
			}
			return nil
		})
	}
	waitWrites(20, "20 writes after the rotation")
	// New connections (a CLI process each) through every node.
	for i := range pc.addrs {
		pc.cliRetry(30*time.Second, "kv", "put", "--host", pc.addrs[i], fmt.Sprintf("after-rotation-%d", i), "ok")
	}
	t.Logf("node certificate rotated from serial %s to %s on every node; %d writes succeeded during the test, %d failed (last error: %v)",
		oldSerial, newSerial, wrote.Load(), failed.Load(), lastErr.Load())

	// A bad reload (a key others may read) keeps the certificate in use.
	key := filepath.Join(certs, security.NodeKeyFile)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pc.Pid(0), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 10*time.Second, "process 0 to log the refused reload", func() error {
		if !strings.Contains(pc.Log(0, 1<<20), "certificates not reloaded") {
			return errors.New("no refused reload line")
		}
		return nil
	})
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("refused reload: %s", lastLine(pc.Log(0, 1<<20), "certificates not reloaded"))
	id0 := nodeIDOf(pc, 0)
	if s := nodeCertSerial(t, pc, id0); s != newSerial {
		t.Errorf("after a refused reload, n%d shows serial %s, want %s (still in use)", id0, s, newSerial)
	}
	waitWrites(10, "10 writes after the refused reload")
	stopLoop()

	// 6. A secure node does not join an insecure cluster.
	ipc := newProcClusterArgs(t, 1, []string{"--insecure"})
	ipc.cliRetry(60*time.Second, "init", "--host", ipc.addrs[0], "--initial-splits", "0")
	strayAddr, logText := startStray(t, pc.bin, ipc.addrs[0], "--certs-dir", certs)
	timeutil.WaitFor(t, 60*time.Second, "the secure node to refuse the insecure cluster", func() error {
		if l := logText(); !strings.Contains(l, "cannot mix secure and insecure nodes") {
			return fmt.Errorf("log so far:\n%s", l)
		}
		return nil
	})
	t.Logf("secure node joining an insecure cluster: %s", lastLine(logText(), "cannot mix"))
	nodes, err := rspb.NewAdminClient(ipc.Conn(0)).Nodes(ctxFor(t, 10*time.Second), &rspb.NodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nodes.Nodes {
		if ns.Node.GetAddress() == strayAddr {
			t.Errorf("the insecure cluster lists the secure node %s as n%d", strayAddr, ns.Node.GetNodeId())
		}
	}
}

// ctxFor is a context with deadline d, cancelled when the test ends.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// loadPool reads a CA bundle.
func loadPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("%s: no certificate", path)
	}
	return p
}

// loadPair reads user's certificate and key from dir (node.crt for
// security.NodeUser), unchecked: the test presents it as it is.
func loadPair(t *testing.T, dir, user string) tls.Certificate {
	t.Helper()
	p := security.PathsFor(dir, user)
	c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(mustRead(t, p.Cert))
	if c.Leaf, err = x509.ParseCertificate(b.Bytes); err != nil {
		t.Fatal(err)
	}
	return c
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tlsRefusal dials addr with TLS 1.3, presenting cert and verifying the
// server against roots, and reads for up to two seconds. Under TLS 1.3
// the server judges the client's certificate after the client finished
// its handshake, so its verdict comes with the first read: nil when the
// server kept the connection (it sent data, or waited for ours: a
// timeout), its refusal otherwise (an alert such as "remote error: tls:
// unknown certificate authority", or a closed connection).
func tlsRefusal(addr string, cert tls.Certificate, roots *x509.CertPool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS13})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	var b [1]byte
	_, err = c.Read(b[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

// raftAddrOf is process i's Raft address, from the node directory.
func raftAddrOf(t *testing.T, pc *procCluster, i int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := rspb.NewAdminClient(pc.Conn(i)).Nodes(ctx, &rspb.NodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range resp.Nodes {
		if ns.Node.GetAddress() == pc.addrs[i] {
			return ns.Node.GetRaftAddress()
		}
	}
	t.Fatalf("process %d (%s) is not in the node directory", i, pc.addrs[i])
	return ""
}

// nodeCertSerial is the serial of the node certificate `node status`
// shows for node id ("" if none).
func nodeCertSerial(t *testing.T, pc *procCluster, id uint64) string {
	t.Helper()
	out := pc.cliRetry(30*time.Second, "node", "status", fmt.Sprintf("n%d", id), "--host", pc.addrs[0])
	m := regexp.MustCompile(`(?m)^cert:\s+node node serial ([0-9a-f]+) `).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

// startStray starts one `rangestore start` process outside any cluster
// harness, joining join with the extra flags, and returns its gRPC
// address and a reader of its log; the process is killed when the test
// ends.
func startStray(t *testing.T, bin, join string, flags ...string) (string, func() string) {
	t.Helper()
	listen, err := node.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	raft, err := node.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "stray.log")
	startLogged(t, logPath, bin, append([]string{"start", "--store", filepath.Join(dir, "store"), "--listen-addr", listen, "--raft-addr", raft,
		"--http-addr", "", "--join", join, "--log-level", "info"}, flags...)...)
	return listen, func() string { return string(mustRead(t, logPath)) }
}
