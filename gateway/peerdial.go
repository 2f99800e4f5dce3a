package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// DefaultPeerMaxMessage is the message size limit of a router made
// without dial options (tests); a node passes its own (PeerDialOptions).
const DefaultPeerMaxMessage = 64 << 20

// peerMaxBackoff bounds the wait between dials of an unreachable peer.
const peerMaxBackoff = time.Second

// PeerDialOptions are the dial options of node-to-node gRPC, made here
// only: every dial of one node to another (its router, init, join, node
// status, drains, lease transfers) uses them, plus the node's testing
// options. creds are the transport credentials: the node's mutual TLS
// (security.Manager.ClientCredentials), or nil for plaintext, the
// --insecure mode. maxMsg bounds messages both ways. The interceptors
// turn the failure of a call to a peer of the other mode (a secure node
// calling a plaintext one, or the reverse) into a FailedPrecondition
// saying so (ExplainModeMismatch).
func PeerDialOptions(creds credentials.TransportCredentials, maxMsg int) []grpc.DialOption {
	secure := creds != nil
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	mm := modeMismatchInterceptor{secure: secure}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// A peer that restarts is dialled again within peerMaxBackoff
		// (gRPC's default backoff grows to 2 min: a node back after 15 s
		// down could wait ~10 s for its peers' side-transport closed
		// timestamps, lease transfers and forwarded requests).
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: peerMaxBackoff},
			MinConnectTimeout: 5 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)),
		grpc.WithChainUnaryInterceptor(mm.unary),
		grpc.WithChainStreamInterceptor(mm.stream),
	}
}

// modeMismatchInterceptor explains the calls that failed because the
// peer is of the other mode.
type modeMismatchInterceptor struct{ secure bool }

func (m modeMismatchInterceptor) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil {
		if e := ExplainModeMismatch(ctx, err, cc.Target(), m.secure); e != nil {
			return e
		}
	}
	return err
}

func (m modeMismatchInterceptor) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		if e := ExplainModeMismatch(ctx, err, cc.Target(), m.secure); e != nil {
			return nil, e
		}
	}
	return s, err
}

// mismatch is what a failed call's error says of the peer's mode.
type mismatch int

const (
	// noMismatch: the error is not a handshake failure between modes.
	noMismatch mismatch = iota
	// peerPlaintext: a TLS client read plaintext HTTP/2 where the server's
	// TLS handshake should be.
	peerPlaintext
	// peerMaybeTLS: a plaintext client's connection closed before the
	// server's HTTP/2 preface, as a TLS server closes it on a client that
	// does not start a handshake (or a server that died: probe it).
	peerMaybeTLS
)

// decideMismatch classifies a failed call's error message, from a caller
// that dials with TLS (secure) or plaintext. It is pure: the texts are
// those of crypto/tls (a TLS client given non-TLS bytes) and of grpc's
// HTTP/2 client transport (a connection that ended before the server's
// preface).
func decideMismatch(msg string, secure bool) mismatch {
	switch {
	case secure && strings.Contains(msg, "first record does not look like a TLS handshake"):
		return peerPlaintext
	case !secure && strings.Contains(msg, "server preface"):
		return peerMaybeTLS
	}
	return noMismatch
}

// ExplainModeMismatch returns a FailedPrecondition error saying that the
// peer at addr serves the other mode and a cluster cannot mix secure and
// insecure nodes, when err (from a call to addr by a caller dialling with
// TLS if secure, plaintext otherwise) failed for that reason; nil when it
// did not. A plaintext caller's suspicion is confirmed by a TLS probe of
// addr (a handshake attempt, bounded by a second and ctx; no data sent).
func ExplainModeMismatch(ctx context.Context, err error, addr string, secure bool) error {
	if err == nil || status.Code(err) != codes.Unavailable {
		return nil
	}
	switch decideMismatch(status.Convert(err).Message(), secure) {
	case peerPlaintext:
		return status.Errorf(codes.FailedPrecondition,
			"the peer at %s serves plaintext (started with --insecure) while this node uses TLS: a cluster cannot mix secure and insecure nodes (start every node with the same --certs-dir CA, or every one with --insecure)", addr)
	case peerMaybeTLS:
		if servesTLS(ctx, addr) {
			return status.Errorf(codes.FailedPrecondition,
				"the peer at %s serves TLS while this process dials plaintext (--insecure): a cluster cannot mix secure and insecure nodes (give every node and client --certs-dir, or run every one with --insecure)", addr)
		}
	}
	return nil
}

// probeTimeout bounds servesTLS.
const probeTimeout = time.Second

// servesTLS reports whether addr answers a TLS handshake. The probe
// verifies nothing and sends nothing after the handshake: it only learns
// whether the server speaks TLS (a TLS 1.3 server that requires a client
// certificate may accept the handshake and then refuse us with an alert;
// either way it spoke TLS).
func servesTLS(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c := tls.Client(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	err = c.HandshakeContext(ctx)
	var alert tls.AlertError
	var rh tls.RecordHeaderError
	switch {
	case err == nil, errors.As(err, &alert):
		return true
	case errors.As(err, &rh):
		return false
	}
	// A TLS server's own alert arrives as a remote error ("remote error:
	// tls: ...") on some paths.
	return strings.Contains(err.Error(), "remote error: tls:")
}
