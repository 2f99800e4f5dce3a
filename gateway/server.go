package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

// scanChunkKVs bounds the number of pairs in one streamed Scan message.
const scanChunkKVs = 1000

// KVServer implements the public KV service on top of a Router. Handlers
// only validate, map client keys into the user span, route, and map back.
type KVServer struct {
	rspb.UnimplementedKVServer
	router   *Router
	limits   Limits
	clock    *leases.Clock
	nodeID   func() uint64
	cluster  func() string // the cluster ID (bookmarks; SetClusterID)
	draining atomic.Bool
	txns     *TxnCoordinator // nil: transactions are not enabled
}

// NewKVServer returns the KV service.
func NewKVServer(router *Router, limits Limits, clock *leases.Clock, nodeID func() uint64) *KVServer {
	return &KVServer{router: router, limits: limits, clock: clock, nodeID: nodeID}
}

// Drain makes every later call fail with Unavailable.
func (s *KVServer) Drain() { s.draining.Store(true) }

func (s *KVServer) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.draining.Load() {
		return nil, nil, status.Error(codes.Unavailable, fmt.Sprintf("node n%d is shutting down", s.nodeID()))
	}
	if _, ok := ctx.Deadline(); ok {
		ctx, cancel := context.WithCancel(ctx)
		return ctx, cancel, nil
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	return ctx, cancel, nil
}

// checkAsOf refuses reads in the future beyond the max clock offset, and
// waits until this node's clock has reached an as_of ahead of it (at most
// the max offset). A client timestamp never moves the clock: a read at a
// timestamp the clock has reached is safe, since it enters the
// leaseholder's timestamp cache and later writes commit above it.
func (s *KVServer) checkAsOf(ctx context.Context, what string, ts *rspb.Timestamp) error {
	if ts == nil {
		return nil
	}
	t := ranges.TSFromProto(ts)
	if t.IsEmpty() || t.WallTime < 0 || t.Logical < 0 {
		return invalidf("%s: as_of timestamp %s is not a valid timestamp", what, t)
	}
	// Timestamps handed out by other nodes may be ahead of this clock by up
	// to the max offset; beyond that the timestamp is in the future.
	if err := s.clock.WaitFor(ctx, t); err != nil {
		var jump *leases.ClockJumpError
		if errors.As(err, &jump) {
			return invalidf("%s: as_of timestamp %s is in the future: %v ahead of n%d's physical clock %s, beyond the max clock offset %v (limit %s)",
				what, t, time.Duration(t.WallTime-jump.Physical), s.nodeID(), kv.Timestamp{WallTime: jump.Physical}, jump.MaxOffset,
				kv.Timestamp{WallTime: jump.Physical + int64(jump.MaxOffset)})
		}
		return ToStatus(err)
	}
	return nil
}

// run validates, maps and routes client requests. rm is the read mode of
// the call (a Batch's; a Get's own, batch false); route, when set, addresses
// the batch to one range on this node (direct.go).
func (s *KVServer) run(ctx context.Context, reqs []*rspb.RequestUnion, rm readModeFields, batch bool, route *rspb.DirectRoute) ([]*rspb.ResponseUnion, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	internal, opts, err := s.validate(ctx, reqs, rm, batch)
	if err != nil {
		return nil, err
	}
	ctx = withReadOpts(ctx, opts)
	write := !ranges.IsReadOnly(reqs)
	if route != nil {
		if err := s.checkRoute(route, rm, write); err != nil {
			return nil, err
		}
	}
	var resps []*rspb.ResponseUnion
	if route != nil {
		resps, err = s.sendDirect(ctx, route, internal, write)
	} else {
		resps, err = s.router.Send(ctx, internal)
	}
	if err != nil {
		return nil, ToStatus(err)
	}
	for _, r := range resps {
		toClient(r)
	}
	if write {
		bm := s.bookmarkFor(resps)
		for _, r := range resps {
			setBookmark(r, bm)
		}
	} else {
		// Each value read carries the bookmark of its version (a scan's
		// rows that of the newest), so that a session hopping between
		// replicas never reads older (monotonic reads): its next CAUSAL
		// read waits for that version.
		for _, r := range resps {
			if g := r.GetGet(); g.GetFound() {
				g.Bookmark = EncodeBookmark(s.clusterID(), ranges.TSFromProto(g.GetKv().GetTimestamp()))
			}
			if sc := r.GetScan(); sc != nil {
				sc.Bookmark = s.readBookmark(newestVersion(kv.Timestamp{}, sc.Kvs))
			}
		}
	}
	return resps, nil
}

// validate checks client requests (limits and each command's checks, the
// read mode, as_of) and maps their keys into the user span. rm is the read
// mode of the call (a Batch's; a Get's own, batch false). It returns the
// internal requests and how to route the reads (nil: STRONG). Its only
// wait is for an as_of slightly ahead of this node's clock (checkAsOf);
// it changes nothing, reqs included.
func (s *KVServer) validate(ctx context.Context, reqs []*rspb.RequestUnion, rm readModeFields, batch bool) ([]*rspb.RequestUnion, *readOpts, error) {
	if err := s.limits.checkBatch(reqs); err != nil {
		return nil, nil, err
	}
	var opts *readOpts
	if rm.set() {
		if !ranges.IsReadOnly(reqs) {
			return nil, nil, invalidf("read_mode: %s is for reads only; a batch with writes is STRONG", rm.mode)
		}
		for i, q := range reqs {
			prefix := ""
			if batch {
				prefix = fmt.Sprintf("requests[%d].", i)
			}
			if c, err := batcheval.Lookup(q); err == nil && c.AsOf(q) != nil && rm.mode != rspb.ReadMode_STRONG {
				return nil, nil, invalidf("%sas_of: not allowed with read_mode %s (a %s read picks its timestamp)", prefix, rm.mode, rm.mode)
			}
		}
		o, err := s.readOptions(ctx, "", rm, nil)
		if err != nil {
			return nil, nil, err
		}
		opts = o
	}
	if batch {
		for i, q := range reqs {
			if inner, ok := innerRequest(q); ok && readModeOf(inner).set() {
				return nil, nil, invalidf("requests[%d].read_mode: a batch's requests take the batch's read mode (read_mode, max_staleness, bookmarks, bookmark_timeout of the BatchRequest)", i)
			}
		}
	}
	internal := make([]*rspb.RequestUnion, len(reqs))
	for i, q := range reqs {
		c, err := batcheval.Lookup(q)
		if err != nil { // (checkBatch refused these)
			return nil, nil, ToStatus(err)
		}
		if c.Internal() {
			return nil, nil, invalidf("requests[%d]: %s is an internal request that the KV service does not serve (backups use the Backup service)", i, c.Name())
		}
		if err := s.checkAsOf(ctx, c.Name(), c.AsOf(q)); err != nil {
			return nil, nil, err
		}
		internal[i] = c.ToInternal(q)
	}
	return internal, opts, nil
}

func one[T any](s *KVServer, ctx context.Context, q *rspb.RequestUnion, get func(*rspb.ResponseUnion) T) (T, error) {
	var zero T
	var rm readModeFields
	if inner, ok := innerRequest(q); ok {
		rm = readModeOf(inner)
	}
	resps, err := s.run(ctx, []*rspb.RequestUnion{q}, rm, false, nil)
	if err != nil {
		return zero, err
	}
	return get(resps[0]), nil
}

// Get reads one key.
func (s *KVServer) Get(ctx context.Context, r *rspb.GetRequest) (*rspb.GetResponse, error) {
	return one(s, ctx, &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: r}}, (*rspb.ResponseUnion).GetGet)
}

// Put writes one key.
func (s *KVServer) Put(ctx context.Context, r *rspb.PutRequest) (*rspb.PutResponse, error) {
	return one(s, ctx, &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: r}}, (*rspb.ResponseUnion).GetPut)
}

// Delete deletes one key.
func (s *KVServer) Delete(ctx context.Context, r *rspb.DeleteRequest) (*rspb.DeleteResponse, error) {
	return one(s, ctx, &rspb.RequestUnion{Value: &rspb.RequestUnion_Delete{Delete: r}}, (*rspb.ResponseUnion).GetDelete)
}

// ConditionalPut writes if the current value matches.
func (s *KVServer) ConditionalPut(ctx context.Context, r *rspb.ConditionalPutRequest) (*rspb.ConditionalPutResponse, error) {
	return one(s, ctx, &rspb.RequestUnion{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: r}}, (*rspb.ResponseUnion).GetConditionalPut)
}

// Increment adds to an integer value.
func (s *KVServer) Increment(ctx context.Context, r *rspb.IncrementRequest) (*rspb.IncrementResponse, error) {
	return one(s, ctx, &rspb.RequestUnion{Value: &rspb.RequestUnion_Increment{Increment: r}}, (*rspb.ResponseUnion).GetIncrement)
}

// DeleteRange deletes every key in a span.
func (s *KVServer) DeleteRange(ctx context.Context, r *rspb.DeleteRangeRequest) (*rspb.DeleteRangeResponse, error) {
	return one(s, ctx, &rspb.RequestUnion{Value: &rspb.RequestUnion_DeleteRange{DeleteRange: r}}, (*rspb.ResponseUnion).GetDeleteRange)
}

// Batch runs several requests.
func (s *KVServer) Batch(ctx context.Context, r *rspb.BatchRequest) (*rspb.BatchResponse, error) {
	if len(r.Txn) > 0 || r.Atomic {
		return s.batchInTxn(ctx, r)
	}
	resps, err := s.run(ctx, r.Requests, readModeOf(r.ProtoReflect()), true, r.Route)
	if err != nil {
		return nil, err
	}
	return s.batchResponse(r.Requests, resps), nil
}

// batchResponse is a Batch's answer: the responses and the bookmark of
// its writes, or of the versions it read.
func (s *KVServer) batchResponse(reqs []*rspb.RequestUnion, resps []*rspb.ResponseUnion) *rspb.BatchResponse {
	out := &rspb.BatchResponse{Responses: resps}
	if !ranges.IsReadOnly(reqs) {
		out.Bookmark = s.bookmarkFor(resps)
	} else {
		out.Bookmark = s.readBookmarkFor(resps)
	}
	return out
}

// Scan streams the keys of a span in chunks.
func (s *KVServer) Scan(r *rspb.ScanRequest, stream rspb.KV_ScanServer) error {
	ctx, cancel, err := s.begin(stream.Context())
	if err != nil {
		return err
	}
	defer cancel()
	in, opts, err := s.validateScan(ctx, r)
	if err != nil {
		return err
	}
	ctx = withReadOpts(ctx, opts)
	var newest kv.Timestamp // of the rows streamed so far: every chunk's bookmark
	err = s.router.ScanStream(ctx, in, func(kvs []*rspb.KeyValue) error {
		for len(kvs) > 0 {
			n := min(len(kvs), scanChunkKVs)
			chunk := &rspb.ScanResponse{Kvs: kvs[:n]}
			newest = newestVersion(newest, chunk.Kvs)
			chunk.Bookmark = s.readBookmark(newest)
			toClient(&rspb.ResponseUnion{Value: &rspb.ResponseUnion_Scan{Scan: chunk}})
			if err := stream.Send(chunk); err != nil {
				return err
			}
			kvs = kvs[n:]
		}
		return nil
	})
	return ToStatus(err)
}

// validateScan checks a streamed Scan (limits, the scan's checks, read
// mode, as_of) and maps it into the user span, as validate does for other
// requests. It returns the internal scan and how to route it (nil:
// STRONG).
func (s *KVServer) validateScan(ctx context.Context, r *rspb.ScanRequest) (*rspb.ScanRequest, *readOpts, error) {
	if _, err := s.limits.checkRequest(&rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: r}}); err != nil {
		return nil, nil, err
	}
	var opts *readOpts
	if rm := readModeOf(r.ProtoReflect()); rm.set() {
		o, err := s.readOptions(ctx, "", rm, r.AsOf)
		if err != nil {
			return nil, nil, err
		}
		opts = o
	}
	if err := s.checkAsOf(ctx, "scan", r.AsOf); err != nil {
		return nil, nil, err
	}
	return toInternal(&rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: r}}).GetScan(), opts, nil
}

// toInternal maps a client request's keys into the user span.
func toInternal(q *rspb.RequestUnion) *rspb.RequestUnion {
	c, err := batcheval.Lookup(q)
	if err != nil {
		return q
	}
	return c.ToInternal(q)
}

// toClient strips the user prefix from keys in a response, in place.
func toClient(r *rspb.ResponseUnion) { batcheval.ToClient(r) }
