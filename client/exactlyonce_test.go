package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

// replyLoser is a client interceptor that lets the node serve a routed
// Increment and then loses its reply (a broken connection as the client
// sees it), for the chosen attempts; it records every routed Increment's
// proposal identity.
type replyLoser struct {
	lose func(n int64) bool // decides for the n-th routed Increment (1-based)
	n    atomic.Int64
	lost atomic.Int64

	mu  sync.Mutex
	ids [][]byte
}

func (l *replyLoser) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	b, ok := req.(*rspb.BatchRequest)
	if !ok || method != "/rangestore.v1.KV/Batch" || b.GetRoute() == nil || b.GetRequests()[0].GetIncrement() == nil {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	l.mu.Lock()
	l.ids = append(l.ids, append([]byte(nil), b.Route.ProposalId...))
	l.mu.Unlock()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err == nil && l.lose(l.n.Add(1)) {
		l.lost.Add(1)
		return status.Error(codes.Unavailable, "test: the connection broke before the reply arrived")
	}
	return err
}

// TestRetriedIncrementAppliesOnce: an Increment whose reply is lost after
// it applied is retried with the same proposal identity, answered from its
// dedup record: it returns the value it produced, and applies once.
func TestRetriedIncrementAppliesOnce(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{})
	loser := &replyLoser{lose: func(n int64) bool { return n <= 2 }} // the first attempt and its first retry
	db := openDB(t, tc, WithDialOptions(grpc.WithChainUnaryInterceptor(loser.intercept)))
	ctx := ctxT(t)
	v, err := db.Increment(ctx, []byte("once"), 5)
	if err != nil || v != 5 {
		t.Fatalf("increment: %d %v, want 5", v, err)
	}
	if loser.lost.Load() != 2 {
		t.Fatalf("%d replies lost, want 2", loser.lost.Load())
	}
	// Three attempts reached the leaseholder (two lost replies, then the
	// answer from the dedup record); any others were redirected.
	if len(loser.ids) < 3 {
		t.Fatalf("%d attempts, want at least 3", len(loser.ids))
	}
	for _, id := range loser.ids {
		if !bytes.Equal(id, loser.ids[0]) {
			t.Fatalf("attempts carried proposal IDs %x, want one ID throughout", loser.ids)
		}
	}
	kv, err := db.Get(ctx, []byte("once"))
	if err != nil || string(kv.Value) != "5" {
		t.Fatalf("once = %q (%v), want 5: the increment applied more than once", kv.Value, err)
	}
	if st := db.Stats(); st.TransportFailures != 2 {
		t.Fatalf("stats %+v, want 2 transport failures", st)
	}

	// Many writers, a third of the replies lost: every increment counts
	// once.
	loser.lose = func(n int64) bool { return n%3 == 0 }
	const writers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := []byte("c" + strconv.Itoa(i%3)) // three keys, two ranges
				if _, err := db.Increment(ctx, key, 1); err != nil {
					errs <- fmt.Errorf("writer %d increment %d: %w", w, i, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := int64(0)
	for i := range 3 {
		kv, err := db.Get(ctx, []byte("c"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(string(kv.Value), 10, 64)
		total += n
	}
	if total != writers*each {
		t.Fatalf("the counters add up to %d after %d increments (%d replies lost)", total, writers*each, loser.lost.Load())
	}
	t.Logf("%d increments, %d replies lost, counters add up to %d", writers*each, loser.lost.Load(), total)
}

// TestFailover: requests keep succeeding while nodes stop: the client
// skips a node that does not answer (its leases move to the others) and
// opens through any seed that answers. Increments running throughout
// apply exactly once.
func TestFailover(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{})
	db := openDB(t, tc)
	ctx := ctxT(t)
	if _, err := db.Put(ctx, []byte("g"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	e := db.cache.lookup([]byte("g"))
	victim := tc.IndexOfNodeID(e.writer)
	if victim < 0 {
		t.Fatalf("no node index for the leaseholder n%d of r%d", e.writer, e.rangeID)
	}

	var done atomic.Bool
	var wg sync.WaitGroup
	var ok atomic.Int64
	errs := make(chan error, 1000)
	for w := range 4 {
		wg.Go(func() {
			for !done.Load() {
				if _, err := db.Increment(ctx, []byte(fmt.Sprintf("%c-count", "agnt"[w])), 1); err != nil {
					errs <- err
					return
				}
				ok.Add(1)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	tc.StopNode(victim)
	before := ok.Load()
	time.Sleep(time.Second)
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("increment during the failover: %v", err)
	}
	if ok.Load() == before {
		t.Fatalf("no increment succeeded after n%d stopped", e.writer)
	}
	total := int64(0)
	for w := range 4 {
		kv, err := db.Get(ctx, []byte(fmt.Sprintf("%c-count", "agnt"[w])))
		if err != nil {
			t.Fatalf("get after the failover: %v", err)
		}
		n, _ := strconv.ParseInt(string(kv.Value), 10, 64)
		total += n
	}
	if total != ok.Load() {
		t.Fatalf("counters add up to %d after %d successful increments", total, ok.Load())
	}
	if w := db.cache.lookup([]byte("g")).writer; w == e.writer {
		t.Fatalf("the cache still names the stopped n%d as r%d's leaseholder", w, e.rangeID)
	}
	t.Logf("%d increments (%d after n%d stopped), stats %+v", ok.Load(), ok.Load()-before, e.writer, db.Stats())

	// A cache that still names the stopped node: the attempt there fails
	// at once, the next voter serves (or names the leaseholder).
	db.cache.update(e.rangeID, func(c *entry) bool { c.writer = e.writer; return true })
	s0 := db.Stats()
	if kv, err := db.Get(ctx, []byte("g")); err != nil || string(kv.Value) != "v" {
		t.Fatalf("get with the stopped node cached as leaseholder: %q %v", kv.Value, err)
	}
	if s1 := db.Stats(); s1.TransportFailures == s0.TransportFailures {
		t.Fatalf("the stopped node was not tried: stats %+v then %+v", s0, s1)
	}
	if w := db.cache.lookup([]byte("g")).writer; w == e.writer || w == 0 {
		t.Fatalf("cached leaseholder of r%d is n%d after the failover", e.rangeID, w)
	}

	// A client whose first seed is down opens through the next.
	octx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	seeds := append([]string{tc.Addr(victim)}, addrs(tc)...)
	db2, err := Open(octx, seeds)
	if err != nil {
		t.Fatalf("open with a stopped first seed: %v", err)
	}
	defer db2.Close()
	if kv, err := db2.Get(ctx, []byte("g")); err != nil || string(kv.Value) != "v" {
		t.Fatalf("get through the second client: %q %v", kv.Value, err)
	}
}

// hookOnce runs hook at the first routed Increment (deciding whether it
// reaches the node), and lets every later call through.
type hookOnce struct {
	done atomic.Bool
	// hook gets the call; it returns the error the client sees, having
	// sent it (invoke) or not.
	hook func(invoke func() error) error
}

func (h *hookOnce) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	b, ok := req.(*rspb.BatchRequest)
	if !ok || b.GetRoute() == nil || b.GetRequests()[0].GetIncrement() == nil || h.done.Swap(true) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	return h.hook(func() error { return invoker(ctx, method, req, reply, cc, opts...) })
}

// TestRetryAcrossMergeAppliesOnce: an Increment applies on the right-hand
// range, its reply is lost, and the range merges into its left neighbour
// before the retry: the retry, refused by the merged-away range, which
// names the one that subsumed it, goes there with the same identity and is
// answered from the moved dedup record.
func TestRetryAcrossMergeAppliesOnce(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	h := &hookOnce{hook: func(invoke func() error) error {
		if err := invoke(); err != nil {
			return err
		}
		if _, err := admin.MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte("m")}); err != nil {
			t.Errorf("merge: %v", err)
		}
		return status.Error(codes.Unavailable, "test: the reply was lost")
	}}
	db := openDB(t, tc, WithDialOptions(grpc.WithChainUnaryInterceptor(h.intercept)))
	right := db.cache.lookup([]byte("t")) // [s, -), merged into [m, s)
	v, err := db.Increment(ctx, []byte("t"), 1)
	if err != nil || v != 1 {
		t.Fatalf("increment across the merge: %d %v, want 1", v, err)
	}
	e := db.cache.lookup([]byte("t"))
	if e.rangeID == right.rangeID || string(e.start) != "m" {
		t.Fatalf("after the merge the cache has r%d [%q, %q) for t (r%d merged away)", e.rangeID, e.start, e.end, right.rangeID)
	}
	kv, err := db.Get(ctx, []byte("t"))
	if err != nil || string(kv.Value) != "1" {
		t.Fatalf("t = %q (%v), want 1: the increment applied twice", kv.Value, err)
	}
}

// TestAmbiguousWriteNotRetriedElsewhere: an Increment whose attempt got no
// answer (here it never reached the node) may have applied; when its key
// has meanwhile moved to a new range by a split, which cannot hold its
// dedup record, it fails as Ambiguous instead of being retried there.
func TestAmbiguousWriteNotRetriedElsewhere(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	admin := rspb.NewAdminClient(tc.Conn(0))
	h := &hookOnce{hook: func(func() error) error {
		if _, err := admin.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte("p")}); err != nil {
			t.Errorf("split: %v", err)
		}
		return status.Error(codes.Unavailable, "test: the connection broke")
	}}
	db := openDB(t, tc, WithDialOptions(grpc.WithChainUnaryInterceptor(h.intercept)))
	_, err := db.Increment(ctx, []byte("q"), 1)
	if !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), "which does not hold its record") {
		t.Fatalf("increment whose key moved: %v, want Ambiguous", err)
	}
	t.Logf("%v", err)
	// It had not applied; the next one does, once.
	if v, err := db.Increment(ctx, []byte("q"), 1); err != nil || v != 1 {
		t.Fatalf("next increment: %d %v", v, err)
	}
}

// TestDeadlineDuringWriteIsAmbiguous: when the caller's deadline ends a
// write's attempt in flight (here: the node applied it, and the reply is
// held back until the deadline), the write fails as Ambiguous, not with
// a plain deadline error that says nothing of whether it applied.
func TestDeadlineDuringWriteIsAmbiguous(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{})
	var held atomic.Int64
	hold := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		b, ok := req.(*rspb.BatchRequest)
		if !ok || method != "/rangestore.v1.KV/Batch" || b.GetRoute() == nil || b.GetRequests()[0].GetIncrement() == nil {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		err := invoker(context.WithoutCancel(ctx), method, req, reply, cc, opts...)
		if err != nil {
			return err
		}
		held.Add(1)
		<-ctx.Done() // the reply arrives after the caller gave up
		return status.FromContextError(ctx.Err()).Err()
	}
	db := openDB(t, tc, WithDialOptions(grpc.WithChainUnaryInterceptor(hold)))
	ctx := ctxT(t)
	// Warm the cache so the Increment goes straight to the leaseholder.
	if _, err := db.Put(ctx, []byte("late"), []byte("0")); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := db.Increment(dctx, []byte("late"), 1)
	cancel()
	if held.Load() == 0 {
		t.Fatalf("no Increment attempt was served and held (err %v)", err)
	}
	if !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("increment cut by its deadline after it applied: %v, want ErrAmbiguous", err)
	}
	kv, gerr := db.Get(ctx, []byte("late"))
	if gerr != nil || string(kv.Value) != "1" {
		t.Fatalf("late = %q (%v), want 1", kv.Value, gerr)
	}
}
