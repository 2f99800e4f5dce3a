package kv

import (
	"fmt"
	"strings"
	"testing"
)

func renderExport(xs []ExportedKV) string {
	var parts []string
	for _, x := range xs {
		v := string(x.Value)
		if x.Deleted {
			v = "<del>"
		}
		parts = append(parts, fmt.Sprintf("%s@%d=%s", x.Key, x.Timestamp.WallTime, v))
	}
	return strings.Join(parts, " ")
}

// TestMVCCExport: a full export is the scan at endTS; an incremental one
// holds each key's newest version in (startTS, endTS], deletions as
// tombstones, and nothing for keys unchanged in the window.
func TestMVCCExport(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{
		put("a", 10, "a10"), put("a", 30, "a30"),
		put("b", 10, "b10"), del("b", 25),
		put("c", 20, "c20"),
		put("d", 40, "d40"),
		put("e", 10, "e10"), del("e", 15), put("e", 35, "e35"),
	})
	for _, c := range []struct {
		start, end int64
		want       string
	}{
		{0, 5, ""},
		{0, 10, "a@10=a10 b@10=b10 e@10=e10"},
		{0, 20, "a@10=a10 b@10=b10 c@20=c20"},
		{0, 100, "a@30=a30 c@20=c20 d@40=d40 e@35=e35"},
		{10, 20, "c@20=c20 e@15=<del>"},
		{20, 30, "a@30=a30 b@25=<del>"},
		{30, 40, "d@40=d40 e@35=e35"},
		{40, 100, ""},
	} {
		got, resume, err := MVCCExport(e, nil, nil, ts(c.start), ts(c.end), ExportOptions{})
		if err != nil {
			t.Fatalf("(%d, %d]: %v", c.start, c.end, err)
		}
		if r := renderExport(got); r != c.want || resume != nil {
			t.Errorf("(%d, %d]: got %q resume %q, want %q", c.start, c.end, r, resume, c.want)
		}
		if c.start == 0 {
			// A full export equals the scan at its end timestamp.
			kvs, _, err := MVCCScan(e, nil, nil, ts(c.end), ScanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(kvs) != len(got) {
				t.Errorf("(0, %d]: scan has %d keys, export %d", c.end, len(kvs), len(got))
			}
		}
	}
	// Paging: one key per call with a tiny byte budget, resuming at the
	// next key, gives the same versions.
	var paged []ExportedKV
	var start []byte
	for calls := 0; ; calls++ {
		if calls > 10 {
			t.Fatal("export does not make progress")
		}
		got, resume, err := MVCCExport(e, start, nil, ts(10), ts(40), ExportOptions{MaxBytes: 1})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, got...)
		if resume == nil {
			break
		}
		start = resume
	}
	if got, want := renderExport(paged), "a@30=a30 b@25=<del> c@20=c20 d@40=d40 e@35=e35"; got != want {
		t.Errorf("paged: got %q, want %q", got, want)
	}
	if _, _, err := MVCCExport(e, nil, nil, ts(20), ts(20), ExportOptions{}); err == nil {
		t.Error("start timestamp = end timestamp was accepted")
	}
	if _, _, err := MVCCExport(e, nil, nil, Timestamp{}, Timestamp{}, ExportOptions{}); err == nil {
		t.Error("empty end timestamp was accepted")
	}
}
