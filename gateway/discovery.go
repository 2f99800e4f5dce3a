package gateway

import (
	"bytes"
	"context"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// The Discovery service (issue 13): the routing table of a span of client
// keys, per range the write server (the leaseholder) and the read servers
// (the other voters and the non-voters: read replicas first of all), with
// a TTL. The client contract is the proto's: refresh on TTL expiry, on
// NOT_LEASEHOLDER from a write server, and when every listed server of a
// range failed.

// Routing table defaults and bounds.
const (
	// DefaultRoutingTTL is how long a client may use a routing table
	// (Neo4j's routing TTL; rangestore start --routing-ttl).
	DefaultRoutingTTL = 300 * time.Second
	// DefaultRoutingLimit and MaxRoutingLimit bound the ranges of one
	// answer (GetRoutingTableRequest.limit).
	DefaultRoutingLimit = 1000
	MaxRoutingLimit     = 10000
)

// Routing roles of RoutingServer.role.
const (
	RoleVoter       = "voter"
	RoleReadReplica = "read-replica"
	RoleNonVoter    = "non-voter"
)

// RoutingInput is what a routing table is built from.
type RoutingInput struct {
	Req *rspb.GetRoutingTableRequest
	// Descs are the range descriptors of meta (any order).
	Descs []*rspb.RangeDescriptor
	// Leaseholders maps a range ID to the node holding its lease as known
	// by the answering node (missing or 0: unknown).
	Leaseholders map[uint64]uint64
	// Nodes is the node directory by ID (address, locality, role).
	Nodes map[uint64]*rspb.NodeDescriptor
	// Down lists the nodes not to hand out, with why (a dead or
	// decommissioned node, a read replica whose whiteboard entry is
	// hidden or gone).
	Down map[uint64]string
	TTL  time.Duration
	// ClosedLags is each node's closed-timestamp lag as its gossiped store
	// descriptor says (missing: unknown), copied into its servers.
	ClosedLags map[uint64]time.Duration
}

// ValidateRoutingRequest checks a routing table request: an InvalidArgument
// status naming the field, or nil.
func ValidateRoutingRequest(req *rspb.GetRoutingTableRequest) error {
	switch {
	case len(req.GetEndKey()) > 0 && bytes.Compare(req.GetEndKey(), req.GetStartKey()) <= 0:
		return status.Errorf(codes.InvalidArgument, "end_key %q: must be after start_key %q (or empty: to the end of the keyspace)", req.GetEndKey(), req.GetStartKey())
	case req.GetLimit() < 0:
		return status.Errorf(codes.InvalidArgument, "limit %d: must not be negative (0: %d)", req.GetLimit(), DefaultRoutingLimit)
	case req.GetLimit() > MaxRoutingLimit:
		return status.Errorf(codes.InvalidArgument, "limit %d: at most %d", req.GetLimit(), MaxRoutingLimit)
	}
	for i, t := range req.GetLocality() {
		if t.GetKey() == "" || t.GetValue() == "" {
			return status.Errorf(codes.InvalidArgument, "locality[%d]: a tier needs a key and a value (got %q=%q)", i, t.GetKey(), t.GetValue())
		}
	}
	return nil
}

// BuildRoutingTable builds the routing table of in.Req's span (pure: the
// same input gives the same table). The ranges overlapping the span in
// key order, their bounds clipped to it, at most the limit (more says
// whether the span holds more). Per range: the writer is the leaseholder
// if known, on a node not down and holding a voter of the range; the
// readers are the range's other replicas on nodes not down (the writer
// too with include_writer), nearest to the request's locality first (the
// most leading tiers in common), then voters before non-voters, then by
// node ID.
func BuildRoutingTable(in RoutingInput) (*rspb.GetRoutingTableResponse, error) {
	if err := ValidateRoutingRequest(in.Req); err != nil {
		return nil, err
	}
	limit := int(in.Req.GetLimit())
	if limit == 0 {
		limit = DefaultRoutingLimit
	}
	ttl := in.TTL
	if ttl <= 0 {
		ttl = DefaultRoutingTTL
	}
	start, end := keys.UserSpan(in.Req.GetStartKey(), in.Req.GetEndKey())
	descs := append([]*rspb.RangeDescriptor(nil), in.Descs...)
	sort.Slice(descs, func(i, j int) bool { return bytes.Compare(descs[i].StartKey, descs[j].StartKey) < 0 })
	out := &rspb.GetRoutingTableResponse{TtlSeconds: int64((ttl + time.Second - 1) / time.Second)}
	for _, d := range descs {
		if !keys.Overlaps(d.StartKey, d.EndKey, start, end) {
			continue
		}
		if len(out.Ranges) == limit {
			out.More = true
			break
		}
		e := &rspb.RoutingEntry{RangeId: d.RangeId, Generation: d.Generation}
		s, en := d.StartKey, d.EndKey
		if bytes.Compare(s, start) < 0 {
			s = start
		}
		if bytes.Compare(en, end) > 0 {
			en = end
		}
		e.StartKey, _ = keys.ClientKey(s)
		if !bytes.Equal(en, keys.UserSpanEnd) {
			e.EndKey, _ = keys.ClientKey(en)
		}
		writer := in.Leaseholders[d.RangeId]
		var readers []*rspb.RoutingServer
		for _, rep := range d.Replicas {
			srv := in.server(rep)
			if srv == nil {
				continue
			}
			if rep.NodeId == writer && rep.Type == rspb.ReplicaType_VOTER {
				e.Writer = srv
				if !in.Req.GetIncludeWriter() {
					continue
				}
			}
			readers = append(readers, srv)
		}
		sortReaders(readers, in.Req.GetLocality())
		e.Readers = readers
		out.Ranges = append(out.Ranges, e)
	}
	return out, nil
}

// server is the routing entry of a replica's node (nil: unknown or down).
func (in RoutingInput) server(rep *rspb.ReplicaDescriptor) *rspb.RoutingServer {
	n := in.Nodes[rep.NodeId]
	if n == nil || n.Address == "" {
		return nil
	}
	if _, down := in.Down[rep.NodeId]; down {
		return nil
	}
	role := RoleVoter
	switch {
	case rep.Type == rspb.ReplicaType_NON_VOTER && n.ReadReplica:
		role = RoleReadReplica
	case rep.Type == rspb.ReplicaType_NON_VOTER:
		role = RoleNonVoter
	}
	return &rspb.RoutingServer{NodeId: n.NodeId, Address: n.Address, Locality: n.Locality, Role: role,
		ClosedTimestampLagNanos: int64(in.ClosedLags[rep.NodeId])}
}

// sortReaders orders readers nearest to loc first (leading tiers in
// common), then voters first, then by node ID.
func sortReaders(readers []*rspb.RoutingServer, loc []*rspb.LocalityTier) {
	near := func(s *rspb.RoutingServer) int {
		n := 0
		for n < len(loc) && n < len(s.Locality) && loc[n].Key == s.Locality[n].Key && loc[n].Value == s.Locality[n].Value {
			n++
		}
		return n
	}
	sort.SliceStable(readers, func(i, j int) bool {
		a, b := readers[i], readers[j]
		if na, nb := near(a), near(b); na != nb {
			return na > nb
		}
		if (a.Role == RoleVoter) != (b.Role == RoleVoter) {
			return a.Role == RoleVoter
		}
		return a.NodeId < b.NodeId
	})
}

// RoutingBackend is what the Discovery service needs of its node.
type RoutingBackend interface {
	// RoutingInput gathers the views of a routing table for req.
	RoutingInput(ctx context.Context, req *rspb.GetRoutingTableRequest) (RoutingInput, error)
}

// DiscoveryServer implements rspb.DiscoveryServer on every node.
type DiscoveryServer struct {
	rspb.UnimplementedDiscoveryServer
	node RoutingBackend
}

// NewDiscoveryServer returns the Discovery service of a node.
func NewDiscoveryServer(node RoutingBackend) *DiscoveryServer { return &DiscoveryServer{node: node} }

// GetRoutingTable validates the request (before any I/O), gathers the
// views and builds the table.
func (s *DiscoveryServer) GetRoutingTable(ctx context.Context, req *rspb.GetRoutingTableRequest) (*rspb.GetRoutingTableResponse, error) {
	if err := ValidateRoutingRequest(req); err != nil {
		return nil, err
	}
	in, err := s.node.RoutingInput(ctx, req)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Errorf(codes.Unavailable, "routing table: %v", err)
	}
	return BuildRoutingTable(in)
}
