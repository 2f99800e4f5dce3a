package node

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/gossip"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/rebalance"
)

// ExplainRange (Admin.ExplainRange, `range explain R`) runs the
// allocator's scorer on one range with what this node can gather, and
// changes nothing: the descriptor from meta, the leaseholder and the
// range's QPS from its replicas' nodes, liveness and membership from the
// liveness records, replica counts from meta, and capacity, disk use,
// lease counts and load from the store descriptors heard by gossip. The
// zone config is the default one with the replication factor setting as
// its replica count (zone configs per span are not stored yet).
func (n *Node) ExplainRange(ctx context.Context, rangeID uint64) (*rspb.ExplainRangeResponse, error) {
	ctx, cancel, err := n.operatorCtx(ctx, 10*time.Second)
	defer cancel()
	if err != nil {
		return nil, err
	}
	desc, descs, err := n.metaDescriptor(ctx, rangeID)
	if err != nil {
		return nil, err
	}
	factor, err := n.ReplicationFactor(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	nodes, err := n.allocatorNodes(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	stores := n.Stores()
	fillStoreViews(nodes, descs, stores)
	holder, qps, sources := n.leaseOf(ctx, desc)
	zone := allocator.DefaultZoneConfig()
	nr := int32(factor)
	zone.NumReplicas = &nr
	zone, err = zone.Resolve()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "zone config: %v", err)
	}
	idx := map[uint64]int{}
	for i := range nodes {
		idx[nodes[i].ID] = i
	}
	rec, err := allocator.Score(allocator.ScoreInput{Desc: desc, Zone: zone, Leaseholder: holder, QPS: qps,
		Requests: rebalance.Requests(sources, nodes, idx), Nodes: nodes, Thresholds: n.cfg.Thresholds})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "scoring r%d: %v", rangeID, err)
	}
	heard := gossip.SortedIDs(stores)
	hs := make([]string, len(heard))
	for i, id := range heard {
		hs[i] = fmt.Sprintf("n%d", id)
	}
	inputs := fmt.Sprintf("replication factor %d (default zone config); store descriptors heard by gossip from %s", factor, orNone(strings.Join(hs, ",")))
	if !n.cfg.Thresholds.IsDefault() {
		inputs += "; balance thresholds " + n.cfg.Thresholds.String()
	}
	if holder == 0 {
		inputs += "; no valid lease found (no lease decision)"
	}
	return &rspb.ExplainRangeResponse{RangeDescriptor: desc, LeaseholderNodeId: holder, QueriesPerSecond: qps,
		Action: rec.Action.String(), TargetNodeId: rec.Node, FromNodeId: rec.From, Reason: rec.Reason,
		Explanation: rec.String(), Inputs: inputs}, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// fillStoreViews counts each node's replicas from meta and takes its
// disk, leases and load from its gossiped descriptor.
func fillStoreViews(nodes []allocator.Node, descs []*rspb.RangeDescriptor, stores map[uint64]gossip.Entry) {
	count := map[uint64]int{}
	for _, d := range descs {
		for _, r := range d.Replicas {
			count[r.NodeId]++
		}
	}
	fillDisks(nodes, stores)
	for i := range nodes {
		nodes[i].Replicas = count[nodes[i].ID]
		if e, ok := stores[nodes[i].ID]; ok {
			nodes[i].Leases, nodes[i].QPS = int(e.Desc.LeaseCount), e.Desc.QueriesPerSecond
		}
	}
}

// fillDisks takes each node's disk from its gossiped descriptor, as
// CockroachDB's StoreCapacity.FractionUsed does: what the store can hold is
// its own data plus what the file system still makes available to it,
// and it is full when its own data is more than 95 % of that. Other data
// on the disk, and blocks the file system reserves, are a sunk cost: with
// them counted as used, a shared disk at 89 % (a test machine's, whose
// reserve alone is most of it) made every store of a cluster "full" once
// other work took the last 6 % of it, and a dead node's replicas were
// never replaced (TestRegionDiversityAndRepair). Only when the store's use
// is unknown (0) is it capacity minus available. A node not heard keeps
// zeros: capacity unknown, never counted as full.
func fillDisks(nodes []allocator.Node, stores map[uint64]gossip.Entry) {
	for i := range nodes {
		e, ok := stores[nodes[i].ID]
		if !ok || e.Desc.CapacityBytes <= 0 {
			continue
		}
		nodes[i].CapacityBytes, nodes[i].UsedBytes = diskUse(e.Desc)
	}
}

// diskUse is a store descriptor's (capacity, used) as fillDisks counts
// them.
func diskUse(d *rspb.StoreDescriptor) (capacity, used int64) {
	if d.UsedBytes > 0 {
		return d.UsedBytes + max(d.AvailableBytes, 0), d.UsedBytes
	}
	return d.CapacityBytes, max(d.CapacityBytes-d.AvailableBytes, 0)
}

// leaseOf asks the nodes of d's replicas for the range's valid lease, the
// leaseholder's smoothed QPS and where its requests come from (0, 0, nil
// if no replica answers with one).
func (n *Node) leaseOf(ctx context.Context, d *rspb.RangeDescriptor) (holder uint64, qps float64, sources []rebalance.Source) {
	var ids []uint64
	for _, rep := range d.Replicas {
		ids = append(ids, rep.NodeId)
	}
	for id, infos := range n.rangeInfosOf(ctx, ids) {
		for _, ri := range infos {
			if ri.RangeDescriptor.GetRangeId() == d.RangeId && ri.LeaseValid && ri.Lease.GetNodeId() == id {
				holder, qps, sources = id, ri.RequestQps, nil
				for _, g := range ri.RequestSources {
					sources = append(sources, rebalance.Source{Gateway: g.GatewayNodeId, QPS: g.Qps})
				}
			}
		}
	}
	return holder, qps, sources
}
