package node

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestGossipStoreDescriptors (issue 12 item 4): every node hears every
// node's store descriptor by gossip (joined through the directory and
// NodeInfo, no gossip address configured), with its locality, capacity
// and counts; `node status` shows it; a node that stops is forgotten by
// the others at once (it leaves), and heard again after its restart.
func TestGossipStoreDescriptors(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})
	ctx := ctxT(t)
	heardAll := func(ids ...int) func() error {
		return func() error {
			var bad []string
			for _, i := range ids {
				stores := tc.Node(i).Stores()
				for _, j := range ids {
					e, ok := stores[tc.Node(j).NodeID()]
					switch {
					case !ok:
						bad = append(bad, fmt.Sprintf("n%d has not heard n%d", tc.Node(i).NodeID(), tc.Node(j).NodeID()))
					case e.Desc.CapacityBytes <= 0 || e.Desc.AvailableBytes <= 0 || e.Desc.UsedBytes <= 0 || e.Desc.ReplicaCount <= 0 || e.Desc.GossipAddress == "":
						bad = append(bad, fmt.Sprintf("n%d's descriptor at n%d lacks figures: %v", tc.Node(j).NodeID(), tc.Node(i).NodeID(), e.Desc))
					}
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("%s", strings.Join(bad, "; "))
			}
			return nil
		}
	}
	start := time.Now()
	timeutil.WaitFor(t, 60*time.Second, "every node hears every store", heardAll(0, 1, 2))
	t.Logf("every node heard every store %v after the cluster started", time.Since(start).Round(time.Millisecond))

	// node status shows the gossiped descriptor.
	ns, err := rspb.NewAdminClient(tc.Conn(0)).NodeStatus(ctx, &rspb.NodeStatusRequest{NodeId: tc.Node(1).NodeID()})
	if err != nil {
		t.Fatal(err)
	}
	if s := ns.Status.Store; s.GetNodeId() != tc.Node(1).NodeID() || s.ReplicaCount == 0 {
		t.Fatalf("node status of n%d shows store %v", tc.Node(1).NodeID(), s)
	}

	// A stop: forgotten by the others well within the TTL (it left).
	gone := tc.Node(2).NodeID()
	start = time.Now()
	tc.StopNode(2)
	timeutil.WaitFor(t, 30*time.Second, fmt.Sprintf("n%d forgotten", gone), func() error {
		for i := 0; i < 2; i++ {
			if _, ok := tc.Node(i).Stores()[gone]; ok {
				return fmt.Errorf("n%d still has n%d's store", tc.Node(i).NodeID(), gone)
			}
		}
		return nil
	})
	t.Logf("a stopped node was forgotten %v after its Stop began", time.Since(start).Round(time.Millisecond))
	if err := tc.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 60*time.Second, "the restarted node is heard again, and hears the others", heardAll(0, 1, 2))
}
