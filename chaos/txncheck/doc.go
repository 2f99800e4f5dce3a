// Package txncheck validates a recorded history of transactional client
// operations against the final MVCC state of the cluster, in the manner
// of CockroachDB's kvnemesis validator (anchors-txn.md §6). It is a pure
// function of its inputs: a recorder (written with the transaction layer)
// runs the workload and dumps the state; Check judges them.
//
// # Model
//
// A History holds one Op per client operation: its client, invoke and
// complete times on the recorder's clock, its kind (get, put, delete,
// non-transactional batch, transaction), its Steps in issue order (point
// reads with the value seen or absence, scans of [Key, EndKey) with the
// rows returned, puts and deletes), its read and commit timestamps (HLC,
// this package's own Timestamp, the shape of kv.Timestamp) and its
// outcome: OK, FAILED (definitely not applied) or AMBIGUOUS. Every value
// written is unique in the history; deletes write no value. A Dump is
// every version of every key: timestamp, value or tombstone, and whether
// it is still an unresolved intent.
//
// The unit of checking is an op, except that a batch is one unit per step
// at that step's Timestamp (a batch is one atomic command per range only,
// so its steps are checked as independent one-step ops; a batch reading a
// key it also writes is not modelled). A transaction's unit timestamp is
// its commit timestamp if it writes, else its read timestamp; a get's is
// its read timestamp. A timestamp may be unknown (zero), except an OK
// writer's: then its reads must still agree on some one timestamp.
//
// A version is committed data unless it is an intent of an op that is not
// OK (an OK op's leftover intent is reported once, by check 7, and
// otherwise counts as its write). An AMBIGUOUS op's outcome is inferred:
// committed if the dump holds (non-intent) versions of its values, at the
// timestamp they share; otherwise not applied. An op that only deletes is
// matched by timestamp alone (tombstones carry no value): to tombstones no
// other op explains, at one timestamp on its keys, where it breaks neither
// real-time order nor its own reads, the op explaining the most of them
// first. Two such ops deleting one key cannot be told apart, so a
// generator that wants exact inference gives every transaction a put. The
// inferences are in Report.Inferred. A delete of a key with no live value
// writes nothing (as ranges applies it), so a missing tombstone is a lost
// write only if the key was live just below.
//
// # What is checked
//
//  1. Written values are unique in the history (duplicate-value), and each
//     is in at most one version (duplicate-version: applied twice).
//  2. An OK op's writes are each present at exactly its commit timestamp
//     (lost-write, partial-commit, write-timestamp); a FAILED op's are
//     absent (failed-write-visible); an AMBIGUOUS op's are all present or
//     all absent (partial-commit, or write-timestamp if at different
//     timestamps); a value its own txn overwrote is absent
//     (intermediate-visible).
//  3. Every version was written by some op (orphan-version): values by
//     their unique writer at that key, tombstones by an op deleting that
//     key at that timestamp.
//  4. Each read of a committed op equals the latest committed version of
//     its key at the op's timestamp, the op's own versions left out and
//     its earlier writes laid over them (read-your-writes). Every read
//     gets the window of timestamps at which it held; scans give every
//     key in their span a window, so they prove absence too. A value no
//     committed version holds is unexplained-read, or dirty-read if its
//     writer did not commit, overwrote it (G1b) or left it an intent
//     (G1a). Windows with nothing in common are read-skew; a common
//     window without the op's timestamp is read-timestamp.
//  5. Read timestamp <= commit timestamp (read-after-commit).
//  6. Per key, real-time order implies timestamp order: when an OK op
//     completed before another began, the later op's write lies above
//     what the earlier one wrote or saw of the key, and its read sees
//     that version or a later one (real-time). No two ops write a key at
//     one timestamp (write-timestamp).
//  7. No unresolved intents remain (leftover-intent).
//  8. CheckBank: every OK transaction that reads all the accounts sees
//     them sum to the total, none negative (bank-sum, bank-negative).
//
// Each Violation names its class, the fewest ops that show it, the keys
// and timestamps, and a one-line reason; Report.Ops is the union of the
// ops named. Check returns an error only for input it cannot interpret
// (naming the op, step or version and the field).
//
// # What is not checked
//
// Serializability is checked at the commit timestamps: the timestamp
// order must explain every read. That is not strict serializability:
// real time is compared with timestamps only per key (check 6), so a
// causal reverse across keys (CRDB's documented anomaly) passes. The
// version order is taken from the timestamps, so anomalies that need a
// dependency graph not derivable from them (anti-dependency cycles among
// ops whose timestamps are unknown, Elle's G2 over list-append) are out of
// scope, as are the reads of FAILED and not-applied AMBIGUOUS ops
// (aborted transactions may read inconsistent data), follower and AS OF
// reads against the closed timestamp (they are plain reads here, at their
// read timestamp), and time-travel reads below the GC threshold.
// Single-key linearizability of non-transactional ops stays with the
// porcupine checks of package chaos.
package txncheck
