// Package chaos runs porcupine-checked histories of a cluster under
// injected faults (harness.go: RunHistory), with a transactional workload
// checked by txncheck alongside, and the tests built on them.
//
// # Clients and outcomes
//
// The checked operations (get, put, compare-and-set, conditional delete
// on a few keys; clients.go) go through the Go client: each porcupine
// client has its own client.DB (StartDBClients, OpenDBs), opened on every
// node's address with the test cluster's dial options in process and
// root's client certificate (client.WithTransportCredentials) in process
// mode, so requests go straight to the leaseholders and the client's
// routing, retries and exactly-once writes are under test too. The
// harness's loader writes through a client.DB as well. Fault injection,
// Admin and Internal calls (merges, transfers, replica changes, the
// consistency check) and the loader's read-back through every node stay
// on raw gRPC; so does StartClients, for tests that need a request to
// enter the cluster at a chosen node (KVNodes, SetTargets, PreferReads).
//
// A client error becomes the history as follows (dbWriteNotApplied):
//
//   - a failed read is left out: it had no effect;
//   - a ConditionFailedError is an answer: the condition did not hold
//     (OK false, and what the key held is remembered);
//   - a write failing with client.Unavailable (the retry budget ran out
//     and no attempt may have applied: the client reports one that may
//     have as Ambiguous) or client.InvalidArgument (refused before
//     anything was written) definitely did not apply: it is left out
//     (Result.FailedWrites counts them);
//   - any other write error is an unknown outcome, the model's "maybe
//     applied" (Output.Unknown, returning at the end of the history):
//     client.ErrAmbiguous; DeadlineExceeded and Canceled (the operation's
//     deadline can cut an attempt in flight before the client marks it as
//     possibly applied); Closed; and what the client passes on from a node
//     (Unknown, Internal, FailedPrecondition, ...).
//
// Taking an unknown outcome as a failure would make porcupine report
// violations that are not there; taking a failure that did not apply as
// unknown would only weaken the check. Leaving Unavailable writes out
// checks the client's claim that they did not apply. Raw clients
// (StartClients) leave out only a write whose connection to the node it
// chose never came up (neverSent); every other failed write is unknown.
//
// # Transactions
//
// With Options.Txns (TestChaos sets it with CHAOS_TXNS=on, make chaos's
// default) a transactional workload
// (txnwork.go) runs alongside the porcupine clients, through client.DBs of
// its own, on keys they never touch: the validator's T/00..T/39 and the
// accounts bank/000..bank/099. Before the history starts, Admin splits
// put the validator's keys into 5 ranges and the accounts into 13 (at
// least 12 while a merge fault holds two together), recorded in the
// range tracker the faults pick ranges from; a few of these keys join the
// porcupine keys there, so merges, splits back, lease transfers, replica
// changes and the leaseholders stopped, partitioned or killed (kill -9
// of a process also kills the coordinators it held, mid-commit or not)
// hit the workload's ranges too.
//
//   - The bank: 100 accounts of 100, written by one non-transactional
//     batch first; 4 workers transfer 1..20 between random accounts in a
//     DB.Txn (a batch reading both balances, then a batch writing both;
//     a transaction whose source is short only reads); a checker starts a
//     read-only DB.Txn reading every account (a scan, or a batch of 100
//     gets) every 100 ms, at most 4 at once (each meets intents and
//     uncertain values, and takes several times that).
//   - The validator (kvnemesis style): 4 clients issue single-key gets
//     and puts, non-transactional batches of puts and gets over 2-4
//     distinct keys, and transactions over 2-4 distinct keys (of several
//     ranges as a rule): an optional scan, a batch of gets, then a batch
//     of writes (the first a put, the others sometimes deletes), then
//     sometimes a read of a key it wrote; and atomic batches
//     (DB.AtomicBatch) over 2-4 distinct keys, mostly puts (all puts: a
//     parallel commit), recorded as transactions whose reads hold at
//     their commit timestamp (outcome as a DB.Txn commit's).
//
// In process mode with the workload, the fault txnkill arms the crash
// point txn-after-stage (RANGESTORE_CRASH_AT with a once-file): the next
// process to finish a parallel commit's STAGING round as its coordinator
// dies there by SIGKILL, before it answers or makes the record
// COMMITTED, so readers of its intents must recover the transaction.
//
// Every value written is unique ("w<client>-<seq>-..." for the validator;
// "<balance>:<tag>" for accounts), and each op becomes a txncheck.Op with
// its invoke and complete times. Only the last run of a DB.Txn function
// counts (runs are recorded anew; each writes new values, so a write of
// an aborted run that surfaced would be an orphan). Timestamps: a
// writing transaction's commit timestamp and a read-only one's read
// timestamp are what DB.Txn returns (a read-only transaction commits at
// its read timestamp, after any uncertainty restart); a non-transactional
// put's is WriteResult.Timestamp, a batch put's its Result.Timestamp;
// the read timestamp of a writing transaction and of non-transactional
// reads is left unknown (txncheck then checks them by the window in which
// their values held, and a writer's reads at its commit timestamp).
//
// Outcomes: an OK DB.Txn is OK. A DB.Txn error is FAILED if the last
// run's function had not returned (no CommitTxn was sent, and the
// coordinator commits only on it), or if the commit answered Retry
// (aborted, or the retries ran out), InvalidArgument or Unavailable (the
// client's word that nothing applied); any other commit error
// (Ambiguous, DeadlineExceeded, Canceled, Closed, Unknown, ...) is
// AMBIGUOUS (Result.TxnUnavailableCommits counts the commits that failed
// Unavailable). A single-key put follows dbWriteNotApplied. A
// non-transactional batch error is AMBIGUOUS for every put in it unless
// it is InvalidArgument: the batch is one command per range and its error
// one range part's, so other parts may have applied. Failed reads are
// left out.
//
// After the faults are undone and the porcupine clients stopped, the
// workload stops; the harness waits (at most 15 s) until no node
// coordinates an open transaction (the rangestore_txn_open gauges), then
// dumps every version of both key spaces at a timestamp above everything
// recorded, with the Backup service's Export and all_versions (as
// `rangestore backup` calls it). An export that meets an intent fails, so
// each attempt first reads both spans at that timestamp through a
// client.DB batch, whose router pushes the intents' transactions and
// resolves their intents (committed, aborted, or moved above it): the
// recovery any reader does. txncheck.Check judges the whole history
// against the dump (unique values; OK writes present at their commit
// timestamps, FAILED ones absent, AMBIGUOUS all or none; no orphan
// versions; every read of an OK op explained at its timestamp or in some
// common window; read your writes; real-time order per key), and
// CheckBank every OK snapshot (the sum is 10,000, no balance negative).
// Any violation fails the history like a non-linearizable one:
// Result.TxnViolations, and the report with the ops it names (and the
// client errors they ended with) in OutDir/txn-seed<seed>.txt. Dumps that
// still meet intents after 60 s are a leftover-intent violation.
//
// TestChaos (make chaos) is tuned by environment variables:
//
//   - CHAOS_HISTORIES: histories to run (default 3; make chaos: 50);
//   - CHAOS_DURATION: each history's length (default 20s; make chaos: 15s);
//   - CHAOS_MODE: proc or inproc runs that mode only (default: they
//     alternate, in-process first);
//   - CHAOS_FAULTS: kind,kind narrows the faults (AllFaults);
//   - CHAOS_SEED: the first history's seed (the others follow);
//   - CHAOS_REBALANCE: default, or aggressive (make chaos's default): the
//     processes of process-mode histories start with rebalance thresholds
//     of 0 and minimum margins of 1 (rebalance.go), so that the replicate
//     queues move replicas and transfer leases for balance alongside the
//     faults; each such history logs the moves carried out, counted from
//     the processes' /metrics;
//   - CHAOS_TXNS: on (make chaos's default) runs the transactional
//     workload in every history; off (a plain go test) leaves it out;
//   - CHAOS_OUT: where failing histories are saved as HTML (default
//     ./chaos-failures);
//   - CHAOS_LOG_LEVEL: the processes' --log-level (default warn).
//
// ProcCluster (proc.go; process mode, and the process tests of
// cmd/rangestore) runs secure unless its `start` flags hold --insecure: it
// makes a CA, a node certificate for 127.0.0.1 and localhost and root's
// client certificate under its directory (CreateCerts), starts every
// process with --certs-dir, dials as root (Conn, KV, Dial) and, for
// Internal calls (which refuse client certificates), with the node
// certificate (NodeConn: the consistency check uses it). ClientOptions
// are client.Open's options as root; ClientArgs are the security flags of
// a CLI call to the cluster.
package chaos
