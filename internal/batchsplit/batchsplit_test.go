package batchsplit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

// rng is one range of a table: [start, end), end nil for the last.
type rng struct {
	id         uint64
	start, end []byte
}

// table is an in-memory range table (ranges sorted by start, tiling the
// keyspace from ""), with batcheval's spans and clips: the router's
// Keyspace minus its lookups over the network.
type table struct {
	ranges []rng
}

// newTable makes ranges r1, r2, … split at the given keys.
func newTable(splits ...string) *table {
	t := &table{}
	var start []byte
	for i, s := range splits {
		t.ranges = append(t.ranges, rng{id: uint64(i + 1), start: start, end: []byte(s)})
		start = []byte(s)
	}
	t.ranges = append(t.ranges, rng{id: uint64(len(splits) + 1), start: start})
	return t
}

func (t *table) Locate(_ context.Context, key []byte) (rng, error) {
	for _, r := range t.ranges {
		if bytes.Compare(r.start, key) <= 0 && (r.end == nil || bytes.Compare(key, r.end) < 0) {
			return r, nil
		}
	}
	return rng{}, fmt.Errorf("no range holds %q", key)
}

func (*table) RangeID(r rng) uint64  { return r.id }
func (*table) RangeEnd(r rng) []byte { return r.end }
func (*table) Span(q *rspb.RequestUnion) (start, end []byte, point bool) {
	c, err := batcheval.Lookup(q)
	if err != nil {
		return nil, nil, true
	}
	sp := c.Span(q)
	return sp.Key, sp.EndKey, sp.Point
}
func (*table) Clip(q *rspb.RequestUnion, start, end []byte) *rspb.RequestUnion {
	c, err := batcheval.Lookup(q)
	if err != nil {
		return q
	}
	return c.Clip(q, start, end)
}

func get(k string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte(k)}}}
}

func put(k string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte(k), Value: []byte("v")}}}
}

func scan(s, e string) *rspb.RequestUnion {
	var end []byte
	if e != "" {
		end = []byte(e)
	}
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: []byte(s), EndKey: end, Limit: 7, Reverse: true}}}
}

func delRange(s, e string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeRequest{StartKey: []byte(s), EndKey: []byte(e)}}}
}

// describe renders a part as "r<id>:<request>", a span request by its
// clipped bounds ("[s,e)", "" end: open).
func describe(r rng, p Piece) string {
	switch v := p.Req.GetValue().(type) {
	case *rspb.RequestUnion_Get:
		return fmt.Sprintf("r%d:get %s", r.id, v.Get.Key)
	case *rspb.RequestUnion_Put:
		return fmt.Sprintf("r%d:put %s", r.id, v.Put.Key)
	case *rspb.RequestUnion_Scan:
		return fmt.Sprintf("r%d:scan[%s,%s)", r.id, v.Scan.StartKey, v.Scan.EndKey)
	case *rspb.RequestUnion_DeleteRange:
		return fmt.Sprintf("r%d:delrange[%s,%s)", r.id, v.DeleteRange.StartKey, v.DeleteRange.EndKey)
	}
	return fmt.Sprintf("r%d:%T", r.id, p.Req.GetValue())
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    *rspb.RequestUnion
		want []string
	}{
		{"point in the first range", get("a"), []string{"r1:get a"}},
		{"point at a range start", put("d"), []string{"r3:put d"}},
		{"point in the last range", get("zz"), []string{"r3:get zz"}},
		{"span in one range", scan("b", "c"), []string{"r2:scan[b,c)"}},
		{"span exactly one range", scan("b", "d"), []string{"r2:scan[b,d)"}},
		{"span across three ranges", scan("a", "e"), []string{"r1:scan[a,b)", "r2:scan[b,d)", "r3:scan[d,e)"}},
		{"open span to the end", scan("c", ""), []string{"r2:scan[c,d)", "r3:scan[d,)"}},
		{"whole keyspace", scan("", ""), []string{"r1:scan[,b)", "r2:scan[b,d)", "r3:scan[d,)"}},
		{"delete range across a bound", delRange("a", "c"), []string{"r1:delrange[a,b)", "r2:delrange[b,c)"}},
		{"empty span", scan("c", "c"), nil},
		{"backwards span", delRange("c", "a"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := newTable("b", "d")
			parts, err := Split(context.Background(), tab, Piece{Index: 4, Req: tc.q})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range parts {
				if p.Piece.Index != 4 {
					t.Errorf("part %s has index %d, want the piece's 4", describe(p.Range, p.Piece), p.Piece.Index)
				}
				got = append(got, describe(p.Range, p.Piece))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("parts %q, want %q", got, tc.want)
			}
			if _, _, point := tab.Span(tc.q); point && parts[0].Piece.Req != tc.q {
				t.Errorf("a point request was replaced: %v", parts[0].Piece.Req)
			}
			if sc := tc.q.GetScan(); sc != nil {
				for _, p := range parts {
					c := p.Piece.Req.GetScan()
					if c.Limit != sc.Limit || c.Reverse != sc.Reverse {
						t.Errorf("part %s lost the scan's limit or direction: %v", describe(p.Range, p.Piece), c)
					}
				}
			}
		})
	}
}

// badTable locates every key in a range that ends at or before it.
type badTable struct{ table }

func (b *badTable) Locate(_ context.Context, key []byte) (rng, error) {
	return rng{id: 9, start: nil, end: key}, nil
}

func TestSplitErrors(t *testing.T) {
	ctx := context.Background()
	_, err := Split[rng](ctx, &badTable{}, Piece{Req: scan("a", "z")})
	if err == nil || !strings.Contains(err.Error(), "range r9") || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("a range table that does not move on: error %v, want one naming r9 and key \"a\"", err)
	}
	boom := errors.New("lookup failed")
	tab := &failingTable{table: *newTable("b"), failAt: "b", err: boom}
	if _, err := Split[rng](ctx, tab, Piece{Req: scan("a", "c")}); !errors.Is(err, boom) {
		t.Fatalf("a failed lookup in the walk: error %v, want %v", err, boom)
	}
	if _, err := GroupByRange[rng](ctx, tab, Pieces([]*rspb.RequestUnion{get("a"), get("b")})); !errors.Is(err, boom) {
		t.Fatalf("a failed lookup while grouping: error %v, want %v", err, boom)
	}
}

type failingTable struct {
	table
	failAt string
	err    error
}

func (f *failingTable) Locate(ctx context.Context, key []byte) (rng, error) {
	if string(key) == f.failAt {
		return rng{}, f.err
	}
	return f.table.Locate(ctx, key)
}

// TestSplitTiles splits random spans over random range tables: the parts
// tile the span in key order, one per range, each within its range.
func TestSplitTiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	key := func() string { return string(rune('a' + r.IntN(26))) }
	for i := range 500 {
		var splits []string
		for range r.IntN(6) {
			splits = append(splits, key())
		}
		slices.Sort(splits)
		splits = slices.Compact(splits)
		tab := newTable(splits...)
		s, e := key(), key()
		if r.IntN(5) == 0 {
			e = "" // open
		}
		parts, err := Split(context.Background(), tab, Piece{Req: scan(s, e)})
		if err != nil {
			t.Fatal(err)
		}
		if e != "" && s >= e {
			if len(parts) != 0 {
				t.Fatalf("case %d: empty span [%s,%s) gave %d parts", i, s, e, len(parts))
			}
			continue
		}
		cur := []byte(s)
		for j, p := range parts {
			sc := p.Piece.Req.GetScan()
			if !bytes.Equal(sc.StartKey, cur) {
				t.Fatalf("case %d (splits %q, span [%s,%s)): part %d starts at %q, want %q", i, splits, s, e, j, sc.StartKey, cur)
			}
			if bytes.Compare(sc.StartKey, p.Range.start) < 0 || p.Range.end != nil && (sc.EndKey == nil || bytes.Compare(sc.EndKey, p.Range.end) > 0) {
				t.Fatalf("case %d: part %d [%q,%q) is outside r%d [%q,%q)", i, j, sc.StartKey, sc.EndKey, p.Range.id, p.Range.start, p.Range.end)
			}
			if j > 0 && p.Range.id == parts[j-1].Range.id {
				t.Fatalf("case %d: two parts in r%d", i, p.Range.id)
			}
			cur = sc.EndKey
		}
		if want := []byte(e); e == "" && cur != nil || e != "" && !bytes.Equal(cur, want) {
			t.Fatalf("case %d (splits %q, span [%s,%s)): parts end at %q", i, splits, s, e, cur)
		}
	}
}

func TestGroupByRange(t *testing.T) {
	tab := newTable("b", "d")
	reqs := []*rspb.RequestUnion{put("c"), get("a"), scan("a", "e"), put("bb"), get("x")}
	groups, err := GroupByRange(context.Background(), tab, Pieces(reqs))
	if err != nil {
		t.Fatal(err)
	}
	// Groups in the order their ranges are first met (c: r2, a: r1, then
	// the scan's r3), pieces in batch order within each.
	want := []string{
		"r2: 0=r2:put c 2=r2:scan[b,d) 3=r2:put bb",
		"r1: 1=r1:get a 2=r1:scan[a,b)",
		"r3: 2=r3:scan[d,e) 4=r3:get x",
	}
	var got []string
	for _, g := range groups {
		if g.RangeID != g.Range.id {
			t.Errorf("group RangeID %d, range r%d", g.RangeID, g.Range.id)
		}
		line := fmt.Sprintf("r%d:", g.RangeID)
		for _, p := range g.Pieces {
			line += fmt.Sprintf(" %d=%s", p.Index, describe(g.Range, p))
		}
		got = append(got, line)
		if rs := Requests(g.Pieces); len(rs) != len(g.Pieces) || rs[0] != g.Pieces[0].Req {
			t.Errorf("Requests of r%d: %d requests for %d pieces", g.RangeID, len(rs), len(g.Pieces))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("groups\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i, p := range Pieces(reqs) {
		if p.Index != i || p.Req != reqs[i] {
			t.Fatalf("Pieces[%d] = %d %v", i, p.Index, p.Req)
		}
	}
}

func TestReuse(t *testing.T) {
	one := []*Group[rng]{{RangeID: 5}}
	two := []*Group[rng]{{RangeID: 5}, {RangeID: 6}}
	for _, tc := range []struct {
		name      string
		prev      *Write
		groups    []*Group[rng]
		reuse     bool
		ambiguous string
	}{
		{"first send", nil, one, false, ""},
		{"first send, several ranges", nil, two, false, ""},
		{"nothing applied, one range", &Write{Holders: []uint64{4}}, one, true, ""},
		{"nothing applied, several ranges: new identities", &Write{Holders: []uint64{4}}, two, false, ""},
		{"may have applied, range holds the record", &Write{Ambiguous: true, Holders: []uint64{4, 5}}, one, true, ""},
		{"may have applied, another range", &Write{Ambiguous: true, Holders: []uint64{4}}, one, false, "its keys are now in r5, which does not hold its record"},
		{"may have applied, several ranges", &Write{Ambiguous: true, Holders: []uint64{5}}, two, false, "its keys are now in 2 ranges"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reuse, why := Reuse(tc.prev, tc.groups)
			if (reuse != nil) != tc.reuse || reuse != nil && reuse != tc.prev {
				t.Errorf("reuse %v, want reuse=%v of %v", reuse, tc.reuse, tc.prev)
			}
			if why != tc.ambiguous {
				t.Errorf("ambiguous %q, want %q", why, tc.ambiguous)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	var none *Write // a read: records nothing, and does not panic
	none.MayHaveApplied()
	none.HeldBy(3)

	now := time.Unix(100, 0)
	ts := &rspb.Timestamp{WallTime: 42}
	w := NewWrite(ts, now)
	if len(w.ID) != ProposalIDLen || w.Timestamp != ts || !w.Created.Equal(now) || w.Ambiguous {
		t.Fatalf("NewWrite: %+v", w)
	}
	first := slices.Clone(w.ID)
	w.Renew(nil, now.Add(time.Second))
	if bytes.Equal(first, w.ID) || w.Timestamp != nil || !w.Created.Equal(now.Add(time.Second)) {
		t.Fatalf("Renew kept the identity: %+v (first ID %x)", w, first)
	}

	w.HeldBy(3)
	w.HeldBy(0)
	w.HeldBy(3)
	if !slices.Equal(w.Holders, []uint64{3}) {
		t.Fatalf("holders %v, want [3] (no duplicates, no 0)", w.Holders)
	}
	if w.SubsumerKnown(3) {
		t.Fatal("SubsumerKnown(3) with only r3 holding the record")
	}
	w.HeldBy(8)
	if !w.SubsumerKnown(3) || !w.SubsumerKnown(8) {
		t.Fatalf("SubsumerKnown false with holders %v", w.Holders)
	}
	w.MayHaveApplied()
	if !w.Ambiguous {
		t.Fatal("MayHaveApplied did not mark the write")
	}
}

func TestSend(t *testing.T) {
	groups := []*Group[rng]{
		{RangeID: 1, Pieces: []Piece{{Index: 0}, {Index: 2}}},
		{RangeID: 2, Pieces: []Piece{{Index: 2}, {Index: 1}}},
		{RangeID: 3, Pieces: []Piece{{Index: 2}}},
	}
	// Every send waits until all have started: Send must run them at
	// once (or the barrier's deadline fails the test).
	var started atomic.Int32
	all := make(chan struct{})
	answer := func(g *Group[rng]) (map[int][]string, error) {
		if started.Add(1) == int32(len(groups)) {
			close(all)
		}
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("r%d: the other groups were not sent in parallel", g.RangeID)
		}
		out := map[int][]string{}
		for _, p := range g.Pieces {
			out[p.Index] = append(out[p.Index], fmt.Sprintf("r%d", g.RangeID))
		}
		return out, nil
	}
	got, err := Send(groups, answer)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]string{0: {"r1"}, 1: {"r2"}, 2: {"r1", "r2", "r3"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("collected %v, want %v (group order)", got, want)
	}

	// Errors: the first group's in group order, after every group
	// returned (r1 returns last, and its error wins over r2's).
	var done atomic.Int32
	others := make(chan struct{}, len(groups))
	lastFirst := func(g *Group[rng]) (map[int][]string, error) {
		defer done.Add(1)
		switch g.RangeID {
		case 1:
			for range len(groups) - 1 {
				select {
				case <-others:
				case <-time.After(10 * time.Second):
					return nil, errors.New("the other groups did not return")
				}
			}
			return nil, errors.New("r1 failed")
		case 3:
			defer func() { others <- struct{}{} }()
			return map[int][]string{}, nil
		}
		defer func() { others <- struct{}{} }()
		return nil, fmt.Errorf("r%d failed", g.RangeID)
	}
	_, err = Send(groups, lastFirst)
	if err == nil || err.Error() != "r1 failed" {
		t.Fatalf("error %v, want r1's", err)
	}
	if n := done.Load(); n != int32(len(groups)) {
		t.Fatalf("Send returned with %d of %d groups done", n, len(groups))
	}

	// One group: sent once; none: nothing sent, nothing collected.
	calls := 0
	got, err = Send(groups[:1], func(g *Group[rng]) (map[int][]string, error) {
		calls++
		return map[int][]string{0: {"only"}}, nil
	})
	if err != nil || calls != 1 || fmt.Sprint(got) != "map[0:[only]]" {
		t.Fatalf("one group: %v, %v after %d calls", got, err, calls)
	}
	got, err = Send([]*Group[rng]{}, answer)
	if err != nil || len(got) != 0 {
		t.Fatalf("no groups: %v, %v", got, err)
	}
}

func TestSortByStart(t *testing.T) {
	type part struct{ start, name string }
	parts := []part{{"c", "c1"}, {"a", "a1"}, {"", "open"}, {"c", "c2"}, {"b", "b1"}, {"a", "a2"}}
	SortByStart(parts, func(p part) []byte { return []byte(p.start) })
	var got []string
	for _, p := range parts {
		got = append(got, p.name)
	}
	if want := []string{"open", "a1", "a2", "b1", "c1", "c2"}; !slices.Equal(got, want) {
		t.Fatalf("order %q, want %q (by key, equal keys as given)", got, want)
	}
}
