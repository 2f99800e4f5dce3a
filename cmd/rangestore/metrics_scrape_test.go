package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos"
)

// Series of a node's /metrics that the tests read (ranges/metrics.go).
const (
	metricSnapshotBytesSent = "rangestore_snapshot_bytes_sent_total"
	metricSnapshotsSent     = "rangestore_snapshots_sent_total"
	metricSnapshotsReceived = "rangestore_snapshots_received_total"
)

// scrapeMetrics reads the unlabelled series names from the /metrics page
// served at addr (a process given an address by ProcCluster.ServeHTTP).
// A series missing from the page is an error.
func scrapeMetrics(ctx context.Context, addr string, names ...string) (map[string]float64, error) {
	if addr == "" {
		return nil, fmt.Errorf("scrape: the process serves no HTTP (ProcCluster.ServeHTTP before its start)")
	}
	page, err := chaos.MetricsPage(ctx, addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(page))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || !want[f[0]] {
			continue // comments, labelled series, others
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return nil, fmt.Errorf("scrape %s: %s: %w", addr, f[0], err)
		}
		out[f[0]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("scrape %s: no series %s", addr, n)
		}
	}
	return out, nil
}

// snapshotTally is what a set of processes sent as range snapshots: bytes
// streamed (failed streams included) and streams delivered in full; and
// the snapshots their replicas applied.
type snapshotTally struct {
	bytes, sent, received float64
}

func (a snapshotTally) minus(b snapshotTally) snapshotTally {
	return snapshotTally{bytes: a.bytes - b.bytes, sent: a.sent - b.sent, received: a.received - b.received}
}

func (a snapshotTally) String() string {
	return fmt.Sprintf("snapshots sent: %.0f, %.1f MiB (applied: %.0f)", a.sent, a.bytes/(1<<20), a.received)
}

// snapshotsSentBy sums the snapshot counters of the processes at idx
// (each must serve HTTP). The counters start at 0 with each process: take
// differences only between two reads with no restart between them.
func snapshotsSentBy(ctx context.Context, pc *procCluster, idx []int) (snapshotTally, error) {
	var t snapshotTally
	for _, i := range idx {
		m, err := scrapeMetrics(ctx, pc.HTTPAddr(i), metricSnapshotBytesSent, metricSnapshotsSent, metricSnapshotsReceived)
		if err != nil {
			return t, fmt.Errorf("process %d: %w", i, err)
		}
		t.bytes += m[metricSnapshotBytesSent]
		t.sent += m[metricSnapshotsSent]
		t.received += m[metricSnapshotsReceived]
	}
	return t, nil
}

// metricSum sums the samples of a series (every label set) on the
// /metrics page of the process serving HTTP at addr; none is 0.
func metricSum(ctx context.Context, t *testing.T, addr, name string) float64 {
	t.Helper()
	page, err := chaos.MetricsPage(ctx, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	sc := bufio.NewScanner(bytes.NewReader(page))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || (f[0] != name && !strings.HasPrefix(f[0], name+"{")) {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}
