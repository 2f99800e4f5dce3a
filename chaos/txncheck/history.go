package txncheck

import (
	"fmt"
	"math"
)

// Timestamp is an HLC timestamp: WallTime in nanoseconds, then Logical.
// It mirrors kv.Timestamp without importing it, so that the validator
// stays a pure function of its inputs.
type Timestamp struct {
	WallTime int64
	Logical  int32
}

// maxTS stands for "no upper bound" in validity windows.
var maxTS = Timestamp{WallTime: math.MaxInt64, Logical: math.MaxInt32}

// Less reports whether t < o.
func (t Timestamp) Less(o Timestamp) bool {
	return t.WallTime < o.WallTime || (t.WallTime == o.WallTime && t.Logical < o.Logical)
}

// IsZero reports whether t is unset.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

func (t Timestamp) String() string {
	if t == maxTS {
		return "inf"
	}
	// As kv.Timestamp prints, so that reports match the nodes' logs.
	sec, nsec := t.WallTime/1e9, t.WallTime%1e9
	if nsec < 0 {
		sec--
		nsec += 1e9
	}
	return fmt.Sprintf("%d.%09d,%d", sec, nsec, t.Logical)
}

// Kind is what a client operation was.
type Kind int

// Operation kinds.
const (
	KindGet    Kind = iota + 1 // one StepGet
	KindPut                    // one StepPut
	KindDelete                 // one StepDelete
	KindBatch                  // non-transactional batch: each step checked on its own, at Step.Timestamp
	KindTxn                    // transaction: all steps at one timestamp
)

var kindNames = map[Kind]string{KindGet: "get", KindPut: "put", KindDelete: "delete", KindBatch: "batch", KindTxn: "txn"}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Outcome is what the client learnt of an operation.
type Outcome int

// Outcomes.
const (
	OK        Outcome = iota + 1 // applied (committed)
	Failed                       // definitely not applied
	Ambiguous                    // may or may not have applied
)

var outcomeNames = map[Outcome]string{OK: "OK", Failed: "FAILED", Ambiguous: "AMBIGUOUS"}

func (o Outcome) String() string {
	if s, ok := outcomeNames[o]; ok {
		return s
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// StepKind is one read or write inside an operation.
type StepKind int

// Step kinds.
const (
	StepGet    StepKind = iota + 1 // Key; Found and Value are what was read
	StepScan                       // [Key, EndKey); Rows are what was returned
	StepPut                        // Key = Value
	StepDelete                     // Key
)

// KeyValue is one row a scan returned.
type KeyValue struct {
	Key, Value string
}

// Step is one read or write of an operation, in the order the client
// issued them (a transaction's reads see its earlier writes).
type Step struct {
	Kind   StepKind
	Key    string
	EndKey string     // StepScan: exclusive end. A scan cut by a limit is recorded with EndKey just past its last row.
	Value  string     // StepPut: the value written (unique in the history); StepGet: the value seen, if Found
	Found  bool       // StepGet: the key had a live value
	Rows   []KeyValue // StepScan: the rows returned, ascending
	// Timestamp is, in a KindBatch only, the timestamp the step's range
	// part ran at (read timestamp for a read, write timestamp for a write);
	// zero if unknown. Other kinds use the Op's timestamps.
	Timestamp Timestamp
}

func (s Step) writes() bool { return s.Kind == StepPut || s.Kind == StepDelete }

// Op is one client operation.
type Op struct {
	ID     int
	Client int
	// Invoke and Complete are nanoseconds on the recorder's one clock (as
	// porcupine's Call and Return). An ambiguous op's Complete is when the
	// client gave up; it may apply later.
	Invoke, Complete int64
	Kind             Kind
	Steps            []Step
	// ReadTS is a read-only op's (or a txn's) read timestamp; CommitTS a
	// writing op's commit timestamp. Either may be zero if unknown, except
	// CommitTS of an OK writing op other than a batch.
	ReadTS, CommitTS Timestamp
	Outcome          Outcome
}

// History is every recorded operation.
type History []Op

// Version is one MVCC version in the final state.
type Version struct {
	Key       string
	Timestamp Timestamp
	Value     string
	Deleted   bool // a tombstone (Value empty)
	Intent    bool // still an unresolved intent
}

// Dump is the final MVCC state: every version of every key, in any order.
type Dump []Version

// validate refuses input the checks cannot interpret, naming the op,
// step or version and the field.
func validate(h History, d Dump) error {
	ids := map[int]bool{}
	for i, op := range h {
		where := fmt.Sprintf("history[%d] (op %d)", i, op.ID)
		if ids[op.ID] {
			return fmt.Errorf("%s: ID %d is used twice", where, op.ID)
		}
		ids[op.ID] = true
		if _, ok := kindNames[op.Kind]; !ok {
			return fmt.Errorf("%s: Kind %d is not a known kind", where, int(op.Kind))
		}
		if _, ok := outcomeNames[op.Outcome]; !ok {
			return fmt.Errorf("%s: Outcome %d is not a known outcome", where, int(op.Outcome))
		}
		if op.Complete < op.Invoke {
			return fmt.Errorf("%s: Complete %d is before Invoke %d", where, op.Complete, op.Invoke)
		}
		if len(op.Steps) == 0 {
			return fmt.Errorf("%s: no Steps", where)
		}
		single := map[Kind]StepKind{KindGet: StepGet, KindPut: StepPut, KindDelete: StepDelete}
		if want, ok := single[op.Kind]; ok && (len(op.Steps) != 1 || op.Steps[0].Kind != want) {
			return fmt.Errorf("%s: a %s op has exactly one step of that kind", where, op.Kind)
		}
		writes := false
		for j, s := range op.Steps {
			sw := fmt.Sprintf("%s step %d", where, j)
			switch {
			case s.Kind < StepGet || s.Kind > StepDelete:
				return fmt.Errorf("%s: Kind %d is not a known step kind", sw, int(s.Kind))
			case s.Key == "":
				return fmt.Errorf("%s: Key is empty", sw)
			case s.Kind == StepScan && s.EndKey <= s.Key:
				return fmt.Errorf("%s: scan EndKey %q is not after Key %q", sw, s.EndKey, s.Key)
			case s.Kind == StepPut && s.Value == "":
				return fmt.Errorf("%s: put Value is empty (written values are unique and non-empty)", sw)
			case op.Kind == KindBatch && op.Outcome == OK && s.writes() && s.Timestamp.IsZero():
				return fmt.Errorf("%s: an OK batch's write has no Timestamp", sw)
			}
			writes = writes || s.writes()
		}
		if writes && op.Kind != KindBatch && op.Outcome == OK && op.CommitTS.IsZero() {
			return fmt.Errorf("%s: an OK writing op has no CommitTS", where)
		}
	}
	at := map[string]bool{}
	for i, v := range d {
		where := fmt.Sprintf("dump[%d] (%s@%s)", i, v.Key, v.Timestamp)
		switch {
		case v.Key == "":
			return fmt.Errorf("%s: Key is empty", where)
		case v.Timestamp.IsZero():
			return fmt.Errorf("%s: Timestamp is zero", where)
		case v.Deleted && v.Value != "":
			return fmt.Errorf("%s: a tombstone has Value %q", where, v.Value)
		case !v.Deleted && v.Value == "":
			return fmt.Errorf("%s: Value is empty and Deleted is false", where)
		case at[v.Key+"\x00"+v.Timestamp.String()]:
			return fmt.Errorf("%s: two versions of one key at one timestamp", where)
		}
		at[v.Key+"\x00"+v.Timestamp.String()] = true
	}
	return nil
}
