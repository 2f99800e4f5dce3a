package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/node"
)

// TestCLIClusterSetReplicas: cluster set-replicas refuses bad factors
// (naming the argument, changing nothing), and sets a good one, noting
// that 3 nodes cannot hold 5 replicas; cluster set NAME=VALUE likewise
// (closed_timestamp_target).
func TestCLIClusterSetReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{Nodes: 3, InitialSplits: 1, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	h := tc.Addr(0)
	for _, bad := range []string{"2", "0", "-1", "11", "x"} {
		r := runTC(t, tc, "cluster", "set-replicas", bad, "--host", h)
		if r.code == 0 || !strings.Contains(r.errOut, "set-replicas") || !strings.Contains(r.errOut, bad) {
			t.Errorf("cluster set-replicas %s: %s", bad, r)
		}
	}
	if f, err := tc.Node(1).ReplicationFactor(ctx); err != nil || f != 3 {
		t.Fatalf("factor after the refusals: %d, %v", f, err)
	}
	r := runTC(t, tc, "cluster", "set-replicas", "5", "--host", h)
	if r.code != 0 || !strings.Contains(r.out, "replication factor set to 5 (was 3)") || !strings.Contains(r.out, "only 3 live active nodes") {
		t.Fatalf("cluster set-replicas 5: %s", r)
	}
	if f, err := tc.Node(2).ReplicationFactor(ctx); err != nil || f != 5 {
		t.Fatalf("factor after set-replicas 5: %d, %v", f, err)
	}
	if r := runTC(t, tc, "cluster", "--host", h); r.code == 0 || !strings.Contains(r.errOut, "missing sub-command") {
		t.Errorf("cluster without a sub-command: %s", r)
	}
	// cluster set NAME=VALUE: bad forms and values are refused naming
	// them; a good one is written and applied.
	for _, bad := range []struct{ arg, want string }{
		{"closed_timestamp_target", "NAME=VALUE"},
		{"closed_timestamp_target=10ms", "closed_timestamp_target"},
		{"closed_timestamp_target=x", "closed_timestamp_target"},
		{"nosuch=1", "nosuch"},
	} {
		if r := runTC(t, tc, "cluster", "set", bad.arg, "--host", h); r.code == 0 || !strings.Contains(r.errOut, bad.want) {
			t.Errorf("cluster set %s: %s", bad.arg, r)
		}
	}
	r = runTC(t, tc, "cluster", "set", "closed_timestamp_target=1500ms", "--host", h)
	if r.code != 0 || !strings.Contains(r.out, "closed_timestamp_target set to 1.5s (was unset") {
		t.Fatalf("cluster set closed_timestamp_target=1500ms: %s", r)
	}
	if got := tc.Node(0).Store().ClosedTimestampTarget(); got != 1500*time.Millisecond {
		t.Fatalf("n1's closed timestamp target after the setting: %v", got)
	}
}
