package gateway

import (
	"bytes"
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// Batches addressed to one range (BatchRequest.route): a client that
// caches ranges and leaseholders (client/) sends the part of its batch for
// one range to the node it believes holds the lease. The node serves it
// from its own replica, as one command, and never forwards it (no second
// hop); a refusal goes back to the client with a RouteHint, from which it
// fixes its cache. A write carries the client's proposal identity, which
// the replicas deduplicate on, so the client's retries apply it once.

const (
	// minProposalID, maxProposalID bound route.proposal_id.
	minProposalID = 8
	maxProposalID = 64
	// maxProposalAge: a routed write's proposal timestamp may trail this
	// node's clock by at most half the dedup window, so that its retries
	// still find its record.
	maxProposalAge = ranges.DedupWindow / 2
)

// checkRoute validates a batch's route (no I/O): INVALID_ARGUMENT naming
// the field.
func (s *KVServer) checkRoute(route *rspb.DirectRoute, rm readModeFields, write bool) error {
	if route.RangeId == 0 {
		return invalidf("route.range_id: required (the range the batch is addressed to)")
	}
	if rm.set() {
		return invalidf("route: a batch addressed to a range is STRONG; send read_mode %s (with max_staleness, bookmarks, bookmark_timeout) without a route", rm.mode)
	}
	if !write {
		return nil
	}
	if n := len(route.ProposalId); n < minProposalID || n > maxProposalID {
		return invalidf("route.proposal_id: %d bytes; a write needs %d to %d (random bytes, new for each logical write, reused by its retries)", n, minProposalID, maxProposalID)
	}
	if route.ProposalTimestamp == nil {
		return invalidf("route.proposal_timestamp: required for a write (the client's clock at the write's first attempt, reused by its retries)")
	}
	ts := ranges.TSFromProto(route.ProposalTimestamp)
	if ts.WallTime <= 0 || ts.Logical < 0 {
		return invalidf("route.proposal_timestamp: %s is not a valid timestamp", ts)
	}
	if err := s.clock.CheckPeer(ts, s.clock.MaxOffset()); err != nil {
		return invalidf("route.proposal_timestamp: %s is ahead of n%d's clock by more than twice the max clock offset %v (the client's clock runs ahead): %v",
			ts, s.nodeID(), s.clock.MaxOffset(), err)
	}
	if behind := time.Duration(s.clock.PhysicalNow() - ts.WallTime); behind > maxProposalAge {
		return invalidf("route.proposal_timestamp: %s is %v behind n%d's clock, more than %v (half the %v dedup window): the client's clock runs behind, or the write is retried too late to be deduplicated",
			ts, behind.Round(time.Millisecond), s.nodeID(), maxProposalAge, ranges.DedupWindow)
	}
	return nil
}

// sendDirect serves a routed batch (requests on internal keys) from this
// node's replica of route.range_id, paging its scans, and turns a
// replica's refusal into a status carrying a RouteHint.
func (s *KVServer) sendDirect(ctx context.Context, route *rspb.DirectRoute, reqs []*rspb.RequestUnion, write bool) ([]*rspb.ResponseUnion, error) {
	local := s.router.local
	if local == nil {
		return nil, status.Error(codes.Unavailable, "this node has no store: it cannot serve a batch addressed to a range (send it without a route)")
	}
	req := &rspb.RangeRequest{RangeId: route.RangeId, Requests: reqs, GatewayNodeId: local.NodeID()}
	if write {
		req.ProposalId, req.Timestamp = route.ProposalId, route.ProposalTimestamp
	}
	// Intents of other transactions in the way are pushed and resolved
	// here, as the router does (conflicts.go), and the batch served again.
	var cw conflictWait
	resp := local.Send(ctx, req)
	for resp.Error != nil && resp.Error.Code == rspb.RangeError_WRITE_INTENT {
		if err := s.router.handleIntents(ctx, req, resp, &cw); err != nil {
			return nil, ToStatus(err)
		}
		resp = local.Send(ctx, req)
	}
	if resp.Error != nil {
		return nil, s.routeRefusal(resp.Error)
	}
	if len(resp.Responses) != len(reqs) {
		return nil, status.Errorf(codes.Internal, "r%d answered %d of %d requests", route.RangeId, len(resp.Responses), len(reqs))
	}
	for i, rr := range resp.Responses {
		if sc := rr.GetScan(); sc != nil && len(sc.ResumeKey) > 0 {
			// The rest of a scan beyond the response budget: paged
			// through the router like any scan.
			if err := s.router.finishScan(ctx, nil, reqs[i].GetScan(), sc); err != nil {
				return nil, ToStatus(err)
			}
		}
	}
	return resp.Responses, nil
}

// routeRefusal is the status of a replica's refusal of a routed batch,
// with a RouteHint detail: the code, and what this node knows of where
// the keys are now.
func (s *KVServer) routeRefusal(re *rspb.RangeError) error {
	st := status.Convert(ToStatus(&RangeError{E: re}))
	hint := &rspb.RouteHint{Code: re.Code}
	switch re.Code {
	case rspb.RangeError_NOT_LEASEHOLDER:
		if id := re.LeaderNodeId; id != 0 {
			if addr, ok := s.router.resolver.NodeAddress(id); ok {
				hint.Leaseholder = &rspb.RoutingServer{NodeId: id, Address: addr, Role: RoleVoter}
			}
		}
	case rspb.RangeError_RANGE_NOT_FOUND:
		if d := re.RangeDescriptor; d != nil {
			hint.SubsumedBy = d.RangeId
		}
	}
	if re.Code == rspb.RangeError_RANGE_KEY_MISMATCH || re.Code == rspb.RangeError_RANGE_NOT_FOUND {
		seen := map[uint64]bool{}
		for _, d := range append([]*rspb.RangeDescriptor{re.RangeDescriptor}, re.LocalDescriptors...) {
			if d == nil || seen[d.RangeId] {
				continue
			}
			seen[d.RangeId] = true
			if e := s.hintEntry(d); e != nil {
				hint.Ranges = append(hint.Ranges, e)
			}
		}
	}
	if d, err := st.WithDetails(hint); err == nil {
		st = d
	}
	return st.Err()
}

// hintEntry is a descriptor as a routing entry in client keys (nil for a
// range outside the user span). Every replica on a node with a known
// address is a reader; the writer is left unknown.
func (s *KVServer) hintEntry(d *rspb.RangeDescriptor) *rspb.RoutingEntry {
	start, end := d.StartKey, d.EndKey
	if bytes.Compare(start, keys.UserPrefix) < 0 {
		start = keys.UserPrefix
	}
	if len(end) == 0 || bytes.Compare(end, keys.UserSpanEnd) > 0 {
		end = keys.UserSpanEnd
	}
	if bytes.Compare(start, end) >= 0 {
		return nil
	}
	e := &rspb.RoutingEntry{RangeId: d.RangeId, Generation: d.Generation}
	e.StartKey, _ = keys.ClientKey(start)
	if !bytes.Equal(end, keys.UserSpanEnd) {
		ck, err := keys.ClientKey(end)
		if err != nil {
			return nil
		}
		e.EndKey = ck
	}
	for _, rep := range d.Replicas {
		addr, ok := s.router.resolver.NodeAddress(rep.NodeId)
		if !ok {
			continue
		}
		role := RoleVoter
		if rep.Type == rspb.ReplicaType_NON_VOTER {
			role = RoleNonVoter
		}
		e.Readers = append(e.Readers, &rspb.RoutingServer{NodeId: rep.NodeId, Address: addr, Role: role})
	}
	return e
}
