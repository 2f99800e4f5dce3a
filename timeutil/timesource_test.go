package timeutil

import (
	"context"
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func fired(c <-chan time.Time) (time.Time, bool) {
	select {
	case t := <-c:
		return t, true
	default:
		return time.Time{}, false
	}
}

func TestManualTimer(t *testing.T) {
	m := NewManualTimeSource(t0)
	tm := m.NewTimer(time.Second)
	if m.NumTimers() != 1 {
		t.Fatalf("NumTimers = %d, want 1", m.NumTimers())
	}
	m.Advance(999 * time.Millisecond)
	if _, ok := fired(tm.C()); ok {
		t.Fatal("timer fired before its deadline")
	}
	m.Advance(time.Millisecond)
	if at, ok := fired(tm.C()); !ok || !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("timer: fired=%v at %v, want at %v", ok, at, t0.Add(time.Second))
	}
	if tm.Stop() {
		t.Fatal("Stop of a fired timer returned true")
	}
	if m.NumTimers() != 0 {
		t.Fatalf("NumTimers = %d after firing, want 0", m.NumTimers())
	}
	stopped := m.NewTimer(time.Second)
	if !stopped.Stop() {
		t.Fatal("Stop of an armed timer returned false")
	}
	m.Advance(time.Hour)
	if _, ok := fired(stopped.C()); ok {
		t.Fatal("stopped timer fired")
	}
	if _, ok := fired(m.NewTimer(0).C()); !ok {
		t.Fatal("a zero timer did not fire at once")
	}
	if got := m.Since(t0); got != time.Hour+time.Second {
		t.Fatalf("Since = %v", got)
	}
}

func TestManualTicker(t *testing.T) {
	m := NewManualTimeSource(t0)
	tk := m.NewTicker(100 * time.Millisecond)
	m.Advance(250 * time.Millisecond) // two periods passed: one tick kept, like a slow reader
	if at, ok := fired(tk.C()); !ok || !at.Equal(t0.Add(100*time.Millisecond)) {
		t.Fatalf("tick: %v %v", ok, at)
	}
	if _, ok := fired(tk.C()); ok {
		t.Fatal("second tick buffered")
	}
	m.Advance(50 * time.Millisecond) // 300 ms: the next multiple
	if at, ok := fired(tk.C()); !ok || !at.Equal(t0.Add(300*time.Millisecond)) {
		t.Fatalf("tick at 300ms: %v %v", ok, at)
	}
	tk.Stop()
	m.Advance(time.Second)
	if _, ok := fired(tk.C()); ok {
		t.Fatal("stopped ticker ticked")
	}
}

func TestSleep(t *testing.T) {
	m := NewManualTimeSource(t0)
	done := make(chan error, 1)
	go func() { done <- Sleep(context.Background(), m, time.Minute) }()
	deadline := time.Now().Add(10 * time.Second)
	for m.NumTimers() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Sleep never armed its timer")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Sleep returned (%v) before the time advanced", err)
	default:
	}
	m.Advance(time.Minute)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, m, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled context: %v", err)
	}
	if err := Sleep(context.Background(), DefaultTimeSource{}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
