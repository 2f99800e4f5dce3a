package ranges

import (
	"fmt"
	"strings"

	"github.com/rangestore/rangestore/kv/keys"
)

// The split queue's decision for one range, without I/O: decideSplit maps
// the facts the queue gathered (splitInput) to the next action and the
// reason for it. The queue (splitqueue.go) gathers the facts, performs the
// action, feeds its outcome back into the input and asks again
// (runSplitDecisions) until an action ends the round. Tests replay the
// decisions from testdata/split_decision.json against golden output.

// splitAction is what the split queue does next for one range.
type splitAction int

const (
	// splitNone: nothing this round (the reason says why per stage); a
	// hot key may be reported.
	splitNone splitAction = iota
	// splitScanSize: scan the range's data for its byte midpoint and its
	// exact size, then decide again with the outcome (splitInput.Scan).
	splitScanSize
	// splitBySize: split at Key, the byte midpoint.
	splitBySize
	// splitMerge: merge the right neighbour into this range.
	splitMerge
	// splitByLoad: split at Key, the load decider's key.
	splitByLoad
)

func (a splitAction) String() string {
	switch a {
	case splitNone:
		return "none"
	case splitScanSize:
		return "scan-size"
	case splitBySize:
		return "split-by-size"
	case splitMerge:
		return "merge"
	case splitByLoad:
		return "split-by-load"
	}
	return fmt.Sprintf("splitAction(%d)", int(a))
}

// sizeScan is the outcome of scanning a range for its byte midpoint.
type sizeScan struct {
	Key   []byte // first key at or after the midpoint (nil: none, e.g. one key)
	Total int64  // the exact data size
	Err   error
}

// loadFacts is the load decider's view of a range at one instant.
type loadFacts struct {
	QPS         float64 // requests in the last complete second
	SplitKey    []byte  // the recommended split key (nil: none)
	HotKey      []byte  // one key with at least loadsplit.HotKeyShare of the load (nil: none)
	HotKeyShare float64 // HotKey's share of the load
}

// neighbourFacts describes the local replica of the range to the right.
type neighbourFacts struct {
	RangeID    uint64
	StartKey   []byte
	Size       int64  // size estimate
	Sticky     bool   // its start key was chosen by an operator
	FrozenInto uint64 // the range it is frozen for a merge into (0: none)
	Colocated  bool   // its replicas are on the same nodes as this range's
}

// splitInput is everything decideSplit looks at.
type splitInput struct {
	RangeID   uint64
	Size      int64 // size estimate
	ScannedAt int64 // the estimate when a scan last found no split needed
	// Thresholds (StoreConfig): MaxBytes <= 0 turns size splits off,
	// MinBytes <= 0 merges.
	MaxBytes, MinBytes int64
	LoadSplitQPS       float64
	Load               *loadFacts      // nil: load splitting is off
	Right              *neighbourFacts // nil: no local replica of a right neighbour

	// Outcomes of this round's actions, filled in by the queue.
	Scan            *sizeScan // the size scan, once done
	SizeSplitFailed bool
	MergeFailed     bool
}

// splitDecision is the queue's next step for one range.
type splitDecision struct {
	Action splitAction
	Key    []byte // the split key (splitBySize, splitByLoad)
	Reason string
	// NoteScanned: the scan found no split needed (the estimate
	// overcounts): remember Size as ScannedAt, so the range is scanned
	// again only after it grew.
	NoteScanned bool
	// HotKey is a key to report as hot (only with splitNone; nil: none,
	// clear the last one).
	HotKey []byte
}

// decideSplit returns the split queue's next step for one range. The
// stages, in order: split by size (scanning first), merge with the right
// neighbour, split by load (or report a hot key). A stage whose action
// failed this round is passed over.
func decideSplit(in splitInput) splitDecision {
	var d splitDecision
	var why []string

	// Size.
	switch {
	case in.MaxBytes <= 0:
		why = append(why, "size: size splits are off")
	case in.Size <= in.MaxBytes:
		why = append(why, fmt.Sprintf("size: %s is not above RangeMaxBytes %s", fmtBytes(in.Size), fmtBytes(in.MaxBytes)))
	case in.Size <= in.ScannedAt+in.MaxBytes/8:
		why = append(why, fmt.Sprintf("size: estimate %s has not grown by RangeMaxBytes/8 since a scan found no split needed at %s",
			fmtBytes(in.Size), fmtBytes(in.ScannedAt)))
	case in.Scan == nil:
		return splitDecision{Action: splitScanSize, Reason: fmt.Sprintf("size estimate %s is above RangeMaxBytes %s: scan for the byte midpoint",
			fmtBytes(in.Size), fmtBytes(in.MaxBytes))}
	case in.Scan.Err != nil:
		why = append(why, fmt.Sprintf("size: scanning the range failed: %v", in.Scan.Err))
	case in.Scan.Key == nil || in.Scan.Total <= in.MaxBytes:
		d.NoteScanned = true
		if in.Scan.Key == nil {
			why = append(why, fmt.Sprintf("size: %s but no split key (a single key)", fmtBytes(in.Scan.Total)))
		} else {
			why = append(why, fmt.Sprintf("size: the scan found %s, not above RangeMaxBytes %s (the estimate %s overcounts)",
				fmtBytes(in.Scan.Total), fmtBytes(in.MaxBytes), fmtBytes(in.Size)))
		}
	case in.SizeSplitFailed:
		why = append(why, fmt.Sprintf("size: the split at %s failed", keys.Pretty(in.Scan.Key)))
	default:
		d.Action, d.Key = splitBySize, in.Scan.Key
		d.Reason = fmt.Sprintf("%s is above RangeMaxBytes %s: split at the byte midpoint %s",
			fmtBytes(in.Scan.Total), fmtBytes(in.MaxBytes), keys.Pretty(in.Scan.Key))
		return d
	}

	// Merge with the right neighbour.
	if r := in.Right; r == nil {
		why = append(why, "merge: no replica of a right neighbour here")
	} else {
		rn := fmt.Sprintf("right neighbour r%d", r.RangeID)
		mergeWhy := ""
		switch {
		case in.MergeFailed:
			mergeWhy = "the merge failed"
		case r.FrozenInto == in.RangeID:
			d.Action = splitMerge
			d.Reason = fmt.Sprintf("%s is frozen for a merge into r%d: finish the merge", rn, in.RangeID)
			return d
		case in.MinBytes <= 0:
			mergeWhy = "merges are off"
		case in.Size >= in.MinBytes:
			mergeWhy = fmt.Sprintf("%s is not below RangeMinBytes %s", fmtBytes(in.Size), fmtBytes(in.MinBytes))
		case r.Size >= in.MinBytes:
			mergeWhy = fmt.Sprintf("%s has %s, not below RangeMinBytes %s", rn, fmtBytes(r.Size), fmtBytes(in.MinBytes))
		case in.MaxBytes > 0 && in.Size+r.Size >= in.MaxBytes/2:
			mergeWhy = fmt.Sprintf("with %s, %s together, not below half of RangeMaxBytes %s", rn, fmtBytes(in.Size+r.Size), fmtBytes(in.MaxBytes))
		case !keys.IsUserKey(r.StartKey):
			mergeWhy = fmt.Sprintf("%s is not a user range", rn)
		case r.Sticky:
			mergeWhy = fmt.Sprintf("%s starts at a key an operator split at (sticky)", rn)
		case r.FrozenInto != 0:
			mergeWhy = fmt.Sprintf("%s is frozen for a merge into r%d", rn, r.FrozenInto)
		case !r.Colocated:
			mergeWhy = fmt.Sprintf("%s has replicas on other nodes", rn)
		case in.Load != nil && in.Load.QPS >= in.LoadSplitQPS/2:
			mergeWhy = fmt.Sprintf("%.0f req/s is not below half of LoadSplitQPS %.0f", in.Load.QPS, in.LoadSplitQPS)
		default:
			d.Action = splitMerge
			d.Reason = fmt.Sprintf("%s and %s (%s) are below RangeMinBytes %s and idle: merge", fmtBytes(in.Size), rn, fmtBytes(r.Size), fmtBytes(in.MinBytes))
			return d
		}
		why = append(why, "merge: "+mergeWhy)
	}

	// Load.
	switch l := in.Load; {
	case l == nil:
		why = append(why, "load: load splits are off")
	case l.SplitKey != nil:
		d.Action, d.Key = splitByLoad, l.SplitKey
		d.Reason = fmt.Sprintf("%.0f req/s, above LoadSplitQPS %.0f for LoadSplitDuration: split at %s, which balances the load",
			l.QPS, in.LoadSplitQPS, keys.Pretty(l.SplitKey))
		return d
	case l.HotKey != nil:
		d.HotKey = l.HotKey
		why = append(why, fmt.Sprintf("load: hot key %s has %.0f%% of %.0f req/s; one key cannot be split",
			keys.Pretty(l.HotKey), 100*l.HotKeyShare, l.QPS))
	case l.QPS <= in.LoadSplitQPS:
		why = append(why, fmt.Sprintf("load: %.0f req/s is not above LoadSplitQPS %.0f", l.QPS, in.LoadSplitQPS))
	default:
		why = append(why, fmt.Sprintf("load: %.0f req/s but no balanced split key yet (LoadSplitDuration not over, or every candidate is uneven or straddled)", l.QPS))
	}
	d.Reason = strings.Join(why, "; ")
	return d
}

// splitActions performs the split queue's I/O for one range.
type splitActions struct {
	scan  func() sizeScan
	split func(key []byte, by string) bool // by: "size" or "load"
	merge func() bool
	// note sees every decision, in order, before it is acted on.
	note func(splitDecision)
}

// runSplitDecisions is one round of the split queue for one range: decide,
// act, feed the outcome back and decide again, until an action succeeds,
// a load split was tried, or nothing is left to do. It returns the last
// decision.
func runSplitDecisions(in splitInput, act splitActions) splitDecision {
	for {
		d := decideSplit(in)
		act.note(d)
		switch d.Action {
		case splitScanSize:
			scan := act.scan()
			in.Scan = &scan
		case splitBySize:
			if act.split(d.Key, "size") {
				return d
			}
			in.SizeSplitFailed = true
		case splitMerge:
			if act.merge() {
				return d
			}
			in.MergeFailed = true
		case splitByLoad:
			act.split(d.Key, "load")
			return d
		default:
			return d
		}
	}
}

// fmtBytes renders a byte count for reasons: 512 B, 1.5 KiB, 64.0 MiB.
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for (f >= unit || f <= -unit) && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}
