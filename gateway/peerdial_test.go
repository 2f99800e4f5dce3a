package gateway

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/security"
)

// TestDecideMismatch: the handshake failures of each mode against the
// other are recognized, and other failures are not.
func TestDecideMismatch(t *testing.T) {
	for _, c := range []struct {
		msg    string
		secure bool
		want   mismatch
	}{
		{`connection error: desc = "transport: authentication handshake failed: tls: first record does not look like a TLS handshake"`, true, peerPlaintext},
		{`connection error: desc = "error reading server preface: EOF"`, false, peerMaybeTLS},
		{`connection error: desc = "error reading server preface: read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"`, false, peerMaybeTLS},
		{`connection closed before server preface received`, false, peerMaybeTLS},
		// The same texts from the other mode mean something else.
		{`connection error: desc = "transport: authentication handshake failed: tls: first record does not look like a TLS handshake"`, false, noMismatch},
		{`connection error: desc = "error reading server preface: EOF"`, true, noMismatch},
		// Other failures.
		{`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`, true, noMismatch},
		{`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`, false, noMismatch},
		{`connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`, true, noMismatch},
	} {
		if got := decideMismatch(c.msg, c.secure); got != c.want {
			t.Errorf("decideMismatch(%q, secure=%v) = %d, want %d", c.msg, c.secure, got, c.want)
		}
	}
}

// serveHealth serves the health service on loopback with creds (nil:
// plaintext) until the test ends.
func serveHealth(t *testing.T, creds credentials.TransportCredentials) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis.Addr().String()
}

// TestPeerDialModeMismatch: with PeerDialOptions, a TLS caller of a
// plaintext server and a plaintext caller of a TLS server each get a
// FailedPrecondition that names the peer's address and mode and says a
// cluster cannot mix them; callers of their own mode are served.
func TestPeerDialModeMismatch(t *testing.T) {
	dir := t.TempDir()
	caKey := filepath.Join(dir, "ca.key")
	certs := filepath.Join(dir, "certs")
	if _, err := security.CreateCA(certs, caKey, security.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := security.CreateNode(certs, caKey, []string{"127.0.0.1"}, security.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := security.NewManager(security.Config{Dir: certs, User: security.NodeUser})
	if err != nil {
		t.Fatal(err)
	}
	serverCreds, err := m.ServerCredentials()
	if err != nil {
		t.Fatal(err)
	}
	plainAddr := serveHealth(t, nil)
	tlsAddr := serveHealth(t, serverCreds)

	check := func(addr string, creds credentials.TransportCredentials, want ...string) {
		t.Helper()
		c, err := grpc.NewClient(addr, PeerDialOptions(creds, DefaultPeerMaxMessage)...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
		if len(want) == 0 {
			if err != nil {
				t.Fatalf("%s: %v", addr, err)
			}
			return
		}
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("%s: want FailedPrecondition, got %v", addr, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("%s: error %q does not say %q", addr, err, w)
			}
		}
	}
	check(plainAddr, nil)
	check(tlsAddr, m.ClientCredentials())
	check(plainAddr, m.ClientCredentials(), "the peer at "+plainAddr+" serves plaintext", "cannot mix secure and insecure nodes")
	check(tlsAddr, nil, "the peer at "+tlsAddr+" serves TLS", "cannot mix secure and insecure nodes")

	// A closed port is not a mode mismatch.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	_ = lis.Close()
	if servesTLS(context.Background(), closed) || servesTLS(context.Background(), plainAddr) || !servesTLS(context.Background(), tlsAddr) {
		t.Fatalf("servesTLS: closed %v, plaintext %v, TLS %v (want false, false, true)",
			servesTLS(context.Background(), closed), servesTLS(context.Background(), plainAddr), servesTLS(context.Background(), tlsAddr))
	}
}
