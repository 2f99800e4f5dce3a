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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/gossip"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/rebalance"
	"github.com/rangestore/rangestore/security"
	"github.com/rangestore/rangestore/timeutil"
)

// Config configures one node.
type Config struct {
	StoreDir   string   // data directory (created if missing)
	ListenAddr string   // gRPC address (host:port; port 0 picks one)
	RaftAddr   string   // Dragonboat transport address; must stay the same across restarts
	HTTPAddr   string   // Prometheus /metrics and /healthz; empty disables
	Join       []string // gRPC addresses of the other initial nodes (init), or of running nodes to join through (empty store; join.go)
	Locality   []*rspb.LocalityTier
	Logger     *slog.Logger
	Clock      *leases.Clock
	Limits     gateway.Limits
	// Txn configures the transaction coordinator (zero values: defaults,
	// gateway.DefaultTxnConfig).
	Txn gateway.TxnConfig
	// TimeSource drives the store's loops, waits, rate limits and load
	// recording, and the HLC made when Clock is nil (default: the real clock).
	TimeSource timeutil.TimeSource

	// Raft timing (see ranges.StoreConfig); zero values take its defaults.
	RaftRTTMillisecond uint64
	ElectionRTT        uint64
	HeartbeatRTT       uint64
	// Node liveness: record TTL and heartbeat interval (zero = defaults).
	LivenessTTL       time.Duration
	HeartbeatInterval time.Duration

	// Security is the node's certificates (security.NewManager for user
	// security.NodeUser): the node serves gRPC with mutual TLS and checks
	// every call's role (security.Authorizer), dials its peers with its
	// node certificate, and runs Raft and gossip over mutual TLS with it.
	// nil is the insecure mode (--insecure): plaintext everywhere and no
	// role checks. A cluster cannot mix the two. The node does not reload
	// the certificates: its owner calls Reload (SIGHUP).
	Security *security.Manager
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
	// TestingAckDelay holds back the reply to an applied Increment (see
	// ranges.StoreConfig.TestingAckDelay; fault tests only).
	TestingAckDelay time.Duration
	// TestingSnapshotEntries: take a Raft snapshot every this many applied
	// entries and compact the log behind it, keeping a quarter of it
	// (0: ranges.StoreConfig's defaults, 10000 and 5000). Tests that need
	// a replica caught up by a snapshot rather than the log set it low.
	TestingSnapshotEntries uint64
	// TestingForgetMerges: see ranges.StoreConfig (fault tests only).
	TestingForgetMerges bool
	// DrainTimeout bounds the lease handoff of a graceful Stop (0 =
	// DefaultDrainTimeout, negative = no handoff).
	DrainTimeout time.Duration
	// TimeUntilStoreDead: a node whose liveness record has been expired
	// this long is dead, before that suspect (0 = DefaultTimeUntilStoreDead).
	TimeUntilStoreDead time.Duration
	// ReplicateQueueInterval is the time between passes of the replicate
	// queue (0 = rebalance.DefaultInterval, negative = no queue).
	ReplicateQueueInterval time.Duration
	// SnapshotRate bounds the bytes/s of the range snapshots this node
	// sends (0 = ranges.DefaultSnapshotRate, negative = unlimited);
	// MaxSnapshotsInFlight bounds those it sends, and those it applies, at
	// once (0 = ranges.DefaultMaxSnapshotsInFlight).
	SnapshotRate         int64
	MaxSnapshotsInFlight int
	// ClosedTimestampTarget: how far behind its clock a leaseholder closes
	// timestamps, for follower reads (0 = ranges.DefaultClosedTimestampTarget).
	ClosedTimestampTarget time.Duration
	// ClosedTimestampInterval: how often the side transport publishes the
	// closed timestamps of idle ranges (0 = ranges.DefaultClosedTimestampInterval).
	ClosedTimestampInterval time.Duration
	// GossipAddr is where the node gossips its store descriptor (host:port,
	// port 0 picks one; "" = the gRPC listener's host, any port; "-" = no
	// gossip). GossipInterval and GossipTTL: see package gossip (0 =
	// its defaults).
	GossipAddr     string
	GossipInterval time.Duration
	GossipTTL      time.Duration
	// GCTTL and GCInterval: the MVCC GC keeps overwritten versions this
	// long, and runs this often (ranges.StoreConfig; zero = its defaults).
	GCTTL, GCInterval time.Duration
	// Thresholds are the allocator's balance settings, used by the
	// replicate queue, range explain, allocator plan and zone checks
	// (zero value = allocator.DefaultThresholds(); Start refuses an
	// invalid value).
	Thresholds allocator.Thresholds
	// ReadReplica starts a read-replica node (rangestore start
	// --read-replica, issue 13): it joins a running cluster, holds
	// non-voters only and never a lease. The role is recorded in its node
	// descriptor when it joins and kept for the node's lifetime.
	ReadReplica bool
	// ReadReplicaTTL: a read replica's whiteboard entry hidden after an
	// unclean exit is dropped this long after it was last heard (0 =
	// gossip.DefaultReadReplicaTTL, 60 s; --read-replica-ttl).
	ReadReplicaTTL time.Duration
	// RoutingTTL is the TTL of the routing tables Discovery hands out
	// (0 = gateway.DefaultRoutingTTL, 300 s; --routing-ttl).
	RoutingTTL time.Duration
}

// DefaultDrainTimeout bounds the lease handoff of a graceful stop.
const DefaultDrainTimeout = 10 * time.Second

// Node is one rangestore process: store, gateway, gRPC and HTTP servers.
type Node struct {
	cfg      Config
	log      *slog.Logger
	eng      *kv.Engine
	store    *ranges.Store
	router   *gateway.Router
	kvServer *gateway.KVServer
	txns     *gateway.TxnCoordinator
	grpc     *grpc.Server
	health   *health.Server
	lis      net.Listener
	http     *http.Server
	httpLis  net.Listener
	registry *prometheus.Registry
	liveness *leases.Liveness

	stopping atomic.Bool
	loopStop chan struct{} // the readiness and address loop (ready.go)
	loopDone chan struct{}
	stopOnce sync.Once

	// refreshKick asks the loop to refresh the node directory now.
	refreshKick chan struct{}
	// joinMu serializes becoming a member: init's Bootstrap and a join.
	joinMu sync.Mutex
	// joinRefusals counts join tries refused by an initialized node.
	joinRefusals atomic.Int64
	// replicateQueue is the node's replicate queue (replicate.go; nil
	// when disabled).
	replicateQueue *rebalance.Queue
	// drainMu serializes drains (Stop, DrainNode, decommission).
	drainMu sync.Mutex
	// lastDecision: range ID -> the last step this node's replicate queue
	// carried out for it (noteDecision), for `range list`.
	lastDecision sync.Map
	// gossip spreads the store descriptors (gossip.go); nil until the
	// node has an ID, and after Stop.
	gossip atomic.Pointer[gossip.Gossip]
	// membershipDrained, idleLogged: the loop's memory of
	// watchOwnMembership (decommission.go); only the loop uses them.
	membershipDrained, idleLogged bool
}

// Start opens the node's storage, restarts its replicas and serves.
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = leases.NewClockFrom(cfg.TimeSource, 0)
	}
	if cfg.Limits == (gateway.Limits{}) {
		cfg.Limits = gateway.DefaultLimits
	}
	if cfg.StoreDir == "" || cfg.ListenAddr == "" || cfg.RaftAddr == "" {
		return nil, errors.New("node: store dir, listen address and raft address are required")
	}
	if err := checkSecurity(cfg.Security); err != nil {
		return nil, err
	}
	if err := cfg.Thresholds.Validate(); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	for _, j := range cfg.Join {
		if err := checkHostPort(j); err != nil {
			return nil, fmt.Errorf("node: join address %q: %w", j, err)
		}
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o755); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, registry: prometheus.NewRegistry(), refreshKick: make(chan struct{}, 1)}
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Clock.SetLogger(cfg.Logger)
	registerClockMetrics(n.registry, cfg.Clock)
	if cfg.Security != nil {
		n.registry.MustRegister(cfg.Security.Collector()) // rangestore_cert_expiry_seconds
	}
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
	transport, err := raftTransport(cfg)
	if err != nil {
		return nil, err
	}
	n.store, err = ranges.NewStore(ranges.StoreConfig{
		Dir: cfg.StoreDir, RaftAddress: cfg.RaftAddr, Engine: n.eng, Clock: cfg.Clock, Logger: cfg.Logger, TimeSource: cfg.TimeSource,
		Metrics:        ranges.NewMetrics(n.registry),
		RTTMillisecond: cfg.RaftRTTMillisecond, ElectionRTT: cfg.ElectionRTT, HeartbeatRTT: cfg.HeartbeatRTT,
		TransportFactory: transport, CrashPoint: cfg.CrashPoint, TestingAckDelay: cfg.TestingAckDelay, TestingForgetMerges: cfg.TestingForgetMerges,
		RangeMaxBytes: cfg.RangeMaxBytes, RangeMinBytes: cfg.RangeMinBytes, LoadSplitQPS: cfg.LoadSplitQPS, LoadSplitDuration: cfg.LoadSplitDuration,
		SplitCheckInterval: cfg.SplitCheckInterval, MetaCheckInterval: cfg.MetaCheckInterval,
		Limits: ranges.Limits(cfg.Limits), FreezeTimeout: cfg.FreezeTimeout, TimeUntilStoreDead: cfg.TimeUntilStoreDead,
		SnapshotRate: cfg.SnapshotRate, MaxSnapshotsInFlight: cfg.MaxSnapshotsInFlight,
		GCTTL: cfg.GCTTL, GCInterval: cfg.GCInterval,
		ClosedTimestampTarget: cfg.ClosedTimestampTarget, ClosedTimestampInterval: cfg.ClosedTimestampInterval,
		SnapshotEntries: cfg.TestingSnapshotEntries, CompactionOverhead: max(cfg.TestingSnapshotEntries/4, min(cfg.TestingSnapshotEntries, 1)),
	})
	if err != nil {
		return nil, err
	}
	if cr := n.store.ClusterRecord(); cr != nil {
		if err := checkStoreMode(n.ownDescriptor(), cr.ClusterId, cfg.Security != nil); err != nil {
			return nil, err
		}
	}
	if cr := n.store.ClusterRecord(); cr != nil && len(cfg.Join) > 0 {
		if err := checkJoinClusters(context.Background(), cr, cfg.Join, []string{lis.Addr().String(), cfg.ListenAddr}, peerDialOptions(cfg)); err != nil {
			return nil, err
		}
	}
	maxMsg := MaxMessageSize(cfg.Limits)
	n.router = gateway.NewRouter(n, n.store, cfg.Clock, cfg.Logger, peerDialOptions(cfg)...)
	if cfg.GossipAddr != "-" {
		if err := checkGossipBind(n.gossipBindAddr(), cfg.Security != nil); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	n.liveness = leases.NewLiveness(leases.LivenessConfig{NodeID: n.store.NodeID, Clock: cfg.Clock, Logger: cfg.Logger,
		TTL: cfg.LivenessTTL, HeartbeatInterval: cfg.HeartbeatInterval}, n.router)
	n.store.SetLiveness(n.liveness)
	n.store.SetSender(n.router)
	n.liveness.Start()
	n.kvServer = gateway.NewKVServer(n.router, cfg.Limits, cfg.Clock, n.store.NodeID)
	n.kvServer.SetClusterID(n.ClusterID)
	txnMetrics := gateway.NewTxnMetrics(n.registry)
	n.router.SetTxnMetrics(txnMetrics)
	txnCfg := cfg.Txn
	if txnCfg.CrashPoint == nil {
		txnCfg.CrashPoint = cfg.CrashPoint
	}
	n.txns = gateway.NewTxnCoordinator(n.router, cfg.Clock, n.store.NodeID, txnCfg, txnMetrics, cfg.Logger)
	n.kvServer.SetTxnCoordinator(n.txns)
	rpcm := gateway.NewRPCMetrics(n.registry)
	sopts, err := serverOptions(cfg, maxMsg, rpcm)
	if err != nil {
		return nil, err
	}
	n.grpc = grpc.NewServer(sopts...)
	rspb.RegisterKVServer(n.grpc, n.kvServer)
	rspb.RegisterInternalServer(n.grpc, gateway.NewInternalServer(n))
	rspb.RegisterAdminServer(n.grpc, gateway.NewAdminServer(n))
	rspb.RegisterBackupServer(n.grpc, gateway.NewBackupServer(n.kvServer))
	rspb.RegisterDiscoveryServer(n.grpc, gateway.NewDiscoveryServer(n))
	// Health is readiness (ready.go): NOT_SERVING until the loop finds the
	// node initialized, live and with quorum for its ranges.
	n.health = health.NewServer()
	healthpb.RegisterHealthServer(n.grpc, readyHealth{Server: n.health, n: n})
	reflection.Register(n.grpc)
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	n.health.SetServingStatus(rspb.KV_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	if cfg.HTTPAddr != "" {
		hl, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			n.grpc.Stop()
			return nil, fmt.Errorf("node: listen on %s: %w", cfg.HTTPAddr, err)
		}
		n.httpLis = hl
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }) // liveness
		mux.HandleFunc("/readyz", n.serveReadyz)
		// Profiles (CPU, heap, goroutines) for diagnosing a live node.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = n.http.Serve(hl) }()
	}
	// gRPC serves only once httpLis is set: NodeInfo (NodeDescriptor) reads
	// it from handler goroutines.
	go func() {
		if err := n.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("grpc server stopped", "err", err)
		}
	}()
	if err := n.updateOwnAddress(); err != nil {
		n.grpc.Stop()
		if n.http != nil {
			_ = n.http.Close()
		}
		return nil, err
	}
	n.startLoop()
	n.startReplicateQueue()
	ok = true
	n.log.Info("node started", "node", n.store.NodeID(), "addr", n.Addr(), "raft", cfg.RaftAddr, "http", n.HTTPAddr(), "store", cfg.StoreDir)
	return n, nil
}

// registerClockMetrics exports how far the HLC runs ahead of the physical
// clock and how many timestamps beyond the max offset it refused.
func registerClockMetrics(reg *prometheus.Registry, c *leases.Clock) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rangestore_clock_offset_seconds",
			Help: "How far the node's hybrid logical clock runs ahead of its physical clock (HLC - physical); at most the max clock offset."},
			func() float64 { return c.Offset().Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "rangestore_clock_jumps_refused_total",
			Help: "Client or peer timestamps refused because they were more than the max clock offset ahead of the physical clock."},
			func() float64 { return float64(c.RefusedJumps()) }),
	)
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

// Engine is the node's Pebble engine. Writing through it bypasses Raft:
// only tests that need a replica to diverge (the consistency check's own
// test) and offline tools use it.
func (n *Node) Engine() *kv.Engine { return n.eng }

// Registry returns the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// NodeID returns the node's ID (0 before init).
func (n *Node) NodeID() uint64 { return n.store.NodeID() }

// Transactions lists the transactions this node coordinates.
func (n *Node) Transactions() []gateway.TxnInfo { return n.txns.List() }

// Send runs a range request on the local store.
func (n *Node) Send(ctx context.Context, req *rspb.RangeRequest) *rspb.RangeResponse {
	return n.store.Send(ctx, req)
}

// NodeDescriptor describes this node.
func (n *Node) NodeDescriptor() *rspb.NodeDescriptor {
	return &rspb.NodeDescriptor{NodeId: n.store.NodeID(), Address: n.Addr(), RaftAddress: n.cfg.RaftAddr,
		Locality: n.cfg.Locality, HttpAddress: n.HTTPAddr(), ReadReplica: n.ReadReplica(), Secure: n.Secure()}
}

// ReadReplica reports whether this is a read-replica node: started with
// Config.ReadReplica, or recorded as one in its cluster record (the role
// is for the node's lifetime, also across a restart without the flag).
func (n *Node) ReadReplica() bool {
	return n.cfg.ReadReplica || (n.store.NodeID() != 0 && n.store.ReadReplicaNode(n.store.NodeID()))
}

// ClusterID is the cluster's ID ("" before init).
func (n *Node) ClusterID() string {
	if c := n.store.ClusterRecord(); c != nil {
		return c.ClusterId
	}
	return ""
}

// NodeAddress resolves a node ID to its gRPC address (gateway.Resolver)
// through the cached directory; an unknown ID makes the loop refresh it.
func (n *Node) NodeAddress(nodeID uint64) (string, bool) {
	if c := n.store.ClusterRecord(); c != nil {
		for _, d := range c.Nodes {
			if d.NodeId == nodeID {
				return d.Address, true
			}
		}
		n.kickRefresh()
	}
	return "", false
}

// NodeLocality returns a node's locality tiers from the cached directory
// (gateway.LocalityResolver: follower reads go to the nearest replica).
func (n *Node) NodeLocality(nodeID uint64) ([]*rspb.LocalityTier, bool) {
	if nodeID == n.NodeID() {
		return n.cfg.Locality, true
	}
	if c := n.store.ClusterRecord(); c != nil {
		for _, d := range c.Nodes {
			if d.NodeId == nodeID {
				return d.Locality, true
			}
		}
	}
	return nil, false
}

// MetaRange is the newest descriptor of the meta range this node knows
// (gateway.Resolver; see ranges.Store.MetaDescriptor).
func (n *Node) MetaRange() *rspb.RangeDescriptor { return n.store.MetaDescriptor() }

// Ranges lists local replicas.
func (n *Node) Ranges() []*rspb.RangeInfo {
	out := n.store.Ranges()
	for _, ri := range out {
		if v, ok := n.lastDecision.Load(ri.RangeDescriptor.GetRangeId()); ok {
			ri.LastDecision = v.(string)
		}
	}
	return out
}

// Bootstrap joins this node to a new cluster (called by init). The request
// must lay out a valid cluster and name the membership of this node's join
// list (ValidateBootstrap).
func (n *Node) Bootstrap(ctx context.Context, req *rspb.BootstrapRequest) error {
	n.joinMu.Lock()
	defer n.joinMu.Unlock()
	if cur := n.store.ClusterRecord(); cur != nil && cur.ClusterId == req.ClusterId && cur.NodeId == req.NodeId {
		return nil // a retry of the bootstrap that made this node
	}
	if err := n.validateBootstrap(ctx, req); err != nil {
		n.log.Warn("bootstrap request refused", "cluster", req.ClusterId, "err", err)
		return err
	}
	return n.store.Bootstrap(req, BootstrapData(req))
}

// Stop drains and stops the node, in this order:
//  0. readiness (/readyz, gRPC health) reports "node is shutting down",
//     and the node leaves the gossip of store descriptors;
//  1. the node marks itself draining (store and liveness record): it takes
//     no new lease, and no lease or Raft leadership is moved to it;
//  2. every lease it holds moves, with its range's Raft leadership, to
//     another live replica, bounded by Config.DrainTimeout; requests for
//     those ranges meanwhile get NOT_LEASEHOLDER naming the new holder,
//     and client requests arriving here are still forwarded;
//  3. new client requests get Unavailable, in-flight ones finish (bounded);
//  4. the HTTP server, liveness heartbeats, replicas, Raft and storage close.
func (n *Node) Stop() { n.stop(true) }

func (n *Node) stop(handoff bool) {
	n.stopOnce.Do(func() {
		n.stopping.Store(true) // readiness and gRPC health say "shutting down" from here on
		n.stopLoop()
		n.stopGossip() // the others forget this node's store at once
		n.updateHealth()
		if handoff && n.cfg.DrainTimeout >= 0 && n.NodeID() != 0 {
			n.drainLeases()
		}
		n.kvServer.Drain()
		n.health.Shutdown()
		done := make(chan struct{})
		go func() { n.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			n.grpc.Stop() // cancels the handlers left and waits for them
			<-done
		}
		if n.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = n.http.Shutdown(ctx)
			cancel()
		}
		n.txns.Close()   // aborts what is still open; its tasks use the router
		n.closeStorage() // liveness first: its heartbeats use the router
		n.router.Close()
		n.log.Info("node stopped", "node", n.NodeID())
	})
}

// drainLeases is steps 1 and 2 of Stop.
func (n *Node) drainLeases() {
	timeout := n.cfg.DrainTimeout
	if timeout == 0 {
		timeout = DefaultDrainTimeout
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	moved, left := n.drain(ctx)
	l := n.log.Info
	if left > 0 {
		l = n.log.Warn
	}
	l(fmt.Sprintf("drained: transferred %d leases in %d ms, %d left", moved, time.Since(start).Milliseconds(), left),
		"node", n.NodeID(), "timeout", timeout)
}

// drain marks the node draining (store and liveness record: it takes no
// new lease) and moves the leases it holds away until none is left or ctx
// ends (ranges.Store.DrainLeases); Stop, DrainNode and a decommission use
// it. It returns the leases moved and left.
func (n *Node) drain(ctx context.Context) (moved, left int) {
	n.drainMu.Lock()
	defer n.drainMu.Unlock()
	n.store.SetDraining(true)
	// Recorded before any handoff, so that other nodes' lease loops do not
	// hand Raft leadership back (a failure here only makes that likelier).
	hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
	if err := n.liveness.SetDraining(hctx, true); err != nil {
		n.log.Warn("drain: could not mark the liveness record draining", "err", err)
	}
	hcancel()
	peers := newPeerConns(n)
	defer peers.close()
	n.store.SetPeerApplied(peers.applied)
	return n.store.DrainLeases(ctx)
}

// peerConns are a drain's connections to the other nodes.
type peerConns struct {
	n     *Node
	mu    sync.Mutex
	conns map[uint64]*grpc.ClientConn
}

func newPeerConns(n *Node) *peerConns { return &peerConns{n: n, conns: map[uint64]*grpc.ClientConn{}} }

// applied asks a node for the applied index of its replica of a range.
func (p *peerConns) applied(ctx context.Context, nodeID, rangeID uint64) (uint64, error) {
	p.mu.Lock()
	c, ok := p.conns[nodeID]
	if !ok {
		addr, found := p.n.NodeAddress(nodeID)
		if !found {
			p.mu.Unlock()
			return 0, fmt.Errorf("no address for n%d", nodeID)
		}
		var err error
		c, err = p.n.dialPeer(addr)
		if err != nil {
			p.mu.Unlock()
			return 0, err
		}
		p.conns[nodeID] = c
	}
	p.mu.Unlock()
	r, err := rspb.NewAdminClient(c).Ranges(ctx, &rspb.RangesRequest{RangeIds: []uint64{rangeID}})
	if err != nil {
		return 0, err
	}
	for _, ri := range r.Ranges {
		if ri.RangeDescriptor.GetRangeId() == rangeID {
			return ri.AppliedIndex, nil
		}
	}
	return 0, fmt.Errorf("n%d has no replica of r%d", nodeID, rangeID)
}

func (p *peerConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
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

// TransferLease moves a range's lease to target (see TransferLeaseTo).
func (n *Node) TransferLease(ctx context.Context, rangeID, target uint64) error {
	_, err := n.TransferLeaseTo(ctx, rangeID, target)
	return err
}

// TransferLeaseTo moves a range's lease to target and reports whether
// target held it already. Any node accepts it: a node with a replica of the
// range forwards it to the leaseholder it knows of; a node without one looks
// the range up in meta and forwards it to a replica (the target's first).
// Unknown ranges and nodes are NotFound.
func (n *Node) TransferLeaseTo(ctx context.Context, rangeID, target uint64) (bool, error) {
	if _, ok := n.NodeAddress(target); !ok {
		return false, status.Errorf(codes.NotFound, "node n%d not found", target)
	}
	if n.readReplicaNode(target) {
		return false, status.Errorf(codes.FailedPrecondition, "target_node_id: n%d is a read-replica node: it never holds a lease", target)
	}
	var holder uint64
	local := false
	for _, ri := range n.store.Ranges() {
		if ri.RangeDescriptor.GetRangeId() == rangeID {
			local, holder = true, ri.Lease.GetNodeId()
		}
	}
	if local && (holder == 0 || holder == n.NodeID()) {
		if err := n.store.TransferLease(ctx, rangeID, target); err != nil {
			return false, err
		}
		return holder == target, nil
	}
	var via []uint64
	if local {
		via = []uint64{holder}
	} else {
		descs, err := n.MetaRanges(ctx)
		if err != nil {
			return false, fmt.Errorf("looking up r%d in meta: %w", rangeID, err)
		}
		for _, d := range descs {
			if d.RangeId != rangeID {
				continue
			}
			for _, r := range d.Replicas {
				if r.NodeId == target {
					via = append([]uint64{target}, via...)
				} else {
					via = append(via, r.NodeId)
				}
			}
		}
		if len(via) == 0 {
			return false, status.Errorf(codes.NotFound, "range r%d not found", rangeID)
		}
	}
	var err error
	for _, id := range via {
		var held bool
		if held, err = n.forwardTransferLease(ctx, id, rangeID, target); err == nil || status.Code(err) != codes.Unavailable {
			return held, err
		}
	}
	return false, err
}

// forwardTransferLease asks node id to transfer the lease.
func (n *Node) forwardTransferLease(ctx context.Context, id, rangeID, target uint64) (bool, error) {
	addr, ok := n.NodeAddress(id)
	if !ok {
		return false, fmt.Errorf("no address for n%d, a replica of r%d", id, rangeID)
	}
	c, err := n.dialPeer(addr)
	if err != nil {
		return false, err
	}
	defer c.Close()
	resp, err := rspb.NewAdminClient(c).TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: rangeID, TargetNodeId: target})
	return resp.GetAlreadyHeld(), err
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

// DefaultChangeReplicasTimeout bounds ChangeReplicas and RelocateRange
// when the caller's context has no deadline.
const DefaultChangeReplicasTimeout = 2 * time.Minute

// ChangeReplicas adds the replicas on add, then removes those on remove,
// one at a time (ranges.Store.ChangeReplicas). Unknown ranges are NotFound.
func (n *Node) ChangeReplicas(ctx context.Context, rangeID uint64, add, remove []uint64) (*rspb.RangeDescriptor, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultChangeReplicasTimeout)
		defer cancel()
	}
	return n.store.ChangeReplicas(ctx, rangeID, add, remove)
}

// RelocateRange moves a range's voters to exactly voters (the missing ones
// added first, then the others removed) and its lease to voters[0].
func (n *Node) RelocateRange(ctx context.Context, rangeID uint64, voters []uint64) (*rspb.RangeDescriptor, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultChangeReplicasTimeout)
		defer cancel()
	}
	desc, _, err := n.metaDescriptor(ctx, rangeID)
	if err != nil {
		return nil, err
	}
	want := map[uint64]bool{}
	for _, id := range voters {
		want[id] = true
	}
	var add, remove []uint64
	have := map[uint64]bool{}
	for _, rep := range desc.Replicas {
		have[rep.NodeId] = rep.Type == rspb.ReplicaType_VOTER
		if !want[rep.NodeId] {
			remove = append(remove, rep.NodeId)
		}
	}
	for _, id := range voters {
		if !have[id] {
			add = append(add, id)
		}
	}
	if len(add)+len(remove) > 0 {
		if desc, err = n.store.ChangeReplicas(ctx, rangeID, add, remove); err != nil {
			return desc, err
		}
	}
	var got []uint64
	for _, rep := range desc.GetReplicas() {
		if rep.Type == rspb.ReplicaType_VOTER {
			got = append(got, rep.NodeId)
		}
	}
	if slices.Sort(got); len(got) != len(want) || slices.ContainsFunc(got, func(id uint64) bool { return !want[id] }) {
		return desc, status.Errorf(codes.Aborted, "r%d has voters on %v after the relocation to %v: another replica change ran meanwhile", rangeID, got, voters)
	}
	// The lease may still be settling after the change (its holder's
	// replica removed and a new holder acquiring, or an expiration lease
	// extended while the transfer waited): a transfer refused as
	// Unavailable is tried again, for up to relocateLeaseTries attempts.
	var err2 error
	for attempt := 0; attempt < relocateLeaseTries; attempt++ {
		if err2 = n.TransferLease(ctx, rangeID, voters[0]); err2 == nil || status.Code(err2) != codes.Unavailable || ctx.Err() != nil {
			break
		}
		n.log.Info("relocate: moving the lease again", "range", rangeID, "target", voters[0], "attempt", attempt+1, "err", err2)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond): // pacing between attempts, not a correctness wait
		}
	}
	if err2 != nil {
		return desc, fmt.Errorf("r%d relocated to %v, but moving its lease to n%d failed: %w", rangeID, voters, voters[0], err2)
	}
	return desc, nil
}

// relocateLeaseTries bounds RelocateRange's lease transfer attempts.
const relocateLeaseTries = 5

// MaxMessageSize is the gRPC message limit of a node with limits l, for
// its server and its peer clients: every request within the limits and
// every replica response fits (ranges.MaxMessageSize).
func MaxMessageSize(l gateway.Limits) int { return ranges.MaxMessageSize(ranges.Limits(l)) }
