package kv

import (
	"bytes"
	"strings"
	"testing"
)

// validVersion reports whether (key, ts) is a version kv stores: a
// non-empty user key at a non-empty, non-negative timestamp.
func validVersion(key []byte, ts Timestamp) bool {
	return len(key) > 0 && !ts.IsEmpty() && ts.WallTime >= 0 && ts.Logical >= 0
}

// FuzzMVCCKey checks the MVCC engine key encoding:
//   - decoding arbitrary bytes never panics: it fails with an error
//     saying the key is malformed, or returns a key and timestamp that
//     encode back to exactly those bytes;
//   - every stored version round-trips;
//   - encoded keys sort like (user key ascending, timestamp descending),
//     all versions of a key lie in [EncodeDataSpanStart(key),
//     versionsEnd(prefix)) and before every version of a greater key;
//   - DataSpanBounds maps a user key span onto exactly the versions of its
//     keys, and refuses an inverted span.
func FuzzMVCCKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, a []byte, aWall int64, aLogical int32, b []byte, bWall int64, bLogical int32) {
		ta := Timestamp{WallTime: aWall, Logical: aLogical}
		tb := Timestamp{WallTime: bWall, Logical: bLogical}

		// a and b as arbitrary engine keys.
		for _, raw := range [][]byte{a, b} {
			k, ts, err := DecodeMVCCKey(raw)
			if err != nil {
				if !strings.Contains(err.Error(), "malformed MVCC key") {
					t.Fatalf("DecodeMVCCKey(%x): error %q does not say the key is malformed", raw, err)
				}
				continue
			}
			if ts.IsEmpty() {
				t.Fatalf("DecodeMVCCKey(%x) accepted an empty timestamp", raw)
			}
			if re := EncodeMVCCKey(k, ts); !bytes.Equal(re, raw) {
				t.Fatalf("DecodeMVCCKey(%x) = %q@%s, which encodes to %x", raw, k, ts, re)
			}
			if pl, _, err := splitMVCCKey(raw); err != nil || !bytes.Equal(raw[:pl], EncodeDataSpanStart(k)) {
				t.Fatalf("splitMVCCKey(%x) = %d, %v; want the prefix %x", raw, pl, err, EncodeDataSpanStart(k))
			}
		}

		if !validVersion(a, ta) || !validVersion(b, tb) {
			return
		}
		ea, eb := EncodeMVCCKey(a, ta), EncodeMVCCKey(b, tb)
		for _, v := range []struct {
			key []byte
			ts  Timestamp
			enc []byte
		}{{a, ta, ea}, {b, tb, eb}} {
			k, ts, err := DecodeMVCCKey(v.enc)
			if err != nil || !bytes.Equal(k, v.key) || ts != v.ts {
				t.Fatalf("DecodeMVCCKey(EncodeMVCCKey(%q, %s)) = %q, %s, %v", v.key, v.ts, k, ts, err)
			}
			prefix := EncodeDataSpanStart(v.key)
			if !bytes.HasPrefix(v.enc, prefix) || bytes.Compare(v.enc, versionsEnd(prefix)) >= 0 || !samePrefix(v.enc, prefix) {
				t.Fatalf("EncodeMVCCKey(%q, %s) = %x is not within the versions of its key [%x, %x)", v.key, v.ts, v.enc, prefix, versionsEnd(prefix))
			}
			if uk, err := userKeyFromPrefix(prefix); err != nil || !bytes.Equal(uk, v.key) || userKeyLenFromPrefix(prefix) != len(v.key) {
				t.Fatalf("user key of prefix %x = %q, %v; want %q", prefix, uk, err, v.key)
			}
		}

		// Order: user key ascending, then timestamp descending.
		want := bytes.Compare(a, b)
		if want == 0 {
			want = -ta.Compare(tb)
		}
		if got := bytes.Compare(ea, eb); got != want {
			t.Fatalf("%q@%s vs %q@%s: encoded order %d, want %d", a, ta, b, tb, got, want)
		}
		if bytes.Compare(a, b) < 0 && bytes.Compare(versionsEnd(EncodeDataSpanStart(a)), eb) > 0 {
			t.Fatalf("the versions of %q extend past the version %q@%s", a, b, tb)
		}

		// Spans of user keys.
		lower, upper, err := DataSpanBounds(a, b)
		if bytes.Compare(a, b) > 0 {
			if err == nil {
				t.Fatalf("DataSpanBounds(%q, %q) accepted an inverted span", a, b)
			}
			lower, upper, err = DataSpanBounds(b, a)
			a, b, ta, tb, ea, eb = b, a, tb, ta, eb, ea
		}
		if err != nil {
			t.Fatalf("DataSpanBounds(%q, %q): %v", a, b, err)
		}
		if !(bytes.Compare(lower, ea) <= 0 && bytes.Compare(ea, upper) < 0) != bytes.Equal(a, b) {
			t.Fatalf("DataSpanBounds(%q, %q) = [%x, %x): contains %q@%s: %v", a, b, lower, upper, a, ta, !bytes.Equal(a, b))
		}
		if bytes.Compare(eb, upper) < 0 {
			t.Fatalf("DataSpanBounds(%q, %q) = [%x, %x) contains its end key's version %q@%s", a, b, lower, upper, b, tb)
		}
		if _, upperOpen, err := DataSpanBounds(a, nil); err != nil || bytes.Compare(eb, upperOpen) >= 0 {
			t.Fatalf("DataSpanBounds(%q, nil) = [_, %x), %v: misses %q@%s", a, upperOpen, err, b, tb)
		}
	})
}
