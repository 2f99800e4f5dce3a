package ranges

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// refOverlaps is the definition overlaps implements: [start, end) with a
// point span's end spelled out as start+0x00.
func refOverlaps(a, b span) bool {
	end := func(s span) []byte {
		if s.end == nil {
			return append(append([]byte(nil), s.start...), 0)
		}
		return s.end
	}
	return bytes.Compare(a.start, end(b)) < 0 && bytes.Compare(b.start, end(a)) < 0
}

// TestSpanOverlaps checks overlaps against refOverlaps for every pair of
// point and range spans over short keys of 0x00, 0x01 and 0xff (so that
// keys which are prefixes of others, and keys ending in 0x00, occur), and
// that it allocates nothing.
func TestSpanOverlaps(t *testing.T) {
	var keys [][]byte
	var gen func(prefix []byte, n int)
	gen = func(prefix []byte, n int) {
		keys = append(keys, append([]byte(nil), prefix...))
		if n == 0 {
			return
		}
		for _, c := range []byte{0x00, 0x01, 0xff} {
			gen(append(prefix, c), n-1)
		}
	}
	gen(nil, 3)
	keys = keys[1:] // no empty key
	var spans []span
	for _, a := range keys {
		spans = append(spans, span{start: a})
		for _, b := range keys {
			if bytes.Compare(a, b) < 0 {
				spans = append(spans, span{start: a, end: b})
			}
		}
	}
	n := 0
	for _, a := range spans {
		for _, b := range spans {
			if got, want := a.overlaps(b), refOverlaps(a, b); got != want {
				t.Fatalf("span{%x, %x}.overlaps(span{%x, %x}) = %v, want %v", a.start, a.end, b.start, b.end, got, want)
			}
			if a.overlaps(b) != b.overlaps(a) {
				t.Fatalf("overlaps is not symmetric for span{%x, %x} and span{%x, %x}", a.start, a.end, b.start, b.end)
			}
			if a.overlaps(b) {
				n++
			}
		}
	}
	if n == 0 || n == len(spans)*len(spans) {
		t.Fatalf("%d of %d pairs overlap: the fixture does not exercise both outcomes", n, len(spans)*len(spans))
	}
	p, q := span{start: []byte("k1")}, span{start: []byte("k0"), end: []byte("k2")}
	if allocs := testing.AllocsPerRun(100, func() { _ = p.overlaps(q) || q.overlaps(p) || p.overlaps(p) }); allocs != 0 {
		t.Errorf("overlaps allocates %.0f times per call, want 0", allocs)
	}
}

// TestLatchesPointAndRange: a write latch on a point waits for a held
// write latch on a span covering it and not for one on the key just
// above it (k+0x00), and reads share.
func TestLatchesPointAndRange(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := newLatchManager()
	k := []byte("k")
	above := span{start: append(append([]byte(nil), k...), 0)}
	held, err := m.acquire(ctx, []span{{start: []byte("a"), end: []byte("k\x00")}}, true)
	if err != nil {
		t.Fatal(err)
	}
	// Not conflicting: the key just above k, and two readers.
	for _, c := range []struct {
		spans []span
		write bool
	}{{[]span{above}, true}, {[]span{{start: []byte("z")}}, false}} {
		l, err := m.acquire(ctx, c.spans, c.write)
		if err != nil {
			t.Fatalf("latch %+v waited on a latch it does not overlap: %v", c.spans, err)
		}
		m.release(l)
	}
	r1, err := m.acquire(ctx, []span{above}, false)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := m.acquire(ctx, []span{above}, false)
	if err != nil {
		t.Fatalf("a read latch waited for another read latch: %v", err)
	}
	m.release(r1)
	m.release(r2)
	// Conflicting: a write on k waits for the held [a, k+0x00) until it is
	// released.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := m.acquire(short, []span{{start: k}}, true); err == nil {
		t.Fatal("a write latch on k was granted while [a, k\\x00) was held for writing")
	}
	got := make(chan error, 1)
	go func() {
		l, err := m.acquire(ctx, []span{{start: k}}, true)
		if err == nil {
			m.release(l)
		}
		got <- err
	}()
	m.release(held)
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("write latch on k after the release: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("write latch on k not granted after the conflicting latch was released")
	}
}

// BenchmarkLatchAcquire: a write latch on one key taken and released
// while 64 read latches on other keys are held (kv95: reads in flight
// while a write arrives), i.e. 64 conflict checks per acquire.
func BenchmarkLatchAcquire(b *testing.B) {
	ctx := context.Background()
	m := newLatchManager()
	for i := range 64 {
		if _, err := m.acquire(ctx, []span{{start: []byte{'r', byte(i)}}}, false); err != nil {
			b.Fatal(err)
		}
	}
	w := []span{{start: []byte("w")}}
	b.ReportAllocs()
	for b.Loop() {
		l, err := m.acquire(ctx, w, true)
		if err != nil {
			b.Fatal(err)
		}
		m.release(l)
	}
}
