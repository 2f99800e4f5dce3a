package bench

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/node"
)

// TestProfileInProcess runs one comparison cell against an in-process
// 3-node cluster with 64 user ranges, so that `go test -cpuprofile` (or
// -mutexprofile, -blockprofile) sees the server and the client together. The
// rangestore server exposes no pprof endpoint, so this is how bench-compare's
// shortfalls are profiled. Skipped unless RANGESTORE_PROFILE names a cell:
//
//	RANGESTORE_PROFILE=writes@256 go test -run TestProfileInProcess -cpuprofile /tmp/cpu.out ./bench/
//	go tool pprof -top -nodecount 40 /tmp/cpu.out
//
// Cells: writes@N, reads@N, kv95@N, scans@N (N = concurrency).
// RANGESTORE_PROFILE_SECONDS sets the measured time (default 8);
// RANGESTORE_PROFILE_RAW=1 drives it over raw gRPC instead of client/.
func TestProfileInProcess(t *testing.T) {
	cell := os.Getenv("RANGESTORE_PROFILE")
	if cell == "" {
		t.Skip("set RANGESTORE_PROFILE=writes@256 (or reads@64, kv95@64, scans@64)")
	}
	kind, concS, ok := strings.Cut(cell, "@")
	conc, err := strconv.Atoi(concS)
	if !ok || err != nil {
		t.Fatalf("RANGESTORE_PROFILE=%q: want NAME@CONCURRENCY", cell)
	}
	var spec Spec
	switch kind {
	case "writes":
		spec, err = KVSpec(0, 0, 0)
	case "reads":
		spec, err = KVSpec(100, 0, 0)
	case "kv95":
		spec, err = KVSpec(95, 0, 0)
	case "scans":
		spec, err = KVSpec(0, 100, DefaultScanLength)
	default:
		t.Fatalf("unknown cell %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	secs := 8
	if s := os.Getenv("RANGESTORE_PROFILE_SECONDS"); s != "" {
		if secs, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// A real node's Raft timing (50 ms ticks), as `rangestore start` uses.
	// RANGESTORE_PROFILE_RAW=1: raw gRPC to the nodes in turn (each
	// gateway routing) instead of client/ (straight to the leaseholder).
	raw := os.Getenv("RANGESTORE_PROFILE_RAW") == "1"
	d := startClusterDriver(ctx, t, node.TestClusterOptions{InitialSplits: 63, RaftRTTMillisecond: 50, ElectionRTT: 10, HeartbeatRTT: 2}, raw)
	if err := Preload(ctx, d, spec, 32, 1); err != nil {
		t.Fatal(err)
	}
	w, err := NewWorkload(spec)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, d, w, Options{Concurrency: conc, Warmup: time.Second, Duration: time.Duration(secs) * time.Second, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	res.Driver = "rangestore (in-process)"
	var b strings.Builder
	_ = WriteSummary(&b, res)
	t.Log("\n" + b.String())
}
