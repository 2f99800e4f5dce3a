package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// Readiness and node addresses.
//
// /healthz is liveness only: the process is up. Readiness (/readyz and the
// gRPC health status of "" and rangestore.v1.KV) says whether the node can
// serve: it is initialized, its own liveness record is live, and every local
// range has a quorum (ranges.Store.QuorumProblems). The gRPC status is set
// by the node's loop every readyInterval and recomputed on each Check; the
// computation reads in-memory state only (cheap with thousands of ranges).
//
// The same loop keeps node addresses current: a node restarted on a new
// --listen-addr rewrites its descriptor in its cluster record and its node
// record in the system range, and every node copies the node records
// (including nodes that joined since) into its own cluster record, its
// cached directory, through which the router resolves nodes (NodeAddress)
// and the store finds peers' Raft addresses. It refreshes every
// nodeRefreshInterval and at once when an unknown node ID is looked up.
// While the store is empty and the node has a join list, the loop also
// tries to join a running cluster (join.go).
const (
	readyInterval       = 250 * time.Millisecond
	nodeRefreshInterval = time.Second
)

// Readiness returns "" when the node can serve, else the failing
// conditions, separated by "; ".
func (n *Node) Readiness() string {
	if n.stopping.Load() {
		return "node is shutting down"
	}
	id := n.store.NodeID()
	if id == 0 {
		if len(n.cfg.Join) > 0 {
			return "not initialized (waiting for `rangestore init`, or to join the cluster of a node in --join)"
		}
		return "not initialized (waiting for `rangestore init`)"
	}
	var probs []string
	now := n.cfg.Clock.Now()
	switch self := n.liveness.Self(); {
	case self == nil:
		probs = append(probs, fmt.Sprintf("liveness record of n%d not written yet", id))
	case !now.Less(ranges.TSFromProto(self.Expiration)):
		ago := time.Duration(now.WallTime - self.Expiration.WallTime)
		probs = append(probs, fmt.Sprintf("liveness record of n%d not live (expired %s ago)", id, ago.Round(time.Millisecond)))
	case self.Membership == rspb.LivenessMembership_LIVENESS_DECOMMISSIONED:
		probs = append(probs, fmt.Sprintf("n%d is decommissioned: it serves no range (empty its store and start it with --join to use it again)", id))
	}
	live := func(nodeID uint64) bool {
		if nodeID == id {
			return true // this process is up; its record is judged above
		}
		rec := n.liveness.Cached(nodeID)
		return rec != nil && now.Less(ranges.TSFromProto(rec.Expiration))
	}
	if first, count := n.store.QuorumProblems(live); count > 0 {
		if count > 1 {
			first += fmt.Sprintf(" and %d more ranges", count-1)
		}
		probs = append(probs, first)
	}
	return strings.Join(probs, "; ")
}

// updateHealth sets the gRPC health status from Readiness.
func (n *Node) updateHealth() {
	st := healthpb.HealthCheckResponse_SERVING
	if n.Readiness() != "" {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	n.health.SetServingStatus("", st)
	n.health.SetServingStatus(rspb.KV_ServiceDesc.ServiceName, st)
}

// readyHealth answers Check with the status computed at that moment (Watch
// streams follow the loop's updates).
type readyHealth struct {
	*health.Server
	n *Node
}

func (h readyHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if !h.n.stopping.Load() {
		h.n.updateHealth()
	}
	return h.Server.Check(ctx, req)
}

func (n *Node) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	if why := n.Readiness(); why != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %s\n", why)
		return
	}
	fmt.Fprintln(w, "ready")
}

// startLoop starts the node's readiness and address loop (stopped by
// stopLoop).
func (n *Node) startLoop() {
	n.loopStop, n.loopDone = make(chan struct{}), make(chan struct{})
	go n.loop()
}

func (n *Node) stopLoop() {
	if n.loopStop != nil {
		close(n.loopStop)
		<-n.loopDone
		n.loopStop = nil
	}
}

func (n *Node) loop() {
	defer close(n.loopDone)
	t := time.NewTicker(readyInterval)
	defer t.Stop()
	published, counted := false, false
	var lastRefresh, lastJoin, lastGossip time.Time
	// The gossip join in flight (gossip.go): the loop waits for it when it
	// stops.
	var gossipWG sync.WaitGroup
	defer gossipWG.Wait()
	gossipJoining, gossipJoinDone := false, make(chan struct{}, 1)
	var js joinState
	// loopCtx ends when the loop is stopped (a drain it runs stops then).
	loopCtx, loopCancel := context.WithCancel(context.Background())
	defer loopCancel()
	stopc := n.loopStop
	go func() {
		select {
		case <-stopc:
			loopCancel()
		case <-loopCtx.Done():
		}
	}()
	for {
		n.updateHealth()
		if n.store.NodeID() == 0 && len(n.cfg.Join) > 0 && time.Since(lastJoin) >= joinInterval {
			// An empty store with a join list: join a running cluster,
			// or keep waiting for init while the listed nodes have none.
			lastJoin = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), joinCallTimeout+2*time.Second)
			stop := n.loopStop
			go func() { // the loop's stop cancels a try in flight
				select {
				case <-stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			_ = n.tryJoin(ctx, &js)
			cancel()
		}
		if n.store.NodeID() != 0 && time.Since(lastRefresh) >= nodeRefreshInterval {
			lastRefresh = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), nodeRefreshInterval)
			if !published {
				if err := n.publishSelf(ctx); err != nil {
					n.log.Debug("publishing the node record failed", "err", err)
				} else {
					published = true
				}
			}
			if published && !counted {
				// A cluster from before joins gets its counter and
				// directory records once (join.go).
				if err := n.ensureNodeCounter(ctx); err != nil {
					n.log.Debug("checking the node-ID counter failed", "err", err)
				} else {
					counted = true
				}
			}
			if err := n.refreshNodes(ctx); err != nil {
				n.log.Debug("reading node records failed", "err", err)
			}
			if err := n.refreshMetaRange(ctx); err != nil {
				n.log.Debug("reading the meta range's record failed", "err", err)
			}
			if err := n.refreshSettings(ctx); err != nil {
				n.log.Debug("reading the cluster settings failed", "err", err)
			}
			cancel()
		}
		if n.store.NodeID() != 0 {
			n.watchOwnMembership(loopCtx)
		}
		n.maintainGossip(loopCtx, &lastGossip, &gossipWG, &gossipJoining, gossipJoinDone)
		select {
		case <-n.loopStop:
			return
		case <-t.C:
		case <-n.refreshKick:
			if time.Since(lastRefresh) >= readyInterval {
				lastRefresh = time.Time{}
			}
		}
	}
}

// advertisedAddr is the gRPC address peers should dial: the listener's,
// except that an unspecified host (":26257", "0.0.0.0:…") keeps the host
// recorded for this node (init recorded the address it was reached at).
func advertisedAddr(actual, recorded string) string {
	host, port, err := net.SplitHostPort(actual)
	if err != nil {
		return actual
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if rh, _, err := net.SplitHostPort(recorded); err == nil && rh != "" {
			return net.JoinHostPort(rh, port)
		}
	}
	return actual
}

// updateOwnAddress rewrites this node's descriptor in its cluster record if
// it now listens elsewhere (a restart with a new --listen-addr).
func (n *Node) updateOwnAddress() error {
	cr := n.store.ClusterRecord()
	if cr == nil {
		return nil
	}
	for _, d := range cr.Nodes {
		if d.NodeId != cr.NodeId {
			continue
		}
		next := proto.Clone(d).(*rspb.NodeDescriptor)
		next.Address = advertisedAddr(n.Addr(), d.Address)
		if h := n.HTTPAddr(); h != "" {
			next.HttpAddress = advertisedAddr(h, d.HttpAddress)
		}
		changed, err := n.store.UpdateNodeDescriptor(next)
		if err != nil {
			return fmt.Errorf("node: recording the new address of n%d: %w", cr.NodeId, err)
		}
		if changed {
			n.log.Warn("node address changed since the last start; publishing it to the cluster",
				"node", cr.NodeId, "old", d.Address, "new", next.Address)
		}
	}
	return nil
}

func (n *Node) ownDescriptor() *rspb.NodeDescriptor {
	if cr := n.store.ClusterRecord(); cr != nil {
		for _, d := range cr.Nodes {
			if d.NodeId == cr.NodeId {
				return d
			}
		}
	}
	return nil
}

// publishSelf writes this node's descriptor to its node record in the
// system range unless the record already says the same.
func (n *Node) publishSelf(ctx context.Context) error {
	self := n.ownDescriptor()
	if self == nil {
		return nil
	}
	key := keys.NodeKey(self.NodeId)
	resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: key}}}})
	if err != nil {
		return err
	}
	if g := resps[0].GetGet(); g.GetFound() {
		cur := &rspb.NodeDescriptor{}
		if proto.Unmarshal(g.Kv.Value, cur) == nil && proto.Equal(cur, self) {
			return nil
		}
	}
	b, err := proto.Marshal(self)
	if err != nil {
		return err
	}
	_, err = n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: key, Value: b}}}})
	if err == nil {
		n.log.Info("published node record", "node", self.NodeId, "addr", self.Address)
	}
	return err
}

// refreshNodes copies the other nodes' descriptors from their directory
// records into this node's cluster record (its cached directory), adding
// nodes that joined: from the local replica of the system range when there
// is one (no routing needed, see ranges.Store.LocalNodeDescriptors), else
// through the router.
func (n *Node) refreshNodes(ctx context.Context) error {
	descs, err := n.readDirectory(ctx)
	if err != nil {
		return err
	}
	me := n.store.NodeID()
	for _, d := range descs {
		if d.NodeId == me {
			continue
		}
		old, _ := n.NodeAddress(d.NodeId)
		changed, err := n.store.UpdateNodeDescriptor(d)
		if err != nil {
			return err
		}
		if changed && old == "" {
			n.log.Info("learned of a new node", "node", d.NodeId, "addr", d.Address, "raft", d.RaftAddress)
		} else if changed {
			n.log.Info("learned a new node address", "node", d.NodeId, "old", old, "new", d.Address)
		}
	}
	return nil
}
