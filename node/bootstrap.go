package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/rebalance"
)

// PlanRanges lays out the initial ranges: the meta range, the system range
// and the user span cut at the given client split keys, each replicated on
// rf nodes (spread round-robin, each range starting one node further, each
// replica preferring a node in a region, then a zone, no earlier replica of
// the range is in: placeDiverse).
// Replica IDs are the range's own: 1..rf in placement order, so they are
// in general not the node IDs; next_replica_id is rf+1.
func PlanRanges(nodes []*rspb.NodeDescriptor, splitKeys [][]byte, rf int) ([]*rspb.RangeDescriptor, error) {
	if len(nodes) == 0 {
		return nil, errors.New("no nodes")
	}
	if rf <= 0 {
		rf = min(3, len(nodes))
	}
	if rf > len(nodes) {
		return nil, fmt.Errorf("replication factor %d exceeds the %d nodes", rf, len(nodes))
	}
	splits := make([][]byte, 0, len(splitKeys))
	for _, k := range splitKeys {
		if len(k) == 0 {
			return nil, errors.New("empty split key")
		}
		splits = append(splits, keys.UserKey(k))
	}
	sort.Slice(splits, func(i, j int) bool { return string(splits[i]) < string(splits[j]) })
	bounds := [][]byte{keys.KeyMin, keys.SystemStart, keys.UserPrefix}
	for i, s := range splits {
		if i > 0 && string(s) == string(splits[i-1]) {
			return nil, fmt.Errorf("duplicate split key %q", s[len(keys.UserPrefix):])
		}
		if string(s) == string(keys.UserPrefix) {
			continue
		}
		bounds = append(bounds, s)
	}
	bounds = append(bounds, keys.KeyMax)
	var out []*rspb.RangeDescriptor
	held := map[uint64]int{} // replicas placed per node so far
	for i := 0; i+1 < len(bounds); i++ {
		d := &rspb.RangeDescriptor{RangeId: uint64(i + 1), StartKey: bounds[i], EndKey: bounds[i+1], Generation: 1, Sticky: true,
			NextReplicaId: uint64(rf + 1)}
		for j, nd := range placeDiverse(nodes, i, rf, held) {
			d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: nd.NodeId, ReplicaId: uint64(j + 1)})
		}
		sort.Slice(d.Replicas, func(a, b int) bool { return d.Replicas[a].NodeId < d.Replicas[b].NodeId })
		out = append(out, d)
	}
	return out, nil
}

// placeDiverse picks rf of nodes for initial range #i: each next replica
// on the node that adds a locality tier value no chosen node has, at the
// widest tier possible (a new region before a new zone of a used region);
// among those (when nodes have localities), the one holding the fewest
// replicas so far (held, updated), then the first in round-robin order
// from node i. Without localities it is plain round-robin.
func placeDiverse(nodes []*rspb.NodeDescriptor, i, rf int, held map[uint64]int) []*rspb.NodeDescriptor {
	var chosen []*rspb.NodeDescriptor
	used := make([]bool, len(nodes))
	for len(chosen) < rf {
		best, bestTier := -1, 0
		for k := 0; k < len(nodes); k++ {
			c := (i + k) % len(nodes)
			if used[c] {
				continue
			}
			tier := newTier(nodes[c], chosen)
			fewer := best >= 0 && len(nodes[c].Locality) > 0 && tier == bestTier && held[nodes[c].NodeId] < held[nodes[best].NodeId]
			if best < 0 || tier < bestTier || fewer {
				best, bestTier = c, tier
			}
		}
		used[best] = true
		held[nodes[best].NodeId]++
		chosen = append(chosen, nodes[best])
	}
	return chosen
}

// newTier is the widest tier at which n's locality differs from every
// chosen node's (its tiers up to there name a place none of them is in);
// len(tiers)+1 when it differs from none (or has no locality).
func newTier(n *rspb.NodeDescriptor, chosen []*rspb.NodeDescriptor) int {
	for t := range n.Locality {
		shared := false
		for _, c := range chosen {
			same := len(c.Locality) > t
			for u := 0; same && u <= t; u++ {
				same = c.Locality[u].Key == n.Locality[u].Key && c.Locality[u].Value == n.Locality[u].Value
			}
			shared = shared || same
		}
		if !shared {
			return t
		}
	}
	return len(n.Locality) + 1
}

// BootstrapData is the initial MVCC content of a new cluster: a meta record
// per range, the range-ID counter, a directory record per node, the
// node-ID counter at the highest initial node ID (joins continue from it),
// and the replication factor setting if the request has one. Every node
// derives the same data from the same request.
func BootstrapData(req *rspb.BootstrapRequest) []ranges.BootstrapKV {
	var out []ranges.BootstrapKV
	var maxID uint64
	for _, d := range req.Ranges {
		b, _ := proto.Marshal(d)
		out = append(out, ranges.BootstrapKV{Key: keys.MetaKey(d.EndKey), Value: b})
		maxID = max(maxID, d.RangeId)
	}
	if maxID > 0 {
		out = append(out, ranges.BootstrapKV{Key: keys.RangeIDGeneratorKey, Value: ranges.RangeIDCounterValue(maxID)})
	}
	var maxNode uint64
	for _, nd := range req.Nodes {
		b, _ := proto.Marshal(nd)
		out = append(out, ranges.BootstrapKV{Key: keys.NodeKey(nd.NodeId), Value: b})
		maxNode = max(maxNode, nd.NodeId)
	}
	if maxNode > 0 {
		out = append(out, ranges.BootstrapKV{Key: keys.NodeIDGeneratorKey, Value: []byte(strconv.FormatUint(maxNode, 10))})
	}
	if req.ReplicationFactor > 0 {
		out = append(out, ranges.BootstrapKV{Key: keys.ReplicationFactorKey, Value: rebalance.EncodeFactor(int(req.ReplicationFactor))})
	}
	return out
}

// Init bootstraps a new cluster made of this node and every node in its
// join list: it asks each for its descriptor, numbers them, lays out the
// ranges and bootstraps every node.
func (n *Node) Init(ctx context.Context, req *rspb.InitRequest) (*rspb.InitResponse, error) {
	if id := n.ClusterID(); id != "" {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster %s is already initialized", id)
	}
	if n.cfg.ReadReplica {
		return nil, status.Error(codes.FailedPrecondition, "init: this is a read-replica node: it joins a running cluster and is never an initial voter; run init on a voter node")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	self := n.NodeDescriptor()
	descs := []*rspb.NodeDescriptor{self}
	conns := map[string]*grpc.ClientConn{}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	seen := map[string]bool{self.Address: true, self.RaftAddress: true}
	for _, addr := range n.cfg.Join {
		if seen[addr] {
			continue
		}
		c, err := grpc.NewClient(addr, basePeerDialOptions(n.cfg)...)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "join address %q: %v", addr, err)
		}
		conns[addr] = c
		info, err := waitNodeInfo(ctx, rspb.NewInternalClient(c))
		if status.Code(err) == codes.FailedPrecondition { // e.g. a node of the other mode (gateway.ExplainModeMismatch)
			return nil, status.Errorf(codes.FailedPrecondition, "init: %s", status.Convert(err).Message())
		}
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "node %s is not reachable: %v", addr, err)
		}
		if info.ClusterId != "" {
			return nil, status.Errorf(codes.FailedPrecondition, "node %s already belongs to cluster %s", addr, info.ClusterId)
		}
		if err := checkPeerMode(self, info.Node, addr); err != nil {
			return nil, status.Error(codes.FailedPrecondition, "init: "+err.Error())
		}
		if info.Node.GetReadReplica() {
			return nil, status.Errorf(codes.FailedPrecondition, "node %s is a read-replica node: it joins once the cluster runs and is never an initial voter (leave it out of the init nodes' --join)", addr)
		}
		if seen[info.Node.RaftAddress] {
			continue
		}
		seen[info.Node.RaftAddress] = true
		info.Node.Address = addr
		descs = append(descs, info.Node)
	}
	sort.Slice(descs, func(i, j int) bool { return descs[i].Address < descs[j].Address })
	for i, d := range descs {
		d.NodeId = uint64(i + 1)
	}
	splits := req.SplitKeys
	if len(splits) == 0 {
		splits = keys.DefaultSplitKeys(int(req.InitialSplits))
	}
	factor := int(req.ReplicationFactor)
	if factor == 0 {
		factor = rebalance.DefaultReplicationFactor
	}
	if err := rebalance.ValidateFactor(factor); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "replication_factor: %v", err)
	}
	// The initial ranges get as many voters as there are nodes, up to the
	// factor; the replicate queue adds the rest as nodes join.
	plan, err := PlanRanges(descs, splits, min(factor, len(descs)))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	idb := make([]byte, 16)
	_, _ = rand.Read(idb)
	clusterID := hex.EncodeToString(idb)
	ts := ranges.TSToProto(n.cfg.Clock.Now())
	for _, d := range descs {
		breq := &rspb.BootstrapRequest{ClusterId: clusterID, NodeId: d.NodeId, Nodes: descs, Ranges: plan, Timestamp: ts,
			ReplicationFactor: int32(factor)}
		var err error
		if d.Address == self.Address {
			err = n.Bootstrap(ctx, breq)
		} else {
			_, err = rspb.NewInternalClient(conns[d.Address]).Bootstrap(ctx, breq)
		}
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "bootstrapping node %s as n%d: %v", d.Address, d.NodeId, err)
		}
	}
	n.log.Info("cluster initialized", "cluster", clusterID, "nodes", len(descs), "ranges", len(plan))
	return &rspb.InitResponse{ClusterId: clusterID, Nodes: descs, Ranges: plan}, nil
}

// waitNodeInfo asks for a node's NodeInfo until it answers (a node not
// yet serving is Unavailable) or refuses (any other error: returned at
// once), or ctx ends.
func waitNodeInfo(ctx context.Context, c rspb.InternalClient) (*rspb.NodeInfoResponse, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := c.NodeInfo(actx, &rspb.NodeInfoRequest{})
		cancel()
		if err == nil {
			return info, nil
		}
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// CheckMetaTiles checks that meta descriptors, in meta order (by end key),
// cover the keyspace exactly once: each starts where the previous ended, the
// last ends at KeyMax, and no range appears twice.
func CheckMetaTiles(descs []*rspb.RangeDescriptor) error {
	prev := keys.KeyMin
	seen := map[uint64]bool{}
	for _, d := range descs {
		if !bytes.Equal(d.StartKey, prev) {
			return fmt.Errorf("meta: r%d starts at %s but the previous range ends at %s (gap or overlap)", d.RangeId, keys.Pretty(d.StartKey), keys.Pretty(prev))
		}
		if seen[d.RangeId] {
			return fmt.Errorf("meta: r%d appears twice", d.RangeId)
		}
		seen[d.RangeId] = true
		prev = d.EndKey
	}
	if !bytes.Equal(prev, keys.KeyMax) {
		return fmt.Errorf("meta: the last range ends at %s, not at the end of the keyspace", keys.Pretty(prev))
	}
	return nil
}

// validateBootstrap checks a bootstrap request before anything is written:
// its layout (ValidateLayout) and its membership, which must be this
// node's: the request names this node (its Raft address) and exactly the
// nodes of its join list, so a caller cannot make a waiting node join a
// cluster of its own making.
func (n *Node) validateBootstrap(ctx context.Context, req *rspb.BootstrapRequest) error {
	if err := ValidateLayout(req); err != nil {
		return status.Error(codes.InvalidArgument, "bootstrap: "+err.Error())
	}
	var self *rspb.NodeDescriptor
	for _, d := range req.Nodes {
		if d.NodeId == req.NodeId {
			self = d
		}
	}
	if self.RaftAddress != n.cfg.RaftAddr {
		return status.Errorf(codes.PermissionDenied, "bootstrap: n%d has raft address %s, but this node's raft address is %s", req.NodeId, self.RaftAddress, n.cfg.RaftAddr)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	own := []string{n.Addr(), n.cfg.ListenAddr, n.cfg.RaftAddr}
	if !anyAddrMatch(rctx, self.Address, own) {
		return status.Errorf(codes.PermissionDenied, "bootstrap: n%d has address %s, which is not this node's address %s", req.NodeId, self.Address, n.Addr())
	}
	for _, d := range req.Nodes {
		if d.NodeId != req.NodeId && !anyAddrMatch(rctx, d.Address, n.cfg.Join) {
			return status.Errorf(codes.PermissionDenied, "bootstrap: n%d at %s is not in this node's join list %v", d.NodeId, d.Address, n.cfg.Join)
		}
	}
	for _, j := range n.cfg.Join {
		if anyAddrMatch(rctx, j, own) {
			continue
		}
		found := false
		for _, d := range req.Nodes {
			if d.NodeId != req.NodeId && addrMatch(rctx, j, d.Address) {
				found = true
				break
			}
		}
		if !found {
			return status.Errorf(codes.PermissionDenied, "bootstrap: join list address %s is not a member of the requested cluster", j)
		}
	}
	return nil
}

// ValidateLayout checks a bootstrap request's layout: a cluster ID; nodes
// with distinct non-zero IDs and addresses, one of them the request's node;
// the meta range [/Min, /System) as r1, the system range
// [/System, /User) as r2, and user ranges tiling [/User, /Max) exactly,
// with distinct range IDs, positive generations and replicas (distinct
// non-zero replica IDs, below next_replica_id when that is set) on
// distinct known nodes. Replica IDs need not be node IDs.
func ValidateLayout(req *rspb.BootstrapRequest) error {
	if req.ClusterId == "" {
		return errors.New("empty cluster ID")
	}
	if req.Timestamp == nil || req.Timestamp.WallTime <= 0 {
		return errors.New("missing timestamp")
	}
	if f := req.ReplicationFactor; f != 0 {
		if err := rebalance.ValidateFactor(int(f)); err != nil {
			return fmt.Errorf("replication_factor: %w", err)
		}
	}
	nodes := map[uint64]bool{}
	addrs := map[string]bool{}
	for _, d := range req.Nodes {
		switch {
		case d.NodeId == 0:
			return errors.New("node descriptor with node ID 0")
		case nodes[d.NodeId]:
			return fmt.Errorf("node n%d appears twice", d.NodeId)
		case d.Address == "" || d.RaftAddress == "":
			return fmt.Errorf("node n%d has no address or raft address", d.NodeId)
		case addrs[d.Address] || addrs["raft "+d.RaftAddress]:
			return fmt.Errorf("node n%d's address %s or raft address %s is used twice", d.NodeId, d.Address, d.RaftAddress)
		}
		nodes[d.NodeId], addrs[d.Address], addrs["raft "+d.RaftAddress] = true, true, true
	}
	if !nodes[req.NodeId] {
		return fmt.Errorf("node n%d is not among the request's nodes", req.NodeId)
	}
	rs := append([]*rspb.RangeDescriptor(nil), req.Ranges...)
	sort.Slice(rs, func(i, j int) bool { return bytes.Compare(rs[i].StartKey, rs[j].StartKey) < 0 })
	if len(rs) < 3 {
		return fmt.Errorf("%d ranges: a layout needs the meta range, the system range and at least one user range", len(rs))
	}
	if rs[0].RangeId != ranges.MetaRangeID || !bytes.Equal(rs[0].EndKey, keys.SystemStart) {
		return fmt.Errorf("the layout must begin with the meta range r%d [%s, %s) and then the system range; it begins with r%d [%s, %s)",
			ranges.MetaRangeID, keys.Pretty(keys.KeyMin), keys.Pretty(keys.SystemStart), rs[0].RangeId, keys.Pretty(rs[0].StartKey), keys.Pretty(rs[0].EndKey))
	}
	if rs[1].RangeId != ranges.SystemRangeID || !bytes.Equal(rs[1].StartKey, keys.SystemStart) || !bytes.Equal(rs[1].EndKey, keys.UserPrefix) {
		return fmt.Errorf("the second range must be the system range r%d [%s, %s)", ranges.SystemRangeID, keys.Pretty(keys.SystemStart), keys.Pretty(keys.UserPrefix))
	}
	if err := CheckMetaTiles(rs); err != nil {
		return err
	}
	for _, d := range rs {
		if d.RangeId == 0 || d.Generation == 0 || bytes.Compare(d.StartKey, d.EndKey) >= 0 {
			return fmt.Errorf("r%d: invalid range ID, generation or empty span", d.RangeId)
		}
		if len(d.Replicas) == 0 {
			return fmt.Errorf("r%d has no replicas", d.RangeId)
		}
		repNodes, repIDs := map[uint64]bool{}, map[uint64]bool{}
		for _, r := range d.Replicas {
			switch {
			case !nodes[r.NodeId]:
				return fmt.Errorf("r%d has a replica on n%d, which is not among the request's nodes", d.RangeId, r.NodeId)
			case r.ReplicaId == 0 || repIDs[r.ReplicaId] || repNodes[r.NodeId]:
				return fmt.Errorf("r%d: replica IDs and nodes must be distinct and non-zero", d.RangeId)
			case r.Type != rspb.ReplicaType_VOTER:
				return fmt.Errorf("r%d: initial replicas must be voters", d.RangeId)
			}
			repNodes[r.NodeId], repIDs[r.ReplicaId] = true, true
			if n := d.NextReplicaId; n != 0 && n <= r.ReplicaId {
				return fmt.Errorf("r%d: next_replica_id %d is not above replica ID %d", d.RangeId, n, r.ReplicaId)
			}
		}
	}
	return nil
}

// anyAddrMatch reports whether a matches one of the addresses in list.
func anyAddrMatch(ctx context.Context, a string, list []string) bool {
	for _, b := range list {
		if addrMatch(ctx, a, b) {
			return true
		}
	}
	return false
}

// addrMatch reports whether two host:port addresses name the same endpoint:
// the same port, and the same host, or hosts resolving to a common IP, or
// an unspecified host (":26257", "0.0.0.0") on either side.
func addrMatch(ctx context.Context, a, b string) bool {
	if a == b {
		return true
	}
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb {
		return false
	}
	ipsA, ipsB := resolveHost(ctx, ha), resolveHost(ctx, hb)
	for _, x := range ipsA {
		if x.IsUnspecified() {
			return true
		}
		for _, y := range ipsB {
			if y.IsUnspecified() || x.Equal(y) {
				return true
			}
		}
	}
	for _, y := range ipsB {
		if y.IsUnspecified() {
			return true
		}
	}
	return false
}

// resolveHost returns a host's IPs ("" is the unspecified address).
func resolveHost(ctx context.Context, h string) []net.IP {
	if h == "" {
		return []net.IP{net.IPv4zero}
	}
	if ip := net.ParseIP(h); ip != nil {
		return []net.IP{ip}
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, h)
	if err != nil {
		return nil
	}
	out := make([]net.IP, len(addrs))
	for i, a := range addrs {
		out[i] = a.IP
	}
	return out
}
