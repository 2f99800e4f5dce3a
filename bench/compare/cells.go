package main

// Cells (issue 14, item 3 added the one-range, YCSB-B and 1 KiB cells):
// what each cell runs, on which cluster shape, over which preloaded key
// space; and the checks that a one-range cell's keys really lie in one
// range (rangestore) or one shard (Dragonboat).
//
// A system runs its cells in phases, one per cluster shape (in the order
// each shape first appears in the cells list, the cells in list order
// within it): each phase starts a fresh cluster of that shape, preloads
// every key space its cells use, runs them and stops the cluster, so that
// only one cluster of a system runs at a time.

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/rangestore/rangestore/bench"
	"github.com/rangestore/rangestore/proto/rspb"
)

// shape is the cluster a cell runs on.
type shape int

const (
	// manyRanges: rangestore with --initial-splits+1 user ranges (64),
	// Dragonboat with dbShards shards, etcd (one Raft group).
	manyRanges shape = iota
	// oneRange: rangestore with one user range (no initial splits, and
	// load-based splitting off so that it stays one), Dragonboat with one
	// shard, etcd (one Raft group, as always).
	oneRange
)

func (s shape) String() string {
	switch s {
	case manyRanges:
		return "many-ranges"
	case oneRange:
		return "one-range"
	}
	return fmt.Sprintf("shape%d", int(s))
}

// oneRangeStartArgs are the extra `rangestore start` flags of the
// one-range cluster: no load-based splits (the range would split under
// the cells' load after 10 s above 2,500 requests/s). Size-based splits
// stay (64 MiB; the preloaded data is far below).
var oneRangeStartArgs = []string{"--load-split-qps=-1"}

// keySpace is one preloaded key space: the keys of indexes [0, --keys)
// from Base (bench.Spec.KeyBase), with values of ValueSize bytes.
type keySpace struct {
	Base      uint64
	ValueSize int
}

// space returns the key space the cell's operations use.
func (c cell) space() keySpace {
	vs := c.ValueSize
	if c.Kind == bankCell {
		vs = len(bench.EncodeBalance(0))
	}
	if vs == 0 {
		vs = bench.DefaultValueSize
	}
	return keySpace{Base: c.KeyBase, ValueSize: vs}
}

// spec returns the cell's workload over keys preloaded keys: the kv mix
// (ReadPct, ScanPct; uniform keys) or a core YCSB workload (its mix,
// zipfian keys with bench.DefaultZipfTheta), with the cell's key space.
func (c cell) spec(keys uint64) (bench.Spec, error) {
	var spec bench.Spec
	var err error
	if c.YCSB != "" {
		if c.ReadPct != 0 || c.ScanPct != 0 {
			return bench.Spec{}, fmt.Errorf("cell %s: YCSB %s sets its own mix; ReadPct and ScanPct must be 0", c.Name, c.YCSB)
		}
		spec, err = bench.YCSBSpec(c.YCSB)
	} else {
		spec, err = bench.KVSpec(c.ReadPct, c.ScanPct, bench.DefaultScanLength)
	}
	if err != nil {
		return bench.Spec{}, fmt.Errorf("cell %s: %w", c.Name, err)
	}
	sp := c.space()
	spec.Name, spec.Keys, spec.KeyBase, spec.ValueSize = c.Name, keys, sp.Base, sp.ValueSize
	return spec, nil
}

// preloadSpec is the spec Preload writes the key space with.
func (k keySpace) preloadSpec(keys uint64) bench.Spec {
	spec, _ := bench.KVSpec(0, 0, bench.DefaultScanLength) // valid arguments: no error
	spec.Keys, spec.KeyBase, spec.ValueSize = keys, k.Base, k.ValueSize
	return spec
}

// phase is the cells a system runs on one fresh cluster of one shape.
type phase struct {
	Shape shape
	Cells []cell
}

// phases groups cs by shape, in the order each shape first appears, the
// cells in their order within each.
func phases(cs []cell) []phase {
	var out []phase
	at := map[shape]int{}
	for _, c := range cs {
		i, ok := at[c.Shape]
		if !ok {
			i = len(out)
			at[c.Shape] = i
			out = append(out, phase{Shape: c.Shape})
		}
		out[i].Cells = append(out[i].Cells, c)
	}
	return out
}

// spaces returns the distinct key spaces of the phase's kv cells, in
// cell order: what the phase preloads.
func (p phase) spaces() []keySpace {
	var out []keySpace
	seen := map[keySpace]bool{}
	for _, c := range p.Cells {
		if c.Kind != kvCell {
			continue // transaction cells load their own keys
		}
		if k := c.space(); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// checkCells validates a cells list over keys preloaded keys per space:
// unique names, positive concurrency, valid workloads, and, on each
// shape, one value size per key space and key spaces (with their room for
// inserts, 100× keys) that do not overlap.
func checkCells(cs []cell, keys uint64) error {
	names := map[string]bool{}
	type slot struct {
		shape shape
		base  uint64
	}
	owner := map[slot]cell{}
	for _, c := range cs {
		if names[c.Name] {
			return fmt.Errorf("cell %s: listed twice", c.Name)
		}
		names[c.Name] = true
		if c.Concurrency <= 0 {
			return fmt.Errorf("cell %s: concurrency %d: must be positive", c.Name, c.Concurrency)
		}
		if c.Kind != kvCell {
			// No kv key space: a bank cell's accounts are its own
			// (checked against the others below), the pair cells'
			// keys are no bench.KeyName keys.
			if err := checkTxnCell(c); err != nil {
				return err
			}
			if c.Kind != bankCell {
				continue
			}
		} else if c.Zipfian {
			return fmt.Errorf("cell %s: Zipfian is for bank cells (a kv cell's keys are uniform; YCSB cells are zipfian)", c.Name)
		} else if err := checkKVCell(c, keys); err != nil {
			return err
		}
		k := c.space()
		if o, ok := owner[slot{c.Shape, k.Base}]; ok {
			if prev := o.space(); prev.ValueSize != k.ValueSize {
				return fmt.Errorf("cells %s and %s: both use the key space at base %d on the %s cluster, with %d- and %d-byte values (give one its own KeyBase)",
					o.Name, c.Name, k.Base, c.Shape, prev.ValueSize, k.ValueSize)
			}
			continue
		}
		for s, o := range owner {
			if s.shape == c.Shape && k.Base < s.base+100*keys && s.base < k.Base+100*keys {
				return fmt.Errorf("cells %s and %s: key spaces at bases %d and %d overlap (each needs %d indexes: 100× --keys)",
					o.Name, c.Name, s.base, k.Base, 100*keys)
			}
		}
		owner[slot{c.Shape, k.Base}] = c
	}
	return nil
}

// checkKVCell validates a kv cell's workload.
func checkKVCell(c cell, keys uint64) error {
	spec, err := c.spec(keys)
	if err != nil {
		return err
	}
	if _, err := bench.NewWorkload(spec); err != nil {
		return fmt.Errorf("cell %s: %w", c.Name, err)
	}
	return nil
}

// keySpan returns the smallest and the largest key of spec's preloaded
// space.
func keySpan(spec bench.Spec) (lo, hi []byte) {
	for i := uint64(0); i < spec.Keys; i++ {
		k := spec.Key(i)
		if lo == nil || bytes.Compare(k, lo) < 0 {
			lo = k
		}
		if hi == nil || bytes.Compare(k, hi) > 0 {
			hi = k
		}
	}
	return lo, hi
}

// checkPlacement is the verdict on a cell's placement: a one-range cell
// must find its keys in exactly one range or shard (what names it, e.g.
// "range" or "shard").
func checkPlacement(c cell, what string, n int) error {
	if c.Shape == oneRange && n != 1 {
		return fmt.Errorf("cell %s: its keys lie in %d %ss, want 1", c.Name, n, what)
	}
	return nil
}

// rangesOver returns the IDs of the ranges holding the keys [lo, hi], from
// a node's routing table (Discovery.GetRoutingTable, what client/ fills
// its range cache from).
func (c *rsCluster) rangesOver(ctx context.Context, lo, hi []byte) ([]uint64, error) {
	entries, err := c.routingEntries(ctx, lo, hi)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, r := range entries {
		ids = append(ids, r.RangeId)
	}
	return ids, nil
}

// routingEntries returns the routing table's entries of the ranges
// holding the keys [lo, hi], in key order.
func (c *rsCluster) routingEntries(ctx context.Context, lo, hi []byte) ([]*rspb.RoutingEntry, error) {
	conn, err := grpc.NewClient(c.voters[0].addr, c.dialOption())
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	end := append(append([]byte(nil), hi...), 0) // hi inclusive
	resp, err := rspb.NewDiscoveryClient(conn).GetRoutingTable(cctx, &rspb.GetRoutingTableRequest{StartKey: lo, EndKey: end, Limit: 10000})
	if err != nil {
		return nil, fmt.Errorf("routing table of [%q, %q]: %w", lo, hi, err)
	}
	if resp.More {
		return nil, fmt.Errorf("routing table of [%q, %q]: more than %d ranges", lo, hi, len(resp.Ranges))
	}
	return resp.Ranges, nil
}
