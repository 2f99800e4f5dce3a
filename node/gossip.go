package node

import (
	"context"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/rangestore/rangestore/gossip"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Store descriptors by gossip (package gossip; issue 12 item 4): once the
// node has an ID, its loop starts gossiping its store descriptor on
// Config.GossipAddr (default: the gRPC listener's host, any port) and
// keeps it joined: every gossipJoinInterval, if a node of the directory
// is not heard, it asks the directory's nodes for their gossip addresses
// (NodeInfo) and joins through those that answer, in a goroutine of its
// own that the loop waits for when it stops. Stop leaves the gossip right
// after the loop, before the leases move: the others forget the node at
// once. With Config.Security, gossip runs over mutual TLS with the node
// certificate (gossipTLS; peers must present node certificates).

// gossipJoinInterval is how often a node missing from the gossip is
// looked for.
const gossipJoinInterval = 5 * time.Second

// gossipBindAddr is where the node gossips: Config.GossipAddr, else the
// gRPC listener's host with any port. With TLS it must be one specific IP
// (checkGossipBind, at Start).
func (n *Node) gossipBindAddr() string {
	if n.cfg.GossipAddr != "" {
		return n.cfg.GossipAddr
	}
	host, _, err := net.SplitHostPort(n.Addr())
	if err != nil {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, "0")
}

// GossipAddr is where this node gossips ("" before it has an ID).
func (n *Node) GossipAddr() string {
	if g := n.gossip.Load(); g != nil {
		return g.Addr()
	}
	return ""
}

// Whiteboard returns the read replicas' gossip entries (the discovery
// whiteboard; hidden ones included until the read replica TTL).
func (n *Node) Whiteboard() map[uint64]gossip.Entry {
	if g := n.gossip.Load(); g != nil {
		return g.Whiteboard()
	}
	return nil
}

// readReplicaNode reports whether node id is a read replica, as the
// directory cached here or its gossip says.
func (n *Node) readReplicaNode(id uint64) bool {
	if n.store.ReadReplicaNode(id) {
		return true
	}
	for _, d := range n.Directory() {
		if d.NodeId == id && d.ReadReplica {
			return true
		}
	}
	return n.Stores()[id].Desc.GetReadReplica()
}

// Stores returns the store descriptors this node heard by gossip within
// the TTL, its own included (empty before it has an ID).
func (n *Node) Stores() map[uint64]gossip.Entry {
	if g := n.gossip.Load(); g != nil {
		return g.Stores()
	}
	return nil
}

// describeStore is this node's store descriptor: locality, file system
// capacity and availability, the store's disk use, and what it holds and
// serves; its role (read replica), gRPC address and how far its most
// behind replicas are (ranges.Store.AppliedLag in log entries,
// ranges.Store.ClosedLag in closed-timestamp time): the discovery
// whiteboard's entry of a read replica.
func (n *Node) describeStore() *rspb.StoreDescriptor {
	d := &rspb.StoreDescriptor{Locality: n.cfg.Locality, GossipAddress: n.GossipAddr(), ReadReplica: n.ReadReplica(), Address: n.Addr()}
	d.MaxAppliedIndexLag, d.LaggingRangeId = n.store.AppliedLag()
	closedLag, closedRange := n.store.ClosedLag()
	d.MaxClosedTimestampLagNanos, d.ClosedLaggingRangeId = int64(closedLag), closedRange
	var fs syscall.Statfs_t
	if err := syscall.Statfs(n.cfg.StoreDir, &fs); err == nil {
		d.CapacityBytes = int64(fs.Blocks) * fs.Bsize
		d.AvailableBytes = int64(fs.Bavail) * fs.Bsize
	}
	d.UsedBytes = int64(n.eng.DB().Metrics().DiskSpaceUsage())
	me := n.NodeID()
	for _, ri := range n.store.Ranges() {
		d.ReplicaCount++
		if ri.LeaseValid && ri.Lease.GetNodeId() == me {
			d.LeaseCount++
			d.QueriesPerSecond += ri.RequestQps
		}
	}
	return d
}

// maintainGossip is the loop's step: start gossiping once the node has an
// ID, and look for missing members every gossipJoinInterval.
func (n *Node) maintainGossip(ctx context.Context, last *time.Time, wg *sync.WaitGroup, joining *bool, joinDone chan struct{}) {
	id := n.store.NodeID()
	if id == 0 || n.cfg.GossipAddr == "-" {
		return
	}
	g := n.gossip.Load()
	if g == nil {
		tlsCfg, err := n.gossipTLS()
		if err == nil {
			g, err = gossip.Start(gossip.Config{NodeID: id, BindAddr: n.gossipBindAddr(), TLS: tlsCfg, Describe: n.describeStore,
				Interval: n.cfg.GossipInterval, TTL: n.cfg.GossipTTL, ReadReplicaTTL: n.cfg.ReadReplicaTTL, Logger: n.log})
		}
		if err != nil {
			if time.Since(*last) >= gossipJoinInterval {
				*last = time.Now()
				n.log.Warn("gossip not started", "err", err)
			}
			return
		}
		n.gossip.Store(g)
		n.log.Info("gossiping the store descriptor", "addr", g.Addr())
	}
	select {
	case <-joinDone:
		*joining = false
	default:
	}
	if *joining || time.Since(*last) < gossipJoinInterval {
		return
	}
	*last = time.Now()
	heard := g.Stores()
	var missing []*rspb.NodeDescriptor
	for _, d := range n.Directory() {
		if _, ok := heard[d.NodeId]; !ok && d.NodeId != id && d.Address != "" {
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return
	}
	*joining = true
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { joinDone <- struct{}{} }()
		n.joinGossip(ctx, g, missing)
	}()
}

// joinGossip asks the missing nodes where they gossip and joins through
// those that answer.
func (n *Node) joinGossip(ctx context.Context, g *gossip.Gossip, missing []*rspb.NodeDescriptor) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var mu sync.Mutex
	var addrs []string
	var wg sync.WaitGroup
	for _, d := range missing {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := n.peerNodeInfo(ctx, d.Address)
			if err != nil || info.ClusterId != n.ClusterID() || info.GossipAddress == "" {
				return
			}
			mu.Lock()
			addrs = append(addrs, info.GossipAddress)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(addrs) == 0 {
		return
	}
	if _, err := g.Join(addrs); err != nil {
		n.log.Debug("joining the gossip failed", "addrs", addrs, "err", err)
	}
}

// stopGossip leaves the gossip (Stop, after the loop stopped).
func (n *Node) stopGossip() {
	if g := n.gossip.Swap(nil); g != nil {
		g.Close()
	}
}
