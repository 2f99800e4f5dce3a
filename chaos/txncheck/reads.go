package txncheck

import (
	"fmt"
	"sort"
	"strings"
)

// obs is one read of a key explained by the dump.
type obs struct {
	key   string
	found bool
	value string
	w     window
}

func (o obs) String() string { return describe(o.key, o.found, o.value) }

func describe(key string, found bool, value string) string {
	if found {
		return key + "=" + value
	}
	return key + " absent"
}

// checkReads: (4) every read of a committed unit is explained by the
// committed versions (its own versions left out), overlaid with the
// unit's earlier writes; all of them at one timestamp, the unit's if known.
func (c *checker) checkReads(u *unit) {
	all := c.readObs(u)
	if len(all) == 0 {
		return
	}
	inter := common(all)
	if len(inter) == 0 {
		c.readSkew(u, all)
		return
	}
	if !u.ts.IsZero() && !inter.contains(u.ts) {
		for _, o := range all {
			if !o.w.contains(u.ts) {
				latest, lw := c.latestAt(u, o.key, u.ts)
				c.add(ReadTimestamp, []*unit{u, c.putBy[o.value], lw}, []string{o.key}, []Timestamp{u.ts},
					"%s at %s read %s (current at %s), but at %s %s", u.name(), u.ts, o, o.w, u.ts, latest)
			}
		}
		return
	}
	for _, o := range all {
		c.reads[o.key] = append(c.reads[o.key], access{u: u, ts: u.ts, read: true, w: o.w})
	}
}

// common is the timestamps at which all the reads held.
func common(all []obs) window {
	inter := window{{Timestamp{}, maxTS}}
	for _, o := range all {
		inter = intersect(inter, o.w)
	}
	return inter
}

// readObs returns the unit's reads the dump explains, reporting those
// that are wrong in themselves (unless c.quiet).
func (c *checker) readObs(u *unit) []obs {
	own := map[string]write{}
	var all []obs
	for i, s := range u.steps {
		idx := u.first + i
		switch s.Kind {
		case StepPut, StepDelete:
			own[s.Key] = write{key: s.Key, value: s.Value, del: s.Kind == StepDelete}
		case StepGet:
			all = c.observe(u, idx, s.Key, s.Found, s.Value, own, all)
		case StepScan:
			rows, prev := map[string]string{}, ""
			keys := map[string]bool{}
			for _, r := range s.Rows {
				if r.Key < s.Key || r.Key >= s.EndKey || (prev != "" && r.Key <= prev) {
					c.add(UnexplainedRead, []*unit{u}, []string{r.Key}, nonZero(u.ts),
						"%s step %d: scan [%s, %s) returned %s out of its span or order", u.name(), idx, s.Key, s.EndKey, r.Key)
					continue
				}
				rows[r.Key], prev, keys[r.Key] = r.Value, r.Key, true
			}
			for i := sort.SearchStrings(c.keys, s.Key); i < len(c.keys) && c.keys[i] < s.EndKey; i++ {
				keys[c.keys[i]] = true
			}
			for k := range own {
				keys[k] = keys[k] || (k >= s.Key && k < s.EndKey)
			}
			var sorted []string
			for k, in := range keys {
				if in {
					sorted = append(sorted, k)
				}
			}
			sort.Strings(sorted)
			for _, k := range sorted {
				v, ok := rows[k]
				all = c.observe(u, idx, k, ok, v, own, all)
			}
		}
	}
	return all
}

// observe checks one read of key against the unit's own earlier writes or
// the dump, appending it to all if the dump explains it.
func (c *checker) observe(u *unit, step int, key string, found bool, value string, own map[string]write, all []obs) []obs {
	got := describe(key, found, value)
	if w, ok := own[key]; ok {
		if found == w.del || (found && value != w.value) {
			c.add(ReadYourWrites, []*unit{u}, []string{key}, nonZero(u.ts), "%s step %d read %s after writing %s",
				u.name(), step, got, describe(key, !w.del, w.value))
		}
		return all
	}
	w := c.window(u, key, found, value)
	if len(w) > 0 {
		return append(all, obs{key: key, found: found, value: value, w: w})
	}
	// Only a value can have an empty window: absence holds below the first version.
	writer := c.putBy[value]
	class, why := UnexplainedRead, ""
	switch {
	case writer == nil && c.overwrit[value] != nil:
		writer, class = c.overwrit[value], DirtyRead
		why = fmt.Sprintf("a value %s overwrote before committing (G1b)", writer.name())
	case writer == nil:
		why = "which no op wrote"
	case writer.op == u.op:
		why = "its own write, before it was written"
	case writer.keyOf(value) != key:
		why = fmt.Sprintf("which %s wrote to key %s", writer.name(), writer.keyOf(value))
	case !writer.committed:
		class = DirtyRead
		why = fmt.Sprintf("written by %s (%s), which did not commit (G1a)", writer.name(), writer.op.Outcome)
	case len(c.holders[value]) > 0:
		class = DirtyRead
		why = fmt.Sprintf("held only by an unresolved intent of %s", writer.name())
	default:
		why = fmt.Sprintf("written by %s, but no committed version holds it", writer.name())
	}
	c.add(class, []*unit{u, writer}, []string{key}, nonZero(u.ts), "%s step %d read %s, %s", u.name(), step, got, why)
	return all
}

// window is when key's committed versions, without the unit's op's own,
// showed what the read saw.
func (c *checker) window(u *unit, key string, found bool, value string) window {
	var vs []*ver
	for _, v := range c.versions[key] {
		if committed(v) && (v.writer == nil || v.writer.op != u.op) {
			vs = append(vs, v)
		}
	}
	var w window
	if !found {
		first := maxTS
		if len(vs) > 0 {
			first = vs[0].Timestamp
		}
		w = append(w, span{Timestamp{}, first})
	}
	for i, v := range vs {
		hi := maxTS
		if i+1 < len(vs) {
			hi = vs[i+1].Timestamp
		}
		if (found && !v.Deleted && v.Value == value) || (!found && v.Deleted) {
			w = append(w, span{v.Timestamp, hi})
		}
	}
	return w
}

// latestAt describes key's latest committed version at or below ts (the
// unit's op's own left out) and returns its writer.
func (c *checker) latestAt(u *unit, key string, ts Timestamp) (string, *unit) {
	var last *ver
	for _, v := range c.versions[key] {
		if committed(v) && !ts.Less(v.Timestamp) && (v.writer == nil || v.writer.op != u.op) {
			last = v
		}
	}
	switch {
	case last == nil:
		return key + " had no version", nil
	case last.Deleted:
		return fmt.Sprintf("%s was deleted at %s", key, last.Timestamp), last.writer
	}
	who := "no op"
	if last.writer != nil {
		who = last.writer.name()
	}
	return fmt.Sprintf("%s=%s (written at %s by %s)", key, last.Value, last.Timestamp, who), last.writer
}

// readSkew reports the first two reads of u that no one timestamp
// explains (or all of them if every pair agrees).
func (c *checker) readSkew(u *unit, all []obs) {
	pick := all
pair:
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if len(intersect(all[i].w, all[j].w)) == 0 {
				pick = []obs{all[i], all[j]}
				break pair
			}
		}
	}
	us := []*unit{u}
	var keys, parts []string
	for _, o := range pick {
		us = append(us, c.putBy[o.value])
		keys = append(keys, o.key)
		parts = append(parts, fmt.Sprintf("%s (current at %s)", o, o.w))
	}
	c.add(ReadSkew, us, keys, nonZero(u.ts), "%s read %s: no one timestamp explains them", u.name(), strings.Join(parts, " and "))
}

// floor is the lowest timestamp an op that begins after a's op completed
// may observe the key at: a write's timestamp, or the timestamp of the
// version a read saw (zero if it saw the key's initial absence).
func (a access) floor() Timestamp {
	if !a.read {
		return a.ts
	}
	for _, s := range a.w {
		if a.ts.IsZero() || s.contains(a.ts) {
			return s.lo
		}
	}
	return Timestamp{}
}

// checkRealTime: (6) per key, what an OK op that completed before another
// op began wrote or saw is below that op's write and at or below the
// version it read; also no two ops write one key at one timestamp.
func (c *checker) checkRealTime() {
	byKey := map[string][]access{}
	set := map[string]bool{}
	for _, u := range c.units {
		for _, w := range u.writes {
			if u.committed && !u.ts.IsZero() {
				set[w.key] = true
				byKey[w.key] = append(byKey[w.key], access{u: u, ts: u.ts})
			}
		}
	}
	for k := range c.reads {
		set[k] = true
	}
	var keys []string
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ws := byKey[k]
		at := map[Timestamp]*unit{}
		var preds []access
		for _, a := range ws {
			if o := at[a.ts]; o != nil && o.op != a.u.op {
				c.add(WriteTimestamp, []*unit{o, a.u}, []string{k}, []Timestamp{a.ts},
					"%s and %s both write %s at %s", o.name(), a.u.name(), k, a.ts)
			}
			at[a.ts] = a.u
			if a.u.op.Outcome == OK {
				preds = append(preds, a)
			}
		}
		for _, a := range c.reads[k] {
			if a.u.op.Outcome == OK && !a.floor().IsZero() {
				preds = append(preds, a)
			}
		}
		succ := append(append([]access(nil), ws...), c.reads[k]...)
		sort.SliceStable(preds, func(i, j int) bool { return preds[i].u.op.Complete < preds[j].u.op.Complete })
		sort.SliceStable(succ, func(i, j int) bool { return succ[i].u.op.Invoke < succ[j].u.op.Invoke })
		var best *access
		p := 0
		for _, s := range succ {
			for ; p < len(preds) && preds[p].u.op.Complete < s.u.op.Invoke; p++ {
				if best == nil || best.floor().Less(preds[p].floor()) {
					best = &preds[p]
				}
			}
			if best == nil {
				continue
			}
			f := best.floor()
			var bad bool
			var what string
			switch {
			case !s.read:
				bad, what = !f.Less(s.ts), fmt.Sprintf("wrote %s at %s", k, s.ts)
			case !s.ts.IsZero():
				bad, what = s.ts.Less(f), fmt.Sprintf("read %s at %s", k, s.ts)
			default:
				bad, what = !s.w.reachesTo(f), fmt.Sprintf("read a state of %s current only at %s", k, s.w)
			}
			did := fmt.Sprintf("wrote %s at %s", k, f)
			if best.read {
				did = fmt.Sprintf("saw the version of %s at %s", k, f)
			}
			if bad {
				c.add(RealTime, []*unit{best.u, s.u}, []string{k}, append([]Timestamp{f}, nonZero(s.ts)...),
					"%s %s and completed before %s began, but %s %s", best.u.name(), did, s.u.name(), s.u.name(), what)
			}
		}
	}
}
