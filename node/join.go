package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// The join protocol (see doc.go): the server side is Node.Join, the
// client side tryJoin, run by the node's loop while its store is empty.

const (
	joinInterval    = time.Second
	joinCallTimeout = 10 * time.Second
	maxStoreIDLen   = 64
)

// Join admits a node with an empty store into this node's cluster (the
// Internal Join RPC): it allocates the node a new ID from the node-ID
// counter (keyed by the node's store ID, so a retry gets the same one),
// writes its descriptor to the directory and returns the cluster record
// the node persists.
func (n *Node) Join(ctx context.Context, req *rspb.JoinRequest) (*rspb.JoinResponse, error) {
	if err := validateJoinRequest(req); err != nil {
		return nil, status.Error(codes.InvalidArgument, "join: "+err.Error())
	}
	cr := n.store.ClusterRecord()
	if cr == nil {
		return nil, status.Error(codes.FailedPrecondition, "join: this node is not initialized (run `rangestore init` first)")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, joinCallTimeout)
		defer cancel()
	}
	desc := proto.Clone(req.Node).(*rspb.NodeDescriptor)
	// A node listening on an unspecified host (":26257") advertises the
	// address it reached us from.
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			desc.Address = fillHost(desc.Address, host)
			if desc.HttpAddress != "" {
				desc.HttpAddress = fillHost(desc.HttpAddress, host)
			}
		}
	}
	if err := checkPeerMode(n.NodeDescriptor(), desc, desc.Address); err != nil {
		return nil, status.Error(codes.FailedPrecondition, "join: "+err.Error())
	}
	if err := n.ensureNodeCounter(ctx); err != nil {
		return nil, status.Errorf(codes.Unavailable, "join: %v", err)
	}
	joinKey := keys.NodeJoinKey(req.StoreId)
	id, found, err := n.readJoinRecord(ctx, joinKey)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "join: reading the join record of store %s: %v", req.StoreId, err)
	}
	if !found {
		if err := n.checkJoinAddresses(ctx, desc); err != nil {
			return nil, err
		}
		if id, err = n.allocateNodeID(ctx); err != nil {
			return nil, err
		}
		// The join record makes the allocation idempotent: a retry, or a
		// concurrent duplicate that lost the race, finds the winner's ID
		// (the loser's ID is burned, with no descriptor).
		resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{
			Key: joinKey, Value: []byte(strconv.FormatUint(id, 10)), ExpectAbsent: true}}}})
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "join: writing the join record of store %s: %v", req.StoreId, err)
		}
		if !resps[0].GetConditionalPut().GetSucceeded() {
			if id, found, err = n.readJoinRecord(ctx, joinKey); err != nil || !found {
				return nil, status.Errorf(codes.Unavailable, "join: re-reading the join record of store %s: %v", req.StoreId, err)
			}
		}
	}
	desc.NodeId = id
	if err := n.putNodeRecord(ctx, desc); err != nil {
		return nil, status.Errorf(codes.Unavailable, "join: writing the node record of n%d: %v", id, err)
	}
	if _, err := n.store.UpdateNodeDescriptor(desc); err != nil {
		return nil, status.Errorf(codes.Internal, "join: caching the node record of n%d: %v", id, err)
	}
	dir := n.Directory()
	rec := &rspb.ClusterRecord{ClusterId: cr.ClusterId, NodeId: id, Nodes: dir, MetaRange: n.MetaRange()}
	n.log.Info("node joined", "node", id, "addr", desc.Address, "raft", desc.RaftAddress, "store", req.StoreId, "retry", found)
	return &rspb.JoinResponse{Record: rec}, nil
}

// fillHost replaces an unspecified host in addr by host.
func fillHost(addr, host string) string {
	h, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort(host, port)
	}
	return addr
}

// validateJoinRequest checks a join request's fields.
func validateJoinRequest(req *rspb.JoinRequest) error {
	switch {
	case req.StoreId == "":
		return errors.New("store_id is empty")
	case len(req.StoreId) > maxStoreIDLen:
		return fmt.Errorf("store_id of %d bytes exceeds %d", len(req.StoreId), maxStoreIDLen)
	case req.Node == nil:
		return errors.New("node is missing")
	case req.Node.NodeId != 0:
		return fmt.Errorf("node.node_id is %d: it must be 0 (the join assigns it)", req.Node.NodeId)
	}
	for _, c := range req.StoreId {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return fmt.Errorf("store_id %q: only letters, digits, '-' and '_' are allowed", req.StoreId)
		}
	}
	for _, f := range []struct{ name, v string }{{"node.address", req.Node.Address}, {"node.raft_address", req.Node.RaftAddress}, {"node.http_address", req.Node.HttpAddress}} {
		if f.v == "" && f.name == "node.http_address" {
			continue
		}
		if err := checkHostPort(f.v); err != nil {
			return fmt.Errorf("%s %q: %w", f.name, f.v, err)
		}
	}
	for _, t := range req.Node.Locality {
		if t.Key == "" || t.Value == "" {
			return fmt.Errorf("node.locality: tier %q=%q has an empty key or value", t.Key, t.Value)
		}
	}
	return nil
}

// checkHostPort checks a host:port address with a port 1-65535.
func checkHostPort(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("port %q is not a number 1-65535", port)
	}
	return nil
}

// checkJoinAddresses refuses a join whose gRPC or Raft address is a
// directory node's that is live, or that never wrote a liveness record:
// such a node is an initial node waiting for init's bootstrap (it retries
// and gets bootstrapped meanwhile) or a node whose join is still going on.
// The address of a node that was live once and is no longer may be reused
// (a new store on the same host gets a new ID).
func (n *Node) checkJoinAddresses(ctx context.Context, desc *rspb.NodeDescriptor) error {
	dir, err := n.scanDirectory(ctx)
	if err != nil {
		return status.Errorf(codes.Unavailable, "join: reading the node directory: %v", err)
	}
	for _, d := range dir {
		if d.RaftAddress != desc.RaftAddress && d.Address != desc.Address {
			continue
		}
		rec, err := n.liveness.Get(ctx, d.NodeId, true)
		if err != nil {
			return status.Errorf(codes.Unavailable, "join: reading the liveness record of n%d: %v", d.NodeId, err)
		}
		if rec == nil {
			return status.Errorf(codes.FailedPrecondition, "join: n%d has the address %s / raft address %s and has not started yet (an initial node waiting for init, or a join in progress); retry later",
				d.NodeId, d.Address, d.RaftAddress)
		}
		if n.cfg.Clock.Now().Less(ranges.TSFromProto(rec.Expiration)) {
			return status.Errorf(codes.AlreadyExists, "join: n%d, which is live, has the address %s / raft address %s (a node with an empty store cannot take a live node's address)",
				d.NodeId, d.Address, d.RaftAddress)
		}
	}
	return nil
}

func (n *Node) readJoinRecord(ctx context.Context, key []byte) (uint64, bool, error) {
	resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: key}}}})
	if err != nil {
		return 0, false, err
	}
	g := resps[0].GetGet()
	if !g.GetFound() {
		return 0, false, nil
	}
	id, err := strconv.ParseUint(string(g.Kv.Value), 10, 64)
	if err != nil || id == 0 {
		return 0, false, fmt.Errorf("join record %s holds %q, not a node ID", keys.Pretty(key), g.Kv.Value)
	}
	return id, true, nil
}

// putNodeRecord writes d to its directory record unless it says so already.
func (n *Node) putNodeRecord(ctx context.Context, d *rspb.NodeDescriptor) error {
	key := keys.NodeKey(d.NodeId)
	resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: key}}}})
	if err != nil {
		return err
	}
	if g := resps[0].GetGet(); g.GetFound() {
		cur := &rspb.NodeDescriptor{}
		if proto.Unmarshal(g.Kv.Value, cur) == nil && proto.Equal(cur, d) {
			return nil
		}
	}
	b, err := proto.Marshal(d)
	if err != nil {
		return err
	}
	_, err = n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: key, Value: b}}}})
	return err
}

// ensureNodeCounter makes sure the node-ID counter exists. A cluster
// initialized before the counter (and the directory records of every
// initial node) existed gets both now, once: the records of the nodes in
// this node's cluster record that have none, and the counter at the
// highest node ID known (the initial nodes are n1..nK, the counter K).
// Both writes are conditional on absence, so racing nodes agree.
func (n *Node) ensureNodeCounter(ctx context.Context) error {
	resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.NodeIDGeneratorKey}}}})
	if err != nil {
		return fmt.Errorf("reading the node-ID counter: %w", err)
	}
	if resps[0].GetGet().GetFound() {
		return nil
	}
	dir, err := n.scanDirectory(ctx)
	if err != nil {
		return fmt.Errorf("reading the node directory: %w", err)
	}
	have := map[uint64]bool{}
	var highest uint64
	for _, d := range dir {
		have[d.NodeId] = true
		highest = max(highest, d.NodeId)
	}
	var reqs []*rspb.RequestUnion
	for _, d := range n.store.ClusterRecord().GetNodes() {
		highest = max(highest, d.NodeId)
		if have[d.NodeId] {
			continue
		}
		b, err := proto.Marshal(d)
		if err != nil {
			return err
		}
		reqs = append(reqs, &rspb.RequestUnion{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{
			Key: keys.NodeKey(d.NodeId), Value: b, ExpectAbsent: true}}})
	}
	reqs = append(reqs, &rspb.RequestUnion{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{
		Key: keys.NodeIDGeneratorKey, Value: []byte(strconv.FormatUint(highest, 10)), ExpectAbsent: true}}})
	if _, err := n.router.Send(ctx, reqs); err != nil {
		return fmt.Errorf("initializing the node-ID counter and directory: %w", err)
	}
	n.log.Info("node directory initialized from the cluster record (a cluster from before joins)", "records", len(reqs)-1, "counter", highest)
	return nil
}

// allocateNodeID increments the node-ID counter and checks the ID is above
// every node ID in the directory (a counter set back would reuse one).
func (n *Node) allocateNodeID(ctx context.Context) (uint64, error) {
	resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Increment{
		Increment: &rspb.IncrementRequest{Key: keys.NodeIDGeneratorKey, Delta: 1}}}})
	if err != nil {
		return 0, status.Errorf(codes.Unavailable, "join: incrementing the node-ID counter %s: %v", keys.Pretty(keys.NodeIDGeneratorKey), err)
	}
	v := resps[0].GetIncrement().GetNewValue()
	if v <= 0 {
		return 0, status.Errorf(codes.Internal, "join: the node-ID counter %s returned %d", keys.Pretty(keys.NodeIDGeneratorKey), v)
	}
	id := uint64(v)
	dir, err := n.scanDirectory(ctx)
	if err != nil {
		return 0, status.Errorf(codes.Unavailable, "join: reading the node directory: %v", err)
	}
	for _, d := range append(dir, n.Directory()...) {
		if d.NodeId >= id {
			return 0, status.Errorf(codes.Internal, "join: the node-ID counter %s gave n%d, but n%d exists: the counter is behind (was it reset?); set it to at least %d",
				keys.Pretty(keys.NodeIDGeneratorKey), id, d.NodeId, d.NodeId)
		}
	}
	return id, nil
}

// readDirectory reads the node records of the system range: from the local
// replica when there is one (no routing, possibly lagging), else through
// the router. Decisions that write the directory or the node-ID counter
// use scanDirectory instead.
func (n *Node) readDirectory(ctx context.Context) ([]*rspb.NodeDescriptor, error) {
	descs, ok, err := n.store.LocalNodeDescriptors()
	if err != nil || ok {
		return descs, err
	}
	return n.scanDirectory(ctx)
}

// scanDirectory reads the node records through the router: a consistent
// read at the system range's leaseholder, which sees every write
// acknowledged before it. A local replica may not have applied them yet:
// ensureNodeCounter deciding from one that had not applied the deletion
// of two records left them missing for good (CI, TestJoinUpgradedCluster).
func (n *Node) scanDirectory(ctx context.Context) ([]*rspb.NodeDescriptor, error) {
	var descs []*rspb.NodeDescriptor
	end := append([]byte(nil), keys.NodePrefix...)
	end[len(end)-1]++
	resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{
		StartKey: keys.NodePrefix, EndKey: end}}}})
	if err != nil {
		return nil, err
	}
	for _, kv := range resps[0].GetScan().GetKvs() {
		d := &rspb.NodeDescriptor{}
		if err := proto.Unmarshal(kv.Value, d); err != nil {
			return nil, fmt.Errorf("node record %s: %w", keys.Pretty(kv.Key), err)
		}
		descs = append(descs, d)
	}
	return descs, nil
}

// Directory is this node's cached node directory (its cluster record's
// nodes, refreshed from the system range), by node ID.
func (n *Node) Directory() []*rspb.NodeDescriptor {
	cr := n.store.ClusterRecord()
	if cr == nil {
		return nil
	}
	out := make([]*rspb.NodeDescriptor, 0, len(cr.Nodes))
	for _, d := range cr.Nodes {
		out = append(out, proto.Clone(d).(*rspb.NodeDescriptor))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeId < out[j].NodeId })
	return out
}

// kickRefresh asks the loop to refresh the directory now (an unknown node
// ID was looked up); it never blocks.
func (n *Node) kickRefresh() {
	if n.refreshKick == nil {
		return
	}
	select {
	case n.refreshKick <- struct{}{}:
	default:
	}
}

// joinState is the client side's memory between tries (used by the loop
// goroutine only).
type joinState struct {
	lastErr string
	tries   int
}

// tryJoin is one round of the client side: it asks each join address in
// turn whether it belongs to an initialized cluster and, at the first that
// does, joins through it. It returns nil once the node has a node ID (also
// when init bootstrapped it meanwhile), and the last refusal otherwise.
func (n *Node) tryJoin(ctx context.Context, st *joinState) error {
	if n.store.NodeID() != 0 {
		return nil
	}
	storeID, err := n.store.StoreID()
	if err != nil {
		return fmt.Errorf("store ID: %w", err)
	}
	self := n.NodeDescriptor()
	self.NodeId = 0
	own := []string{n.Addr(), n.cfg.ListenAddr}
	var last error
	for _, addr := range n.cfg.Join {
		if anyAddrMatch(ctx, addr, own) {
			continue
		}
		rec, err := n.joinVia(ctx, addr, storeID, self)
		if err != nil {
			if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
				n.joinRefusals.Add(1)
			}
			last = fmt.Errorf("%s: %w", addr, err)
			continue
		}
		if rec == nil {
			continue // not initialized: wait for init
		}
		n.joinMu.Lock()
		if n.store.NodeID() != 0 {
			n.joinMu.Unlock()
			return nil
		}
		err = n.store.JoinCluster(rec)
		n.joinMu.Unlock()
		if err != nil {
			return err
		}
		n.log.Info("joined the cluster", "cluster", rec.ClusterId, "node", rec.NodeId, "via", addr, "store", storeID, "tries", st.tries+1)
		return nil
	}
	st.tries++
	if last != nil && last.Error() != st.lastErr {
		st.lastErr = last.Error()
		n.log.Warn("join: no listed node admitted this node yet; retrying", "err", last)
	}
	return last
}

// joinVia asks addr for its cluster and, if it has one, to admit this node;
// (nil, nil) means addr is not initialized.
func (n *Node) joinVia(ctx context.Context, addr, storeID string, self *rspb.NodeDescriptor) (*rspb.ClusterRecord, error) {
	c, err := n.dialPeer(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ic := rspb.NewInternalClient(c)
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	info, err := ic.NodeInfo(ictx, &rspb.NodeInfoRequest{})
	cancel()
	if err != nil {
		return nil, err
	}
	if info.ClusterId == "" {
		return nil, nil
	}
	jctx, cancel := context.WithTimeout(ctx, joinCallTimeout)
	defer cancel()
	resp, err := ic.Join(jctx, &rspb.JoinRequest{StoreId: storeID, Node: self})
	if err != nil {
		return nil, err
	}
	rec := resp.GetRecord()
	if rec.GetClusterId() != info.ClusterId || rec.GetNodeId() == 0 {
		return nil, fmt.Errorf("join answer names cluster %q and node n%d (asked cluster %s)", rec.GetClusterId(), rec.GetNodeId(), info.ClusterId)
	}
	return rec, nil
}

// checkJoinClusters refuses a store of one cluster started with a join list
// of another: it asks the listed nodes (in parallel, briefly; unreachable
// ones are skipped, so a restart never waits for its peers) for their
// cluster IDs.
func checkJoinClusters(ctx context.Context, cr *rspb.ClusterRecord, join, own []string, opts []grpc.DialOption) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var refused []string
	for _, addr := range join {
		if anyAddrMatch(ctx, addr, own) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := grpc.NewClient(addr, opts...)
			if err != nil {
				return
			}
			defer c.Close()
			info, err := rspb.NewInternalClient(c).NodeInfo(ctx, &rspb.NodeInfoRequest{})
			if err != nil || info.ClusterId == "" || info.ClusterId == cr.ClusterId {
				return
			}
			mu.Lock()
			refused = append(refused, fmt.Sprintf("%s belongs to cluster %s", addr, info.ClusterId))
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(refused) > 0 {
		sort.Strings(refused)
		return fmt.Errorf("node: this store belongs to cluster %s (as n%d), but join address %s: refusing to start (a store joins only its own cluster; use an empty --store to join another)",
			cr.ClusterId, cr.NodeId, strings.Join(refused, ", "))
	}
	return nil
}
