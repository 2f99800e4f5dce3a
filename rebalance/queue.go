package rebalance

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// DefaultInterval is the time between two passes of a queue.
const DefaultInterval = 10 * time.Second

// DefaultStepTimeout bounds one replica change (one step of a plan): a
// step that cannot finish (its range lost its quorum meanwhile) holds up
// the node's queue no longer than this.
const DefaultStepTimeout = time.Minute

// Config connects a queue to its node. Gather, Change and Current are the
// queue's only I/O.
type Config struct {
	// Interval between passes (0: DefaultInterval).
	Interval time.Duration
	// StepTimeout bounds each replica change (0: DefaultStepTimeout).
	StepTimeout time.Duration
	// Active reports whether the node may act now (initialized, not
	// draining, not stopping); an inactive pass does nothing.
	Active func() bool
	// Gather reads the views of a pass: the node directory with liveness
	// and membership, every range of meta with the leases known here, the
	// replication factor setting.
	Gather func(ctx context.Context) (Input, error)
	// Current returns the local replica's descriptor of a range and
	// whether this node holds its lease, valid now (nil, false: no local
	// replica). A step runs only if both still hold: the lease may have
	// moved to a node whose queue acts on the range instead.
	Current func(rangeID uint64) (*rspb.RangeDescriptor, bool)
	// Change carries out one replica change (ranges.Store.ChangeReplicas).
	Change func(ctx context.Context, rangeID uint64, add, remove []uint64) error
	// AddNonVoter adds a standing non-voter on node
	// (ranges.Store.AddNonVoter; nil: non-voter steps fail).
	AddNonVoter func(ctx context.Context, rangeID, node uint64) error
	// Done, when set, is told the outcome of every step carried out (err
	// nil: done), after it ran; it must not block.
	Done func(s Step, err error)
	// Transfer moves a range's lease to target (a zone's lease
	// preferences; nil: such steps fail).
	Transfer   func(ctx context.Context, rangeID, target uint64) error
	Logger     *slog.Logger
	Metrics    *Metrics
	TimeSource timeutil.TimeSource
}

// Queue is one node's replicate queue.
type Queue struct {
	cfg  Config
	kick chan struct{}

	mu sync.Mutex
	// transferred: when this queue last transferred each range's lease
	// (the rate limit; entries older than MinLeaseTransferInterval are
	// dropped at each pass).
	transferred map[uint64]time.Time
}

// New returns a queue; Run runs it.
func New(cfg Config) *Queue {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = DefaultStepTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.TimeSource == nil {
		cfg.TimeSource = timeutil.DefaultTimeSource{}
	}
	return &Queue{cfg: cfg, kick: make(chan struct{}, 1), transferred: map[uint64]time.Time{}}
}

// Kick asks for a pass now (e.g. after the setting changed); it never
// blocks.
func (q *Queue) Kick() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Run runs a pass every interval (and on Kick) until ctx is done. Its
// owner is the store's task group, which cancels ctx when the store
// closes.
func (q *Queue) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.cfg.TimeSource.After(q.cfg.Interval):
		case <-q.kick:
		}
		if _, err := q.Pass(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, errInactive) {
			q.cfg.Logger.Info("replicate queue: pass failed; retried next interval", "err", err)
		}
	}
}

// errInactive: the pass did nothing because the node may not act.
var errInactive = errors.New("replicate queue: node inactive (not initialized, draining or stopping)")

// Pass gathers the views, makes the plan, sets the gauges and carries the
// steps out one at a time, in order. A failed step is logged and counted;
// the pass goes on with the next range.
func (q *Queue) Pass(ctx context.Context) (Plan, error) {
	m := q.cfg.Metrics
	if q.cfg.Active != nil && !q.cfg.Active() {
		m.passes.WithLabelValues("inactive").Inc()
		m.underReplicated.Set(0)
		m.unavailable.Set(0)
		return Plan{}, errInactive
	}
	in, err := q.cfg.Gather(ctx)
	if err != nil {
		m.passes.WithLabelValues("error").Inc()
		return Plan{}, err
	}
	in.Now = q.cfg.TimeSource.Now()
	q.mu.Lock()
	for id, at := range q.transferred {
		if in.Now.Sub(at) >= MinLeaseTransferInterval {
			delete(q.transferred, id)
		}
	}
	for i := range in.Ranges {
		in.Ranges[i].LastLeaseTransfer = q.transferred[in.Ranges[i].Desc.GetRangeId()]
	}
	q.mu.Unlock()
	p, err := MakePlan(in)
	if err != nil {
		m.passes.WithLabelValues("error").Inc()
		return Plan{}, err
	}
	m.underReplicated.Set(float64(p.UnderReplicated))
	m.unavailable.Set(float64(p.Unavailable))
	if len(p.Steps) > 0 {
		q.cfg.Logger.Debug("replicate queue: plan", "plan", p.String())
	}
	for _, s := range p.Steps {
		if ctx.Err() != nil {
			break
		}
		q.step(ctx, in, s)
	}
	m.passes.WithLabelValues("ok").Inc()
	return p, nil
}

// step carries out one step if the range is still as planned here.
func (q *Queue) step(ctx context.Context, in Input, s Step) {
	action := s.Decision.Action.String()
	var planned *rspb.RangeDescriptor
	for _, r := range in.Ranges {
		if r.Desc.GetRangeId() == s.RangeID {
			planned = r.Desc
		}
	}
	if q.cfg.Current != nil {
		cur, mine := q.cfg.Current(s.RangeID)
		if !mine || cur == nil || planned == nil || cur.Generation != planned.Generation {
			q.cfg.Metrics.actions.WithLabelValues(action, "skipped").Inc()
			q.cfg.Logger.Info("replicate queue: step skipped: the lease or the descriptor changed since the plan",
				"range", s.RangeID, "action", action, "node", s.Decision.Node, "mine", mine)
			return
		}
	}
	q.cfg.Logger.Info("replicate queue: "+action, "range", s.RangeID, "node", s.Decision.Node, "priority", s.Decision.Priority, "reason", s.Decision.Reason)
	sctx, cancel := context.WithTimeout(ctx, q.cfg.StepTimeout)
	defer cancel()
	start := q.cfg.TimeSource.Now()
	var err error
	switch {
	case s.Transfer != 0 && q.cfg.Transfer == nil:
		err = errors.New("this queue cannot transfer leases (no Transfer)")
	case s.Transfer != 0:
		q.mu.Lock()
		q.transferred[s.RangeID] = q.cfg.TimeSource.Now()
		q.mu.Unlock()
		err = q.cfg.Transfer(sctx, s.RangeID, s.Transfer)
	case s.NonVoter && q.cfg.AddNonVoter == nil:
		err = errors.New("this queue cannot add non-voters (no AddNonVoter)")
	case s.NonVoter:
		for _, n := range s.Add {
			if err = q.cfg.AddNonVoter(sctx, s.RangeID, n); err != nil {
				break
			}
		}
		if err == nil && len(s.Remove) > 0 {
			err = q.cfg.Change(sctx, s.RangeID, nil, s.Remove)
		}
	default:
		err = q.cfg.Change(sctx, s.RangeID, s.Add, s.Remove)
	}
	if q.cfg.Done != nil {
		q.cfg.Done(s, err)
	}
	if err != nil {
		q.cfg.Metrics.actions.WithLabelValues(action, "error").Inc()
		q.cfg.Logger.Warn("replicate queue: "+action+" failed; the next pass decides again", "range", s.RangeID, "node", s.Decision.Node, "err", err)
		return
	}
	q.cfg.Metrics.actions.WithLabelValues(action, "ok").Inc()
	q.cfg.Logger.Info("replicate queue: "+action+" done", "range", s.RangeID, "node", s.Decision.Node,
		"ms", q.cfg.TimeSource.Now().Sub(start).Milliseconds())
}
