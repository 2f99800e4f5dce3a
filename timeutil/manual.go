package timeutil

import (
	"sort"
	"sync"
	"time"
)

// ManualTimeSource is a TimeSource for tests: its time moves only in
// Advance and AdvanceTo. It is safe for concurrent use.
type ManualTimeSource struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*manualTimer]struct{} // armed timers and running tickers
}

var _ TimeSource = (*ManualTimeSource)(nil)

// NewManualTimeSource returns a ManualTimeSource reading start.
func NewManualTimeSource(start time.Time) *ManualTimeSource {
	return &ManualTimeSource{now: start, timers: map[*manualTimer]struct{}{}}
}

// Now returns the manual time.
func (m *ManualTimeSource) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// Since is Now().Sub(t).
func (m *ManualTimeSource) Since(t time.Time) time.Duration { return m.Now().Sub(t) }

// NewTimer returns a timer firing once the time reaches Now()+d (at once if
// d <= 0).
func (m *ManualTimeSource) NewTimer(d time.Duration) Timer {
	return m.add(d, 0)
}

// After is NewTimer(d).C().
func (m *ManualTimeSource) After(d time.Duration) <-chan time.Time { return m.NewTimer(d).C() }

// NewTicker returns a ticker firing each time the time passes a multiple of
// d after Now(). It panics if d <= 0, like time.NewTicker.
func (m *ManualTimeSource) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("timeutil: non-positive interval for NewTicker")
	}
	return manualTicker{m.add(d, d)}
}

func (m *ManualTimeSource) add(d, period time.Duration) *manualTimer {
	t := &manualTimer{src: m, ch: make(chan time.Time, 1), period: period}
	m.mu.Lock()
	defer m.mu.Unlock()
	t.at = m.now.Add(d)
	if period == 0 && d <= 0 {
		t.ch <- m.now
		return t
	}
	m.timers[t] = struct{}{}
	return t
}

// NumTimers is the number of armed timers and running tickers: a test
// advances the time once the goroutines it drives are waiting.
func (m *ManualTimeSource) NumTimers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.timers)
}

// Advance moves the time forward by d (d >= 0) and fires what came due.
func (m *ManualTimeSource) Advance(d time.Duration) {
	if d < 0 {
		panic("timeutil: Advance by a negative duration")
	}
	m.mu.Lock()
	to := m.now.Add(d)
	m.mu.Unlock()
	m.AdvanceTo(to)
}

// AdvanceTo moves the time forward to t (no-op if t is not after Now())
// and fires, in deadline order, every timer and ticker that came due: a
// timer once, a ticker once per Advance like a time.Ticker whose reader was
// slow (its next tick is its first multiple of the period after t).
func (m *ManualTimeSource) AdvanceTo(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !t.After(m.now) {
		return
	}
	m.now = t
	var due []*manualTimer
	for mt := range m.timers {
		if !mt.at.After(t) {
			due = append(due, mt)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, mt := range due {
		select {
		case mt.ch <- mt.at:
		default: // the reader has not taken the last one (a ticker)
		}
		if mt.period == 0 {
			delete(m.timers, mt)
			continue
		}
		for !mt.at.After(t) {
			mt.at = mt.at.Add(mt.period)
		}
	}
}

type manualTimer struct {
	src    *ManualTimeSource
	ch     chan time.Time
	period time.Duration // 0 for a timer
	at     time.Time     // next firing; guarded by src.mu
}

func (t *manualTimer) C() <-chan time.Time { return t.ch }

// manualTicker is a manualTimer with a period, stopped like a time.Ticker.
type manualTicker struct{ *manualTimer }

func (t manualTicker) Stop() { t.manualTimer.Stop() }

func (t *manualTimer) Stop() bool {
	t.src.mu.Lock()
	defer t.src.mu.Unlock()
	_, armed := t.src.timers[t]
	delete(t.src.timers, t)
	return armed
}
