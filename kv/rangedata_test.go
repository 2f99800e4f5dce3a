package kv

import (
	"bytes"
	"math/rand"
	"testing"
)

// TestAddressedKeysFollowTheirUserKey checks, on random keys full of the
// bytes the escaping treats specially, that an addressed key lies in the
// addressed span of [start, end) exactly when its user key lies in
// [start, end), whatever its suffix, and that it decodes back.
func TestAddressedKeysFollowTheirUserKey(t *testing.T) {
	rng := rand.New(rand.NewSource(16))
	alphabet := []byte{0x00, 0x01, 0x02, 0xFF, 'a'}
	randKey := func(min int) []byte {
		k := make([]byte, min+rng.Intn(4))
		for i := range k {
			k[i] = alphabet[rng.Intn(len(alphabet))]
		}
		return k
	}
	for i := 0; i < 20000; i++ {
		anchor, suffix := randKey(0), randKey(0)
		start, end := randKey(0), randKey(0)
		if bytes.Compare(start, end) > 0 {
			start, end = end, start
		}
		if rng.Intn(10) == 0 {
			end = nil
		}
		ak := AddressedKey(anchor, suffix)
		k, s, err := DecodeAddressedKey(ak)
		if err != nil || !bytes.Equal(k, anchor) || !bytes.Equal(s, suffix) {
			t.Fatalf("DecodeAddressedKey(AddressedKey(%x, %x)) = %x, %x, %v", anchor, suffix, k, s, err)
		}
		lower, upper, err := AddressedSpanBounds(start, end)
		if err != nil {
			t.Fatal(err)
		}
		in := bytes.Compare(anchor, start) >= 0 && (end == nil || bytes.Compare(anchor, end) < 0)
		if got := bytes.Compare(ak, lower) >= 0 && bytes.Compare(ak, upper) < 0; got != in {
			t.Fatalf("key %x (suffix %x) in addressed span of [%x, %x): %v, want %v", anchor, suffix, start, end, got, in)
		}
	}
	if _, _, err := AddressedSpanBounds([]byte("b"), []byte("a")); err == nil {
		t.Fatal("AddressedSpanBounds(b, a) accepted an inverted span")
	}
}

// TestRangeData checks that a range's data is its MVCC versions and its
// addressed keys, and nothing of its neighbours'.
func TestRangeData(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{put("a", 1, "a"), put("b", 1, "b"), put("c", 1, "c")})
	b := e.NewBatch()
	for _, k := range []string{"a", "b", "c"} {
		if err := b.PutRaw(AddressedKey([]byte(k), []byte("rec")), []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	list := func() []string {
		var out []string
		if err := IterateRangeData(e, []byte("b"), []byte("c"), func(k, v []byte) error {
			out = append(out, string(v))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := list(); len(got) != 2 || got[0] != "b" || got[1] != "\x01b" {
		t.Fatalf("range data of [b, c) = %q, want the record of b, then b's version", got)
	}
	cb := e.NewBatch()
	if err := ClearRangeData(cb, []byte("b"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := cb.Commit(false); err != nil {
		t.Fatal(err)
	}
	_ = cb.Close()
	if got := list(); len(got) != 0 {
		t.Fatalf("range data of [b, c) after clearing it: %q", got)
	}
	for _, k := range []string{"a", "c"} {
		if _, ok, _ := e.GetRaw(AddressedKey([]byte(k), []byte("rec"))); !ok {
			t.Fatalf("clearing [b, c) removed the record of %s", k)
		}
		if _, ok, _ := MVCCGet(e, []byte(k), ts(5)); !ok {
			t.Fatalf("clearing [b, c) removed %s", k)
		}
	}
}
