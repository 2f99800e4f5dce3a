package main

import (
	"context"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/bench"
)

// TestParseInternalBatches: the node-to-node batches are the sum of the
// Internal/RangeBatch series of rangestore_grpc_requests_total over every
// status code; other methods and metrics are not counted, and a process
// that received none yet (no series) has 0.
func TestParseInternalBatches(t *testing.T) {
	text := `rangestore_lease_reads_total 1
rangestore_follower_reads_total 2
rangestore_grpc_requests_total{code="OK",method="/rangestore.v1.Internal/RangeBatch"} 40
rangestore_grpc_requests_total{code="Unavailable",method="/rangestore.v1.Internal/RangeBatch"} 2
rangestore_grpc_requests_total{code="OK",method="/rangestore.v1.KV/Batch"} 1000
rangestore_grpc_request_seconds_count{method="/rangestore.v1.Internal/RangeBatch"} 42
`
	rc, err := parseReadCounters(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if rc.internal != 42 || rc.lease != 1 || rc.follower != 2 {
		t.Fatalf("got %+v, want internal 42, lease 1, follower 2", rc)
	}
	rc, err = parseReadCounters(strings.NewReader("rangestore_lease_reads_total 1\nrangestore_follower_reads_total 2\n"))
	if err != nil || rc.internal != 0 {
		t.Fatalf("no RangeBatch series: %+v, %v; want internal 0", rc, err)
	}
	if _, err := parseReadCounters(strings.NewReader(text + `rangestore_grpc_requests_total{code="OK",method="/rangestore.v1.Internal/RangeBatch"} x` + "\n")); err == nil {
		t.Fatal("bad RangeBatch value: want an error")
	}
	s := diffReads(map[string]readCounters{"n1": {internal: 10}, "n2": {internal: 5}},
		map[string]readCounters{"n1": {internal: 110}, "n2": {internal: 55}})
	if s.Internal != 150 {
		t.Fatalf("diff internal %v, want 150", s.Internal)
	}
}

// TestRoutingSummary: forwarded per op is the batches above the idle
// level per operation (never negative); the table lists every rangestore
// cell of every system, and the before/after table appears only when
// rangestore (client/) and rangestore-raw-grpc both ran without
// --raw-grpc.
func TestRoutingSummary(t *testing.T) {
	raw := hopStats{Ops: 3000, Batches: 2100, Background: 100}
	if got := raw.ForwardedPerOp(); got < 0.666 || got > 0.667 {
		t.Fatalf("raw forwarded per op %v, want 2000/3000", got)
	}
	cl := hopStats{Ops: 3000, Batches: 90, Background: 100, Client: true, Attempts: 3003, Redirects: 2}
	if got := cl.ForwardedPerOp(); got != 0 {
		t.Fatalf("client forwarded per op %v, want 0 (below the idle level)", got)
	}
	if got := (hopStats{}).ForwardedPerOp(); got != 0 {
		t.Fatalf("no ops: %v, want 0", got)
	}
	res := func(ops, p50, p99 float64) *bench.Result {
		r := &bench.Result{}
		r.Total.OpsPerSec, r.Total.P50Ms, r.Total.P99Ms = ops, p50, p99
		return r
	}
	all := map[string]systemResults{
		"rangestore":          {"writes@64": res(4000, 10, 30)},
		"rangestore-raw-grpc": {"writes@64": res(2000, 20, 90)},
	}
	hops := map[string]hopStats{hopKey("rangestore", "writes@64"): cl, hopKey("rangestore-raw-grpc", "writes@64"): raw}
	o := options{systems: []string{"rangestore", "rangestore-raw-grpc"}}
	got := routingSummary(o, all, hops)
	for _, want := range []string{
		"| rangestore | client/ | writes@64 | 3,000 | 90 | 100 | 0.000 | 1.001 | 2 |",
		"| rangestore-raw-grpc | raw gRPC | writes@64 | 3,000 | 2,100 | 100 | 0.667 | – | – |",
		"| writes@64 | 4,000 | 10.0 | 30.0 | 2,000 | 20.0 | 90.0 | 2.00× |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	o.rawGRPC = true
	if got := routingSummary(o, all, hops); strings.Contains(got, "client/ vs raw gRPC") {
		t.Errorf("with --raw-grpc both systems are raw: no before/after table:\n%s", got)
	}
	if got := routingSummary(options{systems: []string{"etcd"}}, map[string]systemResults{"etcd": {"writes@64": res(1000, 1, 2)}}, nil); got != "" {
		t.Errorf("no rangestore cell: %q, want none", got)
	}
}

// TestCountingDriver counts every call, failed or not.
func TestCountingDriver(t *testing.T) {
	d := &countingDriver{Driver: failingDriver{}}
	ctx := context.Background()
	_, _ = d.Get(ctx, []byte("a"))
	_ = d.Put(ctx, []byte("a"), []byte("v"))
	_, _ = d.Scan(ctx, []byte("a"), 10)
	if n := d.ops.Load(); n != 3 {
		t.Fatalf("%d ops counted, want 3", n)
	}
	if _, ok := clientStats(d.Driver); ok {
		t.Fatal("clientStats of a non-rangestore driver: ok, want false")
	}
}

type failingDriver struct{}

func (failingDriver) Get(context.Context, []byte) (bool, error)      { return false, context.Canceled }
func (failingDriver) Put(context.Context, []byte, []byte) error      { return context.Canceled }
func (failingDriver) Scan(context.Context, []byte, int) (int, error) { return 0, context.Canceled }
func (failingDriver) Close() error                                   { return nil }
