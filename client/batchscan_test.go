package client

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

// routeRecorder records the ranges of the routed Batch calls in flight.
type routeRecorder struct {
	mu                    sync.Mutex
	ranges                []uint64
	inFlight, maxInFlight int
}

func (r *routeRecorder) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	b, ok := req.(*rspb.BatchRequest)
	if !ok || b.GetRoute() == nil {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	r.mu.Lock()
	r.ranges = append(r.ranges, b.Route.RangeId)
	r.inFlight++
	r.maxInFlight = max(r.maxInFlight, r.inFlight)
	r.mu.Unlock()
	// Hold every call a moment, so that parallel calls overlap.
	time.Sleep(20 * time.Millisecond)
	err := invoker(ctx, method, req, reply, cc, opts...)
	r.mu.Lock()
	r.inFlight--
	r.mu.Unlock()
	return err
}

// TestBatchAcrossRanges: a batch over the five ranges is sent as one
// command per range, in parallel, and its results come back in the order
// of its requests, span requests merged across ranges.
func TestBatchAcrossRanges(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{})
	rec := &routeRecorder{}
	db := openDB(t, tc, WithDialOptions(grpc.WithChainUnaryInterceptor(rec.intercept)))
	ctx := ctxT(t)
	b := new(Batch)
	for _, k := range testKeys {
		b.Put([]byte(k), []byte("v-"+k))
	}
	b.Increment([]byte("n-count"), 7)
	res, err := db.Batch(ctx, b)
	if err != nil {
		t.Fatalf("write batch: %v", err)
	}
	if len(res) != len(testKeys)+1 || res[len(testKeys)].Value != 7 || res[0].Timestamp.IsZero() || len(res[0].Bookmark) == 0 {
		t.Fatalf("write batch results: %+v", res)
	}
	if len(rec.ranges) != 5 || rec.maxInFlight < 2 {
		t.Fatalf("write batch over 5 ranges: %d routed calls (ranges %v), at most %d at once; want 5 in parallel", len(rec.ranges), rec.ranges, rec.maxInFlight)
	}

	rec.ranges = nil
	rb := new(Batch).Get([]byte("z")).Scan([]byte("b"), []byte("q")).Get([]byte("a")).Get([]byte("none")).
		Scan(nil, nil, Reverse(), Limit(4)).Scan([]byte("d"), nil, KeysOnly(), Limit(3))
	res, err = db.Batch(ctx, rb)
	if err != nil {
		t.Fatalf("read batch: %v", err)
	}
	rows := func(kvs []KeyValue) string {
		var s []string
		for _, kv := range kvs {
			s = append(s, string(kv.Key)+"="+string(kv.Value))
		}
		return strings.Join(s, " ")
	}
	got := fmt.Sprintf("%s|%s|%s|%v|%s|%s", res[0].KV.Value, rows(res[1].Rows), res[2].KV.Value, res[3].Found, rows(res[4].Rows), rows(res[5].Rows))
	want := "v-z|b=v-b d=v-d e=v-e g=v-g k=v-k n=v-n n-count=7|v-a|false|z=v-z t=v-t q=v-q n-count=7|d= e= g="
	if got != want {
		t.Fatalf("read batch:\n got %s\nwant %s", got, want)
	}
	// Deletes across ranges, atomic per range, in order within one.
	res, err = db.Batch(ctx, new(Batch).DeleteRange([]byte("b"), []byte("t")).Get([]byte("g")).Delete([]byte("z")))
	if err != nil {
		t.Fatalf("delete batch: %v", err)
	}
	// b d e g k n n-count q; the get of g, in the same range command
	// after the delete range, sees it.
	if res[0].Deleted != 8 || res[1].Found || !res[2].Existed {
		t.Fatalf("delete batch: deleted %d, g found %v, z existed %v; want 8, false, true", res[0].Deleted, res[1].Found, res[2].Existed)
	}
	left := 0
	for _, err := range db.Scan(ctx, nil, nil) {
		if err != nil {
			t.Fatal(err)
		}
		left++
	}
	if left != 2 { // a and t
		t.Fatalf("%d keys left, want 2", left)
	}
}

// TestScanAcrossRanges streams a scan over the five ranges forward and
// backward, with limits that end within a range, and stops early.
func TestScanAcrossRanges(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{})
	db := openDB(t, tc)
	ctx := ctxT(t)
	var keys []string
	b := new(Batch)
	for c := 'a'; c <= 'z'; c++ {
		for i := range 40 {
			k := fmt.Sprintf("%c%02d", c, i)
			keys = append(keys, k)
			b.Put([]byte(k), []byte(k))
		}
	}
	if _, err := db.Batch(ctx, b); err != nil {
		t.Fatal(err)
	}
	scan := func(start, end string, opts ...ReadOption) []string {
		t.Helper()
		var out []string
		for kv, err := range db.Scan(ctx, []byte(start), []byte(end), opts...) {
			if err != nil {
				t.Fatalf("scan [%s, %s): %v", start, end, err)
			}
			out = append(out, string(kv.Key))
		}
		return out
	}
	if got := scan("", ""); strings.Join(got, ",") != strings.Join(keys, ",") {
		t.Fatalf("full scan: %d keys, want %d", len(got), len(keys))
	}
	if got := scan("b10", "n05"); len(got) != 12*40-10+5 || got[0] != "b10" || got[len(got)-1] != "n04" {
		t.Fatalf("scan [b10, n05): %d keys from %v", len(got), got[:1])
	}
	rev := scan("", "", Reverse(), Limit(100))
	if len(rev) != 100 || rev[0] != "z39" || rev[99] != "x20" {
		t.Fatalf("reverse scan with limit 100: %d keys %s..%s", len(rev), rev[0], rev[len(rev)-1])
	}
	if got := scan("e30", "", Limit(15)); len(got) != 15 || got[14] != "f04" { // crosses f, a range bound
		t.Fatalf("scan across the bound at f with limit 15: %v", got)
	}
	// Stopping early ends the stream (the leak check would see it).
	n := 0
	for _, err := range db.Scan(ctx, nil, nil) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 3 {
			break
		}
	}
	// A session's scan (Causal, at the nearest replica) sees the
	// session's write, and feeds its bookmark.
	s := db.NewSession()
	w, err := s.Put(ctx, []byte("q99"), []byte("mine"))
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Bookmark()) != string(w.Bookmark) {
		t.Fatalf("session bookmark %x after its put, want the put's %x", s.Bookmark(), w.Bookmark)
	}
	got := 0
	for kv, err := range s.Scan(ctx, []byte("q"), []byte("r")) {
		if err != nil {
			t.Fatal(err)
		}
		if got++; got == 41 && string(kv.Value) != "mine" {
			t.Fatalf("last row %s=%s", kv.Key, kv.Value)
		}
	}
	if got != 41 {
		t.Fatalf("session scan: %d rows, want 41 (its own write included)", got)
	}
}
