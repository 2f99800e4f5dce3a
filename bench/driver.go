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
