// Command compare runs the same closed-loop workloads against a 3-process
// rangestore cluster, a 3-process etcd cluster and an in-process raw
// Dragonboat ceiling on this machine, and prints one markdown table.
//
//	go run . [--measure 8s] [--write-results ../RESULTS.md]
//
// It lives in its own module so that the main go.mod does not depend on etcd.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/rangestore/rangestore/bench"
)

type cell struct {
	Name        string
	Concurrency int
	ReadPct     float64
	ScanPct     float64
	Note        string
}

var cells = []cell{
	{Name: "writes@64", Concurrency: 64},
	{Name: "writes@256", Concurrency: 256},
	{Name: "reads@64", Concurrency: 64, ReadPct: 100, Note: "rangestore lease reads; etcd linearizable Get; Dragonboat SyncRead"},
	{Name: "kv95@64", Concurrency: 64, ReadPct: 95},
	{Name: "scans@64", Concurrency: 64, ScanPct: 100, Note: "10-key scans"},
}

// systemResults maps cell name to result for one system.
type systemResults map[string]*bench.Result

type options struct {
	measure, warmup time.Duration
	systems         []string
	src, workdir    string
	splits          int
	keys            uint64
	writeResults    string
	jsonOut         string
	commit          string
	only            []string
	quiet           bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "etcd-member" {
		if err := runEtcdMember(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "etcd-member: %v\n", err)
			os.Exit(1)
		}
		return
	}
	var o options
	fs := pflag.NewFlagSet("compare", pflag.ExitOnError)
	fs.DurationVar(&o.measure, "measure", 8*time.Second, "measured time per cell")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "warm-up per cell")
	fs.StringSliceVar(&o.systems, "systems", []string{"rangestore", "etcd", "dragonboat"}, "systems to run")
	fs.StringVar(&o.src, "rangestore-src", "../..", "rangestore source tree to build ./cmd/rangestore from")
	fs.StringVar(&o.workdir, "workdir", "", "data and log directory (default: a temp dir, removed unless --keep)")
	fs.IntVar(&o.splits, "initial-splits", 63, "rangestore user-range split points (ranges = splits + 1)")
	fs.Uint64Var(&o.keys, "keys", bench.DefaultKeys, "preloaded key space")
	fs.StringVar(&o.writeResults, "write-results", "", "write the table into this markdown file (e.g. ../RESULTS.md)")
	fs.StringVar(&o.jsonOut, "json", "", "write every result as JSON to FILE")
	fs.StringVar(&o.commit, "commit", "", "commit to report (default: git rev-parse in --rangestore-src)")
	fs.StringSliceVar(&o.only, "cells", nil, "run only these cells (default all: writes@64,writes@256,reads@64,kv95@64,scans@64)")
	keep := fs.Bool("keep", false, "keep --workdir (logs, data) after the run")
	fs.BoolVar(&o.quiet, "quiet", false, "no per-second progress lines")
	_ = fs.Parse(os.Args[1:])
	if err := run(o, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "compare: %v\n", err)
		os.Exit(1)
	}
}

func run(o options, keep bool) error {
	start := time.Now()
	if o.workdir == "" {
		d, err := os.MkdirTemp("", "bench-compare-")
		if err != nil {
			return err
		}
		o.workdir = d
		if !keep {
			defer os.RemoveAll(d)
		}
	} else if err := os.MkdirAll(o.workdir, 0o755); err != nil {
		return err
	}
	if len(o.only) > 0 {
		var sel []cell
		for _, c := range cells {
			for _, n := range o.only {
				if c.Name == n {
					sel = append(sel, c)
				}
			}
		}
		cells = sel
	}
	src, err := filepath.Abs(o.src)
	if err != nil {
		return err
	}
	machine := machineInfo(src, o.commit)
	fmt.Fprintln(os.Stderr, machine)
	all := map[string]systemResults{}
	for _, sys := range o.systems {
		t0 := time.Now()
		res, err := runSystem(o, sys, src)
		if err != nil {
			return fmt.Errorf("%s: %w", sys, err)
		}
		all[sys] = res
		fmt.Fprintf(os.Stderr, "%s done in %s\n", sys, time.Since(t0).Round(time.Second))
	}
	table := renderTable(o, all)
	report := fmt.Sprintf("%s\n\n%s\n%s", machine, table, goals(all))
	fmt.Println(report)
	fmt.Fprintf(os.Stderr, "total time %s\n", time.Since(start).Round(time.Second))
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if o.writeResults != "" {
		return writeResults(o.writeResults, report)
	}
	return nil
}

func runSystem(o options, sys, src string) (systemResults, error) {
	dir := filepath.Join(o.workdir, sys)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var d bench.Driver
	var cleanup func()
	switch sys {
	case "rangestore":
		bin, err := buildRangestore(src, dir)
		if err != nil {
			return nil, err
		}
		g, addrs, err := startRangestore(bin, dir, o.splits)
		if err != nil {
			return nil, err
		}
		rd, err := bench.NewRangestoreDriver(addrs, 1)
		if err != nil {
			g.stop()
			return nil, err
		}
		d, cleanup = rd, func() { rd.Close(); g.stop() }
	case "etcd":
		g, eps, err := startEtcd(dir)
		if err != nil {
			return nil, err
		}
		ed, err := newEtcdDriver(eps)
		if err != nil {
			g.stop()
			return nil, err
		}
		d, cleanup = ed, func() { ed.Close(); g.stop() }
	case "dragonboat":
		c, err := startDragonboat(dir)
		if err != nil {
			return nil, err
		}
		d, cleanup = c, c.close
	default:
		return nil, fmt.Errorf("unknown system %q", sys)
	}
	defer cleanup()

	base, _ := bench.KVSpec(0, 0, bench.DefaultScanLength)
	base.Keys = o.keys
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	err := bench.Preload(ctx, d, base, 32, 1)
	cancel()
	if err != nil {
		return nil, err
	}
	out := systemResults{}
	for _, c := range cells {
		spec, err := bench.KVSpec(c.ReadPct, c.ScanPct, bench.DefaultScanLength)
		if err != nil {
			return nil, err
		}
		spec.Keys, spec.Name = o.keys, c.Name
		w, err := bench.NewWorkload(spec)
		if err != nil {
			return nil, err
		}
		opts := bench.Options{Concurrency: c.Concurrency, Warmup: o.warmup, Duration: o.measure, Seed: 1, Label: sys + " " + c.Name}
		if !o.quiet {
			opts.Progress = os.Stderr
		}
		r, err := bench.Run(context.Background(), d, w, opts)
		if err != nil {
			return nil, err
		}
		r.Driver = sys
		_ = bench.WriteSummary(os.Stderr, r)
		out[c.Name] = r
	}
	return out, nil
}

func fmtRate(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	// thousands separators
	n := len(s)
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (n-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

func cellStats(r *bench.Result) (string, string, string) {
	if r == nil {
		return "–", "–", "–"
	}
	t := r.Total
	s := fmtRate(t.OpsPerSec)
	if t.Errors > 0 {
		s += fmt.Sprintf(" (%d err)", t.Errors)
	}
	return s, fmt.Sprintf("%.1f", t.P50Ms), fmt.Sprintf("%.1f", t.P99Ms)
}

func renderTable(o options, all map[string]systemResults) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Closed loop, %d preloaded keys, %d-byte keys (uniform), %d-byte values, %s warm-up + %s measured per cell; rangestore %d ranges (3 processes), etcd 3 member processes, both driven from a separate client process; Dragonboat in-process (ceiling). ops/s, p50/p99 in ms.\n\n",
		o.keys, bench.DefaultKeySize, bench.DefaultValueSize, o.warmup, o.measure, o.splits+1)
	b.WriteString("| workload | rangestore ops/s | p50 | p99 | etcd ops/s | p50 | p99 | ratio rs/etcd | p99 rs/etcd | dragonboat ops/s | p50 | p99 |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range cells {
		rs, et, db := all["rangestore"][c.Name], all["etcd"][c.Name], all["dragonboat"][c.Name]
		r1, r2, r3 := cellStats(rs)
		e1, e2, e3 := cellStats(et)
		d1, d2, d3 := cellStats(db)
		ratio, p99r := "–", "–"
		if rs != nil && et != nil && et.Total.OpsPerSec > 0 {
			ratio = fmt.Sprintf("%.2f×", rs.Total.OpsPerSec/et.Total.OpsPerSec)
			if et.Total.P99Ms > 0 {
				p99r = fmt.Sprintf("%.2f", rs.Total.P99Ms/et.Total.P99Ms)
			}
		}
		name := c.Name
		if c.Note != "" {
			name += " (" + c.Note + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, r1, r2, r3, e1, e2, e3, ratio, p99r, d1, d2, d3)
	}
	return b.String()
}

func goals(all map[string]systemResults) string {
	rs, et := all["rangestore"], all["etcd"]
	if rs == nil || et == nil {
		return ""
	}
	ratio := func(cell string) (float64, bool) {
		a, b := rs[cell], et[cell]
		if a == nil || b == nil || b.Total.OpsPerSec == 0 {
			return 0, false
		}
		return a.Total.OpsPerSec / b.Total.OpsPerSec, true
	}
	var b strings.Builder
	b.WriteString("\nGoals (issue 5; reported, not enforced):\n\n")
	for _, g := range []struct {
		cell, what string
		want       float64
	}{
		{"writes@256", "writes@256 ≥ 2× etcd", 2},
		{"reads@64", "lease reads@64 ≥ 5× etcd linearizable reads", 5},
		{"kv95@64", "kv95@64 ≥ 3× etcd", 3},
	} {
		r, ok := ratio(g.cell)
		if !ok {
			continue
		}
		verdict := "met"
		if r < g.want {
			verdict = fmt.Sprintf("short (%.0f%% of goal)", 100*r/g.want)
		}
		fmt.Fprintf(&b, "- %s: %.2f× — %s\n", g.what, r, verdict)
	}
	var worse []string
	for _, c := range cells {
		a, e := rs[c.Name], et[c.Name]
		if a != nil && e != nil && a.Total.P99Ms > e.Total.P99Ms {
			worse = append(worse, fmt.Sprintf("%s (%.1f vs %.1f ms)", c.Name, a.Total.P99Ms, e.Total.P99Ms))
		}
	}
	if len(worse) == 0 {
		b.WriteString("- p99 ≤ etcd's: met in every cell\n")
	} else {
		fmt.Fprintf(&b, "- p99 ≤ etcd's: short in %s\n", strings.Join(worse, ", "))
	}
	return b.String()
}

func machineInfo(src, commit string) string {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if _, v, ok := strings.Cut(l, ":"); ok {
					cpu = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	if commit == "" {
		commit = "unknown"
		if out, err := exec.Command("git", "-C", src, "rev-parse", "--short", "HEAD").Output(); err == nil {
			commit = strings.TrimSpace(string(out))
			if st, err := exec.Command("git", "-C", src, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
				commit += " (working tree with uncommitted changes)"
			}
		}
	}
	return fmt.Sprintf("Machine: %d CPUs (%s)%s%s; %s; rangestore commit %s; %s",
		runtime.NumCPU(), cpu, mem, kernel, runtime.Version(), commit, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

const (
	beginMark = "<!-- BEGIN bench-compare output -->"
	endMark   = "<!-- END bench-compare output -->"
)

// writeResults replaces the generated block of path (or creates the file),
// keeping any hand-written text around it.
func writeResults(path, report string) error {
	block := beginMark + "\n" + report + "\n" + endMark
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, beginMark), strings.Index(s, endMark)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + s[j+len(endMark):]
	case len(s) == 0:
		s = "# Benchmark results\n\nProduced by `make bench-compare` (bench/compare).\n\n" + block + "\n"
	default:
		s = strings.TrimRight(s, "\n") + "\n\n" + block + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
