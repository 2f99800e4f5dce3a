package txnwait

import "fmt"

// WriteResult is what querying one in-flight write of a STAGING txn found.
type WriteResult int

const (
	// WriteFound: its intent exists at or below the staging ts, in the
	// staging epoch.
	WriteFound WriteResult = iota
	// WritePrevented: the intent was missing; the query raised the
	// tscache over the key, so the write can only land above the staging
	// ts: the txn can never be implicitly committed at it.
	WritePrevented
	// WriteFoundAbove: the intent exists above the staging ts (it was
	// pushed): not part of an implicit commit at the staging ts.
	WriteFoundAbove
)

func (w WriteResult) String() string {
	return enumName("WriteResult", int(w), "found", "prevented", "found-above")
}

// RecoveryAction is DecideRecovery's outcome.
type RecoveryAction int

const (
	// RecoverCommit: write Txn COMMITTED (every in-flight write succeeded:
	// the txn was implicitly committed, and may have been acknowledged).
	RecoverCommit RecoveryAction = iota
	// RecoverAbort: write Txn ABORTED (a write was prevented or landed
	// above the staging ts, so no implicit commit exists at it).
	RecoverAbort
	// RecoverStop: the record changed since recovery began (finalized,
	// removed, a higher epoch or ts): nothing to do; push again if needed.
	RecoverStop
)

func (a RecoveryAction) String() string {
	return enumName("RecoveryAction", int(a), "COMMIT", "ABORT", "STOP")
}

// DecideRecovery decides the recovery of staging, the STAGING record a
// push or rollback ran into, given current (the record read again, nil if
// gone) and the query result of each of its in-flight writes, in order.
// An error means an invariant broke: an implicitly committed txn whose
// record moved, or a record that went backwards.
func DecideRecovery(staging TxnState, current *TxnState, writes []WriteResult) (RecoveryAction, TxnState, string, error) {
	if err := firstErr(staging.validate("staging", TxnID{}), current.validate("current", staging.ID)); err != nil {
		return 0, TxnState{}, "", err
	}
	if staging.Status != Staging {
		return 0, TxnState{}, "", fmt.Errorf("txnwait: staging record is %s, not STAGING", staging.Status)
	}
	if len(writes) != staging.InFlightWrites {
		return 0, TxnState{}, "", fmt.Errorf("txnwait: %d write results for %d in-flight writes", len(writes), staging.InFlightWrites)
	}
	failed := -1
	for i, w := range writes {
		if w < WriteFound || w > WriteFoundAbove {
			return 0, TxnState{}, "", fmt.Errorf("txnwait: write result %d is %d, not a write result", i, int(w))
		}
		if w != WriteFound && failed < 0 {
			failed = i
		}
	}
	allFound := failed < 0
	if current == nil {
		return RecoverStop, staging, "record is gone: the txn was finalized and its record removed", nil
	}
	cur := *current
	if cur.Status.IsFinalized() {
		return RecoverStop, cur, fmt.Sprintf("record is already %s", cur.Status), nil
	}
	moved := staging.Epoch < cur.Epoch || staging.WriteTS.Less(cur.WriteTS)
	switch {
	case cur.Epoch < staging.Epoch || cur.WriteTS.Less(staging.WriteTS):
		return 0, TxnState{}, "", fmt.Errorf("txnwait: record went back from epoch %d ts %s to epoch %d ts %s",
			staging.Epoch, staging.WriteTS, cur.Epoch, cur.WriteTS)
	case moved && allFound:
		return 0, TxnState{}, "", fmt.Errorf("txnwait: every in-flight write found at epoch %d ts %s (implicitly committed), yet the record moved to epoch %d ts %s",
			staging.Epoch, staging.WriteTS, cur.Epoch, cur.WriteTS)
	case moved:
		return RecoverStop, cur, fmt.Sprintf("record moved to %s epoch %d ts %s: the txn restarted or re-staged and is still running",
			cur.Status, cur.Epoch, cur.WriteTS), nil
	case cur.Status == Pending:
		return 0, TxnState{}, "", fmt.Errorf("txnwait: record went back from STAGING to PENDING in epoch %d", cur.Epoch)
	}
	cur.InFlightWrites = 0
	if allFound {
		cur.Status = Committed
		return RecoverCommit, cur, fmt.Sprintf("all %d in-flight writes found at or below %s in epoch %d: implicitly committed",
			len(writes), staging.WriteTS, staging.Epoch), nil
	}
	cur.Status = Aborted
	return RecoverAbort, cur, fmt.Sprintf("in-flight write %d of %d %s: no implicit commit at %s",
		failed+1, len(writes), writes[failed], staging.WriteTS), nil
}
