package gateway

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/rangestore/rangestore/proto/rspb"
)

func rcDesc(id uint64, start, end string, gen uint64) *rspb.RangeDescriptor {
	return &rspb.RangeDescriptor{RangeId: id, StartKey: []byte(start), EndKey: []byte(end), Generation: gen}
}

// rcString renders the cache as "r1[a,c)g1 r2[c,e)g1".
func rcString(c *rangeCache) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var parts []string
	for _, d := range c.descs {
		parts = append(parts, fmt.Sprintf("r%d[%s,%s)g%d", d.RangeId, d.StartKey, d.EndKey, d.Generation))
	}
	return strings.Join(parts, " ")
}

func rcNew(descs ...*rspb.RangeDescriptor) *rangeCache {
	c := &rangeCache{}
	for _, d := range descs {
		c.insert(d)
	}
	return c
}

func TestRangeCacheLookup(t *testing.T) {
	// A cache with a hole: [b,d) [d,f) then nothing until [m,p) [p,\xff\xff).
	c := rcNew(
		rcDesc(2, "d", "f", 1),
		rcDesc(1, "b", "d", 1),
		rcDesc(4, "p", "\xff\xff", 1),
		rcDesc(3, "m", "p", 1),
	)
	if got, want := rcString(c), "r1[b,d)g1 r2[d,f)g1 r3[m,p)g1 r4[p,\xff\xff)g1"; got != want {
		t.Fatalf("cache %q, want %q", got, want)
	}
	cases := []struct {
		key       string
		inclusive bool
		want      uint64 // 0 = miss
	}{
		// key inside [start, end)
		{"", false, 0},
		{"a", false, 0},
		{"b", false, 1},
		{"b\x00", false, 1},
		{"c", false, 1},
		{"czzz", false, 1},
		{"d", false, 2},
		{"e", false, 2},
		{"f", false, 0},
		{"g", false, 0},
		{"lzz", false, 0},
		{"m", false, 3},
		{"o", false, 3},
		{"p", false, 4},
		{"zzzz", false, 4},
		{"\xff\xfe", false, 4},
		{"\xff\xff", false, 0},
		{"\xff\xff\x00", false, 0},
		// inclusive end: start < key <= end
		{"", true, 0},
		{"a", true, 0},
		{"b", true, 0},
		{"b\x00", true, 1},
		{"c", true, 1},
		{"d", true, 1},
		{"d\x00", true, 2},
		{"e", true, 2},
		{"f", true, 2},
		{"f\x00", true, 0},
		{"g", true, 0},
		{"m", true, 0},
		{"m\x00", true, 3},
		{"p", true, 3},
		{"p\x00", true, 4},
		{"\xff\xff", true, 4},
		{"\xff\xff\x00", true, 0},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%q/inclusive=%v", tc.key, tc.inclusive), func(t *testing.T) {
			d := c.lookup([]byte(tc.key), tc.inclusive)
			var got uint64
			if d != nil {
				got = d.RangeId
			}
			if got != tc.want {
				t.Fatalf("lookup(%q, %v) = r%d, want r%d", tc.key, tc.inclusive, got, tc.want)
			}
		})
	}
	t.Run("empty cache", func(t *testing.T) {
		var empty rangeCache
		if d := empty.lookup([]byte("a"), false); d != nil {
			t.Fatalf("got %v", d)
		}
		if d := empty.lookup([]byte("a"), true); d != nil {
			t.Fatalf("got %v", d)
		}
	})
}

func TestRangeCacheInsert(t *testing.T) {
	base := func() []*rspb.RangeDescriptor {
		return []*rspb.RangeDescriptor{
			rcDesc(1, "a", "c", 1),
			rcDesc(2, "c", "e", 1),
			rcDesc(3, "e", "g", 1),
			rcDesc(5, "k", "m", 1),
		}
	}
	cases := []struct {
		name string
		ins  *rspb.RangeDescriptor
		want string
	}{
		{"into a hole", rcDesc(4, "g", "k", 1), "r1[a,c)g1 r2[c,e)g1 r3[e,g)g1 r4[g,k)g1 r5[k,m)g1"},
		{"after all", rcDesc(6, "m", "z", 1), "r1[a,c)g1 r2[c,e)g1 r3[e,g)g1 r5[k,m)g1 r6[m,z)g1"},
		{"before all", rcDesc(9, "", "a", 1), "r9[,a)g1 r1[a,c)g1 r2[c,e)g1 r3[e,g)g1 r5[k,m)g1"},
		{"same span newer generation", rcDesc(2, "c", "e", 2), "r1[a,c)g1 r2[c,e)g2 r3[e,g)g1 r5[k,m)g1"},
		{"split left half", rcDesc(2, "c", "d", 2), "r1[a,c)g1 r2[c,d)g2 r3[e,g)g1 r5[k,m)g1"},
		{"split right half", rcDesc(7, "d", "e", 1), "r1[a,c)g1 r7[d,e)g1 r3[e,g)g1 r5[k,m)g1"},
		{"merge of two", rcDesc(2, "c", "g", 3), "r1[a,c)g1 r2[c,g)g3 r5[k,m)g1"},
		{"covers everything", rcDesc(1, "", "\xff\xff", 9), "r1[,\xff\xff)g9"},
		{"straddles a boundary", rcDesc(8, "b", "d", 1), "r8[b,d)g1 r3[e,g)g1 r5[k,m)g1"},
		{"touches but does not overlap", rcDesc(4, "g", "h", 1), "r1[a,c)g1 r2[c,e)g1 r3[e,g)g1 r4[g,h)g1 r5[k,m)g1"},
		{"overlaps hole and entry", rcDesc(4, "h", "l", 1), "r1[a,c)g1 r2[c,e)g1 r3[e,g)g1 r4[h,l)g1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rcNew(base()...)
			c.insert(tc.ins)
			if got := rcString(c); got != tc.want {
				t.Fatalf("after insert:\n got %q\nwant %q", got, tc.want)
			}
			// Invariants: sorted by end key, no overlaps.
			for i := 1; i < len(c.descs); i++ {
				if string(c.descs[i-1].EndKey) > string(c.descs[i].StartKey) {
					t.Fatalf("entries %d and %d overlap or are unsorted: %s", i-1, i, rcString(c))
				}
			}
			// The inserted descriptor is what lookups return for its keys.
			if d := c.lookup(tc.ins.StartKey, false); d != tc.ins {
				t.Fatalf("lookup(start of inserted) = %v", d)
			}
			if d := c.lookup(tc.ins.EndKey, true); d != tc.ins {
				t.Fatalf("lookup(end of inserted, inclusive) = %v", d)
			}
		})
	}
}

func TestRangeCacheEvict(t *testing.T) {
	base := func() *rangeCache {
		return rcNew(rcDesc(1, "a", "c", 3), rcDesc(2, "c", "e", 5), rcDesc(3, "e", "g", 1))
	}
	cases := []struct {
		name string
		ev   *rspb.RangeDescriptor
		want string
	}{
		{"same generation", rcDesc(2, "c", "e", 5), "r1[a,c)g3 r3[e,g)g1"},
		{"newer generation", rcDesc(2, "c", "e", 6), "r1[a,c)g3 r3[e,g)g1"},
		{"older generation keeps the newer entry", rcDesc(2, "c", "e", 4), "r1[a,c)g3 r2[c,e)g5 r3[e,g)g1"},
		{"unknown range", rcDesc(9, "c", "e", 5), "r1[a,c)g3 r2[c,e)g5 r3[e,g)g1"},
		{"matches by range ID, not span", rcDesc(3, "x", "z", 1), "r1[a,c)g3 r2[c,e)g5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			before := c.descs
			c.evict(tc.ev)
			if got := rcString(c); got != tc.want {
				t.Fatalf("after evict:\n got %q\nwant %q", got, tc.want)
			}
			// evict must not rewrite the slice lookups may hold.
			if len(before) != 3 || before[1].RangeId != 2 {
				t.Fatalf("evict mutated the previous slice: %v", before)
			}
		})
	}
	t.Run("evict then lookup misses", func(t *testing.T) {
		c := base()
		c.evict(rcDesc(2, "c", "e", 5))
		if d := c.lookup([]byte("d"), false); d != nil {
			t.Fatalf("lookup after evict = %v", d)
		}
		if d := c.lookup([]byte("b"), false); d == nil || d.RangeId != 1 {
			t.Fatalf("lookup of a kept entry = %v", d)
		}
	})
}

func TestRangeCacheConcurrent(t *testing.T) {
	c := &rangeCache{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				k := string(rune('a' + (g+i)%20))
				d := rcDesc(uint64((g+i)%20+1), k, k+"\xff", uint64(i))
				switch i % 3 {
				case 0:
					c.insert(d)
				case 1:
					if got := c.lookup([]byte(k), false); got != nil && got.RangeId != d.RangeId {
						t.Errorf("lookup(%q) = r%d, want r%d", k, got.RangeId, d.RangeId)
					}
				default:
					c.evict(d)
				}
			}
		}(g)
	}
	wg.Wait()
}
