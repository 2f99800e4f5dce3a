package kv

import (
	"fmt"
	"math/rand/v2"
	"sort"
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

// exportFixture is an engine with five keys' histories: values,
// deletions, a key written again after its deletion.
func exportFixture(t *testing.T) *Engine {
	e := newTestEngine(t)
	applyOps(t, e, []op{
		put("a", 10, "a10"), put("a", 30, "a30"),
		put("b", 10, "b10"), del("b", 25),
		put("c", 20, "c20"),
		put("d", 40, "d40"),
		put("e", 10, "e10"), del("e", 15), put("e", 35, "e35"),
	})
	return e
}

// TestMVCCExport: a full export is the scan at endTS; an incremental one
// holds each key's newest version in (startTS, endTS], deletions as
// tombstones, and nothing for keys unchanged in the window.
func TestMVCCExport(t *testing.T) {
	e := exportFixture(t)
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

// TestMVCCExportAllVersions: every version in (startTS, endTS], newest
// first per key, tombstones included; paging never splits a key; intents
// at or below endTS fail it, above it they are skipped.
func TestMVCCExportAllVersions(t *testing.T) {
	e := exportFixture(t)
	for _, c := range []struct {
		start, end int64
		want       string
	}{
		{0, 5, ""},
		{0, 10, "a@10=a10 b@10=b10 e@10=e10"},
		{0, 100, "a@30=a30 a@10=a10 b@25=<del> b@10=b10 c@20=c20 d@40=d40 e@35=e35 e@15=<del> e@10=e10"},
		{10, 30, "a@30=a30 b@25=<del> c@20=c20 e@15=<del>"},
		{15, 35, "a@30=a30 b@25=<del> c@20=c20 e@35=e35"},
		{40, 100, ""},
	} {
		got, resume, err := MVCCExportAllVersions(e, nil, nil, ts(c.start), ts(c.end), ExportOptions{})
		if err != nil {
			t.Fatalf("(%d, %d]: %v", c.start, c.end, err)
		}
		if r := renderExport(got); r != c.want || resume != nil {
			t.Errorf("(%d, %d]: got %q resume %q, want %q", c.start, c.end, r, resume, c.want)
		}
	}
	// A span: [b, e).
	got, _, err := MVCCExportAllVersions(e, []byte("b"), []byte("e"), Timestamp{}, ts(100), ExportOptions{})
	if err != nil || renderExport(got) != "b@25=<del> b@10=b10 c@20=c20 d@40=d40" {
		t.Errorf("[b, e): got %q, %v", renderExport(got), err)
	}
	// Paging with a tiny budget: one whole key per call.
	var pages []string
	var start []byte
	for calls := 0; ; calls++ {
		if calls > 10 {
			t.Fatal("export does not make progress")
		}
		got, resume, err := MVCCExportAllVersions(e, start, nil, Timestamp{}, ts(100), ExportOptions{MaxBytes: 1})
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, renderExport(got))
		if resume == nil {
			break
		}
		start = resume
	}
	want := []string{"a@30=a30 a@10=a10", "b@25=<del> b@10=b10", "c@20=c20", "d@40=d40", "e@35=e35 e@15=<del> e@10=e10"}
	if strings.Join(pages, " | ") != strings.Join(want, " | ") {
		t.Errorf("pages %q, want %q", pages, want)
	}
	for _, c := range []struct{ start, end int64 }{{20, 20}, {30, 20}, {0, 0}} {
		if _, _, err := MVCCExportAllVersions(e, nil, nil, ts(c.start), ts(c.end), ExportOptions{}); err == nil {
			t.Errorf("(%d, %d] was accepted", c.start, c.end)
		}
	}
	if _, _, err := MVCCExportAllVersions(e, nil, nil, Timestamp{}, ts(10), ExportOptions{MaxBytes: -1}); err == nil {
		t.Error("negative MaxBytes was accepted")
	}
}

func TestMVCCExportAllVersionsIntents(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{put("a", 5, "a5"), put("a", 10, "a10"), put("b", 10, "b10"), put("c", 10, "c10")})
	mustWrite(t, e, func(b *Batch) error { return MVCCPut(b, []byte("a"), ts(20), []byte("A"), false, txnA(0)) })
	mustWrite(t, e, func(b *Batch) error { return MVCCPut(b, []byte("c"), ts(30), nil, true, txnB(0)) })

	// At or above an intent: the export fails on every intent it met.
	_, _, err := MVCCExportAllVersions(e, nil, nil, Timestamp{}, ts(40), ExportOptions{})
	if got := intentKeys(t, err); got != "a@20(A) c@30(B)" {
		t.Errorf("export at 40 conflicts with %s", got)
	}
	_, _, err = MVCCExportAllVersions(e, nil, nil, Timestamp{}, ts(25), ExportOptions{})
	if got := intentKeys(t, err); got != "a@20(A)" {
		t.Errorf("export at 25 conflicts with %s", got)
	}
	// Below them: the committed versions beneath.
	out, _, err := MVCCExportAllVersions(e, nil, nil, Timestamp{}, ts(15), ExportOptions{})
	if got := renderExport(out); err != nil || got != "a@10=a10 a@5=a5 b@10=b10 c@10=c10" {
		t.Errorf("export at 15 = %q, %v", got, err)
	}
	// Resolved: the intent becomes a committed version like any other.
	mustWrite(t, e, func(b *Batch) error {
		_, err := MVCCResolveIntent(b, []byte("a"), txnA(0).ID, 0, true, ts(22))
		return err
	})
	out, _, err = MVCCExportAllVersions(e, nil, []byte("c"), Timestamp{}, ts(40), ExportOptions{})
	if got := renderExport(out); err != nil || got != "a@22=A a@10=a10 a@5=a5 b@10=b10" {
		t.Errorf("export of [a, c) at 40 after resolution = %q, %v", got, err)
	}
}

// TestMVCCExportAllVersionsModel compares random histories with the
// versions in the engine, filtered by window: every window, every page
// size.
func TestMVCCExportAllVersionsModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 7))
	for round := 0; round < 20; round++ {
		e := newTestEngine(t)
		type ver struct {
			key  string
			wall int64
			val  string // "" is a tombstone
		}
		var all []ver
		var ops []op
		seen := map[string]bool{}
		for i := 0; i < 60; i++ {
			k := string(rune('a' + rng.IntN(6)))
			w := 1 + rng.Int64N(50)
			if seen[fmt.Sprint(k, w)] {
				continue
			}
			seen[fmt.Sprint(k, w)] = true
			if rng.IntN(4) == 0 {
				ops = append(ops, del(k, w))
				all = append(all, ver{k, w, ""})
			} else {
				v := fmt.Sprintf("%s%d", k, w)
				ops = append(ops, put(k, w, v))
				all = append(all, ver{k, w, v})
			}
		}
		applyOps(t, e, ops)
		sort.Slice(all, func(i, j int) bool {
			return all[i].key < all[j].key || (all[i].key == all[j].key && all[i].wall > all[j].wall)
		})
		for _, win := range [][2]int64{{0, 51}, {0, 25}, {10, 40}, {25, 26}, {49, 60}} {
			var want []string
			for _, v := range all {
				if win[0] < v.wall && v.wall <= win[1] {
					s := v.val
					if s == "" {
						s = "<del>"
					}
					want = append(want, fmt.Sprintf("%s@%d=%s", v.key, v.wall, s))
				}
			}
			for _, maxBytes := range []int64{0, 1, 7, 30} {
				var got []string
				var start []byte
				for calls := 0; ; calls++ {
					if calls > 100 {
						t.Fatal("no progress")
					}
					out, resume, err := MVCCExportAllVersions(e, start, nil, ts(win[0]), ts(win[1]), ExportOptions{MaxBytes: maxBytes})
					if err != nil {
						t.Fatal(err)
					}
					if s := renderExport(out); s != "" {
						got = append(got, s)
					}
					if resume == nil {
						break
					}
					if len(out) > 0 && string(out[len(out)-1].Key) >= string(resume) {
						t.Fatalf("resume %q is not after the page's last key %q", resume, out[len(out)-1].Key)
					}
					start = resume
				}
				if g, w := strings.Join(got, " "), strings.Join(want, " "); g != w {
					t.Fatalf("round %d window %v maxBytes %d:\n got %s\nwant %s", round, win, maxBytes, g, w)
				}
			}
		}
	}
}
