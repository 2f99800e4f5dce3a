package main

import (
	"bytes"
	"math/rand"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/bench"
)

func cellNamed(t *testing.T, name string) cell {
	t.Helper()
	for _, c := range cells {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no cell %s", name)
	return cell{}
}

// The new cells' workloads are what their names say, and the cells list
// passes its own checks.
func TestNewCellSpecs(t *testing.T) {
	if err := checkCells(cells, bench.DefaultKeys); err != nil {
		t.Fatal(err)
	}
	y, err := cellNamed(t, "ycsb-b@64").spec(bench.DefaultKeys)
	if err != nil {
		t.Fatal(err)
	}
	if y.Mix != (bench.Mix{Read: 0.95, Write: 0.05}) || y.Distribution != bench.Zipfian || y.ZipfTheta != 0 || y.ValueSize != bench.DefaultValueSize || y.KeyBase != 0 {
		t.Fatalf("ycsb-b@64: %+v, want 95 %% reads, 5 %% updates, zipfian (default theta), default values and keys", y)
	}
	// Zipfian: the hottest key draws far more than a uniform 1/10000.
	w, err := bench.NewWorkload(y)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	count, top := map[string]int{}, 0
	for i := 0; i < 20000; i++ {
		k := string(w.Next(r).Key)
		count[k]++
		top = max(top, count[k])
	}
	if top < 1000 { // theta 0.99 over 10,000 keys: about 10 % on index 0
		t.Fatalf("ycsb-b@64: hottest key drawn %d times in 20000, want zipfian skew (> 1000)", top)
	}

	k := cellNamed(t, "writes@64-1kib")
	ks, err := k.spec(bench.DefaultKeys)
	if err != nil {
		t.Fatal(err)
	}
	if ks.Mix != (bench.Mix{Write: 1}) || ks.ValueSize != 1024 || ks.KeyBase == 0 || ks.Distribution != bench.Uniform {
		t.Fatalf("writes@64-1kib: %+v, want uniform overwrites of 1024-byte values in a key space of its own", ks)
	}
	// Its preload writes 1024-byte values to exactly the keys it overwrites.
	pre := k.space().preloadSpec(bench.DefaultKeys)
	if pre.ValueSize != 1024 || pre.KeyBase != ks.KeyBase || pre.Keys != ks.Keys {
		t.Fatalf("preload of writes@64-1kib: %+v, want 1024-byte values at base %d", pre, ks.KeyBase)
	}
	preloaded := map[string]bool{}
	for i := uint64(0); i < pre.Keys; i++ {
		preloaded[string(pre.Key(i))] = true
	}
	w, err = bench.NewWorkload(ks)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5000; i++ {
		if op := w.Next(r); !preloaded[string(op.Key)] {
			t.Fatalf("writes@64-1kib drew %q, not a preloaded key", op.Key)
		}
	}
	// ... and none of the default space's keys (which keep 256-byte values).
	def, _ := cellNamed(t, "reads@64").spec(bench.DefaultKeys)
	for i := uint64(0); i < def.Keys; i++ {
		if preloaded[string(def.Key(i))] {
			t.Fatalf("key %q is in both the 1 KiB space and the default one", def.Key(i))
		}
	}

	for _, n := range []string{"writes@64-1range", "reads@64-1range"} {
		c := cellNamed(t, n)
		s, _ := c.spec(bench.DefaultKeys)
		if c.Shape != oneRange || c.Concurrency != 64 || s.KeyBase != 0 || s.ValueSize != bench.DefaultValueSize {
			t.Fatalf("%s: %+v, want the one-range shape, 64 workers, the default key space", n, c)
		}
	}
	if r1, _ := cellNamed(t, "reads@64-1range").spec(bench.DefaultKeys); r1.Mix != (bench.Mix{Read: 1}) {
		t.Fatalf("reads@64-1range mix %+v", r1.Mix)
	}
}

// Cells run grouped by shape in first-appearance order; each phase
// preloads each key space its cells use once.
func TestPhases(t *testing.T) {
	ps := phases(cells)
	if len(ps) != 2 || ps[0].Shape != manyRanges || ps[1].Shape != oneRange {
		t.Fatalf("phases %v, want many-ranges then one-range", ps)
	}
	var names []string
	for _, c := range ps[1].Cells {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "writes@64-1range,reads@64-1range" {
		t.Fatalf("one-range phase runs %v", names)
	}
	// The read-replica cell stays last of its phase (its processes must
	// replicate no earlier cell's writes).
	if last := ps[0].Cells[len(ps[0].Cells)-1]; last.Mode != replicaReads {
		t.Fatalf("many-ranges phase ends with %s", last.Name)
	}
	got := ps[0].spaces()
	want := []keySpace{{0, bench.DefaultValueSize}, {kibKeyBase, 1024}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("many-ranges phase preloads %v, want %v", got, want)
	}
	if got := ps[1].spaces(); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("one-range phase preloads %v, want %v", got, want[:1])
	}
	// A selection of one cell gives one phase.
	if ps := phases([]cell{cellNamed(t, "reads@64-1range")}); len(ps) != 1 || ps[0].Shape != oneRange {
		t.Fatalf("phases of one cell: %v", ps)
	}
}

func TestCheckCellsErrors(t *testing.T) {
	ok := cell{Name: "a", Concurrency: 1}
	for _, tc := range []struct {
		cs   []cell
		want string
	}{
		{[]cell{ok, ok}, "listed twice"},
		{[]cell{{Name: "z", Concurrency: 0}}, "concurrency 0"},
		{[]cell{{Name: "y", Concurrency: 1, YCSB: "B", ReadPct: 50}}, "ReadPct and ScanPct must be 0"},
		{[]cell{{Name: "q", Concurrency: 1, YCSB: "Q"}}, "unknown YCSB workload"},
		{[]cell{ok, {Name: "b", Concurrency: 1, ValueSize: 1024}}, "cells a and b: both use the key space at base 0"},
		{[]cell{ok, {Name: "b", Concurrency: 1, ValueSize: 1024, KeyBase: 5}}, "overlap"},
		{[]cell{{Name: "h", Concurrency: 1, KeyBase: 1e13}}, "do not fit"},
	} {
		err := checkCells(tc.cs, 1000)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("checkCells(%+v): %v, want an error containing %q", tc.cs, err, tc.want)
		}
	}
	// The same base on different shapes, and far-apart bases, are fine.
	if err := checkCells([]cell{ok, {Name: "b", Concurrency: 1, ValueSize: 1024, Shape: oneRange},
		{Name: "c", Concurrency: 1, ValueSize: 1024, KeyBase: 100 * 1000}}, 1000); err != nil {
		t.Fatal(err)
	}
}

func TestPlacement(t *testing.T) {
	one, many := cell{Name: "x", Shape: oneRange}, cell{Name: "y"}
	if err := checkPlacement(one, "range", 1); err != nil {
		t.Fatal(err)
	}
	if err := checkPlacement(one, "range", 2); err == nil || !strings.Contains(err.Error(), "cell x: its keys lie in 2 ranges, want 1") {
		t.Fatalf("one-range cell over 2 ranges: %v", err)
	}
	if err := checkPlacement(many, "shard", 64); err != nil {
		t.Fatal(err)
	}
	spec := cellNamed(t, "writes@64-1range").space().preloadSpec(bench.DefaultKeys)
	if n := shardsOver(spec, 1); n != 1 {
		t.Fatalf("1 shard: keys over %d shards", n)
	}
	if n := shardsOver(spec, dbShards); n != dbShards {
		t.Fatalf("%d shards: keys over %d shards", dbShards, n)
	}
	lo, hi := keySpan(spec)
	for i := uint64(0); i < spec.Keys; i++ {
		k := spec.Key(i)
		if bytes.Compare(k, lo) < 0 || bytes.Compare(k, hi) > 0 {
			t.Fatalf("key %q outside [%q, %q]", k, lo, hi)
		}
	}
	if bytes.Equal(lo, hi) {
		t.Fatalf("span [%q, %q] of %d keys", lo, hi, spec.Keys)
	}
}

// The table has a row per cell, new cells included, from the cells list.
func TestTableRowsFromCells(t *testing.T) {
	res := func(ops float64) *bench.Result {
		return &bench.Result{Total: bench.OpSummary{OpsPerSec: ops, P50Ms: 1, P99Ms: 2}}
	}
	all := map[string]systemResults{
		"rangestore": {"ycsb-b@64": res(3000), "writes@64-1range": res(1000)},
		"etcd":       {"ycsb-b@64": res(1500)},
		"dragonboat": {"writes@64-1kib": res(4000)},
	}
	table := renderTable(options{keys: bench.DefaultKeys, splits: 63}, all)
	for _, c := range cells {
		if !strings.Contains(table, "| "+c.Name+" ") {
			t.Errorf("no row for %s in\n%s", c.Name, table)
		}
	}
	if !strings.Contains(table, "| 3,000 | 1.0 | 2.0 | 1,500 | 1.0 | 2.0 | 2.00×") {
		t.Errorf("ycsb-b@64 row wrong in\n%s", table)
	}
}

// freeAddr never hands out an address twice, even when offered one again.
func TestAddrSetPick(t *testing.T) {
	var s addrSet
	offers := []string{"a:1", "a:1", "a:1", "b:2"}
	probe := func() (string, error) {
		a := offers[0]
		offers = offers[1:]
		return a, nil
	}
	if a, err := s.pick(probe); err != nil || a != "a:1" {
		t.Fatalf("first pick: %q, %v", a, err)
	}
	if a, err := s.pick(probe); err != nil || a != "b:2" {
		t.Fatalf("second pick: %q, %v, want b:2 (a:1 was handed out)", a, err)
	}
	if _, err := s.pick(func() (string, error) { return "a:1", nil }); err == nil || !strings.Contains(err.Error(), "handed out before") {
		t.Fatalf("only a used address offered: %v", err)
	}
}
