package keys

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// FuzzUserAndSystemKeys checks the logical keyspace's encodings on
// arbitrary client keys a, b and node IDs n1, n2:
//   - a client key round-trips through UserKey and ClientKey, lands in the
//     user span and never in the meta or system span, and the mapping
//     keeps the bytewise order of client keys;
//   - ClientKey of arbitrary bytes either refuses them with an error that
//     says they are not in the user span, or returns the client key whose
//     UserKey is those same bytes;
//   - meta keys keep the order of end keys and stay in the meta span, and
//     MetaLookupStart(k) is the first meta key of a range whose end is
//     after k (the invariant the range lookup relies on);
//   - node, liveness, join, zone and protection keys stay under their
//     prefixes inside the system span, node and liveness keys keep the
//     order of node IDs, and distinct inputs give distinct keys.
func FuzzUserAndSystemKeys(f *testing.F) {
	f.Fuzz(func(t *testing.T, a, b []byte, n1, n2 uint64) {
		for _, k := range [][]byte{a, b} {
			uk := UserKey(k)
			if !IsUserKey(uk) || !InSpan(uk, UserPrefix, UserSpanEnd) {
				t.Fatalf("UserKey(%q) = %q is outside the user span [%q, %q)", k, uk, UserPrefix, UserSpanEnd)
			}
			if InSpan(uk, KeyMin, SystemStart) || InSpan(uk, SystemStart, UserPrefix) {
				t.Fatalf("UserKey(%q) = %q lies in the meta or system span", k, uk)
			}
			back, err := ClientKey(uk)
			if err != nil || !bytes.Equal(back, k) {
				t.Fatalf("ClientKey(UserKey(%q)) = %q, %v", k, back, err)
			}
			if got, want := Pretty(uk), strconv.Quote(string(k)); got != want {
				t.Fatalf("Pretty(UserKey(%q)) = %s, want the client key %s", k, got, want)
			}
		}
		if got, want := bytes.Compare(UserKey(a), UserKey(b)), bytes.Compare(a, b); got != want {
			t.Fatalf("UserKey changes the order of %q and %q: %d, want %d", a, b, got, want)
		}

		// Decoding arbitrary bytes as an internal key.
		ck, err := ClientKey(a)
		switch {
		case IsUserKey(a) && (err != nil || !bytes.Equal(UserKey(ck), a)):
			t.Fatalf("ClientKey(%q) = %q, %v: does not map back to the key", a, ck, err)
		case !IsUserKey(a) && (err == nil || !strings.Contains(err.Error(), "not in the user span")):
			t.Fatalf("ClientKey(%q) = %q, %v: want an error saying it is not in the user span", a, ck, err)
		}
		if p := Pretty(a); IsUserKey(a) == strings.HasPrefix(p, "/System/") {
			t.Fatalf("Pretty(%q) = %s: user keys print as client keys, others as /System/", a, p)
		}

		// Client spans.
		if bytes.Compare(a, b) <= 0 || len(b) == 0 {
			s, e := UserSpan(a, b)
			if !ContainsSpan(s, e, UserPrefix, UserSpanEnd) {
				t.Fatalf("UserSpan(%q, %q) = [%q, %q) is not inside the user span", a, b, s, e)
			}
			if len(b) == 0 && !bytes.Equal(e, UserSpanEnd) {
				t.Fatalf("UserSpan(%q, \"\") ends at %q, want the end of the user span", a, e)
			}
			// A client key is in the client span iff its user key is in
			// the mapped span.
			for _, k := range [][]byte{a, b, Next(a)} {
				inClient := bytes.Compare(k, a) >= 0 && (len(b) == 0 || bytes.Compare(k, b) < 0)
				if got := InSpan(UserKey(k), s, e); got != inClient {
					t.Fatalf("UserSpan(%q, %q) = [%q, %q): contains UserKey(%q) = %v, want %v", a, b, s, e, k, got, inClient)
				}
			}
		}

		// Next is the immediate successor.
		na := Next(a)
		if bytes.Compare(na, a) <= 0 || (bytes.Compare(b, a) > 0 && bytes.Compare(b, na) < 0) {
			t.Fatalf("Next(%q) = %q is not the smallest key above it (b = %q)", a, na, b)
		}

		// Meta records.
		ma, mb := MetaKey(a), MetaKey(b)
		if !InSpan(ma, MetaPrefix, MetaSpanEnd) || !bytes.HasPrefix(ma, MetaPrefix) || !bytes.Equal(ma[len(MetaPrefix):], a) {
			t.Fatalf("MetaKey(%q) = %q is not MetaPrefix + end key inside the meta span", a, ma)
		}
		if bytes.Compare(ma, mb) != bytes.Compare(a, b) {
			t.Fatalf("MetaKey changes the order of %q and %q", a, b)
		}
		// The range ending at b contains a iff its record is at or after
		// MetaLookupStart(a), i.e. iff b > a.
		if got, want := bytes.Compare(mb, MetaLookupStart(a)) >= 0, bytes.Compare(b, a) > 0; got != want {
			t.Fatalf("MetaKey(%q) >= MetaLookupStart(%q) is %v, want %v (end %q > key %q)", b, a, got, want, b, a)
		}

		// System keys.
		type sysKey struct {
			name   string
			prefix []byte
			ka, kb []byte
			same   bool // the inputs of ka and kb are equal
		}
		sys := []sysKey{
			{"NodeKey", NodePrefix, NodeKey(n1), NodeKey(n2), n1 == n2},
			{"LivenessKey", LivenessPrefix, LivenessKey(n1), LivenessKey(n2), n1 == n2},
			{"NodeJoinKey", NodeJoinPrefix, NodeJoinKey(string(a)), NodeJoinKey(string(b)), bytes.Equal(a, b)},
			{"ZoneKey", ZonePrefix, ZoneKey(a), ZoneKey(b), bytes.Equal(a, b)},
			{"ProtectionKey", ProtectionPrefix, ProtectionKey(string(a)), ProtectionKey(string(b)), bytes.Equal(a, b)},
		}
		for _, s := range sys {
			for _, k := range [][]byte{s.ka, s.kb} {
				if !bytes.HasPrefix(k, s.prefix) || !InSpan(k, s.prefix, PrefixEnd(s.prefix)) {
					t.Fatalf("%s = %q is not under its prefix %q", s.name, k, s.prefix)
				}
				if !InSpan(k, SystemStart, UserPrefix) || IsUserKey(k) {
					t.Fatalf("%s = %q is outside the system span [%q, %q)", s.name, k, SystemStart, UserPrefix)
				}
				if _, err := ClientKey(k); err == nil {
					t.Fatalf("ClientKey accepted the system key %s = %q", s.name, k)
				}
			}
			if bytes.Equal(s.ka, s.kb) != s.same {
				t.Fatalf("%s: keys %q and %q, inputs equal: %v", s.name, s.ka, s.kb, s.same)
			}
		}
		for _, s := range sys[:2] {
			want := 0
			if n1 < n2 {
				want = -1
			} else if n1 > n2 {
				want = 1
			}
			if got := bytes.Compare(s.ka, s.kb); got != want {
				t.Fatalf("%s changes the order of node IDs %d and %d", s.name, n1, n2)
			}
		}

		// PrefixEnd (for prefixes whose last byte is not 0xff, its
		// documented domain) bounds every key with the prefix.
		if len(a) > 0 && a[len(a)-1] != 0xff {
			end := PrefixEnd(a)
			if bytes.Compare(a, end) >= 0 || bytes.Compare(append(append([]byte(nil), a...), b...), end) >= 0 {
				t.Fatalf("PrefixEnd(%q) = %q does not bound the keys with that prefix", a, end)
			}
			if bytes.HasPrefix(b, a) != InSpan(b, a, end) {
				t.Fatalf("PrefixEnd(%q) = %q: %q has the prefix %v but lies in the span %v", a, end, b, bytes.HasPrefix(b, a), InSpan(b, a, end))
			}
		}
	})
}
