package node

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/rebalance"
)

// AllocatorPlan (Admin.AllocatorPlan, `allocator plan`) lists what every
// node's replicate queue would do now, from this node's view: the views of
// a queue pass (gatherRebalance) with each range's leaseholder asked of
// the live nodes, then one plan (rebalance.MakePlan) per node as if that
// node ran the pass, keeping the steps of the ranges it holds the lease
// of. A range needing a change while no node holds its lease is listed as
// waiting. Changes in flight at other nodes are not known here: their
// intermediate states may show as steps. Nothing is changed.
func (n *Node) AllocatorPlan(ctx context.Context) (*rspb.AllocatorPlanResponse, error) {
	ctx, cancel, err := n.operatorCtx(ctx, 15*time.Second)
	defer cancel()
	if err != nil {
		return nil, err
	}
	in, err := n.gatherRebalance(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	holders := n.leaseholderInfos(ctx)
	for i := range in.Ranges {
		if ri, ok := holders[in.Ranges[i].Desc.RangeId]; ok {
			r := &in.Ranges[i]
			r.Leaseholder = ri.Lease.GetNodeId()
			// The range's load as its leaseholder reports it (this
			// node's view has it only for the leases it holds).
			r.QPS, r.Sources = ri.RequestQps, nil
			for _, g := range ri.RequestSources {
				r.Sources = append(r.Sources, rebalance.Source{Gateway: g.GatewayNodeId, QPS: g.Qps})
			}
		}
	}
	ids := make([]uint64, 0, len(in.Nodes))
	for _, an := range in.Nodes {
		ids = append(ids, an.ID)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	resp := &rspb.AllocatorPlanResponse{}
	held := map[uint64]bool{}                // ranges some node holds the lease of
	needs := map[uint64]allocator.Decision{} // ranges whose decision acts
	for _, id := range ids {
		v := in
		v.Self = id
		v.Ranges = make([]rebalance.RangeView, len(in.Ranges))
		mine := map[uint64]bool{}
		for i, r := range in.Ranges {
			r.Mine = r.Leaseholder == id
			if id != n.NodeID() {
				r.ChangeInFlight = ""
			}
			if r.Mine {
				held[r.Desc.RangeId], mine[r.Desc.RangeId] = true, true
			}
			v.Ranges[i] = r
		}
		p, err := rebalance.MakePlan(v)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "planning as n%d: %v", id, err)
		}
		for _, s := range p.Steps {
			resp.Changes = append(resp.Changes, &rspb.PlannedChange{NodeId: id, RangeId: s.RangeID, Action: s.Decision.Action.String(),
				TargetNodeId: s.Decision.Node, FromNodeId: s.Decision.From, Priority: int64(s.Decision.Priority), Reason: s.Decision.Reason})
		}
		for _, s := range p.Skips {
			if s.Decision.Priority == 0 {
				continue
			}
			needs[s.RangeID] = s.Decision
			if mine[s.RangeID] {
				resp.Waiting = append(resp.Waiting, fmt.Sprintf("r%d at n%d: %s (%s: %s)", s.RangeID, id, s.Why, s.Decision.Action, s.Decision.Reason))
			}
		}
		if p.Reporter {
			resp.UnderReplicated, resp.Unavailable = int64(p.UnderReplicated), int64(p.Unavailable)
			resp.Counts = strings.TrimSpace(strings.SplitN(p.String(), "\n", 2)[0])
		}
	}
	for _, r := range in.Ranges {
		if d, ok := needs[r.Desc.RangeId]; ok && !held[r.Desc.RangeId] {
			resp.Waiting = append(resp.Waiting, fmt.Sprintf("r%d: no node was found holding its lease, so no queue acts on it now (%s: %s)", r.Desc.RangeId, d.Action, d.Reason))
		}
	}
	return resp, nil
}

// leaseholders asks every node of the directory for the ranges whose
// valid lease it holds (at most 2 s; an unreachable node holds none).
func (n *Node) leaseholders(ctx context.Context) map[uint64]uint64 {
	out := map[uint64]uint64{}
	for id, ri := range n.leaseholderInfos(ctx) {
		out[id] = ri.Lease.GetNodeId()
	}
	return out
}

// leaseholderInfos is leaseholders with each range's RangeInfo as its
// leaseholder reports it (its load and request sources).
func (n *Node) leaseholderInfos(ctx context.Context) map[uint64]*rspb.RangeInfo {
	var ids []uint64
	for _, d := range n.Directory() {
		ids = append(ids, d.NodeId)
	}
	out := map[uint64]*rspb.RangeInfo{}
	for id, infos := range n.rangeInfosOf(ctx, ids) {
		for _, ri := range infos {
			if ri.LeaseValid && ri.Lease.GetNodeId() == id {
				out[ri.RangeDescriptor.GetRangeId()] = ri
			}
		}
	}
	return out
}
