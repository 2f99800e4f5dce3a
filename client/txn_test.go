package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
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
	runs := make([]int, workers)
	runWorkers(t, workers, func(w int) error {
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
				return fmt.Errorf("worker %d, increment %d: %w", w, i, err)
			}
		}
		return nil
	})
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

// commitOnly is a KV client whose CommitTxn fails with err; it records
// rollbacks.
type commitOnly struct {
	rspb.KVClient
	err       error
	rollbacks int
}

func (c *commitOnly) CommitTxn(context.Context, *rspb.CommitTxnRequest, ...grpc.CallOption) (*rspb.CommitTxnResponse, error) {
	return nil, c.err
}

func (c *commitOnly) RollbackTxn(context.Context, *rspb.RollbackTxnRequest, ...grpc.CallOption) (*rspb.RollbackTxnResponse, error) {
	c.rollbacks++
	return &rspb.RollbackTxnResponse{}, nil
}

// TestTxnCommitOutcome: a commit the coordinator did not answer (it died
// with the call in flight: the commit may have applied) is Ambiguous and
// not rolled back; a conflict it answered is Retry; a refusal is rolled
// back and keeps its code. (Found by the chaos workload: kill -9 of the
// coordinator mid-commit was reported as a commit that did not apply.)
func TestTxnCommitOutcome(t *testing.T) {
	retry, _ := status.New(codes.Aborted, "pushed").WithDetails(&errdetails.ErrorInfo{Reason: "TXN_RETRY", Domain: "rangestore"})
	for _, c := range []struct {
		name     string
		err      error
		want     Code
		rollback bool
	}{
		{"connection lost", status.Error(codes.Unavailable, "error reading from server: EOF"), Ambiguous, false},
		{"deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), Ambiguous, false},
		{"aborted transport", status.Error(codes.Aborted, "stream aborted"), Ambiguous, false},
		{"retry", retry.Err(), Retry, false},
		{"refused", status.Error(codes.FailedPrecondition, "already committed"), FailedPrecondition, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			kv := &commitOnly{err: c.err}
			_, err := (&Txn{kv: kv, handle: []byte("h")}).commit(context.Background())
			var e *Error
			if !errors.As(err, &e) || e.Code != c.want {
				t.Fatalf("commit failing with %v: %v, want code %s", c.err, err, c.want)
			}
			if (kv.rollbacks > 0) != c.rollback {
				t.Fatalf("rollbacks %d, want rollback %v", kv.rollbacks, c.rollback)
			}
		})
	}
}

// TestAtomicBatch: writes in two ranges commit together at one timestamp
// (parallel commit), concurrent atomic batches over the same two keys
// never interleave (each key ends with the same batch's value), a
// read-only atomic batch reads at one timestamp, and bad input is refused.
func TestAtomicBatch(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{})
	db := openDB(t, tc)
	ctx := ctxT(t)
	a, z := []byte("b-key"), []byte("t-key") // ranges [-c) and [s-)
	res, err := db.AtomicBatch(ctx, new(Batch).Put(a, []byte("1")).Put(z, []byte("1")))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Timestamp.IsZero() || res[0].Timestamp != res[1].Timestamp || len(res[0].Bookmark) == 0 {
		t.Fatalf("atomic batch results %+v: want one commit timestamp on both writes, and a bookmark", res)
	}
	const workers, each = 3, 8
	runWorkers(t, workers, func(w int) error {
		for i := 0; i < each; i++ {
			v := []byte(fmt.Sprintf("w%d-%d", w, i))
			if _, err := db.AtomicBatch(ctx, new(Batch).Put(a, v).Put(z, v)); err != nil {
				var e *Error
				if errors.As(err, &e) && e.Code == Retry {
					continue // a conflict it gave up on: nothing applied
				}
				return err
			}
		}
		return nil
	})
	rs, err := db.AtomicBatch(ctx, new(Batch).Get(a).Get(z))
	if err != nil {
		t.Fatal(err)
	}
	if !rs[0].Found || !rs[1].Found || string(rs[0].KV.Value) != string(rs[1].KV.Value) || rs[0].KV.Timestamp != rs[1].KV.Timestamp {
		t.Fatalf("after concurrent atomic batches: %s=%+v, %s=%+v; want one batch's value on both, at one timestamp", a, rs[0].KV, z, rs[1].KV)
	}
	if _, err := db.AtomicBatch(ctx, nil); err == nil {
		t.Fatal("a nil atomic batch was accepted")
	}
	if _, err := db.AtomicBatch(ctx, new(Batch).Put(nil, []byte("x"))); err == nil {
		t.Fatal("an atomic batch writing an empty key was accepted")
	}
}

// runWorkers runs f for workers 0..n-1 at once and fails t with the
// errors they return.
func runWorkers(t *testing.T, n int, f func(w int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			if err := f(w); err != nil {
				errc <- err
			}
		}(w)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}
