package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/rangestore/rangestore/chaos/txncheck"
	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/proto/rspb"
)

// The transactional workload of a history (Options.Txns; doc.go,
// "Transactions"): a bank and kvnemesis-style validator clients, on key
// prefixes of their own, recorded as one txncheck.History and checked
// against every MVCC version of those prefixes after the faults are
// undone.

// Key spaces of the workload, apart from the porcupine clients' keys.
const (
	valPrefix, valEnd   = "T/", "T0"       // the validator's keys T/00..T/39
	bankPrefix, bankEnd = "bank/", "bank0" // the accounts bank/000..bank/099
	valKeys             = 40
	bankAccounts        = 100
	bankInitial         = 100
	valClients          = 4
	bankWorkers         = 4
	// bankCheckEvery: how often the checker reads every account.
	bankCheckEvery = 100 * time.Millisecond
	// txnOpTimeout bounds one DB.Txn call (retries included), plainOpTimeout
	// one non-transactional call: long enough to outlast an abandoned
	// coordinator's expiry (5 s) plus a kill -9 failover.
	txnOpTimeout   = 10 * time.Second
	plainOpTimeout = 5 * time.Second
	// openTxnWait bounds the wait, after the clients stopped, for the
	// nodes to coordinate no open transaction (a transaction whose
	// rollback did not arrive stays open until its idle timeout); intents
	// left then are pushed by the resolving read before the dump.
	openTxnWait = 15 * time.Second
	// dumpWait bounds the dump's attempts (each resolving intents first).
	dumpWait = 60 * time.Second
	// maxViolationLines bounds Result.TxnViolations (the report file has
	// them all).
	maxViolationLines = 50
)

func valKey(i int) string  { return fmt.Sprintf("T/%02d", i) }
func bankKey(i int) string { return fmt.Sprintf("bank/%03d", i) }

// txnSplitKeys split the workload's prefixes off the porcupine clients'
// ranges and into ranges of their own: the validator's 40 keys over 5
// ranges, the 100 accounts over 13 (so a merge fault leaves at least 12).
func txnSplitKeys() []string {
	out := []string{valPrefix}
	for i := 8; i < valKeys; i += 8 {
		out = append(out, valKey(i))
	}
	out = append(out, valEnd, bankPrefix)
	for i := 8; i < bankAccounts; i += 8 {
		out = append(out, bankKey(i))
	}
	return append(out, bankEnd)
}

// txnFaultKeys are added to the keys whose ranges the faults pick
// (merges, transfers, replica changes, the leaseholders that are stopped,
// partitioned or killed), so that faults hit the workload's ranges too.
var txnFaultKeys = []string{valKey(4), valKey(20), bankKey(4), bankKey(44), bankKey(84)}

// balanceOf decodes an account value "<balance>:<tag>" (the tag makes it
// unique in the history).
func balanceOf(v string) (int64, error) {
	n, _, ok := strings.Cut(v, ":")
	if !ok {
		return 0, fmt.Errorf("account value %q: want <balance>:<tag>", v)
	}
	return strconv.ParseInt(n, 10, 64)
}

func bankSpec() txncheck.Bank {
	b := txncheck.Bank{Total: bankAccounts * bankInitial, Balance: balanceOf}
	for i := 0; i < bankAccounts; i++ {
		b.Accounts = append(b.Accounts, bankKey(i))
	}
	return b
}

func tsOf(t client.Timestamp) txncheck.Timestamp {
	return txncheck.Timestamp{WallTime: t.WallTime, Logical: t.Logical}
}

// Outcomes of client errors (doc.go, "Transactions").

// plainWriteOutcome: a single-key write, as for the porcupine clients
// (dbWriteNotApplied).
func plainWriteOutcome(err error) txncheck.Outcome {
	switch {
	case err == nil:
		return txncheck.OK
	case dbWriteNotApplied(err):
		return txncheck.Failed
	}
	return txncheck.Ambiguous
}

// batchOutcome: a non-transactional batch is one command per range and
// its error is one range part's, so a failure may hide parts that
// applied: only InvalidArgument (refused before anything was sent) is
// FAILED.
func batchOutcome(err error) txncheck.Outcome {
	e, ok := errors.AsType[*client.Error](err)
	switch {
	case err == nil:
		return txncheck.OK
	case ok && e.Code == client.InvalidArgument:
		return txncheck.Failed
	}
	return txncheck.Ambiguous
}

// txnOutcome: DB.Txn's error. committing says the last run's function
// returned nil, so the error is its commit's; an error before that is
// FAILED whatever its code (no commit was sent: the coordinator commits
// only on CommitTxn). A commit's Retry (aborted, or the retries ran out),
// InvalidArgument and Unavailable (the client's word that nothing
// applied) are FAILED; anything else (Ambiguous, DeadlineExceeded,
// Canceled, Closed, Unknown, Internal, ...) is AMBIGUOUS.
func txnOutcome(err error, committing bool) txncheck.Outcome {
	if err == nil {
		return txncheck.OK
	}
	if !committing {
		return txncheck.Failed
	}
	if e, ok := errors.AsType[*client.Error](err); ok {
		switch e.Code {
		case client.Retry, client.InvalidArgument, client.Unavailable:
			return txncheck.Failed
		}
	}
	return txncheck.Ambiguous
}

// recorder collects the history: ops get IDs in the order they complete;
// times are nanoseconds since origin.
type recorder struct {
	origin time.Time
	mu     sync.Mutex
	h      txncheck.History
	errs   map[int]string // op ID -> the client error it ended with
	// seen is the newest version timestamp a read returned (a version of
	// an AMBIGUOUS write, whose timestamp the history does not hold, may
	// be above the local clock): the dump reads above it.
	seen txncheck.Timestamp
}

// saw notes the timestamps of the versions a read returned.
func (r *recorder) saw(kvs ...client.KeyValue) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, kv := range kvs {
		if t := tsOf(kv.Timestamp); r.seen.Less(t) {
			r.seen = t
		}
	}
}

func (r *recorder) now() int64 { return time.Since(r.origin).Nanoseconds() }

func (r *recorder) add(op txncheck.Op, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.ID = len(r.h) + 1
	r.h = append(r.h, op)
	if err != nil {
		r.errs[op.ID] = err.Error()
	}
}

// txnWork is the transactional workload of one history. Its goroutines
// (bank workers, the checker, validator clients) run from run until stop;
// close closes its client.DBs.
type txnWork struct {
	rec     recorder
	seed    int64
	bankDBs []*client.DB
	valDBs  []*client.DB
	logf    func(format string, args ...any)

	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	// history and dumped are what finish judged (for tests).
	history txncheck.History
	dumped  txncheck.Dump

	mu                                             sync.Mutex
	committed, skipped, aborted, ambiguous, checks int
	valOps, valTxns, failedReads, failedBankChecks int
	unavailableCommits                             int
	earlierRuns                                    []string // what runs DB.Txn ran again wrote (runRec.earlier)
}

// newTxnWork opens the workload's client.DBs, splits its key spaces into
// ranges (recording them in m, the tracker the faults pick ranges from)
// and writes the initial balances.
func newTxnWork(ctx context.Context, tgt target, m *merger, seed int64, logf func(string, ...any)) (*txnWork, error) {
	w := &txnWork{rec: recorder{origin: time.Now(), errs: map[int]string{}}, seed: seed, logf: logf, done: make(chan struct{})}
	open := OpenDBs(tgt.clientAddrs(), tgt.clientOptions()...)
	octx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i := 0; i < bankWorkers+1+valClients; i++ {
		db, err := open(octx, i)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("chaos: txn workload: %w", err)
		}
		if i <= bankWorkers {
			w.bankDBs = append(w.bankDBs, db) // the workers', then the checker's
		} else {
			w.valDBs = append(w.valDBs, db)
		}
	}
	if err := splitTxnRanges(octx, tgt, m); err != nil {
		w.close()
		return nil, err
	}
	if err := w.initBank(octx); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// splitTxnRanges splits at txnSplitKeys through the nodes' Admin services.
func splitTxnRanges(ctx context.Context, tgt target, m *merger) error {
	for _, k := range txnSplitKeys() {
		var err error
		for attempt := 0; ; attempt++ {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var r *rspb.SplitRangeResponse
			r, err = rspb.NewAdminClient(tgt.Conn(attempt%tgt.NumNodes())).SplitRange(sctx, &rspb.SplitRangeRequest{Key: []byte(k)})
			cancel()
			if err == nil {
				m.replace(r.Left, r.Right)
				break
			}
			if attempt >= 9 || waitOrDone(ctx, nil, 200*time.Millisecond) != nil {
				return fmt.Errorf("chaos: txn workload: split at %q: %w", k, err)
			}
		}
	}
	return nil
}

// waitOrDone waits d, or until done is closed or ctx ends (an error).
func waitOrDone(ctx context.Context, done <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-done:
		return errors.New("stopped")
	case <-t.C:
		return nil
	}
}

// initBank writes every account's initial balance in one
// non-transactional batch (atomic per range), again with new values until
// one attempt is OK; every attempt is recorded.
func (w *txnWork) initBank(ctx context.Context) error {
	var last error
	for attempt := 0; attempt < 10; attempt++ {
		b := new(client.Batch)
		op := txncheck.Op{Client: 300, Kind: txncheck.KindBatch, Invoke: w.rec.now()}
		for i := 0; i < bankAccounts; i++ {
			v := fmt.Sprintf("%d:init-%d-%d", bankInitial, i, attempt)
			b.Put([]byte(bankKey(i)), []byte(v))
			op.Steps = append(op.Steps, txncheck.Step{Kind: txncheck.StepPut, Key: bankKey(i), Value: v})
		}
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := w.bankDBs[0].Batch(bctx, b)
		cancel()
		op.Complete, op.Outcome = w.rec.now(), batchOutcome(err)
		for i := range res {
			op.Steps[i].Timestamp = tsOf(res[i].Timestamp)
		}
		w.rec.add(op, err)
		if err == nil {
			return nil
		}
		last = err
	}
	return fmt.Errorf("chaos: txn workload: writing the initial balances: %w", last)
}

// run starts the workload's goroutines.
func (w *txnWork) run(ctx context.Context) {
	for i := 0; i < bankWorkers; i++ {
		w.wg.Go(func() { w.bankWorker(ctx, i) })
	}
	w.wg.Go(func() { w.bankChecker(ctx) })
	for c := 0; c < valClients; c++ {
		w.wg.Go(func() { w.validatorClient(ctx, c) })
	}
}

// stop stops the goroutines and waits for them (idempotent).
func (w *txnWork) stop() {
	w.stopOnce.Do(func() { close(w.done) })
	w.wg.Wait()
}

// close stops the workload and closes its DBs.
func (w *txnWork) close() {
	w.stop()
	for _, db := range append(append([]*client.DB(nil), w.bankDBs...), w.valDBs...) {
		db.Close()
	}
}

func (w *txnWork) stopped() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// runRec records one run of a transaction's function: DB.Txn may run it
// several times, and only the last run counts.
type runRec struct {
	steps      []txncheck.Step
	committing bool // the function returned nil: an error is the commit's
	attempt    int
	// earlier: what each earlier run wrote and how it ended, for a report
	// that finds one of its values (a run DB.Txn ran again must have left
	// nothing).
	earlier []string
}

func (r *runRec) begin() {
	if r.attempt > 0 {
		how := "its function failed with a retryable error"
		if r.committing {
			how = "it reached the commit, which answered Retry"
		}
		for _, s := range r.steps {
			if s.Kind == txncheck.StepPut {
				r.earlier = append(r.earlier, fmt.Sprintf("%s=%s: run %d, %s", s.Key, s.Value, r.attempt, how))
			}
		}
	}
	r.steps, r.committing = nil, false
	r.attempt++
}

func (r *runRec) gets(rec *recorder, keys []string, res []client.Result) {
	for i, k := range keys {
		rec.saw(res[i].KV)
		s := txncheck.Step{Kind: txncheck.StepGet, Key: k, Found: res[i].Found}
		if res[i].Found {
			s.Value = string(res[i].KV.Value)
		}
		r.steps = append(r.steps, s)
	}
}

// txnOp records a finished DB.Txn as an op (none if it ran no step: it
// failed before its function did anything).
func (w *txnWork) txnOp(clientID int, invoke int64, run *runRec, ts client.Timestamp, err error) txncheck.Outcome {
	out := txnOutcome(err, run.committing)
	if e, ok := errors.AsType[*client.Error](err); ok && run.committing && e.Code == client.Unavailable {
		w.mu.Lock()
		w.unavailableCommits++
		w.mu.Unlock()
	}
	if len(run.steps) == 0 {
		return out
	}
	if len(run.earlier) > 0 {
		w.mu.Lock()
		w.earlierRuns = append(w.earlierRuns, run.earlier...)
		w.mu.Unlock()
	}
	op := txncheck.Op{Client: clientID, Kind: txncheck.KindTxn, Invoke: invoke, Complete: w.rec.now(), Steps: run.steps, Outcome: out}
	writes := false
	for _, s := range run.steps {
		writes = writes || s.Kind == txncheck.StepPut || s.Kind == txncheck.StepDelete
	}
	if out == txncheck.OK {
		// A read-only transaction commits at its read timestamp: DB.Txn
		// returns it. A writer's reads hold at its commit timestamp.
		if writes {
			op.CommitTS = tsOf(ts)
		} else {
			op.ReadTS = tsOf(ts)
		}
	}
	w.rec.add(op, err)
	return out
}

// bankWorker transfers random amounts between random accounts until stop.
func (w *txnWork) bankWorker(ctx context.Context, i int) {
	db := w.bankDBs[i]
	rng := rand.New(rand.NewSource(w.seed*1000 + 500 + int64(i)))
	for seq := 0; !w.stopped(); seq++ {
		from, to := rng.Intn(bankAccounts), rng.Intn(bankAccounts-1)
		if to >= from {
			to++
		}
		amount := int64(1 + rng.Intn(20))
		kf, kt := bankKey(from), bankKey(to)
		var run runRec
		wrote := false
		invoke := w.rec.now()
		tctx, cancel := context.WithTimeout(ctx, txnOpTimeout)
		ts, err := db.Txn(tctx, func(ctx context.Context, txn *client.Txn) error {
			run.begin()
			wrote = false
			res, err := txn.Batch(ctx, new(client.Batch).Get([]byte(kf)).Get([]byte(kt)))
			if err != nil {
				return err
			}
			run.gets(&w.rec, []string{kf, kt}, res)
			bal := [2]int64{}
			for j := range res {
				if res[j].Found {
					if bal[j], err = balanceOf(string(res[j].KV.Value)); err != nil {
						return err
					}
				}
			}
			if bal[0] < amount {
				run.committing = true
				return nil // the source is short: nothing to do
			}
			vf := fmt.Sprintf("%d:b%d-%d-%d-from", bal[0]-amount, i, seq, run.attempt)
			vt := fmt.Sprintf("%d:b%d-%d-%d-to", bal[1]+amount, i, seq, run.attempt)
			run.steps = append(run.steps, txncheck.Step{Kind: txncheck.StepPut, Key: kf, Value: vf},
				txncheck.Step{Kind: txncheck.StepPut, Key: kt, Value: vt})
			wrote = true
			if _, err := txn.Batch(ctx, new(client.Batch).Put([]byte(kf), []byte(vf)).Put([]byte(kt), []byte(vt))); err != nil {
				return err
			}
			run.committing = true
			return nil
		})
		cancel()
		out := w.txnOp(100+i, invoke, &run, ts, err)
		w.mu.Lock()
		switch {
		case out == txncheck.OK && wrote:
			w.committed++
		case out == txncheck.OK:
			w.skipped++
		case out == txncheck.Failed:
			w.aborted++
		default:
			w.ambiguous++
		}
		w.mu.Unlock()
		if err != nil {
			_ = waitOrDone(ctx, w.done, 20*time.Millisecond) // a real client backs off too
		}
	}
}

// bankChecker starts a read of every account in one read-only
// transaction every bankCheckEvery, alternately by a scan and by a batch
// of gets. A snapshot meets the transfers' intents and uncertain values
// and takes several times that (pushes, refreshes), so up to
// maxBankChecks run at once; a tick finding them all busy is skipped.
func (w *txnWork) bankChecker(ctx context.Context) {
	slots := make(chan struct{}, maxBankChecks)
	var checks sync.WaitGroup
	defer checks.Wait()
	for n := 0; waitOrDone(ctx, w.done, bankCheckEvery) == nil; n++ {
		select {
		case slots <- struct{}{}:
		default:
			continue
		}
		checks.Go(func() {
			defer func() { <-slots }()
			w.bankCheck(ctx, n%2 == 0)
		})
	}
}

// maxBankChecks bounds the snapshots of all accounts in flight.
const maxBankChecks = 4

func (w *txnWork) bankCheck(ctx context.Context, scan bool) {
	db := w.bankDBs[bankWorkers]
	all := make([]string, bankAccounts)
	b := new(client.Batch)
	for i := range all {
		all[i] = bankKey(i)
		b.Get([]byte(all[i]))
	}
	var run runRec
	invoke := w.rec.now()
	tctx, cancel := context.WithTimeout(ctx, txnOpTimeout)
	ts, err := db.Txn(tctx, func(ctx context.Context, txn *client.Txn) error {
		run.begin()
		if scan {
			rows, err := txn.Scan(ctx, []byte(bankPrefix), []byte(bankEnd), 0)
			if err != nil {
				return err
			}
			w.rec.saw(rows...)
			s := txncheck.Step{Kind: txncheck.StepScan, Key: bankPrefix, EndKey: bankEnd}
			for _, r := range rows {
				s.Rows = append(s.Rows, txncheck.KeyValue{Key: string(r.Key), Value: string(r.Value)})
			}
			run.steps = append(run.steps, s)
		} else {
			res, err := txn.Batch(ctx, b)
			if err != nil {
				return err
			}
			run.gets(&w.rec, all, res)
		}
		run.committing = true
		return nil
	})
	cancel()
	out := w.txnOp(200, invoke, &run, ts, err)
	w.mu.Lock()
	if out == txncheck.OK {
		w.checks++
	} else {
		w.failedBankChecks++
	}
	w.mu.Unlock()
}

// validatorClient issues random ops on the validator's keys until stop:
// gets, puts, non-transactional batches and multi-range transactions
// (reads, then writes of unique values "w<client>-<seq>-<run>-<i>").
func (w *txnWork) validatorClient(ctx context.Context, c int) {
	db := w.valDBs[c]
	rng := rand.New(rand.NewSource(w.seed*1000 + 700 + int64(c)))
	distinct := func(n int) []string {
		var out []string
		for _, i := range rng.Perm(valKeys)[:n] {
			out = append(out, valKey(i))
		}
		return out
	}
	for seq := 0; !w.stopped(); seq++ {
		var err error
		switch p := rng.Intn(20); {
		case p < 4:
			err = w.valGet(ctx, db, c, valKey(rng.Intn(valKeys)))
		case p < 7:
			err = w.valPut(ctx, db, c, valKey(rng.Intn(valKeys)), fmt.Sprintf("w%d-%d", c, seq))
		case p < 10:
			keys := distinct(2 + rng.Intn(3))
			puts := make([]bool, len(keys))
			for i := range puts {
				puts[i] = rng.Intn(2) == 0
			}
			err = w.valBatch(ctx, db, c, seq, keys, puts, false)
		case p < 13:
			keys := distinct(2 + rng.Intn(3))
			puts := make([]bool, len(keys))
			for i := range puts {
				puts[i] = i == 0 || rng.Intn(4) != 0
			}
			rng.Shuffle(len(puts), func(i, j int) { puts[i], puts[j] = puts[j], puts[i] })
			err = w.valBatch(ctx, db, c, seq, keys, puts, true)
		default:
			plan := txnPlan{keys: distinct(2 + rng.Intn(3)), readOnly: rng.Intn(6) == 0, ryw: rng.Intn(5) == 0}
			if rng.Intn(4) == 0 {
				lo := rng.Intn(valKeys - 3)
				plan.scan = [2]string{valKey(lo), valKey(min(valKeys, lo+3+rng.Intn(4)))} // T/40: past the last key
			}
			if !plan.readOnly {
				plan.writes = 1 + rng.Intn(len(plan.keys))
				for i := 1; i < plan.writes; i++ {
					plan.dels = append(plan.dels, rng.Intn(8) == 0)
				}
			}
			err = w.valTxn(ctx, db, c, seq, plan)
		}
		if err != nil {
			_ = waitOrDone(ctx, w.done, 20*time.Millisecond)
		}
	}
}

func (w *txnWork) countVal(txn bool) {
	w.mu.Lock()
	w.valOps++
	if txn {
		w.valTxns++
	}
	w.mu.Unlock()
}

func (w *txnWork) valGet(ctx context.Context, db *client.DB, c int, k string) error {
	invoke := w.rec.now()
	octx, cancel := context.WithTimeout(ctx, plainOpTimeout)
	kv, err := db.Get(octx, []byte(k))
	cancel()
	s := txncheck.Step{Kind: txncheck.StepGet, Key: k}
	switch {
	case err == nil:
		s.Found, s.Value = true, string(kv.Value)
		w.rec.saw(kv)
	case errors.Is(err, client.ErrNotFound):
	default:
		w.mu.Lock()
		w.failedReads++ // no effect: left out
		w.mu.Unlock()
		return err
	}
	w.rec.add(txncheck.Op{Client: c, Kind: txncheck.KindGet, Invoke: invoke, Complete: w.rec.now(), Steps: []txncheck.Step{s}, Outcome: txncheck.OK}, nil)
	w.countVal(false)
	return nil
}

func (w *txnWork) valPut(ctx context.Context, db *client.DB, c int, k, v string) error {
	invoke := w.rec.now()
	octx, cancel := context.WithTimeout(ctx, plainOpTimeout)
	wr, err := db.Put(octx, []byte(k), []byte(v))
	cancel()
	op := txncheck.Op{Client: c, Kind: txncheck.KindPut, Invoke: invoke, Complete: w.rec.now(),
		Steps: []txncheck.Step{{Kind: txncheck.StepPut, Key: k, Value: v}}, Outcome: plainWriteOutcome(err)}
	if err == nil {
		op.CommitTS = tsOf(wr.Timestamp)
	}
	w.rec.add(op, err)
	w.countVal(false)
	return err
}

// valBatch runs a batch over distinct keys: puts where puts says so,
// gets elsewhere. A non-transactional batch (Batch) records each put at
// its own timestamp; a failed one keeps only its puts (its reads returned
// nothing), and one left with no step is left out. An atomic one
// (AtomicBatch: one transaction; all puts: a parallel commit) is recorded
// as a transaction whose reads hold at its commit timestamp, with the
// outcome of a DB.Txn commit.
func (w *txnWork) valBatch(ctx context.Context, db *client.DB, c, seq int, keys []string, puts []bool, atomic bool) error {
	tag, timeout, kind := "b", plainOpTimeout, txncheck.KindBatch
	if atomic {
		tag, timeout, kind = "a", txnOpTimeout, txncheck.KindTxn
	}
	b, steps := batchOf(c, seq, tag, keys, puts)
	invoke := w.rec.now()
	octx, cancel := context.WithTimeout(ctx, timeout)
	var res []client.Result
	var err error
	if atomic {
		res, err = db.AtomicBatch(octx, b)
	} else {
		res, err = db.Batch(octx, b)
	}
	cancel()
	op := txncheck.Op{Client: c, Kind: kind, Invoke: invoke, Complete: w.rec.now(), Outcome: batchOutcome(err)}
	if atomic {
		op.Outcome = txnOutcome(err, true)
	}
	for i, s := range steps {
		switch {
		case err == nil && s.Kind == txncheck.StepPut && atomic:
			op.CommitTS = tsOf(res[i].Timestamp)
		case err == nil && s.Kind == txncheck.StepPut:
			s.Timestamp = tsOf(res[i].Timestamp)
		case err == nil:
			s.Found = res[i].Found
			if s.Found {
				s.Value = string(res[i].KV.Value)
				w.rec.saw(res[i].KV)
			}
		case s.Kind != txncheck.StepPut:
			continue // a failed read returned nothing
		}
		op.Steps = append(op.Steps, s)
	}
	if len(op.Steps) == 0 {
		w.mu.Lock()
		w.failedReads++
		w.mu.Unlock()
		return err
	}
	w.rec.add(op, err)
	w.countVal(atomic)
	return err
}

// batchOf is a batch over distinct keys, puts (of the unique values
// "w<client>-<seq>-<tag><i>") where puts says so, gets elsewhere, and its
// steps.
func batchOf(c, seq int, tag string, keys []string, puts []bool) (*client.Batch, []txncheck.Step) {
	b := new(client.Batch)
	steps := make([]txncheck.Step, len(keys))
	for i, k := range keys {
		if puts[i] {
			steps[i] = txncheck.Step{Kind: txncheck.StepPut, Key: k, Value: fmt.Sprintf("w%d-%d-%s%d", c, seq, tag, i)}
			b.Put([]byte(k), []byte(steps[i].Value))
		} else {
			steps[i] = txncheck.Step{Kind: txncheck.StepGet, Key: k}
			b.Get([]byte(k))
		}
	}
	return b, steps
}

// txnPlan is one validator transaction, drawn before it runs (its runs
// differ only in the values they write).
type txnPlan struct {
	keys     []string  // read, then the first writes of them written
	scan     [2]string // a scan of [scan[0], scan[1]) first, if set
	readOnly bool
	writes   int
	dels     []bool // writes after the first (always a put): deletes?
	ryw      bool   // read the first written key again after writing
}

func (w *txnWork) valTxn(ctx context.Context, db *client.DB, c, seq int, p txnPlan) error {
	var run runRec
	invoke := w.rec.now()
	tctx, cancel := context.WithTimeout(ctx, txnOpTimeout)
	ts, err := db.Txn(tctx, func(ctx context.Context, txn *client.Txn) error {
		run.begin()
		if p.scan[0] != "" {
			rows, err := txn.Scan(ctx, []byte(p.scan[0]), []byte(p.scan[1]), 0)
			if err != nil {
				return err
			}
			w.rec.saw(rows...)
			s := txncheck.Step{Kind: txncheck.StepScan, Key: p.scan[0], EndKey: p.scan[1]}
			for _, r := range rows {
				s.Rows = append(s.Rows, txncheck.KeyValue{Key: string(r.Key), Value: string(r.Value)})
			}
			run.steps = append(run.steps, s)
		}
		rb := new(client.Batch)
		for _, k := range p.keys {
			rb.Get([]byte(k))
		}
		res, err := txn.Batch(ctx, rb)
		if err != nil {
			return err
		}
		run.gets(&w.rec, p.keys, res)
		if p.readOnly {
			run.committing = true
			return nil
		}
		wb := new(client.Batch)
		for i, k := range p.keys[:p.writes] {
			if i > 0 && p.dels[i-1] {
				wb.Delete([]byte(k))
				run.steps = append(run.steps, txncheck.Step{Kind: txncheck.StepDelete, Key: k})
				continue
			}
			v := fmt.Sprintf("w%d-%d-%d-%d", c, seq, run.attempt, i)
			wb.Put([]byte(k), []byte(v))
			run.steps = append(run.steps, txncheck.Step{Kind: txncheck.StepPut, Key: k, Value: v})
		}
		if _, err := txn.Batch(ctx, wb); err != nil {
			return err
		}
		if p.ryw {
			kv, err := txn.Get(ctx, []byte(p.keys[0]))
			s := txncheck.Step{Kind: txncheck.StepGet, Key: p.keys[0]}
			switch {
			case err == nil:
				s.Found, s.Value = true, string(kv.Value)
				w.rec.saw(kv)
			case !errors.Is(err, client.ErrNotFound):
				return err
			}
			run.steps = append(run.steps, s)
		}
		run.committing = true
		return nil
	})
	cancel()
	w.txnOp(c, invoke, &run, ts, err)
	w.countVal(true)
	return err
}

// finish runs after the faults are undone and the porcupine clients
// stopped: it stops the workload, waits for the nodes to have no open
// transaction, dumps every version of the workload's keys and checks the
// history against it, filling res (and saving a failing report under
// outDir).
func (w *txnWork) finish(ctx context.Context, tgt target, res *Result, outDir string) error {
	w.stop()
	w.mu.Lock()
	res.TxnCommitted, res.TxnSkipped, res.TxnAborted, res.TxnAmbiguous = w.committed, w.skipped, w.aborted, w.ambiguous
	res.BankChecks, res.BankChecksFailed = w.checks, w.failedBankChecks
	res.ValidatorOps, res.ValidatorTxns, res.TxnFailedReads = w.valOps, w.valTxns, w.failedReads
	res.TxnUnavailableCommits = w.unavailableCommits
	w.mu.Unlock()
	for _, db := range w.bankDBs {
		res.TxnRetried += int(db.Stats().TxnRetries)
	}
	for _, db := range w.valDBs {
		res.ValidatorRetried += int(db.Stats().TxnRetries)
	}
	if open, err := waitNoOpenTxns(ctx, tgt, openTxnWait); err != nil || open > 0 {
		w.logf("txns: %d transactions still open after %v (%v): their intents are pushed before the dump", open, openTxnWait, err)
	}
	w.rec.mu.Lock()
	h, seen := append(txncheck.History(nil), w.rec.h...), w.rec.seen
	w.rec.mu.Unlock()
	at := dumpTimestamp(h, seen)
	d, err := w.dump(ctx, tgt, at)
	var report *txncheck.Report
	if err != nil {
		// Intents that no push resolves within dumpWait, or a dump that
		// never succeeds: the history cannot be judged.
		report = &txncheck.Report{}
		report.Add(txncheck.Violation{Class: txncheck.LeftoverIntent, Reason: fmt.Sprintf("no dump of the workload's keys at %s within %v: %v", at, dumpWait, err)})
	} else if report, err = judgeTxns(h, d); err != nil {
		return err
	}
	w.history, w.dumped = h, d
	res.TxnVersions = len(d)
	res.TxnInferred = len(report.Inferred)
	if !report.OK() {
		// Name the earlier runs whose values the dump holds: a run that
		// DB.Txn ran again must have left nothing.
		w.mu.Lock()
		for _, e := range w.earlierRuns {
			for _, v := range d {
				if kv := v.Key + "=" + v.Value; len(e) > len(kv) && e[:len(kv)] == kv && e[len(kv)] == ':' {
					report.Add(txncheck.Violation{Class: txncheck.OrphanVersion, Reason: "written by an earlier run of a transaction: " + e})
				}
			}
		}
		w.mu.Unlock()
	}
	applyTxnReport(res, report, h, w.rec.errs, outDir, w.seed)
	return nil
}

// dumpTimestamp is the timestamp the dump reads at: above every timestamp
// the history holds (a commit on a node whose clock runs ahead may be
// above the local clock), every version a read returned (seen) and the
// local clock.
func dumpTimestamp(h txncheck.History, seen txncheck.Timestamp) txncheck.Timestamp {
	at := txncheck.Timestamp{WallTime: time.Now().UnixNano()}
	if at.Less(seen) {
		at = seen
	}
	bump := func(t txncheck.Timestamp) {
		if at.Less(t) {
			at = t
		}
	}
	for _, op := range h {
		bump(op.ReadTS)
		bump(op.CommitTS)
		for _, s := range op.Steps {
			bump(s.Timestamp)
		}
	}
	return txncheck.Timestamp{WallTime: at.WallTime + 1}
}

// judgeTxns checks the history against the dump: txncheck.Check and the
// bank's snapshots (CheckBank).
func judgeTxns(h txncheck.History, d txncheck.Dump) (*txncheck.Report, error) {
	report, err := txncheck.Check(h, d)
	if err != nil {
		return nil, fmt.Errorf("chaos: txncheck: %w", err)
	}
	bank, err := txncheck.CheckBank(h, bankSpec())
	if err != nil {
		return nil, fmt.Errorf("chaos: txncheck: %w", err)
	}
	report.Add(bank...)
	return report, nil
}

// applyTxnReport puts a report's violations into res (at most
// maxViolationLines of them) and, if there are any and outDir is set,
// saves the whole report with the ops it names under outDir
// (txn-seed<seed>.txt, next to porcupine's HTML).
func applyTxnReport(res *Result, report *txncheck.Report, h txncheck.History, errs map[int]string, outDir string, seed int64) {
	res.TxnViolations = nil
	for i, v := range report.Violations {
		if i == maxViolationLines {
			res.TxnViolations = append(res.TxnViolations, fmt.Sprintf("... and %d more (see the report)", len(report.Violations)-i))
			break
		}
		res.TxnViolations = append(res.TxnViolations, v.String())
	}
	if report.OK() || outDir == "" {
		return
	}
	_ = os.MkdirAll(outDir, 0o755)
	path := filepath.Join(outDir, fmt.Sprintf("txn-seed%d.txt", seed))
	f, err := os.Create(path)
	if err != nil {
		res.TxnViolations = append(res.TxnViolations, "saving the report: "+err.Error())
		return
	}
	defer func() { _ = f.Close() }()
	if err := writeTxnReport(f, report, h, errs, seed); err != nil {
		res.TxnViolations = append(res.TxnViolations, "saving the report: "+err.Error())
		return
	}
	res.TxnReport = path
}

// writeTxnReport writes the report, then every op it names, with the
// client error each ended with.
func writeTxnReport(out io.Writer, report *txncheck.Report, h txncheck.History, errs map[int]string, seed int64) error {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: transactional history of %d ops\n%s\nops named:\n", seed, len(h), report)
	byID := map[int]*txncheck.Op{}
	for i := range h {
		byID[h[i].ID] = &h[i]
	}
	for _, id := range report.Ops {
		if op := byID[id]; op != nil {
			b.WriteString(describeOp(op, errs[id]))
		}
	}
	_, err := io.WriteString(out, b.String())
	return err
}

func describeOp(op *txncheck.Op, err string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  op %d client %d %s %s invoke %d complete %d read %s commit %s\n", op.ID, op.Client, op.Kind, op.Outcome,
		op.Invoke, op.Complete, op.ReadTS, op.CommitTS)
	for i, s := range op.Steps {
		fmt.Fprintf(&b, "    %d: ", i)
		switch s.Kind {
		case txncheck.StepGet:
			if s.Found {
				fmt.Fprintf(&b, "get %s = %s", s.Key, s.Value)
			} else {
				fmt.Fprintf(&b, "get %s = <none>", s.Key)
			}
		case txncheck.StepScan:
			fmt.Fprintf(&b, "scan [%s, %s) =", s.Key, s.EndKey)
			for _, r := range s.Rows {
				fmt.Fprintf(&b, " %s=%s", r.Key, r.Value)
			}
		case txncheck.StepPut:
			fmt.Fprintf(&b, "put %s = %s", s.Key, s.Value)
		case txncheck.StepDelete:
			fmt.Fprintf(&b, "delete %s", s.Key)
		}
		if !s.Timestamp.IsZero() {
			fmt.Fprintf(&b, " @%s", s.Timestamp)
		}
		b.WriteString("\n")
	}
	if err != "" {
		fmt.Fprintf(&b, "    error: %s\n", err)
	}
	return b.String()
}

// waitNoOpenTxns waits until no node coordinates an open transaction (the
// rangestore_txn_open gauges sum to 0), for at most limit; it returns the
// last sum seen.
func waitNoOpenTxns(ctx context.Context, tgt target, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		n, err := openTxns(ctx, tgt)
		if (err == nil && n == 0) || time.Now().After(deadline) {
			return n, err
		}
		if werr := waitOrDone(ctx, nil, 200*time.Millisecond); werr != nil {
			return n, werr
		}
	}
}

// openTxnMetric is the gauge of the transactions a node coordinates.
const openTxnMetric = "rangestore_txn_open"

// openTxns sums the nodes' open transactions: from the in-process nodes'
// registries, or from the processes' /metrics.
func openTxns(ctx context.Context, tgt target) (int, error) {
	total := 0
	switch t := tgt.(type) {
	case *inProcTarget:
		for i := 0; i < t.NumNodes(); i++ {
			n := t.Node(i)
			if n == nil {
				continue
			}
			mfs, err := n.Registry().Gather()
			if err != nil {
				return 0, err
			}
			for _, mf := range mfs {
				if mf.GetName() == openTxnMetric {
					for _, m := range mf.GetMetric() {
						total += int(m.GetGauge().GetValue())
					}
				}
			}
		}
	case *procTarget:
		for _, a := range t.httpAddrs() {
			page, err := MetricsPage(ctx, a, time.Second)
			if err != nil {
				return 0, err
			}
			for _, line := range strings.Split(string(page), "\n") {
				if v, ok := strings.CutPrefix(line, openTxnMetric+" "); ok {
					f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
					if err != nil {
						return 0, fmt.Errorf("metrics of %s: %q: %w", a, line, err)
					}
					total += int(f)
				}
			}
		}
	default:
		return 0, fmt.Errorf("chaos: open transactions of a %T are not known", tgt)
	}
	return total, nil
}

// dump reads every version of the workload's keys at at, through the
// Backup service's Export with all_versions (as `rangestore backup`
// sends it). Each attempt first reads the keys at at through a client.DB
// batch: a strong read that meets an intent pushes its transaction and
// resolves it (committed, aborted, or pushed above at), whereas an export
// that meets one fails; attempts go on, through the nodes in turn, for
// dumpWait.
func (w *txnWork) dump(ctx context.Context, tgt target, at txncheck.Timestamp) (txncheck.Dump, error) {
	deadline := time.Now().Add(dumpWait)
	db := w.valDBs[0]
	var last error
	for attempt := 0; ; attempt++ {
		if attempt > 0 && (time.Now().After(deadline) || waitOrDone(ctx, nil, 500*time.Millisecond) != nil) {
			return nil, last
		}
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		cts := client.Timestamp{WallTime: at.WallTime, Logical: at.Logical}
		_, err := db.Batch(rctx, new(client.Batch).Scan([]byte(valPrefix), []byte(valEnd)).Scan([]byte(bankPrefix), []byte(bankEnd)), client.AsOf(cts))
		cancel()
		if err != nil {
			last = fmt.Errorf("resolving read: %w", err)
			continue
		}
		var d txncheck.Dump
		for _, sp := range [][2]string{{valPrefix, valEnd}, {bankPrefix, bankEnd}} {
			var vs txncheck.Dump
			if vs, err = exportVersions(ctx, tgt.Conn(attempt%tgt.NumNodes()), sp[0], sp[1], at); err != nil {
				break
			}
			d = append(d, vs...)
		}
		if err == nil {
			return d, nil
		}
		last = fmt.Errorf("export through node %d: %w", attempt%tgt.NumNodes(), err)
	}
}

// exportVersions streams every version of [start, end) at or below at.
func exportVersions(ctx context.Context, conn grpc.ClientConnInterface, start, end string, at txncheck.Timestamp) (txncheck.Dump, error) {
	ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err := rspb.NewBackupClient(conn).Export(ectx, &rspb.ExportRequest{StartKey: []byte(start), EndKey: []byte(end),
		EndTs: &rspb.Timestamp{WallTime: at.WallTime, Logical: at.Logical}, AllVersions: true})
	if err != nil {
		return nil, err
	}
	var d txncheck.Dump
	for {
		chunk, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		for _, v := range chunk.Versions {
			d = append(d, txncheck.Version{Key: string(v.Key), Value: string(v.Value), Deleted: v.Deleted,
				Timestamp: txncheck.Timestamp{WallTime: v.Timestamp.GetWallTime(), Logical: v.Timestamp.GetLogical()}})
		}
	}
	sort.SliceStable(d, func(i, j int) bool { return d[i].Key < d[j].Key })
	return d, nil
}
