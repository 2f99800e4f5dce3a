package node

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// DefaultTimeUntilStoreDead: a node whose liveness record has been expired
// this long is dead (CockroachDB's default); before that it is suspect.
const DefaultTimeUntilStoreDead = 5 * time.Minute

// nodeState is the judgement of one node's liveness record.
type nodeState struct {
	Liveness   rspb.NodeLiveness
	Membership rspb.MembershipState
	Reason     string
}

// decideNodeState judges a node from its liveness record (nil: none) at
// wall time now (nanoseconds):
//   - no record: UNKNOWN (the node has not started since it joined);
//   - now before the record's expiration: LIVE;
//   - expired less than deadAfter ago: SUSPECT;
//   - expired deadAfter ago or longer: DEAD.
//
// Membership is DECOMMISSIONING or DECOMMISSIONED as the record's
// membership says, else DRAINING while the record says draining, else
// ACTIVE (a dead node's record keeps the flag it last had).
func decideNodeState(rec *rspb.Liveness, now int64, deadAfter time.Duration) nodeState {
	if rec == nil {
		return nodeState{Liveness: rspb.NodeLiveness_NODE_LIVENESS_UNKNOWN, Membership: rspb.MembershipState_MEMBERSHIP_ACTIVE,
			Reason: "no liveness record: the node has not started since it joined"}
	}
	st := nodeState{Membership: rspb.MembershipState_MEMBERSHIP_ACTIVE}
	exp := rec.GetExpiration().GetWallTime()
	switch ago := time.Duration(now - exp); {
	case ago < 0:
		st.Liveness, st.Reason = rspb.NodeLiveness_NODE_LIVE, fmt.Sprintf("liveness record (epoch %d) expires in %s", rec.Epoch, (-ago).Round(time.Millisecond))
	case ago < deadAfter:
		st.Liveness, st.Reason = rspb.NodeLiveness_NODE_SUSPECT, fmt.Sprintf("liveness record (epoch %d) expired %s ago, less than the time-until-store-dead %s",
			rec.Epoch, ago.Round(time.Millisecond), deadAfter)
	default:
		st.Liveness, st.Reason = rspb.NodeLiveness_NODE_DEAD, fmt.Sprintf("liveness record (epoch %d) expired %s ago, at least the time-until-store-dead %s",
			rec.Epoch, ago.Round(time.Millisecond), deadAfter)
	}
	switch {
	case rec.Membership != rspb.LivenessMembership_LIVENESS_ACTIVE:
		st.Membership = membershipState(rec.Membership)
		st.Reason += "; " + leases.MembershipWord(rec.Membership) + " (marked in its liveness record)"
	case rec.Draining:
		st.Membership = rspb.MembershipState_MEMBERSHIP_DRAINING
		st.Reason += "; draining (marked in its liveness record)"
	}
	return st
}

// NodeStats counts this node's replicas, the valid leases it holds and
// its replicas' approximate bytes.
func (n *Node) NodeStats() (replicas, leases, bytes int64) {
	me := n.NodeID()
	for _, ri := range n.store.Ranges() {
		replicas++
		if ri.LeaseValid && ri.Lease.GetNodeId() == me {
			leases++
		}
		bytes += ri.ApproxBytes
	}
	return replicas, leases, bytes
}

// errNotInitialized answers operator requests on a node that is not part
// of a cluster yet.
var errNotInitialized = status.Error(codes.FailedPrecondition, "node not initialized (run `rangestore init`, or start it with --join of a running cluster)")

// NodeStatuses reports the status of every node in the directory (nodeID
// 0) or of one node (NotFound if the directory does not list it): the
// directory and liveness records are read from the system range, the
// counts asked of each node (briefly; an unreachable node's counts are
// missing, with stats_error saying why), as are its certificates (serial
// and expiry of each, as it reports them), and the store descriptor is the
// one this node heard by gossip (none if not heard within the TTL).
func (n *Node) NodeStatuses(ctx context.Context, nodeID uint64) ([]*rspb.NodeStatus, error) {
	ctx, cancel, err := n.operatorCtx(ctx, 10*time.Second)
	defer cancel()
	if err != nil {
		return nil, err
	}
	dir, err := n.readDirectory(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading the node directory: %v", err)
	}
	byID := map[uint64]*rspb.NodeDescriptor{}
	for _, d := range n.Directory() { // nodes whose record is not visible here yet
		byID[d.NodeId] = d
	}
	for _, d := range dir {
		byID[d.NodeId] = d
	}
	var ids []uint64
	for id := range byID {
		if nodeID == 0 || id == nodeID {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		all := make([]uint64, 0, len(byID))
		for id := range byID {
			all = append(all, id)
		}
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		return nil, status.Errorf(codes.NotFound, "node n%d not found: the directory lists %s", nodeID, nodeList(all))
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	recs, err := n.readLivenessRecords(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading liveness records: %v", err)
	}
	now := n.cfg.Clock.Now().WallTime
	deadAfter := n.cfg.TimeUntilStoreDead
	if deadAfter <= 0 {
		deadAfter = DefaultTimeUntilStoreDead
	}
	out := make([]*rspb.NodeStatus, len(ids))
	stores := n.Stores()
	var wg sync.WaitGroup
	for i, id := range ids {
		d := byID[id]
		rec := recs[id]
		st := decideNodeState(rec, now, deadAfter)
		ns := &rspb.NodeStatus{Node: d, Liveness: st.Liveness, Membership: st.Membership, Detail: st.Reason,
			Epoch: rec.GetEpoch(), LivenessExpiration: rec.GetExpiration()}
		if e, ok := stores[id]; ok {
			ns.Store, ns.StoreHeardMillisAgo = e.Desc, time.Since(e.Heard).Milliseconds()
		}
		out[i] = ns
		if id == n.NodeID() {
			ns.ReplicaCount, ns.LeaseCount, ns.Bytes = n.NodeStats()
			ns.Certs = n.Certs()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.askStats(ctx, ns)
		}()
	}
	wg.Wait()
	return out, nil
}

// askStats fills a node's counts from its NodeInfo.
func (n *Node) askStats(ctx context.Context, ns *rspb.NodeStatus) {
	c, err := n.dialPeer(ns.Node.Address)
	if err != nil {
		ns.StatsError = err.Error()
		return
	}
	defer c.Close()
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := rspb.NewInternalClient(c).NodeInfo(actx, &rspb.NodeInfoRequest{})
	switch {
	case err != nil:
		ns.StatsError = fmt.Sprintf("n%d at %s did not answer: %v", ns.Node.NodeId, ns.Node.Address, status.Convert(err).Message())
	case info.GetNode().GetNodeId() != ns.Node.NodeId:
		ns.StatsError = fmt.Sprintf("%s answers as n%d, not n%d", ns.Node.Address, info.GetNode().GetNodeId(), ns.Node.NodeId)
	default:
		ns.ReplicaCount, ns.LeaseCount, ns.Bytes = info.ReplicaCount, info.LeaseCount, info.Bytes
		ns.Certs = info.Certs
	}
}

// readLivenessRecords scans every liveness record, by node ID.
func (n *Node) readLivenessRecords(ctx context.Context) (map[uint64]*rspb.Liveness, error) {
	end := append([]byte(nil), keys.LivenessPrefix...)
	end[len(end)-1]++
	resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: keys.LivenessPrefix, EndKey: end}}}})
	if err != nil {
		return nil, err
	}
	out := map[uint64]*rspb.Liveness{}
	for _, kv := range resps[0].GetScan().GetKvs() {
		rec := &rspb.Liveness{}
		if err := proto.Unmarshal(kv.Value, rec); err != nil {
			return nil, fmt.Errorf("liveness record %s: %w", keys.Pretty(kv.Key), err)
		}
		out[rec.NodeId] = rec
	}
	return out, nil
}

func nodeList(ids []uint64) string {
	if len(ids) == 0 {
		return "no node"
	}
	s := ""
	for i, id := range ids {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("n%d", id)
	}
	return s
}

// LivenessName is the CLI's word for a node's liveness.
func LivenessName(l rspb.NodeLiveness) string {
	switch l {
	case rspb.NodeLiveness_NODE_LIVE:
		return "live"
	case rspb.NodeLiveness_NODE_SUSPECT:
		return "suspect"
	case rspb.NodeLiveness_NODE_DEAD:
		return "dead"
	}
	return "unknown"
}

// MembershipName is the CLI's word for a node's membership state.
func MembershipName(m rspb.MembershipState) string {
	switch m {
	case rspb.MembershipState_MEMBERSHIP_DRAINING:
		return "draining"
	case rspb.MembershipState_MEMBERSHIP_DECOMMISSIONING:
		return "decommissioning"
	case rspb.MembershipState_MEMBERSHIP_DECOMMISSIONED:
		return "decommissioned"
	}
	return "active"
}
