package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/gossip"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/rafttls"
	"github.com/rangestore/rangestore/security"
)

// Transport security and resource limits of a node (issue 15; doc.go,
// "Security" and "Resource limits").

// Resource limits of the gRPC server (documented in doc.go and the
// README). The message size limit is MaxMessageSize(Config.Limits).
const (
	// MaxConcurrentStreams bounds the calls in flight on one connection;
	// a client's further calls wait for one to end.
	MaxConcurrentStreams = 1024
	// StreamWorkers is how many goroutines serve calls, each one call
	// after another (grpc.NumStreamWorkers); a call arriving while all
	// are busy gets a goroutine of its own, as without workers. Without
	// them every call starts a new goroutine, whose stack (8 KiB) is grown
	// and copied as the call goes deeper (the request path through the
	// gateway, the store and Pebble is deep): runtime.newstack was 7 % of
	// the CPU of serial lease reads. A worker's grown stack is kept (gRPC
	// replaces the goroutine every 65,536 calls). 64 covers the calls in
	// flight per node of the bench cells' concurrency; idle workers cost
	// their stacks only. Stop ends them.
	StreamWorkers = 64
	// KeepaliveMinTime: a client pinging more often than this (with or
	// without calls in flight) is sent GOAWAY (too_many_pings) after a
	// few strikes. grpc-go clients never ping more often than 10 s.
	KeepaliveMinTime = 10 * time.Second
	// KeepaliveTime, KeepaliveTimeout: the server pings a connection idle
	// this long, and closes it when the ping is not answered in time (a
	// vanished client's connection does not linger).
	KeepaliveTime    = 30 * time.Second
	KeepaliveTimeout = 10 * time.Second
	// DefaultRequestTimeout is the deadline of a unary call that came
	// without one; MaxRequestTimeout caps a longer one. Streams (KV.Scan,
	// Backup.Export) are exempt: they last as long as their data and end
	// when the client cancels them or its connection dies (keepalive).
	DefaultRequestTimeout = 60 * time.Second
	MaxRequestTimeout     = 10 * time.Minute
)

// checkSecurity refuses a Manager that is not a node's.
func checkSecurity(m *security.Manager) error {
	if m == nil {
		return nil
	}
	if u := m.User(); u != security.NodeUser {
		return fmt.Errorf("node: Security is a certificate manager for user %q: a node needs its node certificate (user %q, node.crt)", u, security.NodeUser)
	}
	return nil
}

// Secure reports whether the node runs with mutual TLS (Config.Security).
func (n *Node) Secure() bool { return n.cfg.Security != nil }

// basePeerDialOptions are the dial options of node-to-node gRPC without
// the testing options: the node's client credentials (or plaintext), the
// message limits and the mixed-mode explanations (gateway.PeerDialOptions).
func basePeerDialOptions(cfg Config) []grpc.DialOption {
	var creds credentials.TransportCredentials
	if cfg.Security != nil {
		creds = cfg.Security.ClientCredentials()
	}
	return gateway.PeerDialOptions(creds, MaxMessageSize(cfg.Limits))
}

// peerDialOptions are basePeerDialOptions and Config.PeerDialOptions (fault
// injection): every dial of this node to another uses them.
func peerDialOptions(cfg Config) []grpc.DialOption {
	return append(basePeerDialOptions(cfg), cfg.PeerDialOptions...)
}

// dialPeer opens a connection to a peer's gRPC address with the node's
// peer dial options; close it when done.
func (n *Node) dialPeer(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, peerDialOptions(n.cfg)...)
}

// serverOptions are the node's gRPC server options, all made here: the
// transport credentials (mutual TLS with Config.Security, else
// plaintext), the message size limit maxMsg, the resource limits above,
// and the interceptors, the Authorizer first (insecure mode: it allows
// all), then the request deadlines, then the RPC metrics.
func serverOptions(cfg Config, maxMsg int, rpcm *gateway.RPCMetrics) ([]grpc.ServerOption, error) {
	authz := security.Authorizer{Insecure: cfg.Security == nil}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.NumStreamWorkers(StreamWorkers),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
		// Stop returns only once every handler did: none uses the store
		// after it closes.
		grpc.WaitForHandlers(true),
		grpc.ChainUnaryInterceptor(authz.Unary, requestDeadlines{def: DefaultRequestTimeout, max: MaxRequestTimeout}.unary, rpcm.Unary),
		grpc.ChainStreamInterceptor(authz.Stream, rpcm.Stream),
	}
	if cfg.Security != nil {
		creds, err := cfg.Security.ServerCredentials()
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	return opts, nil
}

// requestDeadlines gives a unary call without a deadline the default one
// and caps a longer one at max.
type requestDeadlines struct{ def, max time.Duration }

// bound is the context a call runs with (see requestDeadlines).
func (d requestDeadlines) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	switch {
	case !ok:
		return context.WithTimeout(ctx, d.def)
	case time.Until(dl) > d.max:
		return context.WithTimeout(ctx, d.max)
	}
	return ctx, func() {}
}

func (d requestDeadlines) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, cancel := d.bound(ctx)
	defer cancel()
	return h(ctx, req)
}

// verifyNodeCert accepts a node certificate (CN "node") only: the Raft
// and gossip peers of a node are nodes.
func verifyNodeCert(c *x509.Certificate) error {
	if c.Subject.CommonName != security.NodeUser {
		return fmt.Errorf("certificate %q (serial %x) is not a node certificate (CN %q): only nodes may connect here", c.Subject.CommonName, c.SerialNumber, security.NodeUser)
	}
	return nil
}

// verifyNodeConn is verifyNodeCert on a handshake's verified peer.
func verifyNodeConn(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return errors.New("the peer presented no verified certificate")
	}
	return verifyNodeCert(cs.VerifiedChains[0][0])
}

// raftTransport is the store's Raft transport: Config.RaftTransport
// (fault injection) when set; else, with Config.Security, mutual TLS 1.3
// with the node certificate (rafttls), whose peers must present node
// certificates on both sides; else nil, Dragonboat's plaintext TCP.
func raftTransport(cfg Config) (config.TransportFactory, error) {
	if cfg.RaftTransport != nil || cfg.Security == nil {
		return cfg.RaftTransport, nil
	}
	server, err := cfg.Security.ServerTLS()
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return rafttls.New(rafttls.Config{ServerTLS: server, ClientTLS: cfg.Security.ClientTLS, VerifyPeer: verifyNodeConn,
		Logger: cfg.Logger.With("raft", "tls")}), nil
}

// gossipTLS is the gossip's mutual TLS with the node certificate (nil in
// the insecure mode): peers must present node certificates.
func (n *Node) gossipTLS() (*gossip.TLSConfig, error) {
	m := n.cfg.Security
	if m == nil {
		return nil, nil
	}
	server, err := m.ServerTLS()
	if err != nil {
		return nil, err
	}
	return &gossip.TLSConfig{Server: func() *tls.Config { return server }, Client: m.ClientTLS, VerifyPeer: verifyNodeCert}, nil
}

// checkGossipBind refuses, in the secure mode, a gossip bind address that
// is not one specific host: peers dial the advertised address and check
// the node certificate against it, which an unspecified address (0.0.0.0,
// ::, or no host) cannot be. A host name is resolved by package gossip.
func checkGossipBind(addr string, secure bool) error {
	if !secure {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("gossip address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("gossip address %q: with TLS, gossip binds one specific IP (peers check the node certificate against the address they dial); the gRPC listener's host %q is not one: set the gossip address (--gossip-addr IP:PORT)", addr, host)
	}
	return nil
}

// Certs describes the certificates the node uses (node status): the CAs
// it trusts, then its node certificate; none in the insecure mode.
func (n *Node) Certs() []*rspb.CertInfo {
	m := n.cfg.Security
	if m == nil {
		return nil
	}
	var out []*rspb.CertInfo
	for _, c := range m.Certs() {
		out = append(out, &rspb.CertInfo{Kind: c.Kind, User: c.User, Serial: c.Serial,
			NotBeforeUnixNanos: c.NotBefore.UnixNano(), NotAfterUnixNanos: c.NotAfter.UnixNano()})
	}
	return out
}

// modeName names a node's mode, for errors.
func modeName(secure bool) string {
	if secure {
		return "secure (mutual TLS, --certs-dir)"
	}
	return "insecure (--insecure)"
}

// checkPeerMode refuses a peer (init's join list, a joining node) whose
// descriptor says it runs in the other mode than this node.
func checkPeerMode(self, peer *rspb.NodeDescriptor, peerAddr string) error {
	if self.GetSecure() == peer.GetSecure() {
		return nil
	}
	return fmt.Errorf("the node at %s is %s but this node is %s: a cluster cannot mix secure and insecure nodes",
		peerAddr, modeName(peer.GetSecure()), modeName(self.GetSecure()))
}

// checkStoreMode refuses to restart a store in the other mode than the
// one its cluster record gives it (own: this node's descriptor there).
func checkStoreMode(own *rspb.NodeDescriptor, clusterID string, secure bool) error {
	if own == nil || own.GetSecure() == secure {
		return nil
	}
	return fmt.Errorf("node: this store belongs to cluster %s as n%d, which runs %s, but this node was started %s: a cluster cannot mix secure and insecure nodes",
		clusterID, own.GetNodeId(), modeName(own.GetSecure()), modeName(secure))
}
