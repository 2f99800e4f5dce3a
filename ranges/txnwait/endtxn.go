package txnwait

import (
	"fmt"
	"time"
)

// EndKind is what an EndTxn asks for.
type EndKind int

const (
	// EndCommit: commit explicitly (the record becomes COMMITTED).
	EndCommit EndKind = iota
	// EndStage: parallel commit: write a STAGING record listing the
	// in-flight writes, sent with them.
	EndStage
	// EndAbort: roll back.
	EndAbort
)

func (k EndKind) String() string {
	return enumName("EndKind", int(k), "commit", "stage", "abort")
}

// EndAction is DecideEndTxn's outcome.
type EndAction int

const (
	// EndWriteRecord: write Txn (STAGING, COMMITTED or ABORTED) as the
	// record; the same command resolves the local intents of a final one.
	EndWriteRecord EndAction = iota
	// EndAlreadyCommitted: the record is COMMITTED (recovery made an
	// implicit commit explicit): the txn committed, whatever was asked.
	EndAlreadyCommitted
	// EndRefuse: the txn is aborted (record ABORTED, or it can no longer
	// have one): the client restarts as a new transaction.
	EndRefuse
	// EndRetrySerializable: the commit ts was pushed to Txn.WriteTS: the
	// coordinator refreshes its reads up to it, or restarts, then retries.
	EndRetrySerializable
	// EndDeadlineExceeded: the commit ts is at or after the deadline.
	EndDeadlineExceeded
	// EndRecoverStaging: a rollback met a STAGING record of its epoch: the
	// txn may be implicitly committed, so recovery decides.
	EndRecoverStaging
)

func (a EndAction) String() string {
	return enumName("EndAction", int(a), "WRITE_RECORD", "ALREADY_COMMITTED", "REFUSE", "RETRY_SERIALIZABLE", "DEADLINE_EXCEEDED", "RECOVER_STAGING")
}

// EndTxnRequest is the coordinator's EndTxn. The coordinator refreshes its
// reads before it, so CommitTS is both its read and its write timestamp.
type EndTxnRequest struct {
	Txn            TxnState // ID, epoch, priority, start ts, last heartbeat
	Kind           EndKind
	CommitTS       Timestamp
	InFlightWrites int       // EndStage: > 0
	Deadline       Timestamp // zero: none; a commit needs CommitTS < Deadline
}

// EndTxnInput is everything DecideEndTxn looks at.
type EndTxnInput struct {
	Req EndTxnRequest
	// Record is the txn's record (nil: none); RecordCheck says whether a
	// missing one may be created; PushedTo is the tscache push marker (zero:
	// none), the lowest ts the txn may commit at.
	Record      *TxnState
	RecordCheck RecordCheck
	PushedTo    Timestamp
	Now         Timestamp
	Threshold   time.Duration // 0: DefaultLivenessThreshold
}

// EndTxnDecision is DecideEndTxn's answer; Txn is the record to write
// (EndWriteRecord) or the txn as the decision saw it.
type EndTxnDecision struct {
	Action EndAction
	Txn    TxnState
	Reason string
}

// DecideEndTxn decides an EndTxn, after CockroachDB's EndTxn:
//   - no record: a rollback writes an ABORTED one; a commit or stage only if
//     the record can still be created, else REFUSE;
//   - COMMITTED: ALREADY_COMMITTED (also for a rollback: never report a
//     committed txn as aborted);
//   - ABORTED: a rollback rewrites it; a commit or stage is REFUSED;
//   - a record of a higher epoch than the request: an error (regression);
//     a STAGING record of a lower epoch counts as PENDING (the txn restarted);
//   - a rollback that meets STAGING of its epoch: RECOVER_STAGING;
//   - a commit or stage: the ts is the highest of CommitTS, the record's
//     and PushedTo; above CommitTS: RETRY_SERIALIZABLE; at or after the
//     deadline: DEADLINE_EXCEEDED; else write STAGING or COMMITTED.
//
// An expired record the pushers have not aborted yet still commits: expiry
// only lets pushers abort it.
func DecideEndTxn(in EndTxnInput) (EndTxnDecision, error) {
	req := in.Req
	threshold, err := threshold(in.Threshold)
	if err = firstErr(err, checkEndTxn(in)); err != nil {
		return EndTxnDecision{}, err
	}
	d := EndTxnDecision{Txn: req.Txn}
	t := &d.Txn
	t.Status, t.WriteTS, t.InFlightWrites = Pending, req.CommitTS, 0
	note := "no record"
	if r := in.Record; r == nil {
		if req.Kind == EndAbort {
			t.Status = Aborted
			d.Reason = "no record: write it ABORTED (a rollback may always create its record)"
			return d, nil
		}
		if in.RecordCheck != RecordCreatable {
			d.Action, t.Status = EndRefuse, Aborted
			d.Reason = "no record and none can be created: " + in.RecordCheck.blockedReason() + ": the txn is aborted, restart"
			return d, nil
		}
	} else {
		switch {
		case r.Status == Committed:
			d.Action, d.Txn = EndAlreadyCommitted, *r
			d.Reason = fmt.Sprintf("record is COMMITTED: the %s finds the txn committed", req.Kind)
			return d, nil
		case r.Status == Aborted && req.Kind == EndAbort:
			d.Txn = *r
			d.Reason = "record ABORTED (by a pusher or recovery): rewrite it with the rollback's intents"
			return d, nil
		case r.Status == Aborted:
			d.Action, d.Txn = EndRefuse, *r
			d.Reason = fmt.Sprintf("record ABORTED by a pusher or recovery: the %s is refused, restart as a new txn", req.Kind)
			return d, nil
		case r.Epoch > req.Txn.Epoch:
			return EndTxnDecision{}, fmt.Errorf("txnwait: epoch regression: EndTxn at epoch %d, record at %d", req.Txn.Epoch, r.Epoch)
		}
		t.Status, t.InFlightWrites = r.Status, r.InFlightWrites
		t.WriteTS.Forward(r.WriteTS)
		t.Priority = max(t.Priority, r.Priority)
		t.LastHeartbeat.Forward(r.LastHeartbeat)
		note = "record " + r.Status.String()
		if r.Status == Staging && r.Epoch < req.Txn.Epoch {
			t.Status, t.InFlightWrites, note = Pending, 0, fmt.Sprintf("STAGING record of epoch %d < %d (the txn restarted: not a parallel commit)", r.Epoch, req.Txn.Epoch)
		}
		if IsExpired(*r, in.Now, threshold) {
			note += fmt.Sprintf(", expired (last active %s) but not aborted by any pusher", r.LastActive())
		}
	}
	if req.Kind == EndAbort {
		if t.Status == Staging {
			d.Action = EndRecoverStaging
			d.Reason = note + ": a rollback does not prove the parallel commit failed; recover"
			return d, nil
		}
		t.Status, t.InFlightWrites = Aborted, 0
		d.Reason = note + ": abort"
		return d, nil
	}
	if t.WriteTS.Forward(in.PushedTo); req.CommitTS.Less(t.WriteTS) {
		d.Action = EndRetrySerializable
		d.Reason = fmt.Sprintf("%s: commit ts pushed from %s to %s (record %s, push marker %s): refresh reads to it, or restart",
			note, req.CommitTS, t.WriteTS, recordTS(in.Record), orNone(in.PushedTo))
		return d, nil
	}
	if !req.Deadline.IsEmpty() && req.Deadline.LessEq(t.WriteTS) {
		d.Action = EndDeadlineExceeded
		d.Reason = fmt.Sprintf("%s: commit ts %s is not before the deadline %s", note, t.WriteTS, req.Deadline)
		return d, nil
	}
	if req.Kind == EndStage {
		t.Status, t.InFlightWrites = Staging, req.InFlightWrites
		d.Reason = fmt.Sprintf("%s: stage at %s with %d in-flight writes", note, t.WriteTS, req.InFlightWrites)
		return d, nil
	}
	t.Status, t.InFlightWrites = Committed, 0
	d.Reason = fmt.Sprintf("%s: commit at %s", note, t.WriteTS)
	return d, nil
}

func recordTS(r *TxnState) string {
	if r == nil {
		return "none"
	}
	return r.WriteTS.String()
}

func orNone(ts Timestamp) string {
	if ts.IsEmpty() {
		return "none"
	}
	return ts.String()
}

func checkEndTxn(in EndTxnInput) error {
	req := in.Req
	if err := firstErr(req.Txn.validate("Req.Txn", TxnID{}), in.Record.validate("Record", req.Txn.ID)); err != nil {
		return err
	}
	switch {
	case req.Kind < EndCommit || req.Kind > EndAbort:
		return fmt.Errorf("txnwait: Req.Kind %d is not an EndTxn kind", int(req.Kind))
	case req.Kind == EndStage && req.InFlightWrites <= 0:
		return fmt.Errorf("txnwait: Req.InFlightWrites is %d: staging needs in-flight writes (send a commit instead)", req.InFlightWrites)
	}
	return nil
}

// HeartbeatAction is DecideHeartbeat's outcome.
type HeartbeatAction int

const (
	// HeartbeatWrite: write Txn: the record created PENDING, or its last
	// heartbeat moved to now.
	HeartbeatWrite HeartbeatAction = iota
	// HeartbeatCommitted: the record is COMMITTED: stop heartbeating.
	HeartbeatCommitted
	// HeartbeatAborted: the txn is aborted, or was committed and its
	// record removed (both leave a tombstone): stop heartbeating, roll back
	// asynchronously, refuse further requests, and do not report "aborted"
	// to the client on the heartbeat's word.
	HeartbeatAborted
)

func (a HeartbeatAction) String() string {
	return enumName("HeartbeatAction", int(a), "WRITE_RECORD", "COMMITTED", "ABORTED")
}

// DecideHeartbeat decides the coordinator's heartbeat of txn at now: the
// first one creates the record (if it still may be created), later ones
// forward its last heartbeat; a finalized record is left alone. The
// coordinator's own heartbeat is not a push: an expired record that no
// pusher aborted yet is simply kept alive.
func DecideHeartbeat(txn TxnState, record *TxnState, check RecordCheck, now Timestamp) (HeartbeatAction, TxnState, string) {
	if record == nil {
		if check != RecordCreatable {
			txn.Status = Aborted
			return HeartbeatAborted, txn, "no record and none can be created: " + check.blockedReason() +
				"; the txn may also have committed and been cleaned up, so the client learns the outcome from its next request"
		}
		txn.Status, txn.InFlightWrites = Pending, 0
		txn.LastHeartbeat.Forward(now)
		return HeartbeatWrite, txn, fmt.Sprintf("no record yet: create it PENDING, last heartbeat %s", txn.LastHeartbeat)
	}
	r := *record
	switch r.Status {
	case Committed:
		return HeartbeatCommitted, r, "record is COMMITTED: stop heartbeating"
	case Aborted:
		return HeartbeatAborted, r, "record is ABORTED (a pusher or recovery aborted it): stop heartbeating, roll back asynchronously, refuse further requests"
	}
	r.LastHeartbeat.Forward(now)
	return HeartbeatWrite, r, fmt.Sprintf("record %s: last heartbeat now %s", r.Status, r.LastHeartbeat)
}
