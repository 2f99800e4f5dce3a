package main

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/rangestore/rangestore/bench"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// The transaction cells are declared as issue 16 asks, pass checkCells,
// preload nothing through the kv spaces, and get a table row.
func TestTxnCellSpecs(t *testing.T) {
	if err := checkCells(cells, bench.DefaultKeys); err != nil {
		t.Fatal(err)
	}
	b := cellNamed(t, "bank@64")
	z := cellNamed(t, "bank-zipf@64")
	for _, c := range []cell{b, z} {
		s := c.bankSpec()
		if c.Kind != bankCell || c.Concurrency != 64 || s.Accounts != 100 || s.Initial <= 0 || s.CheckEvery != 100*time.Millisecond || s.KeyBase < bankKeyBase {
			t.Fatalf("%s: %+v, spec %+v: want a bank of 100 accounts, 64 clients, a checker every 100 ms, from bankKeyBase", c.Name, c, s)
		}
	}
	if b.KeyBase == z.KeyBase {
		t.Fatal("bank@64 and bank-zipf@64 share their accounts")
	}
	if b.bankSpec().Distribution != bench.Uniform || z.bankSpec().Distribution != bench.Zipfian {
		t.Fatalf("distributions: bank@64 %s, bank-zipf@64 %s", b.bankSpec().Distribution, z.bankSpec().Distribution)
	}
	for _, n := range []string{"txn2@1", "batch1@1"} {
		if c := cellNamed(t, n); c.Concurrency != 1 || c.Shape != manyRanges {
			t.Fatalf("%s: %+v, want one client on the many-ranges cluster", n, c)
		}
	}
	if cellOfKind(txn2Cell) != "txn2@1" || cellOfKind(batch1Cell) != "batch1@1" {
		t.Fatal("cellOfKind")
	}
	// The accounts spread over the 64 ranges of `init --initial-splits 63`
	// (the routing table is checked again on the cluster), the txn2 pair
	// over two, the batch1 pair in one.
	splits := keys.DefaultSplitKeys(63)
	var entries []*rspb.RoutingEntry
	var start []byte
	for i, s := range splits {
		entries = append(entries, &rspb.RoutingEntry{RangeId: uint64(i + 1), StartKey: start, EndKey: s})
		start = s
	}
	entries = append(entries, &rspb.RoutingEntry{RangeId: 64, StartKey: start})
	for _, c := range []cell{b, cellNamed(t, "txn2@1"), cellNamed(t, "batch1@1")} {
		n, err := rangesHolding(entries, c.txnKeys())
		if err != nil {
			t.Fatal(err)
		}
		if err := checkTxnPlacement(c, n); err != nil {
			t.Fatalf("64 ranges: %v", err)
		}
	}
	if _, err := rangesHolding(entries[1:], [][]byte{[]byte("0")}); err == nil {
		t.Fatal("a key no entry holds was counted")
	}
	if err := checkTxnPlacement(b, 9); err == nil || !strings.Contains(err.Error(), "9 ranges, want at least 10") {
		t.Fatalf("bank over 9 ranges: %v", err)
	}
	if err := checkTxnPlacement(cellNamed(t, "txn2@1"), 1); err == nil {
		t.Fatal("txn2 in one range passed")
	}
	if err := checkTxnPlacement(cellNamed(t, "batch1@1"), 2); err == nil {
		t.Fatal("batch1 over two ranges passed")
	}
	// No kv preload for the transaction cells.
	for _, k := range phases(cells)[0].spaces() {
		if k.Base == bankKeyBase || k.Base == bankZipfKeyBase {
			t.Fatalf("the many-ranges phase preloads the bank's key space %v", k)
		}
	}
	res := &bench.Result{Total: bench.OpSummary{OpsPerSec: 100, P50Ms: 4, P99Ms: 8}, Bank: &bench.BankStats{CommittedPerSec: 100, RetriesPerCommit: 0.5, CheckerRuns: 80}}
	pair := &bench.Result{Total: bench.OpSummary{OpsPerSec: 500, P50Ms: 2, P99Ms: 4}}
	all := map[string]systemResults{"rangestore": {"bank@64": res, "txn2@1": res, "batch1@1": pair}, "etcd": {"bank@64": res}}
	sum := txnSummary(options{systems: []string{"rangestore", "etcd"}}, all)
	for _, want := range []string{"- bank@64 rangestore: 100 committed/s, 0.50 retries per commit", "- bank@64 etcd:", "txn2/batch1 p50 2.00×, p99 2.00×"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
}

func TestCheckTxnCellsErrors(t *testing.T) {
	for _, tc := range []struct {
		c    cell
		want string
	}{
		{cell{Name: "b", Concurrency: 4, Kind: bankCell, KeyBase: bankKeyBase, ReadPct: 50}, "sets no kv mix"},
		{cell{Name: "b", Concurrency: 4, Kind: bankCell, KeyBase: 1e13}, "do not fit"},
		{cell{Name: "b", Concurrency: 4, Kind: bankCell, KeyBase: bankKeyBase, Shape: oneRange}, "run on the many-ranges cluster"},
		{cell{Name: "t", Concurrency: 2, Kind: txn2Cell}, "concurrency 2"},
		{cell{Name: "t", Concurrency: 1, Kind: batch1Cell, Zipfian: true}, "fixed keys"},
		{cell{Name: "k", Concurrency: 1, Zipfian: true}, "Zipfian is for bank cells"},
		{cell{Name: "x", Concurrency: 1, Kind: cellKind(9)}, "not a transaction cell"},
	} {
		if err := checkCells([]cell{tc.c}, 1000); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("checkCells(%+v): %v, want an error containing %q", tc.c, err, tc.want)
		}
	}
	// A bank sharing the default kv space (other values) is refused.
	if err := checkCells([]cell{{Name: "a", Concurrency: 1}, {Name: "b", Concurrency: 1, Kind: bankCell}}, 1000); err == nil || !strings.Contains(err.Error(), "both use the key space at base 0") {
		t.Fatalf("bank over the kv space: %v", err)
	}
}

// startEmbeddedEtcd starts one etcd member in this process.
func startEmbeddedEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	addrs := make([]*url.URL, 2)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			t.Skipf("no free port for etcd: %v", err)
		}
		addrs[i] = &url.URL{Scheme: "http", Host: a}
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "m1", t.TempDir()
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*addrs[0]}, []url.URL{*addrs[0]}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*addrs[1]}, []url.URL{*addrs[1]}
	cfg.InitialCluster = "m1=" + addrs[1].String()
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Skipf("etcd unavailable: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready after 30 s")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addrs[0].String()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// The etcd bank on one embedded member: a few seconds at 4 clients
// (uniform and zipfian) commit transfers with the checker holding; a
// plain Put breaking the total fails the run.
func TestEtcdBankSmoke(t *testing.T) {
	cli := startEmbeddedEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ed := &etcdDriver{cli: cli}
	eb := etcdBank{cli}
	for _, name := range []string{"bank@64", "bank-zipf@64"} {
		s := cellNamed(t, name).bankSpec()
		if err := bench.PreloadBank(ctx, ed, s); err != nil {
			t.Fatal(err)
		}
		r, err := bench.RunBank(ctx, eb, s, bench.Options{Concurrency: 4, Duration: 2 * time.Second, Seed: 1})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s on etcd (1 member, smoke only): %s", name, bankLine(r))
		if r.Bank.Committed == 0 || r.Bank.CheckerRuns < 1 || !r.Bank.FinalSnapshot || r.Total.Errors > 0 {
			t.Fatalf("%s: %+v, errors %d (%s)", name, r.Bank, r.Total.Errors, r.FirstError)
		}
	}
	s := cellNamed(t, "bank@64").bankSpec()
	if err := ed.Put(ctx, s.Keys()[3], bench.EncodeBalance(s.Initial+5)); err != nil {
		t.Fatal(err)
	}
	if _, err := bench.RunBank(ctx, eb, s, bench.Options{Concurrency: 2, Duration: 2 * time.Second, Seed: 2}); !errors.Is(err, bench.ErrBankViolation) {
		t.Fatalf("run over a broken total: %v, want %v", err, bench.ErrBankViolation)
	}
}
