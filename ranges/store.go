package ranges

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	dblogger "github.com/lni/dragonboat/v4/logger"
	"github.com/lni/dragonboat/v4/raftio"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/reqload"
	"github.com/rangestore/rangestore/timeutil"
)

// Split thresholds (StoreConfig.RangeMaxBytes, LoadSplitQPS).
const (
	DefaultRangeMaxBytes int64   = 64 << 20
	DefaultLoadSplitQPS  float64 = 2500
)

// DefaultRequestTimeout bounds one replica request when the caller's context
// has no deadline.
const DefaultRequestTimeout = 10 * time.Second

// StoreConfig configures a Store.
type StoreConfig struct {
	Dir         string // node directory; Dragonboat's files go to Dir/raft
	RaftAddress string
	Engine      *kv.Engine
	Clock       *leases.Clock
	Logger      *slog.Logger
	Metrics     *Metrics // optional
	// TimeSource is the time every loop, wait, rate limit, deadline and
	// load recorder of the store reads (default: the real clock; the HLC
	// made when Clock is nil reads it too).
	TimeSource timeutil.TimeSource

	// Raft timing: one tick is RTTMillisecond; elections after ElectionRTT
	// ticks, heartbeats every HeartbeatRTT ticks. Defaults: 200 ms, 5 (1 s),
	// 1: every replica costs CPU per tick even when quiesced, so ticks are
	// long (thousands of ranges per node).
	RTTMillisecond uint64
	ElectionRTT    uint64
	HeartbeatRTT   uint64
	// Idle ranges quiesce (Dragonboat quiesce: no heartbeats) unless
	// DisableQuiesce; a quiesced range is woken by a ReadIndex when a
	// proposal times out or its lease or leader has no live holder.
	DisableQuiesce bool
	// SnapshotEntries: take a (metadata-only) snapshot every N applied
	// entries, keeping CompactionOverhead entries of log behind it.
	SnapshotEntries    uint64
	CompactionOverhead uint64
	// GCTTL: versions shadowed longer than this are garbage collected, every
	// GCInterval. Defaults: DefaultGCTTL, 10 minutes.
	GCTTL      time.Duration
	GCInterval time.Duration
	// ExpirationLeaseDuration is the length of meta/system range leases;
	// LeaseInterval how often leases and leadership are tended.
	ExpirationLeaseDuration time.Duration
	LeaseInterval           time.Duration
	// TransportFactory replaces Dragonboat's TCP transport (fault injection).
	TransportFactory config.TransportFactory
	// CrashPoint, when set, is called at named points of multi-step
	// operations (splits, merges, replica changes, snapshot application);
	// fault tests make it kill the process.
	CrashPoint func(name string)
	// TestingAckDelay, when positive, holds back the reply to a batch with
	// an Increment of a user key that was just applied (not one answered
	// from its dedup record) for this long; if the caller gives up first,
	// the reply is lost (UNAVAILABLE). A fault test uses it to make the
	// caller retry a write that did apply (exactly-once across merges).
	TestingAckDelay time.Duration
	// TestingForgetMerges makes the store ignore what it knows in memory
	// about merges applied here when deciding to roll back a freeze (as a
	// store that restarted since would): a freeze whose target was merged
	// away is then rolled back only by the FreezeTimeout check.
	TestingForgetMerges bool
	// RangeMaxBytes: a range whose data grows above this splits at its byte
	// midpoint (0 = DefaultRangeMaxBytes, negative = never).
	RangeMaxBytes int64
	// RangeMinBytes: a range (and its right neighbour) smaller than this,
	// together below half of RangeMaxBytes, with replicas on the same
	// nodes and a start key not chosen by an operator, merge (0 = a quarter
	// of RangeMaxBytes, negative = never).
	RangeMinBytes int64
	// LoadSplitQPS: a range served above this many requests/s for
	// LoadSplitDuration splits at a key balancing the load (0 =
	// DefaultLoadSplitQPS, negative = never). SplitCheckInterval is how
	// often the split queue looks at each range.
	LoadSplitQPS       float64
	LoadSplitDuration  time.Duration
	SplitCheckInterval time.Duration
	// MetaCheckInterval is how often a leaseholder checks that meta
	// describes its ranges (repairing it after a crash mid-split).
	MetaCheckInterval time.Duration
	// FreezeTimeout: a range frozen this long for a merge is checked: if
	// its merge can no longer happen (the range it was to merge into no
	// longer exists), the freeze is rolled back (replica_merge.go). Default
	// DefaultFreezeTimeout.
	FreezeTimeout time.Duration
	// TimeUntilStoreDead: a node whose liveness record has been expired
	// this long is dead; a replica change does not wait for a dead voter
	// to compact its log (votersCompacted). Zero = 5 minutes.
	TimeUntilStoreDead time.Duration
	// Limits bound every request a replica accepts and every read response
	// it builds (zero = DefaultLimits).
	Limits Limits
	// SnapshotRate bounds the bytes per second of all range snapshots this
	// node sends together (0 = DefaultSnapshotRate, negative = unlimited).
	// MaxSnapshotsInFlight bounds the snapshots it sends at once, and
	// separately those it applies at once (0 = DefaultMaxSnapshotsInFlight).
	SnapshotRate         int64
	MaxSnapshotsInFlight int
	// ClosedTimestampTarget: how far behind its clock a leaseholder closes
	// timestamps (0 = DefaultClosedTimestampTarget) until
	// SetClosedTimestampTarget changes it (the cluster setting); reads at
	// or below a replica's closed timestamp can be served by any replica.
	// ClosedTimestampInterval: how often the side transport publishes the
	// closed timestamps of idle ranges (0 = DefaultClosedTimestampInterval).
	ClosedTimestampTarget   time.Duration
	ClosedTimestampInterval time.Duration
}

func (c *StoreConfig) setDefaults() {
	if c.RTTMillisecond == 0 {
		c.RTTMillisecond = DefaultRTTMillisecond
	}
	if c.ElectionRTT == 0 {
		c.ElectionRTT = DefaultElectionRTT
	}
	if c.HeartbeatRTT == 0 {
		c.HeartbeatRTT = DefaultHeartbeatRTT
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = DefaultSnapshotEntries
	}
	if c.CompactionOverhead == 0 {
		c.CompactionOverhead = DefaultCompactionOverhead
	}
	if c.ExpirationLeaseDuration == 0 {
		c.ExpirationLeaseDuration = DefaultExpirationLeaseDuration
	}
	if c.LeaseInterval == 0 {
		c.LeaseInterval = 100 * time.Millisecond
	}
	if c.RangeMaxBytes == 0 {
		c.RangeMaxBytes = DefaultRangeMaxBytes
	}
	if c.RangeMinBytes == 0 {
		c.RangeMinBytes = c.RangeMaxBytes / 4
	}
	if c.LoadSplitQPS == 0 {
		c.LoadSplitQPS = DefaultLoadSplitQPS
	}
	if c.LoadSplitDuration == 0 {
		c.LoadSplitDuration = 10 * time.Second
	}
	if c.SplitCheckInterval == 0 {
		c.SplitCheckInterval = time.Second
	}
	if c.MetaCheckInterval == 0 {
		c.MetaCheckInterval = 3 * time.Second
	}
	if c.GCTTL == 0 {
		c.GCTTL = DefaultGCTTL
	}
	if c.GCInterval == 0 {
		c.GCInterval = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FreezeTimeout == 0 {
		c.FreezeTimeout = DefaultFreezeTimeout
	}
	if c.TimeUntilStoreDead <= 0 {
		c.TimeUntilStoreDead = 5 * time.Minute
	}
	if c.SnapshotRate == 0 {
		c.SnapshotRate = DefaultSnapshotRate
	}
	if c.MaxSnapshotsInFlight <= 0 {
		c.MaxSnapshotsInFlight = DefaultMaxSnapshotsInFlight
	}
	if c.ClosedTimestampTarget <= 0 {
		c.ClosedTimestampTarget = DefaultClosedTimestampTarget
	}
	if c.ClosedTimestampInterval <= 0 {
		c.ClosedTimestampInterval = DefaultClosedTimestampInterval
	}
	if c.Limits == (Limits{}) {
		c.Limits = DefaultLimits
	}
	if c.TimeSource == nil {
		c.TimeSource = timeutil.DefaultTimeSource{}
	}
	if c.Clock == nil {
		c.Clock = leases.NewClockFrom(c.TimeSource, 0)
	}
}

// Store owns every replica on a node: one Dragonboat NodeHost and the node's
// shared Pebble engine.
type Store struct {
	cfg StoreConfig
	nh  *dragonboat.NodeHost
	eng *kv.Engine
	log *slog.Logger

	mu       sync.RWMutex
	cluster  *rspb.ClusterRecord
	replicas map[uint64]*Replica // by range ID
	sender   Sender
	stopping atomic.Bool
	closed   atomic.Bool
	draining atomic.Bool // see SetDraining
	// peerApplied: see SetPeerApplied.
	peerApplied PeerApplied
	stopc       chan struct{}
	// tasks owns every goroutine the store starts (see stopper).
	tasks *stopper
	// pushes is the push wait queue (pushqueue.go).
	pushes *pushQueue
	// startTS is when this store (process incarnation) started: leases it
	// holds from before are re-acquired, never served under.
	startTS kv.Timestamp
	// closedTargetNanos is the closed timestamp target in force
	// (StoreConfig.ClosedTimestampTarget until SetClosedTimestampTarget).
	closedTargetNanos atomic.Int64
	// startMu orders replica starts with merges: subsumed holds the ranges
	// merged away while this process runs.
	startMu  sync.Mutex
	subsumed map[uint64]bool
	// leaders caches each local shard's Raft leader as reported by
	// Dragonboat's leader events (range ID -> raftio.LeaderInfo), so the
	// lease loop over thousands of ranges needs no NodeHost calls.
	leaders sync.Map
	// noLeaderSince: range ID -> time.Time since which the local replica
	// knows no leader (QuorumProblems).
	noLeaderSince sync.Map
	// noLeaderSeen: range ID -> time.Time since which the replica GC has
	// found the local replica without a known leader (replicagc.go).
	noLeaderSeen sync.Map
	// clusterMu serializes rewrites of the cluster record after bootstrap.
	clusterMu sync.Mutex
	// liveness is node liveness (see SetLiveness, live).
	liveness atomic.Pointer[livenessRef]
	// mergedInto: range ID -> ID of the range whose merge subsumed it here
	// (while this process runs; see subsumedBy).
	mergedInto sync.Map
	// changing: range ID -> true while ChangeReplicas drives a change of
	// it from this store.
	changing sync.Map
	// snaps bounds the snapshots the node's replicas send and apply.
	snaps *snapshotLimits
	// snapStreams: range ID -> streamedSnapshot, the last snapshot a
	// local leader streamed (or streams) whose restore is not confirmed
	// yet (decideLeaderHandoff, snapshotStillNeeded).
	snapStreams sync.Map
	// snapSkips: range ID -> *atomic.Int32, streams ended unsent as not
	// needed whose abort event has not come yet.
	snapSkips sync.Map
	// closedPeers: node ID -> *closedPeerQueue, the side transport's
	// messages to that node (closedts.go).
	closedPeers sync.Map
}

// streamedSnapshot: a snapshot streamed to replica; at (unix nanos) is when
// its stream started or was last reported delivered. deliveredTo and
// deliveredAt: the last stream of the range delivered in full (kept when
// the next one starts).
type streamedSnapshot struct {
	replica, deliveredTo uint64
	at, deliveredAt      int64
}

// leaderListener receives Dragonboat's leader events; it must not block.
type leaderListener Store

func (l *leaderListener) LeaderUpdated(info raftio.LeaderInfo) {
	s := (*Store)(l)
	s.leaders.Store(info.ShardID, info)
	s.noteLeader(info.ShardID, info.LeaderID)
	// For failover timelines (--log-level debug; the failover benchmark
	// reads it): when each range's Raft leadership moved, as seen here.
	s.log.Debug("raft leader changed", "range", info.ShardID, "leader", info.LeaderID, "term", info.Term)
}

// leaderOf returns the local view of a range's Raft leader (ok=false when
// none is known).
func (s *Store) leaderOf(rangeID uint64) (replicaID uint64, ok bool) {
	if v, found := s.leaders.Load(rangeID); found {
		info := v.(raftio.LeaderInfo)
		return info.LeaderID, info.LeaderID != 0
	}
	lid, _, ok, err := s.nh.GetLeaderID(rangeID)
	return lid, ok && err == nil
}

var quietOnce sync.Once

// quietDragonboat keeps Dragonboat's own loggers to errors only.
func quietDragonboat() {
	quietOnce.Do(func() {
		for _, name := range []string{"dragonboat", "raft", "rsm", "logdb", "raftpb", "config", "settings", "grpc", "registry", "tan", "gossip", "monkey"} {
			dblogger.GetLogger(name).SetLevel(dblogger.ERROR)
		}
		// Connection failures to dead or partitioned peers are expected and
		// retried; they would flood the log at ERROR.
		dblogger.GetLogger("transport").SetLevel(dblogger.CRITICAL)
	})
}

// NewStore opens the NodeHost and restarts every replica recorded locally.
func NewStore(cfg StoreConfig) (*Store, error) {
	cfg.setDefaults()
	quietDragonboat()
	logdb, engine := RaftEngineConfig() // engine_tuning.go; shared with bench/compare's ceiling
	s := &Store{cfg: cfg, log: cfg.Logger, replicas: map[uint64]*Replica{}, subsumed: map[uint64]bool{},
		stopc: make(chan struct{}), startTS: cfg.Clock.Now(), tasks: newStopper(), pushes: newPushQueue(),
		snaps: newSnapshotLimits(cfg.SnapshotRate, cfg.MaxSnapshotsInFlight, cfg.TimeSource, cfg.Metrics)}
	s.closedTargetNanos.Store(int64(cfg.ClosedTimestampTarget))
	nhc := config.NodeHostConfig{
		NodeHostDir:       filepath.Join(cfg.Dir, "raft"),
		RTTMillisecond:    cfg.RTTMillisecond,
		RaftAddress:       cfg.RaftAddress,
		RaftEventListener: (*leaderListener)(s),
		// Counts the outcome of snapshot streams (snapshot_limits.go).
		SystemEventListener: snapshotEvents{m: cfg.Metrics, streamed: s.noteSnapshotStream, skipped: s.takeSnapshotSkip},
		Expert:              config.ExpertConfig{LogDB: logdb, Engine: engine, TransportFactory: cfg.TransportFactory},
	}
	if err := checkRaftAddress(cfg.Engine, cfg.RaftAddress); err != nil {
		return nil, err
	}
	nh, err := dragonboat.NewNodeHost(nhc)
	if err != nil {
		return nil, fmt.Errorf("ranges: start raft node host at %s: %w", cfg.RaftAddress, err)
	}
	if err := recordRaftAddress(cfg.Engine, cfg.RaftAddress); err != nil {
		nh.Close()
		return nil, err
	}
	s.nh, s.eng = nh, cfg.Engine
	if cfg.Metrics != nil {
		cfg.Metrics.bindStore(s)
	}
	if err := s.loadAndStart(); err != nil {
		s.tasks.stop()
		nh.Close()
		return nil, err
	}
	s.tasks.run(func(ctx context.Context) { s.gcLoop(ctx, cfg.GCInterval, cfg.GCTTL) })
	s.tasks.run(func(context.Context) { s.leaseLoop(cfg.LeaseInterval) })
	s.tasks.run(func(ctx context.Context) { s.metaLoop(ctx, cfg.MetaCheckInterval) })
	s.tasks.run(func(ctx context.Context) { s.splitLoop(ctx, cfg.SplitCheckInterval) })
	s.tasks.run(func(ctx context.Context) { s.closedTSLoop(ctx, cfg.ClosedTimestampInterval) })
	return s, nil
}

func (s *Store) loadAndStart() error {
	v, ok, err := s.eng.GetRaw(clusterRecordKey)
	if err != nil {
		return err
	}
	if !ok {
		return nil
	}
	rec := &rspb.ClusterRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return fmt.Errorf("ranges: cluster record: %w", err)
	}
	s.mu.Lock()
	s.cluster = rec
	s.mu.Unlock()
	recs, err := s.replicaRecords()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := s.startReplica(r); err != nil {
			return err
		}
		if r.PendingLogCompaction {
			s.tasks.run(func(ctx context.Context) { s.compactNewShard(ctx, r) })
		}
	}
	s.log.Info("store restarted", "node", rec.NodeId, "replicas", len(recs))
	return nil
}

func (s *Store) replicaRecords() ([]*rspb.ReplicaRecord, error) {
	p := replicaStatePrefix()
	it, err := s.eng.NewIter(p, prefixEnd(p))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*rspb.ReplicaRecord
	for ok := it.First(); ok; ok = it.Next() {
		_, _, suffix, err := parseReplicaStateKey(it.Key())
		if err != nil {
			return nil, err
		}
		if string(suffix) != string(suffixRecord) {
			continue
		}
		r := &rspb.ReplicaRecord{}
		if err := proto.Unmarshal(it.Value(), r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// crashPoint calls the configured crash hook (fault tests).
func (s *Store) crashPoint(name string) {
	if s.cfg.CrashPoint != nil {
		s.cfg.CrashPoint(name)
	}
}

// ClusterRecord returns the node's bootstrap record (nil before bootstrap).
func (s *Store) ClusterRecord() *rspb.ClusterRecord {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cluster
}

// NodeID returns this node's ID (0 before bootstrap).
func (s *Store) NodeID() uint64 {
	if c := s.ClusterRecord(); c != nil {
		return c.NodeId
	}
	return 0
}

// BootstrapKV is one initial MVCC record written at bootstrap.
type BootstrapKV struct{ Key, Value []byte }

// Bootstrap writes this node's share of a new cluster — cluster record,
// descriptors, replica records and the initial meta/system records of the
// ranges it holds — in one synced batch, then starts its replicas. It is
// idempotent for the same cluster ID.
func (s *Store) Bootstrap(req *rspb.BootstrapRequest, initial []BootstrapKV) error {
	if cur := s.ClusterRecord(); cur != nil {
		if cur.ClusterId == req.ClusterId && cur.NodeId == req.NodeId {
			return nil
		}
		return fmt.Errorf("node is already part of cluster %s as n%d", cur.ClusterId, cur.NodeId)
	}
	addrs := map[uint64]string{}
	for _, n := range req.Nodes {
		addrs[n.NodeId] = n.RaftAddress
	}
	var meta *rspb.RangeDescriptor
	ts := TSFromProto(req.Timestamp)
	b := s.eng.NewBatch()
	defer b.Close()
	var recs []*rspb.ReplicaRecord
	for _, d := range req.Ranges {
		if d.RangeId == MetaRangeID {
			meta = d
		}
		var mine *rspb.ReplicaDescriptor
		members := map[uint64]string{}
		for _, r := range d.Replicas {
			members[r.ReplicaId] = addrs[r.NodeId]
			if r.NodeId == req.NodeId {
				mine = r
			}
		}
		if mine == nil {
			continue
		}
		db, err := proto.Marshal(d)
		if err != nil {
			return err
		}
		if err := b.PutRaw(rangeStateKey(d.RangeId, suffixDescriptor), db); err != nil {
			return err
		}
		if err := b.PutRaw(rangeStateKey(d.RangeId, suffixMaxWriteTS), encodeTS(ts)); err != nil {
			return err
		}
		for _, x := range initial {
			if keys.InSpan(x.Key, d.StartKey, d.EndKey) {
				if err := b.PutMVCC(x.Key, ts, x.Value); err != nil {
					return err
				}
			}
		}
		rec := &rspb.ReplicaRecord{RangeId: d.RangeId, ReplicaId: mine.ReplicaId, InitialMembers: members}
		rb, err := proto.Marshal(rec)
		if err != nil {
			return err
		}
		if err := b.PutRaw(replicaStateKey(d.RangeId, mine.ReplicaId, suffixRecord), rb); err != nil {
			return err
		}
		recs = append(recs, rec)
	}
	cr := &rspb.ClusterRecord{ClusterId: req.ClusterId, NodeId: req.NodeId, Nodes: req.Nodes, MetaRange: meta}
	cb, err := proto.Marshal(cr)
	if err != nil {
		return err
	}
	if err := b.PutRaw(clusterRecordKey, cb); err != nil {
		return err
	}
	if err := b.Commit(true); err != nil {
		return err
	}
	s.mu.Lock()
	s.cluster = cr
	s.mu.Unlock()
	for _, r := range recs {
		if err := s.startReplica(r); err != nil {
			return err
		}
	}
	s.log.Info("store bootstrapped", "cluster", req.ClusterId, "node", req.NodeId, "replicas", len(recs))
	return nil
}

// Descriptor returns the local replica's current descriptor of a range.
func (s *Store) Descriptor(rangeID uint64) *rspb.RangeDescriptor {
	if r := s.replica(rangeID); r != nil {
		return r.desc()
	}
	return nil
}

// Send executes a batch addressed to one local replica. Failures are
// reported as RangeError in the response, never as a Go error.
func (s *Store) Send(ctx context.Context, req *rspb.RangeRequest) *rspb.RangeResponse {
	if u := req.GetAdminClosedTimestamps(); u != nil {
		// The side transport: not a request of any range (not counted
		// as a read).
		return s.receiveClosed(u)
	}
	start := s.cfg.TimeSource.Now()
	resp := s.send(ctx, req)
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.observe(req, resp, s.cfg.TimeSource.Since(start))
	}
	if resp.Timestamp != nil {
		// The clock must reach what this replica served or committed before
		// the reply (read-your-writes). A write pushed above the clock by a
		// timestamp cache low water (now + max offset after a split, merge
		// or restart) may be beyond physical + max offset: the reply waits
		// for the physical clock instead of moving the clock past it.
		_ = s.cfg.Clock.UpdateWait(ctx, TSFromProto(resp.Timestamp))
	}
	return resp
}

func (s *Store) send(ctx context.Context, req *rspb.RangeRequest) *rspb.RangeResponse {
	nodeID := s.NodeID()
	if s.stopping.Load() {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("node n%d is shutting down", nodeID))}
	}
	if req.Admin != nil && len(req.Requests) > 0 {
		// The oneof admin holds one admin command; requests is repeated and
		// cannot join it, so the exclusion is checked here.
		pr := req.ProtoReflect()
		admin := pr.WhichOneof(pr.Descriptor().Oneofs().ByName("admin")).Name()
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_INVALID_ARGUMENT,
			fmt.Sprintf("r%d: a range request carries either requests or one admin command, not both (requests: %d, %s set)", req.RangeId, len(req.Requests), admin))}
	}
	// Replica changes address a replica that may not exist (yet, or any
	// more) here.
	if c := req.GetAdminCreateReplica(); c != nil {
		return s.createJoiningReplica(ctx, c)
	}
	if g := req.GetAdminReplicaGc(); g != nil {
		return &rspb.RangeResponse{Admin: &rspb.RangeResponse_ReplicaGc{ReplicaGc: s.gcRemovedReplica(ctx, g.RangeDescriptor)}}
	}
	r := s.replica(req.RangeId)
	if r != nil && !r.sm.merged.Load() && r.removedHere() {
		// Removed by a replica change, not collected yet: it serves
		// nothing (the router looks the range up again).
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_RANGE_NOT_FOUND,
			fmt.Sprintf("replica %d of r%d on n%d was removed from the range", r.replicaID, req.RangeId, nodeID))}
	}
	if r == nil || r.sm.merged.Load() {
		re := rangeErr(rspb.RangeError_RANGE_NOT_FOUND, fmt.Sprintf("range r%d not found on node n%d", req.RangeId, nodeID))
		// Name the local ranges holding the keys (the range may have been
		// merged into one): the gateway then need not wait for meta.
		s.addLocalDescriptors(re, req.Requests)
		// And the range that subsumed it, which holds its dedup records: a
		// retried write may go there with the same proposal ID.
		re.RangeDescriptor = s.subsumedBy(req.RangeId)
		return &rspb.RangeResponse{Error: re}
	}
	return r.send(ctx, req)
}

// addLocalDescriptors adds to a RANGE_KEY_MISMATCH the descriptors of other
// local replicas holding the requests' keys, so the gateway learns about a
// split before meta shows it.
func (s *Store) addLocalDescriptors(re *rspb.RangeError, reqs []*rspb.RequestUnion) {
	if re == nil || (re.Code != rspb.RangeError_RANGE_KEY_MISMATCH && re.Code != rspb.RangeError_RANGE_NOT_FOUND) {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, rep := range s.replicas {
		d := rep.desc()
		if d == nil || d.RangeId == re.GetRangeDescriptor().GetRangeId() || rep.sm.merged.Load() {
			continue
		}
		for _, r := range reqs {
			if k, _, _ := RequestSpan(r); keys.InSpan(k, d.StartKey, d.EndKey) {
				re.LocalDescriptors = append(re.LocalDescriptors, d)
				break
			}
		}
	}
}

// livenessRef holds a LivenessSource for an atomic.Pointer.
type livenessRef struct{ l LivenessSource }

// SetLiveness connects node liveness (needed for epoch leases). It may be
// called while the store runs: the lease loop, requests and the admin API
// read it through live.
func (s *Store) SetLiveness(l LivenessSource) {
	s.liveness.Store(&livenessRef{l: l})
}

// live returns node liveness (nil until SetLiveness). Callers load it once
// and use that value, not a second load, after a nil check.
func (s *Store) live() LivenessSource {
	if r := s.liveness.Load(); r != nil {
		return r.l
	}
	return nil
}

// Ranges describes every local replica. The replicas are copied under the
// lock: a merge may remove one meanwhile, which is then described as it
// was a moment ago (never looked up again, and so never found missing).
func (s *Store) Ranges() []*rspb.RangeInfo {
	reps := s.replicaList()
	sort.Slice(reps, func(i, j int) bool { return reps[i].rangeID < reps[j].rangeID })
	var out []*rspb.RangeInfo
	for _, r := range reps {
		m, id := r.sm, r.rangeID
		l := m.lease.Load()
		state := s.leaseStatus(l, s.cfg.Clock.Now())
		info := &rspb.RangeInfo{RangeDescriptor: m.desc.Load(), AppliedIndex: m.applied.Load(), Lease: l,
			LeaseValid: state == leases.Valid, LeaseState: state.String(), ApproxBytes: m.size.Load(),
			FrozenInto: m.frozen.Load()}
		if r.split.load != nil {
			info.Qps = r.split.load.QPS(s.cfg.TimeSource.Now())
			if hk := r.split.hotKey.Load(); hk != nil {
				info.HotKey = *hk
			}
		}
		if r.reqLoad != nil && info.LeaseValid && l.GetNodeId() == s.NodeID() {
			now := s.cfg.TimeSource.Now()
			since := r.reqLoad.ForLease(now, l.GetSequence())
			total, by := r.reqLoad.Load(now)
			info.RequestQps = total
			if now.Sub(since) < reqload.MinStatsAge {
				by = nil // too few to say where this lease's requests come from
			}
			for _, g := range by {
				info.RequestSources = append(info.RequestSources, &rspb.GatewayLoad{GatewayNodeId: g.Gateway, Qps: g.QPS})
			}
		}
		if lid, term, ok, err := s.nh.GetLeaderID(id); err == nil && ok {
			info.LeaderReplicaId, info.Term = lid, term
			info.LeaderNodeId = r.leaderNode()
		}
		out = append(out, info)
	}
	return out
}

// RunTask runs fn on a goroutine owned by the store's task group (the
// node's background queues): Close cancels ctx and waits for fn to
// return. It returns false, without calling fn, once Close has begun.
func (s *Store) RunTask(fn func(ctx context.Context)) bool { return s.tasks.run(fn) }

// NumReplicas is the number of local replicas.
func (s *Store) NumReplicas() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.replicas)
}

// Close stops every replica and the NodeHost. The engine is the caller's.
func (s *Store) Close() {
	s.stopping.Store(true)
	if s.closed.CompareAndSwap(false, true) {
		close(s.stopc)
		// The store's goroutines use the NodeHost and the engine: all of
		// them end before either closes.
		s.tasks.stop()
		s.nh.Close()
	}
}

// AppliedLag is how far this node's most behind replica is: the highest
// Raft index its log has learned to be committed (the hard state Dragonboat
// keeps in its log DB, from the leader's appends and heartbeats) minus the
// index it has applied, and that replica's range (0, 0: none behind). A
// replica cut off from its leader shows the lag as of its last contact.
func (s *Store) AppliedLag() (lag, rangeID uint64) {
	for _, l := range s.appliedLags() {
		if l.lag > lag {
			lag, rangeID = l.lag, l.rangeID
		}
	}
	return lag, rangeID
}

// replicaLag is the most behind replica of a kind (appliedLags).
type replicaLag struct{ lag, rangeID uint64 }

// appliedLags is AppliedLag per replica type: [0] the voters, [1] the
// non-voters (as the local descriptors say).
func (s *Store) appliedLags() [2]replicaLag {
	var out [2]replicaLag
	for _, r := range s.replicaList() {
		lr, err := s.nh.GetLogReader(r.rangeID)
		if err != nil {
			continue
		}
		st, _ := lr.NodeState()
		applied := r.sm.applied.Load()
		kind := 1
		if voterIn(r.desc(), r.replicaID) {
			kind = 0
		}
		if st.Commit > applied && st.Commit-applied > out[kind].lag {
			out[kind] = replicaLag{lag: st.Commit - applied, rangeID: r.rangeID}
		}
	}
	return out
}
