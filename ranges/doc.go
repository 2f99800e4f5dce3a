// Package ranges holds the Store (one per node) and its replicas.
//
// Layout: the Store (store.go) owns what is node-wide — the NodeHost, the
// engine, config, liveness, bootstrap, the background loops — and one map
// of Replicas. replica.go holds the Replica type and its lifecycle: it is
// created when Dragonboat creates its shard's state machine, ready once
// Dragonboat has opened it (admin commands wait for that), and removed by
// a merge, a covering snapshot, or the replica GC (a replica a replica
// change removed, or an orphan of a range merged away while this node
// missed the merge). A Replica holds its range and replica
// IDs, its Store, the apply side (stateMachine, replica_apply.go:
// Dragonboat's IOnDiskStateMachine) and the leaseholder state; each stage
// of its work has a file: replica_send.go (request checks, reads,
// writes), replica_lease.go (ensure, acquire, transfer, tend),
// replica_proposal.go (propose, settle, wake, Raft errors),
// replica_split.go, replica_merge.go and replica_change.go (the admin
// commands and their replicated commands). The pure decisions are
// leasedecision.go, splitdecision.go, metadecision.go,
// replicagcdecision.go, changedecision.go, gcdecision.go,
// followerreaddecision.go and applycheck.go; closedts.go holds closed
// timestamps and their side transport.
//
// engine_tuning.go is the one definition of the Dragonboat engine a Store
// runs: LogDB and engine workers (RaftEngineConfig), Raft timing defaults,
// the per-range Raft config (RaftReplicaConfig) and the soft settings
// `rangestore start` writes (SoftSettingsJSON). bench/compare's raw
// Dragonboat ceiling builds its NodeHosts and shards from the same
// functions, and bench/ and bench/compare hold the soft-settings file (their
// tests check it is identical), so that the ceiling and the in-process
// profiles run the engine a real node runs.
//
// Design (DESIGN.md §3–4):
//   - One Dragonboat NodeHost and one shared Pebble engine per node. Every
//     range is one Dragonboat shard (shard ID = range ID) whose state machine
//     is an IOnDiskStateMachine over the shared engine, owning the range data
//     of its span [start, end) (kv.RangeDataSpans: the MVCC versions, intents
//     included, and the keys addressed by those user keys, such as
//     transaction records) plus range-local keys.
//   - Raw local keys (kv.LocalPrefix): 'r'+rangeID+… is replicated range state
//     (descriptor, max write timestamp, GC threshold, dedup records) and travels
//     in snapshots; 'p'+rangeID+replicaID+… is this replica's applied index and
//     its restart record; 'n'… is node state (cluster record, store ID);
//     'k'… is kv's addressed keys (range data, see above).
//   - The entries of one Update call commit their writes, dedup records and
//     the applied index in one Pebble batch, so state and index never
//     diverge; lease, max write timestamp and GC threshold become visible in
//     memory only after that commit. Open returns
//     exactly that durable index (0 for a new replica ID), and Sync fsyncs the
//     engine's WAL.
//   - Leases (DESIGN.md §5): user ranges have epoch leases (valid while the
//     holder's liveness record keeps that epoch and has not expired), ranges
//     below the user span expiration leases (liveness lives there). The lease
//     is replicated range state; RequestLease applies only if the current
//     lease still equals the one the proposer saw, so two acquisitions never
//     both win. Taking over an epoch lease first increments the old holder's
//     liveness epoch, which is only done once its record expired. What a
//     replica does about the lease before serving (serve, redirect, wait for
//     a transfer, learn the holder's liveness, acquire, increment the
//     holder's epoch), and why, is the pure decideLease / decideTakeover
//     (leasedecision.go; golden tests in testdata/lease_decision.*).
//   - Draining (drain.go): a stopping or drained node takes no lease and
//     hands each of its leases to a live voter that takes leases (not
//     draining, not decommissioning: leases.TakesLeases), Raft leadership
//     first, with the range latched and the target caught up; requests
//     meeting a transfer wait for it and are then redirected. A replica
//     change adds no replica on a node that is decommissioning or
//     decommissioned (by its liveness record), and such a node refuses to
//     start a new replica.
//   - Writes are proposer-evaluated: the leaseholder takes span latches,
//     picks a timestamp above the timestamp cache (every read it served on
//     those spans), above the range's last write and the lease start,
//     evaluates into a Pebble batch and proposes the batch with its lease
//     sequence. Every replica applies it only if that lease is still current;
//     otherwise it applies nothing and leaves no dedup record (NOT_LEASEHOLDER).
//     Whether a committed command applies (dedup, frozen, lease, generation,
//     expiry, lease-request preconditions) is the pure checkApply
//     (applycheck.go), tested against testdata/apply_check.golden (-rewrite).
//     The state machine as a whole (writes, leases, split, freeze, merge, GC,
//     snapshots, restarts, duplicated entries) is driven by the scripts in
//     testdata/apply/*.txt (TestApplyScript, apply_script_test.go; -rewrite).
//     A RaftCommand holds exactly one of write, request-lease, GC, split,
//     freeze or merge (a oneof); decodeRaftCommand (raftcommand.go) is the
//     apply path's one decoder and reads log entries written before the
//     oneof (a write's body in top-level fields) as the same write
//     (testdata/raft_command_52bb8a9.txt).
//     A write whose caller gave up while it was still in the Raft log keeps
//     its latches until it applies or can no longer apply (settle).
//   - Reads are served by the leaseholder from a point-in-time kv.View
//     (one Pebble iterator's state, taken before the GC threshold is
//     checked; cheaper than a Pebble snapshot) under read latches, without any Raft round trip (no ReadIndex: the store's only
//     ReadIndex calls wake quiesced ranges, and rangestore_read_index_total
//     counts each), after recording the read in the timestamp cache. A
//     holder stops serving max-offset before its lease expires (stasis).
//     Follower reads below a closed timestamp are the exception (below).
//   - Closed timestamps (closedts.go; issue 13). A leaseholder promises
//     that no later write of its range will be at or below a closed
//     timestamp trailing its clock by StoreConfig.ClosedTimestampTarget
//     (default 3 s; --closed-timestamp-target) until the node applies the
//     cluster setting (Store.SetClosedTimestampTarget, 50ms..1h:
//     ValidateClosedTimestampTarget; a raised target stops the promises
//     until the clock catches up, since a promise never goes down). Its
//     closedTracker holds the promise and the timestamps of its writes in
//     flight (evaluated, not yet applied or settled): a
//     promise stays below every write in flight, a write evaluated at or
//     below the promise (or the replica's known closed timestamp) is moved
//     just above it, and the promise never goes down. Every write carries
//     the promise in the Raft log (WriteCommand.closed_timestamp); applying
//     it raises the replica's closed timestamp, and checkApply refuses
//     (UNAVAILABLE, retried) any write at or below the closed timestamp the
//     log already carried, whatever order commands reach the log in. That
//     value is replicated range state (key "clts"): in the apply batch,
//     in snapshots, reloaded at restart. Log entries written before it
//     close nothing. For idle ranges the side transport (closedTSLoop,
//     every ClosedTimestampInterval, 200 ms, one message per peer node:
//     RangeRequest.admin_closed_timestamps, range ID 0) sends (range,
//     lease sequence, closed timestamp, the leaseholder's applied index
//     read after the promise was made); a replica adopts it once it has
//     applied that index and only while its applied lease has that
//     sequence and is held by the sending node (kept until then, the
//     newest replacing older ones; dropped for a newer lease).
//     The Raft index suffices (CockroachDB uses a lease applied index): a
//     command proposed again as the same bytes applies at most once
//     (dedup), and one refused at apply stays refused.
//     Adopted values are memory only: after a restart a replica falls back
//     to the log's value (lower, so safe) until the next message. The
//     replica's closed timestamp is the larger of the two and never goes
//     down. Leases: a holder closes only while its lease is valid, not
//     transferring, and only timestamps below its clock; a transfer's
//     lease starts at the old holder's clock after it stopped serving, an
//     epoch takeover after the old liveness record expired, so every later
//     lease starts above everything an earlier holder closed, and its
//     writes (at or above its start) land above it. Splits: the right side
//     inherits the parent's closed timestamp from the log (its writes are
//     above the parent's and above its timestamp cache low water). Merges:
//     the left side keeps its own closed timestamp: the right is frozen,
//     every one of its writes applied on every replica before the merge,
//     and later writes to its span go through the left's leaseholder, above
//     the left's promise.
//   - Follower reads (RangeRequest.follower_read): any replica (voter or
//     non-voter, leaseholder or not) serves a read-only batch without the
//     lease, from a kv.View, at read_timestamp if it is at or below
//     its closed timestamp, else at its closed timestamp if that reaches
//     min_closed_timestamp; the pure decideFollowerRead
//     (testdata/follower_read.golden) serves, waits (up to
//     closed_wait_millis, woken when the closed timestamp rises: an
//     applied-state notification, no polling), redirects (NOT_CLOSED with
//     its closed timestamp: no wait allowed, no lease known, a lag beyond
//     target + budget, or a healthy closed timestamp would arrive too
//     late) or times out (BOOKMARK_TIMEOUT). Counted in
//     rangestore_follower_reads_total, not in rangestore_lease_reads_total
//     (per replica: Store.ReplicaReads); rangestore_replica_closed_timestamp_lag_seconds
//     is the largest lag of a local replica (a gauge, refreshed by the side
//     transport loop); Store.ClosedLag computes it afresh, with its range,
//     for the gossiped store descriptor.
//   - Transfers: the holder stops serving (transferring flag + a write latch
//     over the range), proposes the target's lease starting at its own clock,
//     so the new lease starts after everything it served. A new holder's
//     timestamp cache starts at the lease start; after a restart it starts at
//     now + max offset.
//   - Commands carry a proposal ID and the gateway's timestamp. Update
//     deduplicates retried proposals (Dragonboat gives on-disk state machines
//     no client sessions) for DedupWindow, refusing older proposals as
//     ambiguous. A replica answers a retry from its dedup record before any
//     other check (frozen, key span, lease); a merge moves the right range's
//     records under the left one, and a replica asked for a range merged
//     away here names the range that subsumed it (RANGE_NOT_FOUND).
//   - Raft leadership follows the lease (leaseLoop asks the Raft leader to
//     hand leadership to a leaseholder that is another voter); a Raft leader
//     that sees no valid lease acquires it, so failover needs no client.
//   - Replica IDs (replicaids.go) are numbered per range (1, 2, … in the
//     order PlanRanges places them) and are not node IDs: Dragonboat's
//     members, the Raft leader, lease holders' ReplicaId and leadership
//     transfers are in replica IDs, and a replica ID becomes a node ID only
//     through the range's descriptor (leaderNode, replicaLive, drainTarget,
//     transferLease). The descriptor's next_replica_id is the ID of the next
//     new replica (IDs are never reused); a split's right side keeps the
//     parent's replica IDs and counter, a merge keeps the left side's
//     replicas and takes the larger counter. A descriptor written before
//     next_replica_id existed has 0 there and is read as the largest
//     replica ID + 1 (NextReplicaID), so older stores need no migration.
//   - A replica's restart record stores its initial members and its role
//     ("joined as non-voter" forever), so a crash at any point of a replica's
//     creation restarts it with the same arguments.
//   - Splits (replica_split.go) are one replicated command evaluated under the lease
//     and the descriptor generation: applying it shrinks the left
//     descriptor and writes the right range's descriptor, lease copy,
//     timestamps, size and this node's replica record in the same batch;
//     the right replica then starts from another goroutine and compacts its
//     log, so a replica without the split's data is caught up by snapshot.
//     The compaction waits for the range's first command (an entry passed
//     to Update; compactNewShard proposes one that changes nothing, a GC
//     command without a threshold, if none applied yet): Dragonboat loads
//     a snapshot into an on-disk state machine only if its sender applied
//     a command beyond the receiver's on-disk index (0 for an empty
//     replica), and otherwise only moves the receiver's index, taking the
//     state at that on-disk index to be the same everywhere. A right side's
//     state before its first command is the split's, which an empty
//     replica lacks: a snapshot sent before that command would leave it
//     empty, and the first command would apply over nothing ("applied
//     entry 5 without a descriptor"). Invariant: a replica says its
//     initial log is compacted (logCompacted) only with the log compacted
//     behind a command it applied, so whichever of them leads, the snapshot
//     it sends an empty replica created from meta is loaded.
//     Writes carry the generation they were evaluated at: nothing evaluated
//     before a split applies after it. Both sides get generation+1; a
//     descriptor always has a higher generation than every descriptor it
//     replaced (merges: max+1), which is how meta repair, the gateway cache
//     and snapshots tell newer from older.
//   - Meta records are written after the split by the proposer (left record
//     first, so every key is always covered) and repaired by leaseholders
//     (meta.go: missing or older records at their end key, stale records
//     inside their span), with conditional writes on the exact bytes read.
//     What to write, delete or create (a replica meta names here but this
//     node lacks) is decided by the pure functions of metadecision.go,
//     tested against testdata/meta_decision.golden (-rewrite).
//   - Replica changes (replica_change.go; Admin ChangeReplicas and
//     RelocateRange): the store taking the request asks the range's
//     leaseholder for one step after another (AdminChangeReplicasRequest)
//     until the replica is added or removed; the leaseholder reads the
//     descriptor and Dragonboat's membership (OrderedConfigChange, with its
//     ConfigChangeID) and the pure decideReplicaChange (changedecision.go,
//     testdata/replica_change.*) names the next step, so a change cut off
//     anywhere is rolled forward by asking again, and one half done refuses
//     any other. Adding: the descriptor gets a NON_VOTER under
//     next_replica_id (a ChangeReplicasCommand: the whole next descriptor,
//     generation+1, checked at apply by checkReplicaChange under the lease
//     and generation it was proposed with), every voter's log is compacted
//     past the range's first entries (a joiner has no state to replay them
//     on: it must get a snapshot, and Dragonboat loads it since its sender
//     applied that descriptor change, a command, before the joiner's
//     membership change; a voter on a node dead for
//     StoreConfig.TimeUntilStoreDead is not waited for, else a dead voter
//     could never be replaced), Dragonboat adds the non-voter, the
//     target node starts it (AdminCreateReplicaRequest: its ReplicaRecord,
//     join + joined_non_voting, is written first, so it restarts as a
//     non-voter forever), it receives a snapshot streamed from a Pebble
//     snapshot, and once it applied the leaseholder's index of the time it
//     joined, Dragonboat promotes it (same ID and address) and the
//     descriptor records it as a VOTER. Removing: the lease moves to
//     another voter if the replica holds it, the descriptor drops it, then
//     Dragonboat does, and the node is told to collect it. Meta follows
//     every descriptor change (fixMeta). A replica no longer in its own
//     descriptor serves nothing (RANGE_NOT_FOUND). The meta range changes
//     the same way; its descriptor is in its own meta record, and nodes
//     follow it (MetaDescriptor, LearnMetaDescriptor; node/metadesc.go).
//     Standing non-voters (issue 13: a read replica's, a zone's;
//     Store.AddNonVoter, AdminChangeReplicasRequest.non_voter): the same
//     steps up to the catch-up, then done, never promoted (unless a voter
//     repair later asks for it: the promotion clears the flag). The
//     descriptor tells them from the learner of a change in flight
//     (CockroachDB's NON_VOTER vs LEARNER): the addition records
//     ReplicaDescriptor.standing, which checkReplicaChange keeps fixed
//     (never on a voter, never set or cleared on a non-voter afterwards);
//     a descriptor written before the field reads as it did, its
//     non-voters standing only on read-replica nodes (standingNonVoter).
//     A standing non-voter that is in the descriptor and a Raft non-voter
//     does not hold other changes up; a learner, or a standing one in the
//     descriptor alone (an addition between its steps), does. A
//     read-replica node (NodeDescriptor.read_replica in the cluster
//     record, ReadReplicaNode) is refused a voter, a promotion and a lease
//     transfer. A split of a range with standing non-voters still removes
//     them first (removeNonVotersForSplit, through the replica change
//     path): the right-hand Raft group starts with the split's voters as
//     its initial members, and a non-voter can only join a running group
//     by a membership change with a snapshot; the replicate queue adds
//     them to both halves again, a snapshot each. A learner refuses the
//     split (removing one under a change in flight let an empty replica be
//     sent log entries). Ranges with non-voters are not merged
//     (sameNodes).
//     A non-voter never acquires a lease (acquireLease redirects to a
//     voter). AppliedLag reports the most behind local replica (the commit
//     index Dragonboat's log DB learned minus the applied index).
//   - Snapshots (replica_apply.go, snapshot_limits.go). SaveSnapshot
//     streams a Pebble snapshot of the range (header with descriptor,
//     applied index and range-local keys, then the range data's keys); it
//     never materialises the range. RecoverFromSnapshot writes what it
//     reads into sstables (kv.Replacement: one per span to replace, each
//     with a range deletion of its span: the old and new range data spans, the
//     range-local keys, this replica's applied-index key) and ingests them
//     in one step, so memory stays bounded (a few blocks per sstable, not
//     the range) and the replacement is all-or-nothing. Before writing
//     anything it checks the stream (checkSnapshotHeader): the header's
//     descriptor is this range's and has the span of the descriptor
//     record among its range-local keys, every range-local value decodes
//     as loadState (or a dedup answer) will decode it, and every data key
//     lies in the header's span; a refused snapshot changes nothing
//     (FuzzSnapshotHeader). Crash argument:
//     Dragonboat records a received snapshot in its LogDB before it calls
//     RecoverFromSnapshot and shrinks the snapshot file only after it
//     returned and Sync ran. A crash before the ingestion is recorded in
//     Pebble leaves the old data, descriptor and applied index (and stray
//     files in ingest-tmp, removed when the engine opens); Open then
//     answers the old applied index, below the snapshot's, and Dragonboat
//     applies the still-full snapshot file again at start. A crash after it
//     leaves the new state with the snapshot's applied index, which is what
//     Open answers. The new applied index travels in the same ingestion as
//     the data, so Open never answers an index whose data is missing.
//     (Crash point snapshot-before-ingest; TestSnapshotCrashBeforeIngest
//     kills the receiving process there and checks the replicas' digests.)
//     A stream cut mid-way never reaches RecoverFromSnapshot (Dragonboat
//     applies only a complete, checksummed file) and Raft sends the
//     snapshot again (TestSnapshotRetriedAfterCut). Crash points inside
//     the stream (snapshotMidBytes): snapshot-send-mid kills the sender
//     with chunks delivered and no tail (the receiver's partial
//     .receiving directory is never applied), snapshot-receive-mid the
//     receiver while it writes the complete received file into sstables
//     (TestSnapshotMidStreamCrash). A leader streaming a snapshot keeps
//     Raft leadership until the stream ends even if the lease is
//     elsewhere: a new leader would send the whole range again.
//     Snapshots are a bounded resource of the node (our own limits:
//     Dragonboat v4 has no rate limit; its snapshot worker pool,
//     SnapshotShards = 4 in NewStore, also caps saves, applies and Opens
//     together, so a larger in-flight setting is capped by it):
//     SaveSnapshot first takes one of MaxSnapshotsInFlight send slots and
//     RecoverFromSnapshot one of as many apply slots (a semaphore each, waits end on the stop channel),
//     and all sends of the node together write through one token bucket
//     of SnapshotRate bytes/s (1 MiB burst; the rate applies to the
//     sender only, received bytes are bounded by their senders' rates).
//     Metrics: rangestore_snapshots_sent_total and failures by direction
//     come from Dragonboat's SendSnapshotCompleted/Aborted events (a
//     stream can fail after SaveSnapshot returned), the bytes as they
//     stream, rangestore_snapshot_seconds by direction, and
//     rangestore_snapshots_in_flight.
//     One snapshot per new replica: Dragonboat's leader counts a stream
//     delivered once its last chunk is sent and probes the receiver; a
//     receiver still restoring answers with an empty log, and the leader
//     (or a new leader it handed leadership to) streams the whole range
//     again. So a leader keeps leadership while it streams and until the
//     receiver reports the snapshot restored (decideLeaderHandoff,
//     testdata/leader_handoff.golden, at most 10 election timeouts), and a
//     stream that follows a delivered one first asks the receiver
//     (AdminReplicaProgress) and ends unsent once it has restored it
//     (rangestore_snapshots_skipped_total).
//   - Replica GC (replicagc.go), from the same meta scan, right before the
//     missing-replica repair: a local replica of a range merged away while
//     this node missed the merge (it caught up by a snapshot of another
//     layout) is in no meta record, knows no leader, and would block the
//     replicas of the ranges now covering its span. When decideReplicaGC
//     (replicagcdecision.go, testdata/replica_gc.golden) finds it safe, it
//     is destroyed with its data: state, replica record and MVCC data in
//     one synced batch, then its shard is stopped and its Raft data
//     removed (rangestore_replicas_gc_total). A replica that the newest
//     descriptor of its range known here (its own, or a newer meta record,
//     or one a leaseholder sends after removing it) no longer lists is
//     destroyed the same way (decideRemovedReplica), without marking the
//     range subsumed (it may come back here under a new replica ID); its
//     replica ID is marked removed on the node (a tombstone), so neither
//     the missing-replica repair nor a new addition brings it back.
//   - Merges (replica_merge.go): freeze the right neighbour (it serves nothing from
//     then on, forever), wait until every replica of it applied the freeze,
//     then subsume it in one batch on the left; replicas must be colocated.
//     A frozen range is merged eventually (the merge queue finishes it);
//     a freeze must name the adjacent left neighbour, and one whose target
//     was merged away or never existed is rolled back after FreezeTimeout;
//     the target does not split meanwhile (the merge needs its end key).
//     The split queue (splitqueue.go) splits by size and load and
//     merges small, idle, non-sticky neighbours; what it does for a range,
//     and why, is the pure decideSplit (splitdecision.go), tested against
//     golden output (testdata/split_decision.*, regenerated with
//     go test ./ranges/ -run TestSplitDecision -rewrite).
//   - MVCC GC (gc.go): the leaseholder's GC loop raises a range's GC
//     threshold to now - GCTTL, but keeps it strictly below the lowest
//     protected timestamp of a protection record (a backup's, in the
//     system range at keys.ProtectionKey) overlapping the range, and does
//     not raise it at all while the records cannot be read; the pure
//     decideGC (gcdecision.go, testdata/gc_decision.golden) decides. A read
//     at ts needs ts > threshold; an export from start_ts (an incremental
//     backup, batcheval Command.Since) needs start_ts >= threshold, else
//     BELOW_GC_THRESHOLD, so no export ever misses collected versions.
//   - Exports (batcheval cmd_export.go) are plain read-only requests at
//     their end_ts: whatever serves reads serves them (the leaseholder
//     today; a follower read at or below the closed timestamp once that
//     exists), and the KV service refuses them from clients (Internal()).
//   - Idle ranges quiesce; a quiesced range is woken by a ReadIndex when a
//     proposal times out or when its lease or Raft leader has no live node.
//   - Memory per replica is what a store of thousands of ranges multiplies:
//     Dragonboat's per-replica queues are allocated in full and twice at
//     start (their lengths are the soft settings `rangestore start` writes,
//     cmd/rangestore/softsettings.go), and the Go GC lets the heap grow to
//     twice what is live, so a slot never used still costs about twice its
//     size in RSS. Per-replica state here is built small and grows with use
//     (the load-split sampler's random source is a 16-byte PCG,
//     loadsplit.NewRand). `make bench-scale` logs RSS and its split per
//     process at 1,000 ranges.
//   - The lease loop (replica_lease.go) extends expiration leases, acquires a
//     missing lease at the Raft leader and moves leadership to the
//     leaseholder; each failure is counted (rangestore_lease_failures_total
//     by op) and logged with range and reason, at most once per 10 s per
//     range.
//   - Request types: what each one touches (its span, for latches and span
//     checks), whether it reads or writes, what Limits bound of it and how it
//     evaluates is its command in the batcheval registry (one file per type);
//     eval.go and limits.go apply the registry to a batch and switch on no
//     request type.
//   - Transactions (replica_txn.go; the commands in batcheval/txn.go and
//     cmd_*txn*.go, the decisions in txnwait): a batch may carry a
//     transaction header. Its reads run at the transaction's read timestamp
//     (own intents visible, within its uncertainty limit) and enter the
//     timestamp cache (a read in a write batch too, at the batch's
//     timestamp); its writes leave intents at its write timestamp,
//     pushed above every reader (its own reads included: replica_txn.go),
//     the closed timestamp, the lease start and
//     newer committed values (WriteTooOld: evaluated again higher), but not
//     above the range's max write timestamp: resolution is proposed at or
//     above the commit timestamp (Command.MinWriteTimestamp) instead, which
//     keeps the max write timestamp above every committed version, the
//     invariant non-transactional writes rely on. Intents of others in the
//     way are a WRITE_INTENT answer (nothing applied). Record markers (push,
//     tombstone) live in the timestamp cache on keys addressed by the
//     anchor; splits and merges carry them with the range's spans
//     (rangeTSSpans), a new lease or an overflow raises the low water,
//     below which a record can no longer be created. A push that would
//     lose waits before latches in the store's push wait queue
//     (pushqueue.go) until the pushee's record changes here, the pushee
//     could have expired, or 1 s.
//   - Errors: a replica's verdict is a *rspb.RangeError inside responses;
//     where the store returns a Go error (TransferLease, GC) it is an *Error
//     carrying that RangeError, so its code survives up to the gRPC status
//     (gateway/errors.go maps codes in one table).
//   - Time: every loop, poll, rate limit, local deadline and load recording
//     reads StoreConfig.TimeSource (timeutil; the real clock by default,
//     a ManualTimeSource in tests), never the time package. Context
//     deadlines stay on the real clock. The load-split sampler of a range is
//     seeded with its range ID.
package ranges

// MetaRangeID and SystemRangeID are the fixed IDs of the bootstrap ranges.
const (
	MetaRangeID   uint64 = 1
	SystemRangeID uint64 = 2
)
