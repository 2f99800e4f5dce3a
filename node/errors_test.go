package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestAdminKeepsRangeErrorCodes: an Admin call that fails on a replica's
// verdict gets the gRPC code of that verdict (the one table in
// gateway/errors.go) and its message. The leaseholder of a range is cut
// off; once its own liveness record has expired, a lease transfer through
// its Admin API cannot obtain the lease there: UNAVAILABLE (retried
// elsewhere by callers), not FailedPrecondition.
func TestAdminKeepsRangeErrorCodes(t *testing.T) {
	net := fault.NewNetwork()
	tc := startCluster(t, TestClusterOptions{Network: net})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const k = "admin-codes"
	if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	d := rangeOf(tc, k)
	var holder int
	timeutil.WaitFor(t, 10*time.Second, "epoch lease of the range", func() error {
		l := leaseOf(tc, 0, d.RangeId)
		if l.GetSequence() == 0 || l.GetEpoch() == 0 {
			return fmt.Errorf("no epoch lease yet: %v", l)
		}
		holder = indexOfNode(tc, l.NodeId)
		return nil
	})
	net.Isolate(holder, []int{0, 1, 2})
	defer net.Heal()
	target := tc.Node((holder + 1) % 3).NodeID()
	admin := rspb.NewAdminClient(tc.Conn(holder))
	// Not before: a transfer started while the holder still served may
	// leave its proposal in the holder's log, and the holder then refuses
	// to serve until that proposal's fate is known.
	timeutil.WaitFor(t, 30*time.Second, "the holder's own view of its lease: expired", func() error {
		for _, ri := range tc.Node(holder).Ranges() {
			if ri.RangeDescriptor.GetRangeId() == d.RangeId && ri.LeaseState != "expired" {
				return fmt.Errorf("lease %v is %s", ri.Lease, ri.LeaseState)
			}
		}
		return nil
	})
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := admin.TransferLease(c, &rspb.TransferLeaseRequest{RangeId: d.RangeId, TargetNodeId: target})
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), fmt.Sprintf("r%d", d.RangeId)) || !strings.Contains(st.Message(), "liveness record is not live") {
		t.Fatalf("transfer on a node whose liveness expired: %v %q, want Unavailable naming r%d and the reason", st.Code(), st.Message(), d.RangeId)
	}
}
