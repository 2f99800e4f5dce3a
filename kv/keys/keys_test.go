package keys

import (
	"bytes"
	"math/rand"
	"sort"
	"strings"
	"testing"
)

func TestUserKeyRoundTrip(t *testing.T) {
	for _, k := range [][]byte{
		{}, []byte("a"), []byte("hello"), {0x00}, {0xff, 0xff}, []byte("u"), []byte("\x00snode/"), bytes.Repeat([]byte{0x7f}, 300),
	} {
		uk := UserKey(k)
		if !bytes.HasPrefix(uk, UserPrefix) || len(uk) != len(UserPrefix)+len(k) {
			t.Fatalf("UserKey(%q) = %q", k, uk)
		}
		if !IsUserKey(uk) {
			t.Fatalf("IsUserKey(%q) = false", uk)
		}
		if bytes.Compare(uk, UserPrefix) < 0 || bytes.Compare(uk, UserSpanEnd) >= 0 {
			t.Fatalf("UserKey(%q) = %q outside [%q, %q)", k, uk, UserPrefix, UserSpanEnd)
		}
		ck, err := ClientKey(uk)
		if err != nil || !bytes.Equal(ck, k) {
			t.Fatalf("ClientKey(UserKey(%q)) = %q, %v", k, ck, err)
		}
	}
	// UserKey does not alias its argument.
	k := []byte("abc")
	uk := UserKey(k)
	k[0] = 'z'
	if string(uk) != "uabc" {
		t.Fatalf("UserKey aliases its input: %q", uk)
	}
	// Order is preserved.
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 1000; i++ {
		a, b := hkRandKey(rng), hkRandKey(rng)
		if got, want := bytes.Compare(UserKey(a), UserKey(b)), bytes.Compare(a, b); got != want {
			t.Fatalf("compare(UserKey(%q), UserKey(%q)) = %d, want %d", a, b, got, want)
		}
	}
}

func TestClientKeyRejectsNonUserKeys(t *testing.T) {
	for _, k := range [][]byte{nil, {}, []byte("a"), []byte("t"), []byte("v"), SystemStart, MetaKey([]byte("ua")), NodeKey(1), KeyMax} {
		if _, err := ClientKey(k); err == nil {
			t.Errorf("ClientKey(%q) succeeded", k)
		}
		if IsUserKey(k) {
			t.Errorf("IsUserKey(%q) = true", k)
		}
	}
}

func TestUserSpan(t *testing.T) {
	cases := []struct{ start, end, wantStart, wantEnd string }{
		{"a", "b", "ua", "ub"},
		{"", "", "u", "v"},
		{"a", "", "ua", "v"},
		{"", "z", "u", "uz"},
		{"\xff", "", "u\xff", "v"},
	}
	for _, tc := range cases {
		s, e := UserSpan([]byte(tc.start), []byte(tc.end))
		if string(s) != tc.wantStart || string(e) != tc.wantEnd {
			t.Errorf("UserSpan(%q, %q) = [%q, %q), want [%q, %q)", tc.start, tc.end, s, e, tc.wantStart, tc.wantEnd)
		}
	}
	// The returned end must not alias UserSpanEnd.
	_, e := UserSpan([]byte("a"), nil)
	e[0] = 'x'
	if string(UserSpanEnd) != "v" {
		t.Fatalf("UserSpan aliases UserSpanEnd: now %q", UserSpanEnd)
	}
}

func hkRandKey(rng *rand.Rand) []byte {
	// A small alphabet makes shared prefixes and exact matches common.
	const alphabet = "\x00\x01abuz\xfe\xff"
	n := rng.Intn(5)
	k := make([]byte, n)
	for i := range k {
		k[i] = alphabet[rng.Intn(len(alphabet))]
	}
	return k
}

// TestMetaLookupStart checks the property meta lookups rely on: with range
// descriptors keyed by MetaKey(end), the first meta key >= MetaLookupStart(k)
// belongs to the range containing k.
func TestMetaLookupStart(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	for trial := 0; trial < 200; trial++ {
		// Random distinct end keys tiling [KeyMin, KeyMax).
		endSet := map[string]bool{string(KeyMax): true}
		for i := rng.Intn(12); i > 0; i-- {
			if k := hkRandKey(rng); len(k) > 0 && bytes.Compare(k, KeyMax) < 0 {
				endSet[string(k)] = true
			}
		}
		var ends []string
		for e := range endSet {
			ends = append(ends, e)
		}
		sort.Strings(ends)
		metaKeys := make([]string, len(ends))
		for i, e := range ends {
			metaKeys[i] = string(MetaKey([]byte(e)))
		}
		if !sort.StringsAreSorted(metaKeys) {
			t.Fatalf("meta keys not in end-key order: %q", metaKeys)
		}
		for q := 0; q < 50; q++ {
			k := hkRandKey(rng)
			if q%5 == 0 { // exact end keys are the interesting boundary
				k = []byte(ends[rng.Intn(len(ends))])
			}
			if bytes.Compare(k, KeyMax) >= 0 {
				continue
			}
			// The range containing k: the first with end > k.
			want := sort.Search(len(ends), func(i int) bool { return ends[i] > string(k) })
			start := string(MetaLookupStart(k))
			got := sort.Search(len(metaKeys), func(i int) bool { return metaKeys[i] >= start })
			if got != want {
				t.Fatalf("ends %q, key %q: first meta key >= MetaLookupStart is #%d, want range #%d", ends, k, got, want)
			}
			startKey := ""
			if want > 0 {
				startKey = ends[want-1]
			}
			if !InSpan(k, []byte(startKey), []byte(ends[want])) {
				t.Fatalf("key %q not in the found range [%q, %q)", k, startKey, ends[want])
			}
		}
	}
	// Worked examples.
	if got := MetaLookupStart([]byte("ua")); string(got) != "\x00mua\x00" {
		t.Fatalf("MetaLookupStart(ua) = %q", got)
	}
	if got := MetaLookupStart(nil); string(got) != "\x00m\x00" {
		t.Fatalf("MetaLookupStart(nil) = %q", got)
	}
}

func TestNext(t *testing.T) {
	for _, k := range []string{"", "a", "a\x00", "\xff\xff"} {
		n := Next([]byte(k))
		if string(n) != k+"\x00" {
			t.Fatalf("Next(%q) = %q", k, n)
		}
		if bytes.Compare([]byte(k), n) >= 0 {
			t.Fatalf("Next(%q) not greater", k)
		}
	}
}

func TestSpanHelpers(t *testing.T) {
	cases := []struct {
		k, start, end string
		in            bool
	}{
		{"a", "a", "b", true},
		{"b", "a", "b", false},
		{"a\x00", "a", "b", true},
		{"", "", "a", true},
		{"", "a", "b", false},
		{"c", "a", "b", false},
	}
	for _, tc := range cases {
		if got := InSpan([]byte(tc.k), []byte(tc.start), []byte(tc.end)); got != tc.in {
			t.Errorf("InSpan(%q, [%q, %q)) = %v", tc.k, tc.start, tc.end, got)
		}
	}
	spans := []struct {
		s, e, start, end string
		in               bool
	}{
		{"a", "b", "a", "b", true},
		{"a", "a", "a", "b", true},
		{"a", "c", "a", "b", false},
		{"0", "b", "a", "b", false},
		{"b", "a", "a", "c", false},
		{"b", "b", "a", "b", true},
	}
	for _, tc := range spans {
		if got := ContainsSpan([]byte(tc.s), []byte(tc.e), []byte(tc.start), []byte(tc.end)); got != tc.in {
			t.Errorf("ContainsSpan([%q, %q), [%q, %q)) = %v", tc.s, tc.e, tc.start, tc.end, got)
		}
	}
}

func TestDefaultSplitKeys(t *testing.T) {
	var got []string
	for _, k := range DefaultSplitKeys(4) {
		got = append(got, string(k))
	}
	if strings.Join(got, ",") != "C,O,b,n" {
		t.Fatalf("DefaultSplitKeys(4) = %q, want [C O b n]", got)
	}
	for _, n := range []int{-1, 0} {
		if ks := DefaultSplitKeys(n); len(ks) != 0 {
			t.Fatalf("DefaultSplitKeys(%d) = %q", n, ks)
		}
	}
	if ks := DefaultSplitKeys(1); len(ks) != 1 || string(ks[0]) != "V" {
		t.Fatalf("DefaultSplitKeys(1) = %q", ks)
	}
	for _, n := range append(seq(1, 100), 500, 997, 3843) {
		ks := DefaultSplitKeys(n)
		if len(ks) == 0 || len(ks) > n {
			t.Fatalf("DefaultSplitKeys(%d) has %d keys", n, len(ks))
		}
		if len(ks) != n {
			t.Fatalf("DefaultSplitKeys(%d) has %d keys, want %d", n, len(ks), n)
		}
		seen := map[string]bool{}
		for i, k := range ks {
			if want := 1 + min(n/62, 1); len(k) != want {
				t.Fatalf("DefaultSplitKeys(%d)[%d] = %q is not %d byte(s)", n, i, k, want)
			}
			if seen[string(k)] {
				t.Fatalf("DefaultSplitKeys(%d) has duplicate %q", n, k)
			}
			seen[string(k)] = true
			if i > 0 && bytes.Compare(ks[i-1], k) >= 0 {
				t.Fatalf("DefaultSplitKeys(%d) not ascending at %d: %q", n, i, ks)
			}
			c := k[0]
			if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
				t.Fatalf("DefaultSplitKeys(%d) has non-alphanumeric %q", n, k)
			}
		}
	}
}

func TestNodeKeyInSystemSpan(t *testing.T) {
	prev := []byte(nil)
	for _, id := range []uint64{0, 1, 2, 255, 256, 1 << 32, 1<<64 - 1} {
		k := NodeKey(id)
		if !InSpan(k, SystemStart, UserPrefix) {
			t.Fatalf("NodeKey(%d) = %q outside the system span [%q, %q)", id, k, SystemStart, UserPrefix)
		}
		if !bytes.HasPrefix(k, NodePrefix) || len(k) != len(NodePrefix)+8 {
			t.Fatalf("NodeKey(%d) = %q", id, k)
		}
		if IsUserKey(k) {
			t.Fatalf("NodeKey(%d) is a user key", id)
		}
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			t.Fatalf("NodeKey order: %q then %q", prev, k)
		}
		prev = k
	}
}

func TestLivenessKeyInSystemSpan(t *testing.T) {
	for _, id := range []uint64{0, 1, 1<<64 - 1} {
		k := LivenessKey(id)
		if !InSpan(k, SystemStart, UserPrefix) {
			t.Fatalf("LivenessKey(%d) = %q outside the system span", id, k)
		}
		if !bytes.HasPrefix(k, LivenessPrefix) || bytes.HasPrefix(k, NodePrefix) {
			t.Fatalf("LivenessKey(%d) = %q", id, k)
		}
		if bytes.Equal(k, NodeKey(id)) {
			t.Fatalf("LivenessKey(%d) collides with NodeKey", id)
		}
	}
}

func TestMetaKeysInMetaSpan(t *testing.T) {
	ends := [][]byte{KeyMin, {0x00}, SystemStart, NodeKey(7), UserPrefix, UserKey([]byte("a")), UserKey([]byte{0xff, 0xff, 0xff}), UserSpanEnd, {0xfe}, {0xff}, {0xff, 0xfe, 0xff}, KeyMax}
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 200; i++ {
		ends = append(ends, hkRandKey(rng))
	}
	for _, e := range ends {
		mk := MetaKey(e)
		if !InSpan(mk, MetaPrefix, MetaSpanEnd) {
			t.Fatalf("MetaKey(%q) = %q outside [%q, %q)", e, mk, MetaPrefix, MetaSpanEnd)
		}
		// Meta records live in the meta range [KeyMin, SystemStart).
		if !InSpan(mk, KeyMin, SystemStart) {
			t.Fatalf("MetaKey(%q) = %q outside the meta range", e, mk)
		}
		if !bytes.Equal(mk[len(MetaPrefix):], e) {
			t.Fatalf("MetaKey(%q) = %q", e, mk)
		}
	}
	// The fixed layout boundaries are ordered as documented.
	order := [][]byte{KeyMin, MetaPrefix, MetaSpanEnd, SystemStart, NodePrefix, UserPrefix, UserSpanEnd, KeyMax}
	for i := 1; i < len(order); i++ {
		if bytes.Compare(order[i-1], order[i]) >= 0 {
			t.Fatalf("layout boundary %q is not below %q", order[i-1], order[i])
		}
	}
}

func seq(a, b int) []int {
	var out []int
	for i := a; i <= b; i++ {
		out = append(out, i)
	}
	return out
}
