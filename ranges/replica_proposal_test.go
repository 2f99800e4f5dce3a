package ranges

import (
	"testing"
	"time"
)

// The wait before a command is proposed again grows with its size and
// doubles with each timed-out try, up to four times its first value.
func TestRetryAfter(t *testing.T) {
	for _, c := range []struct {
		try, size int
		want      time.Duration
	}{
		{0, 100, 500 * time.Millisecond},
		{1, 100, time.Second},
		{2, 100, 2 * time.Second},
		{9, 100, 2 * time.Second},
		{0, proposeRetryBytes - 1, 500 * time.Millisecond},
		{0, proposeRetryBytes, time.Second},
		{0, 1 << 20, 2500 * time.Millisecond},
		{1, 1 << 20, 5 * time.Second},
		{5, 1 << 20, 10 * time.Second},
	} {
		if got := retryAfter(c.try, c.size); got != c.want {
			t.Errorf("retryAfter(try %d, %d bytes) = %v, want %v", c.try, c.size, got, c.want)
		}
	}
}
