package ranges

import (
	"fmt"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
)

// gcProtection is one protection record as the GC decision sees it: a
// backup's timestamp over a span of internal keys.
type gcProtection struct {
	ID         string
	TS         kv.Timestamp
	Start, End []byte // [Start, End); an empty End is the end of the keyspace
}

// gcFacts is what decideGC looks at for one range.
type gcFacts struct {
	Now     kv.Timestamp
	TTL     time.Duration
	Current kv.Timestamp // the range's GC threshold now
	// Start, End: the range's span.
	Start, End []byte
	// Protections are every protection record, as one scan read them;
	// ProtectionsErr says why they could not be read ("" = they were).
	Protections    []gcProtection
	ProtectionsErr string
}

// gcAction is what the GC loop does for a range.
type gcAction int

const (
	gcSkip  gcAction = iota // propose nothing
	gcRaise                 // raise the threshold to the decided one
)

func (a gcAction) String() string {
	if a == gcRaise {
		return "gc"
	}
	return "skip"
}

// decideGC picks a range's new GC threshold: now - TTL, but strictly below
// the lowest protected timestamp of a record overlapping the range (so
// reads at it, and exports from it, are served: a read at ts needs ts >
// threshold, an export from ts needs ts >= threshold). It never lowers the
// threshold and never raises it without knowing the protection records.
func decideGC(f gcFacts) (gcAction, kv.Timestamp, string) {
	if f.ProtectionsErr != "" {
		return gcSkip, kv.Timestamp{}, fmt.Sprintf("protection records unreadable (%s): no GC without knowing them", f.ProtectionsErr)
	}
	if f.TTL <= 0 {
		return gcSkip, kv.Timestamp{}, fmt.Sprintf("GC TTL %v is not positive", f.TTL)
	}
	target := kv.Timestamp{WallTime: f.Now.WallTime - int64(f.TTL)}
	if target.WallTime <= 0 {
		return gcSkip, kv.Timestamp{}, fmt.Sprintf("now %s is within the GC TTL %v of the epoch", f.Now, f.TTL)
	}
	why := fmt.Sprintf("now %s - TTL %v", f.Now, f.TTL)
	for _, p := range f.Protections {
		if !overlapsOpen(p.Start, p.End, f.Start, f.End) || p.TS.IsEmpty() {
			continue
		}
		if limit := p.TS.Prev(); limit.Less(target) {
			target = limit
			why = fmt.Sprintf("just below protected timestamp %s of record %s (%s..%s)", p.TS, p.ID, keys.Pretty(p.Start), keys.Pretty(p.End))
		}
	}
	if !f.Current.Less(target) {
		return gcSkip, kv.Timestamp{}, fmt.Sprintf("threshold %s is already at or above %s (%s)", f.Current, target, why)
	}
	return gcRaise, target, fmt.Sprintf("raise threshold %s -> %s: %s", f.Current, target, why)
}

// overlapsOpen is keys.Overlaps where an empty end bound means the end of
// the keyspace.
func overlapsOpen(s1, e1, s2, e2 []byte) bool {
	if len(e1) == 0 {
		e1 = keys.KeyMax
	}
	if len(e2) == 0 {
		e2 = keys.KeyMax
	}
	return keys.Overlaps(s1, e1, s2, e2)
}
