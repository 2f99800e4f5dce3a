package client

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func ent(id, gen uint64, start, end string, writer uint64, voters ...uint64) *entry {
	e := &entry{rangeID: id, generation: gen, start: []byte(start), writer: writer, expires: time.Now().Add(time.Hour)}
	if end != "" {
		e.end = []byte(end)
	}
	for _, v := range voters {
		e.servers = append(e.servers, server{id: v, addr: fmt.Sprintf("n%d:1", v), voter: true})
	}
	return e
}

func (c *rangeCache) String() string {
	var s []string
	for _, e := range c.entries {
		end := string(e.end)
		if e.end == nil {
			end = "∞"
		}
		s = append(s, fmt.Sprintf("r%d@%d[%s,%s)w%d", e.rangeID, e.generation, e.start, end, e.writer))
	}
	return strings.Join(s, " ")
}

// TestRangeCache: lookups by key, the generation rule between overlapping
// entries, widening of clipped entries, and writers carried across
// generations while their node keeps a voter.
func TestRangeCache(t *testing.T) {
	var c rangeCache
	c.insert(ent(1, 1, "", "f", 1, 1, 2, 3))
	c.insert(ent(2, 1, "f", "", 2, 1, 2, 3))
	for _, k := range []struct {
		key  string
		want uint64
	}{{"", 1}, {"a", 1}, {"e\xff", 1}, {"f", 2}, {"zzz", 2}} {
		if e := c.lookup([]byte(k.key)); e == nil || e.rangeID != k.want {
			t.Fatalf("lookup %q: %v, want r%d (cache %s)", k.key, e, k.want, &c)
		}
	}
	steps := []struct {
		what string
		do   func()
		want string
	}{
		{"split of r2 at p (r2 keeps [f, p), gen 2; r3 is [p, ∞))", func() {
			c.insert(ent(2, 2, "f", "p", 0, 1, 2, 3))
			c.insert(ent(3, 2, "p", "", 0, 1, 2, 3))
		}, "r1@1[,f)w1 r2@2[f,p)w2 r3@2[p,∞)w0"},
		{"a stale routing entry of r2 (gen 1) is ignored", func() { c.insert(ent(2, 1, "f", "", 3, 1, 2, 3)) },
			"r1@1[,f)w1 r2@2[f,p)w2 r3@2[p,∞)w0"},
		{"a clipped entry of r3 (same generation) widens nothing and keeps the span", func() { c.insert(ent(3, 2, "q", "", 3, 1, 2, 3)) },
			"r1@1[,f)w1 r2@2[f,p)w2 r3@2[p,∞)w3"},
		{"merge of r2 and r3 (r2 gen 3 spans [f, ∞)) replaces both", func() { c.insert(ent(2, 3, "f", "", 0, 1, 2, 3)) },
			"r1@1[,f)w1 r2@3[f,∞)w2"},
		{"r2 moves off n2: its writer is forgotten", func() { c.insert(ent(2, 4, "f", "", 0, 1, 3, 4)) },
			"r1@1[,f)w1 r2@4[f,∞)w0"},
		{"leaseholder learned", func() { c.setWriter(2, 4) }, "r1@1[,f)w1 r2@4[f,∞)w4"},
		{"a node that holds no voter is not taken as writer", func() { c.setWriter(2, 2) }, "r1@1[,f)w1 r2@4[f,∞)w4"},
		{"the writer failed", func() { c.clearWriter(2, 4) }, "r1@1[,f)w1 r2@4[f,∞)w0"},
		{"evicting an older generation keeps the newer entry", func() { c.evict(ent(2, 3, "f", "", 0)) }, "r1@1[,f)w1 r2@4[f,∞)w0"},
		{"evicting the entry's generation drops it", func() { c.evict(ent(2, 4, "f", "", 0)) }, "r1@1[,f)w1"},
	}
	for _, s := range steps {
		s.do()
		if got := c.String(); got != s.want {
			t.Fatalf("%s:\n got %s\nwant %s", s.what, got, s.want)
		}
	}
	if e := c.lookup([]byte("g")); e != nil {
		t.Fatalf("lookup after eviction: r%d", e.rangeID)
	}
}
