package txncheck

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ver is one version of the dump and the unit that wrote it (nil: none
// found).
type ver struct {
	Version
	writer *unit
}

// write is a unit's final write of one key.
type write struct {
	key, value string
	del        bool
}

// unit is what is checked atomically at one timestamp: an op, or one step
// of a batch.
type unit struct {
	op        *Op
	step      int // -1: the whole op; else the batch step
	first     int // index in op.Steps of steps[0]
	steps     []Step
	writes    []write   // the last write of each key, ascending by key
	ts        Timestamp // commit timestamp of a writer, read timestamp of a reader; zero: unknown
	inferred  bool      // ts was inferred from the dump
	committed bool      // OK, or AMBIGUOUS and inferred committed
}

func (u *unit) name() string {
	if u.step < 0 {
		return fmt.Sprintf("op %d", u.op.ID)
	}
	return fmt.Sprintf("op %d step %d", u.op.ID, u.step)
}

type checker struct {
	versions map[string][]*ver // per key, ascending by timestamp
	keys     []string          // the dump's keys, ascending
	units    []*unit
	putBy    map[string]*unit  // value -> the unit whose final write it is
	overwrit map[string]*unit  // value -> the txn that overwrote it before committing
	holders  map[string][]*ver // value -> the versions holding it
	reads    map[string][]access
	rep      Report
	quiet    bool // a dry run: add reports nothing
}

// access is a committed unit's write or (checked) read of a key, for the
// real-time check.
type access struct {
	u    *unit
	ts   Timestamp
	read bool
	w    window // a read's window; ts is zero when the unit's is unknown
}

// Check validates a history against the final MVCC state. It returns an
// error only for input it cannot interpret; everything else is a
// violation in the Report.
func Check(h History, d Dump) (*Report, error) {
	if err := validate(h, d); err != nil {
		return nil, err
	}
	c := &checker{
		versions: map[string][]*ver{}, putBy: map[string]*unit{}, overwrit: map[string]*unit{},
		holders: map[string][]*ver{}, reads: map[string][]access{},
	}
	for _, v := range d {
		if c.versions[v.Key] == nil {
			c.keys = append(c.keys, v.Key)
		}
		c.versions[v.Key] = append(c.versions[v.Key], &ver{Version: v})
	}
	sort.Strings(c.keys)
	for _, vs := range c.versions {
		sort.Slice(vs, func(i, j int) bool { return vs[i].Timestamp.Less(vs[j].Timestamp) })
	}
	for i := range h {
		c.addUnits(&h[i])
	}
	c.checkValues(h)
	c.checkWrites()
	for _, k := range c.keys {
		for _, v := range c.versions[k] {
			if v.Intent {
				c.intentViolation(v)
			}
		}
	}
	for _, u := range c.units {
		if u.committed {
			c.checkReads(u)
			if u.step < 0 && !u.op.ReadTS.IsZero() && u.op.CommitTS.Less(u.op.ReadTS) && !u.op.CommitTS.IsZero() {
				c.add(ReadAfterCommit, []*unit{u}, u.keys(), []Timestamp{u.op.ReadTS, u.op.CommitTS},
					"%s reads at %s, above its commit timestamp %s", u.name(), u.op.ReadTS, u.op.CommitTS)
			}
		}
	}
	c.checkRealTime()
	c.rep.Add()
	return &c.rep, nil
}

// add records a violation naming units' ops (nil entries are skipped).
func (c *checker) add(class Class, us []*unit, keys []string, ts []Timestamp, format string, args ...any) {
	if c.quiet {
		return
	}
	v := Violation{Class: class, Keys: keys, Timestamps: ts, Reason: fmt.Sprintf(format, args...)}
	seen := map[int]bool{}
	for _, u := range us {
		if u != nil && !seen[u.op.ID] {
			seen[u.op.ID] = true
			v.Ops = append(v.Ops, u.op.ID)
		}
	}
	c.rep.Violations = append(c.rep.Violations, v)
}

// addUnits splits op into units and computes their final writes.
func (c *checker) addUnits(op *Op) {
	if op.Kind == KindBatch {
		for j, s := range op.Steps {
			c.units = append(c.units, c.newUnit(op, j, op.Steps[j:j+1], s.Timestamp))
		}
		return
	}
	ts := op.ReadTS
	for _, s := range op.Steps {
		if s.writes() || ts.IsZero() {
			ts = op.CommitTS
		}
	}
	c.units = append(c.units, c.newUnit(op, -1, op.Steps, ts))
}

func (c *checker) newUnit(op *Op, step int, steps []Step, ts Timestamp) *unit {
	u := &unit{op: op, step: step, first: max(step, 0), steps: steps, ts: ts}
	last := map[string]write{}
	for _, s := range steps {
		if !s.writes() {
			continue
		}
		if prev, ok := last[s.Key]; ok && !prev.del {
			c.overwrit[prev.value] = u
		}
		last[s.Key] = write{key: s.Key, value: s.Value, del: s.Kind == StepDelete}
	}
	for _, w := range last {
		u.writes = append(u.writes, w)
	}
	sort.Slice(u.writes, func(i, j int) bool { return u.writes[i].key < u.writes[j].key })
	for _, w := range u.writes {
		if c.putBy[w.value] == nil && !w.del {
			c.putBy[w.value] = u // the first writer of a duplicated value
		}
	}
	return u
}

// committed reports whether v is committed data: not an intent, or the
// intent of an OK op (its leftover intent is reported on its own).
func committed(v *ver) bool {
	return !v.Intent || (v.writer != nil && v.writer.op.Outcome == OK)
}

// checkValues: (1) unique values in the history and in the dump; every
// valued version is attributed to its writer, or is an orphan (3) or an
// overwritten value (2).
func (c *checker) checkValues(h History) {
	first := map[string]*Op{}
	for i := range h {
		for _, s := range h[i].Steps {
			if s.Kind != StepPut {
				continue
			}
			if prev, ok := first[s.Value]; ok {
				v := Violation{Class: DuplicateValue, Ops: []int{prev.ID}, Keys: []string{s.Key},
					Reason: fmt.Sprintf("value %q is written twice, by op %d and op %d", s.Value, prev.ID, h[i].ID)}
				if prev.ID != h[i].ID {
					v.Ops = append(v.Ops, h[i].ID)
				}
				c.rep.Violations = append(c.rep.Violations, v)
				continue
			}
			first[s.Value] = &h[i]
		}
	}
	for _, k := range c.keys {
		for _, v := range c.versions[k] {
			if v.Deleted {
				continue
			}
			ts := []Timestamp{v.Timestamp}
			u := c.putBy[v.Value]
			switch {
			case u == nil && c.overwrit[v.Value] != nil:
				c.add(IntermediateVisible, []*unit{c.overwrit[v.Value]}, []string{k}, ts,
					"%s=%s@%s holds a value %s overwrote before committing", k, v.Value, v.Timestamp, c.overwrit[v.Value].name())
			case u == nil:
				c.add(OrphanVersion, nil, []string{k}, ts, "%s=%s@%s: no op wrote this value", k, v.Value, v.Timestamp)
			case u.keyOf(v.Value) != k:
				c.add(OrphanVersion, []*unit{u}, []string{k}, ts,
					"%s=%s@%s: %s wrote this value to key %s", k, v.Value, v.Timestamp, u.name(), u.keyOf(v.Value))
			default:
				if prev := c.holders[v.Value]; len(prev) > 0 {
					c.add(DuplicateVersion, []*unit{u}, []string{k}, []Timestamp{prev[0].Timestamp, v.Timestamp},
						"value %s of %s is in two versions, %s@%s and %s@%s: applied twice",
						v.Value, u.name(), k, prev[0].Timestamp, k, v.Timestamp)
				}
				v.writer = u
				c.holders[v.Value] = append(c.holders[v.Value], v)
			}
		}
	}
}

// keys are the keys u writes or reads, ascending.
func (u *unit) keys() []string {
	var out []string
	for _, s := range u.steps {
		if !slices.Contains(out, s.Key) {
			out = append(out, s.Key)
		}
	}
	slices.Sort(out)
	return out
}

func (u *unit) keyOf(value string) string {
	for _, w := range u.writes {
		if !w.del && w.value == value {
			return w.key
		}
	}
	return ""
}

// checkWrites: (2) each unit's writes against the dump, inferring the
// outcome of AMBIGUOUS ones, and (3) tombstones no op explains.
func (c *checker) checkWrites() {
	writers := func(f func(u *unit) bool) {
		for _, u := range c.units {
			if len(u.writes) > 0 && u.op.Outcome != Failed && f(u) {
				c.attributeTombstones(u)
			}
		}
	}
	// Units whose timestamp is known, then AMBIGUOUS ones whose present
	// values give it, then AMBIGUOUS delete-only ones (from the tombstones
	// left over).
	writers(func(u *unit) bool { return !u.ts.IsZero() })
	writers(func(u *unit) bool { return u.ts.IsZero() && c.inferFromValues(u) })
	c.inferDeletes()
	for _, u := range c.units {
		if len(u.writes) > 0 {
			c.checkUnitWrites(u)
		} else {
			u.committed = u.op.Outcome == OK // an AMBIGUOUS read's values are not checked
		}
	}
	for _, k := range c.keys {
		for _, v := range c.versions[k] {
			if v.Deleted && v.writer == nil {
				c.add(OrphanVersion, nil, []string{k}, []Timestamp{v.Timestamp},
					"tombstone %s@%s: no op deleted %s at this timestamp", k, v.Timestamp, k)
			}
		}
	}
}

func (c *checker) attributeTombstones(u *unit) {
	for _, w := range u.writes {
		if v := c.versionAt(w.key, u.ts); w.del && v != nil && v.Deleted && v.writer == nil {
			v.writer = u
		}
	}
}

func (c *checker) versionAt(key string, ts Timestamp) *ver {
	for _, v := range c.versions[key] {
		if v.Timestamp == ts {
			return v
		}
	}
	return nil
}

// inferFromValues sets an AMBIGUOUS unit's timestamp from the committed
// versions holding its values (reporting them if they disagree).
func (c *checker) inferFromValues(u *unit) bool {
	var ts []Timestamp
	var keys []string
	for _, w := range u.writes {
		for _, v := range c.holders[w.value] {
			if !w.del && !v.Intent && v.writer == u {
				ts, keys = append(ts, v.Timestamp), append(keys, w.key)
			}
		}
	}
	if len(ts) == 0 {
		return false
	}
	u.ts, u.inferred = ts[0], true
	for _, t := range ts[1:] {
		if t != ts[0] {
			c.add(WriteTimestamp, []*unit{u}, keys, ts, "the writes of %s (AMBIGUOUS) are at different timestamps", u.name())
			break
		}
	}
	return true
}

// inferDeletes gives AMBIGUOUS units that only delete (and whose
// timestamp is unknown) the timestamps of the tombstones left unexplained:
// at each such timestamp, ascending, the unit explaining the most of them
// for which every key it deletes has one there or had no live value
// (deleting it wrote nothing), and which would break neither real-time
// order nor its own reads. Tombstones carry no value, so when several such
// units delete one key this is a plausible explanation, not necessarily
// the true one.
func (c *checker) inferDeletes() {
	free := func(v *ver) bool { return v != nil && v.writer == nil && v.Deleted && !v.Intent }
	var pending []*unit
	for _, u := range c.units {
		if u.op.Outcome == Ambiguous && u.ts.IsZero() && len(u.writes) > 0 &&
			!slices.ContainsFunc(u.writes, func(w write) bool { return !w.del }) {
			pending = append(pending, u)
		}
	}
	var times []Timestamp
	for _, k := range c.keys {
		for _, v := range c.versions[k] {
			if free(v) {
				times = append(times, v.Timestamp)
			}
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Less(times[j]) })
	for _, t := range slices.Compact(times) {
		for {
			var best *unit
			most := 0
			for _, u := range pending {
				n, ok := 0, u.ts.IsZero() && !t.Less(u.op.ReadTS)
				for _, w := range u.writes {
					v := c.versionAt(w.key, t)
					if free(v) {
						n++
					} else if v != nil || c.liveBelow(w.key, t) {
						ok = false
					}
				}
				if ok && n > most && c.plausible(u, t) {
					best, most = u, n
				}
			}
			if best == nil {
				break
			}
			best.ts, best.inferred = t, true
			c.attributeTombstones(best)
		}
	}
}

// plausible reports whether u, committed at t, follows every OK write of
// its keys that completed before it began, and its reads agree at t.
func (c *checker) plausible(u *unit, t Timestamp) bool {
	for _, o := range c.units {
		if o.op.Outcome == OK && o.op.Complete < u.op.Invoke && !o.ts.Less(t) && slices.ContainsFunc(o.writes, func(ow write) bool {
			return slices.ContainsFunc(u.writes, func(uw write) bool { return uw.key == ow.key })
		}) {
			return false
		}
	}
	var mine []*ver
	for _, w := range u.writes {
		if v := c.versionAt(w.key, t); v != nil && v.writer == nil {
			v.writer = u
			mine = append(mine, v)
		}
	}
	c.quiet = true
	all := c.readObs(u)
	c.quiet = false
	for _, v := range mine {
		v.writer = nil
	}
	return len(all) == 0 || common(all).contains(t)
}

func (c *checker) checkUnitWrites(u *unit) {
	var present, missing []string
	for _, w := range u.writes {
		found := false
		if w.del {
			v := c.versionAt(w.key, u.ts)
			found = v != nil && v.writer == u && (u.op.Outcome == OK || !v.Intent)
			if !found && !u.ts.IsZero() && !c.liveBelow(w.key, u.ts) {
				continue // deleting an absent key writes nothing
			}
		}
		var at []Timestamp
		for _, v := range c.holders[w.value] {
			if w.del || v.writer != u || (v.Intent && u.op.Outcome != OK) {
				continue
			}
			found = true
			at = append(at, v.Timestamp)
			if u.op.Outcome == Failed {
				c.add(FailedWriteVisible, []*unit{u}, []string{w.key}, []Timestamp{v.Timestamp},
					"%s FAILED, but its write %s=%s is present at %s", u.name(), w.key, w.value, v.Timestamp)
			}
		}
		// A write applied twice is a duplicate version, reported already.
		if len(at) > 0 && u.op.Outcome != Failed && !u.inferred && !slices.Contains(at, u.ts) {
			c.add(WriteTimestamp, []*unit{u}, []string{w.key}, []Timestamp{at[0], u.ts},
				"%s wrote %s=%s at %s, not at its commit timestamp %s", u.name(), w.key, w.value, at[0], u.ts)
		}
		if found {
			present = append(present, w.key)
		} else {
			missing = append(missing, w.key)
		}
	}
	switch u.op.Outcome {
	case OK:
		u.committed = true
	case Ambiguous:
		u.committed = len(present) > 0
		c.rep.Inferred = append(c.rep.Inferred, Inference{Op: u.op.ID, Step: u.step, Committed: u.committed, TS: u.ts})
	default:
		return
	}
	switch {
	case len(missing) > 0 && len(present) > 0:
		c.add(PartialCommit, []*unit{u}, append(present, missing...), []Timestamp{u.ts},
			"%s (%s) committed %s at %s but not %s", u.name(), u.op.Outcome, strings.Join(present, ","), u.ts, strings.Join(missing, ","))
	case len(missing) > 0 && u.op.Outcome == OK:
		c.add(LostWrite, []*unit{u}, missing, []Timestamp{u.ts},
			"%s (OK at %s): no version holds its write of %s", u.name(), u.ts, strings.Join(missing, ","))
	}
}

// liveBelow reports whether key's latest committed version below ts is a
// value.
func (c *checker) liveBelow(key string, ts Timestamp) bool {
	live := false
	for _, v := range c.versions[key] {
		if v.Timestamp.Less(ts) && committed(v) {
			live = !v.Deleted
		}
	}
	return live
}

func (c *checker) intentViolation(v *ver) {
	who := "no op wrote it"
	if v.writer != nil {
		who = fmt.Sprintf("written by %s (%s)", v.writer.name(), v.writer.op.Outcome)
	}
	c.add(LeftoverIntent, []*unit{v.writer}, []string{v.Key}, []Timestamp{v.Timestamp},
		"%s@%s is still an unresolved intent, %s", v.Key, v.Timestamp, who)
}
