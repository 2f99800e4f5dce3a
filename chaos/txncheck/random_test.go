package txncheck

import (
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"testing"
)

// genHistory runs n random ops serially against a model store, op i at
// timestamp 10*i, and records them with overlapping invoke/complete times
// consistent with that order (an op that completes before another begins
// has the lower timestamp).
func genHistory(rng *rand.Rand, n int) (History, Dump) {
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5"}
	state := map[string]string{}
	var h History
	var d Dump
	value := 0
	for i := 1; i <= n; i++ {
		t := ts(int64(10 * i))
		o := Op{ID: i, Client: rng.Intn(4), Invoke: int64(10*i) - rng.Int63n(25), Complete: int64(10*i) + rng.Int63n(25)}
		switch r := rng.Intn(20); {
		case r < 15:
			o.Outcome = OK
		case r < 18:
			o.Outcome = Ambiguous
		default:
			o.Outcome = Failed
		}
		apply := o.Outcome == OK || (o.Outcome == Ambiguous && rng.Intn(2) == 0)
		view := maps.Clone(state)
		written := map[string]bool{}
		nsteps := 1
		switch o.Kind = Kind(1 + rng.Intn(5)); o.Kind {
		case KindBatch, KindTxn:
			nsteps = 1 + rng.Intn(4)
		}
		for j := 0; j < nsteps; j++ {
			k := keys[rng.Intn(len(keys))]
			var s Step
			sk := StepKind(1 + rng.Intn(4))
			switch o.Kind {
			case KindGet:
				sk = StepGet
			case KindPut:
				sk = StepPut
			case KindDelete:
				sk = StepDelete
			case KindBatch:
				if written[k] || (sk == StepScan) {
					continue // a batch does not read what it writes; no scans
				}
			}
			switch sk {
			case StepGet:
				v, ok := view[k]
				s = Step{Kind: StepGet, Key: k, Value: v, Found: ok}
			case StepScan:
				a, b := rng.Intn(len(keys)), rng.Intn(len(keys))
				lo, hi := keys[min(a, b)], keys[max(a, b)]+"~"
				s = Step{Kind: StepScan, Key: lo, EndKey: hi}
				for _, k := range slices.Sorted(maps.Keys(view)) {
					if k >= lo && k < hi {
						s.Rows = append(s.Rows, KeyValue{Key: k, Value: view[k]})
					}
				}
			case StepPut:
				value++
				s = Step{Kind: StepPut, Key: k, Value: fmt.Sprintf("v%d", value)}
				view[k] = s.Value
			case StepDelete:
				s = Step{Kind: StepDelete, Key: k}
				delete(view, k)
			}
			if o.Kind == KindBatch && (s.writes() || rng.Intn(2) == 0) {
				s.Timestamp = t
			}
			if s.writes() {
				written[k] = true
			}
			o.Steps = append(o.Steps, s)
		}
		if len(o.Steps) == 0 {
			o.Steps = []Step{{Kind: StepGet, Key: "k0", Value: state["k0"], Found: state["k0"] != ""}}
			o.Kind = KindGet
		}
		if len(written) > 0 {
			if o.Outcome == OK || rng.Intn(3) == 0 {
				o.CommitTS = t
			}
			if rng.Intn(2) == 0 {
				o.ReadTS = ts(int64(10*i - rng.Intn(5)))
			}
		} else if rng.Intn(3) > 0 {
			o.ReadTS = t
		}
		if apply {
			for k := range written {
				v, live := view[k]
				switch {
				case live:
					d = append(d, version(k, 10*int64(i), v))
				case state[k] != "":
					d = append(d, version(k, 10*int64(i), ""))
				}
			}
			state = view
		}
		h = append(h, o)
	}
	return h, d
}

// TestRandomHistories: random valid histories pass, with the AMBIGUOUS
// outcomes inferred right; and each of a few corruptions of them (a read
// value, a dropped or moved version of an OK op) is reported.
func TestRandomHistories(t *testing.T) {
	for seed := int64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewSource(seed))
		h, d := genHistory(rng, 60)
		r, err := Check(h, d)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if !r.OK() {
			t.Fatalf("seed %d: a valid history has violations:\n%s", seed, r)
		}
		// Committed: the model wrote a version at the op's timestamp (of
		// the step's key, for a batch step). Ops that only delete are
		// matched to tombstones by timestamp alone: two of them deleting
		// one key cannot be told apart, so only the absence of violations
		// is asserted for them.
		for _, in := range r.Inferred {
			steps := h[in.Op-1].Steps
			if in.Step >= 0 {
				steps = steps[in.Step : in.Step+1]
			}
			last := map[string]StepKind{}
			for _, s := range steps {
				if s.writes() {
					last[s.Key] = s.Kind
				}
			}
			if !slices.Contains(slices.Collect(maps.Values(last)), StepPut) {
				continue
			}
			want := ts(10 * int64(in.Op))
			wrote := slices.ContainsFunc(d, func(v Version) bool {
				return v.Timestamp == want && (in.Step < 0 || v.Key == h[in.Op-1].Steps[in.Step].Key)
			})
			if in.Committed != wrote || (in.Committed && in.TS != want) {
				t.Fatalf("seed %d: %s, want committed=%v at %s", seed, in, wrote, want)
			}
		}
		// A read of an OK op sees a value nobody wrote.
		var reads [][2]int
		for i, o := range h {
			for j, s := range o.Steps {
				if o.Outcome == OK && s.Kind == StepGet && s.Found {
					reads = append(reads, [2]int{i, j})
				}
			}
		}
		if len(reads) > 0 {
			p := reads[rng.Intn(len(reads))]
			bad := slices.Clone(h)
			bad[p[0]].Steps = slices.Clone(bad[p[0]].Steps)
			bad[p[0]].Steps[p[1]].Value = "bogus"
			mustFail(t, seed, "a read of a value nobody wrote", bad, d)
		}
		// A version of an OK op is lost, or moved up.
		var oks []int
		for i, v := range d {
			if h[v.Timestamp.WallTime/10-1].Outcome == OK {
				oks = append(oks, i)
			}
		}
		if len(oks) > 0 {
			i := oks[rng.Intn(len(oks))]
			mustFail(t, seed, fmt.Sprintf("dropping %s@%s", d[i].Key, d[i].Timestamp), h, slices.Delete(slices.Clone(d), i, i+1))
			moved := slices.Clone(d)
			moved[i].Timestamp.Logical++
			mustFail(t, seed, fmt.Sprintf("moving %s@%s", d[i].Key, d[i].Timestamp), h, moved)
		}
	}
}

func mustFail(t *testing.T, seed int64, what string, h History, d Dump) {
	t.Helper()
	r, err := Check(h, d)
	if err != nil {
		t.Fatalf("seed %d, %s: %v", seed, what, err)
	}
	if r.OK() {
		t.Fatalf("seed %d: %s is not reported", seed, what)
	}
}
