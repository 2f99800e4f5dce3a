package main

import (
	"strings"
	"testing"
	"time"
)

// TestProcessClusterJoin: three processes + init, then a fourth process
// with an empty store and `start --join` naming one running node joins as
// n4; `node list` shows four live nodes, `node status n4` its details; an
// unknown node is refused clearly.
func TestProcessClusterJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pc := newProcCluster(t, 3)
	pc.initCluster()
	i4, err := pc.AddProc([]int{1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- joining process log (tail)\n%s", pc.Log(i4, 3000))
		}
	})
	var out string
	deadline := time.Now().Add(60 * time.Second)
	for {
		var err error
		out, err = pc.cli("node", "list", "--host", pc.addrs[0])
		if err == nil && strings.Count(out, " live ") == 4 && strings.Contains(out, pc.Addrs[i4]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node list never showed 4 live nodes: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("node list:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[4], "n4 ") || !strings.Contains(lines[4], pc.Addrs[i4]) {
		t.Fatalf("node list: want a header and n1..n4 with n4 at %s:\n%s", pc.Addrs[i4], out)
	}
	st := pc.cliRetry(30*time.Second, "node", "status", "n4", "--host", pc.Addrs[i4])
	for _, want := range []string{"node:        n4", "liveness:    live", "membership:  active", "replicas:    0"} {
		if !strings.Contains(st, want) {
			t.Fatalf("node status n4 lacks %q:\n%s", want, st)
		}
	}
	if _, err := pc.cli("node", "status", "n9", "--host", pc.addrs[2]); err == nil || !strings.Contains(err.Error(), "n9 not found: the directory lists n1, n2, n3, n4") {
		t.Fatalf("node status n9: %v", err)
	}
}
