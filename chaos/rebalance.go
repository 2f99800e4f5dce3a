package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rebalancing during histories (CHAOS_REBALANCE, Options.Rebalance): with
// RebalanceAggressive the processes of a process-mode history start with
// thresholds low enough that the replicate queues move replicas and
// transfer leases for balance while the faults are injected, and the
// moves they carry out are counted from their /metrics.
const (
	// RebalanceDefault: the processes keep the default thresholds.
	RebalanceDefault = "default"
	// RebalanceAggressive: replica and lease counts are balanced to within
	// one of the mean (thresholds 0, minimum margins 1) and a store is hot
	// 10 % above the mean QPS.
	RebalanceAggressive = "aggressive"
)

// aggressiveRebalanceArgs are the `start` flags of RebalanceAggressive.
var aggressiveRebalanceArgs = []string{
	"--range-rebalance-threshold", "0", "--min-range-rebalance", "1",
	"--lease-rebalance-threshold", "0", "--min-lease-rebalance", "1",
	"--qps-rebalance-threshold", "0.1",
}

// rebalanceArgs are the extra `start` flags of a rebalance setting ("" is
// RebalanceDefault); any other value is refused, naming CHAOS_REBALANCE.
func rebalanceArgs(setting string) ([]string, error) {
	switch setting {
	case "", RebalanceDefault:
		return nil, nil
	case RebalanceAggressive:
		return aggressiveRebalanceArgs, nil
	}
	return nil, fmt.Errorf("chaos: CHAOS_REBALANCE (Options.Rebalance) %q: want %q or %q", setting, RebalanceDefault, RebalanceAggressive)
}

// queueMetric is the replicate queue's counter of the changes it carried
// out (rebalance.Metrics), by action and result.
const queueMetric = "rangestore_replicate_queue_actions_total"

// moveCounter counts the rebalancing moves the processes' replicate
// queues carried out (result ok): replica moves (action rebalance) and
// lease transfers (action transfer-lease; chaos sets no lease
// preferences, so these are balancing transfers: counts or load). A
// process's counters restart from 0 when it restarts, so each sample adds
// what grew since the last one; moves made after the last sample of a
// process that is then killed are missed (the counts are a lower bound).
type moveCounter struct {
	last           map[string][2]int // HTTP address -> last sampled counters
	Moves, Leases  int
	Scrapes, Fails int
}

func newMoveCounter() *moveCounter { return &moveCounter{last: map[string][2]int{}} }

// sample scrapes the processes at addrs (all at once, at most 1 s each)
// and adds what their counters grew by. It returns when every scrape has.
func (c *moveCounter) sample(ctx context.Context, addrs []string) {
	type got struct {
		addr string
		v    [2]int
		err  error
	}
	out := make([]got, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := scrapeMoves(ctx, a)
			out[i] = got{addr: a, v: v, err: err}
		}()
	}
	wg.Wait()
	for _, g := range out {
		c.Scrapes++
		if g.err != nil {
			c.Fails++ // killed or restarting: its next sample counts
			continue
		}
		prev := c.last[g.addr]
		for k := range g.v {
			d := g.v[k] - prev[k]
			if d < 0 { // restarted: counting from 0 again
				d = g.v[k]
			}
			if k == 0 {
				c.Moves += d
			} else {
				c.Leases += d
			}
		}
		c.last[g.addr] = g.v
	}
}

// scrapeMoves reads one process's rebalance and transfer-lease counters
// (result ok) from its /metrics.
func scrapeMoves(ctx context.Context, addr string) ([2]int, error) {
	page, err := MetricsPage(ctx, addr, time.Second)
	if err != nil {
		return [2]int{}, err
	}
	return parseMoves(bufio.NewScanner(bytes.NewReader(page)))
}

// MetricsPage fetches the /metrics page a process serves at addr (see
// ProcCluster.ServeHTTP), within timeout.
func MetricsPage(ctx context.Context, addr string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics of %s: %s", addr, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// parseMoves finds the counters in Prometheus text: lines such as
// rangestore_replicate_queue_actions_total{action="rebalance",result="ok"} 3.
func parseMoves(s *bufio.Scanner) ([2]int, error) {
	var v [2]int
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, queueMetric+"{") || !strings.Contains(line, `result="ok"`) {
			continue
		}
		var k int
		switch {
		case strings.Contains(line, `action="rebalance"`):
			k = 0
		case strings.Contains(line, `action="transfer-lease"`):
			k = 1
		default:
			continue
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return v, fmt.Errorf("metrics line %q: %w", line, err)
		}
		v[k] += int(f)
	}
	return v, s.Err()
}
