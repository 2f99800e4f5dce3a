package client

import (
	"context"
	"testing"
	"time"

	"github.com/rangestore/rangestore/internal/leakcheck"
	"github.com/rangestore/rangestore/node"
)

// TestMain fails the package's tests if any goroutine (a client's or a
// test cluster's) is still running once they have finished.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// splitKeys are the test clusters' split points: ranges [-c) [c-f) [f-m)
// [m-s) [s-).
var splitKeys = [][]byte{[]byte("c"), []byte("f"), []byte("m"), []byte("s")}

func startCluster(t *testing.T, opts node.TestClusterOptions) *node.TestCluster {
	t.Helper()
	if opts.SplitKeys == nil && opts.InitialSplits == 0 {
		opts.SplitKeys = splitKeys
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tc, err := node.StartTestCluster(ctx, opts)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(tc.Close)
	return tc
}

// addrs are the gRPC addresses of the cluster's nodes.
func addrs(tc *node.TestCluster) []string {
	var out []string
	for i := range tc.NumNodes() {
		out = append(out, tc.Addr(i))
	}
	return out
}

// openDB opens a client of tc (closed when the test ends).
func openDB(t *testing.T, tc *node.TestCluster, opts ...Option) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, addrs(tc), opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
