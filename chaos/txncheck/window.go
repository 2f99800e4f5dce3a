package txncheck

import "strings"

// span is the timestamps [lo, hi); hi == maxTS means unbounded.
type span struct{ lo, hi Timestamp }

// window is the timestamps at which a read's observation was the state of
// its key: ascending, disjoint spans. An empty window means no timestamp.
type window []span

func (s span) contains(t Timestamp) bool { return !t.Less(s.lo) && t.Less(s.hi) }

func (w window) contains(t Timestamp) bool {
	for _, s := range w {
		if s.contains(t) {
			return true
		}
	}
	return false
}

// intersect returns the timestamps in both a and b.
func intersect(a, b window) window {
	var out window
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := a[i].lo, a[i].hi
		if lo.Less(b[j].lo) {
			lo = b[j].lo
		}
		if b[j].hi.Less(hi) {
			hi = b[j].hi
		}
		if lo.Less(hi) {
			out = append(out, span{lo, hi})
		}
		if a[i].hi.Less(b[j].hi) {
			i++
		} else {
			j++
		}
	}
	return out
}

// reachesTo reports whether w holds a timestamp at or above t.
func (w window) reachesTo(t Timestamp) bool {
	return len(w) > 0 && t.Less(w[len(w)-1].hi)
}

func (w window) String() string {
	if len(w) == 0 {
		return "never"
	}
	parts := make([]string, len(w))
	for i, s := range w {
		parts[i] = "[" + s.lo.String() + " .. " + s.hi.String() + ")"
	}
	return strings.Join(parts, " u ")
}
