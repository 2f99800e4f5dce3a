package txnwait

import (
	"encoding/hex"
	"fmt"
	"math"
	"time"
)

// Timestamp is an HLC timestamp: WallTime in nanoseconds, Logical orders
// events within one WallTime. It has kv.Timestamp's fields, so the two
// convert with a plain conversion (txnwait.Timestamp(ts)).
type Timestamp struct {
	WallTime int64
	Logical  int32
}

// Less reports whether t < o.
func (t Timestamp) Less(o Timestamp) bool {
	return t.WallTime < o.WallTime || (t.WallTime == o.WallTime && t.Logical < o.Logical)
}

// LessEq reports whether t <= o.
func (t Timestamp) LessEq(o Timestamp) bool { return !o.Less(t) }

// Forward raises t to o if o is later, and reports whether it did.
func (t *Timestamp) Forward(o Timestamp) bool {
	if t.Less(o) {
		*t = o
		return true
	}
	return false
}

// IsEmpty reports whether t is the zero timestamp.
func (t Timestamp) IsEmpty() bool { return t == Timestamp{} }

// add returns t moved d later on the wall clock (saturating).
func (t Timestamp) add(d time.Duration) Timestamp {
	if t.WallTime > math.MaxInt64-int64(d) {
		return Timestamp{WallTime: math.MaxInt64, Logical: t.Logical}
	}
	return Timestamp{WallTime: t.WallTime + int64(d), Logical: t.Logical}
}

func (t Timestamp) String() string {
	sec, nsec := t.WallTime/1e9, t.WallTime%1e9
	if nsec < 0 {
		sec--
		nsec += 1e9
	}
	return fmt.Sprintf("%d.%09d,%d", sec, nsec, t.Logical)
}

// TxnID identifies a transaction (a UUID).
type TxnID [16]byte

// String is the ID's first four bytes in hex, enough to tell txns apart in
// reasons and logs.
func (id TxnID) String() string { return hex.EncodeToString(id[:4]) }

// TxnStatus is the status of a transaction record.
type TxnStatus int

const (
	// Pending: the transaction is running (the record's default).
	Pending TxnStatus = iota
	// Staging: a parallel commit is under way: the txn is committed iff
	// every in-flight write succeeded at or below the record's timestamp in
	// its epoch (implicit commit). Only recovery or the coordinator's
	// EndTxn(commit) moves it on.
	Staging
	// Committed and Aborted are final.
	Committed
	Aborted
)

func (s TxnStatus) String() string {
	return enumName("TxnStatus", int(s), "PENDING", "STAGING", "COMMITTED", "ABORTED")
}

// IsFinalized reports whether s is COMMITTED or ABORTED.
func (s TxnStatus) IsFinalized() bool { return s == Committed || s == Aborted }

func (s TxnStatus) valid() bool { return s >= Pending && s <= Aborted }

// Priorities. Any priority strictly between MinPriority and MaxPriority is
// a normal one; pushes compare only the class (min < normal < max), so two
// normal priorities tie and the pusher loses. Deadlock victims are chosen
// by the raw value.
const (
	MinPriority int32 = 0
	MaxPriority int32 = math.MaxInt32
)

// priorityClass normalises a priority: 0 min, 1 normal, 2 max.
func priorityClass(p int32) int {
	switch p {
	case MinPriority:
		return 0
	case MaxPriority:
		return 2
	}
	return 1
}

func priorityName(p int32) string {
	return [...]string{"min", "normal", "max"}[priorityClass(p)]
}

// priorityLabel is min, max, or a normal priority's value.
func priorityLabel(p int32) string {
	if priorityClass(p) == 1 {
		return fmt.Sprint(p)
	}
	return priorityName(p)
}

// DefaultLivenessThreshold is how long a transaction may go without
// activity before any pusher may abort it: 5 heartbeat intervals of 1 s.
const DefaultLivenessThreshold = 5 * time.Second

// TxnState is what the decisions know of a transaction: its record, or
// what an intent says of it.
type TxnState struct {
	ID       TxnID
	Epoch    int32
	Priority int32
	Status   TxnStatus
	// WriteTS is the provisional commit timestamp.
	WriteTS Timestamp
	// StartTS is the txn's first timestamp (an intent carries it too);
	// LastHeartbeat is zero until the first heartbeat.
	StartTS       Timestamp
	LastHeartbeat Timestamp
	// InFlightWrites: the writes a STAGING record's implicit commit
	// depends on.
	InFlightWrites int
}

// LastActive is the later of the last heartbeat and the start timestamp.
// WriteTS is no evidence of activity: a push moves it.
func (t TxnState) LastActive() Timestamp {
	ts := t.LastHeartbeat
	ts.Forward(t.StartTS)
	return ts
}

// IsExpired reports whether t showed no activity for longer than threshold
// before now: last activity + threshold < now.
func IsExpired(t TxnState, now Timestamp, threshold time.Duration) bool {
	return t.LastActive().add(threshold).Less(now)
}

func (t TxnState) String() string {
	s := fmt.Sprintf("%s %s epoch=%d ts=%s pri=%s", t.ID, t.Status, t.Epoch, t.WriteTS, priorityLabel(t.Priority))
	if t.Status == Staging {
		s += fmt.Sprintf(" inflight=%d", t.InFlightWrites)
	}
	return s
}

// validate checks t (nil: nothing to check) and, if id is not zero, that
// t is of txn id.
func (t *TxnState) validate(field string, id TxnID) error {
	switch {
	case t == nil:
		return nil
	case !t.Status.valid():
		return fmt.Errorf("txnwait: %s.Status %d is not a transaction status", field, int(t.Status))
	case t.Priority < MinPriority:
		return fmt.Errorf("txnwait: %s.Priority %d is below MinPriority (%d)", field, t.Priority, MinPriority)
	case t.Epoch < 0 || t.InFlightWrites < 0:
		return fmt.Errorf("txnwait: %s.Epoch %d or %s.InFlightWrites %d is negative", field, t.Epoch, field, t.InFlightWrites)
	case id != TxnID{} && t.ID != id:
		return fmt.Errorf("txnwait: %s is of txn %s, not %s", field, t.ID, id)
	}
	return nil
}

// firstErr is the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// threshold is t, or DefaultLivenessThreshold for 0.
func threshold(t time.Duration) (time.Duration, error) {
	if t < 0 {
		return 0, fmt.Errorf("txnwait: Threshold %v is negative", t)
	}
	if t == 0 {
		return DefaultLivenessThreshold, nil
	}
	return t, nil
}

// RecordCheck is what the timestamp cache says about creating a missing
// transaction record (only the coordinator's EndTxn or first heartbeat
// creates one).
type RecordCheck int

const (
	// RecordCreatable: nothing stops the coordinator from writing the
	// record later, so the txn may still be running.
	RecordCreatable RecordCheck = iota
	// RecordTombstone: the tscache holds a marker for the txn: a pusher
	// aborted it without a record, or its finalized record was removed
	// (a committed txn resolves its intents before that).
	RecordTombstone
	// RecordBelowLowWater: the txn started below the tscache's low water
	// (a new lease): a record may have existed; it can no longer be written.
	RecordBelowLowWater
)

func (c RecordCheck) String() string {
	return enumName("RecordCheck", int(c), "creatable", "tombstone", "below-low-water")
}

func (c RecordCheck) blockedReason() string {
	if c == RecordTombstone {
		return "the tscache holds a tombstone for it (aborted by a pusher, or finalized and its record removed)"
	}
	return "it started below the tscache low water (a new lease): its record can no longer be written"
}

// enumName is names[v], or typ(v) for a value out of range.
func enumName(typ string, v int, names ...string) string {
	if v >= 0 && v < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, v)
}
