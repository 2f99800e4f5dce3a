package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos/txncheck"
	"github.com/rangestore/rangestore/client"
)

func TestTxnOutcomes(t *testing.T) {
	ambiguous := &client.Error{Code: client.Ambiguous}
	unavailable := &client.Error{Code: client.Unavailable}
	retry := &client.Error{Code: client.Retry}
	invalid := &client.Error{Code: client.InvalidArgument}
	deadline := &client.Error{Code: client.DeadlineExceeded}
	for _, c := range []struct {
		name      string
		got, want txncheck.Outcome
	}{
		{"ok", txnOutcome(nil, true), txncheck.OK},
		{"an error before the commit", txnOutcome(ambiguous, false), txncheck.Failed},
		{"commit ambiguous", txnOutcome(ambiguous, true), txncheck.Ambiguous},
		{"commit deadline", txnOutcome(deadline, true), txncheck.Ambiguous},
		{"commit unavailable", txnOutcome(unavailable, true), txncheck.Failed},
		{"commit retry", txnOutcome(retry, true), txncheck.Failed},
		{"commit invalid", txnOutcome(invalid, true), txncheck.Failed},
		{"commit unclassified", txnOutcome(errors.New("x"), true), txncheck.Ambiguous},
		{"put unavailable", plainWriteOutcome(unavailable), txncheck.Failed},
		{"put deadline", plainWriteOutcome(deadline), txncheck.Ambiguous},
		{"batch unavailable: another range's part may have applied", batchOutcome(unavailable), txncheck.Ambiguous},
		{"batch invalid", batchOutcome(invalid), txncheck.Failed},
		{"batch ok", batchOutcome(nil), txncheck.OK},
	} {
		if c.got != c.want {
			t.Errorf("%s: %s, want %s", c.name, c.got, c.want)
		}
	}
}

func TestTxnSplitKeys(t *testing.T) {
	ks := txnSplitKeys()
	if !slices.IsSorted(ks) {
		t.Errorf("split keys out of order: %q", ks)
	}
	accountRanges := 0
	for _, k := range ks {
		if k >= bankPrefix && k < bankEnd {
			accountRanges++
		}
	}
	if accountRanges < 11 {
		t.Errorf("the accounts span %d ranges; want at least 11 (10 after a merge)", accountRanges)
	}
	for _, k := range append(append([]string(nil), DefaultKeys...), txnFaultKeys...) {
		if (k >= valPrefix && k < valEnd) == (k >= bankPrefix && k < bankEnd) && !slices.Contains(DefaultKeys, k) {
			t.Errorf("fault key %q is in neither workload prefix", k)
		}
		if slices.Contains(DefaultKeys, k) && ((k >= valPrefix && k < valEnd) || (k >= bankPrefix && k < bankEnd)) {
			t.Errorf("porcupine key %q is in a workload prefix", k)
		}
	}
}

// TestTxnReportFailsHistory feeds a history and its dump through the
// reporting path of RunHistory and TestChaos (judgeTxns, applyTxnReport,
// txnFailure): clean, it passes; with one read made stale or one bank
// snapshot forged, it fails, naming the violation and saving the report.
func TestTxnReportFailsHistory(t *testing.T) {
	ts := func(w int64) txncheck.Timestamp { return txncheck.Timestamp{WallTime: w} }
	accounts := func() []txncheck.Step {
		var out []txncheck.Step
		for i := 0; i < bankAccounts; i++ {
			out = append(out, txncheck.Step{Kind: txncheck.StepPut, Key: bankKey(i), Value: "100:init-" + bankKey(i), Timestamp: ts(10)})
		}
		return out
	}
	snapshot := func(vals map[string]string) []txncheck.Step {
		s := txncheck.Step{Kind: txncheck.StepScan, Key: bankPrefix, EndKey: bankEnd}
		for i := 0; i < bankAccounts; i++ {
			k := bankKey(i)
			v := "100:init-" + k
			if x, ok := vals[k]; ok {
				v = x
			}
			s.Rows = append(s.Rows, txncheck.KeyValue{Key: k, Value: v})
		}
		return []txncheck.Step{s}
	}
	get := func(k, v string) txncheck.Step {
		return txncheck.Step{Kind: txncheck.StepGet, Key: k, Found: true, Value: v}
	}
	put := func(k, v string) txncheck.Step { return txncheck.Step{Kind: txncheck.StepPut, Key: k, Value: v} }
	a, b := bankKey(3), bankKey(70)
	history := func() txncheck.History {
		return txncheck.History{
			{ID: 1, Client: 300, Kind: txncheck.KindBatch, Invoke: 0, Complete: 5, Steps: accounts(), Outcome: txncheck.OK},
			{ID: 2, Client: 100, Kind: txncheck.KindTxn, Invoke: 10, Complete: 20, CommitTS: ts(30), Outcome: txncheck.OK,
				Steps: []txncheck.Step{get(a, "100:init-"+a), get(b, "100:init-"+b), put(a, "90:b0-0-1"), put(b, "110:b0-0-1")}},
			{ID: 3, Client: 200, Kind: txncheck.KindTxn, Invoke: 25, Complete: 40, ReadTS: ts(35), Outcome: txncheck.OK,
				Steps: snapshot(map[string]string{a: "90:b0-0-1", b: "110:b0-0-1"})},
			{ID: 4, Client: 1, Kind: txncheck.KindPut, Invoke: 41, Complete: 45, CommitTS: ts(42), Outcome: txncheck.OK,
				Steps: []txncheck.Step{put(valKey(1), "w1-0")}},
			{ID: 5, Client: 2, Kind: txncheck.KindGet, Invoke: 46, Complete: 48, Outcome: txncheck.OK,
				Steps: []txncheck.Step{get(valKey(1), "w1-0")}},
		}
	}
	var dump txncheck.Dump
	for i := 0; i < bankAccounts; i++ {
		dump = append(dump, txncheck.Version{Key: bankKey(i), Timestamp: ts(10), Value: "100:init-" + bankKey(i)})
	}
	dump = append(dump, txncheck.Version{Key: a, Timestamp: ts(30), Value: "90:b0-0-1"}, txncheck.Version{Key: b, Timestamp: ts(30), Value: "110:b0-0-1"},
		txncheck.Version{Key: valKey(1), Timestamp: ts(42), Value: "w1-0"})

	dir := t.TempDir()
	run := func(h txncheck.History) *Result {
		t.Helper()
		report, err := judgeTxns(h, dump)
		if err != nil {
			t.Fatal(err)
		}
		res := &Result{}
		applyTxnReport(res, report, h, map[int]string{3: "client: txn: an error the op ended with"}, dir, 42)
		return res
	}
	if res := run(history()); len(res.TxnViolations) > 0 || txnFailure(res, 42) != "" || res.TxnReport != "" {
		t.Fatalf("a valid history fails: %v", res.TxnViolations)
	}

	// The snapshot saw a's version before the transfer and b's after:
	// read skew, and the bank's sum is off by 10.
	h := history()
	h[2].Steps = snapshot(map[string]string{b: "110:b0-0-1"})
	res := run(h)
	msg := txnFailure(res, 42)
	for _, want := range []string{string(txncheck.ReadSkew), string(txncheck.BankSum), "op 3 read bank/003=100:init-bank/003"} {
		if !strings.Contains(msg, want) && !strings.Contains(strings.Join(res.TxnViolations, "\n"), want) {
			t.Errorf("failure does not mention %q:\n%s", want, msg)
		}
	}
	body, err := os.ReadFile(res.TxnReport)
	if err != nil {
		t.Fatalf("the report was not saved: %v", err)
	}
	if !strings.Contains(string(body), "op 3 client 200 txn OK") || !strings.Contains(string(body), "error: client: txn: an error") {
		t.Errorf("the report does not describe op 3 and its error:\n%s", body)
	}

	// A non-transactional get that missed a put completed before it began.
	h = history()
	h[4].Steps = []txncheck.Step{{Kind: txncheck.StepGet, Key: valKey(1)}}
	if res := run(h); !strings.Contains(txnFailure(res, 42), string(txncheck.RealTime)) {
		t.Errorf("a stale get passes: %v", res.TxnViolations)
	}
}

// TestTxnWorkload runs the transactional workload on an in-process
// cluster without faults for a few seconds and checks it: no violation,
// transfers and snapshots committed, ranges split; then the same dump
// with one recorded read moved to an older version of its key fails.
func TestTxnWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ctx := context.Background()
	tgt, err := newInProcTarget(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.close()
	before := len(tgt.merger.ranges)
	w, err := newTxnWork(ctx, tgt, tgt.tracker(), 7, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if got := len(tgt.merger.ranges) - before; got != len(txnSplitKeys()) {
		t.Errorf("the tracker gained %d ranges, want %d", got, len(txnSplitKeys()))
	}
	w.run(ctx)
	if err := waitOrDone(ctx, nil, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	res := &Result{}
	if err := w.finish(ctx, tgt, res, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Logf("transfers %d committed, %d skipped, %d aborted, %d ambiguous, %d retried; %d bank checks; validator %d ops (%d txns); %d versions",
		res.TxnCommitted, res.TxnSkipped, res.TxnAborted, res.TxnAmbiguous, res.TxnRetried, res.BankChecks, res.ValidatorOps, res.ValidatorTxns, res.TxnVersions)
	var checkTimes []string
	for _, op := range w.history {
		if op.Client == 200 {
			checkTimes = append(checkTimes, fmt.Sprintf("%s:%v", op.Outcome, time.Duration(op.Complete-op.Invoke).Round(time.Millisecond)))
		}
	}
	t.Logf("bank checks: %v", checkTimes)
	if len(res.TxnViolations) > 0 {
		t.Fatalf("violations without faults:\n%s", strings.Join(res.TxnViolations, "\n"))
	}
	if res.TxnCommitted == 0 || res.BankChecks == 0 || res.ValidatorTxns == 0 || res.TxnVersions < bankAccounts {
		t.Fatalf("too little happened: %+v", res)
	}

	// Corrupt one OK transactional read: it saw the version below the one
	// it read.
	h := append(txncheck.History(nil), w.history...)
	older := map[string]string{} // value -> the value of the version below it
	for _, k := range sortedKeys(w.dumped) {
		var vs []txncheck.Version
		for _, v := range w.dumped {
			if v.Key == k && !v.Deleted {
				vs = append(vs, v)
			}
		}
		slices.SortFunc(vs, func(x, y txncheck.Version) int {
			if x.Timestamp.Less(y.Timestamp) {
				return -1
			}
			return 1
		})
		for i := 1; i < len(vs); i++ {
			older[vs[i].Value] = vs[i-1].Value
		}
	}
	corrupted := -1
	for i := range h {
		if h[i].Kind != txncheck.KindTxn || h[i].Outcome != txncheck.OK {
			continue
		}
		for j, s := range h[i].Steps {
			if s.Kind == txncheck.StepGet && s.Found && older[s.Value] != "" {
				steps := slices.Clone(h[i].Steps)
				steps[j].Value = older[s.Value]
				h[i].Steps, corrupted = steps, h[i].ID
				break
			}
		}
		if corrupted >= 0 {
			break
		}
	}
	if corrupted < 0 {
		t.Fatal("no transactional read of an overwritten version to corrupt")
	}
	report, err := judgeTxns(h, w.dumped)
	if err != nil {
		t.Fatal(err)
	}
	if report.OK() || !slices.Contains(report.Ops, corrupted) {
		t.Fatalf("the corrupted read of op %d passes:\n%s", corrupted, report)
	}
	t.Logf("corrupted op %d: %s", corrupted, report.Violations[0])
}

func sortedKeys(d txncheck.Dump) []string {
	var out []string
	for _, v := range d {
		if !slices.Contains(out, v.Key) {
			out = append(out, v.Key)
		}
	}
	slices.Sort(out)
	return out
}
