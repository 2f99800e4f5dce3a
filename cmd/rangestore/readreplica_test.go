package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestNodeListShowsReadReplicasApart: `node list` lists read replicas in
// a section of their own (with their applied-index and closed-timestamp
// lags and whiteboard entry), not among the voters; `node status` shows
// the role and both lags.
func TestNodeListShowsReadReplicasApart(t *testing.T) {
	var out bytes.Buffer
	saved := stdout
	stdout = &out
	defer func() { stdout = saved }()
	nodes := []*rspb.NodeStatus{
		{Node: &rspb.NodeDescriptor{NodeId: 1, Address: "127.0.0.1:1", RaftAddress: "127.0.0.1:2"}, ReplicaCount: 5, LeaseCount: 2},
		{Node: &rspb.NodeDescriptor{NodeId: 4, Address: "127.0.0.1:7", RaftAddress: "127.0.0.1:8", ReadReplica: true}, ReplicaCount: 5,
			Store: &rspb.StoreDescriptor{ReadReplica: true, MaxAppliedIndexLag: 12, LaggingRangeId: 3,
				MaxClosedTimestampLagNanos: int64(3250 * time.Millisecond), ClosedLaggingRangeId: 5}, StoreHeardMillisAgo: 1500},
	}
	if err := printNodes(nodes); err != nil {
		t.Fatal(err)
	}
	voters, rrs, ok := strings.Cut(out.String(), "read replicas")
	if !ok || strings.Contains(voters, "n4 ") || !strings.Contains(voters, "n1 ") {
		t.Fatalf("voters section:\n%s", out.String())
	}
	for _, want := range []string{"n4", "127.0.0.1:7", "12 entries (r3)", "3.25s (r5)", "heard 1.5s ago"} {
		if !strings.Contains(rrs, want) {
			t.Fatalf("read replicas section lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	printNodeStatus(nodes[1])
	for _, want := range []string{"role:        read replica", "lag:         12 entries (r3)", "closed lag:  3.25s (r5)"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("node status lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	printNodeStatus(nodes[0])
	if !strings.Contains(out.String(), "role:        voter") {
		t.Fatalf("node status of a voter node:\n%s", out.String())
	}
	t.Logf("node list:\n%s", func() string { out.Reset(); _ = printNodes(nodes); return out.String() }())
}
