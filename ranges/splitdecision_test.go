package ranges

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/kv/keys"
)

// splitCase is one case of testdata/split_decision.json. Sizes are strings
// with a unit ("70MiB"); keys are client keys unless System is set.
type splitCase struct {
	Name         string
	Range        uint64
	Size         string
	ScannedAt    string
	MaxBytes     string
	MinBytes     string
	LoadSplitQPS float64
	Load         *struct {
		QPS         float64
		SplitKey    string
		HotKey      string
		HotKeyShare float64
	}
	Right *struct {
		Range      uint64
		Start      string
		System     bool // Start is a system key
		Size       string
		Sticky     bool
		FrozenInto uint64
		Colocated  bool
	}
	// What the queue's actions return: the size scan (nil: the test fails
	// if a scan is asked for), and whether a split or merge fails.
	Scan *struct {
		Key   string
		Total string
		Err   string
	}
	SplitFails bool
	MergeFails bool
}

func parseBytes(t *testing.T, s string) int64 {
	t.Helper()
	if s == "" {
		return 0
	}
	mult := int64(1)
	for i, u := range []string{"KiB", "MiB", "GiB"} {
		if strings.HasSuffix(s, u) {
			s, mult = strings.TrimSuffix(s, u), int64(1)<<(10*(i+1))
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "B"), 64)
	if err != nil {
		t.Fatalf("size %q: %v", s, err)
	}
	return int64(f * float64(mult))
}

func userKey(k string) []byte {
	if k == "" {
		return nil
	}
	return keys.UserKey([]byte(k))
}

func (c splitCase) input(t *testing.T) splitInput {
	in := splitInput{RangeID: c.Range, Size: parseBytes(t, c.Size), ScannedAt: parseBytes(t, c.ScannedAt),
		MaxBytes: parseBytes(t, c.MaxBytes), MinBytes: parseBytes(t, c.MinBytes), LoadSplitQPS: c.LoadSplitQPS}
	if l := c.Load; l != nil {
		in.Load = &loadFacts{QPS: l.QPS, SplitKey: userKey(l.SplitKey), HotKey: userKey(l.HotKey), HotKeyShare: l.HotKeyShare}
	}
	if r := c.Right; r != nil {
		start := userKey(r.Start)
		if r.System {
			start = keys.MetaKey([]byte(r.Start))
		}
		in.Right = &neighbourFacts{RangeID: r.Range, StartKey: start, Size: parseBytes(t, r.Size), Sticky: r.Sticky,
			FrozenInto: r.FrozenInto, Colocated: r.Colocated}
	}
	return in
}

// TestSplitDecision replays each case of testdata/split_decision.json
// through runSplitDecisions with scripted actions and compares the
// decisions taken (action, key, reason, notes) and the actions performed
// with testdata/split_decision.golden. Regenerate with -rewrite.
func TestSplitDecision(t *testing.T) {
	var cases []splitCase
	golden.LoadJSON(t, "split_decision.json", &cases)
	var out strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&out, "== %s\n", c.Name)
		in := c.input(t)
		last := runSplitDecisions(in, splitActions{
			scan: func() sizeScan {
				if c.Scan == nil {
					t.Fatalf("%s: a scan was asked for but the case gives no scan outcome", c.Name)
				}
				var err error
				if c.Scan.Err != "" {
					err = errors.New(c.Scan.Err)
				}
				fmt.Fprintf(&out, "   > scan\n")
				return sizeScan{Key: userKey(c.Scan.Key), Total: parseBytes(t, c.Scan.Total), Err: err}
			},
			split: func(key []byte, by string) bool {
				fmt.Fprintf(&out, "   > split by %s at %s: ok=%v\n", by, keys.Pretty(key), !c.SplitFails)
				return !c.SplitFails
			},
			merge: func() bool {
				fmt.Fprintf(&out, "   > merge: ok=%v\n", !c.MergeFails)
				return !c.MergeFails
			},
			note: func(d splitDecision) {
				fmt.Fprintf(&out, "%s", d.Action)
				if d.Key != nil {
					fmt.Fprintf(&out, " %s", keys.Pretty(d.Key))
				}
				fmt.Fprintf(&out, ": %s\n", d.Reason)
				if d.NoteScanned {
					fmt.Fprintf(&out, "   note scanned at %s\n", fmtBytes(in.Size))
				}
				if d.HotKey != nil {
					fmt.Fprintf(&out, "   report hot key %s\n", keys.Pretty(d.HotKey))
				}
			},
		})
		fmt.Fprintf(&out, "=> %s\n\n", last.Action)
	}
	golden.Check(t, "split_decision.golden", []byte(out.String()))
}
