package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// Config configures one node.
type Config struct {
	StoreDir   string   // data directory (created if missing)
	ListenAddr string   // gRPC address (host:port; port 0 picks one)
	RaftAddr   string   // Dragonboat transport address; must stay the same across restarts
	HTTPAddr   string   // Prometheus /metrics and /healthz; empty disables
	Join       []string // gRPC addresses of the other initial nodes (used by init)
	Locality   []*rspb.LocalityTier
	Logger     *slog.Logger
	Clock      *leases.Clock
	Limits     gateway.Limits

	// Raft timing (see ranges.StoreConfig); zero values take its defaults.
	RaftRTTMillisecond uint64
	ElectionRTT        uint64
	HeartbeatRTT       uint64
	// Node liveness: record TTL and heartbeat interval (zero = defaults).
	LivenessTTL       time.Duration
	HeartbeatInterval time.Duration

	// Testing hooks: a Raft transport and extra dial options for
	// node-to-node gRPC (fault injection).
	RaftTransport   config.TransportFactory
	PeerDialOptions []grpc.DialOption
	// Split queue and meta repair (see ranges.StoreConfig; zero = defaults).
	RangeMaxBytes      int64
	RangeMinBytes      int64
	LoadSplitQPS       float64
	LoadSplitDuration  time.Duration
	SplitCheckInterval time.Duration
	MetaCheckInterval  time.Duration
	// FreezeTimeout: a range frozen this long for a merge that can no
	// longer happen is thawed (ranges.StoreConfig; zero = default).
	FreezeTimeout time.Duration
	// CrashPoint is called at named steps of splits (fault tests).
	CrashPoint func(name string)
}

// Node is one rangestore process: store, gateway, gRPC and HTTP servers.
type Node struct {
	cfg      Config
	log      *slog.Logger
	eng      *kv.Engine
	store    *ranges.Store
	router   *gateway.Router
	kvServer *gateway.KVServer
	grpc     *grpc.Server
	health   *health.Server
	lis      net.Listener
	http     *http.Server
	httpLis  net.Listener
	registry *prometheus.Registry
	liveness *leases.Liveness

	stopOnce sync.Once
}

// Start opens the node's storage, restarts its replicas and serves.
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = leases.NewClock(nil, 0)
	}
	if cfg.Limits == (gateway.Limits{}) {
		cfg.Limits = gateway.DefaultLimits
	}
	if cfg.StoreDir == "" || cfg.ListenAddr == "" || cfg.RaftAddr == "" {
		return nil, errors.New("node: store dir, listen address and raft address are required")
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o755); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, registry: prometheus.NewRegistry()}
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	lis, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("node: listen on %s: %w", cfg.ListenAddr, err)
	}
	n.lis = lis
	ok := false
	defer func() {
		if !ok {
			n.closeStorage()
			_ = lis.Close()
		}
	}()
	n.eng, err = kv.Open(filepath.Join(cfg.StoreDir, "data"), kv.Options{Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("node: open storage: %w", err)
	}
	n.store, err = ranges.NewStore(ranges.StoreConfig{
		Dir: cfg.StoreDir, RaftAddress: cfg.RaftAddr, Engine: n.eng, Clock: cfg.Clock, Logger: cfg.Logger,
		Metrics:        ranges.NewMetrics(n.registry),
		RTTMillisecond: cfg.RaftRTTMillisecond, ElectionRTT: cfg.ElectionRTT, HeartbeatRTT: cfg.HeartbeatRTT,
		TransportFactory: cfg.RaftTransport, CrashPoint: cfg.CrashPoint,
		RangeMaxBytes: cfg.RangeMaxBytes, RangeMinBytes: cfg.RangeMinBytes, LoadSplitQPS: cfg.LoadSplitQPS, LoadSplitDuration: cfg.LoadSplitDuration,
		SplitCheckInterval: cfg.SplitCheckInterval, MetaCheckInterval: cfg.MetaCheckInterval,
		Limits: ranges.Limits(cfg.Limits), FreezeTimeout: cfg.FreezeTimeout,
	})
	if err != nil {
		return nil, err
	}
	maxMsg := MaxMessageSize(cfg.Limits)
	peerOpts := append([]grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg))},
		cfg.PeerDialOptions...)
	n.router = gateway.NewRouter(n, n.store, cfg.Clock, cfg.Logger, peerOpts...)
	n.liveness = leases.NewLiveness(leases.LivenessConfig{NodeID: n.store.NodeID, Clock: cfg.Clock, Logger: cfg.Logger,
		TTL: cfg.LivenessTTL, HeartbeatInterval: cfg.HeartbeatInterval}, n.router)
	n.store.SetLiveness(n.liveness)
	n.store.SetSender(n.router)
	n.liveness.Start()
	n.kvServer = gateway.NewKVServer(n.router, cfg.Limits, cfg.Clock, n.store.NodeID)
	rpcm := gateway.NewRPCMetrics(n.registry)
	n.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg),
		grpc.ChainUnaryInterceptor(rpcm.Unary), grpc.ChainStreamInterceptor(rpcm.Stream))
	rspb.RegisterKVServer(n.grpc, n.kvServer)
	rspb.RegisterInternalServer(n.grpc, gateway.NewInternalServer(n))
	rspb.RegisterAdminServer(n.grpc, gateway.NewAdminServer(n))
	n.health = health.NewServer()
	healthpb.RegisterHealthServer(n.grpc, n.health)
	reflection.Register(n.grpc)
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	n.health.SetServingStatus(rspb.KV_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	go func() {
		if err := n.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("grpc server stopped", "err", err)
		}
	}()
	if cfg.HTTPAddr != "" {
		hl, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			n.grpc.Stop()
			return nil, fmt.Errorf("node: listen on %s: %w", cfg.HTTPAddr, err)
		}
		n.httpLis = hl
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		// Profiles (CPU, heap, goroutines) for diagnosing a live node.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = n.http.Serve(hl) }()
	}
	ok = true
	n.log.Info("node started", "node", n.store.NodeID(), "addr", n.Addr(), "raft", cfg.RaftAddr, "http", n.HTTPAddr(), "store", cfg.StoreDir)
	return n, nil
}

// Addr is the gRPC address the node serves on.
func (n *Node) Addr() string { return n.lis.Addr().String() }

// HTTPAddr is the metrics address ("" when disabled).
func (n *Node) HTTPAddr() string {
	if n.httpLis == nil {
		return ""
	}
	return n.httpLis.Addr().String()
}

// Store returns the node's store.
func (n *Node) Store() *ranges.Store { return n.store }

// Registry returns the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// NodeID returns the node's ID (0 before init).
func (n *Node) NodeID() uint64 { return n.store.NodeID() }

// Send runs a range request on the local store.
func (n *Node) Send(ctx context.Context, req *rspb.RangeRequest) *rspb.RangeResponse {
	return n.store.Send(ctx, req)
}

// NodeDescriptor describes this node.
func (n *Node) NodeDescriptor() *rspb.NodeDescriptor {
	return &rspb.NodeDescriptor{NodeId: n.store.NodeID(), Address: n.Addr(), RaftAddress: n.cfg.RaftAddr,
		Locality: n.cfg.Locality, HttpAddress: n.HTTPAddr()}
}

// ClusterID is the cluster's ID ("" before init).
func (n *Node) ClusterID() string {
	if c := n.store.ClusterRecord(); c != nil {
		return c.ClusterId
	}
	return ""
}

// NodeAddress resolves a node ID to its gRPC address (gateway.Resolver).
func (n *Node) NodeAddress(nodeID uint64) (string, bool) {
	if c := n.store.ClusterRecord(); c != nil {
		for _, d := range c.Nodes {
			if d.NodeId == nodeID {
				return d.Address, true
			}
		}
	}
	return "", false
}

// MetaRange is the meta range's descriptor (gateway.Resolver).
func (n *Node) MetaRange() *rspb.RangeDescriptor {
	if c := n.store.ClusterRecord(); c != nil {
		return c.MetaRange
	}
	return nil
}

// Ranges lists local replicas.
func (n *Node) Ranges() []*rspb.RangeInfo { return n.store.Ranges() }

// Bootstrap joins this node to a new cluster (called by init). The request
// must lay out a valid cluster and name the membership of this node's join
// list (ValidateBootstrap).
func (n *Node) Bootstrap(ctx context.Context, req *rspb.BootstrapRequest) error {
	if cur := n.store.ClusterRecord(); cur != nil && cur.ClusterId == req.ClusterId && cur.NodeId == req.NodeId {
		return nil // a retry of the bootstrap that made this node
	}
	if err := n.validateBootstrap(ctx, req); err != nil {
		n.log.Warn("bootstrap request refused", "cluster", req.ClusterId, "err", err)
		return err
	}
	return n.store.Bootstrap(req, BootstrapData(req))
}

// Stop drains and stops the node: new requests get Unavailable, in-flight
// ones finish (bounded), then replicas, Raft and storage close.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		n.kvServer.Drain()
		n.health.Shutdown()
		done := make(chan struct{})
		go func() { n.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			n.grpc.Stop()
		}
		if n.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = n.http.Shutdown(ctx)
			cancel()
		}
		n.closeStorage() // liveness first: its heartbeats use the router
		n.router.Close()
		n.log.Info("node stopped", "node", n.NodeID())
	})
}

func (n *Node) closeStorage() {
	if n.liveness != nil {
		n.liveness.Stop()
	}
	if n.store != nil {
		n.store.Close()
	}
	if n.eng != nil {
		if err := n.eng.Close(); err != nil {
			n.log.Error("closing storage", "err", err)
		}
	}
}

// TransferLease moves a range's lease to target. If this node does not hold
// the lease, the request is forwarded to the node that does.
func (n *Node) TransferLease(ctx context.Context, rangeID, target uint64) error {
	var holder uint64
	for _, ri := range n.store.Ranges() {
		if ri.RangeDescriptor.GetRangeId() == rangeID {
			holder = ri.Lease.GetNodeId()
		}
	}
	if holder == 0 || holder == n.NodeID() {
		return n.store.TransferLease(ctx, rangeID, target)
	}
	addr, ok := n.NodeAddress(holder)
	if !ok {
		return fmt.Errorf("no address for leaseholder n%d of r%d", holder, rangeID)
	}
	c, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, n.cfg.PeerDialOptions...)...)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = rspb.NewAdminClient(c).TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: rangeID, TargetNodeId: target})
	return err
}

// SplitRange splits the range holding an internal key at that key; the
// router takes the request to the range's leaseholder.
func (n *Node) SplitRange(ctx context.Context, key []byte) (*rspb.AdminSplitResponse, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, gateway.DefaultTimeout)
		defer cancel()
	}
	return n.router.AdminSplit(ctx, key, true)
}

// MetaRanges reads every meta record (the cluster's range descriptors, in
// key order) through this node's router.
func (n *Node) MetaRanges(ctx context.Context) ([]*rspb.RangeDescriptor, error) {
	return ranges.MetaDescriptors(ctx, n.router)
}

// MergeRange merges the range holding an internal key with its right
// neighbour, at the left range's leaseholder.
func (n *Node) MergeRange(ctx context.Context, key []byte) (*rspb.AdminMergeResponse, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, gateway.DefaultTimeout)
		defer cancel()
	}
	return n.router.AdminMerge(ctx, key)
}

// MaxMessageSize is the gRPC message limit of a node with limits l, for
// its server and its peer clients: every request within the limits and
// every replica response fits (ranges.MaxMessageSize).
func MaxMessageSize(l gateway.Limits) int { return ranges.MaxMessageSize(ranges.Limits(l)) }
