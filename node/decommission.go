package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Drain, decommission and recommission (issue 11 item 5).
//
// A drain (DrainNode, Internal.Drain) is the first half of a graceful
// stop without the stop: the node takes no new lease and hands every lease
// it holds, with the Raft leadership, to another live voter. It stays
// drained until it restarts (or is recommissioned after a decommission).
//
// A decommission is a membership change in the node's liveness record,
// made by whichever node serves the request with a conditional put on the
// record (leases.Liveness.SetMembership), so the target may be down:
// ACTIVE -> DECOMMISSIONING (refused when the nodes left could not hold
// the replication factor) -> DECOMMISSIONED (once the meta records list no
// replica on it). The replicate queue moves the replicas of a
// decommissioning node away; this file only marks, drains and reports.
// Recommission is DECOMMISSIONING -> ACTIVE. Heartbeats keep the
// membership.
//
// The node watches its own record (watchOwnMembership, from its loop):
// while it is decommissioning or decommissioned it drains and takes no
// lease, and refuses new replicas (ranges.Store); back to active, it takes
// leases again. A decommissioned node that is restarted with its old store
// sits idle: it serves no range, says so in its readiness and logs, once,
// that it must join again with an empty store.

// DefaultDrainNodeTimeout bounds DrainNode when the caller set no deadline.
const DefaultDrainNodeTimeout = 30 * time.Second

// maxRangeIDs is how many range IDs a decommission status names.
const maxRangeIDs = 10

// membershipOp is what an operator asks of a node's membership.
type membershipOp int

const (
	opDecommission membershipOp = iota // ACTIVE -> DECOMMISSIONING
	opFinish                           // DECOMMISSIONING -> DECOMMISSIONED, once empty
	opRecommission                     // DECOMMISSIONING -> ACTIVE
)

var membershipOpNames = [...]string{"decommission", "finish", "recommission"}

func (o membershipOp) String() string { return membershipOpNames[o] }

// membershipFacts is what decideMembership looks at for one node.
type membershipFacts struct {
	Op     membershipOp
	NodeID uint64
	// Current membership by the node's liveness record (no record: active).
	Current rspb.LivenessMembership
	// Replicas: the node's replicas by the meta records and the cluster
	// record's meta range; RangeIDs the first of their ranges.
	Replicas int
	RangeIDs []uint64
}

// membershipAction is decideMembership's verdict.
type membershipAction int

const (
	membershipSet    membershipAction = iota // write Target
	membershipNoop                           // nothing to do (already there, or nothing to undo)
	membershipRefuse                         // refused with Code
)

var membershipActionNames = [...]string{"set", "noop", "refuse"}

func (a membershipAction) String() string { return membershipActionNames[a] }

// membershipDecision: the action, the membership to write (set), the
// gRPC code of a refusal, and why.
type membershipDecision struct {
	Action membershipAction
	Target rspb.LivenessMembership
	Code   codes.Code
	Reason string
}

// replicasPhrase is "3 replicas (r2, r5, r9)" or "no replica".
func replicasPhrase(n int, ids []uint64) string {
	if n == 0 {
		return "no replica"
	}
	word := "replicas"
	if n == 1 {
		word = "replica"
	}
	s := fmt.Sprintf("%d %s (%s", n, word, rangeList(ids))
	if n > len(ids) {
		s += ", ..."
	}
	return s + ")"
}

func rangeList(ids []uint64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("r%d", id)
	}
	return strings.Join(parts, ", ")
}

// decideMembership decides one node's membership change. The replication
// factor check of a decommission spans nodes and is made apart
// (checkDecommission); this is the per-node rule:
//   - decommission: an active node becomes decommissioning; a
//     decommissioning or decommissioned one is left as it is;
//   - finish: a decommissioning node holding no replica becomes
//     decommissioned; one still holding replicas, or an active one, is
//     refused; a decommissioned one is left as it is;
//   - recommission: a decommissioning node becomes active; an active one
//     is left as it is; a decommissioned one is refused (it must join again
//     with an empty store).
func decideMembership(f membershipFacts) membershipDecision {
	n := f.NodeID
	set := func(to rspb.LivenessMembership, format string, args ...any) membershipDecision {
		return membershipDecision{Action: membershipSet, Target: to, Reason: fmt.Sprintf(format, args...)}
	}
	noop := func(format string, args ...any) membershipDecision {
		return membershipDecision{Action: membershipNoop, Target: f.Current, Reason: fmt.Sprintf(format, args...)}
	}
	refuse := func(format string, args ...any) membershipDecision {
		return membershipDecision{Action: membershipRefuse, Target: f.Current, Code: codes.FailedPrecondition, Reason: fmt.Sprintf(format, args...)}
	}
	const (
		active          = rspb.LivenessMembership_LIVENESS_ACTIVE
		decommissioning = rspb.LivenessMembership_LIVENESS_DECOMMISSIONING
		decommissioned  = rspb.LivenessMembership_LIVENESS_DECOMMISSIONED
	)
	switch f.Op {
	case opDecommission:
		switch f.Current {
		case decommissioning:
			return noop("n%d is already decommissioning: %s left on it", n, replicasPhrase(f.Replicas, f.RangeIDs))
		case decommissioned:
			return noop("n%d is already decommissioned", n)
		}
		if f.Replicas == 0 {
			return set(decommissioning, "n%d is active: mark it decommissioning (it drains and takes no new replica; it holds no replica, so it can be marked decommissioned next)", n)
		}
		return set(decommissioning, "n%d is active: mark it decommissioning (it drains and takes no new replica; the replicate queue moves its %s away)",
			n, replicasPhrase(f.Replicas, f.RangeIDs))
	case opFinish:
		switch {
		case f.Current == decommissioned:
			return noop("n%d is already decommissioned", n)
		case f.Current == active:
			return refuse("n%d is active, not decommissioning: decommission it first", n)
		case f.Replicas > 0:
			return refuse("n%d still holds %s by the meta records: wait for the replicate queue to move them", n, replicasPhrase(f.Replicas, f.RangeIDs))
		}
		return set(decommissioned, "n%d is decommissioning and holds no replica: mark it decommissioned (stopping it leaves no range under-replicated)", n)
	case opRecommission:
		switch f.Current {
		case active:
			return noop("n%d is active: nothing to recommission", n)
		case decommissioned:
			return refuse("n%d is decommissioned and cannot be recommissioned: to use it again, stop it, empty its store and start it with --join (it gets a new node ID)", n)
		}
		return set(active, "n%d is decommissioning: mark it active again (it takes leases and replicas again; replicas already moved stay moved)", n)
	}
	return refuse("unknown membership operation %d", int(f.Op))
}

// membershipState maps a membership change's result to the admin API's.
func membershipState(m rspb.LivenessMembership) rspb.MembershipState {
	switch m {
	case rspb.LivenessMembership_LIVENESS_DECOMMISSIONING:
		return rspb.MembershipState_MEMBERSHIP_DECOMMISSIONING
	case rspb.LivenessMembership_LIVENESS_DECOMMISSIONED:
		return rspb.MembershipState_MEMBERSHIP_DECOMMISSIONED
	}
	return rspb.MembershipState_MEMBERSHIP_ACTIVE
}

// clusterView is what a membership change reads: the directory, every
// liveness record, and the range descriptors (meta records and the meta
// range).
type clusterView struct {
	dir   map[uint64]*rspb.NodeDescriptor
	recs  map[uint64]*rspb.Liveness
	descs []*rspb.RangeDescriptor
	meta  *rspb.RangeDescriptor
}

func (n *Node) readClusterView(ctx context.Context, withRanges bool) (*clusterView, error) {
	if n.store.ClusterRecord() == nil {
		return nil, errNotInitialized
	}
	v := &clusterView{dir: map[uint64]*rspb.NodeDescriptor{}, meta: n.MetaRange()}
	dir, err := n.readDirectory(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading the node directory: %v", err)
	}
	for _, d := range n.Directory() {
		v.dir[d.NodeId] = d
	}
	for _, d := range dir {
		v.dir[d.NodeId] = d
	}
	if v.recs, err = n.readLivenessRecords(ctx); err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading liveness records: %v", err)
	}
	if withRanges {
		if v.descs, err = n.MetaRanges(ctx); err != nil {
			return nil, status.Errorf(codes.Unavailable, "reading the meta records: %v", err)
		}
		if v.meta != nil && !slices.ContainsFunc(v.descs, func(d *rspb.RangeDescriptor) bool { return d.RangeId == v.meta.RangeId }) {
			v.descs = append([]*rspb.RangeDescriptor{v.meta}, v.descs...)
		}
	}
	return v, nil
}

// known refuses (NotFound) a node the directory does not list.
func (v *clusterView) known(id uint64) error {
	if _, ok := v.dir[id]; ok {
		return nil
	}
	all := make([]uint64, 0, len(v.dir))
	for id := range v.dir {
		all = append(all, id)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return status.Errorf(codes.NotFound, "node n%d not found: the directory lists %s", id, nodeList(all))
}

// replicasOn counts node's replicas and names the first of their ranges.
func (v *clusterView) replicasOn(node uint64) (count int, ids []uint64) {
	for _, d := range v.descs {
		for _, r := range d.Replicas {
			if r.NodeId != node {
				continue
			}
			count++
			if len(ids) < maxRangeIDs {
				ids = append(ids, d.RangeId)
			}
		}
	}
	return count, ids
}

func (v *clusterView) facts(op membershipOp, node uint64) membershipFacts {
	f := membershipFacts{Op: op, NodeID: node, Current: v.recs[node].GetMembership()}
	f.Replicas, f.RangeIDs = v.replicasOn(node)
	return f
}

// checkDecommission refuses (FailedPrecondition) decommissioning the nodes
// in leaving (with those decommissioning already) when the nodes left
// could not hold factor voters of every range, naming the ranges
// (allocator.CanDecommission, allocator.Unplaceable).
func (n *Node) checkDecommission(v *clusterView, leaving []uint64, factor int) error {
	now := time.Unix(0, n.cfg.Clock.Now().WallTime)
	deadAfter := n.cfg.TimeUntilStoreDead
	if deadAfter <= 0 {
		deadAfter = DefaultTimeUntilStoreDead
	}
	set := map[uint64]bool{}
	for _, id := range leaving {
		set[id] = true
	}
	views := make([]allocator.Node, 0, len(v.dir))
	for _, id := range sortedKeys(v.dir) {
		nv := allocator.NodeView(v.dir[id], v.recs[id], now, deadAfter)
		nv.Replicas, _ = v.replicasOn(id)
		views = append(views, nv)
		if nv.Membership == allocator.Decommissioning && !set[id] {
			set[id] = true
			leaving = append(leaving, id)
		}
	}
	ok, reason, err := allocator.CanDecommission(views, leaving, factor)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	rs := make([]allocator.Range, 0, len(v.descs))
	for _, d := range v.descs {
		rs = append(rs, allocator.Range{Desc: d, Factor: factor})
	}
	short, err := allocator.Unplaceable(views, leaving, rs)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if ok && len(short) == 0 {
		return nil
	}
	msg := "refused: "
	if !ok {
		msg += reason
	}
	if len(short) > 0 {
		if !ok {
			msg += "; "
		}
		msg += fmt.Sprintf("%d ranges could not keep %d voters (replication factor %d)", len(short), factor, factor)
	}
	for i, s := range short {
		if i == 3 {
			msg += fmt.Sprintf("; and %d more", len(short)-i)
			break
		}
		msg += "; " + s.Reason
	}
	return status.Error(codes.FailedPrecondition, msg)
}

func sortedKeys[V any](m map[uint64]V) []uint64 {
	out := make([]uint64, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Decommission marks nodes decommissioning (finish: decommissioned) and
// reports each one's progress; see Admin.Decommission. Every refusal is
// found before anything is written.
func (n *Node) Decommission(ctx context.Context, ids []uint64, finish bool) ([]*rspb.DecommissionNodeStatus, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDrainNodeTimeout)
		defer cancel()
	}
	v, err := n.readClusterView(ctx, true)
	if err != nil {
		return nil, err
	}
	op := opDecommission
	if finish {
		op = opFinish
	}
	decs := make([]membershipDecision, len(ids))
	var refusal error
	check := false // a node would leave: check the replication factor
	for i, id := range ids {
		if err := v.known(id); err != nil {
			return nil, err
		}
		decs[i] = decideMembership(v.facts(op, id))
		if decs[i].Action == membershipRefuse && refusal == nil {
			refusal = status.Errorf(decs[i].Code, "refused: %s", decs[i].Reason)
		}
		check = check || decs[i].Action != membershipNoop
	}
	// The factor first: it names every range the request would leave short.
	if op == opDecommission && check {
		factor, err := n.ReplicationFactor(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "decommission: %v", err)
		}
		if err := n.checkDecommission(v, ids, factor); err != nil {
			return nil, err
		}
	}
	if refusal != nil {
		return nil, refusal
	}
	out := make([]*rspb.DecommissionNodeStatus, len(ids))
	for i, id := range ids {
		st := &rspb.DecommissionNodeStatus{NodeId: id, Membership: membershipState(decs[i].Target), Message: decs[i].Reason, LeaseCount: -1}
		out[i] = st
		if decs[i].Action == membershipSet {
			rec, err := n.setMembership(ctx, v, op, id)
			if err != nil {
				return nil, err
			}
			st.Membership = membershipState(rec.GetMembership())
		}
		c, rids := v.replicasOn(id)
		st.ReplicaCount, st.RangeIds = int64(c), rids
	}
	// A node just marked decommissioning drains at once if it is up (it
	// would on its own within a heartbeat or two); the lease counts are
	// its own.
	for i, st := range out {
		if op == opDecommission && decs[i].Action == membershipSet {
			dctx, cancel := context.WithTimeout(ctx, DefaultDrainTimeout)
			if _, err := n.DrainNode(dctx, st.NodeId); err != nil {
				st.Message += fmt.Sprintf("; drain: %s", status.Convert(err).Message())
			}
			cancel()
		}
		if ns, err := n.NodeStatuses(ctx, st.NodeId); err == nil && ns[0].StatsError == "" {
			st.LeaseCount = ns[0].LeaseCount
		}
	}
	return out, nil
}

// setMembership writes the decision of op for node as a conditional
// update of its liveness record, deciding again on the record as it is
// at the write (a heartbeat or another operator may have changed it).
func (n *Node) setMembership(ctx context.Context, v *clusterView, op membershipOp, id uint64) (*rspb.Liveness, error) {
	f := v.facts(op, id)
	var target rspb.LivenessMembership
	var refusal error
	allowed := func(cur *rspb.Liveness) error {
		f.Current = cur.GetMembership()
		d := decideMembership(f)
		if d.Action == membershipRefuse {
			refusal = status.Errorf(d.Code, "refused: %s", d.Reason)
			return refusal
		}
		target = d.Target
		return nil
	}
	// The first call decides the target; SetMembership re-checks it on
	// every try.
	cur, err := n.liveness.Get(ctx, id, true)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading the liveness record of n%d: %v", id, err)
	}
	if err := allowed(cur); err != nil {
		return nil, err
	}
	rec, err := n.liveness.SetMembership(ctx, id, target, allowed)
	switch {
	case refusal != nil && errors.Is(err, refusal):
		return nil, err
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "changing the membership of n%d: %v", id, err)
	}
	n.log.Info("node membership changed", "node", id, "op", op.String(), "membership", leases.MembershipWord(rec.GetMembership()))
	return rec, nil
}

// Recommission undoes an unfinished decommission of a node.
func (n *Node) Recommission(ctx context.Context, id uint64) (*rspb.RecommissionResponse, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDrainNodeTimeout)
		defer cancel()
	}
	v, err := n.readClusterView(ctx, false)
	if err != nil {
		return nil, err
	}
	if err := v.known(id); err != nil {
		return nil, err
	}
	d := decideMembership(v.facts(opRecommission, id))
	switch d.Action {
	case membershipRefuse:
		return nil, status.Errorf(d.Code, "refused: %s", d.Reason)
	case membershipNoop:
		return &rspb.RecommissionResponse{Membership: membershipState(d.Target), Message: d.Reason}, nil
	}
	rec, err := n.setMembership(ctx, v, opRecommission, id)
	if err != nil {
		return nil, err
	}
	return &rspb.RecommissionResponse{Membership: membershipState(rec.GetMembership()), Message: d.Reason}, nil
}

// heldLeases lists the ranges whose valid lease this node holds.
func (n *Node) heldLeases() []uint64 {
	me := n.NodeID()
	var out []uint64
	for _, ri := range n.store.Ranges() {
		if ri.LeaseValid && ri.Lease.GetNodeId() == me {
			out = append(out, ri.RangeDescriptor.GetRangeId())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// DrainSelf drains this node without stopping it (Internal.Drain): it
// takes no new lease and moves the leases it holds away, retrying until
// none is left or shortly before ctx ends (so that the answer naming the
// leases left still reaches the caller in time). It returns the leases
// moved and the ranges whose lease is left.
func (n *Node) DrainSelf(ctx context.Context) (moved int64, left []uint64) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultDrainNodeTimeout)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(-min(time.Second, time.Until(deadline)/10)))
	defer cancel()
	for {
		m, _ := n.drain(ctx)
		moved += int64(m)
		left = n.heldLeases()
		if len(left) == 0 || ctx.Err() != nil {
			return moved, left
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond): // a target may come up
		}
	}
}

// DrainNode drains node id (this one or another, asked over the Internal
// service) and returns the leases it moved; see Admin.DrainNode.
func (n *Node) DrainNode(ctx context.Context, id uint64) (int64, error) {
	if n.store.ClusterRecord() == nil {
		return 0, errNotInitialized
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDrainNodeTimeout)
		defer cancel()
	}
	start := time.Now()
	var resp *rspb.DrainResponse
	if id == n.NodeID() {
		moved, left := n.DrainSelf(ctx)
		resp = &rspb.DrainResponse{LeasesMoved: moved, RangeIdsLeft: left}
	} else {
		addr, ok := n.NodeAddress(id)
		if !ok {
			v, err := n.readClusterView(ctx, false)
			if err != nil {
				return 0, err
			}
			if err := v.known(id); err != nil {
				return 0, err
			}
			addr = v.dir[id].Address
		}
		c, err := n.dialPeer(addr)
		if err != nil {
			return 0, status.Errorf(codes.Unavailable, "n%d at %s: %v", id, addr, err)
		}
		defer c.Close()
		if resp, err = rspb.NewInternalClient(c).Drain(ctx, &rspb.DrainRequest{}); err != nil {
			return 0, status.Errorf(status.Code(err), "n%d at %s did not drain: %s", id, addr, status.Convert(err).Message())
		}
	}
	if l := resp.RangeIdsLeft; len(l) > 0 {
		what := fmt.Sprintf("%d leases", len(l))
		if len(l) == 1 {
			what = "1 lease"
		}
		return resp.LeasesMoved, status.Errorf(codes.DeadlineExceeded, "n%d still holds %s after %s (%s), %d moved: no live, non-draining voter took them in time",
			id, what, time.Since(start).Round(time.Millisecond), rangeList(l), resp.LeasesMoved)
	}
	return resp.LeasesMoved, nil
}

// watchOwnMembership, run by the node's loop, follows this node's
// membership in its liveness record: decommissioning or decommissioned, it
// drains (once; the store then takes no lease) and, decommissioned, says
// once in the log that it sits idle; active again after a membership
// drain, it takes leases again.
func (n *Node) watchOwnMembership(ctx context.Context) {
	self := n.liveness.Self()
	if self == nil {
		return
	}
	switch m := self.Membership; m {
	case rspb.LivenessMembership_LIVENESS_DECOMMISSIONING, rspb.LivenessMembership_LIVENESS_DECOMMISSIONED:
		if !n.membershipDrained {
			n.membershipDrained = true
			n.log.Info("this node is "+leases.MembershipWord(m)+": draining its leases; it takes no new lease or replica", "node", n.NodeID())
			moved, left := n.drain(ctx)
			n.log.Info(fmt.Sprintf("drained for decommission: transferred %d leases, %d left", moved, left), "node", n.NodeID())
		}
		if m == rspb.LivenessMembership_LIVENESS_DECOMMISSIONED && !n.idleLogged {
			n.idleLogged = true
			n.log.Error(fmt.Sprintf("n%d is decommissioned: it sits idle (no lease, no replica); to use this machine again, stop it, empty its store and start it with --join (it gets a new node ID)", n.NodeID()))
		}
	case rspb.LivenessMembership_LIVENESS_ACTIVE:
		if n.membershipDrained {
			n.membershipDrained, n.idleLogged = false, false
			n.store.SetDraining(false)
			if err := n.liveness.SetDraining(ctx, false); err != nil {
				n.log.Warn("recommissioned: could not clear the draining mark of the liveness record", "err", err)
			}
			n.log.Info("this node is active again (recommissioned): it takes leases and replicas", "node", n.NodeID())
		}
	}
}
