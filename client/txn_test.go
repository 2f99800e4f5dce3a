package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/rangestore/rangestore/node"
)

// TestTxnRetriesConflicts: concurrent read-modify-write transactions on
// counters in different ranges, all through DB.Txn: every increment
// commits exactly once (conflicts are retried), and each transaction's two
// counters move together.
func TestTxnRetriesConflicts(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{})
	db := openDB(t, tc)
	ctx := ctxT(t)
	keys := [][]byte{[]byte("b-counter"), []byte("t-counter")} // ranges [-c) and [s-)
	const workers, each = 4, 10
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	runs := make([]int, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, err := db.Txn(ctx, func(ctx context.Context, txn *Txn) error {
					runs[w]++
					for _, k := range keys {
						n := 0
						kv, err := txn.Get(ctx, k)
						switch {
						case errors.Is(err, ErrNotFound):
						case err != nil:
							return err
						default:
							if n, err = strconv.Atoi(string(kv.Value)); err != nil {
								return err
							}
						}
						if err := txn.Put(ctx, k, []byte(strconv.Itoa(n+1))); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errc <- fmt.Errorf("worker %d, increment %d: %w", w, i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for _, k := range keys {
		kv, err := db.Get(ctx, k)
		if err != nil || string(kv.Value) != strconv.Itoa(workers*each) {
			t.Fatalf("%s = %v, %v; want %d", k, kv, err, workers*each)
		}
	}
	total := 0
	for _, r := range runs {
		total += r
	}
	t.Logf("%d transactions committed in %d runs (%d retries, stats %+v)", workers*each, total, total-workers*each, db.Stats())
}

// TestTxnErrors: a function's own error rolls back and is returned as it
// is; bad options are refused.
func TestTxnErrors(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{})
	db := openDB(t, tc)
	ctx := ctxT(t)
	mine := errors.New("mine")
	_, err := db.Txn(ctx, func(ctx context.Context, txn *Txn) error {
		if err := txn.Put(ctx, []byte("d"), []byte("x")); err != nil {
			return err
		}
		return mine
	})
	if !errors.Is(err, mine) {
		t.Fatalf("Txn returned %v, want the function's error", err)
	}
	if _, err := db.Get(ctx, []byte("d")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the rolled-back write is visible: %v", err)
	}
	if _, err := db.Txn(ctx, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil function: %v", err)
	}
	if _, err := db.Txn(ctx, func(context.Context, *Txn) error { return nil }, WithTxnPriority(-1)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("negative priority: %v", err)
	}
	ts, err := db.Txn(ctx, func(ctx context.Context, txn *Txn) error {
		_, err := txn.Scan(ctx, []byte("a"), []byte("z"), 0)
		return err
	})
	if err != nil || ts.IsZero() {
		t.Fatalf("read-only transaction: %v, %v", ts, err)
	}
}
