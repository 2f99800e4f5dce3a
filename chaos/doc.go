// Package chaos runs porcupine-checked histories of a cluster under
// injected faults (harness.go: RunHistory) and the tests built on them.
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
