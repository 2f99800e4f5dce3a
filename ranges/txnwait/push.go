package txnwait

import (
	"fmt"
	"time"
)

// PushType is what a pusher wants done to the pushee.
type PushType int

const (
	// PushTimestamp: a reader moves a PENDING pushee's write timestamp
	// above its read timestamp.
	PushTimestamp PushType = iota
	// PushAbort: a writer aborts the pushee.
	PushAbort
	// PushTouch: cleanup only: succeeds against finalized or expired
	// pushees, never against a live one, and never waits.
	PushTouch
)

func (p PushType) String() string {
	return enumName("PushType", int(p), "PUSH_TIMESTAMP", "PUSH_ABORT", "PUSH_TOUCH")
}

// PushAction is the outcome of a push.
type PushAction int

const (
	// PushAlreadyFinalized: the pushee is COMMITTED or ABORTED (or has no
	// record and never can have one): resolve its intents by that status.
	PushAlreadyFinalized PushAction = iota
	// PushNoopAlreadyAbove: PUSH_TIMESTAMP whose pushee already writes at or
	// above PushTo.
	PushNoopAlreadyAbove
	// PushPushedTimestamp: the pushee's write timestamp moved to PushTo.
	PushPushedTimestamp
	// PushAborted: the pushee is aborted.
	PushAborted
	// PushWait: the pusher lost: it waits in the pushee's wait queue.
	PushWait
	// PushRefused: a PUSH_TOUCH against a live pushee: give up, no wait.
	PushRefused
	// PushRecoverStaging: the pusher won against a STAGING record: run
	// recovery (DecideRecovery), never a blind abort or timestamp move.
	PushRecoverStaging
)

func (a PushAction) String() string {
	return enumName("PushAction", int(a), "ALREADY_FINALIZED", "NOOP_ALREADY_ABOVE", "PUSHED_TIMESTAMP", "ABORTED", "WAIT", "REFUSED", "RECOVER_STAGING")
}

// Marker is what the caller adds to the timestamp cache for the pushee's
// record key after a push, so the coordinator cannot later create or
// commit a record that ignores it.
type Marker int

const (
	NoMarker Marker = iota
	// PushMarker at the pushee's new WriteTS: its record, when written,
	// commits no lower.
	PushMarker
	// TombstoneMarker: the record can never be created.
	TombstoneMarker
)

func (m Marker) String() string {
	return enumName("Marker", int(m), "none", "push", "tombstone")
}

// PushRequest is everything DecidePush looks at.
type PushRequest struct {
	// Pusher is nil for a non-transactional request (normal priority).
	Pusher *TxnState
	// Pushee is the pushee as the pusher knows it (from the intent): ID,
	// epoch, write and start timestamps, priority.
	Pushee TxnState
	// Record is the pushee's record (nil: none); RecordCheck says whether a
	// missing one could still be created.
	Record      *TxnState
	RecordCheck RecordCheck
	Type        PushType
	PushTo      Timestamp // PUSH_TIMESTAMP only
	Now         Timestamp
	// Threshold is the liveness threshold (0: DefaultLivenessThreshold).
	Threshold time.Duration
	// Force: win regardless of priority (deadlock breaking).
	Force bool
}

// PushDecision is DecidePush's answer.
type PushDecision struct {
	Action PushAction
	// Pushee is the pushee after the push (for PushWait, PushRefused and
	// PushRecoverStaging: as found, with what the pusher knew folded in).
	Pushee TxnState
	// WriteRecord: rewrite the existing record as Pushee (aborts only; a
	// push never creates a record, and timestamp pushes live in the
	// tscache only).
	WriteRecord bool
	Marker      Marker
	Reason      string
}

// DecidePush decides a push of req.Pushee by req.Pusher. The order of the
// rules is CockroachDB's PushTxn:
//  1. no record: aborted (no record written) if it can no longer be
//     created, else treated as PENDING with the intent's metadata;
//  2. a finalized pushee: success, nothing changes;
//  3. PUSH_TIMESTAMP with PushTo at or below the pushee's write ts: no-op;
//  4. a higher epoch or ts known to the pusher is folded in; a STAGING
//     record older than that is a failed parallel commit: PENDING, and a
//     timestamp push becomes an abort (a STAGING txn must not move ts);
//  5. the pusher wins if the pushee expired (then always an abort), else
//     not for PUSH_TOUCH, else with a strictly higher priority class, else
//     if forced;
//  6. a win against STAGING means recovery; a loss means WAIT (REFUSED for
//     PUSH_TOUCH);
//  7. a win raises the pushee's priority to the pusher's - 1 and aborts it
//     (write ts forwarded to its last activity) or moves its write ts to
//     PushTo.
func DecidePush(req PushRequest) (PushDecision, error) {
	threshold, err := threshold(req.Threshold)
	if err = firstErr(err, checkPush(req)); err != nil {
		return PushDecision{}, err
	}
	d := PushDecision{}
	hadRecord := req.Record != nil
	if hadRecord {
		d.Pushee = *req.Record
	} else {
		d.Pushee = req.Pushee
		d.Pushee.Status, d.Pushee.LastHeartbeat, d.Pushee.InFlightWrites = Pending, Timestamp{}, 0
		if req.RecordCheck != RecordCreatable {
			d.Pushee.Status = Aborted
			d.Action = PushAlreadyFinalized
			d.Reason = "no record and none can be created: " + req.RecordCheck.blockedReason() + "; aborted without writing a record"
			return d, nil
		}
	}
	p := &d.Pushee
	if p.Status.IsFinalized() {
		d.Action, d.Reason = PushAlreadyFinalized, fmt.Sprintf("record is %s: nothing to push", p.Status)
		return d, nil
	}
	pushType := req.Type
	if pushType == PushTimestamp && req.PushTo.LessEq(p.WriteTS) {
		d.Action = PushNoopAlreadyAbove
		d.Reason = fmt.Sprintf("pushee already writes at %s >= push-to %s", p.WriteTS, req.PushTo)
		return d, nil
	}

	higherTS := p.WriteTS.Forward(req.Pushee.WriteTS)
	higherEpoch := p.Epoch < req.Pushee.Epoch
	if higherEpoch {
		p.Epoch = req.Pushee.Epoch
	}
	p.Priority = max(p.Priority, req.Pushee.Priority)
	var note string
	if (higherTS || higherEpoch) && p.Status == Staging {
		p.Status, p.InFlightWrites = Pending, 0
		note = "the pusher saw the pushee at a higher epoch or ts than its STAGING record: that parallel commit failed, treat it as PENDING; "
		if pushType == PushTimestamp {
			pushType = PushAbort
			note += "a win aborts rather than moving its ts; "
		}
	}

	pusherPri, pusherName := int32(1), "non-transactional request (normal)"
	if req.Pusher != nil {
		pusherPri, pusherName = req.Pusher.Priority, "pusher "+req.Pusher.ID.String()+" ("+priorityName(req.Pusher.Priority)+")"
	}
	wins := true
	lastActive := p.LastActive()
	switch {
	case IsExpired(*p, req.Now, threshold):
		note += fmt.Sprintf("pushee expired (last active %s, threshold %v, now %s)", lastActive, threshold, req.Now)
		pushType = PushAbort
	case pushType == PushTouch:
		wins = false
		note += "PUSH_TOUCH never wins against a live pushee"
	case priorityClass(pusherPri) > priorityClass(p.Priority):
		note += fmt.Sprintf("%s outranks pushee (%s)", pusherName, priorityName(p.Priority))
	case req.Force:
		note += "forced push"
	default:
		wins = false
		note += fmt.Sprintf("%s does not outrank pushee (%s), pushee live (last active %s)", pusherName, priorityName(p.Priority), lastActive)
	}
	switch {
	case wins && p.Status == Staging:
		d.Action, d.Reason = PushRecoverStaging, note+": record is STAGING, its outcome is decided by recovery"
		return d, nil
	case !wins && req.Type == PushTouch:
		d.Action, d.Reason = PushRefused, note
		return d, nil
	case !wins:
		d.Action, d.Reason = PushWait, note+": wait in its queue"
		return d, nil
	}
	if req.Pusher != nil {
		p.Priority = max(p.Priority, pusherPri-1)
	}
	if pushType == PushAbort {
		p.Status = Aborted
		p.WriteTS.Forward(lastActive)
		d.Action, d.WriteRecord, d.Marker = PushAborted, hadRecord, TombstoneMarker
		d.Reason = note + ": abort"
		if !hadRecord {
			d.Reason += " without writing a record"
		}
		return d, nil
	}
	p.WriteTS.Forward(req.PushTo)
	d.Action, d.Marker = PushPushedTimestamp, PushMarker
	d.Reason = fmt.Sprintf("%s: move its write ts to %s", note, p.WriteTS)
	return d, nil
}

func checkPush(req PushRequest) error {
	if err := firstErr(req.Pushee.validate("Pushee", TxnID{}), req.Pusher.validate("Pusher", TxnID{}),
		req.Record.validate("Record", req.Pushee.ID)); err != nil {
		return err
	}
	switch {
	case req.Pusher != nil && req.Pusher.ID == req.Pushee.ID:
		return fmt.Errorf("txnwait: Pusher and Pushee are the same transaction %s", req.Pusher.ID)
	case req.Type < PushTimestamp || req.Type > PushTouch:
		return fmt.Errorf("txnwait: Type %d is not a push type", int(req.Type))
	case req.RecordCheck < RecordCreatable || req.RecordCheck > RecordBelowLowWater:
		return fmt.Errorf("txnwait: RecordCheck %d is not a record check", int(req.RecordCheck))
	}
	return nil
}
