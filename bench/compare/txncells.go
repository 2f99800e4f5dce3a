package main

// Transaction cells (issue 16, acceptance 5): the bank workload on
// rangestore (client.DB.Txn over the 64 ranges) and on etcd (a
// compare-and-swap Txn on mod revisions, looped until it succeeds), and,
// rangestore only, a transaction writing one key in each of two ranges
// (txn2@1) beside a one-range batch of two puts (batch1@1) from one
// client. They preload nothing through the kv key spaces: a bank cell
// writes its accounts' initial balances just before it runs (so each bank
// cell starts from the same state), the pair cells overwrite two fixed
// keys of their own. Raw Dragonboat has no transactions, and the raw gRPC
// path no transaction coordinator in the driver: both skip these cells.
//
// etcd: the explicit Txn loop, not concurrency.NewSTM, because it is the
// recipe itself (read both, then If(mod(a)=ra, mod(b)=rb).Then(put,
// put).Else(get, get)) with the retries counted where they happen; the
// Else branch returns the fresh reads, so a retry costs one round trip,
// as an STM at SerializableSnapshot would. Reads are linearizable (the
// clientv3 default, not a serializable local read: §4's pitfall is the
// benchmark tool's `--isolation r` default, which reads possibly stale).

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rangestore/rangestore/bench"
	"github.com/rangestore/rangestore/proto/rspb"
)

// cellKind is what a cell runs.
type cellKind int

const (
	kvCell     cellKind = iota // bench.Run of the kv or YCSB mix
	bankCell                   // bench.RunBank
	txn2Cell                   // bench.RunPairWrites in a transaction, the keys in two ranges
	batch1Cell                 // bench.RunPairWrites in one batch, the keys in one range
)

// bankKeyBase and bankZipfKeyBase are the bank cells' account key
// spaces: apart from the default space (and its inserts),
// writes@64-1kib's and each other's (a transfer of one cell abandoned at
// its end must not land on the next cell's freshly loaded accounts).
const (
	bankKeyBase     = 2 << 40
	bankZipfKeyBase = 3 << 40
)

// minBankRanges: a bank cell's accounts must lie in at least this many
// ranges (issue 16, acceptance 5).
const minBankRanges = 10

// etcdMaxTxnOps is etcd's default --max-txn-ops: the etcd checker reads
// every account in one Txn.
const etcdMaxTxnOps = 128

// The pair cells' keys: '~' sorts after every alphanumeric, so none is a
// bench.KeyName key; "0~" and "z~" lie in the first ranges and the last
// (the split points are alphanumeric), the batch pair is adjacent (one
// range). The placement check verifies both on the cluster.
var (
	txn2Keys   = [2][]byte{[]byte("0~txn2-a"), []byte("z~txn2-b")}
	batch1Keys = [2][]byte{[]byte("5~batch1-a"), []byte("5~batch1-b")}
)

// pairValueSize: the pair cells' values.
const pairValueSize = bench.DefaultValueSize

// bankSpec is a bank cell's workload.
func (c cell) bankSpec() bench.BankSpec {
	s := bench.DefaultBankSpec(c.Name)
	s.KeyBase = c.KeyBase
	if c.Zipfian {
		s.Distribution = bench.Zipfian
	}
	return s
}

// txnKeys returns the keys a transaction cell touches.
func (c cell) txnKeys() [][]byte {
	switch c.Kind {
	case bankCell:
		return c.bankSpec().Keys()
	case txn2Cell:
		return txn2Keys[:]
	case batch1Cell:
		return batch1Keys[:]
	}
	return nil
}

// checkTxnCell validates a transaction cell (checkCells calls it).
func checkTxnCell(c cell) error {
	if c.ReadPct != 0 || c.ScanPct != 0 || c.YCSB != "" || c.Mode != strongReads || c.EtcdOf != "" {
		return fmt.Errorf("cell %s: a transaction cell sets no kv mix, YCSB letter, read mode or EtcdOf", c.Name)
	}
	switch c.Kind {
	case bankCell:
		if err := c.bankSpec().Validate(); err != nil {
			return fmt.Errorf("cell %s: %w", c.Name, err)
		}
		if a := c.bankSpec().Accounts; a > etcdMaxTxnOps {
			return fmt.Errorf("cell %s: %d accounts: the etcd checker reads them in one Txn, at most --max-txn-ops %d", c.Name, a, etcdMaxTxnOps)
		}
	case txn2Cell, batch1Cell:
		if c.Concurrency != 1 {
			return fmt.Errorf("cell %s: concurrency %d: the pair cells measure one client (1)", c.Name, c.Concurrency)
		}
		if c.Zipfian || c.KeyBase != 0 {
			return fmt.Errorf("cell %s: the pair cells write fixed keys (no Zipfian, no KeyBase)", c.Name)
		}
	default:
		return fmt.Errorf("cell %s: kind %d is not a transaction cell", c.Name, c.Kind)
	}
	if c.Shape != manyRanges {
		return fmt.Errorf("cell %s: transaction cells run on the %s cluster", c.Name, manyRanges)
	}
	return nil
}

// checkTxnPlacement is the verdict on where a transaction cell's keys lie
// (n ranges): bank accounts in at least minBankRanges, the txn2 pair in
// two, the batch1 pair in one.
func checkTxnPlacement(c cell, n int) error {
	switch {
	case c.Kind == bankCell && n < minBankRanges:
		return fmt.Errorf("cell %s: its accounts lie in %d ranges, want at least %d", c.Name, n, minBankRanges)
	case c.Kind == txn2Cell && n != 2:
		return fmt.Errorf("cell %s: its two keys lie in %d ranges, want 2", c.Name, n)
	case c.Kind == batch1Cell && n != 1:
		return fmt.Errorf("cell %s: its two keys lie in %d ranges, want 1", c.Name, n)
	}
	return nil
}

// rangesHolding counts the routing entries (in key order, covering the
// keys) that hold at least one of keys; a key no entry covers is an error.
func rangesHolding(entries []*rspb.RoutingEntry, keys [][]byte) (int, error) {
	held := map[uint64]bool{}
	for _, k := range keys {
		found := false
		for _, e := range entries {
			if bytes.Compare(e.StartKey, k) <= 0 && (len(e.EndKey) == 0 || bytes.Compare(k, e.EndKey) < 0) {
				held[e.RangeId], found = true, true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("no range in the routing table holds key %q", k)
		}
	}
	return len(held), nil
}

// rangesOfKeys counts the ranges holding keys, from a node's routing
// table.
func (c *rsCluster) rangesOfKeys(ctx context.Context, keys [][]byte) (int, error) {
	var lo, hi []byte
	for _, k := range keys {
		if lo == nil || bytes.Compare(k, lo) < 0 {
			lo = k
		}
		if hi == nil || bytes.Compare(k, hi) > 0 {
			hi = k
		}
	}
	entries, err := c.routingEntries(ctx, lo, hi)
	if err != nil {
		return 0, err
	}
	return rangesHolding(entries, keys)
}

// txnSystem is what one system runs the transaction cells with (nil
// fields: the system skips those cells).
type txnSystem struct {
	bank  bench.BankDriver
	load  bench.BatchPutter // the bank preload
	pairs bench.PairWriter
	// ranges counts the ranges holding keys (nil: no ranges to count).
	ranges func(ctx context.Context, keys [][]byte) (int, error)
}

// runTxnCell runs one transaction cell (nil result: the system has no
// counterpart).
func runTxnCell(o options, sys string, ts txnSystem, c cell) (*bench.Result, error) {
	if (c.Kind == bankCell && ts.bank == nil) || (c.Kind != bankCell && ts.pairs == nil) {
		fmt.Fprintf(os.Stderr, "%s %s: skipped (no transactions on this system or driver path)\n", sys, c.Name)
		return nil, nil
	}
	if ts.ranges != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n, err := ts.ranges(ctx, c.txnKeys())
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		if err := checkTxnPlacement(c, n); err != nil {
			return nil, err
		}
		unit := "ranges"
		if n == 1 {
			unit = "range"
		}
		fmt.Fprintf(os.Stderr, "%s %s: its %d keys lie in %d %s\n", sys, c.Name, len(c.txnKeys()), n, unit)
	}
	opts := bench.Options{Concurrency: c.Concurrency, Warmup: o.warmup, Duration: o.measure, Seed: 1}
	var r *bench.Result
	var err error
	switch c.Kind {
	case bankCell:
		s := c.bankSpec()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		err = bench.PreloadBank(ctx, ts.load, s)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		r, err = bench.RunBank(context.Background(), ts.bank, s, opts)
	case txn2Cell:
		r, err = bench.RunPairWrites(context.Background(), ts.pairs, bench.PairTxn, txn2Keys[0], txn2Keys[1], pairValueSize, opts)
	case batch1Cell:
		r, err = bench.RunPairWrites(context.Background(), ts.pairs, bench.PairBatch, batch1Keys[0], batch1Keys[1], pairValueSize, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	r.Driver = sys
	_ = bench.WriteSummary(os.Stderr, r)
	if b := r.Bank; b != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %s\n", sys, c.Name, bankLine(r))
	}
	return r, nil
}

func bankLine(r *bench.Result) string {
	b := r.Bank
	s := fmt.Sprintf("%s committed/s, %.2f retries per commit, p50 %.1f ms, p99 %.1f ms, %d errors, checker: %d snapshots held during the run",
		fmtRate(b.CommittedPerSec), b.RetriesPerCommit, r.Total.P50Ms, r.Total.P99Ms, r.Total.Errors, b.CheckerRuns)
	if b.CheckerErrors > 0 {
		s += fmt.Sprintf(", %d unreadable (%s)", b.CheckerErrors, b.CheckerError)
	}
	if b.CheckerCutOff > 0 {
		s += fmt.Sprintf(", %d still being read when it ended", b.CheckerCutOff)
	}
	if b.CheckerRuns == 0 {
		s += " (STARVED: none completed while the clients ran)"
	}
	if b.FinalSnapshot {
		s += ", the final one held"
	}
	if r.FirstError != "" {
		s += "; first error: " + r.FirstError
	}
	return s
}

// txnSummary reports the transaction cells ("" if none ran).
func txnSummary(o options, all map[string]systemResults) string {
	var b strings.Builder
	for _, c := range cells {
		if c.Kind != bankCell {
			continue
		}
		for _, sys := range o.systems {
			r := all[sys][c.Name]
			if r == nil || r.Bank == nil {
				continue
			}
			if b.Len() == 0 {
				b.WriteString("\nTransactions (issue 16): bank, 100 accounts, transfers read two and write two (rangestore client.DB.Txn, etcd Txn compare-and-swap on mod revisions looped until it commits), latency with retries; a snapshot of every account every 100 ms must sum to the total:\n\n")
			}
			fmt.Fprintf(&b, "- %s %s: %s\n", c.Name, sys, bankLine(r))
		}
	}
	t, p := all["rangestore"][cellOfKind(txn2Cell)], all["rangestore"][cellOfKind(batch1Cell)]
	if t != nil && p != nil {
		if b.Len() == 0 {
			b.WriteString("\nTransactions (issue 16):\n\n")
		}
		fmt.Fprintf(&b, "- 2-range transaction vs 1-range batch (one client): txn2 p50 %.2f ms p99 %.2f ms, batch1 p50 %.2f ms p99 %.2f ms", t.Total.P50Ms, t.Total.P99Ms, p.Total.P50Ms, p.Total.P99Ms)
		if p.Total.P50Ms > 0 && p.Total.P99Ms > 0 {
			fmt.Fprintf(&b, "; txn2/batch1 p50 %.2f×, p99 %.2f×", t.Total.P50Ms/p.Total.P50Ms, t.Total.P99Ms/p.Total.P99Ms)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// cellOfKind names the first cell of kind k ("" if none).
func cellOfKind(k cellKind) string {
	for _, c := range cells {
		if c.Kind == k {
			return c.Name
		}
	}
	return ""
}

// etcdBank is the bank on etcd.
type etcdBank struct {
	cli *clientv3.Client
}

// Transfer reads both accounts in one Txn, then commits
// If(mod(from)=ra, mod(to)=rb).Then(put, put).Else(get, get), taking the
// Else branch's reads for the next attempt, until it commits.
func (e etcdBank) Transfer(ctx context.Context, from, to []byte, amount int64) (int, error) {
	a, b := string(from), string(to)
	resp, err := e.cli.Txn(ctx).Then(clientv3.OpGet(a), clientv3.OpGet(b)).Commit()
	for retries := 0; ; retries++ {
		if err != nil {
			return retries, err
		}
		var kvA, kvB *kvPair
		var na, nb int64
		if kvA, kvB, na, nb, err = transferFrom(resp, a, b, amount); err != nil {
			return retries, err
		}
		resp, err = e.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(a), "=", kvA.ModRevision), clientv3.Compare(clientv3.ModRevision(b), "=", kvB.ModRevision)).
			Then(clientv3.OpPut(a, string(bench.EncodeBalance(na))), clientv3.OpPut(b, string(bench.EncodeBalance(nb)))).
			Else(clientv3.OpGet(a), clientv3.OpGet(b)).Commit()
		if err == nil && resp.Succeeded {
			return retries, nil
		}
	}
}

// transferFrom returns the reads of a and b in resp and the new
// balances (bench.TransferAmounts).
func transferFrom(resp *clientv3.TxnResponse, a, b string, amount int64) (kvA, kvB *kvPair, na, nb int64, err error) {
	if kvA, kvB, err = twoKVs(resp, a, b); err != nil {
		return nil, nil, 0, 0, err
	}
	ba, err := bench.DecodeBalance(kvA.Value)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	bb, err := bench.DecodeBalance(kvB.Value)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	na, nb = bench.TransferAmounts(ba, bb, amount)
	return kvA, kvB, na, nb, nil
}

// twoKVs returns the two Gets' values of a Txn response (its Then of two
// Gets, or its Else).
func twoKVs(resp *clientv3.TxnResponse, a, b string) (kvA, kvB *kvPair, err error) {
	if len(resp.Responses) != 2 {
		return nil, nil, fmt.Errorf("etcd txn: %d responses, want 2 gets", len(resp.Responses))
	}
	var out [2]*kvPair
	for i, key := range []string{a, b} {
		rr := resp.Responses[i].GetResponseRange()
		if rr == nil || len(rr.Kvs) != 1 {
			return nil, nil, fmt.Errorf("etcd txn: account %q: no value", key)
		}
		out[i] = &kvPair{Value: rr.Kvs[0].Value, ModRevision: rr.Kvs[0].ModRevision}
	}
	return out[0], out[1], nil
}

type kvPair struct {
	Value       []byte
	ModRevision int64
}

// Balances reads every account in one Txn of Gets (one revision).
func (e etcdBank) Balances(ctx context.Context, accounts [][]byte) ([]int64, error) {
	if len(accounts) > etcdMaxTxnOps {
		return nil, fmt.Errorf("etcd checker: %d accounts exceed --max-txn-ops %d", len(accounts), etcdMaxTxnOps)
	}
	ops := make([]clientv3.Op, len(accounts))
	for i, k := range accounts {
		ops[i] = clientv3.OpGet(string(k))
	}
	resp, err := e.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(accounts))
	for i, r := range resp.Responses {
		rr := r.GetResponseRange()
		if rr == nil || len(rr.Kvs) != 1 {
			return nil, fmt.Errorf("etcd checker: account %q: no value", accounts[i])
		}
		if out[i], err = bench.DecodeBalance(rr.Kvs[0].Value); err != nil {
			return nil, err
		}
	}
	return out, nil
}
