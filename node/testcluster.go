package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/security"
)

// TestClusterOptions configures an in-process cluster.
type TestClusterOptions struct {
	Nodes         int    // default 3
	BaseDir       string // default: a new temp dir (removed by Close)
	InitialSplits int    // user-span split points; default 4
	SplitKeys     [][]byte
	Logger        *slog.Logger // default: discard
	// Raft timing; defaults are faster than a real node's (20 ms ticks,
	// 300 ms elections) so tests fail over quickly.
	RaftRTTMillisecond, ElectionRTT, HeartbeatRTT uint64
	HTTP                                          bool // serve /metrics on a free port
	// Network, when set, carries Raft and node-to-node gRPC traffic through
	// a partition matrix (members are node indexes) over an in-process Raft
	// transport.
	Network *fault.Network
	// Clocks, when set, are the nodes' physical clocks (one per node).
	Clocks []*fault.Clock
	// Localities, when set, are the nodes' localities (by index; nodes
	// beyond it, and added ones, get node 0's, unless AddReadReplicaAt
	// names one). With a Network each node
	// is placed in its region (the "region" tier, else the first), for the
	// Network's latency table if it has one.
	Localities [][]*rspb.LocalityTier
	// Txn configures the nodes' transaction coordinators.
	Txn gateway.TxnConfig
	// LivenessTTL / HeartbeatInterval override the liveness defaults.
	LivenessTTL, HeartbeatInterval time.Duration
	// Split queue and meta repair settings (zero = node defaults).
	RangeMaxBytes, RangeMinBytes          int64
	LoadSplitQPS                          float64
	LoadSplitDuration, SplitCheckInterval time.Duration
	MetaCheckInterval                     time.Duration
	// DrainTimeout bounds a StopNode's lease handoff (0 = 3 s; Close
	// stops every node without one).
	DrainTimeout time.Duration
	// FreezeTimeout: see ranges.StoreConfig (zero = default).
	FreezeTimeout time.Duration
	// TestingForgetMerges: see ranges.StoreConfig.
	TestingForgetMerges bool
	// SnapshotRate, MaxSnapshotsInFlight: see Config (zero = defaults).
	SnapshotRate         int64
	MaxSnapshotsInFlight int
	// ClosedTimestampTarget, ClosedTimestampInterval: see Config (zero =
	// the defaults, 3 s and 200 ms).
	ClosedTimestampTarget, ClosedTimestampInterval time.Duration
	// CrashPoint, when set, is each node's Config.CrashPoint (node is the
	// node's index): tests use it to delay steps.
	CrashPoint func(node int, name string)
	// ReplicateQueueInterval: the nodes' replicate queue interval; 0 (the
	// default) runs no queue, as the tests written before it expect.
	ReplicateQueueInterval time.Duration
	// TimeUntilStoreDead: see Config (0 = the node default).
	TimeUntilStoreDead time.Duration
	// ReplicationFactor is Init's replication_factor (0 = its default).
	ReplicationFactor int
	// Thresholds are the nodes' Config.Thresholds (zero = defaults).
	Thresholds allocator.Thresholds
	// GCTTL, GCInterval: see Config (zero = the node defaults).
	GCTTL, GCInterval time.Duration
	// Secure runs the cluster with mutual TLS (Config.Security): a CA,
	// a node certificate for 127.0.0.1 and localhost and a client
	// certificate for root are created in BaseDir/certs (the CA key in
	// BaseDir/ca.key; existing files are used as they are), every node
	// gets its own Manager of the node certificate, and the cluster's
	// client connections (Conn, KV) use root's certificate.
	Secure bool
	// EditPlan, when set, replaces Init: the nodes (n1.. in start order)
	// are bootstrapped directly with PlanRanges' layout as EditPlan leaves
	// it (e.g. a layout as older versions wrote it).
	EditPlan func(plan []*rspb.RangeDescriptor)
}

// TestCluster is a multi-node cluster in one process on loopback.
type TestCluster struct {
	opts    TestClusterOptions
	ownDir  bool
	mu      sync.Mutex
	cfgs    []Config
	nodes   []*Node
	conns   []*grpc.ClientConn
	Init    *rspb.InitResponse
	BaseDir string
	// rootSec is root's client certificate (Secure only).
	rootSec *security.Manager
}

// FreeAddr returns a loopback address with a currently free port. The
// port is picked at random below the kernel's ephemeral range (32768 and
// up on Linux): a port from that range can be taken by any outgoing
// connection between this check and the bind (a CI run lost a Raft port
// that way), one below it only by another listener. A port is handed out
// at most once per process: the probe closes its listener, so without the
// record two picks of one test (six for three nodes, and nothing is bound
// until the nodes start) could return the same free port, and the second
// node to start failed with "address already in use" (a CI run's
// TestJoinWaitsForInitBootstrap).
func FreeAddr() (string, error) {
	freePorts.mu.Lock()
	defer freePorts.mu.Unlock()
	if freePorts.given == nil {
		freePorts.given = make(map[int]bool)
	}
	for attempt := 0; attempt < 100; attempt++ {
		port := 12000 + mrand.IntN(20000)
		if freePorts.given[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		_ = l.Close()
		freePorts.given[port] = true
		return addr, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// freePorts records the ports FreeAddr handed out in this process.
var freePorts struct {
	mu    sync.Mutex
	given map[int]bool
}

// StartTestCluster starts the nodes, initializes the cluster and waits
// until every range answers. Free ports are picked before binding, so
// another process can take one in between; such a start is retried with
// fresh ports.
func StartTestCluster(ctx context.Context, opts TestClusterOptions) (*TestCluster, error) {
	for attempt := 0; ; attempt++ {
		tc, err := startTestCluster(ctx, opts)
		if err == nil || attempt == 4 || opts.BaseDir != "" || !strings.Contains(err.Error(), "address already in use") {
			return tc, err
		}
	}
}

func startTestCluster(ctx context.Context, opts TestClusterOptions) (*TestCluster, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 0 {
		return nil, fmt.Errorf("test cluster: %d nodes", opts.Nodes)
	}
	if opts.InitialSplits == 0 && opts.SplitKeys == nil {
		opts.InitialSplits = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.RaftRTTMillisecond == 0 {
		opts.RaftRTTMillisecond, opts.ElectionRTT, opts.HeartbeatRTT = 20, 15, 2
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = 3 * time.Second
	}
	tc := &TestCluster{opts: opts}
	if opts.BaseDir == "" {
		d, err := os.MkdirTemp("", "rangestore-cluster-")
		if err != nil {
			return nil, err
		}
		tc.BaseDir, tc.ownDir = d, true
	} else {
		tc.BaseDir = opts.BaseDir
	}
	if opts.Secure {
		if err := tc.createCerts(); err != nil {
			tc.Close()
			return nil, err
		}
	}
	var addrs []string
	for i := 0; i < opts.Nodes; i++ {
		ga, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		ra, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		cfg := Config{
			StoreDir: filepath.Join(tc.BaseDir, "n"+strconv.Itoa(i+1)), ListenAddr: ga, RaftAddr: ra,
			Logger:             opts.Logger.With("node", i+1),
			RaftRTTMillisecond: opts.RaftRTTMillisecond, ElectionRTT: opts.ElectionRTT, HeartbeatRTT: opts.HeartbeatRTT,
			LivenessTTL: opts.LivenessTTL, HeartbeatInterval: opts.HeartbeatInterval,
			RangeMaxBytes: opts.RangeMaxBytes, RangeMinBytes: opts.RangeMinBytes, LoadSplitQPS: opts.LoadSplitQPS, LoadSplitDuration: opts.LoadSplitDuration,
			SplitCheckInterval: opts.SplitCheckInterval, MetaCheckInterval: opts.MetaCheckInterval,
			DrainTimeout:        opts.DrainTimeout,
			FreezeTimeout:       opts.FreezeTimeout,
			TestingForgetMerges: opts.TestingForgetMerges,
			TimeUntilStoreDead:  opts.TimeUntilStoreDead,
			SnapshotRate:        opts.SnapshotRate, MaxSnapshotsInFlight: opts.MaxSnapshotsInFlight,
			ClosedTimestampTarget: opts.ClosedTimestampTarget, ClosedTimestampInterval: opts.ClosedTimestampInterval,
			Thresholds: opts.Thresholds,
			GCTTL:      opts.GCTTL, GCInterval: opts.GCInterval,
			Txn: opts.Txn,
		}
		cfg.ReplicateQueueInterval = opts.ReplicateQueueInterval
		if cfg.ReplicateQueueInterval == 0 {
			cfg.ReplicateQueueInterval = -1
		}
		if cp := opts.CrashPoint; cp != nil {
			cfg.CrashPoint = func(name string) { cp(i, name) }
		}
		if len(opts.Localities) > 0 {
			cfg.Locality = opts.Localities[0]
			if i < len(opts.Localities) {
				cfg.Locality = opts.Localities[i]
			}
		}
		if opts.Network != nil {
			opts.Network.Register(i, ga, ra)
			if err := placeInNetwork(opts.Network, i, cfg.Locality); err != nil {
				return nil, err
			}
			cfg.RaftTransport = &fault.TransportFactory{Net: opts.Network}
			cfg.PeerDialOptions = opts.Network.PeerDialOptions(ga)
		}
		if i < len(opts.Clocks) {
			cfg.Clock = leases.NewClock(opts.Clocks[i].Now, 0)
		}
		if opts.HTTP {
			if cfg.HTTPAddr, err = FreeAddr(); err != nil {
				return nil, err
			}
		}
		if opts.Secure {
			if cfg.Security, err = tc.nodeSecurity(); err != nil {
				tc.Close()
				return nil, err
			}
		}
		tc.cfgs = append(tc.cfgs, cfg)
		addrs = append(addrs, ga)
	}
	for i := range tc.cfgs {
		tc.cfgs[i].Join = addrs
		n, err := Start(tc.cfgs[i])
		if err != nil {
			tc.Close()
			return nil, err
		}
		tc.nodes = append(tc.nodes, n)
		c, err := grpc.NewClient(n.Addr(), tc.ClientDialOptions()...)
		if err != nil {
			tc.Close()
			return nil, err
		}
		tc.conns = append(tc.conns, c)
	}
	var init *rspb.InitResponse
	var err error
	if opts.EditPlan != nil {
		init, err = tc.bootstrapEdited(ctx)
	} else {
		init, err = rspb.NewAdminClient(tc.conns[0]).Init(ctx, &rspb.InitRequest{InitialSplits: int32(opts.InitialSplits), SplitKeys: opts.SplitKeys,
			ReplicationFactor: int32(opts.ReplicationFactor)})
	}
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("init: %w", err)
	}
	tc.Init = init
	if err := tc.WaitReady(ctx); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

// RegionOf is a locality's region: its "region" tier, else its first
// tier's value ("" without tiers).
func RegionOf(locality []*rspb.LocalityTier) string {
	for _, t := range locality {
		if t.Key == "region" {
			return t.Value
		}
	}
	if len(locality) > 0 {
		return locality[0].Value
	}
	return ""
}

// placeInNetwork places member i in its locality's region (nothing for
// a node without a locality).
func placeInNetwork(net *fault.Network, i int, locality []*rspb.LocalityTier) error {
	r := RegionOf(locality)
	if r == "" {
		return nil
	}
	if err := net.Place(i, r); err != nil {
		return fmt.Errorf("test cluster: node %d: %w", i, err)
	}
	return nil
}

// bootstrapEdited bootstraps every node with PlanRanges' layout as
// opts.EditPlan leaves it (the nodes are n1.. in start order).
func (tc *TestCluster) bootstrapEdited(ctx context.Context) (*rspb.InitResponse, error) {
	var nodes []*rspb.NodeDescriptor
	for i, cfg := range tc.cfgs {
		nodes = append(nodes, &rspb.NodeDescriptor{NodeId: uint64(i + 1), Address: cfg.ListenAddr, RaftAddress: cfg.RaftAddr})
	}
	splits := tc.opts.SplitKeys
	if len(splits) == 0 {
		splits = keys.DefaultSplitKeys(tc.opts.InitialSplits)
	}
	plan, err := PlanRanges(nodes, splits, 0)
	if err != nil {
		return nil, err
	}
	tc.opts.EditPlan(plan)
	clusterID := fmt.Sprintf("test-%x", mrand.Uint64())
	ts := &rspb.Timestamp{WallTime: time.Now().UnixNano()}
	for i, cfg := range tc.cfgs {
		// Internal is for nodes: with TLS, dial as one (the node's own
		// certificate).
		c, err := grpc.NewClient(cfg.ListenAddr, basePeerDialOptions(tc.Node(i).cfg)...)
		if err != nil {
			return nil, err
		}
		req := &rspb.BootstrapRequest{ClusterId: clusterID, NodeId: uint64(i + 1), Nodes: nodes, Ranges: plan, Timestamp: ts}
		_, err = rspb.NewInternalClient(c).Bootstrap(ctx, req)
		_ = c.Close()
		if err != nil {
			return nil, fmt.Errorf("bootstrapping n%d: %w", i+1, err)
		}
	}
	return &rspb.InitResponse{ClusterId: clusterID, Nodes: nodes, Ranges: plan}, nil
}

// WaitReady waits until every range serves a read through node 0's gateway
// (or the first running node).
func (tc *TestCluster) WaitReady(ctx context.Context) error {
	var kvc rspb.KVClient
	for i := range tc.nodes {
		if tc.Node(i) != nil {
			kvc = tc.KV(i)
			break
		}
	}
	for _, d := range tc.Init.Ranges {
		if len(d.StartKey) == 0 || d.StartKey[0] != 'u' {
			continue
		}
		key := append([]byte(nil), d.StartKey[1:]...)
		if len(key) == 0 {
			key = []byte{0}
		}
		for {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := kvc.Get(actx, &rspb.GetRequest{Key: key})
			cancel()
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("range r%d not ready: %w", d.RangeId, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// Node returns node i (0-based), nil while stopped.
func (tc *TestCluster) Node(i int) *Node {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.nodes[i]
}

// NumNodes is the cluster size.
func (tc *TestCluster) NumNodes() int { return len(tc.cfgs) }

// Addr is node i's gRPC address (stable across restarts).
func (tc *TestCluster) Addr(i int) string { return tc.cfgs[i].ListenAddr }

// Conn is a client connection to node i.
func (tc *TestCluster) Conn(i int) *grpc.ClientConn { return tc.conns[i] }

// KV is a KV client talking to node i.
func (tc *TestCluster) KV(i int) rspb.KVClient { return rspb.NewKVClient(tc.conns[i]) }

// StopNode stops node i gracefully (handing off its leases).
func (tc *TestCluster) StopNode(i int) { tc.stopNode(i, true) }

func (tc *TestCluster) stopNode(i int, handoff bool) {
	tc.mu.Lock()
	n := tc.nodes[i]
	tc.nodes[i] = nil
	tc.mu.Unlock()
	if n != nil {
		n.stop(handoff)
	}
}

// RestartNode starts node i again on the same directory and addresses.
func (tc *TestCluster) RestartNode(i int) error {
	tc.StopNode(i)
	n, err := Start(tc.cfgs[i])
	if err != nil {
		return err
	}
	tc.mu.Lock()
	tc.nodes[i] = n
	tc.mu.Unlock()
	return nil
}

// Close stops every node and removes the directory if it was created here.
func (tc *TestCluster) Close() {
	for _, c := range tc.conns {
		_ = c.Close()
	}
	var wg sync.WaitGroup
	for i := range tc.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); tc.stopNode(i, false) }() // the whole cluster: no handoff
	}
	wg.Wait()
	if tc.ownDir {
		_ = os.RemoveAll(tc.BaseDir)
	}
}

// AddNode starts one more node, on an empty store, with the gRPC addresses
// of the nodes at the indexes in join as its join list (all running nodes
// when join is empty): it joins the running cluster (join.go). It returns
// the new node's index at once; WaitJoined waits for its node ID.
func (tc *TestCluster) AddNode(join ...int) (int, error) {
	return tc.addNodeRetrying(false, nil, join)
}

// AddReadReplica is AddNode for a read-replica node (Config.ReadReplica:
// it holds non-voters only, never a lease).
func (tc *TestCluster) AddReadReplica(join ...int) (int, error) {
	return tc.addNodeRetrying(true, nil, join)
}

// AddReadReplicaAt is AddReadReplica with the new node's own locality
// (added nodes otherwise get node 0's).
func (tc *TestCluster) AddReadReplicaAt(locality []*rspb.LocalityTier, join ...int) (int, error) {
	return tc.addNodeRetrying(true, locality, join)
}

func (tc *TestCluster) addNodeRetrying(readReplica bool, locality []*rspb.LocalityTier, join []int) (int, error) {
	for attempt := 0; ; attempt++ {
		i, err := tc.addNode(readReplica, locality, join)
		if err == nil || attempt == 4 || !strings.Contains(err.Error(), "address already in use") {
			return i, err
		}
	}
}

func (tc *TestCluster) addNode(readReplica bool, locality []*rspb.LocalityTier, join []int) (int, error) {
	tc.mu.Lock()
	i := len(tc.cfgs)
	cfg := tc.cfgs[0] // the cluster's settings; then this node's own
	if len(join) == 0 {
		for j, n := range tc.nodes {
			if n != nil {
				join = append(join, j)
			}
		}
	}
	tc.mu.Unlock()
	ga, err := FreeAddr()
	if err != nil {
		return 0, err
	}
	ra, err := FreeAddr()
	if err != nil {
		return 0, err
	}
	cfg.StoreDir = filepath.Join(tc.BaseDir, "n"+strconv.Itoa(i+1))
	cfg.ListenAddr, cfg.RaftAddr, cfg.HTTPAddr = ga, ra, ""
	cfg.Logger = tc.opts.Logger.With("node", i+1)
	cfg.Clock = nil
	cfg.CrashPoint = nil
	cfg.Join = nil
	cfg.ReadReplica = readReplica
	if locality != nil {
		cfg.Locality = locality
	}
	for _, j := range join {
		cfg.Join = append(cfg.Join, tc.cfgs[j].ListenAddr)
	}
	if cp := tc.opts.CrashPoint; cp != nil {
		cfg.CrashPoint = func(name string) { cp(i, name) }
	}
	if tc.opts.Network != nil {
		tc.opts.Network.Register(i, ga, ra)
		if err := placeInNetwork(tc.opts.Network, i, cfg.Locality); err != nil {
			return 0, err
		}
		cfg.PeerDialOptions = tc.opts.Network.PeerDialOptions(ga)
	}
	if i < len(tc.opts.Clocks) {
		cfg.Clock = leases.NewClock(tc.opts.Clocks[i].Now, 0)
	}
	if tc.opts.HTTP {
		if cfg.HTTPAddr, err = FreeAddr(); err != nil {
			return 0, err
		}
	}
	if tc.opts.Secure {
		if cfg.Security, err = tc.nodeSecurity(); err != nil {
			return 0, err
		}
	}
	n, err := Start(cfg)
	if err != nil {
		_ = os.RemoveAll(cfg.StoreDir)
		return 0, err
	}
	c, err := grpc.NewClient(n.Addr(), tc.ClientDialOptions()...)
	if err != nil {
		n.Stop()
		return 0, err
	}
	tc.mu.Lock()
	tc.cfgs = append(tc.cfgs, cfg)
	tc.nodes = append(tc.nodes, n)
	tc.conns = append(tc.conns, c)
	tc.mu.Unlock()
	return i, nil
}

// WaitJoined waits until node i has a node ID and a live liveness record,
// and returns the ID.
func (tc *TestCluster) WaitJoined(ctx context.Context, i int) (uint64, error) {
	for {
		if n := tc.Node(i); n != nil && n.NodeID() != 0 {
			if self := n.liveness.Self(); self != nil {
				return n.NodeID(), nil
			}
		}
		select {
		case <-ctx.Done():
			id := uint64(0)
			if n := tc.Node(i); n != nil {
				id = n.NodeID()
			}
			return 0, fmt.Errorf("node %d did not join (node ID %d): %w", i, id, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// IndexOfNodeID returns the index of the running node with ID id, or -1.
func (tc *TestCluster) IndexOfNodeID(id uint64) int {
	for i := 0; i < tc.NumNodes(); i++ {
		if n := tc.Node(i); n != nil && n.NodeID() == id {
			return i
		}
	}
	return -1
}

// Test cluster certificates (TestClusterOptions.Secure).

// CertsDir is the secure cluster's certs directory (BaseDir/certs), and
// CAKey its CA key (BaseDir/ca.key), to create more certificates.
func (tc *TestCluster) CertsDir() string { return filepath.Join(tc.BaseDir, "certs") }

// CAKey: see CertsDir.
func (tc *TestCluster) CAKey() string { return filepath.Join(tc.BaseDir, "ca.key") }

// createCerts creates the CA, the node certificate (127.0.0.1, localhost)
// and root's client certificate, unless the certs directory has a CA.
func (tc *TestCluster) createCerts() error {
	dir, key := tc.CertsDir(), tc.CAKey()
	if _, err := os.Stat(filepath.Join(dir, security.CAFile)); err != nil {
		if _, err := security.CreateCA(dir, key, security.CreateOptions{}); err != nil {
			return fmt.Errorf("test cluster: %w", err)
		}
		if _, err := security.CreateNode(dir, key, []string{"127.0.0.1", "localhost"}, security.CreateOptions{}); err != nil {
			return fmt.Errorf("test cluster: %w", err)
		}
		if _, err := security.CreateClient(dir, key, security.RootUser, security.CreateOptions{}); err != nil {
			return fmt.Errorf("test cluster: %w", err)
		}
	}
	m, err := security.NewManager(security.Config{Dir: dir, User: security.RootUser})
	if err != nil {
		return fmt.Errorf("test cluster: %w", err)
	}
	tc.rootSec = m
	return nil
}

// nodeSecurity is a new Manager of the node certificate (one per node, as
// each process has its own).
func (tc *TestCluster) nodeSecurity() (*security.Manager, error) {
	m, err := security.NewManager(security.Config{Dir: tc.CertsDir(), User: security.NodeUser})
	if err != nil {
		return nil, fmt.Errorf("test cluster: %w", err)
	}
	return m, nil
}

// Security is node i's certificate manager (nil unless Secure).
func (tc *TestCluster) Security(i int) *security.Manager { return tc.cfgs[i].Security }

// ClientDialOptions are the options of the cluster's client connections:
// root's client certificate when Secure, plaintext otherwise.
func (tc *TestCluster) ClientDialOptions() []grpc.DialOption {
	if tc.rootSec != nil {
		return []grpc.DialOption{grpc.WithTransportCredentials(tc.rootSec.ClientCredentials())}
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
}
