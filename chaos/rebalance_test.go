package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRebalanceArgs: the settings map to their flags; anything else is
// refused naming CHAOS_REBALANCE.
func TestRebalanceArgs(t *testing.T) {
	for _, s := range []string{"", RebalanceDefault} {
		if a, err := rebalanceArgs(s); err != nil || a != nil {
			t.Errorf("rebalanceArgs(%q) = %v, %v: want no flags", s, a, err)
		}
	}
	a, err := rebalanceArgs(RebalanceAggressive)
	if err != nil || !strings.Contains(strings.Join(a, " "), "--min-range-rebalance 1") {
		t.Errorf("rebalanceArgs(aggressive) = %v, %v", a, err)
	}
	if _, err := rebalanceArgs("wild"); err == nil || !strings.Contains(err.Error(), "CHAOS_REBALANCE") {
		t.Errorf("rebalanceArgs(wild): %v, want an error naming CHAOS_REBALANCE", err)
	}
}

// TestParseMoves: only the ok results of rebalance and transfer-lease
// count.
func TestParseMoves(t *testing.T) {
	text := `# HELP rangestore_replicate_queue_actions_total ...
rangestore_replicate_queue_actions_total{action="add-voter",result="ok"} 4
rangestore_replicate_queue_actions_total{action="rebalance",result="error"} 2
rangestore_replicate_queue_actions_total{action="rebalance",result="ok"} 3
rangestore_replicate_queue_actions_total{action="transfer-lease",result="ok"} 7
rangestore_replicate_queue_actions_total{action="transfer-lease",result="skipped"} 1
rangestore_replicate_queue_passes_total{result="ok"} 9
`
	v, err := parseMoves(bufio.NewScanner(strings.NewReader(text)))
	if err != nil || v != [2]int{3, 7} {
		t.Fatalf("parseMoves = %v, %v: want [3 7]", v, err)
	}
}

// TestMoveCounter: a counter that grows adds its growth; one that drops
// (a restarted process) adds its new value; a failed scrape adds nothing.
func TestMoveCounter(t *testing.T) {
	var moves, leases atomic.Int64
	var down atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%s{action=\"rebalance\",result=\"ok\"} %d\n%s{action=\"transfer-lease\",result=\"ok\"} %d\n",
			queueMetric, moves.Load(), queueMetric, leases.Load())
	})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	defer func() { _ = srv.Close(); <-done }()
	addr := lis.Addr().String()

	c := newMoveCounter()
	ctx := context.Background()
	moves.Store(2)
	leases.Store(5)
	c.sample(ctx, []string{addr})
	moves.Store(4)
	c.sample(ctx, []string{addr})
	down.Store(true)
	c.sample(ctx, []string{addr})
	down.Store(false)
	moves.Store(1) // restarted
	leases.Store(2)
	c.sample(ctx, []string{addr})
	if c.Moves != 5 || c.Leases != 7 || c.Scrapes != 4 || c.Fails != 1 {
		t.Fatalf("counter %+v: want 5 moves, 7 lease transfers, 4 scrapes, 1 failed", *c)
	}
}
