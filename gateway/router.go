package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/internal/batchsplit"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

// Resolver tells the router about the cluster.
type Resolver interface {
	// NodeAddress returns the gRPC address of a node.
	NodeAddress(nodeID uint64) (string, bool)
	// MetaRange returns the descriptor of the meta range.
	MetaRange() *rspb.RangeDescriptor
}

// MetaRefresher is a Resolver that can look for a newer descriptor of the
// meta range elsewhere (the node asks its peers) when every replica of the
// one it has denies the range: the meta range's replicas moved while this
// node did not follow. It reports whether it learned a newer one.
type MetaRefresher interface {
	RefreshMetaRange(ctx context.Context) bool
}

// LocalStore is the node's own store, called without gRPC.
type LocalStore interface {
	NodeID() uint64
	Send(ctx context.Context, req *rspb.RangeRequest) *rspb.RangeResponse
}

const (
	// attemptTimeout bounds one try at one replica; a write retried after
	// it reuses its proposal ID, so a slow first try cannot apply twice.
	attemptTimeout = 1500 * time.Millisecond
	// attemptBytes of a request add half an attemptTimeout to its tries.
	attemptBytes = 256 << 10
	minBackoff   = 20 * time.Millisecond
	maxBackoff   = 100 * time.Millisecond
	// DefaultTimeout bounds a client request without a deadline.
	DefaultTimeout = 30 * time.Second
)

// Router sends requests on internal keys to the ranges holding them: it
// finds ranges through a cache filled from meta, tries replicas (last known
// good first), and retries on NOT_LEASEHOLDER, unreachable nodes and stale
// descriptors until the context expires.
type Router struct {
	resolver Resolver
	local    LocalStore
	clock    *leases.Clock
	log      *slog.Logger
	cache    rangeCache

	dialOpts []grpc.DialOption

	// lastUnknownWarn rate-limits the warning about meta records naming
	// unknown nodes (unix nanos).
	lastUnknownWarn atomic.Int64

	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	leaders map[uint64]uint64 // range ID -> node that last served it

	metrics *TxnMetrics // nil: not counted
}

// SetTxnMetrics makes the router count its pushes and contention waits.
func (r *Router) SetTxnMetrics(m *TxnMetrics) { r.metrics = m }

// NewRouter returns a router. dialOpts are all the options of its
// connections to other nodes, transport credentials included: a node
// passes PeerDialOptions (and its testing options); none at all means
// PeerDialOptions(nil, DefaultPeerMaxMessage), plaintext (tests).
func NewRouter(resolver Resolver, local LocalStore, clock *leases.Clock, log *slog.Logger, dialOpts ...grpc.DialOption) *Router {
	if log == nil {
		log = slog.Default()
	}
	return &Router{resolver: resolver, local: local, clock: clock, log: log, dialOpts: dialOpts,
		conns: map[string]*grpc.ClientConn{}, leaders: map[uint64]uint64{}}
}

// LastServed is the node that last served a request of the range through
// this router (its leaseholder then; 0: none yet).
func (r *Router) LastServed(rangeID uint64) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaders[rangeID]
}

// Close releases connections.
func (r *Router) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.conns = map[string]*grpc.ClientConn{}
}

func (r *Router) conn(addr string) (*grpc.ClientConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.conns[addr]; ok {
		return c, nil
	}
	opts := r.dialOpts
	if len(opts) == 0 {
		opts = PeerDialOptions(nil, DefaultPeerMaxMessage)
	}
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	r.conns[addr] = c
	return c, nil
}

// sendToNode sends one range request to one node's replica.
func (r *Router) sendToNode(ctx context.Context, nodeID uint64, req *rspb.RangeRequest) (*rspb.RangeResponse, error) {
	if r.local != nil && nodeID == r.local.NodeID() {
		return r.local.Send(ctx, req), nil
	}
	addr, ok := r.resolver.NodeAddress(nodeID)
	if !ok {
		return nil, &unknownNodeError{nodeID: nodeID}
	}
	c, err := r.conn(addr)
	if err != nil {
		return nil, err
	}
	return rspb.NewInternalClient(c).RangeBatch(ctx, req)
}

// unknownNodeError: a descriptor names a node this router cannot resolve
// (a forged or corrupt meta record); the descriptor is not used.
type unknownNodeError struct{ nodeID uint64 }

func (e *unknownNodeError) Error() string {
	return fmt.Sprintf("no address known for node n%d", e.nodeID)
}

// unknownNode returns the first node of desc that the router cannot
// resolve (0 if it can resolve them all).
func (r *Router) unknownNode(desc *rspb.RangeDescriptor) uint64 {
	for _, rep := range desc.Replicas {
		if r.local != nil && rep.NodeId == r.local.NodeID() {
			continue
		}
		if _, ok := r.resolver.NodeAddress(rep.NodeId); !ok {
			return rep.NodeId
		}
	}
	return 0
}

// errStaleDescriptor means every replica of a cached descriptor that
// answered denied having the range (the others were unreachable): the
// caller looks it up again.
var errStaleDescriptor = errors.New("stale range descriptor")

// sendToRange tries the replicas of desc until one answers. Routing errors
// are retried here; a RANGE_KEY_MISMATCH is returned for the caller to
// re-split the request.
func (r *Router) sendToRange(ctx context.Context, desc *rspb.RangeDescriptor, req *rspb.RangeRequest) (*rspb.RangeResponse, error) {
	return r.sendWrite(ctx, desc, req, nil)
}

// sendWrite is sendToRange for a write followed by w (nil for none): it
// notes attempts that may have applied, and the ranges that replicas name
// as having subsumed desc's range (they hold its dedup records).
func (r *Router) sendWrite(ctx context.Context, desc *rspb.RangeDescriptor, req *rspb.RangeRequest, w *batchsplit.Write) (*rspb.RangeResponse, error) {
	if r.local != nil && req.GatewayNodeId == 0 {
		// The leaseholder counts requests per gateway (follow-the-workload).
		req.GatewayNodeId = r.local.NodeID()
	}
	backoff := minBackoff
	var lastErr error
	size, timedOut := proto.Size(req), 0
	for {
		order := r.replicaOrder(desc)
		notFound, unreachable := 0, 0
		for i := 0; i < len(order); i++ {
			nodeID := order[i]
			actx, cancel := context.WithTimeout(ctx, attemptTimeoutFor(timedOut, size))
			resp, err := r.sendToNode(actx, nodeID, req)
			if errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
				timedOut++
			}
			cancel()
			if err != nil {
				lastErr = fmt.Errorf("n%d: %w", nodeID, err)
				r.forgetLeader(desc.RangeId, nodeID)
				var une *unknownNodeError
				if errors.As(err, &une) {
					notFound++ // as stale as a replica denying the range
				} else {
					unreachable++
					w.MayHaveApplied()
				}
				if ctx.Err() != nil {
					return nil, r.giveUp(ctx, desc, lastErr, w)
				}
				continue
			}
			if resp.Error == nil {
				r.setLeader(desc.RangeId, nodeID)
				if resp.Timestamp != nil && r.clock != nil {
					// A reply from a leaseholder whose physical clock
					// runs ahead is waited for (at most the max offset),
					// so the clock never passes physical + max offset;
					// anything further is refused, counted and logged.
					_ = r.clock.UpdateWait(ctx, ranges.TSFromProto(resp.Timestamp))
				}
				return resp, nil
			}
			lastErr = &RangeError{E: resp.Error}
			switch resp.Error.Code {
			case rspb.RangeError_NOT_LEASEHOLDER:
				if h := resp.Error.LeaderNodeId; h != 0 && h != nodeID && !contains(order[i+1:], h) {
					order = append(order[:i+1], append([]uint64{h}, order[i+1:]...)...)
				}
			case rspb.RangeError_RANGE_NOT_FOUND:
				notFound++
				for _, d := range resp.Error.LocalDescriptors {
					r.cache.insert(d) // e.g. the range that subsumed this one
				}
				if d := resp.Error.RangeDescriptor; d != nil {
					r.cache.insert(d)
					w.HeldBy(d.RangeId)
				}
			case rspb.RangeError_UNAVAILABLE:
				// e.g. a proposal that did not complete in time: it may
				// still apply.
				w.MayHaveApplied()
			case rspb.RangeError_RANGE_KEY_MISMATCH:
				return nil, lastErr
			default:
				return resp, nil
			}
		}
		// Every replica that answered denied the range, and the others
		// could not be reached: look the range up again. A merged-away
		// range with a replica on a stopped node was otherwise retried
		// from the cache until the deadline.
		if notFound > 0 && notFound+unreachable == len(order) {
			return nil, errStaleDescriptor
		}
		select {
		case <-ctx.Done():
			return nil, r.giveUp(ctx, desc, lastErr, w)
		case <-time.After(backoff):
		}
		if backoff *= 2; backoff > maxBackoff {
			backoff = maxBackoff
		}
	}
}

// attemptTimeoutFor bounds try number timedOut (the tries of this request
// that ran out of time so far) of a request of size bytes at one replica.
// A try cut short by its timeout leaves its command in the Raft log, where
// it is proposed again and holds its keys until it applies; the retry
// waits behind it. A fixed 1.5 s cut 1 MiB writes on a loaded disk again
// and again (one test's five puts took over a minute under two parallel
// CI runs), so a request of attemptBytes or more gets half an
// attemptTimeout more per attemptBytes, twice that once a try ran out of
// time. Small requests keep the fixed bound: it is what finds a
// partitioned leaseholder's successor quickly.
func attemptTimeoutFor(timedOut, size int) time.Duration {
	if size < attemptBytes {
		return attemptTimeout
	}
	first := attemptTimeout + time.Duration(size/attemptBytes)*attemptTimeout/2
	return first << min(timedOut, 1)
}

// giveUp is the error of a command that ran out of time. A write that may
// have applied (an attempt timed out, hit a transport error or an
// unfinished proposal) is AMBIGUOUS, never UNAVAILABLE: the last error
// alone (say, a node that could not be dialled) would read as if nothing
// had been sent, while an earlier attempt may have been proposed by a
// leaseholder that then died, and apply once its successor commits it.
func (r *Router) giveUp(ctx context.Context, desc *rspb.RangeDescriptor, last error, w *batchsplit.Write) error {
	if w != nil && w.Ambiguous {
		return &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_AMBIGUOUS,
			Message: fmt.Sprintf("the write to range r%d may or may not have applied: %v before an attempt completed (last error: %v)", desc.RangeId, ctx.Err(), last)}}
	}
	return &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_UNAVAILABLE,
		Message: fmt.Sprintf("range r%d unavailable: %v (last error: %v)", desc.RangeId, ctx.Err(), last)}}
}

func contains(s []uint64, x uint64) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// replicaOrder lists the nodes to try: the last one that served, then the
// local node, then the rest in descriptor order.
func (r *Router) replicaOrder(desc *rspb.RangeDescriptor) []uint64 {
	r.mu.Lock()
	leader := r.leaders[desc.RangeId]
	r.mu.Unlock()
	var local uint64
	if r.local != nil {
		local = r.local.NodeID()
	}
	out := make([]uint64, 0, len(desc.Replicas))
	add := func(n uint64) {
		if n != 0 && !contains(out, n) {
			for _, rep := range desc.Replicas {
				if rep.NodeId == n {
					out = append(out, n)
					return
				}
			}
		}
	}
	add(leader)
	add(local)
	for _, rep := range desc.Replicas {
		add(rep.NodeId)
	}
	return out
}

func (r *Router) setLeader(rangeID, nodeID uint64) {
	r.mu.Lock()
	r.leaders[rangeID] = nodeID
	r.mu.Unlock()
}

func (r *Router) forgetLeader(rangeID, nodeID uint64) {
	r.mu.Lock()
	if r.leaders[rangeID] == nodeID {
		delete(r.leaders, rangeID)
	}
	r.mu.Unlock()
}

// LookupRange returns the descriptor of the range containing key (or, with
// inclusiveEnd, the range containing the largest key below key).
func (r *Router) LookupRange(ctx context.Context, key []byte, inclusiveEnd bool) (*rspb.RangeDescriptor, error) {
	meta := r.resolver.MetaRange()
	if meta == nil {
		return nil, &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_UNAVAILABLE, Message: "node is not part of an initialized cluster (run `rangestore init`)"}}
	}
	inMeta := bytes.Compare(key, meta.EndKey) < 0 || (inclusiveEnd && bytes.Equal(key, meta.EndKey))
	if inMeta {
		return meta, nil
	}
	if d := r.cache.lookup(key, inclusiveEnd); d != nil {
		if bad := r.unknownNode(d); bad == 0 {
			return d, nil
		} else {
			// Never route by a descriptor naming an unknown node: drop it
			// and read meta again.
			r.log.Warn("dropping a cached range descriptor that names an unknown node", "range", d.RangeId, "node", bad, "generation", d.Generation)
			r.cache.evict(d)
		}
	}
	start := keys.MetaLookupStart(key)
	if inclusiveEnd {
		start = keys.MetaKey(key)
	}
	req := &rspb.RangeRequest{RangeId: meta.RangeId, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{
		Scan: &rspb.ScanRequest{StartKey: start, EndKey: keys.MetaSpanEnd, Limit: 1}}}}}
	refreshed := false
	for depth := 0; ; depth++ {
		resp, err := r.sendToRange(ctx, meta, req)
		if errors.Is(err, errStaleDescriptor) && !refreshed {
			// Every replica of this copy of the meta range's descriptor
			// denies it: its replicas moved. Ask the peers, once.
			refreshed = true
			if mr, ok := r.resolver.(MetaRefresher); ok && mr.RefreshMetaRange(ctx) {
				if m := r.resolver.MetaRange(); m != nil {
					meta, req.RangeId = m, m.RangeId
				}
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		if resp.Error != nil {
			return nil, &RangeError{E: resp.Error}
		}
		kvs := resp.Responses[0].GetScan().GetKvs()
		if len(kvs) == 0 {
			return nil, &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_RANGE_NOT_FOUND, Message: fmt.Sprintf("no range holds key %q", key)}}
		}
		d := &rspb.RangeDescriptor{}
		if err := proto.Unmarshal(kvs[0].Value, d); err != nil {
			return nil, fmt.Errorf("meta record %q: %w", kvs[0].Key, err)
		}
		contained := bytes.Compare(d.StartKey, key) <= 0
		if inclusiveEnd {
			contained = bytes.Compare(d.StartKey, key) < 0
		}
		if bad := r.unknownNode(d); contained && bad != 0 {
			// A meta record naming a node this cluster does not have: not
			// cached; meta repair may replace it meanwhile.
			if now := time.Now().UnixNano(); now-r.lastUnknownWarn.Load() > int64(time.Second) {
				r.lastUnknownWarn.Store(now)
				r.log.Warn("meta record names an unknown node", "range", d.RangeId, "node", bad, "record", keys.Pretty(kvs[0].Key))
			}
			if werr := r.waitRetry(ctx, depth+1); werr != nil {
				return nil, &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_UNAVAILABLE,
					Message: fmt.Sprintf("meta record of r%d for key %s names node n%d, which this node does not know: %v", d.RangeId, keys.Pretty(key), bad, werr)}}
			}
			continue
		}
		if contained {
			r.cache.insert(d)
			if c := r.cache.lookup(key, inclusiveEnd); c != nil && c.Generation > d.Generation {
				return c, nil // a newer descriptor learned from a replica
			}
			return d, nil
		}
		// A gap: the record covering key is being rewritten (a split's
		// meta update is in progress, or awaits repair). Wait for it.
		if werr := r.waitRetry(ctx, depth+1); werr != nil {
			return nil, &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_UNAVAILABLE,
				Message: fmt.Sprintf("meta has no record covering key %s (a split is being recorded): %v", keys.Pretty(key), werr)}}
		}
	}
}

// staleRoute reports whether err says desc is out of date (every replica
// denied the range, or a key is outside it); it updates the cache from the
// error: the replica's descriptor and its hints for the keys' new ranges.
func (r *Router) staleRoute(desc *rspb.RangeDescriptor, err error) bool {
	var re *RangeError
	if errors.Is(err, errStaleDescriptor) {
		r.cache.evict(desc)
		return true
	}
	if !errors.As(err, &re) || re.E.Code != rspb.RangeError_RANGE_KEY_MISMATCH {
		return false
	}
	r.cache.evict(desc)
	if re.E.RangeDescriptor != nil {
		r.cache.insert(re.E.RangeDescriptor)
	}
	for _, d := range re.E.LocalDescriptors {
		r.cache.insert(d)
	}
	return true
}

// waitRetry backs off before the depth-th re-resolution of a stale route.
func (r *Router) waitRetry(ctx context.Context, depth int) error {
	d := time.Duration(depth) * minBackoff
	if d > maxBackoff {
		d = maxBackoff
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d == 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// AdminSplit splits the range containing key (an internal key) at key,
// following the range's lease and any concurrent change of the range.
func (r *Router) AdminSplit(ctx context.Context, key []byte, sticky bool) (*rspb.AdminSplitResponse, error) {
	resp, err := r.adminAt(ctx, key, func(rr *rspb.RangeRequest, _ *rspb.RangeDescriptor) (*rspb.RangeResponse, error) {
		rr.Admin = &rspb.RangeRequest_AdminSplit{AdminSplit: &rspb.AdminSplitRequest{SplitKey: key, Sticky: sticky}}
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	if resp.GetAdminSplit().GetLeft() != nil {
		r.cache.insert(resp.GetAdminSplit().Left)
		r.cache.insert(resp.GetAdminSplit().Right)
	}
	return resp.GetAdminSplit(), nil
}

// adminAt sends an admin request to the leaseholder of the range holding
// key, re-resolving the range while it changes. fill builds the request
// for the range as resolved (d); it may instead end the call with an
// answer or an error of its own.
func (r *Router) adminAt(ctx context.Context, key []byte, fill func(req *rspb.RangeRequest, d *rspb.RangeDescriptor) (*rspb.RangeResponse, error)) (*rspb.RangeResponse, error) {
	for depth := 0; ; depth++ {
		d, err := r.LookupRange(ctx, key, false)
		if err != nil {
			return nil, err
		}
		req := &rspb.RangeRequest{RangeId: d.RangeId}
		if done, err := fill(req, d); done != nil || err != nil {
			return done, err
		}
		resp, err := r.sendToRange(ctx, d, req)
		if r.staleRoute(d, err) {
			if werr := r.waitRetry(ctx, depth); werr != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if resp.Error != nil {
			return nil, &RangeError{E: resp.Error}
		}
		return resp, nil
	}
}

// Send runs requests on internal keys: requests are grouped by range, each
// group is one atomic range command, groups run in parallel. Responses come
// back in request order; span requests are merged across ranges.
func (r *Router) Send(ctx context.Context, reqs []*rspb.RequestUnion) ([]*rspb.ResponseUnion, error) {
	out := make([]*rspb.ResponseUnion, len(reqs))
	parts, err := r.sendPieces(ctx, batchsplit.Pieces(reqs))
	if err != nil {
		return nil, err
	}
	for i, q := range reqs {
		out[i] = mergeResponses(q, parts[i])
	}
	return out, nil
}

// sendPieces resolves each piece to ranges (splitting spans), sends one
// command per range and collects the partial responses per original index,
// in range order.
func (r *Router) sendPieces(ctx context.Context, pieces []batchsplit.Piece) (map[int][]rangedResp, error) {
	return r.sendPiecesDepth(ctx, pieces, 0, nil)
}

// maxHintTries bounds the re-sends to a merged-away range in search of the
// range that subsumed it (a node names it once the merge has applied
// there).
const maxHintTries = 3

// ambiguousError: a command that may have applied cannot be retried with
// exactly-once semantics any more.
func ambiguousError(w *batchsplit.Write, why string) error {
	return &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_AMBIGUOUS,
		Message: fmt.Sprintf("the write may or may not have applied: an attempt did not complete, and %s, so it cannot be retried without risking applying it twice (ranges that could answer from its record: %v)", why, w.Holders)}}
}

// sendPiecesDepth is sendPieces after depth re-resolutions (stale routes).
// prev is the command these pieces were last sent as (nil at first): the
// pieces keep its proposal ID and timestamp if they still form one command
// for one range; if they do not and it may have applied, the result is
// AMBIGUOUS.
func (r *Router) sendPiecesDepth(ctx context.Context, pieces []batchsplit.Piece, depth int, prev *batchsplit.Write) (map[int][]rangedResp, error) {
	groups, err := batchsplit.GroupByRange(ctx, routerKeyspace{r}, pieces)
	if err != nil {
		return nil, err
	}
	reuse, why := batchsplit.Reuse(prev, groups)
	if why != "" {
		return nil, ambiguousError(prev, why)
	}
	return batchsplit.Send(groups, func(g *batchsplit.Group[*rspb.RangeDescriptor]) (map[int][]rangedResp, error) {
		return r.sendGroup(ctx, g.Range, g.Pieces, depth, reuse)
	})
}

type rangedResp struct {
	start []byte // start key of the range that answered (for ordering)
	resp  *rspb.ResponseUnion
}

// sendGroup sends the pieces for one range as one command (w: the command
// they were sent as before, or nil); on a stale descriptor it re-resolves
// them (they may now span several ranges).
func (r *Router) sendGroup(ctx context.Context, desc *rspb.RangeDescriptor, pieces []batchsplit.Piece, depth int, w *batchsplit.Write) (map[int][]rangedResp, error) {
	reqs := batchsplit.Requests(pieces)
	write := !ranges.IsReadOnly(reqs)
	if w == nil {
		var ts *rspb.Timestamp
		if write && r.clock != nil {
			ts = ranges.TSToProto(r.clock.Now())
		}
		w = batchsplit.NewWrite(ts, time.Now())
	}
	w.HeldBy(desc.RangeId)
	req := &rspb.RangeRequest{RangeId: desc.RangeId, ProposalId: w.ID, Timestamp: w.Timestamp, Requests: reqs}
	ts := txnSendFrom(ctx)
	if ts != nil {
		req.Txn = ts.txn
	}
	track := w
	if !write {
		track = nil // a read applies nothing: it is simply sent again
	}
	resp, err := r.sendResolving(ctx, desc, req, track)
	for track != nil && track.Ambiguous && errors.Is(err, errStaleDescriptor) && !track.SubsumerKnown(desc.RangeId) && track.HintTries < maxHintTries {
		// Every replica denied the range (merged away) and none named the
		// range that subsumed it yet: ask again before giving up on
		// exactly-once.
		track.HintTries++
		if werr := r.waitRetry(ctx, depth+track.HintTries); werr != nil {
			return nil, err
		}
		resp, err = r.sendWrite(ctx, desc, req, track)
	}
	if r.staleRoute(desc, err) {
		// The range changed (split or merge): re-resolve the pieces, which
		// may now span several ranges. A command that may have applied is
		// sent again as the same command (same proposal ID and timestamp)
		// to a range holding its dedup record, or reported AMBIGUOUS.
		if werr := r.waitRetry(ctx, depth); werr != nil {
			return nil, err
		}
		return r.sendPiecesDepth(ctx, pieces, depth+1, w)
	}
	if err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, &RangeError{E: resp.Error}
	}
	ts.observe(resp.Txn)
	if len(resp.Responses) != len(pieces) {
		return nil, fmt.Errorf("r%d answered %d of %d requests", desc.RangeId, len(resp.Responses), len(pieces))
	}
	out := map[int][]rangedResp{}
	for i, p := range pieces {
		rr := resp.Responses[i]
		if sc := rr.GetScan(); sc != nil && len(sc.ResumeKey) > 0 {
			if err := r.finishScan(ctx, desc, p.Req.GetScan(), sc); err != nil {
				return nil, err
			}
		}
		if ex := rr.GetExport(); ex != nil && len(ex.ResumeKey) > 0 {
			if err := r.finishExport(ctx, p.Req.GetExport(), ex); err != nil {
				return nil, err
			}
		}
		out[p.Index] = append(out[p.Index], rangedResp{start: desc.StartKey, resp: rr})
	}
	return out, nil
}

// sendResolving is sendRead, after which intents of other transactions
// the request meets are pushed and resolved (conflicts.go) and the request
// sent again, as the same command (a WRITE_INTENT answer applied nothing).
func (r *Router) sendResolving(ctx context.Context, desc *rspb.RangeDescriptor, req *rspb.RangeRequest, w *batchsplit.Write) (*rspb.RangeResponse, error) {
	return r.resolvingIntents(ctx, req, func() (*rspb.RangeResponse, error) { return r.sendRead(ctx, desc, req, w) })
}

// resolvingIntents calls send (which sends req) until its answer is not
// WRITE_INTENT, pushing and resolving the intents met in between.
func (r *Router) resolvingIntents(ctx context.Context, req *rspb.RangeRequest, send func() (*rspb.RangeResponse, error)) (*rspb.RangeResponse, error) {
	var cw conflictWait
	defer func() {
		if !cw.start.IsZero() && r.metrics != nil {
			r.metrics.contention.Observe(time.Since(cw.start).Seconds())
		}
	}()
	for {
		resp, err := send()
		if err != nil || resp.Error == nil || resp.Error.Code != rspb.RangeError_WRITE_INTENT {
			return resp, err
		}
		if err := r.handleIntents(ctx, req, resp, &cw); err != nil {
			return nil, err
		}
	}
}

// errNotOneRange: a one-phase batch's keys are no longer in one range.
var errNotOneRange = errors.New("the batch's keys are not in one range")

// sendOnePhase sends reqs (no scans: a scan's later pages would read at
// another timestamp) to desc's range as one command (never split: an
// atomic batch), resolving intents in its way. If the range no longer
// holds all the keys (a split or merge the cache had not seen), nothing
// was applied and it returns errNotOneRange.
func (r *Router) sendOnePhase(ctx context.Context, desc *rspb.RangeDescriptor, reqs []*rspb.RequestUnion) ([]*rspb.ResponseUnion, error) {
	var ts *rspb.Timestamp
	if r.clock != nil {
		ts = ranges.TSToProto(r.clock.Now())
	}
	w := batchsplit.NewWrite(ts, time.Now())
	req := &rspb.RangeRequest{RangeId: desc.RangeId, ProposalId: w.ID, Timestamp: w.Timestamp, Requests: reqs}
	resp, err := r.resolvingIntents(ctx, req, func() (*rspb.RangeResponse, error) { return r.sendWrite(ctx, desc, req, w) })
	if err != nil {
		if r.staleRoute(desc, err) {
			if w.Ambiguous {
				return nil, ambiguousError(w, "its range changed (a split or merge), so it cannot be sent again as one command")
			}
			return nil, errNotOneRange
		}
		return nil, err
	}
	if resp.Error != nil {
		return nil, &RangeError{E: resp.Error}
	}
	return resp.Responses, nil
}

// finishScan pages a scan piece that stopped at the per-response byte limit.
func (r *Router) finishScan(ctx context.Context, desc *rspb.RangeDescriptor, s *rspb.ScanRequest, acc *rspb.ScanResponse) error {
	for len(acc.ResumeKey) > 0 && (s.Limit == 0 || int64(len(acc.Kvs)) < s.Limit) {
		next := proto.Clone(s).(*rspb.ScanRequest)
		if s.Reverse {
			next.EndKey = acc.ResumeKey
		} else {
			next.StartKey = acc.ResumeKey
		}
		if s.Limit > 0 {
			next.Limit = s.Limit - int64(len(acc.Kvs))
		}
		resps, err := r.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{Scan: next}}})
		if err != nil {
			return err
		}
		more := resps[0].GetScan()
		acc.Kvs = append(acc.Kvs, more.Kvs...)
		acc.ResumeKey = more.ResumeKey
	}
	acc.ResumeKey = nil
	return nil
}

// finishExport pages an export piece that stopped at the per-response
// byte limit (ExportStream pages without accumulating; this is for an
// export sent in a batch through Send).
func (r *Router) finishExport(ctx context.Context, q *rspb.ExportRequest, acc *rspb.ExportResponse) error {
	for len(acc.ResumeKey) > 0 {
		next := &rspb.ExportRequest{StartKey: acc.ResumeKey, EndKey: q.EndKey, StartTs: q.StartTs, EndTs: q.EndTs, AllVersions: q.AllVersions}
		resps, err := r.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Export{Export: next}}})
		if err != nil {
			return err
		}
		more := resps[0].GetExport()
		acc.Versions = append(acc.Versions, more.GetVersions()...)
		acc.ResumeKey = more.GetResumeKey()
	}
	return nil
}

// routerKeyspace is the router's ranges (descriptors, found through
// LookupRange) and internal keys as seen by batchsplit.
type routerKeyspace struct{ r *Router }

func (k routerKeyspace) Locate(ctx context.Context, key []byte) (*rspb.RangeDescriptor, error) {
	return k.r.LookupRange(ctx, key, false)
}

func (routerKeyspace) RangeID(d *rspb.RangeDescriptor) uint64 { return d.RangeId }

// RangeEnd: a descriptor always has an end key (the last range's is
// keys.KeyMax).
func (routerKeyspace) RangeEnd(d *rspb.RangeDescriptor) []byte { return d.EndKey }

// Span is the request's batcheval span; a span without an end key runs to
// the end of the internal keyspace, keys.KeyMax (batcheval: an empty bound
// is open).
func (routerKeyspace) Span(q *rspb.RequestUnion) (start, end []byte, point bool) {
	start, end, point = ranges.RequestSpan(q)
	if !point && len(end) == 0 {
		end = keys.KeyMax
	}
	return start, end, point
}

// Clip is the request's batcheval command's Clip (q itself for a request
// no command knows).
func (routerKeyspace) Clip(q *rspb.RequestUnion, start, end []byte) *rspb.RequestUnion {
	c, err := batcheval.Lookup(q)
	if err != nil {
		return q
	}
	return c.Clip(q, start, end)
}

// mergeResponses folds the per-range parts of one request into one
// response (the request type's batcheval.Command.Merge).
func mergeResponses(q *rspb.RequestUnion, parts []rangedResp) *rspb.ResponseUnion {
	batchsplit.SortByStart(parts, func(p rangedResp) []byte { return p.start })
	resps := make([]*rspb.ResponseUnion, len(parts))
	for i, p := range parts {
		resps[i] = p.resp
	}
	c, err := batcheval.Lookup(q)
	if err != nil {
		if len(resps) == 0 {
			return nil
		}
		return resps[0]
	}
	return c.Merge(q, resps)
}

// SendToRange sends one request to a range, trying its replicas and
// following NOT_LEASEHOLDER redirects until one answers.
func (r *Router) SendToRange(ctx context.Context, desc *rspb.RangeDescriptor, req *rspb.RangeRequest) (*rspb.RangeResponse, error) {
	return r.sendToRange(ctx, desc, req)
}

// SendToNode sends one request to one node's replica.
func (r *Router) SendToNode(ctx context.Context, nodeID uint64, req *rspb.RangeRequest) (*rspb.RangeResponse, error) {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	return r.sendToNode(actx, nodeID, req)
}

// AdminMerge merges the range containing key (an internal key) with its
// right neighbour. Every attempt is pinned to the range as read from meta
// when the call starts (its generation): an attempt whose answer was lost
// (a merge waits for the neighbour's replicas, which can outlast one
// attempt's timeout) may have merged, and a retry must not merge a second
// neighbour. When the range's generation has moved, the call answers the
// merge as done if the same range now reaches past the end it had, and
// fails otherwise (the range changed under it; nothing more is merged).
func (r *Router) AdminMerge(ctx context.Context, key []byte) (*rspb.AdminMergeResponse, error) {
	if d := r.cache.lookup(key, false); d != nil {
		r.cache.evict(d) // pin what meta says now, not a cached descriptor
	}
	var pin *rspb.RangeDescriptor
	resp, err := r.adminAt(ctx, key, func(rr *rspb.RangeRequest, d *rspb.RangeDescriptor) (*rspb.RangeResponse, error) {
		if pin == nil {
			pin = d
		} else if d.Generation != pin.Generation {
			if d.RangeId == pin.RangeId && bytes.Equal(d.StartKey, pin.StartKey) && bytes.Compare(d.EndKey, pin.EndKey) > 0 {
				r.log.Info("merge answered from the range's new extent (an earlier attempt's answer was lost)", "range", d.RangeId, "generation", d.Generation)
				return &rspb.RangeResponse{Admin: &rspb.RangeResponse_AdminMerge{AdminMerge: &rspb.AdminMergeResponse{Merged: d}}}, nil
			}
			return nil, &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_FAILED_PRECONDITION, RangeDescriptor: d,
				Message: fmt.Sprintf("r%d changed while it was being merged (generation %d, now r%d at generation %d spanning [%s, %s)); check the ranges and retry",
					pin.RangeId, pin.Generation, d.RangeId, d.Generation, keys.Pretty(d.StartKey), keys.Pretty(d.EndKey))}}
		}
		rr.Admin = &rspb.RangeRequest_AdminMerge{AdminMerge: &rspb.AdminMergeRequest{ExpectedGeneration: pin.Generation}}
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	r.cache.insert(resp.GetAdminMerge().Merged)
	return resp.GetAdminMerge(), nil
}
