package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// PlanRanges lays out the initial ranges: the meta range, the system range
// and the user span cut at the given client split keys, each replicated on
// rf nodes (spread round-robin). Replica IDs equal node IDs.
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
	for i := 0; i+1 < len(bounds); i++ {
		d := &rspb.RangeDescriptor{RangeId: uint64(i + 1), StartKey: bounds[i], EndKey: bounds[i+1], Generation: 1, Sticky: true}
		for j := 0; j < rf; j++ {
			nd := nodes[(i+j)%len(nodes)]
			d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: nd.NodeId, ReplicaId: nd.NodeId})
		}
		sort.Slice(d.Replicas, func(a, b int) bool { return d.Replicas[a].NodeId < d.Replicas[b].NodeId })
		out = append(out, d)
	}
	return out, nil
}

// BootstrapData is the initial MVCC content of a new cluster: a meta record
// per range and a record per node. Every node derives the same data from the
// same request.
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
	for _, nd := range req.Nodes {
		b, _ := proto.Marshal(nd)
		out = append(out, ranges.BootstrapKV{Key: keys.NodeKey(nd.NodeId), Value: b})
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
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "join address %q: %v", addr, err)
		}
		conns[addr] = c
		info, err := waitNodeInfo(ctx, rspb.NewInternalClient(c))
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "node %s is not reachable: %v", addr, err)
		}
		if info.ClusterId != "" {
			return nil, status.Errorf(codes.FailedPrecondition, "node %s already belongs to cluster %s", addr, info.ClusterId)
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
	plan, err := PlanRanges(descs, splits, int(req.ReplicationFactor))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	idb := make([]byte, 16)
	_, _ = rand.Read(idb)
	clusterID := hex.EncodeToString(idb)
	ts := ranges.TSToProto(n.cfg.Clock.Now())
	for _, d := range descs {
		breq := &rspb.BootstrapRequest{ClusterId: clusterID, NodeId: d.NodeId, Nodes: descs, Ranges: plan, Timestamp: ts}
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

func waitNodeInfo(ctx context.Context, c rspb.InternalClient) (*rspb.NodeInfoResponse, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := c.NodeInfo(actx, &rspb.NodeInfoRequest{})
		cancel()
		if err == nil {
			return info, nil
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
