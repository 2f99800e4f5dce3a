package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// These tests run the built rangestore binary (one build per test process)
// the way a user does, so they hold for the real exit codes and output.

type cliResult struct {
	code        int
	out, errOut string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.errOut)
}

// runBin runs the rangestore binary with args (and extra environment) and
// a deadline.
func runBin(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	bin, err := chaos.BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	r := cliResult{out: out.String(), errOut: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("rangestore %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("rangestore %s did not finish in time\n%s", strings.Join(args, " "), r)
	}
	return r
}

// withSecArgs inserts sec (a cluster's security flags: --certs-dir DIR
// or --insecure) after the command's name in a CLI command line.
func withSecArgs(sec, args []string) []string {
	if len(args) == 0 {
		return args
	}
	return append(append([]string{args[0]}, sec...), args[1:]...)
}

// tcSecArgs are the security flags of a CLI call to an in-process test
// cluster: its certs directory as root when it is secure, else --insecure.
func tcSecArgs(tc *node.TestCluster) []string {
	if tc.Security(0) != nil {
		return []string{"--certs-dir", tc.CertsDir()}
	}
	return []string{"--insecure"}
}

// runTC is runBin against an in-process test cluster, with its security
// flags.
func runTC(t *testing.T, tc *node.TestCluster, args ...string) cliResult {
	t.Helper()
	return runBin(t, nil, withSecArgs(tcSecArgs(tc), args)...)
}

// TestCLIHelp: --help and -h of every command exit 0 and print the
// command's usage on stdout, without "pflag: help requested"; kv and range
// list their sub-commands; no arguments prints the usage (exit 2).
func TestCLIHelp(t *testing.T) {
	subs := map[string][]string{
		"start":    {"rangestore start --store DIR"},
		"init":     {"rangestore init", "--replicas"},
		"cluster":  {"cluster set-replicas N", "cluster set NAME=VALUE", "--host"},
		"demo":     {"rangestore demo", "--nodes"},
		"kv":       {"kv get KEY", "kv put KEY VALUE", "kv del KEY", "kv scan", "kv incr KEY", "--host"},
		"range":    {"range list", "range split KEY", "range merge KEY", "range transfer-lease RANGE NODE", "--host"},
		"workload": {"workload run kv|ycsb", "--duration"},
	}
	for cmd, want := range subs {
		for _, h := range []string{"--help", "-h"} {
			r := runBin(t, nil, cmd, h)
			if r.code != 0 || strings.Contains(r.out+r.errOut, "help requested") {
				t.Errorf("rangestore %s %s: %s", cmd, h, r)
				continue
			}
			for _, w := range want {
				if !strings.Contains(r.out, w) {
					t.Errorf("rangestore %s %s: stdout lacks %q: %s", cmd, h, w, r)
				}
			}
		}
	}
	r := runBin(t, nil, "help", "kv")
	if r.code != 0 || !strings.Contains(r.out, "kv incr KEY") {
		t.Errorf("rangestore help kv: %s", r)
	}
	r = runBin(t, nil)
	if r.code != 2 || !strings.Contains(r.errOut, "Usage:") {
		t.Errorf("rangestore without arguments: %s", r)
	}
	r = runBin(t, nil, "kv", "--nosuchflag")
	if r.code != 2 || !strings.Contains(r.errOut, "unknown flag: --nosuchflag") || !strings.Contains(r.errOut, "rangestore kv --help") {
		t.Errorf("rangestore kv --nosuchflag: %s", r)
	}
}

// TestCLIUsageListsEverything: the top-level usage names every command and
// sub-command.
func TestCLIUsageListsEverything(t *testing.T) {
	r := runBin(t, nil, "--help")
	if r.code != 0 {
		t.Fatalf("rangestore --help: %s", r)
	}
	for _, w := range []string{"rangestore start", "rangestore init", "--replicas N", "rangestore cluster set-replicas N", "rangestore demo",
		"kv get", "kv put", "kv del", "kv scan", "kv incr", "range list", "range split", "range merge",
		"range transfer-lease", "workload run", "-- "} {
		if !strings.Contains(r.out, w) {
			t.Errorf("top-level usage lacks %q:\n%s", w, r.out)
		}
	}
}

// TestCLIUsageMatchesDocComment: the "rangestore ..." lines of the package
// doc comment are those of the top-level usage.
func TestCLIUsageMatchesDocComment(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	norm := func(text string) []string {
		var lines []string
		for _, l := range strings.Split(text, "\n") {
			l = strings.Join(strings.Fields(l), " ")
			if strings.HasPrefix(l, "rangestore ") {
				lines = append(lines, l)
			}
		}
		return lines
	}
	doc := norm(f.Doc.Text())
	r := runBin(t, nil, "--help")
	usage := norm(r.out)
	if len(doc) == 0 || strings.Join(doc, "\n") != strings.Join(usage, "\n") {
		t.Fatalf("doc comment and usage differ:\ndoc:\n%s\nusage:\n%s", strings.Join(doc, "\n"), strings.Join(usage, "\n"))
	}
}

// TestCLIDemoNodes: --nodes below 1 is refused before anything is created;
// --nodes 1 and 2 run and print hints that name existing nodes only, with
// the nodes listed in ID order and a command that can be run as printed.
func TestCLIDemoNodes(t *testing.T) {
	for _, n := range []string{"0", "-2"} {
		tmp := t.TempDir()
		r := runBin(t, []string{"TMPDIR=" + tmp}, "demo", "--nodes", n)
		if r.code == 0 || strings.Contains(r.errOut, "panic") || !strings.Contains(r.errOut, "--nodes") {
			t.Errorf("demo --nodes %s: %s", n, r)
		}
		if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
			t.Errorf("demo --nodes %s left %v behind", n, ents)
		}
	}
	bin, _ := chaos.BuildBinary()
	for _, n := range []int{1, 2} {
		r := runBin(t, nil, "demo", "--nodes", fmt.Sprint(n), "--duration", "10ms")
		if r.code != 0 || strings.Contains(r.errOut, "panic") {
			t.Fatalf("demo --nodes %d: %s", n, r)
		}
		want := fmt.Sprintf("%d nodes,", n)
		if n == 1 {
			want = "1 node,"
		}
		if !strings.Contains(r.out, want) {
			t.Errorf("demo --nodes %d: no %q in %s", n, want, r.out)
		}
		// Node lines in ID order, and the hints' hosts among them.
		nodeLine := regexp.MustCompile(`(?m)^  n(\d+)  grpc (\S+)`)
		addrs := map[string]bool{}
		prev := ""
		for _, m := range nodeLine.FindAllStringSubmatch(r.out, -1) {
			if m[1] <= prev {
				t.Errorf("demo --nodes %d lists n%s after n%s", n, m[1], prev)
			}
			prev = m[1]
			addrs[m[2]] = true
		}
		if len(addrs) != n {
			t.Fatalf("demo --nodes %d: %d node lines: %s", n, len(addrs), r.out)
		}
		_, hints, ok := strings.Cut(r.out, "try:\n")
		if !ok {
			t.Fatalf("no hints: %s", r.out)
		}
		hintHost := regexp.MustCompile(`(?m)^  (\S+) .*--host (\S+)`)
		found := hintHost.FindAllStringSubmatch(hints, -1)
		if len(found) < 3 {
			t.Fatalf("demo --nodes %d hints: %s", n, hints)
		}
		for _, m := range found {
			if m[1] != bin || !addrs[m[2]] {
				t.Errorf("demo --nodes %d hint %q: want %s and one of %v", n, m[0], bin, addrs)
			}
		}
	}
}

// TestCLIStartValidatesFlagsFirst: a bad --log-level, --locality,
// address or snapshot limit is refused before the store directory is created.
func TestCLIStartValidatesFlagsFirst(t *testing.T) {
	cases := map[string][]string{
		"--log-level":               {"--log-level", "loud"},
		"--locality":                {"--locality", "region"},
		"--listen-addr":             {"--listen-addr", "nope"},
		"--http-addr":               {"--http-addr", "nope"},
		"--raft-addr":               {"--raft-addr", "nope"},
		"--join":                    {"--join", "127.0.0.1:1,nope"},
		"--snapshot-rate":           {"--snapshot-rate", "fast"},
		"--max-snapshots-in-flight": {"--max-snapshots-in-flight", "0"},
	}
	listen, err := node.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	for flag, args := range cases {
		store := filepath.Join(t.TempDir(), "store")
		r := runBin(t, nil, append([]string{"start", "--insecure", "--store", store, "--listen-addr", listen, "--http-addr", ""}, args...)...)
		if r.code == 0 || !strings.Contains(r.errOut, flag) {
			t.Errorf("start %v: %s", args, r)
		}
		if _, err := os.Stat(store); err == nil {
			t.Errorf("start %v created %s before refusing", args, store)
		}
	}
}

// TestCLIStartValidatesThresholds: a negative, NaN or infinite rebalance
// threshold, or a minimum below 1, is refused with an error naming the
// flag, before the store directory is created.
func TestCLIStartValidatesThresholds(t *testing.T) {
	cases := []struct{ flag, value, want string }{
		{"--range-rebalance-threshold", "-0.1", "0 or more"},
		{"--range-rebalance-threshold", "NaN", "finite"},
		{"--lease-rebalance-threshold", "-1", "0 or more"},
		{"--lease-rebalance-threshold", "+Inf", "finite"},
		{"--qps-rebalance-threshold", "-0.25", "0 or more"},
		{"--min-range-rebalance", "0", "at least 1"},
		{"--min-lease-rebalance", "-3", "at least 1"},
		{"--min-range-rebalance", "two", "invalid"},
	}
	listen, err := node.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		store := filepath.Join(t.TempDir(), "store")
		r := runBin(t, nil, "start", "--insecure", "--store", store, "--listen-addr", listen, "--http-addr", "", c.flag+"="+c.value)
		if r.code == 0 || !strings.Contains(r.errOut, c.flag) || !strings.Contains(r.errOut, c.want) {
			t.Errorf("start %s=%s: want an error naming %s and %q: %s", c.flag, c.value, c.flag, c.want, r)
		}
		if _, err := os.Stat(store); err == nil {
			t.Errorf("start %s=%s created %s before refusing", c.flag, c.value, store)
		}
	}
}

// TestCLIWorkloadValidatesFirst: workload refuses bad flags before it
// dials or preloads anything.
func TestCLIWorkloadValidatesFirst(t *testing.T) {
	dead, err := node.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	for flag, args := range map[string][]string{
		"--duration":    {"--hosts", dead, "--duration", "0"},
		"--concurrency": {"--hosts", dead, "--concurrency", "0"},
		"--hosts":       {"--hosts", ","},
	} {
		r := runBin(t, nil, append([]string{"workload", "run", "kv"}, args...)...)
		if r.code == 0 || !strings.Contains(r.errOut, flag) || strings.Contains(r.errOut, "preload") {
			t.Errorf("workload %v: %s", args, r)
		}
	}
}

// TestCLIAgainstCluster: one in-process 3-node cluster for the kv and range
// commands: negative numbers as arguments, quoting in scan, plurals, the
// merge messages, range list --verbose, NotFound codes, the Admin.Ranges
// filter and the pprof handlers.
func TestCLIAgainstCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{Nodes: 3, HTTP: true, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	h := tc.Addr(0)
	ok := func(args ...string) string {
		t.Helper()
		r := runTC(t, tc, append([]string{args[0], "--host", h}, args[1:]...)...)
		if r.code != 0 {
			t.Fatalf("rangestore %v: %s", args, r)
		}
		return r.out
	}
	fail := func(want string, args ...string) {
		t.Helper()
		r := runTC(t, tc, append([]string{args[0], "--host", h}, args[1:]...)...)
		if r.code == 0 || !strings.Contains(r.errOut, want) {
			t.Errorf("rangestore %q: want an error with %q: %s", args, want, r)
		}
	}
	// txn list: none open, then one that has written and one blocked on it.
	if out := ok("txn", "list"); !strings.Contains(out, "coordinates no open transaction") {
		t.Errorf("txn list with none open: %q", out)
	}
	kv0 := rspb.NewKVClient(tc.Conn(0))
	b1, err := kv0.BeginTxn(ctx, &rspb.BeginTxnRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv0.Batch(ctx, &rspb.BatchRequest{Txn: b1.Txn, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("x-held"), Value: []byte("1")}}}}}); err != nil {
		t.Fatal(err)
	}
	b2, err := kv0.BeginTxn(ctx, &rspb.BeginTxnRequest{})
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := kv0.Batch(ctx, &rspb.BatchRequest{Txn: b2.Txn, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("x-held"), Value: []byte("2")}}}}})
		blocked <- err
	}()
	timeutil.WaitFor(t, 20*time.Second, "txn list showing the wait", func() error {
		// The holder's row (anchor "x-held"), and the other one waiting on it.
		out := ok("txn", "list")
		holder := ""
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[2] == `"x-held"` {
				holder = f[0]
			}
		}
		if holder == "" || !strings.Contains(out, "txn "+holder+` on "x-held" for`) {
			return fmt.Errorf("txn list: %q", out)
		}
		return nil
	})
	if _, err := kv0.CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: b1.Txn}); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; err != nil {
		t.Fatalf("the blocked write after the commit: %v", err)
	}
	if _, err := kv0.RollbackTxn(ctx, &rspb.RollbackTxnRequest{Txn: b2.Txn}); err != nil {
		t.Fatal(err)
	}
	// Negative numbers are arguments, not flags.
	ok("kv", "put", "neg", "-5")
	if out := ok("kv", "get", "neg"); out != "-5\n" {
		t.Errorf("get neg = %q", out)
	}
	ok("kv", "incr", "cnt", "10")
	if out := ok("kv", "incr", "cnt", "-1"); out != "9\n" {
		t.Errorf("incr cnt -1 = %q", out)
	}
	if r := runTC(t, tc, "kv", "incr", "--host", h, "cnt", "-2.5"); r.code == 0 || !strings.Contains(r.errOut, "-2.5") {
		t.Errorf("incr cnt -2.5: %s", r)
	}
	// -- still ends the flags.
	ok("kv", "put", "--", "-dash", "v")
	if out := ok("kv", "get", "--", "-dash"); out != "v\n" {
		t.Errorf("get -dash = %q", out)
	}
	// Scan output: one line per pair, non-printable data quoted, plurals.
	ok("kv", "put", "tab\tkey", "new\nline")
	ok("kv", "put", "\xff\xfe", "bad\xc3")
	r := runTC(t, tc, "kv", "scan", "--host", h, "t", "u")
	if r.code != 0 || r.out != "\"tab\\tkey\"  \"new\\nline\"\n" || !strings.Contains(r.errOut, "(1 key)") {
		t.Errorf("scan [t,u): %s", r)
	}
	r = runTC(t, tc, "kv", "scan", "--host", h, "\xff")
	if r.code != 0 || r.out != "\"\\xff\\xfe\"  \"bad\\xc3\"\n" {
		t.Errorf("scan [\\xff,): %s", r)
	}
	r = runTC(t, tc, "kv", "scan", "--host", h, "cnt", "negz")
	if r.code != 0 || r.out != "cnt  9\nneg  -5\n" || !strings.Contains(r.errOut, "(2 keys)") {
		t.Errorf("scan [cnt,negz): %s", r)
	}
	// Read modes: put prints its bookmark on stderr; a causal get with it
	// reads the write; bad flags and bookmarks name what is wrong.
	r = runTC(t, tc, "kv", "put", "--host", h, "bm", "x")
	var bm string
	if _, err := fmt.Sscanf(r.errOut, "(bookmark %s", &bm); r.code != 0 || err != nil || !strings.HasSuffix(bm, ")") {
		t.Errorf("put bm: no bookmark on stderr: %s", r)
	}
	bm = strings.TrimSuffix(bm, ")")
	if out := ok("kv", "get", "bm", "--read-mode", "causal", "--bookmark", bm); out != "x\n" {
		t.Errorf("causal get bm = %q", out)
	}
	if out := ok("kv", "get", "bm", "--read-mode", "bounded-staleness", "--max-staleness", "1m"); out != "x\n" {
		t.Errorf("bounded-staleness get bm = %q", out)
	}
	fail("not hex", "kv", "get", "bm", "--read-mode", "causal", "--bookmark", "zz")
	fail("bookmarks[0]", "kv", "get", "bm", "--read-mode", "causal", "--bookmark", "00")
	fail("max_staleness", "kv", "scan", "--read-mode", "bounded-staleness")
	fail("--read-mode", "kv", "get", "bm", "--read-mode", "eventual")

	// Merges: an empty key is refused like split's; the last range says so;
	// the output names the absorbed range.
	fail("InvalidArgument", "range", "merge", "")
	fail("is the last range; nothing to merge", "range", "merge", "zzz")
	split := ok("range", "split", "mm")
	m := regexp.MustCompile(`^split r(\d+) at "mm": r\d+ \S+ \S+, r(\d+) `).FindStringSubmatch(split)
	if m == nil {
		t.Fatalf("split output %q", split)
	}
	// Meta catches up asynchronously on other gateways; retry briefly.
	want := fmt.Sprintf("merged r%s into r%s", m[2], m[1])
	// A merge is not idempotent: retry only errors that say it did not
	// happen. After an ambiguous one (a deadline: it may have applied), a
	// retry would merge the next neighbour too, so check the outcome in
	// the range list instead of the output.
	var out string
	ambiguous := false
	for deadline := time.Now().Add(30 * time.Second); ; {
		r := runTC(t, tc, "range", "merge", "--host", h, "ma")
		out = r.out
		if r.code != 0 && strings.Contains(r.errOut, "DeadlineExceeded") {
			ambiguous = true
			t.Logf("merge ambiguous: %s", r)
			break
		}
		if r.code == 0 || time.Now().After(deadline) {
			break
		}
		t.Logf("merge attempt failed (retried): %s", r)
		time.Sleep(100 * time.Millisecond)
	}
	switch {
	case ambiguous, strings.HasPrefix(out, fmt.Sprintf("merged: r%s ", m[1])):
		// Ambiguous, or answered by a retry from the merged range's new
		// extent (its first answer lost to a per-attempt timeout), which
		// does not name the absorbed range: check that it is gone.
		gone := false
		for deadline := time.Now().Add(30 * time.Second); !gone && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			gone = !strings.Contains(ok("range", "list")+"\n", "\nr"+m[2]+" ")
		}
		if !gone {
			t.Errorf("after the merge (%q), r%s is still listed", out, m[2])
		}
	case !strings.HasPrefix(out, want):
		t.Errorf("merge output %q, want it to start with %q", out, want)
	}

	// NotFound for unknown ranges and nodes.
	fail("code = NotFound", "range", "transfer-lease", "r999", "n1")
	fail("code = NotFound", "range", "transfer-lease", "r1", "n9")

	// range list shows the state (frozen_into); --verbose adds approximate bytes.
	list := ok("range", "list", "--verbose")
	if !strings.Contains(list, "STATE") || !strings.Contains(list, "BYTES") {
		t.Errorf("range list --verbose:\n%s", list)
	}
	// Admin.Ranges honours range_ids.
	rr, err := rspb.NewAdminClient(tc.Conn(0)).Ranges(ctx, &rspb.RangesRequest{RangeIds: []uint64{1}})
	if err != nil || len(rr.Ranges) != 1 || rr.Ranges[0].RangeDescriptor.GetRangeId() != 1 {
		t.Errorf("Ranges{range_ids:[1]}: %v, %d ranges", err, len(rr.GetRanges()))
	}

	// pprof: every handler the index links.
	for _, p := range []string{"cmdline", "symbol", "trace?seconds=0.1"} {
		resp, err := http.Get("http://" + tc.Node(0).HTTPAddr() + "/debug/pprof/" + p)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/debug/pprof/%s: %s", p, resp.Status)
		}
	}
}

// TestCLIRangeProcessCluster: four `start` processes. Before init, range
// list says the node is not initialized and init refuses bad flags (an
// even --replicas too); after `init --replicas 3`, transfer-lease asked of
// a node without a replica of the range is forwarded, and a transfer to
// the holder says so.
func TestCLIRangeProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const procs = 4
	pc := newProcCluster(t, procs)
	// Wait until the node answers (processes are starting).
	var r cliResult
	for deadline := time.Now().Add(60 * time.Second); ; {
		r = pc.runCLI(t, "range", "list", "--host", pc.addrs[0])
		if !strings.Contains(r.errOut, "Unavailable") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.code == 0 || !strings.Contains(r.errOut, "not initialized") {
		t.Errorf("range list before init: %s", r)
	}
	for flag, args := range map[string][]string{
		"--replicas":       {"--replicas", "-1"},
		"--split-at":       {"--split-at", ""},
		"--initial-splits": {"--initial-splits", "-1"},
	} {
		r := pc.runCLI(t, append([]string{"init", "--host", pc.addrs[0]}, args...)...)
		if r.code == 0 || !strings.Contains(r.errOut, flag) {
			t.Errorf("init %v: %s", args, r)
		}
	}
	for _, bad := range []string{"2", "0", "11"} {
		r := pc.runCLI(t, "init", "--host", pc.addrs[0], "--replicas", bad)
		if r.code == 0 || !strings.Contains(r.errOut, "--replicas "+bad) {
			t.Errorf("init --replicas %s: %s", bad, r)
		}
	}
	out := pc.cliRetry(60*time.Second, "init", "--host", pc.addrs[0], "--replicas", "3")
	if !strings.Contains(out, "initialized: 4 nodes") {
		t.Fatalf("init: %s", out)
	}
	// Find a user range and a node without a replica of it.
	type rng struct{ id, holder string }
	onNode := make([]map[string]rng, procs)
	deadline := time.Now().Add(30 * time.Second)
	for i := range onNode {
		for {
			onNode[i] = map[string]rng{}
			list := pc.cliRetry(30*time.Second, "range", "list", "--host", pc.addrs[i])
			allHeld := true
			for _, line := range strings.Split(strings.TrimSpace(list), "\n")[1:] {
				f := strings.Fields(line)
				// LEASEHOLDER is followed by LEASE EPOCH RAFT-LEADER TERM APPLIED.
				lh := f[len(f)-6]
				if strings.Contains(f[1], "/User") {
					onNode[i][f[0]] = rng{f[0], lh}
					if !strings.HasPrefix(lh, "n") || strings.Contains(lh, "(") {
						allHeld = false
					}
				}
			}
			if allHeld || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	asked, rangeID, holder := -1, "", ""
	for i := 0; i < procs && asked < 0; i++ {
		for j := 0; j < procs && asked < 0; j++ {
			for id, x := range onNode[j] {
				if _, here := onNode[i][id]; !here && x.holder != "-" {
					asked, rangeID, holder = i, id, x.holder
					break
				}
			}
		}
	}
	if asked < 0 {
		t.Fatalf("every node holds every user range: %v", onNode)
	}
	r = pc.runCLI(t, "range", "transfer-lease", rangeID, holder, "--host", pc.addrs[asked])
	if r.code != 0 || r.out != fmt.Sprintf("%s already holds %s\n", holder, rangeID) {
		t.Errorf("transfer-lease %s %s asked of node %d: %s", rangeID, holder, asked, r)
	}
	// Another replica of the range.
	other := ""
	for i := 0; i < procs; i++ {
		if _, here := onNode[i][rangeID]; here {
			if id := nodeIDAt(t, pc, i); id != holder {
				other = id
			}
		}
	}
	if other == "" {
		t.Fatalf("no second replica of %s", rangeID)
	}
	r = pc.runCLI(t, "range", "transfer-lease", rangeID, other, "--host", pc.addrs[asked])
	if r.code != 0 || r.out != fmt.Sprintf("lease of %s transferred to %s\n", rangeID, other) {
		t.Errorf("transfer-lease %s %s asked of node %d: %s", rangeID, other, asked, r)
	}
}

// nodeIDAt returns "n<ID>" of the process at index i.
func nodeIDAt(t *testing.T, pc *procCluster, i int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ni, err := rspb.NewInternalClient(pc.NodeConn(i)).NodeInfo(ctx, &rspb.NodeInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("n%d", ni.Node.NodeId)
}
