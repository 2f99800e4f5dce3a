package node

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// ownedGoroutines returns the stacks of running goroutines that are in
// ranges or leases code (a store's or liveness's goroutines), except those
// whose header line ("goroutine N [...]:") is in skip.
func ownedGoroutines(skip map[string]bool) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		id, _, _ := strings.Cut(g, " [")
		if !skip[id] && (strings.Contains(g, "rangestore/rangestore/ranges.") || strings.Contains(g, "rangestore/rangestore/leases.")) {
			out = append(out, g)
		}
	}
	return out
}

// TestStopWaitsForStoreGoroutines stops a node while its split queue is
// scanning a range (held there by a testing delay) and checks that the
// store's goroutines have all ended when Stop returns: none may touch the
// engine after the node closed it (it panicked with "pebble: closed").
func TestStopWaitsForStoreGoroutines(t *testing.T) {
	// Goroutines of other tests' clusters still running are not this
	// test's concern.
	before := map[string]bool{}
	for _, g := range ownedGoroutines(nil) {
		id, _, _ := strings.Cut(g, " [")
		before[id] = true
	}
	for round := 0; round < 2; round++ {
		var armed atomic.Bool
		entered := make(chan struct{})
		var once sync.Once
		tc := startCluster(t, TestClusterOptions{Nodes: 1, InitialSplits: 1, RangeMaxBytes: 32 << 10,
			SplitCheckInterval: 20 * time.Millisecond,
			CrashPoint: func(_ int, name string) {
				if name == "size-split-scan" && armed.Load() {
					once.Do(func() { close(entered) })
					time.Sleep(time.Second) // the split queue is busy while the node stops
				}
			}})
		armed.Store(true)
		ctx := ctxT(t)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			kv := tc.KV(0)
			val := make([]byte, 1024)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = kv.Put(ctx, &rspb.PutRequest{Key: []byte(fmt.Sprintf("w%06d", i)), Value: val})
			}
		}()
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatal("the split queue never scanned a range")
		}
		close(stop)
		wg.Wait()
		tc.Close()
		// Stop has returned: nothing of the store or liveness may run now.
		if left := ownedGoroutines(before); len(left) > 0 {
			t.Fatalf("round %d: %d goroutines of ranges/leases still run after Stop; first:\n%s", round, len(left), left[0])
		}
	}
}
