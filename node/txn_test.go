package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/internal/metricstest"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

func txnPut(k, v string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
}

func txnGet(k string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte(k)}}}
}

// errReason is the ErrorInfo reason of a status error ("" if none).
func errReason(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

// TestTxnAcrossRanges: a transaction writes two ranges and commits them
// together; others wait on its intents meanwhile and see both writes at
// its commit timestamp after; a rolled-back transaction leaves nothing; an
// atomic batch is one transaction; misused handles get clear errors.
func TestTxnAcrossRanges(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{SplitKeys: [][]byte{[]byte("m")}})
	ctx := ctxT(t)
	kv1, kv2 := tc.KV(0), tc.KV(1)

	b, err := kv1.BeginTxn(ctx, &rspb.BeginTxnRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv1.Batch(ctx, &rspb.BatchRequest{Txn: b.Txn, Requests: []*rspb.RequestUnion{txnPut("a", "a1"), txnPut("z", "z1")}}); err != nil {
		t.Fatalf("txn writes: %v", err)
	}
	// Another client waits on the intent; with a short deadline it gives up
	// with a retryable error naming the conflict.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = kv2.Get(short, &rspb.GetRequest{Key: []byte("z")})
	cancel()
	if status.Code(err) != codes.Aborted && status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("read of a key with an intent: %v, want ABORTED (WRITE_INTENT) or a deadline", err)
	}
	// The transaction reads its own writes.
	r, err := kv1.Batch(ctx, &rspb.BatchRequest{Txn: b.Txn, Requests: []*rspb.RequestUnion{txnGet("a"), txnGet("z")}})
	if err != nil || string(r.Responses[0].GetGet().GetKv().GetValue()) != "a1" || string(r.Responses[1].GetGet().GetKv().GetValue()) != "z1" {
		t.Fatalf("txn reads its writes: %v %v", r, err)
	}
	c, err := kv1.CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: b.Txn})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	// Its bookmark makes a causal read on any replica see both writes.
	for _, k := range []string{"a", "z"} {
		g, err := tc.KV(1).Get(ctx, &rspb.GetRequest{Key: []byte(k), ReadMode: rspb.ReadMode_CAUSAL, Bookmarks: [][]byte{c.Bookmark}})
		if err != nil || string(g.GetKv().GetValue()) != k+"1" {
			t.Fatalf("causal read of %s with the commit's bookmark: %v, %v", k, g, err)
		}
	}
	for i, k := range []string{"a", "z"} {
		g, err := tc.KV(2).Get(ctx, &rspb.GetRequest{Key: []byte(k)})
		if err != nil || string(g.GetKv().GetValue()) != k+"1" || g.Kv.Timestamp.WallTime != c.CommitTimestamp.WallTime || g.Kv.Timestamp.Logical != c.CommitTimestamp.Logical {
			t.Fatalf("read %d of %s after the commit: %v %v; want %s1 at %v", i, k, g, err, k, c.CommitTimestamp)
		}
	}
	// The same handle again: the transaction is finished.
	if _, err := kv1.CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: b.Txn}); status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "no such open transaction") {
		t.Fatalf("commit after commit: %v", err)
	}

	// Rolled back: nothing stays, and its intents are gone.
	b2, err := kv1.BeginTxn(ctx, &rspb.BeginTxnRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv1.Batch(ctx, &rspb.BatchRequest{Txn: b2.Txn, Requests: []*rspb.RequestUnion{txnPut("a", "a2"), txnPut("z", "z2")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv1.RollbackTxn(ctx, &rspb.RollbackTxnRequest{Txn: b2.Txn}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "z"} {
		g, err := kv2.Get(ctx, &rspb.GetRequest{Key: []byte(k)})
		if err != nil || string(g.GetKv().GetValue()) != k+"1" {
			t.Fatalf("after the rollback %s = %v, %v; want %s1", k, g, err, k)
		}
	}
	if _, err := kv1.CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: b2.Txn}); status.Code(err) != codes.Aborted || errReason(err) != "TXN_ABORTED" {
		t.Fatalf("commit after rollback: %v (reason %q), want ABORTED/TXN_ABORTED", err, errReason(err))
	}

	// Handles: another node's, a malformed one.
	b3, err := kv1.BeginTxn(ctx, &rspb.BeginTxnRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv2.Batch(ctx, &rspb.BatchRequest{Txn: b3.Txn, Requests: []*rspb.RequestUnion{txnGet("a")}}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "send its requests to n") {
		t.Fatalf("handle of n1 at n2: %v", err)
	}
	if _, err := kv1.Batch(ctx, &rspb.BatchRequest{Txn: []byte("short"), Requests: []*rspb.RequestUnion{txnGet("a")}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed handle: %v", err)
	}
	if _, err := kv1.Batch(ctx, &rspb.BatchRequest{Txn: b3.Txn, Atomic: true, Requests: []*rspb.RequestUnion{txnGet("a")}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("txn and atomic: %v", err)
	}
	if _, err := kv1.RollbackTxn(ctx, &rspb.RollbackTxnRequest{Txn: b3.Txn}); err != nil {
		t.Fatal(err)
	}

	// An atomic batch across both ranges: one commit timestamp.
	ab, err := kv2.Batch(ctx, &rspb.BatchRequest{Atomic: true, Requests: []*rspb.RequestUnion{txnPut("a", "a3"), txnPut("z", "z3")}})
	if err != nil {
		t.Fatalf("atomic batch: %v", err)
	}
	t1, t2 := ab.Responses[0].GetPut().GetCommitTimestamp(), ab.Responses[1].GetPut().GetCommitTimestamp()
	if t1 == nil || t1.WallTime != t2.WallTime || t1.Logical != t2.Logical {
		t.Fatalf("atomic batch commit timestamps %v and %v differ", t1, t2)
	}
	for _, k := range []string{"a", "z"} {
		if g, err := kv1.Get(ctx, &rspb.GetRequest{Key: []byte(k)}); err != nil || string(g.GetKv().GetValue()) != k+"3" {
			t.Fatalf("after the atomic batch %s = %v, %v", k, g, err)
		}
	}
	// An atomic batch within one range is one command: no transaction
	// (one-phase commit).
	commits := func() float64 { return metricstest.Sum(t, tc.Node(1).Registry(), "rangestore_txn_commits_total", nil) }
	before := commits()
	ab, err = kv2.Batch(ctx, &rspb.BatchRequest{Atomic: true, Requests: []*rspb.RequestUnion{txnPut("b", "b1"), txnPut("c", "c1")}})
	if err != nil {
		t.Fatalf("one-range atomic batch: %v", err)
	}
	if t1, t2 := ab.Responses[0].GetPut().GetCommitTimestamp(), ab.Responses[1].GetPut().GetCommitTimestamp(); t1 == nil || t1.WallTime != t2.WallTime || t1.Logical != t2.Logical {
		t.Fatalf("one-range atomic batch commit timestamps %v and %v differ", t1, t2)
	}
	if after := commits(); after != before {
		t.Fatalf("a one-range atomic batch ran as a transaction (commits %v -> %v)", before, after)
	}
}

// TestTxnBankTransfers: concurrent transfers between accounts in three
// ranges, each a transaction reading two balances and writing both, with
// snapshot reads of every account (read-only transactions) checking that
// the total never changes and no balance goes negative.
func TestTxnBankTransfers(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{SplitKeys: [][]byte{[]byte("acct-03"), []byte("acct-06")}})
	ctx := ctxT(t)
	const accounts, initial = 10, 100
	acct := func(i int) string { return fmt.Sprintf("acct-%02d", i) }
	for i := 0; i < accounts; i++ {
		if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(acct(i)), Value: []byte(strconv.Itoa(initial))}); err != nil {
			t.Fatal(err)
		}
	}
	var committed, retried atomic.Int64
	// runTxn runs fn in a transaction at node i until it commits.
	runTxn := func(i int, fn func(h []byte) error) error {
		kv := tc.KV(i)
		for attempt := 0; attempt < 100; attempt++ {
			b, err := kv.BeginTxn(ctx, &rspb.BeginTxnRequest{})
			if err != nil {
				return err
			}
			err = fn(b.Txn)
			if err == nil {
				_, err = kv.CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: b.Txn})
			}
			if err == nil {
				return nil
			}
			_, _ = kv.RollbackTxn(ctx, &rspb.RollbackTxnRequest{Txn: b.Txn})
			if status.Code(err) != codes.Aborted {
				return err
			}
			retried.Add(1)
			time.Sleep(time.Duration(rand.Intn(20)) * time.Millisecond)
		}
		return errors.New("100 attempts")
	}
	balances := func(i int, h []byte, keys ...string) ([]int, error) {
		reqs := make([]*rspb.RequestUnion, len(keys))
		for j, k := range keys {
			reqs[j] = txnGet(k)
		}
		r, err := tc.KV(i).Batch(ctx, &rspb.BatchRequest{Txn: h, Requests: reqs})
		if err != nil {
			return nil, err
		}
		out := make([]int, len(keys))
		for j, x := range r.Responses {
			if out[j], err = strconv.Atoi(string(x.GetGet().GetKv().GetValue())); err != nil {
				return nil, fmt.Errorf("%s: %w", keys[j], err)
			}
		}
		return out, nil
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for n := 0; n < 15; n++ {
				from, to := rng.Intn(accounts), rng.Intn(accounts-1)
				if to >= from {
					to++
				}
				amount := 1 + rng.Intn(30)
				err := runTxn(w%3, func(h []byte) error {
					bal, err := balances(w%3, h, acct(from), acct(to))
					if err != nil {
						return err
					}
					if bal[0] < amount {
						return nil // not enough: a read-only transaction
					}
					_, err = tc.KV(w%3).Batch(ctx, &rspb.BatchRequest{Txn: h, Requests: []*rspb.RequestUnion{
						txnPut(acct(from), strconv.Itoa(bal[0]-amount)), txnPut(acct(to), strconv.Itoa(bal[1]+amount))}})
					return err
				})
				if err != nil {
					errc <- fmt.Errorf("transfer %d of worker %d: %w", n, w, err)
					return
				}
				committed.Add(1)
			}
		}(w)
	}
	var checks atomic.Int64
	checkDone := make(chan struct{})
	go func() {
		defer close(checkDone)
		all := make([]string, accounts)
		for i := range all {
			all[i] = acct(i)
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			err := runTxn(2, func(h []byte) error {
				bal, err := balances(2, h, all...)
				if err != nil {
					return err
				}
				sum := 0
				for i, b := range bal {
					if b < 0 {
						return fmt.Errorf("INVARIANT: %s is negative (%d)", all[i], b)
					}
					sum += b
				}
				if sum != accounts*initial {
					return fmt.Errorf("INVARIANT: balances sum to %d, want %d: %v", sum, accounts*initial, bal)
				}
				return nil
			})
			if err != nil {
				errc <- fmt.Errorf("snapshot read: %w", err)
				return
			}
			checks.Add(1)
		}
	}()
	wg.Wait()
	close(stop)
	<-checkDone
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	t.Logf("transfers committed %d, retries %d, snapshot checks %d", committed.Load(), retried.Load(), checks.Load())
	if checks.Load() == 0 {
		t.Error("no snapshot check ran")
	}
	// Every record goes once the transactions are resolved: none stays on
	// any node's engine.
	timeutil.WaitFor(t, 30*time.Second, "no transaction record left", func() error {
		for i := 0; i < tc.NumNodes(); i++ {
			if n := txnRecords(t, tc.Node(i).Engine()); n > 0 {
				return fmt.Errorf("n%d holds %d transaction records", tc.Node(i).NodeID(), n)
			}
		}
		return nil
	})
}

// txnRecords counts the transaction records in eng.
func txnRecords(t *testing.T, eng *kv.Engine) int {
	t.Helper()
	lower, upper, err := kv.AddressedSpanBounds(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	it, err := eng.NewIter(lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if _, suffix, err := kv.DecodeAddressedKey(it.Key()); err == nil && bytes.HasPrefix(suffix, []byte("txn-record/")) {
			n++
		}
	}
	return n
}

// TestTxnDeadlock: two transactions each wait on the other's intent; the
// waits-for cycle is found through their records and broken by aborting
// one (the one with the lower ID), and the other commits. A transaction
// that merely waits for a slow one (no cycle) is never aborted for it.
func TestTxnDeadlock(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{SplitKeys: [][]byte{[]byte("m")}})
	ctx := ctxT(t)
	kv := tc.KV(0)
	begin := func() []byte {
		b, err := kv.BeginTxn(ctx, &rspb.BeginTxnRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return b.Txn
	}
	put := func(h []byte, k string) error {
		_, err := kv.Batch(ctx, &rspb.BatchRequest{Txn: h, Requests: []*rspb.RequestUnion{txnPut(k, string(h[8:10]))}})
		return err
	}
	t1, t2 := begin(), begin()
	if err := put(t1, "a"); err != nil {
		t.Fatal(err)
	}
	if err := put(t2, "z"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	errs := make(chan error, 2)
	go func() { errs <- put(t1, "z") }()
	go func() { errs <- put(t2, "a") }()
	e1, e2 := <-errs, <-errs
	took := time.Since(start)
	if (e1 == nil) == (e2 == nil) {
		t.Fatalf("deadlock: errors %v and %v; want exactly one transaction aborted", e1, e2)
	}
	failed := e1
	if failed == nil {
		failed = e2
	}
	if status.Code(failed) != codes.Aborted {
		t.Fatalf("the deadlock victim failed with %v, want ABORTED", failed)
	}
	committed := 0
	for _, h := range [][]byte{t1, t2} {
		if _, err := kv.CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: h}); err == nil {
			committed++
		}
	}
	if committed != 1 {
		t.Fatalf("%d transactions committed after the deadlock, want 1", committed)
	}
	t.Logf("deadlock broken after %v", took.Round(time.Millisecond))

	// No cycle: t4 waits about 3 s on t3, which then commits; both commit.
	t3, t4 := begin(), begin()
	if err := put(t3, "b"); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- put(t4, "b") }()
	// The waiter outlasts the deadlock delay and a few heartbeats.
	timeutil.WaitFor(t, 20*time.Second, "the waiter to have waited 3 s", func() error {
		for _, ti := range tc.Node(0).Transactions() {
			if ti.WaitingFor >= 3*time.Second {
				return nil
			}
		}
		return fmt.Errorf("no transaction has waited 3 s: %+v", tc.Node(0).Transactions())
	})
	if _, err := kv.CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: t3}); err != nil {
		t.Fatalf("the slow transaction was aborted while another merely waited on it: %v", err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("the waiter: %v", err)
	}
	if _, err := kv.CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: t4}); err != nil {
		t.Fatalf("the waiter's commit: %v", err)
	}
}

// TestTxnFollowerReadMeetsIntent: a bounded-staleness read whose closed
// timestamp is above an unresolved intent is not served by the follower
// (which never resolves intents): it goes to the leaseholder, which waits
// on the transaction, and returns the committed value once it commits.
func TestTxnFollowerReadMeetsIntent(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{SplitKeys: [][]byte{[]byte("m")}, ClosedTimestampTarget: 200 * time.Millisecond,
		ClosedTimestampInterval: 50 * time.Millisecond})
	ctx := ctxT(t)
	if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte("fr"), Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	b, err := tc.KV(0).BeginTxn(ctx, &rspb.BeginTxnRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.KV(0).Batch(ctx, &rspb.BatchRequest{Txn: b.Txn, Requests: []*rspb.RequestUnion{txnPut("fr", "new")}}); err != nil {
		t.Fatal(err)
	}
	// Every replica's closed timestamp passes the intent (target 200 ms):
	// a follower read there answers that it meets an unresolved intent
	// (and redirects), rather than serving it.
	after := tc.Node(0).cfg.Clock.Now()
	d, _ := rangeOfKey(t, tc, 0, "fr")
	timeutil.WaitFor(t, 10*time.Second, "every replica to redirect a read at the intent", func() error {
		for i := 0; i < 3; i++ {
			resp := tc.Node(i).Store().Send(ctx, followerGet(d.RangeId, "fr", after))
			if resp.Error == nil || resp.Error.Code != rspb.RangeError_NOT_CLOSED || !strings.Contains(resp.Error.Message, "unresolved intent") {
				return fmt.Errorf("n%d: follower read at %s: %v %v", tc.Node(i).NodeID(), after, resp.Error, resp.Responses)
			}
		}
		return nil
	})
	type result struct {
		g   *rspb.GetResponse
		err error
	}
	done := make(chan result, 3)
	for i := 0; i < 3; i++ {
		go func(i int) {
			g, err := tc.KV(i).Get(ctx, &rspb.GetRequest{Key: []byte("fr"), ReadMode: rspb.ReadMode_BOUNDED_STALENESS, MaxStaleness: durationpb.New(10 * time.Second)})
			done <- result{g, err}
		}(i)
	}
	select {
	case r := <-done:
		t.Fatalf("a bounded-staleness read returned %v, %v while the transaction was open (its closed timestamp is above the intent: it must wait at the leaseholder)", r.g, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	c, err := tc.KV(0).CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: b.Txn})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		r := <-done
		if r.err != nil || string(r.g.GetKv().GetValue()) != "new" || r.g.Kv.Timestamp.WallTime != c.CommitTimestamp.WallTime {
			t.Fatalf("bounded-staleness read after the commit: %v, %v; want new at %v", r.g, r.err, c.CommitTimestamp)
		}
	}
}

// TestTxnLimits: a transaction writing more than max_txn_intents spans is
// refused naming the limit; one that outlives its timeout, or whose client
// goes quiet, is aborted by its coordinator.
func TestTxnLimits(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Txn: gateway.TxnConfig{MaxIntents: 3, IdleTimeout: 1500 * time.Millisecond}})
	ctx := ctxT(t)
	kv := tc.KV(0)
	b, err := kv.BeginTxn(ctx, &rspb.BeginTxnRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Batch(ctx, &rspb.BatchRequest{Txn: b.Txn, Requests: []*rspb.RequestUnion{txnPut("l1", "x"), txnPut("l2", "x"), txnPut("l3", "x")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Batch(ctx, &rspb.BatchRequest{Txn: b.Txn, Requests: []*rspb.RequestUnion{txnPut("l4", "x")}}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "max_txn_intents of 3") {
		t.Fatalf("a 4th write span: %v, want InvalidArgument naming max_txn_intents", err)
	}
	if _, err := kv.RollbackTxn(ctx, &rspb.RollbackTxnRequest{Txn: b.Txn}); err != nil {
		t.Fatal(err)
	}

	// A timeout of 1 s: kept busy, it is still aborted once past it.
	b, err = kv.BeginTxn(ctx, &rspb.BeginTxnRequest{Timeout: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 10*time.Second, "the transaction aborted past its timeout", func() error {
		_, err := kv.Batch(ctx, &rspb.BatchRequest{Txn: b.Txn, Requests: []*rspb.RequestUnion{txnGet("l1")}})
		if status.Code(err) == codes.Aborted && errReason(err) == "TXN_ABORTED" {
			return nil
		}
		return fmt.Errorf("read in the transaction: %w", err)
	})

	// A client that goes quiet: aborted after the idle timeout (1.5 s), its
	// intents gone.
	b, err = kv.BeginTxn(ctx, &rspb.BeginTxnRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Batch(ctx, &rspb.BatchRequest{Txn: b.Txn, Requests: []*rspb.RequestUnion{txnPut("idle", "x")}}); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 10*time.Second, "the idle transaction gone from its coordinator", func() error {
		if n := len(tc.Node(0).Transactions()); n > 0 {
			return fmt.Errorf("%d open", n)
		}
		return nil
	})
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second) // its record is ABORTED: no wait
	defer cancel()
	if g, err := tc.KV(1).Get(rctx, &rspb.GetRequest{Key: []byte("idle")}); err != nil || g.Found {
		t.Fatalf("the idle transaction's write: %v, %v; want none", g, err)
	}
	if _, err := kv.CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: b.Txn}); status.Code(err) != codes.Aborted {
		t.Fatalf("commit after the idle abort: %v", err)
	}
}
