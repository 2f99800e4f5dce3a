package kv

import (
	"bytes"
	"errors"
	"math"
	"math/rand"
	"sort"
	"testing"
)

// randKey returns a short random key biased towards 0x00/0xFF/0x01 bytes so
// that escaping edge cases and prefix relationships are common.
func randKey(rng *rand.Rand, allowEmpty bool) []byte {
	n := rng.Intn(6)
	if !allowEmpty && n == 0 {
		n = 1
	}
	alphabet := []byte{0x00, 0x01, 0x02, 0xFE, 0xFF, 'a', 'b'}
	k := make([]byte, n)
	for i := range k {
		if rng.Intn(4) == 0 {
			k[i] = byte(rng.Intn(256))
		} else {
			k[i] = alphabet[rng.Intn(len(alphabet))]
		}
	}
	return k
}

func randTS(rng *rand.Rand) Timestamp {
	ts := Timestamp{WallTime: rng.Int63n(4), Logical: int32(rng.Intn(3))}
	switch rng.Intn(10) {
	case 0:
		ts.WallTime = math.MaxInt64 - rng.Int63n(2)
	case 1:
		ts.Logical = math.MaxInt32
	}
	if ts.IsEmpty() {
		ts.Logical = 1
	}
	return ts
}

func TestMVCCKeyRoundTrip(t *testing.T) {
	tests := []struct {
		key []byte
		ts  Timestamp
	}{
		{[]byte("a"), Timestamp{1, 0}},
		{[]byte{0x00}, Timestamp{0, 1}},
		{[]byte{0x00, 0x00, 0xFF}, Timestamp{5, 5}},
		{[]byte{0x00, 0x01}, Timestamp{5, 5}},
		{[]byte{0xFF, 0xFF}, MaxTimestamp},
		{[]byte("hello\x00world"), Timestamp{1700000000000000000, 3}},
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 500; i++ {
		tests = append(tests, struct {
			key []byte
			ts  Timestamp
		}{randKey(rng, false), randTS(rng)})
	}
	for _, tc := range tests {
		ek := EncodeMVCCKey(tc.key, tc.ts)
		if ek[0] != DataPrefix {
			t.Fatalf("encoded key %x lacks data prefix", ek)
		}
		if !bytes.HasPrefix(ek, EncodeDataSpanStart(tc.key)) {
			t.Fatalf("encoded key %x does not start with span start %x", ek, EncodeDataSpanStart(tc.key))
		}
		k, ts, err := DecodeMVCCKey(ek)
		if err != nil {
			t.Fatalf("decode %x: %v", ek, err)
		}
		if !bytes.Equal(k, tc.key) || ts != tc.ts {
			t.Fatalf("round trip %q@%s -> %q@%s", tc.key, tc.ts, k, ts)
		}
	}
}

func TestDecodeMVCCKeyErrors(t *testing.T) {
	good := EncodeMVCCKey([]byte("ab"), Timestamp{1, 1})
	badEscape := EncodeMVCCKey([]byte("ab"), Timestamp{1, 1})
	badEscape[2] = 0x00 // "a" 0x00 'b'... -> invalid escape 0x00 0x62
	tests := []struct {
		name string
		key  []byte
	}{
		{"empty", nil},
		{"local prefix", append([]byte{LocalPrefix}, good[1:]...)},
		{"too short", good[:10]},
		{"no terminator", append([]byte{DataPrefix, 'a', 'b', 'c'}, good[len(good)-12:]...)},
		{"bad escape", badEscape},
		{"empty timestamp", EncodeMVCCKey([]byte("a"), Timestamp{})},
	}
	for _, tc := range tests {
		if _, _, err := DecodeMVCCKey(tc.key); err == nil {
			t.Errorf("%s: DecodeMVCCKey(%x) succeeded", tc.name, tc.key)
		}
	}
}

// TestMVCCKeyOrdering checks that the engine order of encoded keys equals
// (user key ascending, timestamp descending), and that span starts bound
// exactly the versions of keys >= the start key.
func TestMVCCKeyOrdering(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	type version struct {
		key []byte
		ts  Timestamp
	}
	for round := 0; round < 20; round++ {
		var vs []version
		for i := 0; i < 200; i++ {
			vs = append(vs, version{randKey(rng, false), randTS(rng)})
		}
		// Expected order: user key bytewise ascending, then newest first.
		want := append([]version(nil), vs...)
		sort.SliceStable(want, func(i, j int) bool {
			if c := bytes.Compare(want[i].key, want[j].key); c != 0 {
				return c < 0
			}
			return want[j].ts.Less(want[i].ts)
		})
		got := append([]version(nil), vs...)
		sort.SliceStable(got, func(i, j int) bool {
			return bytes.Compare(EncodeMVCCKey(got[i].key, got[i].ts), EncodeMVCCKey(got[j].key, got[j].ts)) < 0
		})
		for i := range want {
			if !bytes.Equal(want[i].key, got[i].key) || want[i].ts != got[i].ts {
				t.Fatalf("round %d pos %d: engine order %q@%s, want %q@%s", round, i, got[i].key, got[i].ts, want[i].key, want[i].ts)
			}
		}
		// Span start bounds.
		for i := 0; i < 50; i++ {
			start := randKey(rng, true)
			ss := EncodeDataSpanStart(start)
			for _, v := range vs {
				ek := EncodeMVCCKey(v.key, v.ts)
				inSpan := bytes.Compare(v.key, start) >= 0
				if (bytes.Compare(ek, ss) >= 0) != inSpan {
					t.Fatalf("span start %q: key %q@%s engine>=start is %v, want %v", start, v.key, v.ts, !inSpan, inSpan)
				}
				if bytes.Compare(ek, DataEnd()) >= 0 {
					t.Fatalf("key %x not below DataEnd", ek)
				}
			}
		}
	}
}

func TestDataSpanBounds(t *testing.T) {
	tests := []struct {
		start, end []byte
		wantErr    bool
	}{
		{[]byte("a"), []byte("b"), false},
		{[]byte("a"), []byte("a"), false},
		{nil, nil, false},
		{[]byte("a"), nil, false},
		{[]byte("b"), []byte("a"), true},
		{[]byte("a\x00"), []byte("a"), true},
	}
	for _, tc := range tests {
		lo, hi, err := DataSpanBounds(tc.start, tc.end)
		if tc.wantErr {
			if !errors.Is(err, ErrInvalidSpan) {
				t.Errorf("[%q,%q): err = %v, want ErrInvalidSpan", tc.start, tc.end, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("[%q,%q): %v", tc.start, tc.end, err)
		}
		if bytes.Compare(lo, hi) > 0 {
			t.Errorf("[%q,%q): lower %x > upper %x", tc.start, tc.end, lo, hi)
		}
		if tc.end == nil && !bytes.Equal(hi, []byte{DataPrefix + 1}) {
			t.Errorf("nil end: upper = %x", hi)
		}
	}
}
