package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/gossip"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/rebalance"
	"github.com/rangestore/rangestore/security"
)

// raftPortOffset: without --raft-addr, the Raft transport listens on the
// gRPC port + this offset.
const raftPortOffset = 10000

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func parseLocality(s string) ([]*rspb.LocalityTier, error) {
	if s == "" {
		return nil, nil
	}
	var out []*rspb.LocalityTier
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("--locality: %q is not key=value", part)
		}
		out = append(out, &rspb.LocalityTier{Key: k, Value: v})
	}
	return out, nil
}

func defaultRaftAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen-addr %q: %w", listen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p == 0 {
		return "", fmt.Errorf("--listen-addr %q: a fixed port is needed to derive --raft-addr", listen)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+raftPortOffset)), nil
}

// raftAddrChangedHint rewords a changed Raft address in terms of the flags:
// a new --listen-addr is fine, but without --raft-addr it moves the derived
// Raft address too.
func raftAddrChangedHint(err error, listen string, derived bool) error {
	var rc *ranges.RaftAddressChangedError
	if !errors.As(err, &rc) {
		return err
	}
	port := func(a string) string {
		if _, p, err := net.SplitHostPort(a); err == nil {
			return p
		}
		return a
	}
	who := "this data directory"
	if rc.NodeID != 0 {
		who = fmt.Sprintf("this data directory (n%d)", rc.NodeID)
	}
	if derived {
		return fmt.Errorf("the Raft address changed from %s (port %s) to %s (port %s, derived from --listen-addr %s + %d): "+
			"%s keeps the Raft address it was created with. To move the gRPC address, keep the Raft address: --raft-addr %s",
			rc.Old, port(rc.Old), rc.New, port(rc.New), listen, raftPortOffset, who, rc.Old)
	}
	return fmt.Errorf("--raft-addr %s (port %s) differs from %s (port %s), the Raft address %s was created with; "+
		"it cannot change across restarts: use --raft-addr %s", rc.New, port(rc.New), rc.Old, port(rc.Old), who, rc.Old)
}

func runStart(args []string) error {
	fs := newFlagSet("start")
	store := fs.String("store", "rangestore-data", "data directory")
	listen := fs.String("listen-addr", "127.0.0.1:26257", "gRPC address for clients and peers")
	raft := fs.String("raft-addr", "", fmt.Sprintf("Raft transport address (default: listen port + %d); must not change across restarts", raftPortOffset))
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "HTTP address for /metrics and /healthz (empty disables)")
	gossipAddr := fs.String("gossip-addr", "", "address (TCP and UDP) to gossip the store descriptor on (empty: the --listen-addr host, any port; port 0 picks one)")
	join := fs.StringSlice("join", nil, "gRPC addresses of the initial nodes, or of running nodes to join (comma-separated)")
	locality := fs.String("locality", "", "locality tiers, e.g. region=eu,zone=a")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	rangeMax := fs.Int64("range-max-bytes", ranges.DefaultRangeMaxBytes, "split a range once its data exceeds this many bytes (negative: never)")
	loadQPS := fs.Float64("load-split-qps", ranges.DefaultLoadSplitQPS, "split a range served above this many requests/s for 10s (negative: never)")
	deadAfter := fs.Duration("time-until-store-dead", node.DefaultTimeUntilStoreDead, "a node whose liveness record has been expired this long is dead (before that: suspect)")
	queueInterval := fs.Duration("replicate-queue-interval", rebalance.DefaultInterval, "time between passes of the replicate queue (repair, up- and down-replication)")
	snapRate := fs.String("snapshot-rate", "32MiB", "bytes/s of range snapshots this node sends, all together (units B, KiB, MiB, GiB, KB, MB, GB; 0: unlimited)")
	snapInFlight := fs.Int("max-snapshots-in-flight", ranges.DefaultMaxSnapshotsInFlight, "range snapshots this node sends at once, and separately applies at once (1-64)")
	closedTarget := fs.Duration("closed-timestamp-target", ranges.DefaultClosedTimestampTarget, "how far behind its clock a leaseholder closes timestamps: follower and read-replica reads (bounded staleness, causal) are this stale or more (50ms to 1h; the default until the cluster setting closed_timestamp_target is written)")
	drainTimeout := fs.Duration("drain-timeout", node.DefaultDrainTimeout, "on SIGTERM/SIGINT, how long to spend handing leases to other nodes before stopping (0: no handoff)")
	readReplica := fs.Bool("read-replica", false, "start a read replica: it joins a running cluster (--join), holds non-voting replicas of every range, never votes and never holds a lease")
	readReplicaTTL := fs.Duration("read-replica-ttl", gossip.DefaultReadReplicaTTL, "a read replica that exited uncleanly stays, hidden, on the gossip whiteboard this long after it was last heard")
	routingTTL := fs.Duration("routing-ttl", gateway.DefaultRoutingTTL, "TTL of the routing tables this node hands out (Discovery.GetRoutingTable)")
	certsDir := fs.String("certs-dir", "", "directory of ca.crt and node.crt/node.key (rangestore cert create-ca, create-node): clients, peers and Raft use mutual TLS; SIGHUP reloads it")
	insecureMode := fs.Bool("insecure", false, "plaintext gRPC, Raft and gossip without certificates: anyone who reaches the ports may read and change everything")
	def := allocator.DefaultThresholds()
	th := thresholdFlags{
		rangeThreshold: fs.Float64("range-rebalance-threshold", def.RangeThreshold, "move replicas off a node holding more than mean + max(this × mean, --min-range-rebalance) (0 or more)"),
		minRange:       fs.Int("min-range-rebalance", def.MinRangeRebalance, "the least replica margin of --range-rebalance-threshold (1 or more)"),
		leaseThreshold: fs.Float64("lease-rebalance-threshold", def.LeaseThreshold, "transfer leases off a node holding more than mean + max(this × mean, --min-lease-rebalance) (0 or more)"),
		minLease:       fs.Int("min-lease-rebalance", def.MinLeaseRebalance, "the least lease margin of --lease-rebalance-threshold (1 or more)"),
		qpsThreshold:   fs.Float64("qps-rebalance-threshold", def.QPSThreshold, "a store serving more than (1 + this) × the mean QPS (and 100 more) sheds leases, then replicas (0 or more)"),
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("start", "unexpected argument %q", fs.Arg(0))
	}
	// Validate every flag before the store directory is created.
	if err := checkSecurityMode(*certsDir, *insecureMode); err != nil {
		return err
	}
	if *drainTimeout < 0 {
		return usagef("start", "--drain-timeout %v: must not be negative", *drainTimeout)
	}
	if *deadAfter <= 0 {
		return usagef("start", "--time-until-store-dead %v: must be positive", *deadAfter)
	}
	if err := ranges.ValidateClosedTimestampTarget(*closedTarget); err != nil {
		return usagef("start", "--closed-timestamp-target %v", err)
	}
	if *queueInterval <= 0 {
		return usagef("start", "--replicate-queue-interval %v: must be positive", *queueInterval)
	}
	if *readReplicaTTL < gossip.DefaultTTL {
		return usagef("start", "--read-replica-ttl %v: must be at least %v (the gossip TTL)", *readReplicaTTL, gossip.DefaultTTL)
	}
	if *routingTTL < time.Second {
		return usagef("start", "--routing-ttl %v: must be at least 1s", *routingTTL)
	}
	if *readReplica && len(*join) == 0 {
		return usagef("start", "--read-replica: a read replica joins a running cluster: --join is required")
	}
	thresholds, err := th.thresholds()
	if err != nil {
		return err
	}
	if *drainTimeout == 0 {
		*drainTimeout = -1 // node.Config: negative = no handoff
	}
	rate, err := parseByteRate(*snapRate)
	if err != nil {
		return usagef("start", "--snapshot-rate %q: %v", *snapRate, err)
	}
	if rate == 0 {
		rate = -1 // node.Config: negative = unlimited
	}
	if *snapInFlight < 1 || *snapInFlight > 64 {
		return usagef("start", "--max-snapshots-in-flight %d: must be between 1 and 64", *snapInFlight)
	}
	if err := checkStartAddrs(*listen, *raft, *httpAddr, *join); err != nil {
		return err
	}
	if *gossipAddr != "" {
		if err := checkHostPort("--gossip-addr", *gossipAddr); err != nil {
			return err
		}
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	loc, err := parseLocality(*locality)
	if err != nil {
		return err
	}
	derived := *raft == ""
	if derived {
		if *raft, err = defaultRaftAddr(*listen); err != nil {
			return err
		}
	}
	*store = fromOrigCwd(*store)
	// The certificates are checked before the store directory is created
	// (and again after the re-exec, which loads them for the node).
	var certs *security.Manager
	if !*insecureMode {
		*certsDir = fromOrigCwd(*certsDir)
		if certs, err = security.NewManager(security.Config{Dir: *certsDir, User: security.NodeUser}); err != nil {
			return fmt.Errorf("--certs-dir %s: %w", *certsDir, err)
		}
	}
	if err := reexecWithSoftSettings(*store); err != nil {
		return fmt.Errorf("--store %s: %w", *store, err)
	}
	// SIGHUP reloads the certificates; it is caught from here on, so that
	// one sent while the node starts does not kill it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	n, err := node.Start(node.Config{StoreDir: *store, ListenAddr: *listen, RaftAddr: *raft, HTTPAddr: *httpAddr,
		Join: *join, Locality: loc, Logger: log, CrashPoint: crashPointFromEnv(log),
		RangeMaxBytes: *rangeMax, LoadSplitQPS: *loadQPS, DrainTimeout: *drainTimeout, TestingAckDelay: ackDelayFromEnv(log), TestingSnapshotEntries: snapshotEntriesFromEnv(log),
		TimeUntilStoreDead: *deadAfter, ReplicateQueueInterval: *queueInterval, SnapshotRate: rate, MaxSnapshotsInFlight: *snapInFlight,
		GossipAddr: *gossipAddr, Thresholds: thresholds, ClosedTimestampTarget: *closedTarget,
		ReadReplica: *readReplica, ReadReplicaTTL: *readReplicaTTL, RoutingTTL: *routingTTL, Security: certs})
	if err != nil {
		return raftAddrChangedHint(err, *listen, derived)
	}
	if n.NodeID() == 0 {
		fmt.Fprintf(os.Stderr, "node listening on %s; waiting for `rangestore init --host %s %s`, or to join a running cluster listed in --join\n", n.Addr(), n.Addr(), initSecurityHint(*certsDir))
	} else {
		fmt.Fprintf(os.Stderr, "node n%d listening on %s (cluster %s)\n", n.NodeID(), n.Addr(), n.ClusterID())
	}
	if certs != nil {
		fmt.Fprintf(os.Stderr, "secure: mutual TLS on gRPC, Raft and gossip with %s\n", certSummary(certs.Certs()))
	} else {
		fmt.Fprintln(os.Stderr, "insecure (--insecure): plaintext gRPC, Raft and gossip; no client is authenticated")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	for {
		select {
		case <-hup:
			reloadCerts(certs, log)
		case s := <-sig:
			log.Info("shutting down", "signal", s.String())
			n.Stop()
			return nil
		}
	}
}

// checkSecurityMode checks that start has exactly one of --certs-dir and
// --insecure.
func checkSecurityMode(certsDir string, insecure bool) error {
	switch {
	case certsDir != "" && insecure:
		return usagef("start", "--certs-dir %s and --insecure: give one of them", certsDir)
	case certsDir == "" && !insecure:
		return usagef("start", "give --certs-dir DIR (mutual TLS: the directory of ca.crt and node.crt/node.key; "+
			"create them with rangestore cert create-ca --ca-key KEY, then rangestore cert create-node HOST... --ca-key KEY, "+
			"and a client's with rangestore cert create-client root --ca-key KEY) or --insecure (plaintext, no authentication)")
	}
	return nil
}

// initSecurityHint is the security flag of the init command a node prints
// while it waits.
func initSecurityHint(certsDir string) string {
	if certsDir == "" {
		return "--insecure"
	}
	return "--certs-dir " + certsDir
}

// reloadCerts is SIGHUP: re-read the certificates (new connections use
// them; established ones keep theirs) and say which are in use. A failed
// reload keeps the old certificates and says why.
func reloadCerts(m *security.Manager, log *slog.Logger) {
	if m == nil {
		log.Warn("SIGHUP: no certificates to reload (started with --insecure)")
		return
	}
	before := certSummary(m.Certs())
	if err := m.Reload(); err != nil {
		log.Error("SIGHUP: certificates not reloaded; the old ones stay in use", "err", err)
		return
	}
	fmt.Fprintf(os.Stderr, "SIGHUP: certificates reloaded: now %s (before: %s)\n", certSummary(m.Certs()), before)
}

// certSummary describes certificates in use: file, serial and expiry.
func certSummary(certs []security.CertInfo) string {
	parts := make([]string, len(certs))
	for i, c := range certs {
		parts[i] = fmt.Sprintf("%s serial %s (expires %s)", filepath.Base(c.Path), c.Serial, certTime(c.NotAfter))
	}
	return strings.Join(parts, ", ")
}

// thresholdFlags are start's rebalance threshold flags.
type thresholdFlags struct {
	rangeThreshold, leaseThreshold, qpsThreshold *float64
	minRange, minLease                           *int
}

// thresholds checks the flags (an error names the flag) and returns the
// allocator's thresholds.
func (f thresholdFlags) thresholds() (allocator.Thresholds, error) {
	for _, c := range []struct {
		flag string
		v    float64
	}{
		{"--range-rebalance-threshold", *f.rangeThreshold},
		{"--lease-rebalance-threshold", *f.leaseThreshold},
		{"--qps-rebalance-threshold", *f.qpsThreshold},
	} {
		if c.v < 0 || math.IsNaN(c.v) || math.IsInf(c.v, 0) {
			return allocator.Thresholds{}, usagef("start", "%s %v: must be a finite number, 0 or more", c.flag, c.v)
		}
	}
	if *f.minRange < 1 {
		return allocator.Thresholds{}, usagef("start", "--min-range-rebalance %d: must be at least 1 (a smaller margin lets a replica move back and forth)", *f.minRange)
	}
	if *f.minLease < 1 {
		return allocator.Thresholds{}, usagef("start", "--min-lease-rebalance %d: must be at least 1 (a smaller margin lets a lease move back and forth)", *f.minLease)
	}
	th := allocator.DefaultThresholds()
	th.RangeThreshold, th.MinRangeRebalance = *f.rangeThreshold, *f.minRange
	th.LeaseThreshold, th.MinLeaseRebalance = *f.leaseThreshold, *f.minLease
	th.QPSThreshold = *f.qpsThreshold
	if err := th.Validate(); err != nil {
		return allocator.Thresholds{}, usagef("start", "rebalance thresholds: %v", err)
	}
	return th, nil
}

func runInit(args []string) error {
	fs := newFlagSet("init")
	tgt := addTargetFlags(fs, "gRPC address of any initial node")
	splits := fs.Int("initial-splits", 4, "number of split points in the user keyspace (spread over 0-9A-Za-z)")
	splitAt := fs.StringSlice("split-at", nil, "explicit split keys (override --initial-splits)")
	replicas := fs.Int("replicas", rebalance.DefaultReplicationFactor, "replication factor setting: odd, 1 to 9 (the initial ranges get min(N, nodes) replicas)")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for the nodes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("init", "unexpected argument %q", fs.Arg(0))
	}
	if *splits < 0 {
		return usagef("init", "--initial-splits %d: must not be negative", *splits)
	}
	if err := rebalance.ValidateFactor(*replicas); err != nil {
		return usagef("init", "--replicas %d: %v", *replicas, err)
	}
	for _, k := range *splitAt {
		if k == "" {
			return usagef("init", "--split-at: split keys must not be empty")
		}
	}
	if fs.Changed("split-at") && len(*splitAt) == 0 {
		return usagef("init", "--split-at: no split keys given")
	}
	conn, err := tgt.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req := &rspb.InitRequest{InitialSplits: int32(*splits), ReplicationFactor: int32(*replicas)}
	for _, k := range *splitAt {
		req.SplitKeys = append(req.SplitKeys, []byte(k))
	}
	resp, err := rspb.NewAdminClient(conn).Init(ctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cluster %s initialized: %s, %s\n", resp.ClusterId, plural(len(resp.Nodes), "node", "nodes"), plural(len(resp.Ranges), "range", "ranges"))
	for _, n := range resp.Nodes {
		fmt.Fprintf(stdout, "  n%d  %s  raft %s\n", n.NodeId, n.Address, n.RaftAddress)
	}
	for i, d := range resp.Ranges {
		if i == 20 && len(resp.Ranges) > 21 {
			fmt.Fprintf(stdout, "  … %d more (rangestore range list)\n", len(resp.Ranges)-20)
			break
		}
		fmt.Fprintf(stdout, "  r%d  %s\n", d.RangeId, spanString(d))
	}
	return nil
}

// spanString renders a descriptor's span with client keys where possible.
func spanString(d *rspb.RangeDescriptor) string {
	return fmt.Sprintf("[%s, %s)", keyString(d.StartKey), keyString(d.EndKey))
}

func keyString(k []byte) string {
	switch {
	case len(k) == 0:
		return "/Min"
	case string(k) == string(keys.KeyMax):
		return "/Max"
	case string(k) == string(keys.SystemStart):
		return "/System"
	case keys.IsUserKey(k):
		ck, _ := keys.ClientKey(k)
		if len(ck) == 0 {
			return "/User"
		}
		return fmt.Sprintf("/User/%q", ck)
	}
	return fmt.Sprintf("%q", k)
}

// ackDelayFromEnv is a fault-testing knob: RANGESTORE_TESTING_ACK_DELAY (a
// duration) holds back the reply to every applied Increment (see
// ranges.StoreConfig.TestingAckDelay).
func ackDelayFromEnv(log *slog.Logger) time.Duration {
	v := os.Getenv("RANGESTORE_TESTING_ACK_DELAY")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		log.Warn("ignoring RANGESTORE_TESTING_ACK_DELAY: not a duration", "value", v)
		return 0
	}
	log.Warn("fault injection armed: replies to increments are held back", "delay", d)
	return d
}

// snapshotEntriesFromEnv is a testing knob: RANGESTORE_TESTING_SNAPSHOT_ENTRIES
// (a positive count) makes every replica take a Raft snapshot and compact
// its log that often (see node.Config.TestingSnapshotEntries), so that a
// replica that was down is caught up by a snapshot.
func snapshotEntriesFromEnv(log *slog.Logger) uint64 {
	v := os.Getenv("RANGESTORE_TESTING_SNAPSHOT_ENTRIES")
	if v == "" {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		log.Warn("ignoring RANGESTORE_TESTING_SNAPSHOT_ENTRIES: not a positive count", "value", v)
		return 0
	}
	log.Warn("testing knob: Raft snapshots and log compaction every few entries", "entries", n)
	return n
}

// crashPointFromEnv is a fault-testing knob: with RANGESTORE_CRASH_AT=name
// the process kills itself with SIGKILL the first time it reaches the named
// point of a multi-step operation (see ranges.StoreConfig.CrashPoint).
func crashPointFromEnv(log *slog.Logger) func(string) {
	at := os.Getenv("RANGESTORE_CRASH_AT")
	if at == "" {
		return nil
	}
	// With RANGESTORE_CRASH_ONCE_FILE, only the process that removes that
	// file (created by the test when it wants the crash) dies: one crash
	// per file across the cluster.
	once := os.Getenv("RANGESTORE_CRASH_ONCE_FILE")
	log.Warn("fault injection armed: this process will kill itself", "at", at, "once_file", once)
	return func(name string) {
		if name == at && (once == "" || os.Remove(once) == nil) {
			fmt.Fprintf(os.Stderr, "RANGESTORE_CRASH_AT=%s reached: SIGKILL\n", name)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}
