// Package leakcheck is the goroutine leak check of the test binaries that
// start nodes: goleak, with more patience than goleak's own retries.
// memberlist (package gossip) does not wait for its goroutines in
// Shutdown: a probe or gossip round in flight finishes its timeouts (a
// second or two) before its goroutine returns. A goroutine still running
// after Wait is a leak, and fails the binary.
package leakcheck

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Wait bounds how long the check waits for goroutines to end.
const Wait = 10 * time.Second

// Main runs the tests and then cleanups, and fails the binary if any
// goroutine is still running Wait after they finished.
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	if code == 0 {
		if err := Find(Wait); err != nil {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines still running %v after the tests: %v\n", Wait, err)
			code = 1
		}
	}
	os.Exit(code)
}

// Find polls goleak until no goroutine but the caller's is left, for at
// most d; it returns goleak's last report otherwise.
func Find(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := goleak.Find()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
