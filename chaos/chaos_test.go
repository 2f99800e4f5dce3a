package chaos

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestChaos runs CHAOS_HISTORIES histories (default 3) of CHAOS_DURATION
// (default 20s) each, alternating between a 3-node in-process cluster
// and 5 processes (AllFaults lists each mode's faults; CHAOS_MODE and
// CHAOS_FAULTS narrow them), with at least one injected fault per
// history, and fails on any non-linearizable history (saved as HTML
// under CHAOS_OUT, default ./chaos-failures) or diverged replicas. With
// CHAOS_TXNS=on (make chaos) the transactional workload runs alongside
// (Options.Txns): a history whose transactions violate txncheck fails too
// (its violations are printed and the report saved under CHAOS_OUT as
// txn-seed<seed>.txt).
// CHAOS_REBALANCE=aggressive (make chaos's default) starts the processes
// with low rebalance thresholds; each process-mode history logs the
// replica moves and lease transfers the replicate queues carried out.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos histories take a while")
	}
	histories := envInt("CHAOS_HISTORIES", 3)
	dur := envDuration("CHAOS_DURATION", 20*time.Second)
	out := os.Getenv("CHAOS_OUT")
	if out == "" {
		out = "chaos-failures"
	}
	seed := int64(envInt("CHAOS_SEED", int(time.Now().UnixNano()%1_000_000)))
	rebalanceSetting := os.Getenv("CHAOS_REBALANCE")
	// CHAOS_TXNS=on (make chaos's default) runs the transactional workload
	// beside the porcupine clients. Off in a plain `go test` (make test)
	// until the orphan version seen once under kill -9 (seed 67705: a
	// committed value of a transaction run that no recorded op wrote) is
	// explained.
	txns := os.Getenv("CHAOS_TXNS") == "on"
	if _, err := rebalanceArgs(rebalanceSetting); err != nil {
		t.Fatal(err)
	}
	violations, faults, ops, ambiguous, failedWrites, moves, transfers := 0, 0, 0, 0, 0, 0, 0
	var txnTotals Result
	kinds := map[string]int{} // faults per kind (the text before the first colon)
	for h := 0; h < histories; h++ {
		s := seed + int64(h)
		mode := ModeInProcess
		if h%2 == 1 {
			mode = ModeProcess
		}
		switch os.Getenv("CHAOS_MODE") { // one mode only (reproducing a failure)
		case ModeProcess, ModeInProcess:
			mode = os.Getenv("CHAOS_MODE")
		}
		// CHAOS_FAULTS=kind,kind narrows the faults (the mode's kinds
		// that are named; all of them when none is).
		var only []string
		for _, f := range AllFaults[mode] {
			if slices.Contains(strings.Split(os.Getenv("CHAOS_FAULTS"), ","), f) {
				only = append(only, f)
			}
		}
		res, err := RunHistory(context.Background(), Options{Duration: dur, Seed: s, Mode: mode, Faults: only, OutDir: out, Logf: t.Logf, Rebalance: rebalanceSetting, Txns: txns})
		if err != nil {
			t.Fatalf("history %d (seed %d): %v", h, s, err)
		}
		if len(res.Faults) == 0 {
			t.Fatalf("history %d (seed %d) injected no fault", h, s)
		}
		faults += len(res.Faults)
		for _, f := range res.Faults {
			kind, _, _ := strings.Cut(f, ":")
			kinds[kind]++
		}
		ops += res.Ops
		ambiguous += res.Ambiguous
		failedWrites += res.FailedWrites
		t.Logf("history %d (%s) seed %d: %d ops (%d ambiguous writes, %d writes failed without applying, %d of %d reads failed, %d conditional deletes, %d succeeded), faults %v, linearizable=%v",
			h, mode, s, res.Ops, res.Ambiguous, res.FailedWrites, res.FailedReads, res.Reads, res.CondDeletes, res.CondDeletesOK, res.Faults, res.Linearizable)
		r := res.Routing
		t.Logf("history %d: client routing: %d attempts, %d redirects, %d stale ranges, %d transport failures, %d routing lookups",
			h, r.Attempts, r.Redirects, r.StaleRanges, r.TransportFailures, r.RoutingLookups)
		if !res.Linearizable {
			violations++
			t.Errorf("history %d (seed %d) is NOT linearizable: %s", h, s, res.Visualization)
		}
		if mode == ModeProcess {
			moves += res.RebalanceMoves
			transfers += res.LeaseTransfers
			t.Logf("history %d: rebalancing (%s): %d replica moves and %d lease transfers carried out by the replicate queues (%d of %d metric scrapes failed: processes down)",
				h, orDefault(rebalanceSetting), res.RebalanceMoves, res.LeaseTransfers, res.FailedScrapes, res.MetricScrapes)
		}
		t.Logf("history %d: replica consistency: %d ranges compared, %d skipped, %d diverged", h, res.ConsistencyCompared, len(res.ConsistencySkipped), len(res.Diverged))
		t.Logf("history %d: txns: bank transfers %d committed, %d skipped, %d aborted, %d ambiguous, %d retried; %d bank checks (%d failed); validator %d ops (%d txns, %d retried, %d failed reads left out); %d commits failed Unavailable; %d versions dumped, %d ambiguous outcomes inferred; %d txn violations",
			h, res.TxnCommitted, res.TxnSkipped, res.TxnAborted, res.TxnAmbiguous, res.TxnRetried, res.BankChecks, res.BankChecksFailed,
			res.ValidatorOps, res.ValidatorTxns, res.ValidatorRetried, res.TxnFailedReads, res.TxnUnavailableCommits, res.TxnVersions, res.TxnInferred, len(res.TxnViolations))
		addTxnTotals(&txnTotals, res)
		if msg := txnFailure(res, s); msg != "" {
			violations++
			t.Error(msg)
		}
		if len(res.Diverged) > 0 {
			violations++
			t.Errorf("history %d (seed %d): replicas diverged: %v", h, s, res.Diverged)
		}
	}
	t.Logf("chaos: %d histories, %d faults %v, %d operations (%d ambiguous, %d failed writes left out), rebalancing (%s): %d replica moves, %d lease transfers; %d violations",
		histories, faults, kinds, ops, ambiguous, failedWrites, orDefault(rebalanceSetting), moves, transfers, violations)
	r := txnTotals
	t.Logf("chaos: txns: bank transfers %d committed, %d aborted, %d retried, %d ambiguous; %d bank checks; validator %d ops (%d txns); %d txn violations",
		r.TxnCommitted, r.TxnAborted, r.TxnRetried, r.TxnAmbiguous, r.BankChecks, r.ValidatorOps, r.ValidatorTxns, len(r.TxnViolations))
}

// addTxnTotals adds a history's transaction counts to sum.
func addTxnTotals(sum *Result, r *Result) {
	sum.TxnCommitted += r.TxnCommitted
	sum.TxnAborted += r.TxnAborted
	sum.TxnRetried += r.TxnRetried
	sum.TxnAmbiguous += r.TxnAmbiguous
	sum.BankChecks += r.BankChecks
	sum.ValidatorOps += r.ValidatorOps
	sum.ValidatorTxns += r.ValidatorTxns
	sum.TxnViolations = append(sum.TxnViolations, r.TxnViolations...)
}

// txnFailure is the error of a history whose transactions violate
// txncheck (its violations, one a line, and where the report is), or ""
// if there are none.
func txnFailure(res *Result, seed int64) string {
	if len(res.TxnViolations) == 0 {
		return ""
	}
	return fmt.Sprintf("seed %d: the transactional history has violations (report: %s):\n  %s",
		seed, orNone(res.TxnReport), strings.Join(res.TxnViolations, "\n  "))
}

func orNone(path string) string {
	if path == "" {
		return "not saved"
	}
	return path
}

// orDefault names an unset rebalance setting.
func orDefault(setting string) string {
	if setting == "" {
		return RebalanceDefault
	}
	return setting
}

// TestSplitsUnderLoad (issue 4, acceptance 1): a loader fills ranges of at
// most 64 KiB so they split at least 20 times while porcupine clients
// read, write and CAS keys in those ranges, with lease transfers and
// restarts injected; the history must be linearizable and every loaded
// key must read back through every node.
func TestSplitsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a while")
	}
	seed := int64(envInt("CHAOS_SEED", int(time.Now().UnixNano()%1_000_000)))
	out := os.Getenv("CHAOS_OUT")
	if out == "" {
		out = "chaos-failures"
	}
	// 30 s of load, longer (up to 90 s) until 20 splits happened: a CI run
	// (two packages' clusters sharing two cores, and restarts that now drain
	// their leases first) got only 19 splits in 20 s, and one beside a
	// second CI run only 18 in 30 s.
	// Many keys over the whole keyspace: ranges split under each of them,
	// and porcupine checks each key's history separately (small partitions
	// keep the check fast on two loaded cores).
	var ks []string
	for _, c := range "0369CFILORUXadgjmpsvy" {
		ks = append(ks, string(c)+"k")
	}
	res, err := RunHistory(context.Background(), Options{Duration: envDuration("CHAOS_DURATION", 30*time.Second), Seed: seed,
		Mode: ModeInProcess, Keys: ks, Faults: []string{FaultTransfer, FaultRestart}, RangeMaxBytes: 64 << 10, MinSplits: 20, OutDir: out, Logf: t.Logf})
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	splits := res.RangesAfter - res.RangesBefore
	t.Logf("seed %d: %d ops (%d ambiguous), faults %v; %d splits (%d -> %d ranges); %d loaded keys, %d wrong; linearizable=%v",
		seed, res.Ops, res.Ambiguous, res.Faults, splits, res.RangesBefore, res.RangesAfter, res.Loaded, res.LoadedWrong, res.Linearizable)
	if splits < 20 {
		t.Errorf("only %d splits happened, want >= 20", splits)
	}
	t.Logf("replica consistency: %d ranges compared, %d skipped, %d diverged", res.ConsistencyCompared, len(res.ConsistencySkipped), len(res.Diverged))
	if len(res.Diverged) > 0 {
		t.Errorf("seed %d: replicas diverged: %v", seed, res.Diverged)
	}
	if res.LoadedWrong > 0 {
		t.Errorf("%d of %d loaded keys read back wrong, e.g. %q", res.LoadedWrong, res.Loaded, res.WrongSamples)
	}
	if !res.Linearizable {
		t.Errorf("history (seed %d) is NOT linearizable: %s", seed, res.Visualization)
	}
}
