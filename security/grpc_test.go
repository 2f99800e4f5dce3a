package security

import (
	"context"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/proto/rspb"
)

// startGRPC serves health (the real server) and the KV and Internal
// services on loopback with creds (nil: plaintext) and the Authorizer's
// interceptors. KV and Internal are the generated bases, which answer
// UNIMPLEMENTED: a call that gets UNIMPLEMENTED passed authorization,
// which is what these tests look at.
func startGRPC(t *testing.T, creds credentials.TransportCredentials, auth Authorizer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(auth.Unary), grpc.ChainStreamInterceptor(auth.Stream)}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	rspb.RegisterKVServer(s, rspb.UnimplementedKVServer{})
	rspb.RegisterInternalServer(s, rspb.UnimplementedInternalServer{})
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

func dialGRPC(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// calls makes a unary KV call, a streaming KV call, an Internal call and
// a health check on c; it returns their errors by name, and the serial of
// the server's certificate (nil on plaintext or failure).
func calls(t *testing.T, c *grpc.ClientConn) (map[string]error, *big.Int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	out := map[string]error{}
	_, out["KV.Get"] = rspb.NewKVClient(c).Get(ctx, &rspb.GetRequest{Key: []byte("k")}, grpc.Peer(&p))
	st, err := rspb.NewKVClient(c).Scan(ctx, &rspb.ScanRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	out["KV.Scan"] = err
	_, out["Internal.RangeBatch"] = rspb.NewInternalClient(c).RangeBatch(ctx, &rspb.RangeRequest{})
	_, out["Health.Check"] = healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
	var serial *big.Int
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		serial = ti.State.PeerCertificates[0].SerialNumber
	}
	return out, serial
}

func expect(t *testing.T, who string, got map[string]error, want map[string]codes.Code, msgs map[string]string) {
	t.Helper()
	for call, code := range want {
		err := got[call]
		if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msgs[call]) {
			t.Errorf("%s: %s: %v; want %s %q", who, call, err, code, msgs[call])
		}
	}
}

// TestGRPCAuthorization: over real mTLS gRPC connections, a client
// certificate reaches KV (unary and streaming) but gets PERMISSION_DENIED
// on Internal, a node certificate the reverse, health answers both; a
// plaintext client and a client of a second CA do not get through; a
// node reload shows its new serial to new connections while the old
// connection keeps working.
func TestGRPCAuthorization(t *testing.T) {
	ca := newTestCA(t)
	n1 := ca.node(t, CreateOptions{})
	ca.client(t, "alice", CreateOptions{})
	nodeM, aliceM := mustManager(t, ca.dir, NodeUser), mustManager(t, ca.dir, "alice")
	creds, err := nodeM.ServerCredentials()
	if err != nil {
		t.Fatal(err)
	}
	addr := startGRPC(t, creds, Authorizer{})

	aliceConn := dialGRPC(t, addr, aliceM.ClientCredentials())
	got, serial := calls(t, aliceConn)
	expect(t, "alice", got, map[string]codes.Code{"KV.Get": codes.Unimplemented, "KV.Scan": codes.Unimplemented,
		"Internal.RangeBatch": codes.PermissionDenied, "Health.Check": codes.OK},
		map[string]string{"Internal.RangeBatch": `user "alice" may not call /rangestore.v1.Internal/RangeBatch: only nodes`})
	if serial == nil || serial.Cmp(n1.SerialNumber) != 0 {
		t.Fatalf("alice sees server serial %x, want %x", serial, n1.SerialNumber)
	}

	got, _ = calls(t, dialGRPC(t, addr, nodeM.ClientCredentials()))
	expect(t, "node", got, map[string]codes.Code{"KV.Get": codes.PermissionDenied, "KV.Scan": codes.PermissionDenied,
		"Internal.RangeBatch": codes.Unimplemented, "Health.Check": codes.OK},
		map[string]string{"KV.Get": `user "node" may not call /rangestore.v1.KV/Get: only clients`, "KV.Scan": `user "node" may not call /rangestore.v1.KV/Scan`})

	got, _ = calls(t, dialGRPC(t, addr, insecure.NewCredentials()))
	expect(t, "plaintext", got, map[string]codes.Code{"KV.Get": codes.Unavailable, "Internal.RangeBatch": codes.Unavailable, "Health.Check": codes.Unavailable}, nil)

	other := newTestCA(t)
	other.client(t, "alice", CreateOptions{})
	foreign := mustManager(t, other.dir, "alice").ClientTLS()
	foreign.RootCAs = aliceM.ClientTLS().RootCAs // it trusts our node; our node must refuse it
	got, _ = calls(t, dialGRPC(t, addr, credentials.NewTLS(foreign)))
	// (The client sees the server's alert or, if it writes first, a
	// broken pipe: TestHandshake checks the alert.)
	expect(t, "second CA", got, map[string]codes.Code{"KV.Get": codes.Unavailable, "Health.Check": codes.Unavailable}, nil)

	// Rotation: new node certificate, reload; new connections see it, the
	// established one keeps working.
	n2 := ca.node(t, CreateOptions{Overwrite: true})
	if err := nodeM.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, serial := calls(t, dialGRPC(t, addr, aliceM.ClientCredentials())); serial == nil || serial.Cmp(n2.SerialNumber) != 0 {
		t.Fatalf("after reload, a new connection sees serial %x, want %x", serial, n2.SerialNumber)
	}
	got, serial = calls(t, aliceConn)
	expect(t, "alice's old connection", got, map[string]codes.Code{"KV.Get": codes.Unimplemented, "Health.Check": codes.OK}, nil)
	if serial.Cmp(n1.SerialNumber) != 0 {
		t.Fatalf("the established connection's serial %x, want %x", serial, n1.SerialNumber)
	}
}

// TestGRPCInsecure: in insecure mode every call is allowed over
// plaintext; a secure Authorizer on a plaintext server refuses all but
// health as UNAUTHENTICATED.
func TestGRPCInsecure(t *testing.T) {
	got, _ := calls(t, dialGRPC(t, startGRPC(t, nil, Authorizer{Insecure: true}), insecure.NewCredentials()))
	expect(t, "insecure", got, map[string]codes.Code{"KV.Get": codes.Unimplemented, "KV.Scan": codes.Unimplemented,
		"Internal.RangeBatch": codes.Unimplemented, "Health.Check": codes.OK}, nil)
	got, _ = calls(t, dialGRPC(t, startGRPC(t, nil, Authorizer{}), insecure.NewCredentials()))
	expect(t, "secure rules over plaintext", got, map[string]codes.Code{"KV.Get": codes.Unauthenticated, "KV.Scan": codes.Unauthenticated,
		"Internal.RangeBatch": codes.Unauthenticated, "Health.Check": codes.OK},
		map[string]string{"Internal.RangeBatch": "/rangestore.v1.Internal/RangeBatch needs a verified client certificate"})
}
