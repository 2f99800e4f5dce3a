package timeutil

import (
	"context"
	"time"
)

// TimeSource reads the time and makes timers and tickers.
type TimeSource interface {
	Now() time.Time
	// Since is Now().Sub(t).
	Since(t time.Time) time.Duration
	// NewTimer returns a timer that fires once, d from now.
	NewTimer(d time.Duration) Timer
	// After is NewTimer(d).C().
	After(d time.Duration) <-chan time.Time
	// NewTicker returns a ticker that fires every d (d > 0), dropping
	// ticks for a slow reader like time.Ticker.
	NewTicker(d time.Duration) Ticker
}

// Timer is a time.Timer made by a TimeSource.
type Timer interface {
	// C is the channel the fire time is sent on.
	C() <-chan time.Time
	// Stop prevents the timer from firing; false if it already fired or
	// was stopped.
	Stop() bool
}

// Ticker is a time.Ticker made by a TimeSource.
type Ticker interface {
	// C is the channel the tick times are sent on.
	C() <-chan time.Time
	// Stop turns the ticker off; no tick is sent after it returns.
	Stop()
}

// Sleep waits d on ts, or until ctx is done (returning ctx.Err()).
func Sleep(ctx context.Context, ts TimeSource, d time.Duration) error {
	t := ts.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// DefaultTimeSource is the real clock.
type DefaultTimeSource struct{}

var _ TimeSource = DefaultTimeSource{}

// Now is time.Now.
func (DefaultTimeSource) Now() time.Time { return time.Now() }

// Since is time.Since.
func (DefaultTimeSource) Since(t time.Time) time.Duration { return time.Since(t) }

// NewTimer is time.NewTimer.
func (DefaultTimeSource) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

// After is time.After.
func (DefaultTimeSource) After(d time.Duration) <-chan time.Time { return time.After(d) }

// NewTicker is time.NewTicker.
func (DefaultTimeSource) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }
