package main

// Routing (issue 14): the rangestore driver through client/ (straight to
// each range's leaseholder) or raw gRPC (each node's gateway forwarding to
// the leaseholder), and the node-to-node batches each cell caused.

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/rangestore/rangestore/bench"
	"github.com/rangestore/rangestore/client"
)

// openTimeout bounds opening a driver (client.Open reads the routing
// table).
const openTimeout = time.Minute

// driver opens a driver of the processes ps: raw gRPC to them in turn, or
// through client/ (seeded with their addresses). perProcess (client/
// only): one client per process, in that process's locality, so that
// reads that need not go to the leaseholder are spread over their
// replicas.
func (c *rsCluster) driver(ps []rsProc, raw, perProcess bool) (*bench.RangestoreDriver, error) {
	o := bench.RangestoreOptions{RawGRPC: raw, DialOptions: []grpc.DialOption{c.dialOption()}}
	if perProcess && !raw {
		o.Localities = localities(ps)
	}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	return bench.OpenRangestore(ctx, c.addrs(ps), o)
}

// countingDriver counts the operations a cell issued (warm-up included,
// failed ones too), over the same window as the counter scrapes.
type countingDriver struct {
	bench.Driver
	ops atomic.Int64
}

func (d *countingDriver) Get(ctx context.Context, key []byte) (bool, error) {
	d.ops.Add(1)
	return d.Driver.Get(ctx, key)
}

func (d *countingDriver) Put(ctx context.Context, key, value []byte) error {
	d.ops.Add(1)
	return d.Driver.Put(ctx, key, value)
}

func (d *countingDriver) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	d.ops.Add(1)
	return d.Driver.Scan(ctx, start, limit)
}

// clientStats returns the routing counters of a rangestore driver on the
// client/ path (false otherwise).
func clientStats(d bench.Driver) (client.Stats, bool) {
	rd, ok := d.(*bench.RangestoreDriver)
	if !ok {
		return client.Stats{}, false
	}
	return rd.ClientStats()
}

// hopStats are one rangestore cell's node-to-node batches (warm-up
// included).
type hopStats struct {
	Ops int64 // operations issued
	// Batches: Internal/RangeBatch requests the processes received;
	// Background: the idle level over as long (the cluster's own
	// traffic), measured just before.
	Batches, Background float64
	// Client: the driver used client/; Attempts, Redirects: its counters
	// over the cell.
	Client                       bool
	Attempts, Redirects, Lookups int64
}

func hopKey(sys, cell string) string { return sys + " " + cell }

// ForwardedPerOp is the node-to-node batches above the idle level per
// operation: about 2/3 for strong requests sent to 3 nodes in turn (the
// ones that land off the leaseholder are forwarded), about 0 through
// client/.
func (h hopStats) ForwardedPerOp() float64 {
	if h.Ops == 0 {
		return 0
	}
	return max(0, h.Batches-h.Background) / float64(h.Ops)
}

func (h hopStats) path() string {
	if h.Client {
		return "client/"
	}
	return "raw gRPC"
}

func (h hopStats) String() string {
	s := fmt.Sprintf("%s: %s ops, %s node-to-node batches (idle level over as long %s): %.3f forwarded per op",
		h.path(), fmtRate(float64(h.Ops)), fmtRate(h.Batches), fmtRate(h.Background), h.ForwardedPerOp())
	if h.Client && h.Ops > 0 {
		s += fmt.Sprintf("; client %.3f attempts per op, %d redirects, %d routing lookups", float64(h.Attempts)/float64(h.Ops), h.Redirects, h.Lookups)
	}
	return s
}

// routingSummary reports the second hop per rangestore cell and, when
// rangestore (client/) and rangestore-raw-grpc both ran, the before/after
// per cell ("" if no rangestore cell ran).
func routingSummary(o options, all map[string]systemResults, hops map[string]hopStats) string {
	var b strings.Builder
	for _, sys := range o.systems {
		for _, c := range cells {
			h, ok := hops[hopKey(sys, c.Name)]
			if !ok {
				continue
			}
			if b.Len() == 0 {
				b.WriteString("\nSecond hop (issue 14): node-to-node batches (Internal/RangeBatch received by every rangestore process, warm-up included) per operation, less the idle level (liveness, closed timestamps) measured just before:\n\n")
				b.WriteString("| system | driver | workload | ops | node-to-node batches | idle level | forwarded per op | client attempts per op | redirects |\n")
				b.WriteString("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
			}
			att, red := "–", "–"
			if h.Client && h.Ops > 0 {
				att, red = fmt.Sprintf("%.3f", float64(h.Attempts)/float64(h.Ops)), fmt.Sprint(h.Redirects)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %.3f | %s | %s |\n", sys, h.path(), c.Name,
				fmtRate(float64(h.Ops)), fmtRate(h.Batches), fmtRate(h.Background), h.ForwardedPerOp(), att, red)
		}
	}
	cl, raw := all["rangestore"], all["rangestore-raw-grpc"]
	if cl == nil || raw == nil || o.rawGRPC {
		return b.String()
	}
	b.WriteString("\nclient/ vs raw gRPC (issue 14): the same cells, rangestore driven through client/ vs raw KV RPCs to the nodes in turn, in this run:\n\n")
	b.WriteString("| workload | client/ ops/s | p50 | p99 | raw gRPC ops/s | p50 | p99 | client/raw ops/s |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range cells {
		a, r := cl[c.Name], raw[c.Name]
		if a == nil && r == nil {
			continue
		}
		a1, a2, a3 := cellStats(a)
		r1, r2, r3 := cellStats(r)
		ratio := "–"
		if a != nil && r != nil && r.Total.OpsPerSec > 0 {
			ratio = fmt.Sprintf("%.2f×", a.Total.OpsPerSec/r.Total.OpsPerSec)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c.Name, a1, a2, a3, r1, r2, r3, ratio)
	}
	return b.String()
}
