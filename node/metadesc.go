package node

import (
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// The meta range's descriptor. The meta range's replicas change like any
// range's (replica changes, the replicate queue, decommission), and its
// descriptor is kept in meta's own record (keys.MetaKey of its end key).
// The router finds meta through the newest copy this node knows
// (ranges.Store.MetaDescriptor): its own replica's, else its cluster
// record's. A node keeps that copy current two ways:
//   - every refresh of the directory reads meta's own record and records
//     a newer descriptor in the cluster record (refreshMetaRange), so a
//     restart starts from it and a joining node is given it;
//   - when every replica named by its copy denies the range (they were all
//     moved away while this node did not follow, e.g. it was down), the
//     router asks the peers for theirs (RefreshMetaRange, NodeInfo's
//     meta_range).

// refreshMetaRange reads meta's own record through the router and records
// it if it is newer than this node's copy.
func (n *Node) refreshMetaRange(ctx context.Context) error {
	meta := n.MetaRange()
	if meta == nil {
		return nil
	}
	resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.MetaKey(meta.EndKey)}}}})
	if err != nil {
		return err
	}
	g := resps[0].GetGet()
	if !g.GetFound() {
		return nil
	}
	d := &rspb.RangeDescriptor{}
	if err := proto.Unmarshal(g.GetKv().GetValue(), d); err != nil {
		return err
	}
	if learned, err := n.store.LearnMetaDescriptor(d); err != nil {
		return err
	} else if learned {
		n.log.Info("learned the meta range's descriptor", "generation", d.Generation, "replicas", len(d.Replicas))
	}
	return nil
}

// RefreshMetaRange asks the other nodes of the directory for the newest
// descriptor of the meta range they know and records it if it is newer
// than this node's (gateway.MetaRefresher). It reports whether it learned
// one.
func (n *Node) RefreshMetaRange(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	me := n.store.NodeID()
	var mu sync.Mutex
	var best *rspb.RangeDescriptor
	var wg sync.WaitGroup
	for _, d := range n.Directory() {
		if d.NodeId == me || d.Address == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := n.peerNodeInfo(ctx, d.Address)
			if err != nil || info.ClusterId != n.ClusterID() || info.MetaRange == nil {
				return
			}
			mu.Lock()
			if best == nil || info.MetaRange.Generation > best.Generation {
				best = info.MetaRange
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	learned, err := n.store.LearnMetaDescriptor(best)
	if err != nil {
		n.log.Warn("recording the meta range's descriptor failed", "err", err)
		return false
	}
	if learned {
		n.log.Info("learned the meta range's descriptor from a peer", "generation", best.Generation, "replicas", len(best.Replicas))
	}
	return learned
}
