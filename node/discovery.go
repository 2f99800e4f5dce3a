package node

import (
	"context"
	"fmt"
	"time"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/proto/rspb"
)

// routingGatherTimeout bounds the reads of one routing table.
const routingGatherTimeout = 10 * time.Second

// RoutingInput gathers the views of a routing table (gateway.Discovery):
//   - meta's descriptors;
//   - the leaseholders: a local replica's lease valid here, else the node
//     that last served the range through this node's router (unknown
//     otherwise: the entry has no writer);
//   - the directory (system range and the cached one), and as down every
//     node that is not live (suspect, dead: allocator.ClassifyLiveness),
//     is decommissioned, or is a read replica missing from the whiteboard
//     or hidden on it (an unclean exit), which clients must not be sent to;
//   - each node's closed-timestamp lag from its gossiped store descriptor.
func (n *Node) RoutingInput(ctx context.Context, req *rspb.GetRoutingTableRequest) (gateway.RoutingInput, error) {
	ctx, cancel := context.WithTimeout(ctx, routingGatherTimeout)
	defer cancel()
	in := gateway.RoutingInput{Req: req, TTL: n.cfg.RoutingTTL, Leaseholders: map[uint64]uint64{},
		Nodes: map[uint64]*rspb.NodeDescriptor{}, Down: map[uint64]string{}}
	descs, err := n.MetaRanges(ctx)
	if err != nil {
		return in, fmt.Errorf("reading meta: %w", err)
	}
	in.Descs = descs
	for _, d := range descs {
		if id := n.router.LastServed(d.RangeId); id != 0 {
			in.Leaseholders[d.RangeId] = id
		}
	}
	for _, ri := range n.store.Ranges() {
		if ri.LeaseValid && ri.Lease.GetNodeId() != 0 {
			in.Leaseholders[ri.RangeDescriptor.GetRangeId()] = ri.Lease.GetNodeId()
		}
	}
	for _, d := range n.Directory() {
		in.Nodes[d.NodeId] = d
	}
	if dir, err := n.readDirectory(ctx); err == nil {
		for _, d := range dir {
			in.Nodes[d.NodeId] = d
		}
	}
	views, err := n.allocatorNodes(ctx)
	if err != nil {
		return in, err
	}
	wb := n.Whiteboard()
	in.ClosedLags = map[uint64]time.Duration{}
	for id, e := range n.Stores() {
		if l := e.Desc.GetMaxClosedTimestampLagNanos(); l > 0 {
			in.ClosedLags[id] = time.Duration(l)
		}
	}
	for _, v := range views {
		switch {
		case v.Liveness != allocator.Live:
			in.Down[v.ID] = v.Liveness.String()
		case v.Membership == allocator.Decommissioned:
			in.Down[v.ID] = "decommissioned"
		case v.ReadReplica && n.gossip.Load() != nil:
			if e, ok := wb[v.ID]; !ok || e.Hidden {
				in.Down[v.ID] = "read replica not on the whiteboard"
			}
		}
	}
	return in, nil
}
