package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	dblogger "github.com/lni/dragonboat/v4/logger"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/rangestore/rangestore/bench"
	"github.com/rangestore/rangestore/ranges"
)

// The raw Dragonboat ceiling: three NodeHosts in this process, dbShards
// shards (1 for the one-range cells) replicated on all three, each replica
// an on-disk state machine in its host's pebble/v2 DB (keys prefixed by
// the shard ID). Keys are hash-partitioned over the shards. Requests go
// straight to each shard's leader host: no client RPC, no MVCC, no leases.
const dbShards = 64

type dbCluster struct {
	shards  uint64
	hosts   []*dragonboat.NodeHost
	dbs     []*pebble.DB
	leaders []atomic.Int32 // host index of each shard's leader, by shard ID (1..shards)
	stopc   chan struct{}
	wg      sync.WaitGroup
}

var appliedKey = []byte("\xff\xffapplied")

func shardKey(shard uint64, k []byte) []byte {
	b := make([]byte, 8+len(k))
	binary.BigEndian.PutUint64(b, shard)
	copy(b[8:], k)
	return b
}

// kvSM is one replica's state machine.
type kvSM struct {
	db    *pebble.DB
	shard uint64
}

type getQuery struct{ key []byte }
type scanQuery struct {
	start []byte
	limit int
}

func (s *kvSM) Open(<-chan struct{}) (uint64, error) {
	v, closer, err := s.db.Get(shardKey(s.shard, appliedKey))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	return binary.BigEndian.Uint64(v), nil
}

func (s *kvSM) Update(es []sm.Entry) ([]sm.Entry, error) {
	b := s.db.NewBatch()
	defer b.Close()
	for i, e := range es {
		if len(e.Cmd) < 2 {
			continue
		}
		kl := int(binary.BigEndian.Uint16(e.Cmd))
		_ = b.Set(shardKey(s.shard, e.Cmd[2:2+kl]), e.Cmd[2+kl:], nil)
		es[i].Result = sm.Result{Value: 1}
	}
	var idx [8]byte
	binary.BigEndian.PutUint64(idx[:], es[len(es)-1].Index)
	_ = b.Set(shardKey(s.shard, appliedKey), idx[:], nil)
	return es, b.Commit(pebble.NoSync)
}

func (s *kvSM) Lookup(q interface{}) (interface{}, error) {
	switch q := q.(type) {
	case getQuery:
		_, closer, err := s.db.Get(shardKey(s.shard, q.key))
		if errors.Is(err, pebble.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return nil, err
		}
		closer.Close()
		return true, nil
	case scanQuery:
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: shardKey(s.shard, q.start), UpperBound: shardKey(s.shard, []byte("\xff"))})
		if err != nil {
			return nil, err
		}
		defer it.Close()
		n := 0
		for ok := it.First(); ok && n < q.limit; ok = it.Next() {
			_ = it.Value()
			n++
		}
		return n, nil
	}
	return nil, fmt.Errorf("unknown query %T", q)
}

// Sync really fsyncs (Dragonboat records a metadata snapshot's index right
// after it and compacts the log behind it, every SnapshotEntries entries
// since the ceiling runs rangestore's replica config), as rangestore's does.
func (s *kvSM) Sync() error { return s.db.LogData(nil, pebble.Sync) }

func (s *kvSM) PrepareSnapshot() (interface{}, error)                      { return nil, nil }
func (s *kvSM) SaveSnapshot(interface{}, io.Writer, <-chan struct{}) error { return nil }
func (s *kvSM) RecoverFromSnapshot(io.Reader, <-chan struct{}) error       { return nil }
func (s *kvSM) Close() error                                               { return nil }

// ceilingHostConfig is a ceiling NodeHost's configuration: the engine
// tuning and Raft tick of a default rangestore Store (ranges.RaftEngineConfig,
// ranges.DefaultRTTMillisecond), so that the ceiling bounds the same engine.
// Each shard's replica config is ranges.DefaultRaftReplicaConfig.
func ceilingHostConfig(dir, raftAddr string) config.NodeHostConfig {
	logdb, engine := ranges.RaftEngineConfig()
	return config.NodeHostConfig{
		NodeHostDir:    dir,
		RTTMillisecond: ranges.DefaultRTTMillisecond,
		RaftAddress:    raftAddr,
		Expert:         config.ExpertConfig{LogDB: logdb, Engine: engine},
	}
}

// checkSoftSettings reports an error unless the working directory holds
// Dragonboat's soft-settings file with rangestore's content: Dragonboat
// reads it from there when the process starts, as `rangestore start` makes
// its processes do. bench-compare runs in bench/compare, which keeps a copy
// (TestCeilingSoftSettingsFile checks it is identical).
func checkSoftSettings() error {
	b, err := os.ReadFile(ranges.SoftSettingsFile)
	if err != nil {
		return fmt.Errorf("dragonboat ceiling: %w (run from bench/compare, which holds rangestore's Dragonboat soft settings)", err)
	}
	if string(b) != ranges.SoftSettingsJSON {
		return fmt.Errorf("dragonboat ceiling: %s differs from ranges.SoftSettingsJSON, the soft settings rangestore start uses", ranges.SoftSettingsFile)
	}
	return nil
}

// startDragonboat starts the three NodeHosts with shards shards (IDs 1 to
// shards) in dir.
func startDragonboat(dir string, shards int) (*dbCluster, error) {
	if shards < 1 {
		return nil, fmt.Errorf("dragonboat: shards %d: need at least 1", shards)
	}
	if err := checkSoftSettings(); err != nil {
		return nil, err
	}
	for _, n := range []string{"dragonboat", "raft", "rsm", "transport", "logdb", "raftpb", "config", "settings", "grpc", "registry"} {
		dblogger.GetLogger(n).SetLevel(dblogger.ERROR)
	}
	c := &dbCluster{shards: uint64(shards), leaders: make([]atomic.Int32, shards+1), stopc: make(chan struct{})}
	var addrs []string
	for i := 0; i < 3; i++ {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
	}
	members := map[uint64]string{1: addrs[0], 2: addrs[1], 3: addrs[2]}
	for i := 0; i < 3; i++ {
		db, err := pebble.Open(filepath.Join(dir, fmt.Sprintf("db-h%d-sm", i+1)), &pebble.Options{})
		if err != nil {
			c.close()
			return nil, err
		}
		c.dbs = append(c.dbs, db)
		nh, err := dragonboat.NewNodeHost(ceilingHostConfig(filepath.Join(dir, fmt.Sprintf("db-h%d", i+1)), addrs[i]))
		if err != nil {
			c.close()
			return nil, err
		}
		c.hosts = append(c.hosts, nh)
		for shard := uint64(1); shard <= c.shards; shard++ {
			cfg := ranges.DefaultRaftReplicaConfig(shard, uint64(i+1))
			create := func(shardID, replicaID uint64) sm.IOnDiskStateMachine { return &kvSM{db: db, shard: shardID} }
			if err := nh.StartOnDiskReplica(members, false, create, cfg); err != nil {
				c.close()
				return nil, fmt.Errorf("start shard %d on host %d: %w", shard, i+1, err)
			}
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for !c.refreshLeaders() {
		if time.Now().After(deadline) {
			c.close()
			return nil, errors.New("dragonboat: not every shard elected a leader in 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-c.stopc:
				return
			case <-t.C:
				c.refreshLeaders()
			}
		}
	}()
	return c, nil
}

// refreshLeaders updates the leader table; it reports whether every shard
// has a leader.
func (c *dbCluster) refreshLeaders() bool {
	all := true
	for shard := uint64(1); shard <= c.shards; shard++ {
		found := false
		for _, nh := range c.hosts {
			id, _, ok, err := nh.GetLeaderID(shard)
			if err == nil && ok && id >= 1 && id <= 3 {
				c.leaders[shard].Store(int32(id - 1))
				found = true
				break
			}
		}
		all = all && found
	}
	return all
}

func (c *dbCluster) close() {
	select {
	case <-c.stopc:
	default:
		close(c.stopc)
	}
	c.wg.Wait()
	// Hosts closing one by one reset their peers' connections: expected
	// here, not worth an ERROR line each (startDragonboat sets ERROR again).
	dblogger.GetLogger("transport").SetLevel(dblogger.CRITICAL)
	for _, nh := range c.hosts {
		nh.Close()
	}
	for _, db := range c.dbs {
		_ = db.Close()
	}
}

// shardOf returns the shard (1..shards) of key: a hash partition.
func shardOf(key []byte, shards uint64) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(key)
	return h.Sum64()%shards + 1
}

// shardsOver returns how many distinct shards of a cluster with shards
// shards hold the keys of spec's preloaded space.
func shardsOver(spec bench.Spec, shards uint64) int {
	seen := map[uint64]bool{}
	for i := uint64(0); i < spec.Keys; i++ {
		seen[shardOf(spec.Key(i), shards)] = true
	}
	return len(seen)
}

func (c *dbCluster) leaderHost(shard uint64) *dragonboat.NodeHost {
	return c.hosts[c.leaders[shard].Load()]
}

func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 5*time.Second)
}

// Get is a linearizable read (ReadIndex via SyncRead on the leader).
func (c *dbCluster) Get(ctx context.Context, key []byte) (bool, error) {
	shard := shardOf(key, c.shards)
	ctx, cancel := opCtx(ctx)
	defer cancel()
	v, err := c.leaderHost(shard).SyncRead(ctx, shard, getQuery{key: key})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

func (c *dbCluster) Put(ctx context.Context, key, value []byte) error {
	shard := shardOf(key, c.shards)
	cmd := make([]byte, 2+len(key)+len(value))
	binary.BigEndian.PutUint16(cmd, uint16(len(key)))
	copy(cmd[2:], key)
	copy(cmd[2+len(key):], value)
	ctx, cancel := opCtx(ctx)
	defer cancel()
	nh := c.leaderHost(shard)
	_, err := nh.SyncPropose(ctx, nh.GetNoOPSession(shard), cmd)
	return err
}

// Scan reads up to limit keys from start within start's shard (shards are
// hash partitions here), linearizably.
func (c *dbCluster) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	shard := shardOf(start, c.shards)
	ctx, cancel := opCtx(ctx)
	defer cancel()
	v, err := c.leaderHost(shard).SyncRead(ctx, shard, scanQuery{start: start, limit: limit})
	if err != nil {
		return 0, err
	}
	return v.(int), nil
}

func (c *dbCluster) Close() error { return nil }
