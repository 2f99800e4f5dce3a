// Package bench is rangestore's load generator: key generators, workload
// mixes (kv and YCSB A–F), a closed-loop runner with per-operation HDR
// histograms, and reports (text table, JSON, SVG plot). Drivers adapt a
// store's client to the small Driver interface; the rangestore driver
// lives here, the etcd and raw-Dragonboat drivers in bench/compare (a
// separate module, so the main go.mod does not pull in etcd).
//
// The rangestore driver (OpenRangestore) sends every request through
// client/, which routes it straight to the leaseholder of its key's range
// (bounded-staleness reads to the nearest replica; with several
// localities, one client.DB per locality, used in turn). With RawGRPC
// (and NewRangestoreDriver) it sends raw KV RPCs to the nodes in turn
// instead, each node's gateway forwarding to the leaseholder when the
// lease is elsewhere: the second hop client/ removes. Both stay, so that
// one run can measure the difference. Credentials are dial options on
// both paths.
//
// Transactions (bank.go, issue 16): the bank workload moves money between
// accounts, each transfer one serializable transaction that reads two
// accounts and writes both (BankDriver: the rangestore driver uses
// client.DB.Txn on the client/ path; bench/compare adapts etcd). RunBank's
// checker reads every account in one snapshot every CheckEvery while the
// clients run, and once after they stopped; the invariant is that the
// balances sum to the preloaded total and none is negative, and a
// snapshot that breaks it fails the run (ErrBankViolation), and so does
// a final snapshot that cannot be read; the snapshots read during the run
// (and those still being read when it ended: a starved checker) are
// reported, not judged.
// RunPairWrites writes a pair of keys in one transaction or in one batch,
// for the 2-range commit's cost against a 1-range batch. Both use one
// closed loop (runLoop) whose workers stop with the run's context; the
// checker goroutine is owned by RunBank and stopped before it returns.
package bench

import "context"

// Driver is the client side of one store under test. Implementations must be
// safe for concurrent use by many goroutines.
type Driver interface {
	// Get reads one key.
	Get(ctx context.Context, key []byte) (found bool, err error)
	// Put writes one key.
	Put(ctx context.Context, key, value []byte) error
	// Scan reads up to limit keys in ascending order starting at start
	// (inclusive) and returns how many it read.
	Scan(ctx context.Context, start []byte, limit int) (n int, err error)
	// Close releases the client.
	Close() error
}

// BatchPutter is optionally implemented by drivers that can write many
// keys in one request; Preload uses it when present.
type BatchPutter interface {
	PutBatch(ctx context.Context, keys, values [][]byte) error
}
