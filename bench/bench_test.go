package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestKeyName(t *testing.T) {
	seen := map[string]bool{}
	for i := uint64(0); i < 20000; i++ {
		k := KeyName(i, 16)
		if len(k) != 16 {
			t.Fatalf("key %d has length %d", i, len(k))
		}
		if seen[string(k)] {
			t.Fatalf("duplicate key %q", k)
		}
		seen[string(k)] = true
		if !strings.Contains(alphabet, string(k[0])) {
			t.Fatalf("key %q starts outside 0-9A-Za-z", k)
		}
	}
	// Leading characters spread over the alphabet (so over the ranges).
	first := map[byte]int{}
	for i := uint64(0); i < 6200; i++ {
		first[KeyName(i, 16)[0]]++
	}
	if len(first) != len(alphabet) {
		t.Fatalf("first characters cover %d of %d symbols", len(first), len(alphabet))
	}
	for c, n := range first {
		if n < 50 || n > 150 {
			t.Errorf("first character %q drawn %d times, want ~100", c, n)
		}
	}
	if err := CheckKeySpace(1e6, 16); err != nil {
		t.Fatal(err)
	}
	if err := CheckKeySpace(1e6, 8); err == nil {
		t.Fatal("1e6 keys in 8 bytes should not fit")
	}
}

func TestUniformGen(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	g, _ := NewKeyGen(Uniform, 10)
	var c [10]int
	const n = 100000
	for i := 0; i < n; i++ {
		v := g.Next(r)
		if v >= 10 {
			t.Fatalf("out of range: %d", v)
		}
		c[v]++
	}
	for i, x := range c {
		if math.Abs(float64(x)-n/10) > n/10*0.05 {
			t.Errorf("bucket %d: %d, want ~%d", i, x, n/10)
		}
	}
}

func TestSequentialGen(t *testing.T) {
	g, _ := NewKeyGen(Sequential, 3)
	var got []uint64
	for i := 0; i < 7; i++ {
		got = append(got, g.Next(nil))
	}
	want := []uint64{0, 1, 2, 0, 1, 2, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestZipfGen(t *testing.T) {
	const keys = 1000
	z := NewZipfGen(keys, DefaultZipfTheta)
	r := rand.New(rand.NewSource(42))
	const n = 200000
	c := make([]int, keys)
	for i := 0; i < n; i++ {
		v := z.Next(r)
		if v >= keys {
			t.Fatalf("out of range: %d", v)
		}
		c[v]++
	}
	// P(0) = 1/zeta(n); P(1) = 2^-theta/zeta(n).
	zn := zeta(keys, DefaultZipfTheta)
	for i, want := range []float64{1 / zn, math.Pow(2, -DefaultZipfTheta) / zn} {
		got := float64(c[i]) / n
		if math.Abs(got-want) > want*0.05 {
			t.Errorf("P(%d) = %.4f, want %.4f", i, got, want)
		}
	}
	// Skew: the hottest 10% of keys get well over half the draws; the
	// frequencies decrease (roughly) with rank.
	hot := 0
	for i := 0; i < keys/10; i++ {
		hot += c[i]
	}
	if float64(hot)/n < 0.6 {
		t.Errorf("top 10%% of keys got %.2f of draws, want > 0.6", float64(hot)/n)
	}
	if !(c[0] > c[1] && c[1] > c[5] && c[5] > c[50] && c[50] > c[500]) {
		t.Errorf("frequencies not decreasing: %d %d %d %d %d", c[0], c[1], c[5], c[50], c[500])
	}
	// Same seed, same sequence.
	a, b := rand.New(rand.NewSource(7)), rand.New(rand.NewSource(7))
	for i := 0; i < 100; i++ {
		if z.Next(a) != z.Next(b) {
			t.Fatal("not deterministic for a fixed seed")
		}
	}
}

func TestSummarize(t *testing.T) {
	h := newHist()
	for ms := 1; ms <= 1000; ms++ {
		recordLatency(h, time.Duration(ms)*time.Millisecond)
	}
	s := Summarize("read", h, 3, 2*time.Second)
	if s.Count != 1000 || s.Errors != 3 || s.OpsPerSec != 500 {
		t.Fatalf("count/errors/rate: %+v", s)
	}
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > want*0.01 {
			t.Errorf("%s = %.3f, want %.3f", name, got, want)
		}
	}
	near("p50", s.P50Ms, 500)
	near("p95", s.P95Ms, 950)
	near("p99", s.P99Ms, 990)
	near("p99.9", s.P999Ms, 999)
	near("max", s.MaxMs, 1000)
	near("mean", s.MeanMs, 500.5)
	if e := Summarize("x", nil, 0, time.Second); e.Count != 0 {
		t.Fatal("nil histogram")
	}
}

func mixOf(t *testing.T, spec Spec, n int) map[OpKind]float64 {
	t.Helper()
	w, err := NewWorkload(spec)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(3))
	got := map[OpKind]float64{}
	for i := 0; i < n; i++ {
		op := w.Next(r)
		if len(op.Key) != spec.KeySize {
			t.Fatalf("%s: key %q has size %d", spec.Name, op.Key, len(op.Key))
		}
		if op.Kind == OpScan && (op.ScanLen < 1 || (spec.MaxScanLen > 0 && op.ScanLen > spec.MaxScanLen)) {
			t.Fatalf("%s: scan length %d", spec.Name, op.ScanLen)
		}
		got[op.Kind] += 1 / float64(n)
	}
	return got
}

func TestWorkloadMixes(t *testing.T) {
	const n = 100000
	for _, l := range []string{"A", "B", "C", "D", "E", "F"} {
		spec, err := YCSBSpec(l)
		if err != nil {
			t.Fatal(err)
		}
		got := mixOf(t, spec, n)
		for k, want := range spec.Mix.fractions() {
			if math.Abs(got[OpKind(k)]-want) > 0.01 {
				t.Errorf("YCSB %s: %s fraction %.3f, want %.3f", l, OpKind(k), got[OpKind(k)], want)
			}
		}
	}
	spec, err := KVSpec(95, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := mixOf(t, spec, n)
	if math.Abs(got[OpRead]-0.95) > 0.01 || math.Abs(got[OpWrite]-0.05) > 0.01 {
		t.Errorf("kv95 mix: %v", got)
	}
	if _, err := YCSBSpec("G"); err == nil {
		t.Error("YCSB G accepted")
	}
	if _, err := KVSpec(80, 30, 10); err == nil {
		t.Error("read+scan > 100 accepted")
	}
}

func TestReadLatestAndInserts(t *testing.T) {
	spec, _ := YCSBSpec("D")
	spec.Keys = 1000
	w, err := NewWorkload(spec)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(5))
	var inserted []string
	reads := map[string]int{}
	for i := 0; i < 20000; i++ {
		op := w.Next(r)
		switch op.Kind {
		case OpInsert:
			inserted = append(inserted, string(op.Key))
		case OpRead:
			reads[string(op.Key)]++
		}
	}
	// Inserts are new, distinct keys past the preloaded space.
	seen := map[string]bool{}
	for i := uint64(0); i < spec.Keys; i++ {
		seen[string(KeyName(i, spec.KeySize))] = true
	}
	for _, k := range inserted {
		if seen[k] {
			t.Fatalf("insert reused key %q", k)
		}
		seen[k] = true
	}
	if len(inserted) < 500 {
		t.Fatalf("%d inserts", len(inserted))
	}
}

func TestReadLatestFavoursNewest(t *testing.T) {
	spec, _ := YCSBSpec("D")
	spec.Keys = 1000
	w, _ := NewWorkload(spec)
	r := rand.New(rand.NewSource(9))
	newest, reads, atNewest, near := spec.Keys-1, 0, 0, 0
	for i := 0; i < 20000; i++ {
		op := w.Next(r)
		if op.Kind == OpInsert {
			newest++
			continue
		}
		idx, err := strconv.ParseUint(string(op.Key[prefixLen:]), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if idx > newest {
			t.Fatalf("read of key %d beyond the newest %d", idx, newest)
		}
		reads++
		if idx == newest {
			atNewest++
		}
		if newest-idx < 100 {
			near++
		}
	}
	want := 1 / zeta(spec.Keys, DefaultZipfTheta)
	if got := float64(atNewest) / float64(reads); math.Abs(got-want) > want*0.1 {
		t.Errorf("reads of the newest key: %.3f, want %.3f", got, want)
	}
	if float64(near)/float64(reads) < 0.6 {
		t.Errorf("only %.2f of reads within the 100 newest keys", float64(near)/float64(reads))
	}
}

type fakeDriver struct{}

func (fakeDriver) Get(context.Context, []byte) (bool, error) { return true, nil }
func (fakeDriver) Put(context.Context, []byte, []byte) error {
	time.Sleep(100 * time.Microsecond)
	return nil
}
func (fakeDriver) Scan(context.Context, []byte, int) (int, error) { return 10, nil }
func (fakeDriver) Close() error                                   { return nil }

func TestRunnerAndReports(t *testing.T) {
	spec, _ := KVSpec(50, 10, 10)
	w, err := NewWorkload(spec)
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	res, err := Run(context.Background(), fakeDriver{}, w, Options{Concurrency: 4, Warmup: 200 * time.Millisecond,
		Duration: 600 * time.Millisecond, Interval: 200 * time.Millisecond, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	res.Driver = "fake"
	if len(res.Ops) != 3 || res.Total.Count == 0 || res.Op("write").Count == 0 || res.Op("scan").Count == 0 {
		t.Fatalf("result: %+v", res)
	}
	if n := strings.Count(progress.String(), "\n"); n < 3 {
		t.Errorf("%d progress lines:\n%s", n, progress.String())
	}
	if !strings.Contains(progress.String(), "warm-up") {
		t.Errorf("no warm-up line:\n%s", progress.String())
	}
	var sum bytes.Buffer
	if err := WriteSummary(&sum, res); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"p99.9(ms)", "read", "write", "scan", "total"} {
		if !strings.Contains(sum.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, sum.String())
		}
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil || back.Total.Count != res.Total.Count {
		t.Fatalf("json round trip: %v", err)
	}
	var svg bytes.Buffer
	if err := WriteSVG(&svg, res); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(svg.String(), "<svg") || strings.Count(svg.String(), "<polyline") != 6 {
		t.Errorf("svg: %d polylines", strings.Count(svg.String(), "<polyline"))
	}
}

// A spec with a KeyBase draws only keys of its own space (KeyBase+i),
// none of the base-0 space, and rejects a base whose keys do not fit.
func TestKeyBase(t *testing.T) {
	spec, _ := KVSpec(50, 0, DefaultScanLength)
	spec.Keys, spec.KeyBase = 1000, 1<<40
	own, base0 := map[string]bool{}, map[string]bool{}
	for i := uint64(0); i < spec.Keys; i++ {
		own[string(spec.Key(i))] = true
		base0[string(KeyName(i, spec.KeySize))] = true
	}
	if len(own) != int(spec.Keys) {
		t.Fatalf("%d distinct keys of %d", len(own), spec.Keys)
	}
	for k := range own {
		if base0[k] {
			t.Fatalf("key %q is in both the base-0 space and the space at %d", k, spec.KeyBase)
		}
	}
	w, err := NewWorkload(spec)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(3))
	for i := 0; i < 5000; i++ {
		if op := w.Next(r); !own[string(op.Key)] {
			t.Fatalf("drew %q, not a key of the space at %d", op.Key, spec.KeyBase)
		}
	}
	spec.KeyBase = 1e13 // 13 decimal digits in 16-byte keys
	if _, err := NewWorkload(spec); err == nil || !strings.Contains(err.Error(), "do not fit") {
		t.Fatalf("base 1e13 in 16-byte keys: err %v, want a key-space error", err)
	}
}
