package gateway

import (
	"context"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/internal/batchsplit"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// sendRead sends a range command: a read-only one under a read mode other
// than STRONG (readOptsFrom(ctx)) as a follower read, anything else to the
// leaseholder (sendWrite; w follows a write's attempts, nil for reads).
func (r *Router) sendRead(ctx context.Context, desc *rspb.RangeDescriptor, req *rspb.RangeRequest, w *batchsplit.Write) (*rspb.RangeResponse, error) {
	if o := readOptsFrom(ctx); o != nil && w == nil && ranges.IsReadOnly(req.Requests) {
		return r.sendFollowerRead(ctx, desc, req, o)
	}
	return r.sendWrite(ctx, desc, req, w)
}

// sendFollowerRead serves a read from the nearest replica of desc at its
// closed timestamp, which must reach o.minTS (CAUSAL: the highest bookmark,
// waited for up to o.wait; BOUNDED_STALENESS: now - max_staleness, no
// wait). Nearest is this node's own replica if it has one, then the others
// by shared locality (followerOrder). A replica that is unreachable or has
// no data passes the read to the next; one that answers NOT_CLOSED (its closed
// timestamp is behind and it cannot expect to catch up in time) sends it
// to the leaseholder, which serves it as a STRONG read (at its clock,
// moved past o.minTS: the bookmarked writes are below it). A replica that
// waited the whole bookmark timeout ends the read with BOOKMARK_TIMEOUT.
func (r *Router) sendFollowerRead(ctx context.Context, desc *rspb.RangeDescriptor, req *rspb.RangeRequest, o *readOpts) (*rspb.RangeResponse, error) {
	if r.local != nil && req.GatewayNodeId == 0 {
		req.GatewayNodeId = r.local.NodeID()
	}
	fr := proto.Clone(req).(*rspb.RangeRequest)
	fr.FollowerRead = true
	fr.MinClosedTimestamp = ranges.TSToProto(o.minTS)
	causal := o.mode == rspb.ReadMode_CAUSAL
	timedOut := func(why string) *rspb.RangeResponse {
		return &rspb.RangeResponse{Error: &rspb.RangeError{Code: rspb.RangeError_BOOKMARK_TIMEOUT,
			Message: fmt.Sprintf("r%d: no replica reached the bookmark %s within the bookmark timeout %v: %s", desc.RangeId, o.minTS, o.wait, why)}}
	}
	var lastErr error
	for _, nodeID := range r.followerOrder(desc) {
		wait := o.wait
		if causal {
			if wait = time.Until(o.until); wait <= 0 {
				return timedOut(fmt.Sprint(lastErr)), nil
			}
		}
		fr.ClosedWaitMillis = wait.Milliseconds()
		actx, cancel := context.WithTimeout(ctx, wait+attemptTimeout)
		resp, err := r.sendToNode(actx, nodeID, fr)
		cancel()
		if err != nil {
			lastErr = fmt.Errorf("n%d: %w", nodeID, err)
			if ctx.Err() != nil {
				return nil, r.giveUp(ctx, desc, lastErr, nil)
			}
			continue
		}
		if resp.Error == nil {
			if resp.Timestamp != nil && r.clock != nil {
				_ = r.clock.UpdateWait(ctx, ranges.TSFromProto(resp.Timestamp))
			}
			return resp, nil
		}
		lastErr = &RangeError{E: resp.Error}
		switch resp.Error.Code {
		case rspb.RangeError_RANGE_NOT_FOUND, rspb.RangeError_UNAVAILABLE:
			continue // no replica here (any more), or no data yet: the next one
		case rspb.RangeError_NOT_CLOSED:
		case rspb.RangeError_RANGE_KEY_MISMATCH:
			return nil, lastErr
		default:
			return resp, nil // BOOKMARK_TIMEOUT, bad input, below the GC threshold
		}
		break
	}
	r.log.Debug("follower read goes to the leaseholder", "range", desc.RangeId, "mode", o.mode.String(), "why", fmt.Sprint(lastErr))
	// To the leaseholder, as a STRONG read whose clock has passed minTS.
	strong := proto.Clone(req).(*rspb.RangeRequest)
	if !o.minTS.IsEmpty() {
		strong.Timestamp = ranges.TSToProto(o.minTS)
	}
	// A replica that met an intent redirected too: the leaseholder pushes
	// and resolves (resolvingIntents).
	if !causal {
		return r.resolvingIntents(ctx, strong, func() (*rspb.RangeResponse, error) { return r.sendWrite(ctx, desc, strong, nil) })
	}
	// A causal read that the leaseholder cannot serve within what is left
	// of the bookmark timeout (it is cut off from this node, or there is
	// none yet) ends with BOOKMARK_TIMEOUT, not at the caller's deadline.
	left := time.Until(o.until)
	if left <= 0 {
		return timedOut(fmt.Sprintf("the replicas redirected (%v) and no time was left for the leaseholder", lastErr)), nil
	}
	sctx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	resp, err := r.resolvingIntents(sctx, strong, func() (*rspb.RangeResponse, error) { return r.sendWrite(sctx, desc, strong, nil) })
	if err != nil && sctx.Err() != nil && ctx.Err() == nil {
		return timedOut(fmt.Sprintf("the replicas redirected (%v) and the leaseholder did not answer: %v", lastErr, err)), nil
	}
	return resp, err
}

// LocalityResolver is a Resolver that knows the nodes' localities (ok
// false: unknown node): follower reads then go to the nearest replica.
type LocalityResolver interface {
	NodeLocality(nodeID uint64) (tiers []*rspb.LocalityTier, ok bool)
}

// followerOrder lists the nodes to try for a follower read, nearest first:
// this node if it has a replica, then the others by how many leading
// locality tiers they share with this node (more first; all equal when
// the resolver knows no localities), among equals in descriptor order
// with the last known leaseholder last.
func (r *Router) followerOrder(desc *rspb.RangeDescriptor) []uint64 {
	r.mu.Lock()
	leader := r.leaders[desc.RangeId]
	r.mu.Unlock()
	var local uint64
	if r.local != nil {
		local = r.local.NodeID()
	}
	lr, _ := r.resolver.(LocalityResolver)
	var mine []*rspb.LocalityTier
	if lr != nil && local != 0 {
		mine, _ = lr.NodeLocality(local)
	}
	type cand struct {
		node   uint64
		shared int
	}
	var out []uint64
	var rest []cand
	for _, rep := range desc.Replicas {
		switch {
		case contains(out, rep.NodeId):
		case rep.NodeId == local:
			out = append(out, local)
		default:
			c := cand{node: rep.NodeId}
			if lr != nil {
				theirs, _ := lr.NodeLocality(rep.NodeId)
				c.shared = sharedTiers(mine, theirs)
			}
			rest = append(rest, c)
		}
	}
	sort.SliceStable(rest, func(i, j int) bool {
		if rest[i].shared != rest[j].shared {
			return rest[i].shared > rest[j].shared
		}
		return rest[i].node != leader && rest[j].node == leader
	})
	for _, c := range rest {
		if !contains(out, c.node) {
			out = append(out, c.node)
		}
	}
	return out
}

// sharedTiers counts the leading locality tiers a and b have in common
// (same key and value).
func sharedTiers(a, b []*rspb.LocalityTier) int {
	n := 0
	for n < len(a) && n < len(b) && a[n].GetKey() == b[n].GetKey() && a[n].GetValue() == b[n].GetValue() {
		n++
	}
	return n
}
