package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

func runDemo(args []string) error {
	fs := newFlagSet("demo")
	nodes := fs.Int("nodes", 3, "number of in-process nodes")
	store := fs.String("store", "", "base data directory (default: a temporary directory, removed on exit)")
	splits := fs.Int("initial-splits", 4, "split points in the user keyspace")
	duration := fs.Duration("duration", 0, "stop after this long (0 = run until interrupted)")
	logLevel := fs.String("log-level", "warn", "node log level")
	global := fs.Bool("global", false, "9 nodes in 3 regions × 3 zones with simulated inter-region latency, and a workload")
	clientRegion := fs.String("client-region", "us-east", "--global: the region of the workload's client (us-east, eu-west, ap-south); a list R1,R2,... moves it on every --move-every")
	moveEvery := fs.Duration("move-every", time.Minute, "--global: with several --client-region, time before the client moves to the next")
	latencies := fs.String("latencies", fault.GlobalLatencies, "--global: round trips between regions, REGION/REGION=DURATION,...")
	concurrency := fs.Int("concurrency", 4, "--global: workload workers")
	readPercent := fs.Int("read-percent", 90, "--global: percentage of the workload's operations that are reads")
	every := fs.Duration("summary-interval", 5*time.Second, "--global: time between summary lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("demo", "unexpected argument %q", fs.Arg(0))
	}
	if *global && fs.Changed("nodes") && *nodes != len(globalRegions)*globalZones {
		return usagef("demo", "--nodes %d: demo --global runs %d nodes (%d regions × %d zones)", *nodes, len(globalRegions)*globalZones, len(globalRegions), globalZones)
	}
	if !*global {
		for _, f := range []string{"client-region", "latencies", "concurrency", "read-percent", "summary-interval", "move-every"} {
			if fs.Changed(f) {
				return usagef("demo", "--%s needs --global", f)
			}
		}
	}
	if *nodes < 1 {
		return usagef("demo", "--nodes %d: need at least 1 node", *nodes)
	}
	if *splits < 0 {
		return usagef("demo", "--initial-splits %d: must not be negative", *splits)
	}
	if *duration < 0 {
		return usagef("demo", "--duration %s: must not be negative", *duration)
	}
	var gopts globalOptions
	if *global {
		table, err := parseGlobalFlags(strings.Split(*clientRegion, ","), *latencies, *concurrency, *readPercent, *every, *moveEvery)
		if err != nil {
			return usagef("demo", "%w", err)
		}
		gopts = globalOptions{store: *store, splits: *splits, duration: *duration, clientRegions: strings.Split(*clientRegion, ","),
			moveEvery: *moveEvery, latencies: table, concurrency: *concurrency, readPercent: *readPercent, every: *every}
	}
	if *global && !fs.Changed("log-level") {
		*logLevel = "error" // the summary is the output; startup lease and join retries are expected
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	if *store != "" {
		if _, err := os.Stat(*store); err == nil {
			return fmt.Errorf("--store %s already exists; demo needs a fresh directory", *store)
		}
	}
	if *global {
		gopts.log = log
		return runDemoGlobal(gopts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{Nodes: *nodes, BaseDir: *store, InitialSplits: *splits,
		Logger: log, RaftRTTMillisecond: 50, ElectionRTT: 20, HeartbeatRTT: 2, HTTP: true, Secure: true})
	if err != nil {
		return err
	}
	defer tc.Close()
	fmt.Fprintf(stdout, "rangestore demo: %s, %s, cluster %s (ready in %s)\n", plural(tc.NumNodes(), "node", "nodes"),
		plural(len(tc.Init.Ranges), "range", "ranges"), tc.Init.ClusterId, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "data: %s\n", tc.BaseDir)
	printDemoCerts(tc)
	byID := make([]*node.Node, 0, tc.NumNodes())
	for i := 0; i < tc.NumNodes(); i++ {
		byID = append(byID, tc.Node(i))
	}
	sort.Slice(byID, func(i, j int) bool { return byID[i].NodeID() < byID[j].NodeID() })
	for _, n := range byID {
		fmt.Fprintf(stdout, "  n%d  grpc %s  metrics http://%s/metrics\n", n.NodeID(), n.Addr(), n.HTTPAddr())
	}
	for _, d := range tc.Init.Ranges {
		fmt.Fprintf(stdout, "  r%d  %s\n", d.RangeId, spanString(d))
	}
	if err := demoWorkload(tc); err != nil {
		return fmt.Errorf("demo workload: %w", err)
	}
	// The hints use the nodes round-robin (there may be only one).
	self, sec := selfCommand(), "--certs-dir "+tc.CertsDir()
	fmt.Fprintf(stdout, "\ntry:\n  %s kv put %s --host %s hello world\n  %s kv scan %s --host %s\n  %s range list %s --host %s\n",
		self, sec, byID[0].Addr(), self, sec, byID[1%len(byID)].Addr(), self, sec, byID[2%len(byID)].Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	var timeout <-chan time.Time
	if *duration > 0 {
		timeout = time.After(*duration)
		fmt.Fprintf(stdout, "\nrunning for %s (Ctrl-C stops earlier)\n", *duration)
	} else {
		fmt.Fprintln(stdout, "\nrunning until Ctrl-C")
	}
	select {
	case <-sig:
	case <-timeout:
	}
	fmt.Fprintln(stdout, "stopping")
	return nil
}

// printDemoCerts says where a demo cluster's certificates are: the demo
// runs secure, with a CA, a node certificate and root's client
// certificate made for it.
func printDemoCerts(tc *node.TestCluster) {
	fmt.Fprintf(stdout, "certs: %s (mutual TLS: a CA made for this demo, its node certificate and root's client certificate; CA key %s)\n",
		tc.CertsDir(), tc.CAKey())
}

// demoWorkload writes keys that land in different ranges through different
// nodes and reads them back with a scan, printing what it did.
func demoWorkload(tc *node.TestCluster) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fmt.Fprintln(stdout, "\nwriting through each node, then scanning the whole keyspace:")
	words := []string{"Apple", "Dragon", "Pebble", "cherry", "raft", "zebra"}
	for i, w := range words {
		r, err := tc.KV(i%tc.NumNodes()).Put(ctx, &rspb.PutRequest{Key: []byte(w), Value: []byte(fmt.Sprintf("value-%d", i))})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  put %-8s via n%d  %s\n", w, tc.Node(i%tc.NumNodes()).NodeID(), tsString(r.CommitTimestamp))
	}
	st, err := tc.KV(0).Scan(ctx, &rspb.ScanRequest{})
	if err != nil {
		return err
	}
	n, err := forEachScanned(st, func(x *rspb.KeyValue) { fmt.Fprintf(stdout, "  scan %-8s = %s\n", x.Key, x.Value) })
	if err != nil {
		return err
	}
	if n != len(words) {
		return fmt.Errorf("scan returned %d keys, wrote %d", n, len(words))
	}
	return nil
}

// selfCommand is how the user can run this binary again: "go run
// ./cmd/rangestore" when it was built by go run (a temporary binary), else
// the path it was started with.
func selfCommand() string {
	exe, err := os.Executable()
	if err == nil && strings.Contains(filepath.ToSlash(exe), "/go-build") {
		return "go run ./cmd/rangestore"
	}
	return os.Args[0]
}

// parseGlobalFlags checks demo --global's flags and returns the latency
// table, which must cover the three regions.
func parseGlobalFlags(clientRegions []string, latencies string, concurrency, readPercent int, every, moveEvery time.Duration) (*fault.LatencyTable, error) {
	for _, r := range clientRegions {
		if !slices.Contains(globalRegions, r) {
			return nil, fmt.Errorf("--client-region %q: not one of %s", r, strings.Join(globalRegions, ", "))
		}
	}
	if moveEvery < time.Second {
		return nil, fmt.Errorf("--move-every %s: must be at least 1s", moveEvery)
	}
	table, err := fault.ParseLatencyTable(latencies)
	if err != nil {
		return nil, fmt.Errorf("--latencies: %w", err)
	}
	if err := table.Check(globalRegions); err != nil {
		return nil, fmt.Errorf("--latencies: %w", err)
	}
	if concurrency < 1 || concurrency > 256 {
		return nil, fmt.Errorf("--concurrency %d: must be 1 to 256", concurrency)
	}
	if readPercent < 0 || readPercent > 100 {
		return nil, fmt.Errorf("--read-percent %d: must be 0 to 100", readPercent)
	}
	if every < 100*time.Millisecond {
		return nil, fmt.Errorf("--summary-interval %s: must be at least 100ms", every)
	}
	return table, nil
}
