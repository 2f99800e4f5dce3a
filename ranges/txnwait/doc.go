// Package txnwait holds the pure decisions of cross-range transactions
// (issue 16): what a push does to a transaction (DecidePush), what an
// EndTxn or a heartbeat does to its record (DecideEndTxn,
// DecideHeartbeat), how a STAGING record is recovered (DecideRecovery),
// and which transaction a deadlock aborts (Graph.FindCycle). Nothing here
// does I/O or reads a clock: records, tscache facts and "now" are inputs,
// and every decision returns an action and a reason a person can read. The
// record commands, the coordinator and the wait queue gather the facts and
// act. Each function's comment lists its rules in the order applied.
//
// Sources (facts only) in CockroachDB: kvserver/batcheval
// cmd_push_txn.go, cmd_end_transaction.go, cmd_heartbeat_txn.go,
// cmd_recover_txn.go and transaction.go (CanCreateTxnRecord,
// CanPushWithPriority); kvserver/txnwait/queue.go (IsExpired, the liveness
// threshold, deadlock breaking); kvserver/txnrecovery/manager.go;
// base/constants.go (1 s heartbeat). See also
// shared/research/anchors-txn.md §1.2, §1.5, §1.6, §1.10.
//
// Liveness: a coordinator heartbeats every 1 s. A txn is expired once its
// last activity (the later of its last heartbeat and its start ts; never
// its write ts, which pushes move) plus the threshold (default 5 s) is
// before now. Expiry only lets pushers abort it: until one does, its
// coordinator may still heartbeat and commit.
//
// Records: only the coordinator creates one (its EndTxn or first
// heartbeat). A missing record is PENDING while it may still be created
// (RecordCheck), else aborted without one being written. Outcomes of
// pushes that must outlive a missing record go to the tscache as markers
// (PushMarker: commit no lower; TombstoneMarker: never create).
//
// Priorities compare by class (min < normal < max) in pushes, so two
// normal priorities tie and the pusher waits; deadlock victims are chosen
// by raw priority, the lower ID on a tie, as CockroachDB's wait queue does.
//
// Invariants:
//   - A push never creates a record and never changes a STAGING one: a
//     winning push against STAGING starts recovery, as does a rollback that
//     meets STAGING of its own epoch.
//   - An implicitly committed txn (STAGING, every in-flight write found at
//     or below its ts in its epoch) is never aborted; DecideRecovery
//     returns an error if such a record moved anyway.
//   - A finalized record never changes status; a record's epoch and ts
//     never go back (DecideEndTxn and DecideRecovery return errors).
//   - A commit never lands below a push: the record's ts and the tscache
//     push marker both force a refresh (RETRY_SERIALIZABLE).
//   - FindCycle finds a cycle iff the graph has one, independent of the
//     order edges were added, and removing its victim breaks the cycle it
//     returned (TestFindCycleProperty).
//
// Tests: golden cases in testdata/*.json, printed as input → action:
// reason into testdata/*.golden (regenerate with -rewrite).
package txnwait
