// Package txnwait holds the pure decisions of cross-range transactions
// (issue 16): what a push does to a transaction, what an EndTxn or a
// heartbeat does to its record, how a STAGING record is recovered, and
// which transaction a deadlock aborts. Nothing here does I/O or reads a
// clock: records, tscache facts and "now" are inputs, and every decision
// returns an action plus a reason a person can read. The record commands,
// the coordinator and the wait queue gather the facts and act.
//
// Types: Timestamp (kv.Timestamp's fields, convertible to it), TxnID,
// TxnStatus (PENDING, STAGING, COMMITTED, ABORTED), TxnState (a record, or
// what an intent says of a txn), RecordCheck (what the tscache says about
// creating a missing record).
//
// Rules (facts from CockroachDB: kvserver/batcheval cmd_push_txn.go,
// cmd_end_transaction.go, cmd_heartbeat_txn.go, cmd_recover_txn.go,
// transaction.go; kvserver/txnwait/queue.go; kvserver/txnrecovery/
// manager.go; base/constants.go):
//   - Liveness: a txn heartbeats every 1 s; it is expired once its last
//     activity (the later of its last heartbeat and its start ts; never its
//     write ts, which pushes move) is more than the threshold (default 5 s)
//     before now. Expiry only lets pushers abort it: its coordinator may
//     still heartbeat and commit until one does.
//   - Records: only the coordinator creates one (EndTxn, first heartbeat).
//     A missing record is PENDING while it may still be created, else
//     aborted without writing a record. Pushes of record-less txns and
//     timestamp pushes are kept as tscache markers (PushMarker: commit no
//     lower; TombstoneMarker: never create), aborts of existing records are
//     written to them.
//   - DecidePush: finalized → success; PUSH_TIMESTAMP already at or above
//     PushTo → no-op; expired → abort; otherwise a strictly higher
//     priority class (min < normal < max; two normal priorities tie and
//     the pusher loses) or Force wins; PUSH_TOUCH never wins against a
//     live pushee and never waits; other losers WAIT. A win against STAGING
//     is RECOVER_STAGING, unless the pusher saw the pushee at a higher
//     epoch or ts (that parallel commit failed: PENDING, and a timestamp
//     push becomes an abort). A winner raises the pushee's priority to its
//     own - 1; an abort forwards the pushee's ts to its last activity.
//   - DecideEndTxn: COMMITTED → ALREADY_COMMITTED, even for a rollback;
//     ABORTED → a rollback rewrites it, a commit is refused; a rollback that
//     meets STAGING of its epoch goes through recovery; a commit whose ts
//     was pushed (record ts or tscache push marker above CommitTS) must
//     refresh (RETRY_SERIALIZABLE); the deadline must be after the commit
//     ts; STAGING of an older epoch counts as PENDING.
//   - DecideHeartbeat: creates the record PENDING or forwards its last
//     heartbeat; COMMITTED/ABORTED stop it. A heartbeat that finds no
//     record and a tombstone cannot tell aborted from committed-and-removed,
//     so the coordinator never reports "aborted" on its word.
//   - DecideRecovery: a STAGING txn is committed iff every in-flight write
//     is found at or below the staging ts in the staging epoch. A query
//     that misses a write prevents it (tscache), so one miss, or a write
//     found above, aborts. A record that changed (finalized, removed, a
//     higher epoch or ts) stops recovery.
//   - Graph.FindCycle: the waits-for graph of the wait queue; it returns
//     one cycle, chosen by ID order, and its victim: the lowest priority,
//     the lower ID on a tie.
//
// Invariants:
//   - A push never creates a record and never changes a STAGING one.
//   - An implicitly committed txn (STAGING, all writes found) is never
//     aborted: recovery commits it, rollbacks and pushes recover first;
//     DecideRecovery returns an error if its record moved anyway.
//   - A finalized record never changes status; epochs and timestamps of a
//     record never go back (DecideEndTxn and DecideRecovery return errors).
//   - FindCycle finds a cycle iff the graph has one, and removing the victim
//     breaks the cycle returned (TestFindCycleProperty).
//
// Tests: golden cases in testdata/*.json, outputs in testdata/*.golden,
// regenerated with -rewrite.
package txnwait
