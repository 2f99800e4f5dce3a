package txncheck

import (
	"fmt"
	"sort"
	"strings"
)

// Class names a kind of violation; the number is the check of doc.go.
type Class string

// Violation classes.
const (
	DuplicateValue      Class = "duplicate-value"      // (1) one value written twice in the history
	DuplicateVersion    Class = "duplicate-version"    // (1) one value in two versions: a write applied twice
	LostWrite           Class = "lost-write"           // (2) an OK op's write is missing
	PartialCommit       Class = "partial-commit"       // (2) some of an op's writes present, others missing
	WriteTimestamp      Class = "write-timestamp"      // (2) a write not at its op's commit timestamp; two ops writing a key at one timestamp
	FailedWriteVisible  Class = "failed-write-visible" // (2) a FAILED op's write is present
	IntermediateVisible Class = "intermediate-visible" // (2) a value its txn overwrote is present
	OrphanVersion       Class = "orphan-version"       // (3) a version no op wrote
	UnexplainedRead     Class = "unexplained-read"     // (4) a read no committed version explains
	DirtyRead           Class = "dirty-read"           // (4) a read of an aborted, overwritten or unresolved value (G1a, G1b)
	ReadYourWrites      Class = "read-your-writes"     // (4) a read missing the op's own earlier write
	ReadSkew            Class = "read-skew"            // (4) no one timestamp explains an op's reads
	ReadTimestamp       Class = "read-timestamp"       // (4) the reads agree, but not at the op's timestamp
	ReadAfterCommit     Class = "read-after-commit"    // (5) read timestamp above commit timestamp
	RealTime            Class = "real-time"            // (6) real-time order contradicts timestamp order on a key
	LeftoverIntent      Class = "leftover-intent"      // (7) an unresolved intent in the final state
	BankSum             Class = "bank-sum"             // (8) a snapshot of all accounts does not sum to the total
	BankNegative        Class = "bank-negative"        // (8) a snapshot holds a negative balance
)

// Violation is one thing the history or the final state gets wrong.
type Violation struct {
	Class      Class
	Ops        []int // the ops involved: the fewest that show the violation
	Keys       []string
	Timestamps []Timestamp
	Reason     string // one line
}

func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] ops %s", v.Class, joinInts(v.Ops))
	if len(v.Keys) > 0 {
		fmt.Fprintf(&b, "; keys %s", strings.Join(v.Keys, ","))
	}
	if len(v.Timestamps) > 0 {
		ts := make([]string, len(v.Timestamps))
		for i, t := range v.Timestamps {
			ts[i] = t.String()
		}
		fmt.Fprintf(&b, "; ts %s", strings.Join(ts, " "))
	}
	fmt.Fprintf(&b, ": %s", v.Reason)
	return b.String()
}

// Inference is the outcome inferred for an AMBIGUOUS op (or, in a batch,
// one of its steps) from the final state.
type Inference struct {
	Op        int
	Step      int // -1: the whole op; else the batch step
	Committed bool
	TS        Timestamp // the commit timestamp, if committed
}

func (in Inference) String() string {
	name := fmt.Sprintf("op %d", in.Op)
	if in.Step >= 0 {
		name += fmt.Sprintf(" step %d", in.Step)
	}
	if in.Committed {
		return fmt.Sprintf("%s: AMBIGUOUS, committed at %s", name, in.TS)
	}
	return name + ": AMBIGUOUS, not applied"
}

// Report is the result of Check.
type Report struct {
	Violations []Violation
	Inferred   []Inference
	// Ops is the offending op set: every op some violation names, ascending.
	Ops []int
}

// OK reports whether no violation was found.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

// Add appends violations (for instance CheckBank's) and updates Ops.
func (r *Report) Add(vs ...Violation) {
	r.Violations = append(r.Violations, vs...)
	set := map[int]bool{}
	for _, v := range r.Violations {
		for _, id := range v.Ops {
			set[id] = true
		}
	}
	r.Ops = r.Ops[:0]
	for id := range set {
		r.Ops = append(r.Ops, id)
	}
	sort.Ints(r.Ops)
}

// Has reports whether some violation is of class c.
func (r *Report) Has(c Class) bool {
	for _, v := range r.Violations {
		if v.Class == c {
			return true
		}
	}
	return false
}

func (r *Report) String() string {
	var b strings.Builder
	if r.OK() {
		b.WriteString("no violations\n")
	} else {
		fmt.Fprintf(&b, "violations: %d\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintf(&b, "  %s\n", v)
		}
	}
	if len(r.Inferred) > 0 {
		b.WriteString("inferred outcomes:\n")
		for _, in := range r.Inferred {
			fmt.Fprintf(&b, "  %s\n", in)
		}
	}
	if len(r.Ops) > 0 {
		fmt.Fprintf(&b, "offending ops: %s\n", joinInts(r.Ops))
	}
	return b.String()
}

func joinInts(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, ",")
}
