package ranges

import (
	"fmt"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// followerReadInput is what a replica knows when asked for a follower
// read (RangeRequest.follower_read): the pure decideFollowerRead says
// whether it serves, waits for its closed timestamp, or sends the reader
// elsewhere.
type followerReadInput struct {
	Initialized bool   // the replica has its descriptor (its state)
	FrozenInto  uint64 // frozen for a merge into this range (0: not)
	LeaseKnown  bool   // a lease has applied here (someone closes timestamps)
	Closed      kv.Timestamp
	Now         kv.Timestamp // this node's clock
	// ReadTS: the exact timestamp asked for (empty: read at the closed
	// timestamp, which must be at least Min).
	ReadTS, Min kv.Timestamp
	// Waited so far, of WaitBudget in all (0: answer at once).
	Waited, WaitBudget time.Duration
	Target             time.Duration // the closed timestamp target
}

type followerReadAction int

const (
	followerServe followerReadAction = iota
	followerWait
	followerRedirect // NOT_CLOSED: read at the leaseholder instead
	followerTimeout  // BOOKMARK_TIMEOUT
	followerRefuse   // not servable here at all (Code)
)

func (a followerReadAction) String() string {
	switch a {
	case followerServe:
		return "serve"
	case followerWait:
		return "wait"
	case followerRedirect:
		return "redirect"
	case followerTimeout:
		return "timeout"
	case followerRefuse:
		return "refuse"
	}
	return fmt.Sprintf("followerReadAction(%d)", int(a))
}

type followerReadDecision struct {
	Action followerReadAction
	At     kv.Timestamp         // followerServe: the read timestamp
	Code   rspb.RangeError_Code // followerRefuse
	Reason string
}

// decideFollowerRead decides a follower read. A replica serves at a
// timestamp at or below its closed timestamp: it has applied every write
// at or below it, and no later write can land there. When its closed
// timestamp is not there yet it waits, if it may and can expect to get
// there in time (a healthy closed timestamp trails the clock by the
// target), and otherwise answers at once so the reader goes to the
// leaseholder (wait-or-redirect). A replica whose closed timestamp lags
// more than the target plus the whole budget is not being closed (no
// leaseholder reaching it, or it is cut off): it redirects.
func decideFollowerRead(in followerReadInput) followerReadDecision {
	if !in.Initialized {
		return followerReadDecision{Action: followerRefuse, Code: rspb.RangeError_UNAVAILABLE, Reason: "the replica has no data yet"}
	}
	if in.FrozenInto != 0 {
		return followerReadDecision{Action: followerRefuse, Code: rspb.RangeError_UNAVAILABLE, Reason: fmt.Sprintf("the range is being merged into r%d", in.FrozenInto)}
	}
	need, what := in.Min, "the minimum closed timestamp"
	if !in.ReadTS.IsEmpty() {
		need, what = in.ReadTS, "the read timestamp"
	}
	if in.Closed.IsEmpty() {
		return followerReadDecision{Action: followerRedirect, Reason: "the replica has no closed timestamp yet"}
	}
	if need.LessEq(in.Closed) {
		at := in.Closed
		if !in.ReadTS.IsEmpty() {
			at = in.ReadTS
		}
		return followerReadDecision{Action: followerServe, At: at, Reason: fmt.Sprintf("%s %s is at or below the closed timestamp %s", what, need, in.Closed)}
	}
	short := fmt.Sprintf("%s %s is above the closed timestamp %s", what, need, in.Closed)
	if in.WaitBudget <= 0 {
		return followerReadDecision{Action: followerRedirect, Reason: short + " and the reader does not wait"}
	}
	if in.Waited >= in.WaitBudget {
		return followerReadDecision{Action: followerTimeout, Reason: fmt.Sprintf("%s after waiting %v", short, in.WaitBudget)}
	}
	if !in.LeaseKnown {
		return followerReadDecision{Action: followerRedirect, Reason: short + " and the replica knows no lease (nothing closes timestamps)"}
	}
	if lag := time.Duration(in.Now.WallTime - in.Closed.WallTime); lag > in.Target+in.WaitBudget {
		return followerReadDecision{Action: followerRedirect, Reason: fmt.Sprintf("%s and it lags %v behind the clock, more than the target %v plus the wait budget %v: it is not being closed",
			short, lag, in.Target, in.WaitBudget)}
	}
	left := in.WaitBudget - in.Waited
	if expect := time.Duration(need.WallTime - (in.Now.WallTime - int64(in.Target))); expect > left {
		return followerReadDecision{Action: followerRedirect, Reason: fmt.Sprintf("%s and a closed timestamp trailing the clock by %v gets there in %v, after the %v left to wait",
			short, in.Target, expect, left)}
	}
	return followerReadDecision{Action: followerWait, Reason: short + fmt.Sprintf("; waiting (%v left)", left)}
}
