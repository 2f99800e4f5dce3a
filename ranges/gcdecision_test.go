package ranges

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/kv"
)

// TestGCDecision replays testdata/gc_decision.json through decideGC and
// compares the result with testdata/gc_decision.golden (-rewrite).
// Timestamps are wall seconds ("100"; "100,5": logical 5); spans are
// internal keys, an empty end open.
func TestGCDecision(t *testing.T) {
	var cases struct {
		Cases []struct {
			Name           string
			Now, Current   string
			TTL            string
			Start, End     string
			Protections    []string // "id ts start..end"
			ProtectionsErr string
		}
	}
	golden.LoadJSON(t, "gc_decision.json", &cases)
	parseTS := func(s string) kv.Timestamp {
		if s == "" {
			return kv.Timestamp{}
		}
		var sec int64
		var logical int32
		if i := strings.IndexByte(s, ','); i >= 0 {
			if _, err := fmt.Sscanf(s[i+1:], "%d", &logical); err != nil {
				t.Fatalf("timestamp %q: %v", s, err)
			}
			s = s[:i]
		}
		if _, err := fmt.Sscanf(s, "%d", &sec); err != nil {
			t.Fatalf("timestamp %q: %v", s, err)
		}
		return kv.Timestamp{WallTime: sec * int64(time.Second), Logical: logical}
	}
	var out strings.Builder
	for _, c := range cases.Cases {
		ttl, err := time.ParseDuration(c.TTL)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		f := gcFacts{Now: parseTS(c.Now), TTL: ttl, Current: parseTS(c.Current), Start: []byte(c.Start), End: []byte(c.End), ProtectionsErr: c.ProtectionsErr}
		for _, p := range c.Protections {
			parts := strings.Fields(p)
			if len(parts) != 3 {
				t.Fatalf("%s: protection %q is not \"id ts start..end\"", c.Name, p)
			}
			span := strings.SplitN(parts[2], "..", 2)
			f.Protections = append(f.Protections, gcProtection{ID: parts[0], TS: parseTS(parts[1]), Start: []byte(span[0]), End: []byte(span[1])})
		}
		a, th, reason := decideGC(f)
		if a == gcRaise {
			fmt.Fprintf(&out, "== %s\ngc to %s: %s\n", c.Name, th, reason)
		} else {
			fmt.Fprintf(&out, "== %s\nskip: %s\n", c.Name, reason)
		}
		if a == gcRaise {
			// Invariants: never lower, never at or above an overlapping
			// protected timestamp.
			if !f.Current.Less(th) {
				t.Errorf("%s: threshold %s not above current %s", c.Name, th, f.Current)
			}
			for _, p := range f.Protections {
				if overlapsOpen(p.Start, p.End, f.Start, f.End) && !th.Less(p.TS) {
					t.Errorf("%s: threshold %s not below protection %s at %s", c.Name, th, p.ID, p.TS)
				}
			}
		}
	}
	golden.Check(t, "gc_decision.golden", []byte(out.String()))
}
