// Package ranges holds the Store (one per node) and its replicas.
//
// Design (DESIGN.md §3–4):
//   - One Dragonboat NodeHost and one shared Pebble engine per node. Every
//     range is one Dragonboat shard (shard ID = range ID) whose state machine
//     is an IOnDiskStateMachine over the shared engine, owning the MVCC data
//     of its span [start, end) plus range-local keys.
//   - Raw local keys (kv.LocalPrefix): 'r'+rangeID+… is replicated range state
//     (descriptor, max write timestamp, GC threshold, dedup records) and travels
//     in snapshots; 'p'+rangeID+replicaID+… is this replica's applied index and
//     its restart record; 'n'… is node state (cluster record).
//   - Every applied entry commits its writes, its dedup record and the applied
//     index in one Pebble batch, so state and index never diverge; Open returns
//     exactly that durable index (0 for a new replica ID), and Sync fsyncs the
//     engine's WAL.
//   - Commands carry a proposal ID and the proposer's timestamp. Update
//     deduplicates retried proposals (Dragonboat gives on-disk state machines
//     no client sessions) for DedupWindow, refusing older proposals as
//     ambiguous. The commit timestamp is max(proposal timestamp, previous
//     write + 1 logical), so versions of a range are strictly increasing.
//   - Evaluation is deterministic and happens at apply time on every replica;
//     a command with any key outside the descriptor is rejected whole with
//     RANGE_KEY_MISMATCH carrying the current descriptor.
//   - Until leases land, reads go through ReadIndex (SyncRead) and are
//     served from a Pebble snapshot by Lookup.
//   - A replica's restart record stores its initial members and its role
//     ("joined as non-voter" forever), so a crash at any point of a replica's
//     creation restarts it with the same arguments.
package ranges

// MetaRangeID and SystemRangeID are the fixed IDs of the bootstrap ranges.
const (
	MetaRangeID   uint64 = 1
	SystemRangeID uint64 = 2
)
