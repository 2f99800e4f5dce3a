package ranges

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Whether a committed command applies, without I/O: every replica runs
// checkApply on the same replicated state in the same order, so all of
// them reach the same verdict (CockroachDB's CheckForcedErr plays this
// role). applyEntry (replica_apply.go) looks up the dedup record, asks
// checkApply, and performs the verdict. Tests replay verdicts from
// testdata/apply_check.json against golden output.

// applyVerdict is what a committed command does at apply.
type applyVerdict int

const (
	// applyAnswerDedup: the proposal applied before (a retry): answer its
	// recorded result, change nothing.
	applyAnswerDedup applyVerdict = iota
	// applyRefuse: change nothing, leave no dedup record (a retry with
	// the same proposal ID may apply under the new lease or descriptor);
	// answer Err.
	applyRefuse
	// applyRefuseRecorded: change nothing but record the refusal under
	// the proposal ID (an expired proposal: a retry must get the same
	// answer).
	applyRefuseRecorded
	// applyProceed: apply the command.
	applyProceed
)

func (v applyVerdict) String() string {
	switch v {
	case applyAnswerDedup:
		return "answer-dedup"
	case applyRefuse:
		return "refuse"
	case applyRefuseRecorded:
		return "refuse-recorded"
	case applyProceed:
		return "apply"
	}
	return fmt.Sprintf("applyVerdict(%d)", int(v))
}

// applyFacts is the replicated state checkApply looks at.
type applyFacts struct {
	RangeID     uint64
	Desc        *rspb.RangeDescriptor
	Lease       *rspb.Lease
	FrozenInto  uint64       // frozen for a merge into this range (0: not frozen)
	MaxWrite    kv.Timestamp // the range's highest applied write timestamp
	Closed      kv.Timestamp // the closed timestamp applied writes carried
	DedupWindow time.Duration
	DedupHit    bool // a dedup record exists for the command's proposal ID
}

// applyCheck is a verdict, the error to answer with (applyRefuse and
// applyRefuseRecorded), and the reason.
type applyCheck struct {
	Verdict applyVerdict
	Err     *rspb.RangeError
	Reason  string
}

func refuse(code rspb.RangeError_Code, leader uint64, desc *rspb.RangeDescriptor, format string, args ...any) applyCheck {
	msg := fmt.Sprintf(format, args...)
	return applyCheck{Verdict: applyRefuse, Reason: msg,
		Err: &rspb.RangeError{Code: code, LeaderNodeId: leader, RangeDescriptor: desc, Message: msg}}
}

// checkApply decides whether cmd applies on a replica in state f.
func checkApply(cmd *rspb.RaftCommand, f applyFacts) applyCheck {
	if f.DedupHit {
		return applyCheck{Verdict: applyAnswerDedup, Reason: "the proposal applied before: answer its recorded result"}
	}
	if f.FrozenInto != 0 && cmd.GetFreeze() == nil {
		// Frozen for a merge: nothing changes any more (not even the
		// lease: the merge needs none here).
		return refuse(rspb.RangeError_UNAVAILABLE, 0, nil, "r%d is being merged into r%d", f.RangeID, f.FrozenInto)
	}
	cur := f.Lease
	switch c := cmd.Command.(type) {
	case *rspb.RaftCommand_RequestLease:
		return checkLeaseRequest(f.RangeID, cur, c.RequestLease)
	case *rspb.RaftCommand_Gc:
		return applyCheck{Verdict: applyProceed, Reason: "GC is idempotent and needs no lease"}
	case *rspb.RaftCommand_Split, *rspb.RaftCommand_Freeze, *rspb.RaftCommand_Merge, *rspb.RaftCommand_ChangeReplicas:
		if chk, ok := checkEvaluatedUnder(cmd, f); !ok {
			return chk
		}
		return applyCheck{Verdict: applyProceed, Reason: "a range command under the current lease and generation (its own checks follow)"}
	case *rspb.RaftCommand_Write:
		if chk, ok := checkEvaluatedUnder(cmd, f); !ok {
			return chk
		}
		// No write lands at or below a closed timestamp the log already
		// carries (followers may have served reads there). The leaseholder
		// never evaluates one (closedTracker); this keeps it true whatever
		// the order commands reach the log in.
		if res := c.Write.Result; res.GetError() == nil && !f.Closed.IsEmpty() && res.GetTimestamp() != nil && TSFromProto(res.Timestamp).LessEq(f.Closed) {
			return refuse(rspb.RangeError_UNAVAILABLE, 0, nil, "r%d: write at %s is at or below the closed timestamp %s; it was not applied, retry",
				f.RangeID, TSFromProto(res.Timestamp), f.Closed)
		}
	default:
		return refuse(rspb.RangeError_INVALID_ARGUMENT, 0, nil, "r%d: command has no body (%T)", f.RangeID, c)
	}
	if len(cmd.ProposalId) > 0 && TSFromProto(cmd.Timestamp).WallTime < f.MaxWrite.WallTime-int64(f.DedupWindow) {
		msg := fmt.Sprintf("proposal expired: it is older than the %s retry window; it may or may not have applied earlier", f.DedupWindow)
		return applyCheck{Verdict: applyRefuseRecorded, Reason: msg, Err: &rspb.RangeError{Code: rspb.RangeError_AMBIGUOUS, Message: msg}}
	}
	return applyCheck{Verdict: applyProceed, Reason: "evaluated under the current lease and generation"}
}

// checkEvaluatedUnder: a write, split, freeze, merge or replica change was evaluated by a
// leaseholder under a lease and a descriptor generation; both must still be
// current. ok is false with the refusal otherwise.
func checkEvaluatedUnder(cmd *rspb.RaftCommand, f applyFacts) (chk applyCheck, ok bool) {
	cur := f.Lease
	if cmd.LeaseSequence != cur.Sequence {
		return refuse(rspb.RangeError_NOT_LEASEHOLDER, cur.NodeId, nil,
			"r%d: command proposed under lease %d, current lease is %d (n%d)", f.RangeID, cmd.LeaseSequence, cur.Sequence, cur.NodeId), false
	}
	if cmd.Generation != f.Desc.Generation {
		return refuse(rspb.RangeError_RANGE_KEY_MISMATCH, 0, f.Desc,
			"r%d changed (generation %d, command evaluated at %d); retry", f.RangeID, f.Desc.Generation, cmd.Generation), false
	}
	return applyCheck{}, true
}

// checkLeaseRequest: a lease request applies only if the current lease is
// still the one its proposer saw (so two acquisitions never both win), and
// it either extends that lease (same holder and sequence, an expiration
// lease, not shorter) or follows it (sequence + 1).
func checkLeaseRequest(rangeID uint64, cur *rspb.Lease, rl *rspb.RequestLeaseCommand) applyCheck {
	next := rl.Lease
	rej := func(why string) applyCheck {
		return refuse(rspb.RangeError_NOT_LEASEHOLDER, cur.NodeId, nil, "r%d: lease request rejected: %s", rangeID, why)
	}
	if next == nil || next.Sequence == 0 || !proto.Equal(cur, orEmpty(rl.Prev)) {
		return rej("the lease changed meanwhile")
	}
	extension := next.Sequence == cur.Sequence && next.ReplicaId == cur.ReplicaId && next.Epoch == 0 && cur.Epoch == 0 &&
		!TSFromProto(next.Expiration).Less(TSFromProto(cur.Expiration))
	if extension {
		return applyCheck{Verdict: applyProceed, Reason: fmt.Sprintf("extends the expiration lease %d of n%d", cur.Sequence, cur.NodeId)}
	}
	if next.Sequence == cur.Sequence && next.ReplicaId == cur.ReplicaId && next.Epoch == 0 && cur.Epoch == 0 {
		return rej(fmt.Sprintf("an extension of lease %d would shorten it (to %v from %v)", cur.Sequence, TSFromProto(next.Expiration), TSFromProto(cur.Expiration)))
	}
	if cur.Sequence == 0 && next.Sequence == 1 {
		return applyCheck{Verdict: applyProceed, Reason: fmt.Sprintf("the range's first lease, to n%d", next.NodeId)}
	}
	if next.Sequence != cur.Sequence+1 {
		return rej(fmt.Sprintf("sequence %d does not follow %d", next.Sequence, cur.Sequence))
	}
	return applyCheck{Verdict: applyProceed, Reason: fmt.Sprintf("lease %d of n%d follows lease %d of n%d", next.Sequence, next.NodeId, cur.Sequence, cur.NodeId)}
}
