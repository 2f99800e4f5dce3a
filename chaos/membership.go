package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Membership faults of the process mode, on a cluster of more nodes than
// the replication factor (procNodes processes, factor 3):
//
//   - relocate: the range of a client key is moved to a random 3 of the
//     nodes (RelocateRange: voters added as learners, caught up by
//     snapshots and promoted one at a time, then the others removed, the
//     lease following when its holder leaves), while the clients run.
//   - decommission: a random node is decommissioned; the replicate queue
//     moves its replicas and leases away while the clients run, and the
//     fault waits (bounded) until the node holds none. The next fault, or
//     the end of the history, recommissions it, after which rebalancing
//     brings replicas back to it.
//
// Merges need colocated voters: on such a cluster the merge fault first
// relocates the right neighbour onto the left range's voters (what
// CockroachDB's merge queue does), so a merge also moves replicas.

const (
	// procNodes is how many processes a process-mode history runs.
	procNodes = 5
	// chaosFactor is the replication factor of the histories' clusters.
	chaosFactor = 3
	// decommissionWait bounds how long a decommission fault waits for its
	// node to be emptied.
	decommissionWait = 25 * time.Second
)

// relocateFault moves rangeID's voters to a random chaosFactor of nodes
// (another set than today's, when the view knows today's).
func relocateFault(ctx context.Context, admin rspb.AdminClient, admins []rspb.AdminClient, rng *rand.Rand, rangeID uint64, nodes []uint64) string {
	var cur []uint64
	if v := viewRanges(ctx, admins)[rangeID]; v != nil {
		cur = voterNodes(v.desc)
	}
	var to []uint64
	for tries := 0; tries < 10; tries++ {
		perm := rng.Perm(len(nodes))
		to = to[:0]
		for _, i := range perm[:min(chaosFactor, len(nodes))] {
			to = append(to, nodes[i])
		}
		slices.Sort(to)
		if !slices.Equal(to, cur) {
			break
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	start := time.Now()
	r, err := admin.RelocateRange(cctx, &rspb.RelocateRangeRequest{RangeId: rangeID, VoterNodeIds: to})
	if err != nil {
		return fmt.Sprintf("relocate: r%d %s -> %s failed after %.1fs: %v", rangeID, nodeList(cur), nodeList(to), time.Since(start).Seconds(), err)
	}
	return fmt.Sprintf("relocate: r%d %s -> %s in %.1fs (now %s)", rangeID, nodeList(cur), nodeList(to), time.Since(start).Seconds(), nodeList(voterNodes(r.RangeDescriptor)))
}

// decommissionFault decommissions node id through admin and waits, at
// most decommissionWait, until the meta records list no replica on it.
// It reports whether the node was marked decommissioning (then it must be
// recommissioned).
func decommissionFault(ctx context.Context, admin rspb.AdminClient, id uint64) (string, bool) {
	start := time.Now()
	st, err := decommission(ctx, admin, id)
	if err != nil {
		return fmt.Sprintf("decommission: n%d refused: %v", id, err), false
	}
	before := st.ReplicaCount
	for st.ReplicaCount > 0 && time.Since(start) < decommissionWait && ctx.Err() == nil {
		time.Sleep(250 * time.Millisecond)
		if s, err := decommission(ctx, admin, id); err == nil {
			st = s
		}
	}
	if st.ReplicaCount > 0 {
		return fmt.Sprintf("decommission: n%d held %d replicas, still %d after %.1fs", id, before, st.ReplicaCount, time.Since(start).Seconds()), true
	}
	return fmt.Sprintf("decommission: n%d emptied of %d replicas in %.1fs", id, before, time.Since(start).Seconds()), true
}

// decommission asks (again) for node id's decommission: the answer says
// how many replicas the meta records still list on it.
func decommission(ctx context.Context, admin rspb.AdminClient, id uint64) (*rspb.DecommissionNodeStatus, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := admin.Decommission(dctx, &rspb.DecommissionRequest{NodeIds: []uint64{id}})
	if err != nil {
		return nil, err
	}
	if len(r.Nodes) != 1 {
		return nil, fmt.Errorf("the answer names %d nodes", len(r.Nodes))
	}
	return r.Nodes[0], nil
}

// recommission undoes decommissionFault, asking each node in turn until
// one answers (at most d): a node may be restarting.
func recommission(ctx context.Context, admins []rspb.AdminClient, id uint64, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for i := 0; ; i++ {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, err := admins[i%len(admins)].Recommission(rctx, &rspb.RecommissionRequest{NodeId: id})
		cancel()
		if err == nil && r.Membership == rspb.MembershipState_MEMBERSHIP_ACTIVE {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("n%d is %v after the recommission: %s", id, r.Membership, r.Message)
		}
		last = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("recommission of n%d: %w", id, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// colocate relocates the right neighbour of the range holding key k onto
// that range's voters when they differ (a merge needs colocated voters).
// It describes what it did ("" when nothing was needed or known).
func colocate(ctx context.Context, admin rspb.AdminClient, admins []rspb.AdminClient, k string) string {
	views := viewRanges(ctx, admins)
	uk := keys.UserKey([]byte(k))
	var left *rspb.RangeDescriptor
	for _, v := range views {
		if keys.InSpan(uk, v.desc.StartKey, v.desc.EndKey) && (left == nil || left.Generation < v.desc.Generation) {
			left = v.desc
		}
	}
	if left == nil {
		return ""
	}
	var right *rspb.RangeDescriptor
	for _, v := range views {
		if string(v.desc.StartKey) == string(left.EndKey) && (right == nil || right.Generation < v.desc.Generation) {
			right = v.desc
		}
	}
	if right == nil {
		return ""
	}
	lv, rv := voterNodes(left), voterNodes(right)
	if slices.Equal(lv, rv) && len(lv) == len(right.Replicas) {
		return ""
	}
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if _, err := admin.RelocateRange(cctx, &rspb.RelocateRangeRequest{RangeId: right.RangeId, VoterNodeIds: lv}); err != nil {
		return fmt.Sprintf("colocating r%d %s onto r%d's voters %s failed: %v", right.RangeId, nodeList(rv), left.RangeId, nodeList(lv), err)
	}
	return fmt.Sprintf("relocated r%d %s onto r%d's voters %s", right.RangeId, nodeList(rv), left.RangeId, nodeList(lv))
}

// voterNodes are the sorted nodes of d's voters.
func voterNodes(d *rspb.RangeDescriptor) []uint64 {
	var out []uint64
	for _, r := range d.GetReplicas() {
		if r.Type == rspb.ReplicaType_VOTER {
			out = append(out, r.NodeId)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func nodeList(ns []uint64) string {
	if len(ns) == 0 {
		return "(unknown)"
	}
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprintf("n%d", n)
	}
	return "{" + strings.Join(s, ",") + "}"
}
