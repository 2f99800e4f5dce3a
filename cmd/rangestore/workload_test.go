package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/node"
)

// TestCLIWorkloadAgainstCluster: `workload run kv` against a secure
// in-process cluster, given one node's address (the client finds the
// other nodes and sends each request to its leaseholder): it preloads the
// key space, runs reads, writes and scans without an error, and prints the
// summary; the preloaded keys are there afterwards.
func TestCLIWorkloadAgainstCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{Nodes: 3, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	const keys = 300
	r := runTC(t, tc, "workload", "run", "kv", "--hosts", tc.Addr(1), "--keys", strconv.Itoa(keys), "--duration", "2s", "--warmup", "0s",
		"--concurrency", "4", "--read-percent", "45", "--scan-percent", "10", "--scan-length", "5", "--quiet")
	if r.code != 0 {
		t.Fatalf("workload: %s", r)
	}
	if !strings.Contains(r.errOut, "preloaded 300 keys") || !strings.Contains(r.out, "kv45 on rangestore: concurrency 4") || strings.Contains(r.out, "first error") {
		t.Fatalf("workload output: %s", r)
	}
	ops := map[string]int{}
	for _, line := range strings.Split(r.out, "\n") {
		f := strings.Fields(line)
		if len(f) != 10 || f[0] == "op" {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("summary row %q: %v", line, err)
		}
		if f[3] != "0" {
			t.Errorf("summary row %q: %s errors", line, f[3])
		}
		ops[f[0]] = n
	}
	t.Logf("workload summary:\n%s", r.out)
	for _, op := range []string{"read", "write", "scan"} {
		if ops[op] == 0 {
			t.Errorf("no %s operation in the summary (%v):\n%s", op, ops, r.out)
		}
	}
	s := runTC(t, tc, "kv", "scan", "--host", tc.Addr(2), "--keys-only")
	if s.code != 0 || !strings.Contains(s.errOut, "(300 keys)") {
		t.Fatalf("kv scan after the workload: %s", s)
	}
}
