package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Replica faults: a replica of a client key's range is removed from a
// node that does not hold the lease, then added back on the same node
// under a new replica ID (so it is caught up by a snapshot, and the
// removed replica is garbage-collected there), while the clients run.
// Ranges a failed fault left with fewer voters than the replication factor
// (or than nodes, on a smaller cluster) get their missing replicas back
// first, on random nodes without one.

// rangeView is what the reachable nodes know of one range.
type rangeView struct {
	desc   *rspb.RangeDescriptor
	holder uint64 // node of a valid lease, 0 if none is known
}

// viewRanges asks every reachable node for its replicas and keeps, per
// range, the descriptor of the highest generation and a valid lease.
func viewRanges(ctx context.Context, admins []rspb.AdminClient) map[uint64]*rangeView {
	out := map[uint64]*rangeView{}
	for _, a := range admins {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, err := a.Ranges(actx, &rspb.RangesRequest{})
		cancel()
		if err != nil {
			continue
		}
		for _, ri := range r.Ranges {
			d := ri.RangeDescriptor
			if d == nil {
				continue
			}
			v := out[d.RangeId]
			if v == nil {
				v = &rangeView{desc: d}
				out[d.RangeId] = v
			} else if v.desc.Generation < d.Generation {
				v.desc = d
			}
			if ri.LeaseValid {
				v.holder = ri.Lease.GetNodeId()
			}
		}
	}
	return out
}

// replicaFault runs one replica fault on rangeID through admin (any
// node); nodes are the cluster's node IDs.
func replicaFault(ctx context.Context, admin rspb.AdminClient, admins []rspb.AdminClient, rng *rand.Rand, rangeID uint64, nodes []uint64) string {
	var out []string
	views := viewRanges(ctx, admins)
	// Repair what an earlier fault left short.
	ids := make([]uint64, 0, len(views))
	for id := range views {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	want := min(chaosFactor, len(nodes))
	for _, id := range ids {
		d := views[id].desc
		missing := want - len(voterNodes(d))
		for _, i := range rng.Perm(len(nodes)) {
			n := nodes[i]
			if missing <= 0 {
				break
			}
			if hasNode(d, n) {
				continue
			}
			missing--
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := admin.ChangeReplicas(cctx, &rspb.ChangeReplicasRequest{RangeId: id, AddNodeIds: []uint64{n}})
			cancel()
			if err != nil {
				out = append(out, fmt.Sprintf("re-adding r%d on n%d failed: %v", id, n, err))
			} else {
				out = append(out, fmt.Sprintf("re-added r%d on n%d", id, n))
			}
		}
	}
	v := views[rangeID]
	if v == nil {
		return "replicas: " + strings.Join(append(out, fmt.Sprintf("r%d not found", rangeID)), "; ")
	}
	var cands []uint64
	for _, r := range v.desc.Replicas {
		if r.NodeId != v.holder && r.Type == rspb.ReplicaType_VOTER {
			cands = append(cands, r.NodeId)
		}
	}
	if len(cands) == 0 {
		return "replicas: " + strings.Join(append(out, fmt.Sprintf("r%d has no voter besides the leaseholder", rangeID)), "; ")
	}
	victim := cands[rng.Intn(len(cands))]
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_, err := admin.ChangeReplicas(cctx, &rspb.ChangeReplicasRequest{RangeId: rangeID, RemoveNodeIds: []uint64{victim}})
	cancel()
	if err != nil {
		return "replicas: " + strings.Join(append(out, fmt.Sprintf("removing r%d from n%d failed: %v", rangeID, victim, err)), "; ")
	}
	out = append(out, fmt.Sprintf("removed r%d from n%d", rangeID, victim))
	cctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	r, err := admin.ChangeReplicas(cctx, &rspb.ChangeReplicasRequest{RangeId: rangeID, AddNodeIds: []uint64{victim}})
	cancel()
	if err != nil {
		out = append(out, fmt.Sprintf("adding it back failed: %v", err))
	} else {
		out = append(out, fmt.Sprintf("added it back as replica %d", replicaIDOn(r.RangeDescriptor, victim)))
	}
	return "replicas: " + strings.Join(out, "; ")
}

func hasNode(d *rspb.RangeDescriptor, n uint64) bool {
	for _, r := range d.Replicas {
		if r.NodeId == n {
			return true
		}
	}
	return false
}

func replicaIDOn(d *rspb.RangeDescriptor, n uint64) uint64 {
	for _, r := range d.GetReplicas() {
		if r.NodeId == n {
			return r.ReplicaId
		}
	}
	return 0
}

// nodeIDs are a test cluster's node IDs: init numbers its n nodes 1..n.
func nodeIDs(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}
