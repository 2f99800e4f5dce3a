package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestNodeStatusShowsCerts: node status prints each certificate's kind,
// user, serial and expiry, and says why there are none.
func TestNodeStatusShowsCerts(t *testing.T) {
	var out bytes.Buffer
	saved := stdout
	stdout = &out
	defer func() { stdout = saved }()
	exp := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	ns := &rspb.NodeStatus{Node: &rspb.NodeDescriptor{NodeId: 2, Secure: true}, Certs: []*rspb.CertInfo{
		{Kind: "ca", User: "rangestore CA", Serial: "1a2b", NotAfterUnixNanos: exp.Add(time.Hour).UnixNano()},
		{Kind: "node", User: "node", Serial: "3c4d", NotAfterUnixNanos: exp.UnixNano()},
	}}
	printNodeStatus(ns)
	for _, want := range []string{"cert:        ca rangestore CA serial 1a2b expires 2031-03-04T06:06:07Z",
		"cert:        node node serial 3c4d expires 2031-03-04T05:06:07Z"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("node status lacks %q:\n%s", want, out.String())
		}
	}
	for _, c := range []struct {
		ns   *rspb.NodeStatus
		want string
	}{
		{&rspb.NodeStatus{Node: &rspb.NodeDescriptor{NodeId: 3}}, "certs:       none (insecure node)"},
		{&rspb.NodeStatus{Node: &rspb.NodeDescriptor{NodeId: 3, Secure: true}, StatsError: "n3 at x did not answer"}, "certs:       ? (n3 at x did not answer)"},
	} {
		out.Reset()
		printNodeStatus(c.ns)
		if !strings.Contains(out.String(), c.want) {
			t.Fatalf("node status lacks %q:\n%s", c.want, out.String())
		}
	}
}
