package timeutil

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type recorder struct{ failed []string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func TestWaitFor(t *testing.T) {
	var r recorder
	calls := 0
	WaitFor(&r, time.Minute, "third call", func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if len(r.failed) != 0 || calls != 3 {
		t.Fatalf("condition met on call 3: calls=%d failures=%q", calls, r.failed)
	}

	WaitFor(&r, 50*time.Millisecond, "never", func() error { return errors.New("still false") })
	if len(r.failed) != 1 || !strings.Contains(r.failed[0], "waiting for never") || !strings.Contains(r.failed[0], "still false") {
		t.Fatalf("want one failure naming the wait and the last error, got %q", r.failed)
	}
}
