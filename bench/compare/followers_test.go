package main

import (
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/bench"
)

func TestParseReadCounters(t *testing.T) {
	text := `# HELP rangestore_lease_reads_total Reads served by a leaseholder.
# TYPE rangestore_lease_reads_total counter
rangestore_lease_reads_total 1234
rangestore_lease_reads_total_other 9
# TYPE rangestore_follower_reads_total counter
rangestore_follower_reads_total 5.6789e+06
rangestore_replica_reads_total{result="ok"} 77
`
	rc, err := parseReadCounters(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if rc.lease != 1234 || rc.follower != 5678900 {
		t.Fatalf("got %+v, want lease 1234, follower 5678900", rc)
	}
	if _, err := parseReadCounters(strings.NewReader("rangestore_lease_reads_total 3\n")); err == nil {
		t.Fatal("missing follower counter: want an error")
	}
	if _, err := parseReadCounters(strings.NewReader("rangestore_lease_reads_total x\nrangestore_follower_reads_total 1\n")); err == nil {
		t.Fatal("bad value: want an error")
	}
}

func TestDiffReadsAndSummary(t *testing.T) {
	before := map[string]readCounters{"n1": {lease: 10, follower: 100}, "rr1": {lease: 0, follower: 0}}
	after := map[string]readCounters{"n1": {lease: 60, follower: 100}, "rr1": {lease: 0, follower: 950}}
	s := diffReads(before, after)
	if s.Lease != 50 || s.Follower != 950 {
		t.Fatalf("got lease %v follower %v, want 50 and 950", s.Lease, s.Follower)
	}
	if got := s.String(); strings.Contains(got, "idle for") {
		t.Errorf("%q reports an idle window it was not given", got)
	}
	s.Idle, s.IdleWindow = &readShare{Lease: 7}, 2*time.Second
	got := s.String()
	for _, want := range []string{"leaseholders served 50 of 1,000 reads (5.0 %)", "n1 0/50", "rr1 950/0", "idle for 2s just before: 7 lease reads, 0 follower reads"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}

	res := func(ops, p99 float64) *bench.Result {
		r := &bench.Result{}
		r.Total.OpsPerSec, r.Total.P99Ms = ops, p99
		return r
	}
	all := map[string]systemResults{
		"rangestore": {"reads@64": res(10000, 10), "reads@64-followers": res(20000, 5), "reads@64-read-replicas": res(15000, 6)},
		"etcd":       {"reads@64": res(20000, 8), "reads@64-followers": res(40000, 4)},
	}
	sum := followerSummary(all, map[string]readShare{"reads@64-followers": s})
	for _, want := range []string{
		"- reads@64-followers: 20,000 ops/s, p99 5.0 ms; 0.50× etcd serializable reads (p99 5.0 vs 4.0 ms); 2.00× rangestore lease reads",
		"- reads@64-read-replicas: 15,000 ops/s, p99 6.0 ms; 0.38× etcd serializable reads (p99 6.0 vs 4.0 ms); 1.50× rangestore lease reads",
		"warm-up and measured: leaseholders served 50 of 1,000",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	// The issue 5 p99 line compares strong reads only.
	if g := goals(all); strings.Contains(g, "followers") {
		t.Errorf("goals mention a follower cell:\n%s", g)
	}
	// The table's read-replica row compares with the followers' etcd cell.
	table := renderTable(options{keys: 10, splits: 63}, all)
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, "| reads@64-read-replicas") && !strings.Contains(l, "| 0.38× |") {
			t.Errorf("read-replica row lacks the ratio to etcd serializable reads: %s", l)
		}
	}
}
