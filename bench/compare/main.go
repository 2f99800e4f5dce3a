// Command compare runs the same closed-loop workloads against a 3-process
// rangestore cluster, a 3-process etcd cluster and an in-process raw
// Dragonboat ceiling on this machine, and prints one markdown table.
//
//	go run . [--measure 8s] [--write-results ../RESULTS.md]
//	go run . --systems rangestore,rangestore-insecure   # TLS overhead
//
// rangestore runs secure, as deployed (mutual TLS with certificates made
// in the work directory); --insecure runs it in plaintext like etcd here.
// The system rangestore-insecure runs the same cells in plaintext in the
// same run, and the report then shows the TLS overhead per cell.
//
// The rangestore driver sends its requests through client/ (straight to
// each range's leaseholder); --raw-grpc sends raw KV RPCs to the nodes in
// turn instead (each node's gateway forwards to the leaseholder: a second
// hop), as before client/ existed, and the system rangestore-raw-grpc does
// so beside rangestore in the same run, for the before/after per cell.
// Every rangestore cell reports the node-to-node batches the nodes
// received per operation (the forwarding counter), less their idle level.
//
// Cells run on a cluster shape each (cells.go): most on 64 ranges / 64
// shards; the one-range cells on a fresh cluster per system with one user
// range (rangestore: no initial splits, load splits off), one Dragonboat
// shard, etcd as always, after the others. Each cell checks where its
// keys lie (the routing table, the shard hash) and prints it; a one-range
// cell whose keys span more than one range or shard, before or after its
// run, fails the run. A cell with values of another size uses its own key
// space, preloaded with values of that size.
//
// The ceiling runs Dragonboat exactly as a rangestore node does: the
// engine, LogDB, Raft timing and per-shard config of ranges/engine_tuning.go,
// and rangestore's soft settings, which Dragonboat reads from
// dragonboat-soft-settings.json in the working directory (this directory;
// the ceiling refuses to start without an identical copy). The report
// header prints that tuning.
//
// The transaction cells (issue 16, txncells.go) run the bank workload on
// rangestore and etcd (a snapshot checker fails the run if the balances
// do not hold) and a 2-range transaction beside a 1-range batch on
// rangestore; the report adds their committed/s, retries per commit and
// latency ratio.
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
	"github.com/rangestore/rangestore/ranges"
)

type cell struct {
	Name        string
	Concurrency int
	// ReadPct, ScanPct: the kv mix (the rest overwrites), uniform keys.
	ReadPct float64
	ScanPct float64
	// YCSB: a core YCSB workload letter instead (its mix, zipfian keys).
	YCSB string
	// ValueSize: bytes per written and preloaded value (0:
	// bench.DefaultValueSize). KeyBase: the cell's key space
	// (bench.Spec.KeyBase); a cell with other values needs its own, so
	// that the other cells keep reading values of their size.
	ValueSize int
	KeyBase   uint64
	// Shape: the cluster the cell runs on (see cells.go).
	Shape shape
	Note  string
	// Mode: which servers the reads go to (strongReads: the default).
	Mode readMode
	// EtcdOf: the cell whose etcd result this row compares with (etcd is
	// not run for this cell).
	EtcdOf string
	// Kind: a kv cell (the default) or a transaction cell (txncells.go).
	Kind cellKind
	// Zipfian (bank cells): accounts drawn from bench's zipfian
	// generator (a hot set) instead of uniformly.
	Zipfian bool
}

var cells = []cell{
	{Name: "writes@64", Concurrency: 64},
	{Name: "writes@256", Concurrency: 256},
	{Name: "reads@64", Concurrency: 64, ReadPct: 100, Note: "rangestore lease reads; etcd linearizable Get; Dragonboat SyncRead"},
	{Name: "kv95@64", Concurrency: 64, ReadPct: 95},
	{Name: "scans@64", Concurrency: 64, ScanPct: 100, Note: "10-key scans"},
	// Issue 14: a skewed read-mostly mix, and writes of larger values.
	{Name: "ycsb-b@64", Concurrency: 64, YCSB: "B", Note: "YCSB-B: 95 % reads, 5 % updates, zipfian keys, θ 0.99"},
	{Name: "writes@64-1kib", Concurrency: 64, ValueSize: 1024, KeyBase: kibKeyBase, Note: "1,024-byte values, own key space preloaded with them"},
	// Issue 14: one range vs one shard vs etcd (one group). Each system
	// runs them on a fresh cluster of that shape, after all the cells
	// above and below (see phases).
	{Name: "writes@64-1range", Concurrency: 64, Shape: oneRange, Note: "rangestore 1 user range, no initial splits, load splits off; Dragonboat 1 shard; etcd as always"},
	{Name: "reads@64-1range", Concurrency: 64, ReadPct: 100, Shape: oneRange, Note: "as writes@64-1range; lease reads, linearizable Get, SyncRead"},
	// Issue 16: serializable transactions (txncells.go). Bank on both
	// systems (Dragonboat has no transactions); the 2-range transaction
	// and the 1-range batch from one client on rangestore only.
	{Name: "bank@64", Concurrency: 64, Kind: bankCell, KeyBase: bankKeyBase,
		Note: "100 accounts, transfers read two and write two: rangestore DB.Txn over >= 10 ranges, etcd Txn compare-and-swap on mod revisions with retries; committed/s"},
	{Name: "bank-zipf@64", Concurrency: 64, Kind: bankCell, KeyBase: bankZipfKeyBase, Zipfian: true,
		Note: "as bank@64, accounts drawn zipfian (θ 0.99): a hot set, contention"},
	{Name: "txn2@1", Concurrency: 1, Kind: txn2Cell, Note: "rangestore only: one client, a transaction writing one key in each of two ranges"},
	{Name: "batch1@1", Concurrency: 1, Kind: batch1Cell, Note: "rangestore only: one client, a one-range Batch of two puts"},
	// Issue 13: follower and read-replica reads (bounded staleness) beside
	// etcd's serializable reads. Last, so that the read replicas (started
	// before the first reads@64-read-replicas cell) replicate no earlier
	// cell's writes.
	{Name: "reads@64-followers", Concurrency: 64, ReadPct: 100, Mode: followerReads,
		Note: "rangestore bounded-staleness reads, max_staleness 10s, each voter from its own replica; etcd serializable Get; Dragonboat StaleRead"},
	{Name: "reads@64-read-replicas", Concurrency: 64, ReadPct: 100, Mode: replicaReads, EtcdOf: "reads@64-followers",
		Note: "rangestore bounded-staleness reads sent only to 2 read-replica processes; etcd: the serializable Gets above"},
}

// kibKeyBase is the key space of writes@64-1kib: far above the default
// space and its inserts (bench.CheckKeySpace: 16-byte keys hold 10^13
// indexes).
const kibKeyBase = 1 << 40

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
	// insecure: the rangestore system runs --insecure (plaintext).
	insecure bool
	// rawGRPC: the rangestore systems send raw KV RPCs instead of using
	// client/.
	rawGRPC bool
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
	fs.StringSliceVar(&o.systems, "systems", []string{"rangestore", "etcd", "dragonboat"}, "systems to run (rangestore, rangestore-insecure, rangestore-raw-grpc, etcd, dragonboat)")
	fs.StringVar(&o.src, "rangestore-src", "../..", "rangestore source tree to build ./cmd/rangestore from")
	fs.StringVar(&o.workdir, "workdir", "", "data and log directory (default: a temp dir, removed unless --keep)")
	fs.IntVar(&o.splits, "initial-splits", 63, "rangestore user-range split points (ranges = splits + 1)")
	fs.Uint64Var(&o.keys, "keys", bench.DefaultKeys, "preloaded key space")
	fs.StringVar(&o.writeResults, "write-results", "", "write the table into this markdown file (e.g. ../RESULTS.md)")
	fs.StringVar(&o.jsonOut, "json", "", "write every result as JSON to FILE")
	fs.StringVar(&o.commit, "commit", "", "commit to report (default: git rev-parse in --rangestore-src)")
	fs.StringSliceVar(&o.only, "cells", nil, "run only these cells (default all: "+strings.Join(cellNames(), ",")+")")
	keep := fs.Bool("keep", false, "keep --workdir (logs, data) after the run")
	fs.BoolVar(&o.quiet, "quiet", false, "no per-second progress lines")
	fs.BoolVar(&o.insecure, "insecure", false, "run the rangestore system in plaintext (--insecure processes) instead of mutual TLS; the system rangestore-insecure does so beside it")
	fs.BoolVar(&o.rawGRPC, "raw-grpc", false, "drive rangestore with raw KV RPCs to the nodes in turn (each gateway forwarding to the leaseholder) instead of client/; the system rangestore-raw-grpc does so beside it")
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
	if err := checkCells(cells, o.keys); err != nil {
		return err
	}
	if len(o.only) > 0 {
		var sel []cell
		for _, n := range o.only {
			found := false
			for _, c := range cells {
				found = found || c.Name == n
			}
			if !found {
				return fmt.Errorf("--cells: unknown cell %q (cells: %s)", n, strings.Join(cellNames(), ","))
			}
		}
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
	shares := map[string]readShare{}
	hops := map[string]hopStats{}
	for _, sys := range o.systems {
		t0 := time.Now()
		res, err := runSystem(o, sys, src, shares, hops)
		if err != nil {
			return fmt.Errorf("%s: %w", sys, err)
		}
		all[sys] = res
		fmt.Fprintf(os.Stderr, "%s done in %s\n", sys, time.Since(t0).Round(time.Second))
	}
	table := renderTable(o, all)
	report := fmt.Sprintf("%s\n\n%s\n%s%s%s%s%s", machine, table, goals(all), followerSummary(all, shares), txnSummary(o, all), tlsOverhead(o, all), routingSummary(o, all, hops))
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

// cellNames lists every cell, in table order (each system runs them
// grouped by cluster shape: see phases).
func cellNames() []string {
	var out []string
	for _, c := range cells {
		out = append(out, c.Name)
	}
	return out
}

// runSystem runs every cell on one system, one phase (a fresh cluster)
// per cluster shape; for rangestore's follower-read cells it records in
// shares who served the reads, and for every rangestore cell in hops (by
// hopKey) the node-to-node batches.
func runSystem(o options, sys, src string, shares map[string]readShare, hops map[string]hopStats) (systemResults, error) {
	dir := filepath.Join(o.workdir, sys)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var bin string
	if isRangestore(sys) {
		var err error
		if bin, err = buildRangestore(src, dir); err != nil {
			return nil, err
		}
	} else if sys != "etcd" && sys != "dragonboat" {
		return nil, fmt.Errorf("unknown system %q", sys)
	}
	out := systemResults{}
	for _, ph := range phases(cells) {
		pdir := dir
		if ph.Shape != manyRanges {
			pdir = filepath.Join(dir, ph.Shape.String())
			if err := os.MkdirAll(pdir, 0o755); err != nil {
				return nil, err
			}
		}
		if err := runPhase(o, sys, bin, pdir, ph, out, shares, hops); err != nil {
			return nil, fmt.Errorf("%s cluster: %w", ph.Shape, err)
		}
	}
	return out, nil
}

func isRangestore(sys string) bool {
	switch sys {
	case "rangestore", "rangestore-insecure", "rangestore-raw-grpc":
		return true
	}
	return false
}

// runPhase starts a fresh cluster of sys in the phase's shape (bin: the
// rangestore binary), preloads the phase's key spaces, runs its cells into
// out and stops the cluster.
func runPhase(o options, sys, bin, dir string, ph phase, out systemResults, shares map[string]readShare, hops map[string]hopStats) error {
	var d bench.Driver
	var cleanup func()
	// driverFor returns the driver of a cell's read mode (nil: the system
	// has no counterpart, the cell is not run) and a cleanup.
	var driverFor func(c cell) (bench.Driver, func(), error)
	// placement reports (and checks) where a cell's keys lie.
	var placement func(c cell, spec bench.Spec) (string, error)
	var rs *rsCluster
	// ts: how the system runs the transaction cells.
	var ts txnSystem
	switch {
	case isRangestore(sys):
		splits, extra := o.splits, []string(nil)
		if ph.Shape == oneRange {
			splits, extra = 0, oneRangeStartArgs
		}
		var err error
		rs, err = startRangestore(bin, dir, splits, sys != "rangestore-insecure" && !o.insecure, extra...)
		if err != nil {
			return err
		}
		raw := o.rawGRPC || sys == "rangestore-raw-grpc"
		rd, err := rs.driver(rs.voters, raw, false)
		if err != nil {
			rs.g.stop()
			return err
		}
		d, cleanup = rd, func() { _ = rd.Close(); rs.g.stop() }
		if !raw { // transactions go through client/
			ts = txnSystem{bank: rd, load: rd, pairs: rd, ranges: rs.rangesOfKeys}
		}
		driverFor = func(c cell) (bench.Driver, func(), error) {
			procs := rs.voters
			if c.Mode == replicaReads {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				err := rs.startReadReplicas(ctx)
				cancel()
				if err != nil {
					return nil, nil, err
				}
				procs = rs.replicas
			}
			// Each voter (or read replica) serves its share of the
			// reads from its own replica: raw, the reads go to the
			// processes in turn; through client/, to one client per
			// process, each in that process's locality.
			fd, err := rs.driver(procs, raw, true)
			if err != nil {
				return nil, nil, err
			}
			fd.SetBoundedStaleness(maxStaleness)
			return fd, func() { _ = fd.Close() }, nil
		}
		placement = func(c cell, spec bench.Spec) (string, error) {
			lo, hi := keySpan(spec)
			ids, err := rs.rangesOver(context.Background(), lo, hi)
			if err != nil {
				return "", err
			}
			what := fmt.Sprintf("its keys [%s, %s] lie in %d ranges", lo, hi, len(ids))
			if len(ids) == 1 {
				what = fmt.Sprintf("its keys [%s, %s] lie in 1 range (r%d)", lo, hi, ids[0])
			}
			return what, checkPlacement(c, "range", len(ids))
		}
	case sys == "etcd":
		g, eps, err := startEtcd(dir)
		if err != nil {
			return err
		}
		ed, err := newEtcdDriver(eps)
		if err != nil {
			g.stop()
			return err
		}
		d, cleanup = ed, func() { ed.Close(); g.stop() }
		ts = txnSystem{bank: etcdBank{ed.cli}, load: ed}
		driverFor = func(c cell) (bench.Driver, func(), error) {
			if c.Mode == replicaReads {
				return nil, nil, nil
			}
			return etcdSerializable{ed}, func() {}, nil
		}
		placement = func(cell, bench.Spec) (string, error) { return "one Raft group (etcd)", nil }
	case sys == "dragonboat":
		shards := dbShards
		if ph.Shape == oneRange {
			shards = 1
		}
		c, err := startDragonboat(dir, shards)
		if err != nil {
			return err
		}
		d, cleanup = c, c.close
		driverFor = func(cl cell) (bench.Driver, func(), error) {
			if cl.Mode == replicaReads {
				return nil, nil, nil
			}
			return &dbStale{dbCluster: c}, func() {}, nil
		}
		placement = func(cl cell, spec bench.Spec) (string, error) {
			n := shardsOver(spec, c.shards)
			return fmt.Sprintf("its keys lie in %d of %d shards", n, c.shards), checkPlacement(cl, "shard", n)
		}
	default:
		return fmt.Errorf("unknown system %q", sys)
	}
	defer cleanup()

	for _, k := range ph.spaces() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		err := bench.Preload(ctx, d, k.preloadSpec(o.keys), 32, 1)
		cancel()
		if err != nil {
			return fmt.Errorf("preload %d keys from index %d with %d-byte values: %w", o.keys, k.Base, k.ValueSize, err)
		}
	}
	// The cluster's own node-to-node batches per second (liveness,
	// closed timestamps), subtracted from the cells' counts.
	var background float64
	if rs != nil {
		idle, _, err := idleReads(context.Background(), rs.all(), idleWindow)
		if err != nil {
			return err
		}
		background = idle.Internal / idleWindow.Seconds()
	}
	for _, c := range ph.Cells {
		if c.Kind != kvCell {
			r, err := runTxnCell(o, sys, ts, c)
			if err != nil {
				return err
			}
			if r != nil {
				out[c.Name] = r
			}
			continue
		}
		spec, err := c.spec(o.keys)
		if err != nil {
			return err
		}
		w, err := bench.NewWorkload(spec)
		if err != nil {
			return err
		}
		where, err := placement(c, spec)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s %s (%s cluster): %s\n", sys, c.Name, ph.Shape, where)
		opts := bench.Options{Concurrency: c.Concurrency, Warmup: o.warmup, Duration: o.measure, Seed: 1, Label: sys + " " + c.Name}
		if !o.quiet {
			opts.Progress = os.Stderr
		}
		cd, done := d, func() {}
		if c.Mode != strongReads {
			if cd, done, err = driverFor(c); err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			if cd == nil {
				continue
			}
		}
		var before map[string]readCounters
		var idle readShare
		cellBackground := background
		if rs != nil {
			if c.Mode != strongReads {
				// The counters also count the cluster's own reads (meta
				// lookups, liveness): measure them over an idle window
				// first (read replicas may have joined since).
				if idle, before, err = idleReads(context.Background(), rs.all(), idleWindow); err != nil {
					done()
					return err
				}
				cellBackground = idle.Internal / idleWindow.Seconds()
			} else if before, err = scrapeReads(context.Background(), rs.all()); err != nil {
				done()
				return err
			}
		}
		counted := &countingDriver{Driver: cd}
		stats0, _ := clientStats(cd)
		t0 := time.Now()
		r, err := bench.Run(context.Background(), counted, w, opts)
		elapsed := time.Since(t0)
		if err == nil && before != nil {
			var after map[string]readCounters
			if after, err = scrapeReads(context.Background(), rs.all()); err == nil {
				sh := diffReads(before, after)
				if c.Mode != strongReads {
					sh.Idle, sh.IdleWindow = &idle, idleWindow
					if sys == "rangestore" { // the system followerSummary reports
						shares[c.Name] = sh
					}
					fmt.Fprintf(os.Stderr, "%s: %s\n", c.Name, sh)
				}
				h := hopStats{Ops: counted.ops.Load(), Batches: sh.Internal, Background: cellBackground * elapsed.Seconds()}
				if stats1, ok := clientStats(cd); ok {
					h.Client, h.Attempts, h.Redirects = true, stats1.Attempts-stats0.Attempts, stats1.Redirects-stats0.Redirects
					h.Lookups = stats1.RoutingLookups - stats0.RoutingLookups
				}
				hops[hopKey(sys, c.Name)] = h
				fmt.Fprintf(os.Stderr, "%s: %s\n", c.Name, h)
			}
		}
		done()
		if err != nil {
			return err
		}
		if c.Shape == oneRange {
			// Still one range (or shard) after the load?
			after, err := placement(c, spec)
			if err != nil {
				return fmt.Errorf("after the run: %w", err)
			}
			fmt.Fprintf(os.Stderr, "%s %s after the run: %s\n", sys, c.Name, after)
		}
		r.Driver = sys
		_ = bench.WriteSummary(os.Stderr, r)
		out[c.Name] = r
	}
	return nil
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
	fmt.Fprintf(&b, "Closed loop, %d preloaded keys, %d-byte keys (uniform), %d-byte values, %s warm-up + %s measured per cell; rangestore %d ranges (3 processes), etcd 3 member processes, both driven from a separate client process; Dragonboat in-process (ceiling), %d shards; unless the row says otherwise. ops/s, p50/p99 in ms.\n\n",
		o.keys, bench.DefaultKeySize, bench.DefaultValueSize, o.warmup, o.measure, o.splits+1, dbShards)
	fmt.Fprintf(&b, "Dragonboat engine of rangestore and of the ceiling (one definition, ranges/engine_tuning.go): %s.\n\n", ranges.RaftTuningSummary())
	b.WriteString("| workload | rangestore ops/s | p50 | p99 | etcd ops/s | p50 | p99 | ratio rs/etcd | p99 rs/etcd | dragonboat ops/s | p50 | p99 |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range cells {
		etcdCell := c.Name
		if c.EtcdOf != "" {
			etcdCell = c.EtcdOf
		}
		rs, et, db := all["rangestore"][c.Name], all["etcd"][etcdCell], all["dragonboat"][c.Name]
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
		if c.Mode != strongReads || c.Kind != kvCell {
			continue // issue 5's goals compare strong kv reads and writes; see followerSummary, txnSummary
		}
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

// followerSummary reports the issue 13 rows: follower and read-replica
// reads against etcd's serializable reads and rangestore's own lease
// reads, and who served them ("" if none of those cells ran).
func followerSummary(all map[string]systemResults, shares map[string]readShare) string {
	rs, et := all["rangestore"], all["etcd"]
	var b strings.Builder
	for _, c := range cells {
		if c.Mode == strongReads {
			continue
		}
		a := rs[c.Name]
		if a == nil {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\nFollower and read-replica reads (issue 13; reported, not enforced):\n\n")
		}
		etcdCell := c.Name
		if c.EtcdOf != "" {
			etcdCell = c.EtcdOf
		}
		fmt.Fprintf(&b, "- %s: %s ops/s, p99 %.1f ms", c.Name, fmtRate(a.Total.OpsPerSec), a.Total.P99Ms)
		if e := et[etcdCell]; e != nil && e.Total.OpsPerSec > 0 {
			fmt.Fprintf(&b, "; %.2f× etcd serializable reads (p99 %.1f vs %.1f ms)", a.Total.OpsPerSec/e.Total.OpsPerSec, a.Total.P99Ms, e.Total.P99Ms)
		}
		if l := rs["reads@64"]; l != nil && l.Total.OpsPerSec > 0 {
			fmt.Fprintf(&b, "; %.2f× rangestore lease reads", a.Total.OpsPerSec/l.Total.OpsPerSec)
		}
		b.WriteString("\n")
		if sh, ok := shares[c.Name]; ok {
			fmt.Fprintf(&b, "  - warm-up and measured: %s\n", sh)
		}
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

// tlsOverhead compares the rangestore cells run secure (mutual TLS) with
// the same cells run --insecure in this run ("" unless both ran).
func tlsOverhead(o options, all map[string]systemResults) string {
	sec, plain := all["rangestore"], all["rangestore-insecure"]
	if sec == nil || plain == nil || o.insecure {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nTLS overhead (issue 15): the same cells, rangestore with mutual TLS vs --insecure, in this run:\n\n")
	b.WriteString("| workload | TLS ops/s | p50 | p99 | plaintext ops/s | p50 | p99 | TLS/plaintext ops/s |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range cells {
		a, p := sec[c.Name], plain[c.Name]
		if a == nil && p == nil {
			continue
		}
		a1, a2, a3 := cellStats(a)
		p1, p2, p3 := cellStats(p)
		ratio := "–"
		if a != nil && p != nil && p.Total.OpsPerSec > 0 {
			ratio = fmt.Sprintf("%.2f×", a.Total.OpsPerSec/p.Total.OpsPerSec)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c.Name, a1, a2, a3, p1, p2, p3, ratio)
	}
	return b.String()
}
