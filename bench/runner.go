package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Options control a closed-loop run.
type Options struct {
	Concurrency int           // workers, each with one request in flight (default 1)
	Warmup      time.Duration // not counted in the summary
	Duration    time.Duration // measured time after the warm-up
	Seed        int64         // workers use Seed+worker index
	Interval    time.Duration // progress/timeline interval (default 1 s)
	Progress    io.Writer     // per-interval progress lines; nil = quiet
	Label       string        // prefix of progress lines
}

// Sample is one interval of the timeline.
type Sample struct {
	T      float64    `json:"t"` // seconds since the start, at the end of the interval
	Warmup bool       `json:"warmup"`
	Ops    []SampleOp `json:"ops"`
}

// SampleOp is one operation kind within a Sample.
type SampleOp struct {
	Op        string  `json:"op"`
	OpsPerSec float64 `json:"ops_per_sec"`
	Errors    int64   `json:"errors"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
}

// Result is the outcome of Run; it is also the --json document.
type Result struct {
	Driver      string      `json:"driver"`
	Workload    Spec        `json:"workload"`
	Concurrency int         `json:"concurrency"`
	WarmupSec   float64     `json:"warmup_sec"`
	DurationSec float64     `json:"duration_sec"` // measured
	Seed        int64       `json:"seed"`
	Start       time.Time   `json:"start"`
	Ops         []OpSummary `json:"ops"`
	Total       OpSummary   `json:"total"`
	Timeline    []Sample    `json:"timeline"`
	FirstError  string      `json:"first_error,omitempty"`
	// Bank: the bank workload's figures (RunBank only).
	Bank *BankStats `json:"bank,omitempty"`
}

// Op returns the summary of one operation kind (zero if absent).
func (r *Result) Op(name string) OpSummary {
	for _, o := range r.Ops {
		if o.Op == name {
			return o
		}
	}
	return OpSummary{Op: name}
}

// recorder collects latencies from many workers with little contention:
// each worker writes into one of a few shards.
type recorder struct {
	shards []recShard
}

type recShard struct {
	mu   sync.Mutex
	h    [numOps]*hdrhistogram.Histogram
	errs [numOps]int64
	_    [64]byte
}

func newRecorder(n int) *recorder { return &recorder{shards: make([]recShard, n)} }

func (r *recorder) record(worker int, k OpKind, d time.Duration, err bool) {
	s := &r.shards[worker%len(r.shards)]
	s.mu.Lock()
	if err {
		s.errs[k]++
	} else {
		if s.h[k] == nil {
			s.h[k] = newHist()
		}
		recordLatency(s.h[k], d)
	}
	s.mu.Unlock()
}

// drain moves every shard's contents into the given aggregates and resets
// the shards.
func (r *recorder) drain(into *[numOps]*hdrhistogram.Histogram, errs *[numOps]int64) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for k := range s.h {
			if s.h[k] != nil && s.h[k].TotalCount() > 0 {
				if into[k] == nil {
					into[k] = newHist()
				}
				into[k].Merge(s.h[k])
				s.h[k].Reset()
			}
			errs[k] += s.errs[k]
			s.errs[k] = 0
		}
		s.mu.Unlock()
	}
}

// Execute runs one operation against d. value is the worker's value buffer.
func Execute(ctx context.Context, d Driver, op Op, value []byte) error {
	switch op.Kind {
	case OpRead:
		_, err := d.Get(ctx, op.Key)
		return err
	case OpWrite, OpInsert:
		return d.Put(ctx, op.Key, value)
	case OpScan:
		_, err := d.Scan(ctx, op.Key, op.ScanLen)
		return err
	case OpRMW:
		if _, err := d.Get(ctx, op.Key); err != nil {
			return err
		}
		return d.Put(ctx, op.Key, value)
	}
	return fmt.Errorf("unknown op %v", op.Kind)
}

// fillValue writes random printable bytes into b.
func fillValue(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = alphabet[r.Intn(len(alphabet))]
	}
}

// Run drives w against d with opts.Concurrency closed-loop workers for
// opts.Warmup + opts.Duration and returns the measured summary.
func Run(ctx context.Context, d Driver, w *Workload, opts Options) (*Result, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Duration <= 0 {
		return nil, errors.New("duration must be positive")
	}
	// Round the warm-up up to whole intervals so no interval straddles it.
	warmTicks := int((opts.Warmup + opts.Interval - 1) / opts.Interval)
	warmup := time.Duration(warmTicks) * opts.Interval

	nShards := 2 * opts.Concurrency
	if nShards > 32 {
		nShards = 32
	}
	rec := newRecorder(nShards)
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(warmup + opts.Duration)
	// Workers get a cancel-only context: a deadline would travel with every
	// request and servers may reject requests whose remaining time is short,
	// turning the last moments of the run into errors.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopTimer := time.AfterFunc(time.Until(deadline), cancel)
	defer stopTimer.Stop()

	var wg sync.WaitGroup
	for i := 0; i < opts.Concurrency; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(opts.Seed + int64(id)*7919 + 1))
			value := make([]byte, w.Spec.ValueSize)
			fillValue(r, value)
			for wctx.Err() == nil {
				op := w.Next(r)
				value[r.Intn(len(value))] = alphabet[r.Intn(len(alphabet))]
				t0 := time.Now()
				err := Execute(wctx, d, op, value)
				t1 := time.Now()
				if t1.After(deadline) {
					return
				}
				if err != nil {
					if wctx.Err() != nil {
						return
					}
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", op.Kind, err))
					rec.record(id, op.Kind, 0, true)
					time.Sleep(time.Millisecond) // don't spin on a dead server
					continue
				}
				rec.record(id, op.Kind, t1.Sub(t0), false)
			}
		}(i)
	}

	res := &Result{Workload: w.Spec, Concurrency: opts.Concurrency, WarmupSec: warmup.Seconds(),
		DurationSec: opts.Duration.Seconds(), Seed: opts.Seed, Start: start}
	var total [numOps]*hdrhistogram.Histogram
	var totalErrs [numOps]int64
	kinds := w.Kinds()

	// warm: the interval is one of the first warmTicks ticks (counted, not
	// judged by the tick's time: a tick delivered late on a loaded machine
	// still closes a warm-up interval).
	collect := func(now time.Time, length time.Duration, warm bool) {
		var iv [numOps]*hdrhistogram.Histogram
		var ie [numOps]int64
		rec.drain(&iv, &ie)
		smp := Sample{T: now.Sub(start).Seconds(), Warmup: warm}
		for _, k := range kinds {
			s := Summarize(k.String(), iv[k], ie[k], length)
			smp.Ops = append(smp.Ops, SampleOp{Op: k.String(), OpsPerSec: s.OpsPerSec, Errors: ie[k], P50Ms: s.P50Ms, P99Ms: s.P99Ms})
			if !warm {
				if iv[k] != nil {
					if total[k] == nil {
						total[k] = newHist()
					}
					total[k].Merge(iv[k])
				}
				totalErrs[k] += ie[k]
			}
		}
		if length > 0 {
			res.Timeline = append(res.Timeline, smp)
		}
		if opts.Progress != nil && length > 0 {
			writeProgress(opts.Progress, opts.Label, smp)
		}
	}

	tick := time.NewTicker(opts.Interval)
	defer tick.Stop()
	last := start
	ticks := 0
loop:
	for {
		select {
		case now := <-tick.C:
			if !now.Before(deadline) {
				break loop
			}
			ticks++
			collect(now, now.Sub(last), ticks <= warmTicks)
			last = now
		case <-wctx.Done():
			break loop
		}
	}
	cancel()
	wg.Wait()
	end := deadline
	if time.Now().Before(deadline) { // parent context cancelled early
		end = time.Now()
	}
	if end.After(last) {
		collect(end, end.Sub(last), false)
	}
	measured := end.Sub(start.Add(warmup))
	if measured <= 0 {
		return nil, fmt.Errorf("run ended during the warm-up: %w", ctx.Err())
	}
	res.DurationSec = measured.Seconds()
	all := newHist()
	var allErrs int64
	for _, k := range kinds {
		res.Ops = append(res.Ops, Summarize(k.String(), total[k], totalErrs[k], measured))
		if total[k] != nil {
			all.Merge(total[k])
		}
		allErrs += totalErrs[k]
	}
	res.Total = Summarize("total", all, allErrs, measured)
	if v := firstErr.Load(); v != nil {
		res.FirstError = v.(string)
	}
	return res, ctx.Err()
}

func writeProgress(w io.Writer, label string, s Sample) {
	var b strings.Builder
	if label != "" {
		fmt.Fprintf(&b, "%s ", label)
	}
	tag := ""
	if s.Warmup {
		tag = " (warm-up)"
	}
	fmt.Fprintf(&b, "%6.1fs%s", s.T, tag)
	for _, o := range s.Ops {
		fmt.Fprintf(&b, "  %s %.0f/s p50 %.2fms p99 %.2fms", o.Op, o.OpsPerSec, o.P50Ms, o.P99Ms)
		if o.Errors > 0 {
			fmt.Fprintf(&b, " err %d", o.Errors)
		}
	}
	b.WriteByte('\n')
	_, _ = io.WriteString(w, b.String())
}
