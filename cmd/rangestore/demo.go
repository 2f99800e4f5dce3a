package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

func runDemo(args []string) error {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	nodes := fs.Int("nodes", 3, "number of in-process nodes")
	store := fs.String("store", "", "base data directory (default: a temporary directory, removed on exit)")
	splits := fs.Int("initial-splits", 4, "split points in the user keyspace")
	duration := fs.Duration("duration", 0, "stop after this long (0 = run until interrupted)")
	logLevel := fs.String("log-level", "warn", "node log level")
	if err := fs.Parse(args); err != nil {
		return err
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{Nodes: *nodes, BaseDir: *store, InitialSplits: *splits,
		Logger: log, RaftRTTMillisecond: 50, ElectionRTT: 20, HeartbeatRTT: 2, HTTP: true})
	if err != nil {
		return err
	}
	defer tc.Close()
	fmt.Printf("rangestore demo: %d nodes, %d ranges, cluster %s (ready in %s)\n", tc.NumNodes(), len(tc.Init.Ranges), tc.Init.ClusterId, time.Since(start).Round(time.Millisecond))
	fmt.Printf("data: %s\n", tc.BaseDir)
	for i := 0; i < tc.NumNodes(); i++ {
		n := tc.Node(i)
		fmt.Printf("  n%d  grpc %s  metrics http://%s/metrics\n", n.NodeID(), n.Addr(), n.HTTPAddr())
	}
	for _, d := range tc.Init.Ranges {
		fmt.Printf("  r%d  %s\n", d.RangeId, spanString(d))
	}
	if err := demoWorkload(tc); err != nil {
		return fmt.Errorf("demo workload: %w", err)
	}
	fmt.Printf("\ntry:\n  rangestore kv put --host %s hello world\n  rangestore kv scan --host %s\n  rangestore range list --host %s\n", tc.Addr(0), tc.Addr(1), tc.Addr(2))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var timeout <-chan time.Time
	if *duration > 0 {
		timeout = time.After(*duration)
		fmt.Printf("\nrunning for %s (Ctrl-C stops earlier)\n", *duration)
	} else {
		fmt.Println("\nrunning until Ctrl-C")
	}
	select {
	case <-sig:
	case <-timeout:
	}
	fmt.Println("stopping")
	return nil
}

// demoWorkload writes keys that land in different ranges through different
// nodes and reads them back with a scan, printing what it did.
func demoWorkload(tc *node.TestCluster) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fmt.Println("\nwriting through each node, then scanning the whole keyspace:")
	words := []string{"Apple", "Dragon", "Pebble", "cherry", "raft", "zebra"}
	for i, w := range words {
		r, err := tc.KV(i%tc.NumNodes()).Put(ctx, &rspb.PutRequest{Key: []byte(w), Value: []byte(fmt.Sprintf("value-%d", i))})
		if err != nil {
			return err
		}
		fmt.Printf("  put %-8s via n%d  %s\n", w, tc.Node(i%tc.NumNodes()).NodeID(), tsString(r.CommitTimestamp))
	}
	st, err := tc.KV(0).Scan(ctx, &rspb.ScanRequest{})
	if err != nil {
		return err
	}
	n, err := forEachScanned(st, func(x *rspb.KeyValue) { fmt.Printf("  scan %-8s = %s\n", x.Key, x.Value) })
	if err != nil {
		return err
	}
	if n != len(words) {
		return fmt.Errorf("scan returned %d keys, wrote %d", n, len(words))
	}
	return nil
}
