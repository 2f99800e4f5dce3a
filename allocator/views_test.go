package allocator

import (
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestNodeView: the allocator's node view from a descriptor and a liveness
// record: membership before the draining flag, liveness by the expiration.
func TestNodeView(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	rec := func(expiresIn time.Duration, draining bool, m rspb.LivenessMembership) *rspb.Liveness {
		return &rspb.Liveness{NodeId: 4, Epoch: 1, Draining: draining, Membership: m,
			Expiration: &rspb.Timestamp{WallTime: now.Add(expiresIn).UnixNano()}}
	}
	d := &rspb.NodeDescriptor{NodeId: 4, Locality: []*rspb.LocalityTier{{Key: "zone", Value: "a"}}}
	for _, c := range []struct {
		name string
		rec  *rspb.Liveness
		live Liveness
		m    Membership
	}{
		{"no record", nil, Suspect, Active},
		{"live active", rec(time.Second, false, rspb.LivenessMembership_LIVENESS_ACTIVE), Live, Active},
		{"live draining", rec(time.Second, true, rspb.LivenessMembership_LIVENESS_ACTIVE), Live, Draining},
		{"decommissioning beats draining", rec(time.Second, true, rspb.LivenessMembership_LIVENESS_DECOMMISSIONING), Live, Decommissioning},
		{"suspect decommissioned", rec(-time.Minute, false, rspb.LivenessMembership_LIVENESS_DECOMMISSIONED), Suspect, Decommissioned},
		{"dead decommissioning", rec(-time.Hour, false, rspb.LivenessMembership_LIVENESS_DECOMMISSIONING), Dead, Decommissioning},
	} {
		n := NodeView(d, c.rec, now, 5*time.Minute)
		if n.ID != 4 || len(n.Locality) != 1 || n.Liveness != c.live || n.Membership != c.m {
			t.Errorf("%s: got n%d %v %v %v, want n4 %v %v", c.name, n.ID, n.Locality, n.Liveness, n.Membership, c.live, c.m)
		}
	}
}
