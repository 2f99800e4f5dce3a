package ranges

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/rangestore/rangestore/kv"
)

// TestLocalKeyEncodings pins the bytes of the range and replica state keys
// (they are on disk: a change of encoding loses every range's state) and
// checks that each builder allocates its key once.
func TestLocalKeyEncodings(t *testing.T) {
	pid := []byte{0xaa, 0xbb}
	for _, c := range []struct {
		name string
		got  []byte
		want string
	}{
		{"rangeStatePrefix", rangeStatePrefix(0x0102), "0172" + "0000000000000102"},
		{"rangeStateKey", rangeStateKey(7, suffixLease), "0172" + "0000000000000007" + hex.EncodeToString([]byte("lease"))},
		{"dedupKey", dedupKey(7, 0x11, pid), "0172" + "0000000000000007" + hex.EncodeToString([]byte("dedup")) + "0000000000000011" + "aabb"},
		{"replicaStateRangePrefix", replicaStateRangePrefix(7), "0170" + "0000000000000007"},
		{"replicaStateKey", replicaStateKey(7, 3, suffixApplied), "0170" + "0000000000000007" + "0000000000000003" + hex.EncodeToString([]byte("applied"))},
		{"encodeTS", encodeTS(kv.Timestamp{WallTime: 5, Logical: 2}), "0000000000000005" + "00000002"},
		{"encodeUint64", encodeUint64(9), "0000000000000009"},
	} {
		if got := hex.EncodeToString(c.got); got != c.want {
			t.Errorf("%s = %s, want %s", c.name, got, c.want)
		}
	}
	start, end := dedupSpanBefore(7, 0x11)
	if !bytes.Equal(start, rangeStateKey(7, suffixDedup)) || !bytes.Equal(end, dedupKey(7, 0x11, nil)) {
		t.Errorf("dedupSpanBefore = %x, %x", start, end)
	}
	for name, f := range map[string]func(){
		"rangeStateKey":   func() { _ = rangeStateKey(7, suffixLease) },
		"dedupKey":        func() { _ = dedupKey(7, 0x11, pid) },
		"replicaStateKey": func() { _ = replicaStateKey(7, 3, suffixApplied) },
		"encodeTS":        func() { _ = encodeTS(kv.Timestamp{WallTime: 5}) },
	} {
		if n := testing.AllocsPerRun(100, f); n > 1 {
			t.Errorf("%s allocates %.0f times, want 1", name, n)
		}
	}
}
