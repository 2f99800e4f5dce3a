package node

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Helpers of the operator requests (Admin) that read the cluster.

// operatorCtx refuses a node that is not initialized and bounds ctx by d
// when the caller set no deadline; call cancel when done.
func (n *Node) operatorCtx(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc, error) {
	if n.store.ClusterRecord() == nil {
		return ctx, func() {}, errNotInitialized
	}
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, cancel, nil
}

// metaDescriptor looks range rangeID up in meta (Unavailable when meta
// cannot be read, NotFound when no record names it); it also returns
// every meta record.
func (n *Node) metaDescriptor(ctx context.Context, rangeID uint64) (*rspb.RangeDescriptor, []*rspb.RangeDescriptor, error) {
	descs, err := n.MetaRanges(ctx)
	if err != nil {
		return nil, nil, status.Errorf(codes.Unavailable, "looking up r%d in meta: %v", rangeID, err)
	}
	for _, d := range descs {
		if d.RangeId == rangeID {
			return d, descs, nil
		}
	}
	return nil, descs, status.Errorf(codes.NotFound, "range r%d not found", rangeID)
}

// peerNodeInfo asks the node at addr for its NodeInfo.
func (n *Node) peerNodeInfo(ctx context.Context, addr string) (*rspb.NodeInfoResponse, error) {
	c, err := n.dialPeer(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return rspb.NewInternalClient(c).NodeInfo(ctx, &rspb.NodeInfoRequest{})
}

// rangeInfosOf asks each of the nodes (this one locally) for the ranges
// it holds replicas of, in parallel, for at most 2 s; a node that does not
// answer is left out.
func (n *Node) rangeInfosOf(ctx context.Context, nodes []uint64) map[uint64][]*rspb.RangeInfo {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out := map[uint64][]*rspb.RangeInfo{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var infos []*rspb.RangeInfo
			if id == n.NodeID() {
				infos = n.store.Ranges()
			} else {
				addr, ok := n.NodeAddress(id)
				if !ok {
					return
				}
				c, err := n.dialPeer(addr)
				if err != nil {
					return
				}
				defer c.Close()
				r, err := rspb.NewAdminClient(c).Ranges(ctx, &rspb.RangesRequest{})
				if err != nil {
					return
				}
				infos = r.Ranges
			}
			mu.Lock()
			out[id] = infos
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}
