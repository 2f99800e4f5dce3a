package gateway

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// NodeBackend is what the node offers to the internal and admin services.
type NodeBackend interface {
	LocalStore
	NodeDescriptor() *rspb.NodeDescriptor
	ClusterID() string
	// MetaRange is the newest descriptor of the meta range the node knows.
	MetaRange() *rspb.RangeDescriptor
	Bootstrap(ctx context.Context, req *rspb.BootstrapRequest) error
	Init(ctx context.Context, req *rspb.InitRequest) (*rspb.InitResponse, error)
	Ranges() []*rspb.RangeInfo
	TransferLease(ctx context.Context, rangeID, target uint64) error
	// TransferLeaseTo is TransferLease that also reports whether target
	// held the lease already.
	TransferLeaseTo(ctx context.Context, rangeID, target uint64) (alreadyHeld bool, err error)
	// SplitRange splits the range holding the internal key at it.
	SplitRange(ctx context.Context, key []byte) (*rspb.AdminSplitResponse, error)
	// MergeRange merges the range holding the internal key with its right
	// neighbour.
	MergeRange(ctx context.Context, key []byte) (*rspb.AdminMergeResponse, error)
	// Join admits a node with an empty store into the cluster.
	Join(ctx context.Context, req *rspb.JoinRequest) (*rspb.JoinResponse, error)
	// NodeStats counts the local replicas, valid leases held and bytes.
	NodeStats() (replicas, leases, bytes int64)
	// NodeStatuses reports every node's status (nodeID 0) or one node's.
	NodeStatuses(ctx context.Context, nodeID uint64) ([]*rspb.NodeStatus, error)
	// ChangeReplicas adds, then removes, replicas of a range (one at a
	// time); RelocateRange moves its voters to exactly voters, the lease
	// to voters[0].
	ChangeReplicas(ctx context.Context, rangeID uint64, add, remove []uint64) (*rspb.RangeDescriptor, error)
	RelocateRange(ctx context.Context, rangeID uint64, voters []uint64) (*rspb.RangeDescriptor, error)
	// SetReplicationFactor changes the replication factor setting.
	SetReplicationFactor(ctx context.Context, factor int) (*rspb.SetReplicationFactorResponse, error)
	// SetClusterSetting validates, writes and applies a cluster setting.
	SetClusterSetting(ctx context.Context, name, value string) (*rspb.SetClusterSettingResponse, error)
	// DrainSelf drains this node without stopping it: the leases moved and
	// the ranges whose lease is left when ctx ends. DrainNode drains node
	// id (this one or another) and fails naming the leases left.
	DrainSelf(ctx context.Context) (moved int64, left []uint64)
	DrainNode(ctx context.Context, id uint64) (moved int64, err error)
	// Decommission marks nodes decommissioning (finish: decommissioned)
	// and reports their progress; Recommission undoes an unfinished one.
	Decommission(ctx context.Context, ids []uint64, finish bool) ([]*rspb.DecommissionNodeStatus, error)
	Recommission(ctx context.Context, id uint64) (*rspb.RecommissionResponse, error)
	// GossipAddr is where this node gossips its store descriptor ("" when
	// it does not yet).
	GossipAddr() string
	// Certs describes the certificates the node uses (none when insecure).
	Certs() []*rspb.CertInfo
	// Transactions lists the transactions this node coordinates.
	Transactions() []TxnInfo
	// ExplainRange says what the allocator would do with a range, and why.
	ExplainRange(ctx context.Context, rangeID uint64) (*rspb.ExplainRangeResponse, error)
	// AllocatorPlan lists the replica changes the queues would make now.
	AllocatorPlan(ctx context.Context) (*rspb.AllocatorPlanResponse, error)
	// SetZone, GetZone and ListZones manage zone configs.
	SetZone(ctx context.Context, req *rspb.SetZoneRequest) (*rspb.SetZoneResponse, error)
	GetZone(ctx context.Context, key []byte) (*rspb.GetZoneResponse, error)
	ListZones(ctx context.Context) (*rspb.ListZonesResponse, error)
}

// InternalServer serves peers: range batches, node info, bootstrap.
type InternalServer struct {
	rspb.UnimplementedInternalServer
	node NodeBackend
}

// NewInternalServer returns the internal service.
func NewInternalServer(node NodeBackend) *InternalServer { return &InternalServer{node: node} }

// RangeBatch runs a batch on a local replica.
func (s *InternalServer) RangeBatch(ctx context.Context, r *rspb.RangeRequest) (*rspb.RangeResponse, error) {
	return s.node.Send(ctx, r), nil
}

// NodeInfo describes this node.
func (s *InternalServer) NodeInfo(context.Context, *rspb.NodeInfoRequest) (*rspb.NodeInfoResponse, error) {
	r := &rspb.NodeInfoResponse{Node: s.node.NodeDescriptor(), ClusterId: s.node.ClusterID(), GossipAddress: s.node.GossipAddr(),
		Certs: s.node.Certs()}
	if r.ClusterId != "" {
		r.ReplicaCount, r.LeaseCount, r.Bytes = s.node.NodeStats()
		r.MetaRange = s.node.MetaRange()
	}
	return r, nil
}

// Join admits a node with an empty store into this node's cluster.
func (s *InternalServer) Join(ctx context.Context, r *rspb.JoinRequest) (*rspb.JoinResponse, error) {
	resp, err := s.node.Join(ctx, r)
	return resp, ToStatus(err)
}

// Drain drains this node without stopping it, until it holds no lease
// or the call's deadline.
func (s *InternalServer) Drain(ctx context.Context, _ *rspb.DrainRequest) (*rspb.DrainResponse, error) {
	if s.node.ClusterID() == "" {
		return nil, status.Error(codes.FailedPrecondition, "node not initialized: nothing to drain")
	}
	moved, left := s.node.DrainSelf(ctx)
	return &rspb.DrainResponse{LeasesMoved: moved, RangeIdsLeft: left}, nil
}

// Bootstrap makes this node a member of a new cluster.
func (s *InternalServer) Bootstrap(ctx context.Context, r *rspb.BootstrapRequest) (*rspb.BootstrapResponse, error) {
	if err := s.node.Bootstrap(ctx, r); err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err // an invalid request (InvalidArgument, PermissionDenied)
		}
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return &rspb.BootstrapResponse{}, nil
}

// AdminServer is the operator API.
type AdminServer struct {
	rspb.UnimplementedAdminServer
	node NodeBackend
}

// NewAdminServer returns the admin service.
func NewAdminServer(node NodeBackend) *AdminServer { return &AdminServer{node: node} }

// Init bootstraps a cluster from this node and its join list.
func (s *AdminServer) Init(ctx context.Context, r *rspb.InitRequest) (*rspb.InitResponse, error) {
	resp, err := s.node.Init(ctx, r)
	return resp, ToStatus(err)
}

// Ranges lists the replicas on this node (those of range_ids, if given).
func (s *AdminServer) Ranges(_ context.Context, r *rspb.RangesRequest) (*rspb.RangesResponse, error) {
	if s.node.ClusterID() == "" {
		return nil, status.Error(codes.FailedPrecondition, "node not initialized (run `rangestore init`)")
	}
	all := s.node.Ranges()
	if len(r.RangeIds) == 0 {
		return &rspb.RangesResponse{Ranges: all}, nil
	}
	want := make(map[uint64]bool, len(r.RangeIds))
	for _, id := range r.RangeIds {
		want[id] = true
	}
	out := &rspb.RangesResponse{}
	for _, ri := range all {
		if want[ri.RangeDescriptor.GetRangeId()] {
			out.Ranges = append(out.Ranges, ri)
		}
	}
	return out, nil
}

// TransferLease moves a range's lease.
func (s *AdminServer) TransferLease(ctx context.Context, r *rspb.TransferLeaseRequest) (*rspb.TransferLeaseResponse, error) {
	held, err := s.node.TransferLeaseTo(ctx, r.RangeId, r.TargetNodeId)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.TransferLeaseResponse{AlreadyHeld: held}, nil
}

// SplitRange splits the range containing a client key at that key.
func (s *AdminServer) SplitRange(ctx context.Context, r *rspb.SplitRangeRequest) (*rspb.SplitRangeResponse, error) {
	if len(r.Key) == 0 {
		return nil, invalidf("split key must not be empty")
	}
	if len(r.Key) > DefaultLimits.MaxKeySize {
		return nil, invalidf("split key of %d bytes exceeds max_key_size %d", len(r.Key), DefaultLimits.MaxKeySize)
	}
	res, err := s.node.SplitRange(ctx, keys.UserKey(r.Key))
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.SplitRangeResponse{Left: res.Left, Right: res.Right}, nil
}

// Nodes lists every node of the directory with its status.
func (s *AdminServer) Nodes(ctx context.Context, _ *rspb.NodesRequest) (*rspb.NodesResponse, error) {
	st, err := s.node.NodeStatuses(ctx, 0)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.NodesResponse{Nodes: st}, nil
}

// ListTransactions lists the transactions this node coordinates.
func (s *AdminServer) ListTransactions(_ context.Context, _ *rspb.ListTransactionsRequest) (*rspb.ListTransactionsResponse, error) {
	out := &rspb.ListTransactionsResponse{NodeId: s.node.NodeID()}
	for _, t := range s.node.Transactions() {
		ti := &rspb.TransactionInfo{Id: t.ID, Anchor: clientKey(t.Anchor), ReadTimestamp: ranges.TSToProto(t.ReadTimestamp),
			WriteTimestamp: ranges.TSToProto(t.WriteTimestamp), AgeMillis: t.Age.Milliseconds(), WriteSpans: int32(t.WriteSpans),
			WaitingOn: t.WaitingOn, WaitingMillis: t.WaitingFor.Milliseconds()}
		for _, k := range t.WaitingKeys {
			ti.WaitingKeys = append(ti.WaitingKeys, clientKey(k))
		}
		out.Transactions = append(out.Transactions, ti)
	}
	return out, nil
}

// clientKey is an internal key as a client wrote it (the internal key if
// it is not a user key).
func clientKey(k []byte) []byte {
	if len(k) == 0 {
		return nil
	}
	if c, err := keys.ClientKey(k); err == nil {
		return c
	}
	return k
}

// NodeStatus reports one node's status.
func (s *AdminServer) NodeStatus(ctx context.Context, r *rspb.NodeStatusRequest) (*rspb.NodeStatusResponse, error) {
	if r.NodeId == 0 {
		return nil, invalidf("node_id must be set (n1 is 1)")
	}
	st, err := s.node.NodeStatuses(ctx, r.NodeId)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.NodeStatusResponse{Status: st[0]}, nil
}

// MergeRange merges the range containing a client key with its right
// neighbour.
func (s *AdminServer) MergeRange(ctx context.Context, r *rspb.MergeRangeRequest) (*rspb.MergeRangeResponse, error) {
	if len(r.Key) == 0 {
		return nil, invalidf("merge key must not be empty")
	}
	if len(r.Key) > DefaultLimits.MaxKeySize {
		return nil, invalidf("key of %d bytes exceeds max_key_size %d", len(r.Key), DefaultLimits.MaxKeySize)
	}
	res, err := s.node.MergeRange(ctx, keys.UserKey(r.Key))
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.MergeRangeResponse{Merged: res.Merged, Absorbed: res.Absorbed}, nil
}

// checkNodeIDs refuses a node list with a zero or repeated ID.
func checkNodeIDs(field string, ids []uint64, seen map[uint64]string) error {
	for i, id := range ids {
		if id == 0 {
			return invalidf("%s[%d] must be a node ID (got 0)", field, i)
		}
		if other, dup := seen[id]; dup {
			return invalidf("n%d is named twice (in %s and %s)", id, other, field)
		}
		seen[id] = field
	}
	return nil
}

// ChangeReplicas adds and removes replicas of a range.
func (s *AdminServer) ChangeReplicas(ctx context.Context, r *rspb.ChangeReplicasRequest) (*rspb.ChangeReplicasResponse, error) {
	if r.RangeId == 0 {
		return nil, invalidf("range_id must be set")
	}
	if len(r.AddNodeIds)+len(r.RemoveNodeIds) == 0 {
		return nil, invalidf("add_node_ids and remove_node_ids are both empty: name at least one node")
	}
	seen := map[uint64]string{}
	if err := checkNodeIDs("add_node_ids", r.AddNodeIds, seen); err != nil {
		return nil, err
	}
	if err := checkNodeIDs("remove_node_ids", r.RemoveNodeIds, seen); err != nil {
		return nil, err
	}
	d, err := s.node.ChangeReplicas(ctx, r.RangeId, r.AddNodeIds, r.RemoveNodeIds)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.ChangeReplicasResponse{RangeDescriptor: d}, nil
}

// ExplainRange says what the allocator would do with a range now, and why.
func (s *AdminServer) ExplainRange(ctx context.Context, r *rspb.ExplainRangeRequest) (*rspb.ExplainRangeResponse, error) {
	if r.RangeId == 0 {
		return nil, invalidf("range_id: required")
	}
	resp, err := s.node.ExplainRange(ctx, r.RangeId)
	return resp, ToStatus(err)
}

// AllocatorPlan lists the replica changes the queues would make now.
func (s *AdminServer) AllocatorPlan(ctx context.Context, _ *rspb.AllocatorPlanRequest) (*rspb.AllocatorPlanResponse, error) {
	resp, err := s.node.AllocatorPlan(ctx)
	return resp, ToStatus(err)
}

// SetZone sets fields of a span's zone config.
func (s *AdminServer) SetZone(ctx context.Context, r *rspb.SetZoneRequest) (*rspb.SetZoneResponse, error) {
	resp, err := s.node.SetZone(ctx, r)
	return resp, ToStatus(err)
}

// GetZone is the zone config a client key is under.
func (s *AdminServer) GetZone(ctx context.Context, r *rspb.GetZoneRequest) (*rspb.GetZoneResponse, error) {
	resp, err := s.node.GetZone(ctx, r.Key)
	return resp, ToStatus(err)
}

// ListZones lists the zone config records.
func (s *AdminServer) ListZones(ctx context.Context, _ *rspb.ListZonesRequest) (*rspb.ListZonesResponse, error) {
	resp, err := s.node.ListZones(ctx)
	return resp, ToStatus(err)
}

// RelocateRange moves a range's voters to the given nodes.
func (s *AdminServer) RelocateRange(ctx context.Context, r *rspb.RelocateRangeRequest) (*rspb.RelocateRangeResponse, error) {
	if r.RangeId == 0 {
		return nil, invalidf("range_id must be set")
	}
	if len(r.VoterNodeIds) == 0 {
		return nil, invalidf("voter_node_ids must name at least one node (a range needs a voter)")
	}
	if err := checkNodeIDs("voter_node_ids", r.VoterNodeIds, map[uint64]string{}); err != nil {
		return nil, err
	}
	d, err := s.node.RelocateRange(ctx, r.RangeId, r.VoterNodeIds)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.RelocateRangeResponse{RangeDescriptor: d}, nil
}

// SetReplicationFactor changes the cluster's replication factor setting
// (validated by the node: odd, 1 to 9).
func (s *AdminServer) SetReplicationFactor(ctx context.Context, r *rspb.SetReplicationFactorRequest) (*rspb.SetReplicationFactorResponse, error) {
	resp, err := s.node.SetReplicationFactor(ctx, int(r.ReplicationFactor))
	return resp, ToStatus(err)
}

// SetClusterSetting changes a cluster setting (validated by the node).
func (s *AdminServer) SetClusterSetting(ctx context.Context, r *rspb.SetClusterSettingRequest) (*rspb.SetClusterSettingResponse, error) {
	if r.Name == "" {
		return nil, invalidf("name must be set (closed_timestamp_target or replication_factor)")
	}
	resp, err := s.node.SetClusterSetting(ctx, r.Name, r.Value)
	return resp, ToStatus(err)
}

// DrainNode drains a node without stopping it.
func (s *AdminServer) DrainNode(ctx context.Context, r *rspb.DrainNodeRequest) (*rspb.DrainNodeResponse, error) {
	if r.NodeId == 0 {
		return nil, invalidf("node_id must be set (n1 is 1)")
	}
	moved, err := s.node.DrainNode(ctx, r.NodeId)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.DrainNodeResponse{LeasesMoved: moved}, nil
}

// Decommission marks nodes decommissioning, or (finish) decommissioned.
func (s *AdminServer) Decommission(ctx context.Context, r *rspb.DecommissionRequest) (*rspb.DecommissionResponse, error) {
	if len(r.NodeIds) == 0 {
		return nil, invalidf("node_ids must name at least one node")
	}
	if err := checkNodeIDs("node_ids", r.NodeIds, map[uint64]string{}); err != nil {
		return nil, err
	}
	st, err := s.node.Decommission(ctx, r.NodeIds, r.Finish)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.DecommissionResponse{Nodes: st}, nil
}

// Recommission undoes an unfinished decommission.
func (s *AdminServer) Recommission(ctx context.Context, r *rspb.RecommissionRequest) (*rspb.RecommissionResponse, error) {
	if r.NodeId == 0 {
		return nil, invalidf("node_id must be set (n1 is 1)")
	}
	resp, err := s.node.Recommission(ctx, r.NodeId)
	return resp, ToStatus(err)
}
