package bench

// The bank workload (issue 16, acceptance 5): accounts preloaded with a
// balance, each operation a transfer that reads two accounts and writes
// both in one serializable transaction, retried on conflicts; a checker
// reads every account in one snapshot every 100 ms and fails the run if
// the balances do not sum to the total or one is negative. Also the
// two-key write pair (txn2 vs batch1): one transaction writing a key in
// each of two ranges beside one non-transactional batch of two puts in
// one range, to show what a 2-range commit costs.

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/rangestore/rangestore/timeutil"
)

// BankDriver is the transactional side of a store under test. Safe for
// concurrent use.
type BankDriver interface {
	// Transfer reads both accounts and writes both in one serializable
	// transaction (TransferAmounts decides the new balances), running it
	// again after a conflict, and returns how many runs were retries.
	Transfer(ctx context.Context, from, to []byte, amount int64) (retries int, err error)
	// Balances reads every account in one consistent snapshot.
	Balances(ctx context.Context, accounts [][]byte) ([]int64, error)
}

// BankSpec describes a bank workload.
type BankSpec struct {
	Name     string `json:"name"`
	Accounts uint64 `json:"accounts"` // default DefaultAccounts
	// KeyBase: the account of index i is KeyName(KeyBase+i, KeySize), so
	// that the accounts spread over the ranges like every other key space.
	KeyBase      uint64  `json:"key_base"`
	KeySize      int     `json:"key_size"`
	Initial      int64   `json:"initial_balance"` // per account
	MaxAmount    int64   `json:"max_amount"`      // transfers move 1..MaxAmount (at most the balance)
	Distribution string  `json:"distribution"`    // uniform or zipfian (a hot set: index 0 hottest)
	ZipfTheta    float64 `json:"zipf_theta,omitempty"`
	// CheckEvery: the checker's interval (default 100 ms).
	CheckEvery time.Duration `json:"check_every_ns"`
}

// Bank defaults.
const (
	DefaultAccounts       = 100
	DefaultInitialBalance = 1000
	DefaultMaxAmount      = 10
	DefaultCheckEvery     = 100 * time.Millisecond
)

// DefaultBankSpec is 100 accounts of 1000 with uniform choice of accounts.
func DefaultBankSpec(name string) BankSpec {
	return BankSpec{Name: name, Accounts: DefaultAccounts, KeySize: DefaultKeySize, Initial: DefaultInitialBalance,
		MaxAmount: DefaultMaxAmount, Distribution: Uniform, CheckEvery: DefaultCheckEvery}
}

// Validate reports the first invalid field.
func (s BankSpec) Validate() error {
	switch {
	case s.Accounts < 2:
		return fmt.Errorf("bank %s: accounts %d: need at least 2", s.Name, s.Accounts)
	case s.Initial <= 0:
		return fmt.Errorf("bank %s: initial balance %d: must be positive", s.Name, s.Initial)
	case s.MaxAmount <= 0:
		return fmt.Errorf("bank %s: max amount %d: must be positive", s.Name, s.MaxAmount)
	case s.CheckEvery <= 0:
		return fmt.Errorf("bank %s: check interval %s: must be positive", s.Name, s.CheckEvery)
	case s.Distribution != Uniform && s.Distribution != Zipfian:
		return fmt.Errorf("bank %s: distribution %q: want uniform or zipfian", s.Name, s.Distribution)
	case s.ZipfTheta < 0 || s.ZipfTheta >= 1:
		return fmt.Errorf("bank %s: zipf theta %g: must lie in [0, 1)", s.Name, s.ZipfTheta)
	}
	if float64(s.Accounts)*float64(s.Initial) > 1<<62 {
		return fmt.Errorf("bank %s: %d accounts of %d overflow the total", s.Name, s.Accounts, s.Initial)
	}
	return CheckKeySpace(s.KeyBase+s.Accounts, s.KeySize)
}

// Keys returns the account keys in index order.
func (s BankSpec) Keys() [][]byte {
	out := make([][]byte, s.Accounts)
	for i := range out {
		out[i] = KeyName(s.KeyBase+uint64(i), s.KeySize)
	}
	return out
}

// Total is the sum every snapshot must show.
func (s BankSpec) Total() int64 { return int64(s.Accounts) * s.Initial }

func (s BankSpec) keyGen() KeyGen {
	if s.Distribution == Zipfian {
		th := s.ZipfTheta
		if th == 0 {
			th = DefaultZipfTheta
		}
		return NewZipfGen(s.Accounts, th)
	}
	return UniformGen{N: s.Accounts}
}

// pickPair draws two distinct account indexes.
func pickPair(g KeyGen, r *rand.Rand) (uint64, uint64) {
	a := g.Next(r)
	for {
		if b := g.Next(r); b != a {
			return a, b
		}
	}
}

// EncodeBalance is a balance's stored value: fixed-width decimal.
func EncodeBalance(v int64) []byte { return []byte(fmt.Sprintf("%020d", v)) }

// DecodeBalance parses a value EncodeBalance wrote.
func DecodeBalance(b []byte) (int64, error) {
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("balance %q: %w", b, err)
	}
	return v, nil
}

// TransferAmounts is the transfer's decision: move want from a to b, but
// never more than a holds (a zero move still rewrites both accounts).
func TransferAmounts(balA, balB, want int64) (newA, newB int64) {
	m := min(want, max(balA, 0))
	return balA - m, balB + m
}

// CheckBalances is the checker's verdict on one snapshot.
func CheckBalances(bals []int64, want int64) error {
	var sum int64
	for i, b := range bals {
		if b < 0 {
			return fmt.Errorf("account %d has a negative balance %d", i, b)
		}
		sum += b
	}
	if sum != want {
		return fmt.Errorf("balances sum to %d, want %d", sum, want)
	}
	return nil
}

// PreloadBank writes every account's initial balance (batches of 100),
// retrying until ctx ends (a fresh cluster may still be electing leaders).
func PreloadBank(ctx context.Context, d BatchPutter, s BankSpec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	keys := s.Keys()
	for lo := 0; lo < len(keys); lo += 100 {
		hi := min(lo+100, len(keys))
		vals := make([][]byte, hi-lo)
		for i := range vals {
			vals[i] = EncodeBalance(s.Initial)
		}
		for attempt := 0; ; attempt++ {
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := d.PutBatch(actx, keys[lo:hi], vals)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("preload accounts %d..%d: %w (last error: %w)", lo, hi-1, ctx.Err(), err)
			}
			if serr := timeutil.Sleep(ctx, timeutil.DefaultTimeSource{}, time.Duration(min(attempt+1, 20))*50*time.Millisecond); serr != nil {
				return fmt.Errorf("preload accounts %d..%d: %w (last error: %w)", lo, hi-1, serr, err)
			}
		}
	}
	return nil
}

// BankStats is the bank part of a Result.
type BankStats struct {
	Accounts         uint64  `json:"accounts"`
	Total            int64   `json:"total"`
	Committed        int64   `json:"committed"` // measured transfers
	CommittedPerSec  float64 `json:"committed_per_sec"`
	Retries          int64   `json:"retries"` // of the measured transfers
	RetriesPerCommit float64 `json:"retries_per_commit"`
	// The checker while the clients ran (warm-up included): snapshots
	// that held, that failed to read, and that were still being read
	// when the run ended (a checker starved by the writers shows here).
	CheckerRuns   int64  `json:"checker_runs"`
	CheckerErrors int64  `json:"checker_errors"`
	CheckerError  string `json:"checker_error,omitempty"` // the first of those errors
	CheckerCutOff int64  `json:"checker_cut_off"`
	FinalSnapshot bool   `json:"final_snapshot_held"` // the snapshot after the clients stopped
}

// ErrBankViolation: a snapshot broke the invariant (RunBank's error
// wraps it).
var ErrBankViolation = errors.New("bank invariant violated")

// loop is a closed-loop run of op by opts.Concurrency workers for
// opts.Warmup + opts.Duration: latencies of the operations that ended
// after the warm-up, their retries and errors.
type loopResult struct {
	hist     *hdrhistogram.Histogram
	errs     int64
	retries  int64
	measured time.Duration
	firstErr string
}

type loopWorker struct {
	mu      sync.Mutex
	hist    *hdrhistogram.Histogram
	errs    int64
	retries int64
}

func runLoop(ctx context.Context, opts Options, op func(ctx context.Context, r *rand.Rand) (int, error)) (loopResult, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.Duration <= 0 {
		return loopResult{}, errors.New("duration must be positive")
	}
	start := time.Now()
	measureFrom := start.Add(opts.Warmup)
	deadline := measureFrom.Add(opts.Duration)
	// Cancel-only context, as in Run: no deadline travels with requests.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := time.AfterFunc(time.Until(deadline), cancel)
	defer stop.Stop()
	ws := make([]loopWorker, opts.Concurrency)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			w := &ws[id]
			w.hist = newHist()
			r := rand.New(rand.NewSource(opts.Seed + int64(id)*7919 + 1))
			for wctx.Err() == nil {
				t0 := time.Now()
				retries, err := op(wctx, r)
				t1 := time.Now()
				if t1.After(deadline) {
					return
				}
				if err != nil && wctx.Err() != nil {
					return
				}
				if t1.Before(measureFrom) {
					continue
				}
				w.mu.Lock()
				if err != nil {
					w.errs++
				} else {
					recordLatency(w.hist, t1.Sub(t0))
					w.retries += int64(retries)
				}
				w.mu.Unlock()
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					if timeutil.Sleep(wctx, timeutil.DefaultTimeSource{}, time.Millisecond) != nil { // don't spin on a dead server
						return
					}
				}
			}
		}(i)
	}
	<-wctx.Done()
	wg.Wait()
	end := time.Now()
	if end.After(deadline) {
		end = deadline
	}
	res := loopResult{hist: newHist(), measured: end.Sub(measureFrom)}
	for i := range ws {
		res.hist.Merge(ws[i].hist)
		res.errs += ws[i].errs
		res.retries += ws[i].retries
	}
	if v := firstErr.Load(); v != nil {
		res.firstErr = v.(string)
	}
	if res.measured <= 0 {
		return res, fmt.Errorf("run ended during the warm-up: %w", ctx.Err())
	}
	return res, ctx.Err()
}

// RunBank runs transfers between s's accounts (already preloaded: see
// PreloadBank) with opts.Concurrency closed-loop clients while a checker
// reads every account in one snapshot every s.CheckEvery, and once more
// after the clients stopped. It fails (ErrBankViolation) if a snapshot
// does not sum to s.Total() or holds a negative balance, and if the
// final snapshot cannot be read; how many snapshots the checker read
// during the run (it may be starved) is in Bank. The Result has one operation,
// "transfer" (latency including retries), and Bank.
func RunBank(ctx context.Context, d BankDriver, s BankSpec, opts Options) (*Result, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	accounts := s.Keys()
	gen := s.keyGen()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stats := BankStats{Accounts: s.Accounts, Total: s.Total()}
	var violation atomic.Value
	var checks, checkErrs, cutOff atomic.Int64
	var checkErr atomic.Value
	check := func(cctx context.Context) error {
		bals, err := d.Balances(cctx, accounts)
		if err != nil {
			if cctx.Err() != nil {
				cutOff.Add(1)
			} else {
				checkErrs.Add(1)
				checkErr.CompareAndSwap(nil, err.Error())
			}
			return err
		}
		if err := CheckBalances(bals, s.Total()); err != nil {
			violation.CompareAndSwap(nil, err.Error())
			return fmt.Errorf("%w: %w", ErrBankViolation, err)
		}
		checks.Add(1)
		return nil
	}
	// The checker is owned by RunBank: it stops when the run does.
	checkerDone := make(chan struct{})
	go func() {
		defer close(checkerDone)
		tick := time.NewTicker(s.CheckEvery)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
				if rctx.Err() != nil { // both were ready: the run is over
					return
				}
				if err := check(rctx); errors.Is(err, ErrBankViolation) {
					cancel() // stop the clients: the run has failed
					return
				}
			}
		}
	}()
	lr, err := runLoop(rctx, opts, func(ctx context.Context, r *rand.Rand) (int, error) {
		a, b := pickPair(gen, r)
		return d.Transfer(ctx, accounts[a], accounts[b], 1+r.Int63n(s.MaxAmount))
	})
	cancel()
	<-checkerDone
	if v := violation.Load(); v != nil {
		return nil, fmt.Errorf("bank %s: %w: %s", s.Name, ErrBankViolation, v.(string))
	}
	if err != nil {
		return nil, err
	}
	stats.CheckerRuns, stats.CheckerErrors, stats.CheckerCutOff = checks.Load(), checkErrs.Load(), cutOff.Load()
	if v := checkErr.Load(); v != nil {
		stats.CheckerError = v.(string)
	}
	// The final snapshot, after every client stopped: it must be read and
	// hold, whatever the checker managed during the run.
	fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
	bals, err := d.Balances(fctx, accounts)
	fcancel()
	if err != nil {
		return nil, fmt.Errorf("bank %s: final snapshot: %w", s.Name, err)
	}
	if err := CheckBalances(bals, s.Total()); err != nil {
		return nil, fmt.Errorf("bank %s: final snapshot (after %d held during the run): %w: %w (%s)", s.Name, stats.CheckerRuns, ErrBankViolation, err,
			recheck(ctx, d, accounts, s.Total()))
	}
	stats.FinalSnapshot = true
	sum := Summarize("transfer", lr.hist, lr.errs, lr.measured)
	stats.Committed, stats.CommittedPerSec = sum.Count, sum.OpsPerSec
	stats.Retries = lr.retries
	if sum.Count > 0 {
		stats.RetriesPerCommit = float64(lr.retries) / float64(sum.Count)
	}
	res := &Result{
		Workload:    Spec{Name: s.Name, Keys: s.Accounts, KeyBase: s.KeyBase, KeySize: s.KeySize, ValueSize: len(EncodeBalance(0)), Distribution: s.Distribution, ZipfTheta: s.ZipfTheta},
		Concurrency: max(opts.Concurrency, 1), WarmupSec: opts.Warmup.Seconds(), DurationSec: lr.measured.Seconds(),
		Seed: opts.Seed, Ops: []OpSummary{sum}, Total: sum, FirstError: lr.firstErr, Bank: &stats,
	}
	return res, nil
}

// recheck tells a broken final snapshot from a broken state: it reads
// the accounts again every 500 ms until they hold, for at most 3 s.
func recheck(ctx context.Context, d BankDriver, accounts [][]byte, total int64) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var last string
	for {
		if err := timeutil.Sleep(ctx, timeutil.DefaultTimeSource{}, 500*time.Millisecond); err != nil {
			return "still so after 3 s: " + last
		}
		bals, err := d.Balances(ctx, accounts)
		switch {
		case err != nil:
			last = "unreadable: " + err.Error()
		case CheckBalances(bals, total) == nil:
			return "a later snapshot holds: the snapshot read was inconsistent"
		default:
			last = CheckBalances(bals, total).Error()
		}
	}
}

// PairWriter writes two keys at once: in one transaction (TxnPut2) or in
// one non-transactional batch (BatchPut2).
type PairWriter interface {
	TxnPut2(ctx context.Context, k1, v1, k2, v2 []byte) error
	BatchPut2(ctx context.Context, k1, v1, k2, v2 []byte) error
}

// Pair write modes.
const (
	PairTxn   = "txn2"   // one transaction, the keys in two ranges
	PairBatch = "batch1" // one batch of two puts, the keys in one range
)

// RunPairWrites overwrites the pair k1, k2 (values of valueSize bytes)
// with mode (PairTxn or PairBatch) in a closed loop; the Result has one
// operation named after the mode. Where the keys lie is the caller's to
// choose and check.
func RunPairWrites(ctx context.Context, d PairWriter, mode string, k1, k2 []byte, valueSize int, opts Options) (*Result, error) {
	if mode != PairTxn && mode != PairBatch {
		return nil, fmt.Errorf("pair writes: mode %q: want %s or %s", mode, PairTxn, PairBatch)
	}
	if valueSize <= 0 {
		return nil, fmt.Errorf("pair writes: value size %d: must be positive", valueSize)
	}
	lr, err := runLoop(ctx, opts, func(ctx context.Context, r *rand.Rand) (int, error) {
		v1, v2 := make([]byte, valueSize), make([]byte, valueSize)
		fillValue(r, v1)
		fillValue(r, v2)
		if mode == PairTxn {
			return 0, d.TxnPut2(ctx, k1, v1, k2, v2)
		}
		return 0, d.BatchPut2(ctx, k1, v1, k2, v2)
	})
	if err != nil {
		return nil, err
	}
	sum := Summarize(mode, lr.hist, lr.errs, lr.measured)
	return &Result{
		Workload:    Spec{Name: mode, Keys: 2, KeySize: len(k1), ValueSize: valueSize, Distribution: "fixed pair"},
		Concurrency: max(opts.Concurrency, 1), WarmupSec: opts.Warmup.Seconds(), DurationSec: lr.measured.Seconds(),
		Seed: opts.Seed, Ops: []OpSummary{sum}, Total: sum, FirstError: lr.firstErr,
	}, nil
}
