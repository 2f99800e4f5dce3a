package ranges

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/lni/dragonboat/v4/config"
)

// The Dragonboat engine tuning of a Store, in one place so that the
// raw-Dragonboat ceiling of bench/compare runs with exactly the same
// settings (issue 14: a ceiling tuned differently from the store it bounds
// is not a ceiling). NewStore, replicaConfig and `rangestore start` read
// these; bench/compare builds its NodeHosts and shards from them.

// Raft timing defaults of a Store (StoreConfig.RTTMillisecond, ElectionRTT,
// HeartbeatRTT, SnapshotEntries, CompactionOverhead when left 0).
const (
	DefaultRTTMillisecond     = 200
	DefaultElectionRTT        = 5
	DefaultHeartbeatRTT       = 1
	DefaultSnapshotEntries    = 10000
	DefaultCompactionOverhead = 5000
)

// RaftEngineConfig is the LogDB and engine configuration of every Store's
// NodeHost (NodeHostConfig.Expert.LogDB and .Engine):
//
//   - one LogDB shard: the proposals of all ranges share one WAL and its
//     fsyncs, the batching that matters most with many ranges on few disks;
//   - the tiny-memory LogDB (4 MiB memtables, 4 of them);
//   - one step (exec) worker: it drains every range's Raft updates into
//     the one LogDB shard, so more workers only contend on that WAL;
//   - one commit worker (only used with NotifyCommit, which is off), 4
//     apply, 4 snapshot and 2 close workers: the default 16/16/48/32
//     goroutines buy nothing on a few cores.
func RaftEngineConfig() (config.LogDBConfig, config.EngineConfig) {
	logdb := config.GetTinyMemLogDBConfig()
	logdb.Shards = 1
	engine := config.EngineConfig{ExecShards: 1, CommitShards: 1, ApplyShards: 4, SnapshotShards: 4, CloseShards: 2}
	return logdb, engine
}

// RaftReplicaConfig is the per-range Raft configuration of a Store with
// the given timing (ElectionRTT and HeartbeatRTT in ticks), snapshot
// cadence and quiesce setting: check-quorum and pre-vote on, ordered
// configuration changes.
func RaftReplicaConfig(shardID, replicaID, electionRTT, heartbeatRTT, snapshotEntries, compactionOverhead uint64, quiesce bool) config.Config {
	return config.Config{
		ShardID:             shardID,
		ReplicaID:           replicaID,
		ElectionRTT:         electionRTT,
		HeartbeatRTT:        heartbeatRTT,
		CheckQuorum:         true,
		PreVote:             true,
		SnapshotEntries:     snapshotEntries,
		CompactionOverhead:  compactionOverhead,
		OrderedConfigChange: true,
		Quiesce:             quiesce,
	}
}

// DefaultRaftReplicaConfig is RaftReplicaConfig with a default Store's
// settings (the ones `rangestore start` runs with).
func DefaultRaftReplicaConfig(shardID, replicaID uint64) config.Config {
	return RaftReplicaConfig(shardID, replicaID, DefaultElectionRTT, DefaultHeartbeatRTT, DefaultSnapshotEntries, DefaultCompactionOverhead, true)
}

// SoftSettingsFile is the file name Dragonboat reads its soft settings
// from, in the process's working directory, once at package
// initialisation; code cannot set them any other way.
const SoftSettingsFile = "dragonboat-soft-settings.json"

// SoftSettingsJSON is the content `rangestore start` writes to
// SoftSettingsFile before re-executing itself (cmd/rangestore
// softsettings.go), and bench/compare keeps a copy of next to its binary's
// working directory. The values keep per-replica memory and the idle cost
// of thousands of ranges low (measured for issue 4: 1,000 ranges idle at a
// few percent of a core instead of saturating it):
//
//   - NodeReloadMillisecond 1000: the engine's fallback poll over every
//     replica (default 200 ms; all real work is signalled explicitly);
//   - PendingProposalShards 1: one proposal table per replica (default 16);
//   - per-replica queue lengths cut to what one range needs (issue 14, item
//     5). Dragonboat allocates every queue twice (double-buffered) and in
//     full when a replica starts, so its length times its element size is
//     live heap per replica whether used or not, and the Go GC's heap goal
//     (twice the live heap) lets about as much garbage again become RSS:
//   - IncomingProposalQueueLength 256: proposals queued on a replica
//     between two runs of the step worker (2 x 256 x 80-byte entries = 40
//     KiB a replica; 1,024 gave 160 KiB, 160 MiB of heap at 1,000 ranges).
//     A client waits for its proposal to apply before proposing again, so
//     this bounds the writers in flight on one range, not the rate; beyond
//     it a proposal gets ErrSystemBusy and is retried after 20 ms. The
//     largest bench cell puts 256 writers on 64 ranges, 64 on one range.
//   - ReceiveQueueLength 128: Raft messages queued on a replica between two
//     runs of the step worker (2 x 128 x 304-byte messages = 76 KiB; 256
//     gave 152 KiB, 152 MiB at 1,000 ranges). With three replicas a range
//     gets a few messages per peer per step (appends and their
//     acknowledgements, heartbeats, forwarded proposals); a message beyond
//     the length is dropped (Raft recovers: the next append or heartbeat
//     finds the gap and the leader sends again);
//   - IncomingReadIndexQueueLength 16: the store's only ReadIndex calls
//     wake a quiesced range, at most one per replica per election timeout
//     (Replica.wake); reads are served under the lease. 256 gave 4 KiB of
//     pointers a replica;
//   - InMemEntrySliceSize 64, MinEntrySliceFreeSize 16: Raft's in-memory
//     log is kept in slices of 64 entries (default 512), a new one started
//     when fewer than 16 are free.
const SoftSettingsJSON = `{
  "NodeReloadMillisecond": 1000,
  "PendingProposalShards": 1,
  "ReceiveQueueLength": 128,
  "IncomingProposalQueueLength": 256,
  "IncomingReadIndexQueueLength": 16,
  "InMemEntrySliceSize": 64,
  "MinEntrySliceFreeSize": 16
}
`

// RaftTuningSummary is one line describing the engine tuning above, for
// reports that compare rangestore with a raw Dragonboat (bench/compare
// prints it in its header).
func RaftTuningSummary() string {
	logdb, e := RaftEngineConfig()
	c := DefaultRaftReplicaConfig(0, 0)
	return fmt.Sprintf("LogDB shards %d (memtables %d × %d MiB), ExecShards %d, ApplyShards %d, SnapshotShards %d, CloseShards %d; "+
		"tick %d ms, election %d ticks, heartbeat %d ticks, check-quorum %t, pre-vote %t, quiesce %t, snapshot every %d entries (keep %d); soft settings %s",
		logdb.Shards, logdb.KVMaxWriteBufferNumber, logdb.KVWriteBufferSize>>20, e.ExecShards, e.ApplyShards, e.SnapshotShards, e.CloseShards,
		DefaultRTTMillisecond, c.ElectionRTT, c.HeartbeatRTT, c.CheckQuorum, c.PreVote, c.Quiesce, c.SnapshotEntries, c.CompactionOverhead,
		softSettingsSummary())
}

// softSettingsSummary lists SoftSettingsJSON as name=value pairs.
func softSettingsSummary() string {
	var m map[string]any
	if err := json.Unmarshal([]byte(SoftSettingsJSON), &m); err != nil {
		return "unparseable: " + err.Error()
	}
	kv := make([]string, 0, len(m))
	for k, v := range m {
		kv = append(kv, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(kv)
	return strings.Join(kv, " ")
}
