package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rangestore/rangestore/bench"
	"github.com/rangestore/rangestore/client"
)

const workloadUsage = `  kv    point reads (--read-percent), scans (--scan-percent, --scan-length), the rest overwrites
  ycsb  YCSB core workload --workload A|B|C|D|E|F (zipfian unless --distribution is given)

Examples:
  rangestore workload run kv --hosts 127.0.0.1:26257 --read-percent 95 --concurrency 64 --duration 30s
  rangestore workload run ycsb --workload B --hosts A,B,C --json out.json --plot out.svg`

// runWorkload runs a closed-loop load against a running cluster; the logic
// lives in package bench.
func runWorkload(args []string) error {
	fs := newFlagSet("workload")
	hosts := fs.StringSlice("hosts", []string{defaultHost}, "gRPC addresses of nodes of the cluster (comma-separated; the client sends each request straight to its range's leaseholder, and more addresses give failover when opening)")
	sec := addSecFlags(fs)
	driver := fs.String("driver", "rangestore", "client driver (this binary drives rangestore; etcd is driven by bench/compare)")
	duration := fs.Duration("duration", 10*time.Second, "measured time (after the warm-up)")
	warmup := fs.Duration("warmup", time.Second, "warm-up time, not counted in the summary")
	concurrency := fs.Int("concurrency", 64, "closed-loop workers, one request in flight each")
	readPct := fs.Float64("read-percent", 50, "kv: percent of point reads")
	scanPct := fs.Float64("scan-percent", 0, "kv: percent of scans")
	scanLen := fs.Int("scan-length", bench.DefaultScanLength, "kv: keys per scan")
	keySize := fs.Int("key-size", bench.DefaultKeySize, "key size in bytes")
	valueSize := fs.Int("value-size", bench.DefaultValueSize, "value size in bytes")
	keys := fs.Uint64("keys", bench.DefaultKeys, "key space size (keys preloaded and drawn from)")
	dist := fs.String("distribution", "", "key distribution: uniform, zipfian, sequential (default: uniform for kv, zipfian for ycsb)")
	ycsb := fs.String("workload", "A", "ycsb: core workload A-F")
	preload := fs.Bool("preload", true, "write the whole key space before the run")
	preloadConc := fs.Int("preload-concurrency", 16, "workers for --preload")
	jsonOut := fs.String("json", "", "write the result as JSON to FILE (- = stdout)")
	plot := fs.String("plot", "", "write a throughput/p99 plot over time to FILE.svg")
	seed := fs.Int64("seed", 1, "random seed")
	connsPerHost := fs.Int("conns-per-host", 1, "gRPC connections per node (1-64)")
	quiet := fs.Bool("quiet", false, "no per-second progress lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) != 2 || a[0] != "run" {
		return usagef("workload", "usage: workload run kv|ycsb [flags]")
	}
	// Every flag is checked before anything is dialled or preloaded.
	switch {
	case *duration <= 0:
		return usagef("workload", "--duration %s: must be positive", *duration)
	case *warmup < 0:
		return usagef("workload", "--warmup %s: must not be negative", *warmup)
	case *concurrency < 1:
		return usagef("workload", "--concurrency %d: need at least 1 worker", *concurrency)
	case *preloadConc < 1:
		return usagef("workload", "--preload-concurrency %d: need at least 1 worker", *preloadConc)
	case *connsPerHost < 1 || *connsPerHost > 64:
		return usagef("workload", "--conns-per-host %d: need 1 to 64", *connsPerHost)
	case *scanLen < 1:
		return usagef("workload", "--scan-length %d: need at least 1", *scanLen)
	case *keySize < 1:
		return usagef("workload", "--key-size %d: need at least 1 byte", *keySize)
	case *valueSize < 1:
		return usagef("workload", "--value-size %d: need at least 1 byte", *valueSize)
	}
	if *driver != "rangestore" {
		return fmt.Errorf("--driver %q: this binary drives rangestore only; use bench/compare for etcd", *driver)
	}
	var spec bench.Spec
	var err error
	switch a[1] {
	case "kv":
		spec, err = bench.KVSpec(*readPct, *scanPct, *scanLen)
	case "ycsb":
		spec, err = bench.YCSBSpec(*ycsb)
	default:
		return fmt.Errorf("unknown workload %q (want kv or ycsb)", a[1])
	}
	if err != nil {
		return err
	}
	spec.Keys, spec.KeySize, spec.ValueSize = *keys, *keySize, *valueSize
	if *dist != "" {
		spec.Distribution = *dist
	}
	w, err := bench.NewWorkload(spec)
	if err != nil {
		return err
	}
	var hs []string
	for _, h := range *hosts {
		if h = strings.TrimSpace(h); h != "" {
			if err := checkHostPort("--hosts", h); err != nil {
				return err
			}
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 {
		return usagef("workload", "--hosts: no address given")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
	db, err := sec.openDB(octx, hs, client.WithConnectionsPerNode(*connsPerHost))
	ocancel()
	if err != nil {
		return err
	}
	d := clientDriver{db}
	defer d.Close()
	if *preload {
		t0 := time.Now()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err := bench.Preload(pctx, d, spec, *preloadConc, *seed)
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "preloaded %d keys in %s\n", spec.Keys, time.Since(t0).Round(time.Millisecond))
	}
	opts := bench.Options{Concurrency: *concurrency, Warmup: *warmup, Duration: *duration, Seed: *seed}
	if !*quiet {
		opts.Progress = os.Stderr
	}
	res, err := bench.Run(ctx, d, w, opts)
	if res == nil {
		return err
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "interrupted: %v\n", err)
	}
	res.Driver = *driver
	if err := bench.WriteSummary(os.Stdout, res); err != nil {
		return err
	}
	if *jsonOut != "" {
		if err := bench.WriteJSONFile(*jsonOut, res); err != nil {
			return err
		}
	}
	if *plot != "" {
		if err := bench.WriteSVGFile(*plot, res); err != nil {
			return err
		}
	}
	return nil
}

// clientDriver is bench's Driver (and BatchPutter) over a client.DB:
// every request goes straight to its range's leaseholder.
type clientDriver struct{ db *client.DB }

func (d clientDriver) Get(ctx context.Context, key []byte) (bool, error) {
	_, err := d.db.Get(ctx, key)
	if errors.Is(err, client.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (d clientDriver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.db.Put(ctx, key, value)
	return err
}

// Scan reads up to limit keys from start (to the end of the keyspace).
func (d clientDriver) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	n := 0
	for _, err := range d.db.Scan(ctx, start, nil, client.Limit(int64(limit))) {
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// PutBatch writes the keys in one batch (one command per range, sent in
// parallel).
func (d clientDriver) PutBatch(ctx context.Context, keys, values [][]byte) error {
	b := new(client.Batch)
	for i := range keys {
		b.Put(keys[i], values[i])
	}
	_, err := d.db.Batch(ctx, b)
	return err
}

func (d clientDriver) Close() error {
	d.db.Close()
	return nil
}
