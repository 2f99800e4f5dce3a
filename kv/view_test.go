package kv

import (
	"bytes"
	"fmt"
	"testing"
)

// TestViewIsPointInTime: a View sees what was committed before NewView and
// nothing committed after it (new versions, a deletion, a raw write, an
// ingestion-like range deletion), in iterators opened before and after the
// later writes and in GetRaw; a View opened after the writes sees them.
func TestViewIsPointInTime(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{put("a", 10, "a10"), put("b", 10, "b10"), put("c", 10, "c10")})
	raw := append([]byte{LocalPrefix}, "state"...)
	rb := e.NewBatch()
	if err := rb.PutRaw(raw, []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := rb.Commit(false); err != nil {
		t.Fatal(err)
	}
	v, err := e.NewView()
	if err != nil {
		t.Fatal(err)
	}
	early, err := v.NewIter(EncodeDataSpanStart([]byte("a")), DataEnd())
	if err != nil {
		t.Fatal(err)
	}
	// After the view: a newer version of a, a tombstone on b, a new key d,
	// a raw overwrite, and c's versions cleared.
	applyOps(t, e, []op{put("a", 20, "a20"), del("b", 20), put("d", 20, "d20")})
	b := e.NewBatch()
	if err := b.PutRaw(raw, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := ClearDataSpan(b, []byte("c"), []byte("c\x00")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}

	want := "a@10=a10 b@10=b10 c@10=c10"
	var seen []string
	for ok := early.First(); ok; ok = early.Next() {
		k, vts, err := DecodeMVCCKey(early.Key())
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, fmt.Sprintf("%s@%d", k, vts.WallTime))
	}
	if err := early.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(seen); got != "[a@10 b@10 c@10]" {
		t.Errorf("iterator opened before the writes: %s, want [a@10 b@10 c@10]", got)
	}
	kvs, _, err := MVCCScan(v, []byte("a"), nil, ts(30), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := renderKVs(kvs); got != want {
		t.Errorf("scan through the view after the writes: %q, want %q", got, want)
	}
	for _, k := range []string{"a", "b", "c"} {
		x, found, err := MVCCGet(v, []byte(k), ts(30))
		if err != nil || !found || string(x.Value) != k+"10" {
			t.Errorf("get %s through the view: %q found=%v err=%v, want %s10", k, x.Value, found, err, k)
		}
	}
	if _, found, err := MVCCGet(v, []byte("d"), ts(30)); err != nil || found {
		t.Errorf("get d (written after the view): found=%v err=%v, want not found", found, err)
	}
	if got, found, err := v.GetRaw(raw); err != nil || !found || string(got) != "old" {
		t.Errorf("raw get through the view: %q found=%v err=%v, want old", got, found, err)
	}
	// GetRaw reads the key alone, not one it prefixes.
	if _, found, err := v.GetRaw(raw[:len(raw)-1]); err != nil || found {
		t.Errorf("raw get of a prefix of a stored key: found=%v err=%v, want not found", found, err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}

	v2, err := e.NewView()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := v2.Close(); err != nil {
			t.Error(err)
		}
	}()
	kvs, _, err = MVCCScan(v2, []byte("a"), nil, ts(30), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := renderKVs(kvs); got != "a@20=a20 d@20=d20" {
		t.Errorf("scan through a view opened after the writes: %q, want %q", got, "a@20=a20 d@20=d20")
	}
	if got, _, err := v2.GetRaw(raw); err != nil || !bytes.Equal(got, []byte("new")) {
		t.Errorf("raw get through the later view: %q err=%v, want new", got, err)
	}
}

// BenchmarkPointRead compares the ways a replica can pin the state it
// serves one MVCCGet from: a Pebble snapshot (what Lookup used) and a
// View.
func BenchmarkPointRead(b *testing.B) {
	e, err := Open("", Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	const n = 1000
	key := func(i int) []byte { return fmt.Appendf(nil, "key%06d", i) }
	wb := e.NewBatch()
	for i := range n {
		if err := wb.PutMVCC(key(i), ts(10), bytes.Repeat([]byte("v"), 256)); err != nil {
			b.Fatal(err)
		}
	}
	if err := wb.Commit(false); err != nil {
		b.Fatal(err)
	}
	_ = wb.Close()
	read := func(b *testing.B, r Reader, i int) {
		if _, found, err := MVCCGet(r, key(i%n), ts(20)); err != nil || !found {
			b.Fatalf("get: found=%v err=%v", found, err)
		}
	}
	b.Run("snapshot", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s := e.NewSnapshot()
			read(b, s, i)
			_ = s.Close()
			i++
		}
	})
	b.Run("view", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			v, err := e.NewView()
			if err != nil {
				b.Fatal(err)
			}
			read(b, v, i)
			_ = v.Close()
			i++
		}
	})
}
