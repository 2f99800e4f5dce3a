package allocator

import (
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// MembershipOf is a node's membership by its liveness record (nil: none,
// which reads as active): the record's membership (set by decommission and
// recommission) first, then its draining flag.
func MembershipOf(rec *rspb.Liveness) Membership {
	switch rec.GetMembership() {
	case rspb.LivenessMembership_LIVENESS_DECOMMISSIONING:
		return Decommissioning
	case rspb.LivenessMembership_LIVENESS_DECOMMISSIONED:
		return Decommissioned
	}
	if rec.GetDraining() {
		return Draining
	}
	return Active
}

// NodeView is the allocator's view of a node from its descriptor and its
// liveness record (nil: none) at now: liveness by ClassifyLiveness against
// the record's expiration, membership by MembershipOf. A node without a
// record (joined, never started) is Suspect: it takes nothing, and
// nothing of it is replaced. Replicas and Leases are left to the caller.
func NodeView(d *rspb.NodeDescriptor, rec *rspb.Liveness, now time.Time, timeUntilDead time.Duration) Node {
	n := Node{ID: d.GetNodeId(), Locality: d.GetLocality(), Liveness: Suspect, Membership: MembershipOf(rec), ReadReplica: d.GetReadReplica()}
	if rec != nil {
		n.Liveness = ClassifyLiveness(time.Unix(0, rec.GetExpiration().GetWallTime()), now, timeUntilDead)
	}
	return n
}
