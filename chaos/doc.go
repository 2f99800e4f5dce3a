// Package chaos runs porcupine-checked histories of a cluster under
// injected faults (harness.go: RunHistory) and the tests built on them.
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
// certificate (NodeConn: the consistency check uses it). ClientArgs are
// the security flags of a CLI call to the cluster.
package chaos
