package main

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestCLIDemoGlobal runs `demo --global` briefly: 9 nodes, 3 per region,
// every range with one replica per region, and summary lines of a
// workload that did operations (their p50s are logged), from a client
// that starts in eu-west and moves to ap-south.
func TestCLIDemoGlobal(t *testing.T) {
	r := runBin(t, nil, "demo", "--global", "--client-region", "eu-west,ap-south", "--move-every", "5s", "--duration", "9s", "--summary-interval", "3s")
	if r.code != 0 || strings.Contains(r.errOut, "panic") {
		t.Fatalf("demo --global: %s", r)
	}
	if !strings.Contains(r.out, "9 nodes in 3 regions × 3 zones") {
		t.Errorf("no cluster line: %s", r.out)
	}
	nodeLine := regexp.MustCompile(`(?m)^  n(\d+)  (\S+) +region=(\S+),zone=(\S+)  grpc `)
	perRegion := map[string]int{}
	regionOf := map[string]string{}
	for _, m := range nodeLine.FindAllStringSubmatch(r.out, -1) {
		if m[2] != m[3] || !strings.HasPrefix(m[4], m[3]+"-") {
			t.Errorf("node line n%s: region %s, locality region=%s,zone=%s", m[1], m[2], m[3], m[4])
		}
		perRegion[m[2]]++
		regionOf[m[1]] = m[2]
	}
	if len(regionOf) != 9 || perRegion["us-east"] != 3 || perRegion["eu-west"] != 3 || perRegion["ap-south"] != 3 {
		t.Fatalf("nodes per region %v (%d nodes): %s", perRegion, len(regionOf), r.out)
	}
	// The first placement printout: one replica per region in every range.
	_, placement, ok := strings.Cut(r.out, "replicas and leases:\n")
	if !ok {
		t.Fatalf("no placement printout: %s", r.out)
	}
	placement, _, _ = strings.Cut(placement, "\n\n")
	rangeLine := regexp.MustCompile(`(?m)^  r(\d+) .* replicas ((?:n\d+\(\S+\) ?)+)\s+lease`)
	rep := regexp.MustCompile(`n(\d+)\((\S+)\)`)
	ranges := rangeLine.FindAllStringSubmatch(placement, -1)
	if len(ranges) != 7 {
		t.Fatalf("%d range lines, want 7: %s", len(ranges), placement)
	}
	for _, m := range ranges {
		regions := map[string]bool{}
		for _, x := range rep.FindAllStringSubmatch(m[2], -1) {
			if regionOf[x[1]] != x[2] {
				t.Errorf("r%s: n%s shown in %s, its node line says %s", m[1], x[1], x[2], regionOf[x[1]])
			}
			regions[x[2]] = true
		}
		if len(regions) != 3 {
			t.Errorf("r%s has replicas in %d regions: %s", m[1], len(regions), m[0])
		}
	}
	if !strings.Contains(placement, "leases per region: us-east ") {
		t.Errorf("no leases per region: %s", placement)
	}
	if !strings.Contains(r.out, "a client in eu-west") {
		t.Errorf("the workload's client region is not printed: %s", r.out)
	}
	if !strings.Contains(r.out, "the client moves to ap-south") {
		t.Errorf("the client did not move: %s", r.out)
	}
	summary := regexp.MustCompile(`(?m)^ +(\d+s) +(\d+) ops +\S+/s +p50 (\S+) +p99 (\S+) +errors (\d+) +client (\S+) +user-range leases: (.*)$`)
	busy := 0
	for _, m := range summary.FindAllStringSubmatch(r.out, -1) {
		t.Logf("at %s: %s ops, p50 %s, p99 %s, %s errors, client in %s, leases %s", m[1], m[2], m[3], m[4], m[5], m[6], m[7])
		if n, _ := strconv.Atoi(m[2]); n > 0 {
			busy++
		}
	}
	if busy == 0 {
		t.Fatalf("no summary line with operations: %s", r.out)
	}
	if !regexp.MustCompile(`stopping after \d+s: [1-9]\d* ops`).MatchString(r.out) {
		t.Errorf("no final count: %s", r.out)
	}
}

// TestCLIDemoGlobalBadFlags: each bad flag is refused (exit 2) before
// anything is created, naming the flag.
func TestCLIDemoGlobalBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--global", "--client-region", "mars"}, "--client-region"},
		{[]string{"--global", "--latencies", "us-east/eu-west=70ms"}, "--latencies"},
		{[]string{"--global", "--latencies", "us-east/eu-west=fast"}, "--latencies"},
		{[]string{"--global", "--nodes", "3"}, "--nodes 3"},
		{[]string{"--global", "--concurrency", "0"}, "--concurrency"},
		{[]string{"--global", "--read-percent", "101"}, "--read-percent"},
		{[]string{"--global", "--summary-interval", "1ms"}, "--summary-interval"},
		{[]string{"--global", "--client-region", "eu-west,,ap-south"}, "--client-region"},
		{[]string{"--global", "--move-every", "10ms"}, "--move-every"},
		{[]string{"--client-region", "eu-west"}, "--client-region needs --global"},
	} {
		tmp := t.TempDir()
		r := runBin(t, []string{"TMPDIR=" + tmp}, append([]string{"demo"}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.errOut, c.want) || strings.Contains(r.errOut, "panic") {
			t.Errorf("demo %s: want exit 2 naming %q; got %s", strings.Join(c.args, " "), c.want, r)
		}
		if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
			t.Errorf("demo %s left %v behind", strings.Join(c.args, " "), ents)
		}
	}
}

// TestDemoPercentileAndKeys: the summary's percentiles are nearest-rank
// over the interval's latencies; the workload's keys fall in the user
// ranges, ten per range.
func TestDemoPercentileAndKeys(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	if p := pct(lat, 50); p != "51ms" {
		t.Errorf("p50 of 1..100 ms = %s", p)
	}
	if p := pct(lat, 99); p != "100ms" {
		t.Errorf("p99 of 1..100 ms = %s", p)
	}
	if p := pct(nil, 50); p != "-" {
		t.Errorf("p50 of nothing = %s", p)
	}
	plan, err := node.PlanRanges([]*rspb.NodeDescriptor{{NodeId: 1}}, keys.DefaultSplitKeys(4), 1)
	if err != nil {
		t.Fatal(err)
	}
	got := demoKeys(plan)
	if len(got) != 50 {
		t.Fatalf("%d keys for 5 user ranges", len(got))
	}
	for _, k := range got {
		uk := keys.UserKey(k)
		n := 0
		for _, d := range plan {
			if bytes.Compare(uk, d.StartKey) >= 0 && bytes.Compare(uk, d.EndKey) < 0 && bytes.HasPrefix(d.StartKey, keys.UserPrefix) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("key %q is in %d user ranges", k, n)
		}
	}
}
