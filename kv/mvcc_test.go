package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func newTestEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

func ts(wall int64) Timestamp { return Timestamp{WallTime: wall} }

// op is one write in a test fixture. value == nil means a tombstone.
type op struct {
	key   string
	wall  int64
	value *string
}

func val(s string) *string { return &s }

func put(k string, wall int64, v string) op { return op{k, wall, val(v)} }
func del(k string, wall int64) op           { return op{k, wall, nil} }

func applyOps(t *testing.T, e *Engine, ops []op) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	for _, o := range ops {
		var err error
		if o.value == nil {
			err = b.DeleteMVCC([]byte(o.key), ts(o.wall))
		} else {
			err = b.PutMVCC([]byte(o.key), ts(o.wall), []byte(*o.value))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
}

// dump renders every MVCC version in the engine as "key@wall=value" or
// "key@wall=<del>", an intent followed by "(txn/epoch)", in engine order.
func dump(t *testing.T, r Reader) []string {
	t.Helper()
	var out []string
	err := IterateDataSpan(r, nil, nil, func(ek, v []byte) error {
		k, vts, err := DecodeMVCCKey(ek)
		if err != nil {
			return err
		}
		d, err := decodeVersionValue(v)
		if err != nil {
			return err
		}
		s := string(d.payload)
		if d.tombstone {
			s = "<del>"
		}
		if d.intent {
			s += fmt.Sprintf("(%s/%d)", d.txnID, d.epoch)
		}
		out = append(out, fmt.Sprintf("%s@%d=%s", k, vts.WallTime, s))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func renderKVs(kvs []KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, fmt.Sprintf("%s@%d=%s", kv.Key, kv.Timestamp.WallTime, kv.Value))
	}
	return strings.Join(parts, " ")
}

func TestMVCCGet(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{
		put("a", 10, "a10"), put("a", 20, "a20"), del("a", 30), put("a", 40, "a40"),
		put("a\x00", 15, "anul15"),
		put("ab", 5, "ab5"),
		del("d", 10),
	})
	tests := []struct {
		key   string
		read  int64
		want  string // "" = not found
		wantT int64
	}{
		{"a", 5, "", 0},
		{"a", 10, "a10", 10},
		{"a", 15, "a10", 10},
		{"a", 20, "a20", 20},
		{"a", 29, "a20", 20},
		{"a", 30, "", 0},
		{"a", 35, "", 0},
		{"a", 40, "a40", 40},
		{"a", 1 << 62, "a40", 40},
		{"a\x00", 14, "", 0},
		{"a\x00", 15, "anul15", 15},
		{"ab", 100, "ab5", 5},
		{"b", 100, "", 0},
		{"d", 100, "", 0},
		{"\x00", 100, "", 0},
	}
	for _, tc := range tests {
		kv, found, err := MVCCGet(e, []byte(tc.key), ts(tc.read))
		if err != nil {
			t.Fatalf("get %q@%d: %v", tc.key, tc.read, err)
		}
		if found != (tc.want != "") || string(kv.Value) != tc.want || kv.Timestamp.WallTime != tc.wantT {
			t.Errorf("get %q@%d = (%q@%s, %v), want %q@%d", tc.key, tc.read, kv.Value, kv.Timestamp, found, tc.want, tc.wantT)
		}
		if found && string(kv.Key) != tc.key {
			t.Errorf("get %q: key %q", tc.key, kv.Key)
		}
	}
	// MaxTimestamp reads see the newest version.
	if kv, found, err := MVCCGet(e, []byte("a"), MaxTimestamp); err != nil || !found || string(kv.Value) != "a40" {
		t.Errorf("get a@max = %q %v %v", kv.Value, found, err)
	}
}

func TestMVCCGetNewestVersion(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{put("a", 10, "x"), del("a", 20), put("b", 7, "y"), put("ab", 9, "z")})
	tests := []struct {
		key    string
		want   int64
		exists bool
	}{
		{"a", 20, true},
		{"b", 7, true},
		{"ab", 9, true},
		{"aa", 0, false},
		{"c", 0, false},
	}
	for _, tc := range tests {
		got, exists, err := MVCCGetNewestVersion(e, []byte(tc.key))
		if err != nil || exists != tc.exists || got.WallTime != tc.want {
			t.Errorf("newest(%q) = %s %v %v, want %d %v", tc.key, got, exists, err, tc.want, tc.exists)
		}
	}
}

func TestBatchReadYourWrites(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{put("a", 10, "committed"), put("c", 10, "c")})
	b := e.NewBatch()
	defer b.Close()
	if !b.Empty() {
		t.Fatal("new batch not empty")
	}
	if err := b.PutMVCC([]byte("a"), ts(20), []byte("batch")); err != nil {
		t.Fatal(err)
	}
	if err := b.PutMVCC([]byte("b"), ts(20), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteMVCC([]byte("c"), ts(20)); err != nil {
		t.Fatal(err)
	}
	if err := b.PutRaw([]byte{LocalPrefix, 'x'}, []byte("raw")); err != nil {
		t.Fatal(err)
	}
	if b.Empty() || b.Count() != 4 {
		t.Fatalf("batch Empty=%v Count=%d", b.Empty(), b.Count())
	}
	// Through the batch.
	if kv, found, err := MVCCGet(b, []byte("a"), ts(25)); err != nil || !found || string(kv.Value) != "batch" {
		t.Errorf("batch get a = %q %v %v", kv.Value, found, err)
	}
	if kv, found, err := MVCCGet(b, []byte("a"), ts(15)); err != nil || !found || string(kv.Value) != "committed" {
		t.Errorf("batch get a@15 = %q %v %v", kv.Value, found, err)
	}
	if _, found, err := MVCCGet(b, []byte("c"), ts(25)); err != nil || found {
		t.Errorf("batch get c = %v %v, want not found", found, err)
	}
	if v, ok, err := b.GetRaw([]byte{LocalPrefix, 'x'}); err != nil || !ok || string(v) != "raw" {
		t.Errorf("batch GetRaw = %q %v %v", v, ok, err)
	}
	kvs, _, err := MVCCScan(b, nil, nil, ts(25), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := renderKVs(kvs), "a@20=batch b@20=b"; got != want {
		t.Errorf("batch scan = %q, want %q", got, want)
	}
	// The engine does not see uncommitted writes.
	if kv, found, err := MVCCGet(e, []byte("a"), ts(25)); err != nil || !found || string(kv.Value) != "committed" {
		t.Errorf("engine get a = %q %v %v", kv.Value, found, err)
	}
	if _, ok, err := e.GetRaw([]byte{LocalPrefix, 'x'}); err != nil || ok {
		t.Errorf("engine GetRaw before commit = %v %v", ok, err)
	}
	snap := e.NewSnapshot()
	defer snap.Close()
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	if kv, found, err := MVCCGet(e, []byte("a"), ts(25)); err != nil || !found || string(kv.Value) != "batch" {
		t.Errorf("engine get a after commit = %q %v %v", kv.Value, found, err)
	}
	// The snapshot predates the commit.
	if kv, found, err := MVCCGet(snap, []byte("a"), ts(25)); err != nil || !found || string(kv.Value) != "committed" {
		t.Errorf("snapshot get a = %q %v %v", kv.Value, found, err)
	}
	if _, ok, err := snap.GetRaw([]byte{LocalPrefix, 'x'}); err != nil || ok {
		t.Errorf("snapshot GetRaw = %v %v", ok, err)
	}
}

func TestRawOps(t *testing.T) {
	e := newTestEngine(t)
	b := e.NewBatch()
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := b.PutRaw([]byte{LocalPrefix, k[0]}, []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.PutMVCC([]byte("a"), ts(1), []byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()

	b = e.NewBatch()
	defer b.Close()
	if err := b.DeleteRaw([]byte{LocalPrefix, 'a'}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteRawRange([]byte{LocalPrefix, 'b'}, []byte{LocalPrefix, 'd'}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteRawRange([]byte{LocalPrefix, 'd'}, []byte{LocalPrefix, 'c'}); !errors.Is(err, ErrInvalidSpan) {
		t.Errorf("reversed DeleteRawRange err = %v", err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		k    byte
		want string
	}{{'a', ""}, {'b', ""}, {'c', ""}, {'d', "vd"}} {
		v, ok, err := e.GetRaw([]byte{LocalPrefix, tc.k})
		if err != nil || ok != (tc.want != "") || string(v) != tc.want {
			t.Errorf("GetRaw(%c) = %q %v %v, want %q", tc.k, v, ok, err, tc.want)
		}
	}
	// Local keys are invisible to MVCC scans and vice versa.
	kvs, _, err := MVCCScan(e, nil, nil, MaxTimestamp, ScanOptions{})
	if err != nil || renderKVs(kvs) != "a@1=data" {
		t.Errorf("scan = %q %v", renderKVs(kvs), err)
	}
	// Returned raw values are copies.
	v, _, _ := e.GetRaw([]byte{LocalPrefix, 'd'})
	v[0] = 'X'
	if v2, _, _ := e.GetRaw([]byte{LocalPrefix, 'd'}); string(v2) != "vd" {
		t.Errorf("GetRaw aliasing: %q", v2)
	}
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestWriteErrors(t *testing.T) {
	e := newTestEngine(t)
	b := e.NewBatch()
	defer b.Close()
	tests := []struct {
		name string
		fn   func() error
		want error
	}{
		{"put empty key", func() error { return b.PutMVCC(nil, ts(1), []byte("v")) }, ErrEmptyKey},
		{"put empty ts", func() error { return b.PutMVCC([]byte("a"), Timestamp{}, []byte("v")) }, ErrEmptyTimestamp},
		{"delete empty key", func() error { return b.DeleteMVCC([]byte{}, ts(1)) }, ErrEmptyKey},
		{"delete empty ts", func() error { return b.DeleteMVCC([]byte("a"), Timestamp{}) }, ErrEmptyTimestamp},
		{"put raw empty key", func() error { return b.PutRaw(nil, []byte("v")) }, ErrEmptyKey},
		{"get empty key", func() error { _, _, err := MVCCGet(e, nil, ts(1)); return err }, ErrEmptyKey},
		{"get empty ts", func() error { _, _, err := MVCCGet(e, []byte("a"), Timestamp{}); return err }, ErrEmptyTimestamp},
		{"scan empty ts", func() error {
			_, _, err := MVCCScan(e, []byte("a"), []byte("b"), Timestamp{}, ScanOptions{})
			return err
		}, ErrEmptyTimestamp},
		{"scan start > end", func() error {
			_, _, err := MVCCScan(e, []byte("b"), []byte("a"), ts(1), ScanOptions{})
			return err
		}, ErrInvalidSpan},
		{"delete range empty ts", func() error {
			_, _, err := MVCCDeleteRange(b, []byte("a"), []byte("b"), Timestamp{}, 0)
			return err
		}, ErrEmptyTimestamp},
		{"gc start > end", func() error {
			_, err := MVCCGarbageCollect(b, e, []byte("b"), []byte("a"), ts(1))
			return err
		}, ErrInvalidSpan},
		{"stats start > end", func() error { _, err := ComputeStats(e, []byte("b"), []byte("a")); return err }, ErrInvalidSpan},
		{"clear start > end", func() error { return ClearDataSpan(b, []byte("b"), []byte("a")) }, ErrInvalidSpan},
		{"iterate start > end", func() error {
			return IterateDataSpan(e, []byte("b"), []byte("a"), func(_, _ []byte) error { return nil })
		}, ErrInvalidSpan},
	}
	for _, tc := range tests {
		err := tc.fn()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "kv: ") {
			t.Errorf("%s: error %q lacks kv: prefix", tc.name, err)
		}
	}
	if !b.Empty() {
		t.Error("failed writes modified the batch")
	}
}

// scanFixture is shared by the scan tests: keys with shared prefixes, NUL
// bytes, tombstones and versions above the read timestamp.
var scanFixture = []op{
	put("a", 1, "a1"), put("a", 3, "a3"),
	put("a\x00", 2, "anul"),
	put("aa", 1, "aa1"), del("aa", 2),
	put("aaa", 1, "aaa1"),
	put("ab", 5, "ab5"), // above read ts 4
	put("b", 1, "b1"), del("b", 4), put("b", 6, "b6"),
	put("ba", 2, "ba2"),
	put("c", 4, "c4"),
	del("d", 1),
	put("e\xff", 2, "eff"),
}

func TestMVCCScan(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, scanFixture)
	tests := []struct {
		name       string
		start, end string
		nilEnd     bool
		read       int64
		opts       ScanOptions
		want       string
		wantResume string // "" = nil
	}{
		{name: "all@4", start: "", nilEnd: true, read: 4, want: "a@3=a3 a\x00@2=anul aaa@1=aaa1 ba@2=ba2 c@4=c4 e\xff@2=eff"},
		{name: "all@max", start: "", nilEnd: true, read: 1 << 62, want: "a@3=a3 a\x00@2=anul aaa@1=aaa1 ab@5=ab5 b@6=b6 ba@2=ba2 c@4=c4 e\xff@2=eff"},
		{name: "all@1", start: "", nilEnd: true, read: 1, want: "a@1=a1 aa@1=aa1 aaa@1=aaa1 b@1=b1"},
		{name: "prefix a", start: "a", end: "b", read: 4, want: "a@3=a3 a\x00@2=anul aaa@1=aaa1"},
		{name: "start excludes shorter", start: "a\x00", end: "b", read: 4, want: "a\x00@2=anul aaa@1=aaa1"},
		{name: "end excludes longer", start: "a", end: "a\x00", read: 4, want: "a@3=a3"},
		{name: "empty span", start: "b", end: "b", read: 4, want: ""},
		{name: "span of nothing", start: "f", nilEnd: true, read: 4, want: ""},
		{name: "reverse all@4", start: "", nilEnd: true, read: 4, opts: ScanOptions{Reverse: true},
			want: "e\xff@2=eff c@4=c4 ba@2=ba2 aaa@1=aaa1 a\x00@2=anul a@3=a3"},
		{name: "reverse bounded", start: "a\x00", end: "c", read: 6, opts: ScanOptions{Reverse: true},
			want: "ba@2=ba2 b@6=b6 ab@5=ab5 aaa@1=aaa1 a\x00@2=anul"},
		{name: "limit", start: "", nilEnd: true, read: 4, opts: ScanOptions{Limit: 2},
			want: "a@3=a3 a\x00@2=anul", wantResume: "aa"},
		{name: "limit exact end", start: "c", nilEnd: true, read: 4, opts: ScanOptions{Limit: 2},
			want: "c@4=c4 e\xff@2=eff"},
		{name: "limit reaches last key", start: "", end: "c", read: 4, opts: ScanOptions{Limit: 4},
			want: "a@3=a3 a\x00@2=anul aaa@1=aaa1 ba@2=ba2", wantResume: ""},
		{name: "reverse limit", start: "", nilEnd: true, read: 4, opts: ScanOptions{Limit: 2, Reverse: true},
			want: "e\xff@2=eff c@4=c4", wantResume: "c"},
		{name: "maxbytes", start: "", nilEnd: true, read: 4, opts: ScanOptions{MaxBytes: 3},
			want: "a@3=a3", wantResume: "a\x00"},
		{name: "maxbytes 1", start: "", nilEnd: true, read: 4, opts: ScanOptions{MaxBytes: 1},
			want: "a@3=a3", wantResume: "a\x00"},
		{name: "maxbytes spans two", start: "", nilEnd: true, read: 4, opts: ScanOptions{MaxBytes: 4},
			want: "a@3=a3 a\x00@2=anul", wantResume: "aa"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var end []byte
			if !tc.nilEnd {
				end = []byte(tc.end)
			}
			kvs, resume, err := MVCCScan(e, []byte(tc.start), end, ts(tc.read), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := renderKVs(kvs); got != tc.want {
				t.Errorf("scan = %q, want %q", got, tc.want)
			}
			if tc.wantResume == "" && resume != nil || tc.wantResume != "" && string(resume) != tc.wantResume {
				t.Errorf("resume = %q (nil=%v), want %q", resume, resume == nil, tc.wantResume)
			}
		})
	}
}

// model is a reference MVCC store.
type model map[string]map[Timestamp]*string

func (m model) scan(start, end []byte, read Timestamp) []KeyValue {
	var keys []string
	for k := range m {
		if k >= string(start) && (end == nil || k < string(end)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []KeyValue
	for _, k := range keys {
		var best Timestamp
		var bestV *string
		for vts, v := range m[k] {
			if vts.LessEq(read) && best.Less(vts) {
				best, bestV = vts, v
			}
		}
		if !best.IsEmpty() && bestV != nil {
			out = append(out, KeyValue{Key: []byte(k), Value: []byte(*bestV), Timestamp: best})
		}
	}
	return out
}

func equalKVs(a, b []KeyValue) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) || a[i].Timestamp != b[i].Timestamp {
			return false
		}
	}
	return true
}

func reversed(kvs []KeyValue) []KeyValue {
	out := make([]KeyValue, len(kvs))
	for i, kv := range kvs {
		out[len(kvs)-1-i] = kv
	}
	return out
}

// TestMVCCScanRandomResume compares scans against a reference model and
// checks that paginating with resume keys reproduces the full result.
func TestMVCCScanRandomResume(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	e := newTestEngine(t)
	m := model{}
	b := e.NewBatch()
	for i := 0; i < 400; i++ {
		k := randKey(rng, false)
		vts := Timestamp{WallTime: 1 + rng.Int63n(10), Logical: int32(rng.Intn(2))}
		var v *string
		var err error
		if rng.Intn(4) == 0 {
			err = b.DeleteMVCC(k, vts)
		} else {
			s := fmt.Sprintf("v%d", i)
			v = &s
			err = b.PutMVCC(k, vts, []byte(s))
		}
		if err != nil {
			t.Fatal(err)
		}
		if m[string(k)] == nil {
			m[string(k)] = map[Timestamp]*string{}
		}
		m[string(k)][vts] = v
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()

	for trial := 0; trial < 60; trial++ {
		start := randKey(rng, true)
		var end []byte
		if rng.Intn(4) != 0 {
			end = randKey(rng, true)
			if bytes.Compare(start, end) > 0 {
				start, end = end, start
			}
		}
		read := Timestamp{WallTime: 1 + rng.Int63n(11), Logical: int32(rng.Intn(2))}
		want := m.scan(start, end, read)
		for _, reverse := range []bool{false, true} {
			full, resume, err := MVCCScan(e, start, end, read, ScanOptions{Reverse: reverse})
			if err != nil {
				t.Fatal(err)
			}
			exp := want
			if reverse {
				exp = reversed(want)
			}
			if resume != nil || !equalKVs(full, exp) {
				t.Fatalf("scan [%q,%q)@%s reverse=%v = %q (resume %q), want %q", start, end, read, reverse, renderKVs(full), resume, renderKVs(exp))
			}
			for _, opts := range []ScanOptions{
				{Limit: 1}, {Limit: 3}, {MaxBytes: 1}, {MaxBytes: 10}, {Limit: 2, MaxBytes: 6},
			} {
				opts.Reverse = reverse
				var got []KeyValue
				s, en := start, end
				for calls := 0; ; calls++ {
					if calls > len(exp)+2 {
						t.Fatalf("pagination does not terminate")
					}
					kvs, resume, err := MVCCScan(e, s, en, read, opts)
					if err != nil {
						t.Fatal(err)
					}
					if opts.Limit > 0 && len(kvs) > opts.Limit {
						t.Fatalf("limit %d exceeded: %d", opts.Limit, len(kvs))
					}
					got = append(got, kvs...)
					if resume == nil {
						break
					}
					if reverse {
						en = resume
					} else {
						s = resume
					}
				}
				if !equalKVs(got, exp) {
					t.Fatalf("paginated scan %+v [%q,%q)@%s = %q, want %q", opts, start, end, read, renderKVs(got), renderKVs(exp))
				}
			}
		}
	}
}

func TestMVCCScanValuesAreCopies(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{put("a", 1, "aaaa"), put("b", 1, "bbbb")})
	kvs, _, err := MVCCScan(e, nil, nil, ts(1), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		for i := range kv.Value {
			kv.Value[i] = 'X'
		}
		kv.Key[0] = 'Z'
	}
	kvs2, _, _ := MVCCScan(e, nil, nil, ts(1), ScanOptions{})
	if got := renderKVs(kvs2); got != "a@1=aaaa b@1=bbbb" {
		t.Errorf("engine data modified through returned slices: %q", got)
	}
}

func TestMVCCDeleteRange(t *testing.T) {
	tests := []struct {
		name        string
		start, end  string
		wall        int64
		max         int
		wantDeleted []string
		wantResume  string
		wantAfter   string // scan at MaxTimestamp after committing
	}{
		{
			// c@4 is overwritten by the tombstone at the same timestamp.
			name: "all live at 4", start: "a", end: "z", wall: 4,
			wantDeleted: []string{"a", "a\x00", "aaa", "ba", "c", "e\xff"},
			wantAfter:   "ab@5=ab5 b@6=b6",
		},
		{
			name: "max 2", start: "a", end: "z", wall: 4, max: 2,
			wantDeleted: []string{"a", "a\x00"}, wantResume: "aa",
			wantAfter: "aaa@1=aaa1 ab@5=ab5 b@6=b6 ba@2=ba2 c@4=c4 e\xff@2=eff",
		},
		{
			name: "subspan at 10", start: "b", end: "c", wall: 10,
			wantDeleted: []string{"b", "ba"},
			wantAfter:   "a@3=a3 a\x00@2=anul aaa@1=aaa1 ab@5=ab5 c@4=c4 e\xff@2=eff",
		},
		{
			name: "nothing live", start: "d", end: "e", wall: 10,
			wantAfter: "a@3=a3 a\x00@2=anul aaa@1=aaa1 ab@5=ab5 b@6=b6 ba@2=ba2 c@4=c4 e\xff@2=eff",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t)
			applyOps(t, e, scanFixture)
			b := e.NewBatch()
			defer b.Close()
			deleted, resume, err := MVCCDeleteRange(b, []byte(tc.start), []byte(tc.end), ts(tc.wall), tc.max)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, k := range deleted {
				got = append(got, string(k))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.wantDeleted) {
				t.Errorf("deleted = %q, want %q", got, tc.wantDeleted)
			}
			if string(resume) != tc.wantResume || (tc.wantResume == "") != (resume == nil) {
				t.Errorf("resume = %q, want %q", resume, tc.wantResume)
			}
			// Deleting again in the same batch finds nothing (reads see the batch).
			if tc.max == 0 {
				again, resume, err := MVCCDeleteRange(b, []byte(tc.start), []byte(tc.end), ts(tc.wall), 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(again) != 0 || resume != nil {
					t.Errorf("second delete range deleted %q (resume %q)", again, resume)
				}
			}
			if err := b.Commit(false); err != nil {
				t.Fatal(err)
			}
			kvs, _, err := MVCCScan(e, nil, nil, MaxTimestamp, ScanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := renderKVs(kvs); got != tc.wantAfter {
				t.Errorf("after = %q, want %q", got, tc.wantAfter)
			}
			// History below the delete timestamp is preserved.
			kvs, _, err = MVCCScan(e, nil, nil, ts(tc.wall-1), ScanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want, _, _ := MVCCScan(newFixtureEngine(t), nil, nil, ts(tc.wall-1), ScanOptions{})
			if !equalKVs(kvs, want) {
				t.Errorf("history changed: %q, want %q", renderKVs(kvs), renderKVs(want))
			}
		})
	}
}

func newFixtureEngine(t *testing.T) *Engine {
	e := newTestEngine(t)
	applyOps(t, e, scanFixture)
	return e
}

func TestMVCCGarbageCollect(t *testing.T) {
	tests := []struct {
		name        string
		ops         []op
		start, end  string
		threshold   int64
		wantRemain  []string
		wantRemoved int64
		wantKeys    int64
	}{
		{
			name:       "nothing at or below threshold",
			ops:        []op{put("a", 5, "a5"), put("a", 6, "a6")},
			threshold:  4,
			wantRemain: []string{"a@6=a6", "a@5=a5"}, wantKeys: 1,
		},
		{
			name:       "keep newest below threshold",
			ops:        []op{put("a", 1, "a1"), put("a", 2, "a2"), put("a", 3, "a3"), put("a", 5, "a5")},
			threshold:  3,
			wantRemain: []string{"a@5=a5", "a@3=a3"}, wantRemoved: 2, wantKeys: 1,
		},
		{
			name:       "threshold between versions",
			ops:        []op{put("a", 1, "a1"), put("a", 2, "a2"), put("a", 5, "a5")},
			threshold:  4,
			wantRemain: []string{"a@5=a5", "a@2=a2"}, wantRemoved: 1, wantKeys: 1,
		},
		{
			name:       "tombstone at threshold removes everything at or below",
			ops:        []op{put("a", 1, "a1"), put("a", 2, "a2"), del("a", 3)},
			threshold:  3,
			wantRemain: nil, wantRemoved: 3, wantKeys: 1,
		},
		{
			name:       "tombstone below threshold, newer value kept",
			ops:        []op{put("a", 1, "a1"), del("a", 2), put("a", 7, "a7")},
			threshold:  5,
			wantRemain: []string{"a@7=a7"}, wantRemoved: 2, wantKeys: 1,
		},
		{
			name:       "older tombstone under a live value",
			ops:        []op{put("a", 1, "a1"), del("a", 2), put("a", 3, "a3")},
			threshold:  5,
			wantRemain: []string{"a@3=a3"}, wantRemoved: 2, wantKeys: 1,
		},
		{
			name:       "tombstone above threshold untouched",
			ops:        []op{put("a", 1, "a1"), put("a", 2, "a2"), del("a", 9)},
			threshold:  5,
			wantRemain: []string{"a@9=<del>", "a@2=a2"}, wantRemoved: 1, wantKeys: 1,
		},
		{
			name: "multiple keys, span bounds respected",
			ops: []op{
				put("a", 1, "a1"), put("a", 2, "a2"),
				put("b", 1, "b1"), del("b", 2),
				put("b\x00", 1, "bn1"), put("b\x00", 3, "bn3"),
				put("c", 1, "c1"), put("c", 2, "c2"),
			},
			start: "b", end: "c", threshold: 10,
			wantRemain:  []string{"a@2=a2", "a@1=a1", "b\x00@3=bn3", "c@2=c2", "c@1=c1"},
			wantRemoved: 3, wantKeys: 2,
		},
		{
			name:       "empty threshold is a no-op",
			ops:        []op{put("a", 1, "a1"), del("a", 2)},
			threshold:  0,
			wantRemain: []string{"a@2=<del>", "a@1=a1"},
		},
	}
	for _, tc := range tests {
		for _, sameReader := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batchReader=%v", tc.name, sameReader), func(t *testing.T) {
				e := newTestEngine(t)
				applyOps(t, e, tc.ops)
				end := []byte(tc.end)
				if tc.end == "" {
					end = nil
				}
				// Reads at or above the threshold must be unaffected by GC.
				var before [][]KeyValue
				reads := []Timestamp{ts(tc.threshold), ts(tc.threshold + 1), MaxTimestamp}
				if tc.threshold == 0 {
					reads = reads[1:]
				}
				for _, rt := range reads {
					kvs, _, err := MVCCScan(e, nil, nil, rt, ScanOptions{})
					if err != nil {
						t.Fatal(err)
					}
					before = append(before, kvs)
				}
				b := e.NewBatch()
				defer b.Close()
				var r Reader = e
				if sameReader {
					r = b
				}
				stats, err := MVCCGarbageCollect(b, r, []byte(tc.start), end, ts(tc.threshold))
				if err != nil {
					t.Fatal(err)
				}
				if stats.VersionsRemoved != tc.wantRemoved || stats.KeysScanned != tc.wantKeys {
					t.Errorf("stats = %+v, want removed %d keys %d", stats, tc.wantRemoved, tc.wantKeys)
				}
				if err := b.Commit(false); err != nil {
					t.Fatal(err)
				}
				if got := dump(t, e); fmt.Sprint(got) != fmt.Sprint(tc.wantRemain) {
					t.Errorf("remaining = %q, want %q", got, tc.wantRemain)
				}
				for i, rt := range reads {
					kvs, _, err := MVCCScan(e, nil, nil, rt, ScanOptions{})
					if err != nil {
						t.Fatal(err)
					}
					if !equalKVs(kvs, before[i]) {
						t.Errorf("read at %s changed by GC: %q -> %q", rt, renderKVs(before[i]), renderKVs(kvs))
					}
				}
			})
		}
	}
}

func TestComputeStats(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, scanFixture)
	tests := []struct {
		name       string
		start, end string
		nilEnd     bool
		want       MVCCStats
	}{
		// Live at max: a(1+2) a\0(2+4) aaa(3+4) ab(2+3) b(1+2) ba(2+3) c(1+2) e\xff(2+3)
		{name: "all", nilEnd: true, want: MVCCStats{LiveKeys: 8, LiveBytes: 3 + 6 + 7 + 5 + 3 + 5 + 3 + 5, Versions: 14}},
		{name: "a span", start: "a", end: "b", want: MVCCStats{LiveKeys: 4, LiveBytes: 3 + 6 + 7 + 5, Versions: 7}},
		{name: "d only tombstone", start: "d", end: "e", want: MVCCStats{Versions: 1}},
		{name: "empty", start: "x", end: "x", want: MVCCStats{}},
	}
	for _, tc := range tests {
		var end []byte
		if !tc.nilEnd {
			end = []byte(tc.end)
		}
		got, err := ComputeStats(e, []byte(tc.start), end)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s: stats = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestIterateAndClearDataSpan(t *testing.T) {
	src := newFixtureEngine(t)
	// Local keys around the data must be untouched.
	b := src.NewBatch()
	if err := b.PutRaw([]byte{LocalPrefix, 'z'}, []byte("local")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()

	// Stream [a, b) into a fresh engine, snapshot-style.
	dst := newTestEngine(t)
	snap := src.NewSnapshot()
	defer snap.Close()
	db := dst.NewBatch()
	n := 0
	err := IterateDataSpan(snap, []byte("a"), []byte("b"), func(k, v []byte) error {
		n++
		return db.PutRaw(k, v)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Commit(false); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if n != 7 {
		t.Errorf("iterated %d versions, want 7", n)
	}
	want := "a@3=a3 a\x00@2=anul aaa@1=aaa1 ab@5=ab5"
	kvs, _, _ := MVCCScan(dst, nil, nil, MaxTimestamp, ScanOptions{})
	if got := renderKVs(kvs); got != want {
		t.Errorf("copied = %q, want %q", got, want)
	}

	// Early stop.
	stop := errors.New("stop")
	calls := 0
	if err := IterateDataSpan(src, nil, nil, func(_, _ []byte) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("early stop: err=%v calls=%d", err, calls)
	}

	// Clear [a, b) in the source.
	cb := src.NewBatch()
	defer cb.Close()
	if err := ClearDataSpan(cb, []byte("a"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	// The batch already reflects the clear.
	if kvs, _, _ := MVCCScan(cb, []byte("a"), []byte("b"), MaxTimestamp, ScanOptions{}); len(kvs) != 0 {
		t.Errorf("batch still sees %q", renderKVs(kvs))
	}
	if err := cb.Commit(false); err != nil {
		t.Fatal(err)
	}
	kvs, _, _ = MVCCScan(src, nil, nil, MaxTimestamp, ScanOptions{})
	if got, want := renderKVs(kvs), "b@6=b6 ba@2=ba2 c@4=c4 e\xff@2=eff"; got != want {
		t.Errorf("after clear = %q, want %q", got, want)
	}
	if st, _ := ComputeStats(src, []byte("a"), []byte("b")); st != (MVCCStats{}) {
		t.Errorf("stats after clear = %+v", st)
	}
	if v, ok, err := src.GetRaw([]byte{LocalPrefix, 'z'}); err != nil || !ok || string(v) != "local" {
		t.Errorf("local key after clear = %q %v %v", v, ok, err)
	}
	// The snapshot still sees the cleared data.
	if kvs, _, _ := MVCCScan(snap, []byte("a"), []byte("b"), MaxTimestamp, ScanOptions{}); len(kvs) != 4 {
		t.Errorf("snapshot sees %q", renderKVs(kvs))
	}
	// Clear everything with an open end.
	cb2 := src.NewBatch()
	defer cb2.Close()
	if err := ClearDataSpan(cb2, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := cb2.Commit(false); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, src); len(got) != 0 {
		t.Errorf("after full clear: %q", got)
	}
}

func TestPersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "db")
	e, err := Open(dir, Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	b := e.NewBatch()
	for i, o := range scanFixture {
		if o.value == nil {
			err = b.DeleteMVCC([]byte(o.key), ts(o.wall))
		} else {
			err = b.PutMVCC([]byte(o.key), ts(o.wall), []byte(*o.value))
		}
		if err != nil {
			t.Fatal(i, err)
		}
	}
	if err := b.PutRaw([]byte{LocalPrefix, 's', 't'}, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	want, _, err := MVCCScan(e, nil, nil, ts(4), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	got, _, err := MVCCScan(e2, nil, nil, ts(4), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !equalKVs(got, want) || len(got) == 0 {
		t.Errorf("after reopen = %q, want %q", renderKVs(got), renderKVs(want))
	}
	if kv, found, err := MVCCGet(e2, []byte("b"), ts(10)); err != nil || !found || string(kv.Value) != "b6" {
		t.Errorf("get b after reopen = %q %v %v", kv.Value, found, err)
	}
	if v, ok, err := e2.GetRaw([]byte{LocalPrefix, 's', 't'}); err != nil || !ok || string(v) != "state" {
		t.Errorf("raw after reopen = %q %v %v", v, ok, err)
	}
}
