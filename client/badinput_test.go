package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestBadInput: bad input fails with InvalidArgument (errors.Is
// ErrInvalidArgument) naming the field or option, before anything is
// written; what only the cluster knows (its limits) comes back from it,
// naming the limit.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	openCases := []struct {
		name  string
		addrs []string
		opts  []Option
		want  string
	}{
		{"no addresses", nil, nil, "addrs: at least one node address is needed"},
		{"empty address", []string{"127.0.0.1:1", " "}, nil, "addrs[1]: empty address"},
		{"attempts", []string{"x:1"}, []Option{WithRetryPolicy(RetryPolicy{MaxAttempts: -1})}, "MaxAttempts -1"},
		{"backoff", []string{"x:1"}, []Option{WithRetryPolicy(RetryPolicy{MinBackoff: time.Second, MaxBackoff: time.Millisecond})}, "need 0 < MinBackoff <= MaxBackoff"},
		{"keepalive", []string{"x:1"}, []Option{WithKeepalive(time.Second, time.Second)}, "WithKeepalive: time 1s: at least 10s"},
		{"locality", []string{"x:1"}, []Option{WithLocality("region")}, `WithLocality: tier 0 "region": want key=value`},
		{"conns", []string{"x:1"}, []Option{WithConnectionsPerNode(0)}, "WithConnectionsPerNode 0"},
	}
	for _, c := range openCases {
		_, err := Open(ctx, c.addrs, c.opts...)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("open %s: %v, want InvalidArgument with %q", c.name, err, c.want)
		}
	}

	tc := startCluster(t, node.TestClusterOptions{})
	db := openDB(t, tc)
	ctx = ctxT(t)
	check := func(name string, err error, want string) {
		t.Helper()
		var ce *Error
		if !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &ce) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want InvalidArgument with %q", name, err, want)
		}
	}
	_, err := db.Put(ctx, nil, []byte("v"))
	check("put of an empty key", err, "client: put: key: empty key is not allowed")
	_, err = db.Get(ctx, []byte("k"), Limit(3))
	check("get with a limit", err, "Limit: a scan option, not for get")
	_, err = db.Get(ctx, []byte("k"), BoundedStaleness(0))
	check("zero staleness", err, "BoundedStaleness 0s: must be positive")
	_, err = db.Get(ctx, []byte("k"), Causal(), AsOf(Timestamp{WallTime: 1}))
	check("as of with causal", err, "AsOf: only for Strong reads")
	_, err = db.Get(ctx, []byte("k"), WithBookmarks([]byte("bm")), Strong())
	check("bookmarks with strong", err, "WithBookmarks: only for Causal reads")
	_, err = db.DeleteRange(ctx, nil, []byte("z"))
	check("delete range without start", err, "delete_range: start key: empty start key is not allowed")
	_, err = db.DeleteRange(ctx, []byte("z"), []byte("a"))
	check("delete range backwards", err, `start key "z" is after end key "a"`)
	err = db.ConditionalPut(ctx, []byte("k"), []byte("v"), Condition{})
	check("cput without condition", err, "cond: no condition")
	_, err = db.Batch(ctx, &Batch{})
	check("empty batch", err, "batch: no requests")
	_, err = db.Batch(ctx, new(Batch).Get([]byte("a")).Put([]byte(""), []byte("v")))
	check("batch with an empty key", err, "requests[1]: put: key: empty key is not allowed")
	_, err = db.Batch(ctx, new(Batch).Put([]byte("a"), []byte("v")), BoundedStaleness(time.Second))
	check("batch with writes and a read mode", err, "a batch with writes is Strong")
	_, err = db.Batch(ctx, new(Batch).ConditionalPut([]byte("a"), nil, Condition{}))
	check("batch cput without condition", err, "requests[0]: conditional_put")
	for _, err := range db.Scan(ctx, []byte("z"), []byte("a")) {
		check("backwards scan", err, `start key "z" is after end key "a"`)
	}
	for _, err := range db.Scan(ctx, nil, nil, Limit(-1)) {
		check("negative limit", err, "Limit -1: must not be negative")
	}
	//nolint:staticcheck // a nil context on purpose
	_, err = db.Get(nil, []byte("k"))
	check("nil context", err, "ctx: nil context")

	// The cluster's limits, named by the node.
	_, err = db.Put(ctx, []byte(strings.Repeat("k", 5000)), []byte("v"))
	check("oversized key", err, "exceeds max_key_size of 4096 bytes")
	if _, err := db.Put(ctx, []byte("word"), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	_, err = db.Increment(ctx, []byte("word"), 1)
	if ce, ok := errors.AsType[*Error](err); !ok || ce.Code == Ambiguous || ce.Code == Unavailable || !strings.Contains(err.Error(), `its value "hello" is not a decimal integer`) {
		t.Errorf("increment of a non-number: %v, want the node's refusal", err)
	} else {
		t.Logf("increment of a non-number: %v (code %s)", err, ce.Code)
	}

	// The route of a batch addressed to a range, checked by the node.
	kv := tc.KV(0)
	e := db.cache.lookup([]byte("a"))
	put := []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("a"), Value: []byte("v")}}}}
	routeCases := []struct {
		name  string
		route *rspb.DirectRoute
		want  string
	}{
		{"no range", &rspb.DirectRoute{}, "route.range_id: required"},
		{"short id", &rspb.DirectRoute{RangeId: e.rangeID, ProposalId: []byte("x"), ProposalTimestamp: &rspb.Timestamp{WallTime: time.Now().UnixNano()}}, "route.proposal_id: 1 bytes; a write needs 8 to 64"},
		{"no timestamp", &rspb.DirectRoute{RangeId: e.rangeID, ProposalId: make([]byte, 16)}, "route.proposal_timestamp: required for a write"},
		{"future", &rspb.DirectRoute{RangeId: e.rangeID, ProposalId: make([]byte, 16), ProposalTimestamp: &rspb.Timestamp{WallTime: time.Now().Add(time.Hour).UnixNano()}}, "the client's clock runs ahead"},
		{"past", &rspb.DirectRoute{RangeId: e.rangeID, ProposalId: make([]byte, 16), ProposalTimestamp: &rspb.Timestamp{WallTime: time.Now().Add(-time.Hour).UnixNano()}}, "the client's clock runs behind"},
	}
	for _, c := range routeCases {
		_, err := kv.Batch(ctx, &rspb.BatchRequest{Requests: put, Route: c.route})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("route %s: %v, want InvalidArgument with %q", c.name, err, c.want)
		}
	}
	_, err = kv.Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("a")}}}},
		Route: &rspb.DirectRoute{RangeId: e.rangeID}, ReadMode: rspb.ReadMode_CAUSAL})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "route: a batch addressed to a range is STRONG") {
		t.Errorf("route with a read mode: %v", err)
	}
}
