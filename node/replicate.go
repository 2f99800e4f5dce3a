package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/gossip"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/rebalance"
)

// The node's side of the replicate queue (rebalance/): the views a pass
// decides from, read from the system range and meta, and the replication
// factor setting.

// gatherTimeout bounds the reads of one pass.
const gatherTimeout = 10 * time.Second

// startReplicateQueue starts the queue in the store's task group (Close
// stops it), unless cfg.ReplicateQueueInterval is negative.
// changeInFlightWindow: a range whose replica change took a step at this
// leaseholder this recently has its non-voters left alone by the queue
// (an operator's RelocateRange adds one and promotes it step by step; the
// queue removing it meanwhile made the relocation start over, again and
// again, in TestReplicaChangeCrashPoints under load).
const changeInFlightWindow = 10 * time.Second

func (n *Node) startReplicateQueue() {
	if n.cfg.ReplicateQueueInterval < 0 {
		return
	}
	q := rebalance.New(rebalance.Config{
		Interval: n.cfg.ReplicateQueueInterval,
		Active: func() bool {
			return !n.stopping.Load() && n.store.NodeID() != 0 && !n.store.Draining()
		},
		Gather:  n.gatherRebalance,
		Current: n.leaseholderDescriptor,
		Change: func(ctx context.Context, rangeID uint64, add, remove []uint64) error {
			_, err := n.store.ChangeReplicas(ctx, rangeID, add, remove)
			return err
		},
		AddNonVoter: func(ctx context.Context, rangeID, node uint64) error {
			_, err := n.store.AddNonVoter(ctx, rangeID, node)
			return err
		},
		Transfer:   n.TransferLease,
		Done:       n.noteDecision,
		Logger:     n.log.With("queue", "replicate"),
		Metrics:    rebalance.NewMetrics(n.registry),
		TimeSource: n.cfg.TimeSource,
	})
	n.replicateQueue = q
	n.store.RunTask(q.Run)
}

// leaseholderDescriptor returns the local replica's descriptor of a range
// and whether this node holds its lease, valid now.
func (n *Node) leaseholderDescriptor(rangeID uint64) (*rspb.RangeDescriptor, bool) {
	for _, ri := range n.store.Ranges() {
		if ri.RangeDescriptor.GetRangeId() == rangeID {
			return ri.RangeDescriptor, ri.LeaseValid && ri.Lease.GetNodeId() == n.NodeID()
		}
	}
	return nil, false
}

// gatherRebalance reads the views of one replicate queue pass:
//   - nodes: the directory (system range, plus nodes only the cached
//     directory knows yet), each classified from its liveness record by
//     allocator.ClassifyLiveness at this node's clock and the
//     time-until-store-dead (a node without a record, which has not started
//     since it joined, is suspect: it takes nothing and is not replaced),
//     membership from Liveness.membership, else draining, else active;
//   - ranges: every meta descriptor; for a range with a local replica the
//     lease that replica knows (if valid here) names its leaseholder, and
//     for a range whose lease this node holds the local descriptor is used
//     when it is newer than meta's. Lease counts are approximate: a range
//     with no local replica counts for no node's leases;
//   - the replication factor setting;
//   - each node's disk (capacity, and what is not available) and QPS from
//     its store descriptor heard by gossip (unknown for a node not heard);
//   - for a range whose lease this node holds, its smoothed QPS and where
//     its requests come from, per gateway node (RangeInfo.request_qps,
//     request_sources), which MakePlan maps to the gateways' localities.
func (n *Node) gatherRebalance(ctx context.Context) (rebalance.Input, error) {
	ctx, cancel := context.WithTimeout(ctx, gatherTimeout)
	defer cancel()
	in := rebalance.Input{Self: n.NodeID(), Thresholds: n.cfg.Thresholds, SnapshotSlotsFull: n.store.SnapshotSendSlotsFull()}
	factor, err := n.ReplicationFactor(ctx)
	if err != nil {
		return in, err
	}
	in.Factor = factor
	nodes, err := n.allocatorNodes(ctx)
	if err != nil {
		return in, err
	}
	stores := n.Stores()
	fillDisks(nodes, stores) // a store whose disk is more than 95 % full takes no new replica
	fillQPS(nodes, stores)
	in.Nodes = nodes
	zones, err := n.readZones(ctx)
	if err != nil {
		return in, fmt.Errorf("reading zone configs: %w", err)
	}
	descs, err := n.MetaRanges(ctx)
	if err != nil {
		return in, fmt.Errorf("reading meta: %w", err)
	}
	local := map[uint64]*rspb.RangeInfo{}
	for _, ri := range n.store.Ranges() {
		local[ri.RangeDescriptor.GetRangeId()] = ri
	}
	me := n.NodeID()
	for _, d := range descs {
		v := rebalance.RangeView{Desc: d}
		if len(zones) > 0 {
			z, err := rangeZone(zones, d, factor)
			if err != nil {
				return in, fmt.Errorf("the zone config of r%d: %w", d.RangeId, err)
			}
			v.Zone = &z
		}
		if ri := local[d.RangeId]; ri != nil && ri.LeaseValid {
			v.Leaseholder = ri.Lease.GetNodeId()
			if v.Leaseholder == me {
				v.Mine = true
				v.QPS = ri.RequestQps
				for _, g := range ri.RequestSources {
					v.Sources = append(v.Sources, rebalance.Source{Gateway: g.GatewayNodeId, QPS: g.Qps})
				}
				if ld := ri.RangeDescriptor; ld.GetGeneration() > d.Generation {
					v.Desc = ld
				}
				if n.store.ChangeInFlight(d.RangeId, changeInFlightWindow) {
					v.ChangeInFlight = fmt.Sprintf("a replica change of r%d is being driven here (a step within %s): what may be its intermediate state (a non-voter about to be promoted, a voter about to be removed) is left alone", d.RangeId, changeInFlightWindow)
				}
			}
		}
		in.Ranges = append(in.Ranges, v)
	}
	return in, nil
}

// fillQPS sets each node's QPS from its store descriptor heard by gossip
// (the requests/s its leaseholders serve; 0 for a node not heard).
func fillQPS(nodes []allocator.Node, stores map[uint64]gossip.Entry) {
	for i := range nodes {
		if e, ok := stores[nodes[i].ID]; ok {
			nodes[i].QPS = e.Desc.QueriesPerSecond
		}
	}
}

// allocatorNodes returns the allocator's view of every directory node.
func (n *Node) allocatorNodes(ctx context.Context) ([]allocator.Node, error) {
	dir, err := n.readDirectory(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the node directory: %w", err)
	}
	byID := map[uint64]*rspb.NodeDescriptor{}
	for _, d := range n.Directory() {
		byID[d.NodeId] = d
	}
	for _, d := range dir {
		byID[d.NodeId] = d
	}
	recs, err := n.readLivenessRecords(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading liveness records: %w", err)
	}
	deadAfter := n.cfg.TimeUntilStoreDead
	if deadAfter <= 0 {
		deadAfter = DefaultTimeUntilStoreDead
	}
	now := time.Unix(0, n.cfg.Clock.Now().WallTime)
	out := make([]allocator.Node, 0, len(byID))
	for id, d := range byID {
		an := allocator.Node{ID: id, Locality: d.Locality, Liveness: allocator.Suspect, ReadReplica: d.ReadReplica}
		rec := recs[id]
		if rec != nil {
			an.Liveness = allocator.ClassifyLiveness(time.Unix(0, rec.GetExpiration().GetWallTime()), now, deadAfter)
		}
		switch {
		case rec.GetMembership() == rspb.LivenessMembership_LIVENESS_DECOMMISSIONED:
			an.Membership = allocator.Decommissioned
		case rec.GetMembership() == rspb.LivenessMembership_LIVENESS_DECOMMISSIONING:
			an.Membership = allocator.Decommissioning
		case rec.GetDraining():
			an.Membership = allocator.Draining
		}
		out = append(out, an)
	}
	return out, nil
}

// ReplicationFactor reads the replication factor setting (3 when none is
// stored: a cluster from before the setting).
func (n *Node) ReplicationFactor(ctx context.Context) (int, error) {
	resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.ReplicationFactorKey}}}})
	if err != nil {
		return 0, fmt.Errorf("reading the replication factor setting: %w", err)
	}
	g := resps[0].GetGet()
	return rebalance.DecodeFactor(g.GetKv().GetValue(), g.GetFound())
}

// SetReplicationFactor validates and writes the replication factor
// setting and reports the previous one and the nodes that can take a
// replica now (live and active). The queues carry the change out.
func (n *Node) SetReplicationFactor(ctx context.Context, factor int) (*rspb.SetReplicationFactorResponse, error) {
	if err := rebalance.ValidateFactor(factor); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "replication_factor: %v", err)
	}
	ctx, cancel, err := n.operatorCtx(ctx, 10*time.Second)
	defer cancel()
	if err != nil {
		return nil, err
	}
	prev, err := n.ReplicationFactor(ctx)
	if err != nil {
		// A stored value that is not a valid setting is overwritten.
		if errors.Is(err, rebalance.ErrBadFactor) {
			n.log.Warn("replacing an invalid replication factor setting", "err", err)
		} else {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
	}
	if _, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{
		Key: keys.ReplicationFactorKey, Value: rebalance.EncodeFactor(factor)}}}}); err != nil {
		return nil, status.Errorf(codes.Unavailable, "writing the replication factor setting: %v", err)
	}
	resp := &rspb.SetReplicationFactorResponse{Previous: int32(prev), ReplicationFactor: int32(factor)}
	if nodes, err := n.allocatorNodes(ctx); err == nil {
		for _, an := range nodes {
			if an.Liveness == allocator.Live && an.Membership == allocator.Active && !an.ReadReplica {
				resp.LiveActiveNodes++
			}
		}
	}
	n.log.Info("replication factor set", "factor", factor, "previous", prev, "live_active_nodes", resp.LiveActiveNodes)
	if n.replicateQueue != nil {
		n.replicateQueue.Kick()
	}
	return resp, nil
}

// noteDecision keeps the last step the replicate queue carried out for a
// range, for `range list` (RangeInfo.last_decision).
func (n *Node) noteDecision(s rebalance.Step, err error) {
	what := fmt.Sprintf("n%d", s.Decision.Node)
	if s.Decision.From != 0 {
		what = fmt.Sprintf("n%d->n%d", s.Decision.From, s.Decision.Node)
	}
	outcome := "done"
	if err != nil {
		outcome = "failed: " + err.Error()
	}
	n.lastDecision.Store(s.RangeID, fmt.Sprintf("%s %s at %s, %s: %s", s.Decision.Action, what,
		time.Now().UTC().Format("15:04:05"), outcome, s.Decision.Reason))
}
