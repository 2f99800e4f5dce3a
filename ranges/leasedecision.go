package ranges

import (
	"fmt"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// What a replica does about the lease before it serves a request, without
// I/O: decideLease (serve, redirect, wait for a transfer, learn the
// holder's liveness, or acquire) and, when acquiring another node's epoch
// lease, decideTakeover (redirect while the holder is live, else increment
// its epoch). ensureLease and acquireLease (replica_lease.go) gather the facts and
// act. Tests replay testdata/lease_decision.json against golden output.

// leaseAction is what the replica does next about the lease.
type leaseAction int

const (
	// leaseServe: serve under the current lease.
	leaseServe leaseAction = iota
	// leaseRedirect: answer NOT_LEASEHOLDER, naming Hint.
	leaseRedirect
	// leaseWaitTransfer: this replica's lease is being transferred to
	// Hint: wait for the outcome, then decide again (redirect to Hint if
	// the caller gives up first).
	leaseWaitTransfer
	// leaseLearnLiveness: the holder's liveness record is not known here:
	// read it, then decide again.
	leaseLearnLiveness
	// leaseAcquire: propose a new lease for this replica.
	leaseAcquire
	// leaseIncrementEpoch: the holder's liveness record expired: increment
	// its epoch (ending all its epoch leases), then acquire.
	leaseIncrementEpoch
)

func (a leaseAction) String() string {
	switch a {
	case leaseServe:
		return "serve"
	case leaseRedirect:
		return "redirect"
	case leaseWaitTransfer:
		return "wait-transfer"
	case leaseLearnLiveness:
		return "learn-liveness"
	case leaseAcquire:
		return "acquire"
	case leaseIncrementEpoch:
		return "increment-epoch"
	}
	return fmt.Sprintf("leaseAction(%d)", int(a))
}

// leaseInput is everything decideLease looks at.
type leaseInput struct {
	NodeID, ReplicaID uint64 // this replica
	Lease             *rspb.Lease
	// State is the lease's status now (leases.Status, against the
	// holder's liveness record as known here).
	State leases.State
	// StartTS is when this process started: an own lease from before is
	// re-acquired, never served under (see ownLeaseUsable).
	StartTS kv.Timestamp
	// Transferring is the node this replica's lease is being transferred
	// to (0: none); TransferWaitable that its outcome can be waited for.
	Transferring     uint64
	TransferWaitable bool
	// Draining: this node takes no new leases; DrainHint is where to send
	// the caller instead.
	Draining  bool
	DrainHint uint64
}

// leaseDecision is the replica's next step about the lease.
type leaseDecision struct {
	Action leaseAction
	Hint   uint64 // the node to redirect to (leaseRedirect, leaseWaitTransfer)
	Reason string
}

// decideLease decides what a replica does about the lease before serving a
// request.
func decideLease(in leaseInput) leaseDecision {
	if t := in.Transferring; t != 0 {
		if in.TransferWaitable {
			return leaseDecision{Action: leaseWaitTransfer, Hint: t, Reason: fmt.Sprintf("lease is being transferred to n%d: wait for the outcome", t)}
		}
		return leaseDecision{Action: leaseRedirect, Hint: t, Reason: fmt.Sprintf("lease is being transferred to n%d", t)}
	}
	l := in.Lease
	state := in.State
	d := leaseDecision{Action: leaseAcquire}
	switch {
	case l.NodeId == in.NodeID && l.ReplicaId == in.ReplicaID:
		start := TSFromProto(l.Start)
		switch {
		case state == leases.Valid && !start.Less(in.StartTS):
			d.Action, d.Reason = leaseServe, "own lease is valid"
			return d
		case state == leases.Valid:
			d.Reason = fmt.Sprintf("own lease started at %s, before this process (%s): re-acquire it", start, in.StartTS)
		default:
			d.Reason = fmt.Sprintf("own lease (%s): renew it", state)
		}
	case l.Sequence != 0:
		switch state {
		case leases.Valid, leases.Stasis:
			d.Action, d.Hint = leaseRedirect, l.NodeId
			d.Reason = fmt.Sprintf("lease is held by n%d (%s)", l.NodeId, state)
			return d
		case leases.Unknown:
			d.Action = leaseLearnLiveness
			d.Reason = fmt.Sprintf("lease is held by n%d, whose liveness is not known here: read it", l.NodeId)
			return d
		}
		d.Reason = fmt.Sprintf("lease of n%d (%s): take it over", l.NodeId, state)
	default:
		d.Reason = "no lease yet: acquire one"
	}
	if in.Draining && l.NodeId != in.NodeID {
		// Its own lease, from before a restart, a draining node may renew,
		// to hand it off.
		d.Action, d.Hint = leaseRedirect, in.DrainHint
		d.Reason = fmt.Sprintf("n%d is draining and takes no leases", in.NodeID)
	}
	return d
}

// decideTakeover decides, before acquiring prev, another node's epoch
// lease, whether its holder must be redirected to (its liveness record,
// read fresh, is live), fenced off first (the record expired: increment its
// epoch), or nothing stands in the way (no record, or its epoch already
// moved past the lease's).
func decideTakeover(prev *rspb.Lease, record *rspb.Liveness, now kv.Timestamp) leaseDecision {
	n := prev.NodeId
	switch {
	case record == nil:
		return leaseDecision{Action: leaseAcquire, Reason: fmt.Sprintf("n%d has no liveness record: acquire", n)}
	case record.Epoch != prev.Epoch:
		return leaseDecision{Action: leaseAcquire, Reason: fmt.Sprintf("n%d's epoch is %d, not the lease's %d: its lease ended; acquire", n, record.Epoch, prev.Epoch)}
	case now.LessEq(TSFromProto(record.Expiration)):
		return leaseDecision{Action: leaseRedirect, Hint: n, Reason: fmt.Sprintf("lease is held by n%d (live until %s)", n, TSFromProto(record.Expiration))}
	}
	return leaseDecision{Action: leaseIncrementEpoch, Hint: n,
		Reason: fmt.Sprintf("n%d's liveness expired at %s: increment its epoch %d to end its leases, then acquire", n, TSFromProto(record.Expiration), record.Epoch)}
}

// leaderHandoffFacts is what decideLeaderHandoff looks at: whether a Raft
// leader that does not hold the lease may hand leadership to the
// leaseholder now.
type leaderHandoffFacts struct {
	// Sending: snapshot streams of the range running from this leader.
	Sending int32
	// Delivered: the replica this leader last streamed a snapshot to whose
	// restore is not confirmed (0: none), and how long ago the stream last
	// showed life (started, written out, delivered in full).
	Delivered    uint64
	DeliveredAgo time.Duration
	// StreamIndex: the applied index of the state the last stream carried
	// (0: unknown; then any applied index > 0 counts as restored).
	StreamIndex uint64
	// Progress: what the delivered-to replica's node answered (nil: not
	// asked, or it did not answer).
	Progress *rspb.ReplicaProgress
	// Gone: the delivered-to replica is no longer in the descriptor, or its
	// node is dead.
	Gone bool
	// MaxWait bounds the wait for a delivered snapshot's restore.
	MaxWait time.Duration
}

// leaderHandoff is decideLeaderHandoff's answer. Forget: the delivered
// snapshot needs no more waiting (drop the record of it).
type leaderHandoff struct {
	Hold, Forget bool
	Reason       string
}

// decideLeaderHandoff: leadership stays while this leader streams a
// snapshot of the range, and after a stream until the receiving replica
// reports it restored the snapshot (applied index > 0), at most MaxWait. A
// new leader knows nothing of the stream: probing a receiver that has not
// restored yet, it finds an empty log and sends the whole range again
// (TestLeaderKeepsLeadershipWhileStreaming).
func decideLeaderHandoff(f leaderHandoffFacts) leaderHandoff {
	switch {
	case f.Sending > 0:
		return leaderHandoff{Hold: true, Reason: fmt.Sprintf("streaming %d snapshot(s): the receiver would get the range again from a new leader", f.Sending)}
	case f.Delivered == 0:
		return leaderHandoff{Reason: "no snapshot awaiting its restore"}
	case f.Gone:
		return leaderHandoff{Forget: true, Reason: fmt.Sprintf("replica %d is no longer in the range or its node is dead: nothing to wait for", f.Delivered)}
	case f.DeliveredAgo >= f.MaxWait:
		return leaderHandoff{Forget: true, Reason: fmt.Sprintf("replica %d has not confirmed restoring its snapshot %v after the stream's last news: hand leadership over anyway", f.Delivered, f.MaxWait)}
	case f.Progress == nil:
		return leaderHandoff{Hold: true, Reason: fmt.Sprintf("replica %d was streamed a snapshot (last news %v ago) and has not answered how far it applied", f.Delivered, f.DeliveredAgo)}
	case f.Progress.ReplicaId != f.Delivered:
		return leaderHandoff{Forget: true, Reason: fmt.Sprintf("the node of replica %d now holds replica %d: nothing to wait for", f.Delivered, f.Progress.ReplicaId)}
	case f.Progress.AppliedIndex == 0 || f.Progress.AppliedIndex < f.StreamIndex:
		// A replica with older state (a lagging follower) shows its
		// older index until it has restored the snapshot.
		return leaderHandoff{Hold: true, Reason: fmt.Sprintf("replica %d was streamed a snapshot at index %d (last news %v ago) and has applied %d: not restored yet", f.Delivered, f.StreamIndex, f.DeliveredAgo, f.Progress.AppliedIndex)}
	}
	return leaderHandoff{Forget: true, Reason: fmt.Sprintf("replica %d restored its snapshot (applied %d, the stream carried %d)", f.Delivered, f.Progress.AppliedIndex, f.StreamIndex)}
}
