package timeutil

import "time"

// pollInterval is how often WaitFor checks its condition.
const pollInterval = 20 * time.Millisecond

// Fataler is the part of testing.TB that WaitFor uses.
type Fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// WaitFor checks cond (on the real clock) until it returns nil; if d passes
// first, it fails the test with what and cond's last error. Tests wait on
// conditions with it, never with a bare sleep.
func WaitFor(t Fataler, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s (%v): %v", what, d, err)
			return
		}
		time.Sleep(pollInterval)
	}
}
