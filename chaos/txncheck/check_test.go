package txncheck

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/internal/golden"
)

func ts(w int64) Timestamp { return Timestamp{WallTime: w} }

// get reads k; v == "" means k was absent.
func get(k, v string) Step { return Step{Kind: StepGet, Key: k, Value: v, Found: v != ""} }
func put(k, v string) Step { return Step{Kind: StepPut, Key: k, Value: v} }
func del(k string) Step    { return Step{Kind: StepDelete, Key: k} }

// scan of [start, end) returning rows "k=v".
func scan(start, end string, rows ...string) Step {
	s := Step{Kind: StepScan, Key: start, EndKey: end}
	for _, r := range rows {
		k, v, _ := strings.Cut(r, "=")
		s.Rows = append(s.Rows, KeyValue{Key: k, Value: v})
	}
	return s
}

// at sets a batch step's timestamp.
func at(s Step, w int64) Step { s.Timestamp = ts(w); return s }

// op builds an op of kind k; the kind of a one-step get/put/delete is
// taken from its step unless k is KindTxn or KindBatch.
func op(id, client int, inv, comp, read, commit int64, out Outcome, k Kind, steps ...Step) Op {
	return Op{ID: id, Client: client, Invoke: inv, Complete: comp, Kind: k, Steps: steps,
		ReadTS: ts(read), CommitTS: ts(commit), Outcome: out}
}

// version: v == "" is a tombstone.
func version(k string, w int64, v string) Version {
	return Version{Key: k, Timestamp: ts(w), Value: v, Deleted: v == ""}
}

func intent(v Version) Version { v.Intent = true; return v }

// base is a valid concurrent history of three clients over keys a, b, c,
// x, y (and z, never written): transfers, read-only snapshots, reads with
// unknown timestamps, read-your-writes, scans, a batch, a delete of an
// absent key, and AMBIGUOUS ops the dump shows committed (by values, by
// tombstones) or not applied.
func base() (History, Dump) {
	h := History{
		op(1, 1, 0, 5, 0, 10, OK, KindPut, put("a", "a1")),
		op(2, 2, 1, 6, 0, 11, OK, KindPut, put("b", "b1")),
		// A transfer, and a snapshot concurrent with it, below its commit.
		op(3, 1, 10, 20, 12, 14, OK, KindTxn, get("a", "a1"), get("b", "b1"), put("a", "a2"), put("b", "b2")),
		op(4, 2, 12, 18, 13, 0, OK, KindTxn, get("a", "a1"), get("b", "b1")),
		op(5, 3, 25, 26, 0, 0, OK, KindGet, get("a", "a2")),
		op(6, 3, 30, 40, 30, 31, OK, KindTxn, put("c", "c1"), get("c", "c1"), del("a"), get("a", ""),
			scan("a", "d", "b=b2", "c=c1")),
		op(7, 1, 32, 50, 0, 0, Ambiguous, KindTxn, put("x", "x1"), put("y", "y1")),
		op(8, 2, 33, 51, 0, 0, Ambiguous, KindTxn, get("x", ""), put("x", "x2")),
		op(9, 2, 52, 53, 0, 0, Failed, KindTxn, put("y", "y9")),
		op(10, 3, 41, 47, 0, 0, OK, KindBatch, at(put("c", "c2"), 45), at(get("x", "x1"), 45), at(get("y", "y1"), 46)),
		op(11, 1, 60, 61, 0, 60, OK, KindDelete, del("z")),
		op(12, 2, 62, 63, 0, 62, OK, KindDelete, del("b")),
		op(13, 3, 70, 71, 70, 0, OK, KindGet, get("b", "")),
		op(14, 1, 72, 90, 0, 0, Ambiguous, KindDelete, del("c")),
		op(15, 2, 95, 96, 100, 0, OK, KindTxn, scan("a", "d"), scan("x", "z", "x=x1", "y=y1")),
	}
	d := Dump{
		version("a", 10, "a1"), version("a", 14, "a2"), version("a", 31, ""),
		version("b", 11, "b1"), version("b", 14, "b2"), version("b", 62, ""),
		version("c", 31, "c1"), version("c", 45, "c2"), version("c", 80, ""),
		version("x", 35, "x1"), version("y", 35, "y1"),
	}
	return h, d
}

func classes(r *Report) []Class {
	var out []Class
	for _, v := range r.Violations {
		if !slices.Contains(out, v.Class) {
			out = append(out, v.Class)
		}
	}
	slices.Sort(out)
	return out
}

func TestValidHistoryPasses(t *testing.T) {
	h, d := base()
	r, err := Check(h, d)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("a valid history has violations:\n%s", r)
	}
	want := []Inference{{Op: 7, Step: -1, Committed: true, TS: ts(35)}, {Op: 8, Step: -1}, {Op: 14, Step: -1, Committed: true, TS: ts(80)}}
	if !slices.Equal(r.Inferred, want) {
		t.Fatalf("inferred %v, want %v", r.Inferred, want)
	}
}

// violationCases each add ops or versions to base() and name the exact
// classes Check must report, and the offending ops.
type violationCase struct {
	name    string
	ops     []Op
	add     []Version
	drop    []string // "key@wall" versions removed from the dump
	want    []Class
	wantOps []int
}

var violationCases = []violationCase{
	{name: "lost write",
		ops:  []Op{op(20, 1, 200, 201, 0, 200, OK, KindPut, put("p", "p1"))},
		want: []Class{LostWrite}, wantOps: []int{20}},
	{name: "partial commit of an ambiguous 2-key txn",
		ops:  []Op{op(21, 1, 200, 201, 0, 0, Ambiguous, KindTxn, put("p", "p1"), put("q", "q1"))},
		add:  []Version{version("p", 210, "p1")},
		want: []Class{PartialCommit}, wantOps: []int{21}},
	{name: "partial commit of an OK 2-key txn",
		ops:  []Op{op(21, 1, 200, 201, 0, 210, OK, KindTxn, put("p", "p1"), put("q", "q1"))},
		add:  []Version{version("p", 210, "p1")},
		want: []Class{PartialCommit}, wantOps: []int{21}},
	{name: "lost delete",
		drop: []string{"b@62"},
		// op 13 then reads b absent where b2 is current, and op 15's
		// b absent and x=x1 were never current together.
		want: []Class{LostWrite, ReadSkew, ReadTimestamp}, wantOps: []int{3, 7, 12, 13, 15}},
	{name: "FAILED txn's write visible",
		ops:  []Op{op(22, 1, 200, 201, 0, 0, Failed, KindTxn, put("p", "p1"))},
		add:  []Version{version("p", 220, "p1")},
		want: []Class{FailedWriteVisible}, wantOps: []int{22}},
	{name: "read explained by no version",
		ops:  []Op{op(23, 1, 200, 201, 200, 0, OK, KindGet, get("a", "zz"))},
		want: []Class{UnexplainedRead}, wantOps: []int{23}},
	{name: "read of a value another op wrote to another key",
		ops:  []Op{op(23, 1, 200, 201, 200, 0, OK, KindGet, get("a", "x1"))},
		want: []Class{UnexplainedRead}, wantOps: []int{7, 23}},
	{name: "G1a: read of a FAILED txn's write",
		ops:  []Op{op(24, 1, 200, 201, 200, 0, OK, KindGet, get("y", "y9"))},
		want: []Class{DirtyRead}, wantOps: []int{9, 24}},
	{name: "G1a: read of an ambiguous txn's write that did not commit",
		ops:  []Op{op(24, 1, 200, 201, 200, 0, OK, KindGet, get("x", "x2"))},
		want: []Class{DirtyRead}, wantOps: []int{8, 24}},
	{name: "G1a: read of an unresolved intent",
		ops:  []Op{op(24, 1, 200, 201, 200, 0, OK, KindGet, get("y", "y9"))},
		add:  []Version{intent(version("y", 40, "y9"))},
		want: []Class{DirtyRead, LeftoverIntent}, wantOps: []int{9, 24}},
	{name: "G1b: read of an overwritten value",
		ops: []Op{
			op(25, 1, 200, 201, 200, 230, OK, KindTxn, put("p", "p1"), put("p", "p2")),
			op(26, 2, 202, 203, 240, 0, OK, KindGet, get("p", "p1")),
		},
		add:  []Version{version("p", 230, "p2")},
		want: []Class{DirtyRead}, wantOps: []int{25, 26}},
	{name: "overwritten value present",
		ops:  []Op{op(25, 1, 200, 201, 200, 230, OK, KindTxn, put("p", "p1"), put("p", "p2"))},
		add:  []Version{version("p", 229, "p1"), version("p", 230, "p2")},
		want: []Class{IntermediateVisible}, wantOps: []int{25}},
	{name: "read skew across two keys, read timestamp unknown",
		ops:  []Op{op(27, 1, 12, 18, 0, 0, OK, KindTxn, get("a", "a1"), get("b", "b2"))},
		want: []Class{ReadSkew}, wantOps: []int{1, 3, 27}},
	{name: "read skew across two keys at a known read timestamp",
		ops:  []Op{op(27, 1, 12, 18, 13, 0, OK, KindTxn, get("b", "b2"), get("a", "a1"))},
		want: []Class{ReadSkew}, wantOps: []int{1, 3, 27}},
	{name: "read not at the commit timestamp (a txn read a1 but committed after a2)",
		ops:  []Op{op(28, 1, 11, 19, 12, 20, OK, KindTxn, get("a", "a1"), put("p", "p1"))},
		add:  []Version{version("p", 20, "p1")},
		want: []Class{ReadTimestamp}, wantOps: []int{1, 3, 28}},
	{name: "scan misses a key",
		ops:  []Op{op(29, 1, 48, 49, 50, 0, OK, KindTxn, scan("b", "d", "b=b2"))},
		want: []Class{ReadTimestamp}, wantOps: []int{10, 29}},
	{name: "scan returns a row out of its span",
		ops:  []Op{op(29, 1, 200, 201, 200, 0, OK, KindTxn, scan("x", "y", "x=x1", "y=y1"))},
		want: []Class{UnexplainedRead}, wantOps: []int{29}},
	{name: "stale read across real time",
		ops:  []Op{op(30, 1, 50, 51, 20, 0, OK, KindGet, get("a", "a2"))},
		want: []Class{RealTime}, wantOps: []int{6, 30}},
	{name: "stale read across real time, read timestamp unknown",
		ops:  []Op{op(30, 1, 50, 51, 0, 0, OK, KindGet, get("a", "a2"))},
		want: []Class{RealTime}, wantOps: []int{6, 30}},
	// Op 10 read x1 (written by AMBIGUOUS op 7 at 35) and completed at 47.
	{name: "stale read after a read across real time",
		ops:  []Op{op(42, 2, 54, 55, 30, 0, OK, KindGet, get("x", ""))},
		want: []Class{RealTime}, wantOps: []int{10, 42}},
	{name: "write below a version read across real time",
		ops:  []Op{op(43, 2, 54, 55, 0, 34, OK, KindPut, put("x", "x0"))},
		add:  []Version{version("x", 34, "x0")},
		want: []Class{RealTime}, wantOps: []int{10, 43}},
	{name: "write below an earlier write across real time",
		ops:  []Op{op(31, 1, 50, 51, 0, 25, OK, KindPut, put("a", "a9"))},
		add:  []Version{version("a", 25, "a9")},
		want: []Class{RealTime}, wantOps: []int{6, 31}},
	{name: "duplicated value in the history",
		ops:  []Op{op(32, 1, 200, 201, 0, 0, Ambiguous, KindPut, put("p", "a1"))},
		want: []Class{DuplicateValue}, wantOps: []int{1, 32}},
	{name: "write applied twice",
		add:  []Version{version("a", 12, "a1")},
		want: []Class{DuplicateVersion}, wantOps: []int{1}},
	{name: "orphan version",
		add:  []Version{version("q", 300, "q7")},
		want: []Class{OrphanVersion}, wantOps: nil},
	{name: "orphan tombstone",
		add:  []Version{version("x", 300, "")},
		want: []Class{OrphanVersion}, wantOps: nil},
	{name: "FAILED delete applied",
		ops:  []Op{op(33, 1, 200, 201, 0, 0, Failed, KindDelete, del("x"))},
		add:  []Version{version("x", 300, "")},
		want: []Class{OrphanVersion}, wantOps: nil},
	{name: "leftover intent of a committed txn",
		ops:  []Op{op(33, 1, 200, 201, 0, 250, OK, KindTxn, put("p", "p1"))},
		add:  []Version{intent(version("p", 250, "p1"))},
		want: []Class{LeftoverIntent}, wantOps: []int{33}},
	{name: "read your writes",
		ops:  []Op{op(34, 1, 200, 201, 260, 260, OK, KindTxn, put("p", "p1"), get("p", ""))},
		add:  []Version{version("p", 260, "p1")},
		want: []Class{ReadYourWrites}, wantOps: []int{34}},
	{name: "read of the op's own later write",
		ops:  []Op{op(34, 1, 200, 201, 260, 260, OK, KindTxn, get("p", "p1"), put("p", "p1x"), put("q", "p1"))},
		add:  []Version{version("p", 260, "p1x"), version("q", 260, "p1")},
		want: []Class{UnexplainedRead}, wantOps: []int{34}},
	{name: "read timestamp above commit timestamp",
		ops:  []Op{op(35, 1, 200, 201, 270, 265, OK, KindTxn, put("p", "p1"))},
		add:  []Version{version("p", 265, "p1")},
		want: []Class{ReadAfterCommit}, wantOps: []int{35}},
	{name: "write not at the commit timestamp",
		ops:  []Op{op(36, 1, 200, 201, 0, 280, OK, KindPut, put("p", "p1"))},
		add:  []Version{version("p", 281, "p1")},
		want: []Class{WriteTimestamp}, wantOps: []int{36}},
	{name: "ambiguous txn's writes at two timestamps",
		ops:  []Op{op(39, 1, 200, 201, 0, 0, Ambiguous, KindTxn, put("p", "p1"), put("q", "q1"))},
		add:  []Version{version("p", 300, "p1"), version("q", 301, "q1")},
		want: []Class{WriteTimestamp}, wantOps: []int{39}},
	{name: "two ops delete one key at one timestamp",
		ops:  []Op{op(40, 1, 61, 64, 0, 62, OK, KindDelete, del("b"))},
		want: []Class{LostWrite, WriteTimestamp}, wantOps: []int{12, 40}},
}

func buildCase(t *testing.T, ops []Op, add []Version, drop []string) (History, Dump) {
	h, d := base()
	h = append(h, ops...)
	for _, s := range drop {
		k, w, _ := strings.Cut(s, "@")
		n, err := strconv.ParseInt(w, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(d, func(v Version) bool { return v.Key == k && v.Timestamp == ts(n) })
		if i < 0 {
			t.Fatalf("no version %s in base()", s)
		}
		d = slices.Delete(d, i, i+1)
	}
	return h, append(d, add...)
}

func TestViolations(t *testing.T) {
	for _, c := range violationCases {
		t.Run(c.name, func(t *testing.T) {
			h, d := buildCase(t, c.ops, c.add, c.drop)
			r, err := Check(h, d)
			if err != nil {
				t.Fatal(err)
			}
			if got := classes(r); !slices.Equal(got, c.want) {
				t.Fatalf("classes %v, want %v; report:\n%s", got, c.want, r)
			}
			if !slices.Equal(r.Ops, c.wantOps) {
				t.Fatalf("offending ops %v, want %v; report:\n%s", r.Ops, c.wantOps, r)
			}
			for _, v := range r.Violations {
				if v.Reason == "" || strings.Contains(v.Reason, "\n") || len(v.Keys) == 0 {
					t.Fatalf("violation %v: want a one-line reason and the keys", v)
				}
			}
		})
	}
}

// TestReportGolden compares the report text of a few cases with
// testdata/report.golden (regenerate with -rewrite).
func TestReportGolden(t *testing.T) {
	names := []string{
		"partial commit of an ambiguous 2-key txn",
		"G1a: read of an unresolved intent",
		"read skew across two keys, read timestamp unknown",
		"read not at the commit timestamp (a txn read a1 but committed after a2)",
		"stale read across real time",
		"lost delete",
	}
	var out strings.Builder
	h, d := base()
	r, err := Check(h, d)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&out, "== valid history\n%s", r)
	for _, name := range names {
		i := slices.IndexFunc(violationCases, func(c violationCase) bool { return c.name == name })
		if i < 0 {
			t.Fatalf("no case %q", name)
		}
		c := violationCases[i]
		h, d := buildCase(t, c.ops, c.add, c.drop)
		r, err := Check(h, d)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "== %s\n%s", name, r)
	}
	golden.Check(t, "report.golden", []byte(out.String()))
}

func TestBank(t *testing.T) {
	bal := func(v string) (int64, error) {
		n, _, _ := strings.Cut(v, "#") // "balance#unique suffix"
		return strconv.ParseInt(n, 10, 64)
	}
	b := Bank{Accounts: []string{"acct1", "acct2", "acct3"}, Total: 300, Balance: bal}
	h := History{
		// A full snapshot by gets, one by a scan (acct3 absent: 0), a
		// transfer reading only two accounts (not a snapshot), and a
		// snapshot read after its own write (the write's account is left
		// out, so it is not a full snapshot).
		op(1, 1, 0, 1, 5, 0, OK, KindTxn, get("acct1", "100#1"), get("acct2", "100#2"), get("acct3", "100#3")),
		op(2, 1, 2, 3, 6, 0, OK, KindTxn, scan("acct", "acct9", "acct1=150#4", "acct2=150#5")),
		op(3, 2, 2, 3, 6, 7, OK, KindTxn, get("acct1", "100#1"), get("acct2", "100#2"), put("acct1", "50#6"), put("acct2", "150#7")),
		op(4, 2, 4, 5, 8, 9, OK, KindTxn, put("acct1", "1#8"), get("acct1", "1#8"), get("acct2", "150#7"), get("acct3", "100#3")),
		// A FAILED snapshot is not checked.
		op(5, 3, 4, 5, 8, 0, Failed, KindTxn, get("acct1", "7#9"), get("acct2", "7#10"), get("acct3", "7#11")),
	}
	vs, err := CheckBank(h, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 0 {
		t.Fatalf("valid bank history: %v", vs)
	}
	bad := append(h,
		op(6, 3, 10, 11, 12, 0, OK, KindTxn, scan("acct1", "acct4", "acct1=50#4", "acct2=150#7", "acct3=90#12")),
		op(7, 3, 12, 13, 14, 0, OK, KindTxn, get("acct3", "200#13"), get("acct2", "150#7"), get("acct1", "-50#14")),
	)
	vs, err = CheckBank(bad, b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, fmt.Sprintf("%s %v %v", v.Class, v.Ops, v.Keys))
	}
	want := []string{"bank-sum [6] [acct1 acct2 acct3]", "bank-negative [7] [acct1]"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	r := &Report{}
	r.Add(vs...)
	if !r.Has(BankSum) || !r.Has(BankNegative) || !slices.Equal(r.Ops, []int{6, 7}) {
		t.Fatalf("report after Add: %s", r)
	}
	for _, c := range []struct {
		b    Bank
		h    History
		want string
	}{
		{Bank{Total: 1, Balance: bal}, h, "Accounts is empty"},
		{Bank{Accounts: []string{"a"}}, h, "Balance is nil"},
		{b, History{op(9, 1, 0, 1, 1, 0, OK, KindTxn, get("acct1", "x#1"))}, `op 9 step 0: balance of acct1="x#1"`},
	} {
		if _, err := CheckBank(c.h, c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one containing %q", err, c.want)
		}
	}
}

func TestMalformedInput(t *testing.T) {
	for _, c := range []struct {
		h    History
		d    Dump
		want string
	}{
		{History{op(1, 1, 0, 1, 0, 5, OK, KindPut, put("a", "1")), op(1, 1, 0, 1, 0, 6, OK, KindPut, put("a", "2"))}, nil, "ID 1 is used twice"},
		{History{op(1, 1, 0, 1, 0, 0, OK, KindPut, put("a", "1"))}, nil, "OK writing op has no CommitTS"},
		{History{op(1, 1, 0, 1, 0, 0, OK, KindBatch, put("a", "1"))}, nil, "OK batch's write has no Timestamp"},
		{History{op(1, 1, 5, 1, 0, 5, OK, KindPut, put("a", "1"))}, nil, "Complete 1 is before Invoke 5"},
		{History{op(1, 1, 0, 1, 0, 5, OK, KindPut, put("a", "1"), put("b", "2"))}, nil, "exactly one step"},
		{History{op(1, 1, 0, 1, 0, 5, OK, KindTxn, scan("b", "a"))}, nil, `scan EndKey "a" is not after Key "b"`},
		{History{op(1, 1, 0, 1, 0, 5, OK, KindTxn, put("", "1"))}, nil, "step 0: Key is empty"},
		{History{op(1, 1, 0, 1, 0, 5, OK, KindTxn, put("a", ""))}, nil, "put Value is empty"},
		{History{op(1, 1, 0, 1, 0, 5, 0, KindTxn, put("a", "1"))}, nil, "Outcome 0"},
		{History{op(1, 1, 0, 1, 0, 5, OK, 0, put("a", "1"))}, nil, "Kind 0"},
		{nil, Dump{version("a", 1, "1"), version("a", 1, "2")}, "two versions of one key at one timestamp"},
		{nil, Dump{version("a", 0, "1")}, "Timestamp is zero"},
		{nil, Dump{{Key: "a", Timestamp: ts(1), Value: "1", Deleted: true}}, "a tombstone has Value"},
	} {
		if _, err := Check(c.h, c.d); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one containing %q", err, c.want)
		}
	}
}

func TestWindows(t *testing.T) {
	w1 := window{{ts(0), ts(10)}, {ts(20), maxTS}}
	w2 := window{{ts(5), ts(25)}}
	got := intersect(w1, w2)
	want := window{{ts(5), ts(10)}, {ts(20), ts(25)}}
	if !slices.Equal(got, want) {
		t.Fatalf("intersect %v, want %v", got, want)
	}
	if !got.contains(ts(24)) || got.contains(ts(25)) || got.contains(ts(10)) || !got.contains(ts(5)) {
		t.Fatalf("contains is wrong for %v", got)
	}
	if !got.reachesTo(ts(24)) || got.reachesTo(ts(25)) || !w1.reachesTo(ts(1000)) {
		t.Fatalf("reachesTo is wrong")
	}
	if len(intersect(window{{ts(0), ts(10)}}, window{{ts(10), ts(20)}})) != 0 {
		t.Fatalf("[0,10) and [10,20) intersect")
	}
}

// TestAmbiguousDeletes: AMBIGUOUS ops that only delete are matched to the
// tombstones no other op explains: the op explaining the most of them at a
// timestamp wins, and an op whose reads or real-time order rule the
// timestamp out is passed over, even when it comes first in the history.
func TestAmbiguousDeletes(t *testing.T) {
	h := History{
		op(1, 1, 0, 1, 0, 10, OK, KindPut, put("p", "p1")),
		op(2, 1, 2, 3, 0, 11, OK, KindPut, put("q", "q1")),
		// Op 4 deletes p and q at 40; op 3 alone could explain p@40.
		op(3, 2, 20, 30, 0, 0, Ambiguous, KindDelete, del("p")),
		op(4, 3, 21, 31, 0, 0, Ambiguous, KindTxn, del("p"), del("q")),
		op(5, 1, 50, 51, 0, 50, OK, KindPut, put("r", "r1")),
		op(6, 1, 52, 53, 0, 60, OK, KindPut, put("r", "r2")),
		// Op 7 read r1, which is not current at 70; op 8 deleted r at 70.
		op(7, 2, 40, 80, 0, 0, Ambiguous, KindTxn, get("r", "r1"), del("r")),
		op(8, 3, 55, 80, 0, 0, Ambiguous, KindDelete, del("r")),
		op(9, 1, 60, 65, 0, 75, OK, KindPut, put("s", "s1")),
		op(10, 1, 71, 90, 0, 85, OK, KindPut, put("s", "s2")),
		// Op 11 began after s2@85 was written: it cannot have deleted s at
		// 80; op 12 (begun before) did.
		op(11, 2, 95, 99, 0, 0, Ambiguous, KindDelete, del("s")),
		op(12, 3, 70, 100, 0, 0, Ambiguous, KindDelete, del("s")),
	}
	d := Dump{
		version("p", 10, "p1"), version("q", 11, "q1"), version("p", 40, ""), version("q", 40, ""),
		version("r", 50, "r1"), version("r", 60, "r2"), version("r", 70, ""),
		version("s", 75, "s1"), version("s", 80, ""), version("s", 85, "s2"),
	}
	r, err := Check(h, d)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("violations:\n%s", r)
	}
	want := []Inference{
		{Op: 3, Step: -1}, {Op: 4, Step: -1, Committed: true, TS: ts(40)},
		{Op: 7, Step: -1}, {Op: 8, Step: -1, Committed: true, TS: ts(70)},
		{Op: 11, Step: -1}, {Op: 12, Step: -1, Committed: true, TS: ts(80)},
	}
	if !slices.Equal(r.Inferred, want) {
		t.Fatalf("inferred:\n%s\nwant %v", r, want)
	}
}
