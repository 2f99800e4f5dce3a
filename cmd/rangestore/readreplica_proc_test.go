package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rangestore/rangestore/chaos"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/timeutil"
)

// Issue 13's process-level acceptance: three voters and read-replica
// processes (`start --read-replica --join`), SIGKILL and SIGTERM.
//
// The processes close timestamps rrClosedTarget behind their clocks (the
// default is 3 s): a CAUSAL read waits about that long for a fresh
// bookmark, so a short target keeps the trials fast. The replicate queue
// runs every 500 ms so that the read replicas get their non-voters soon.

const rrClosedTarget = 250 * time.Millisecond

// rrCluster is three voters (processes 0-2) and read replicas.
type rrCluster struct {
	*procCluster
	rrs   []int    // process indexes of the read replicas
	rrIDs []uint64 // their node IDs
}

// startRRCluster starts three voters (with env), initializes them with two
// splits, and adds readReplicas read-replica processes; it waits until
// each holds a non-voter of every range.
func startRRCluster(t *testing.T, ctx context.Context, readReplicas int, env ...string) *rrCluster {
	t.Helper()
	args := []string{"--closed-timestamp-target", rrClosedTarget.String(), "--replicate-queue-interval", "500ms",
		"--read-replica-ttl", "10s", "--http-addr", chaos.FreeLoopback}
	pc := newProcClusterArgs(t, 3, args, env...)
	pc.cliRetry(120*time.Second, "init", "--host", pc.addrs[0], "--initial-splits", "2")
	c := &rrCluster{procCluster: pc}
	t.Cleanup(func() {
		if t.Failed() {
			for _, i := range c.rrs {
				t.Logf("--- read replica process %d log (tail)\n%s", i, pc.Log(i, 3000))
			}
		}
	})
	for k := 0; k < readReplicas; k++ {
		i, err := pc.AddProcArgs([]int{0, 1, 2}, []string{"--read-replica"})
		if err != nil {
			t.Fatal(err)
		}
		c.rrs = append(c.rrs, i)
	}
	timeutil.WaitFor(t, 60*time.Second, "the read replicas in the node directory", func() error {
		nodes, err := c.nodes(ctx, 0)
		if err != nil {
			return err
		}
		c.rrIDs = c.rrIDs[:0]
		for _, i := range c.rrs {
			var id uint64
			for _, ns := range nodes {
				if ns.Node.GetAddress() == pc.Addrs[i] && ns.Node.GetReadReplica() {
					id = ns.Node.NodeId
				}
			}
			if id == 0 {
				return fmt.Errorf("process %d (%s) not listed as a read replica", i, pc.Addrs[i])
			}
			c.rrIDs = append(c.rrIDs, id)
		}
		return nil
	})
	start := time.Now()
	timeutil.WaitFor(t, 90*time.Second, "a non-voter of every range on every read replica", func() error {
		return c.everyRangeOnReadReplicas(ctx)
	})
	t.Logf("read replicas %v (processes %v) hold a non-voter of every range %v after they were listed", c.rrIDs, c.rrs, time.Since(start).Round(100*time.Millisecond))
	return c
}

func (c *rrCluster) nodes(ctx context.Context, i int) ([]*rspb.NodeStatus, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := rspb.NewAdminClient(c.Conn(i)).Nodes(cctx, &rspb.NodesRequest{})
	if err != nil {
		return nil, err
	}
	return resp.Nodes, nil
}

func (c *rrCluster) ranges(ctx context.Context, i int) ([]*rspb.RangeInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := rspb.NewAdminClient(c.Conn(i)).Ranges(cctx, &rspb.RangesRequest{})
	if err != nil {
		return nil, err
	}
	return resp.Ranges, nil
}

// everyRangeOnReadReplicas: every range voter 0 holds (every range: three
// voters on three nodes) names each read replica as a non-voter, and the
// read replica's replica runs.
func (c *rrCluster) everyRangeOnReadReplicas(ctx context.Context) error {
	infos, err := c.ranges(ctx, 0)
	if err != nil {
		return err
	}
	if len(infos) == 0 {
		return errors.New("n1 lists no ranges")
	}
	for k, i := range c.rrs {
		local, err := c.ranges(ctx, i)
		if err != nil {
			return fmt.Errorf("ranges of read replica n%d: %w", c.rrIDs[k], err)
		}
		has := map[uint64]bool{}
		for _, ri := range local {
			has[ri.RangeDescriptor.GetRangeId()] = true
		}
		for _, ri := range infos {
			d := ri.RangeDescriptor
			nonVoter := false
			for _, r := range d.GetReplicas() {
				nonVoter = nonVoter || (r.NodeId == c.rrIDs[k] && r.Type == rspb.ReplicaType_NON_VOTER)
			}
			if !nonVoter || !has[d.RangeId] {
				return fmt.Errorf("r%d: non-voter on n%d %t, running there %t (replicas %v)", d.RangeId, c.rrIDs[k], nonVoter, has[d.RangeId], d.GetReplicas())
			}
		}
	}
	return nil
}

// caughtUp: read replica process i has applied, in every range, at least
// the index the range's leaseholder had applied when asked.
func (c *rrCluster) caughtUp(ctx context.Context, i int) error {
	want := map[uint64]uint64{}
	for v := 0; v < 3; v++ {
		if !c.Running(v) {
			continue
		}
		infos, err := c.ranges(ctx, v)
		if err != nil {
			return err
		}
		for _, ri := range infos {
			if ri.LeaseValid && ri.Lease.GetNodeId() != 0 && c.indexOfNodeID(ri.Lease.GetNodeId()) == v {
				want[ri.RangeDescriptor.GetRangeId()] = ri.AppliedIndex
			}
		}
	}
	infos, err := c.ranges(ctx, i)
	if err != nil {
		return err
	}
	got := map[uint64]uint64{}
	for _, ri := range infos {
		got[ri.RangeDescriptor.GetRangeId()] = ri.AppliedIndex
	}
	if len(want) == 0 {
		return errors.New("no leaseholder answered")
	}
	for id, w := range want {
		if got[id] < w {
			return fmt.Errorf("r%d: applied %d of the leaseholder's %d", id, got[id], w)
		}
	}
	return nil
}

// warmFollowerReads waits until each read replica serves a causal read of
// each key itself (its follower-read count rises by one for one read):
// a non-voter that has just been given its snapshot has no closed
// timestamp until the range's next write or side-transport publication,
// and redirects causal reads to the leaseholder until then
// (decideFollowerRead: "no closed timestamp yet"), which a count of the
// reads the read replicas served would take for a failure. The read
// replicas are warmed one after another, each key in turn.
func (c *rrCluster) warmFollowerReads(t *testing.T, ctx context.Context, keys []string) {
	t.Helper()
	start := time.Now()
	for _, rr := range c.rrs {
		for _, key := range keys {
			timeutil.WaitFor(t, 60*time.Second, fmt.Sprintf("read replica process %d serving a causal read of %s", rr, key), func() error {
				put, err := c.putRetry(ctx, 0, key, "warm")
				if err != nil {
					return err
				}
				before, err := c.sumMetric(ctx, "rangestore_follower_reads_total", rr)
				if err != nil {
					return err
				}
				gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err = c.KV(rr).Get(gctx, causalGet(key, put.Bookmark))
				cancel()
				if err != nil {
					return err
				}
				after, err := c.sumMetric(ctx, "rangestore_follower_reads_total", rr)
				if err != nil {
					return err
				}
				if after <= before {
					return fmt.Errorf("the read went elsewhere (follower reads on process %d: %.0f before, %.0f after)", rr, before, after)
				}
				return nil
			})
		}
	}
	t.Logf("each read replica served a causal read of each of %d keys itself after %v", len(keys), time.Since(start).Round(100*time.Millisecond))
}

// putRetry writes key through process i, retrying (another process if
// one is down) until ctx ends.
func (c *rrCluster) putRetry(ctx context.Context, i int, key, val string) (*rspb.PutResponse, error) {
	for attempt := 0; ; attempt++ {
		p := (i + attempt) % 3
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.KV(p).Put(pctx, &rspb.PutRequest{Key: []byte(key), Value: []byte(val)})
		cancel()
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("put %s: %w", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func causalGet(key string, bookmarks ...[]byte) *rspb.GetRequest {
	return &rspb.GetRequest{Key: []byte(key), ReadMode: rspb.ReadMode_CAUSAL, Bookmarks: bookmarks,
		BookmarkTimeout: durationpb.New(5 * time.Second)}
}

// sumMetric scrapes an unlabelled series from the processes at idx.
func (c *rrCluster) sumMetric(ctx context.Context, name string, idx ...int) (float64, error) {
	var sum float64
	for _, i := range idx {
		m, err := scrapeMetrics(ctx, c.HTTPAddr(i), name)
		if err != nil {
			return 0, fmt.Errorf("process %d: %w", i, err)
		}
		sum += m[name]
	}
	return sum, nil
}

func percentiles(ds []time.Duration) (p50, p99, maxD time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[len(s)*99/100], s[len(s)-1]
}

// causalTrials is RANGESTORE_CAUSAL_TRIALS, else 1,000.
func causalTrials(t *testing.T) int {
	v := os.Getenv("RANGESTORE_CAUSAL_TRIALS")
	if v == "" {
		return 1000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("RANGESTORE_CAUSAL_TRIALS=%q: want a positive count", v)
	}
	return n
}

// TestReadReplicaCausalReads (issue 13, item 1): a write through a voter
// read back from a read replica with read_mode CAUSAL and the write's
// bookmark returns the written value, in every trial (concurrent
// workers); then eight sessions hop between the five processes at random
// (seeded) while a read replica and later a voter are killed with SIGKILL
// and restarted, and every session's acknowledged history keeps
// read-your-writes and monotonic reads (checkSessions).
func TestReadReplicaCausalReads(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	trials, workers := causalTrials(t), 16
	// 1,000 trials take about 25 s here; 10,000 want `go test -timeout 20m`.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+time.Duration(trials)*60*time.Millisecond)
	defer cancel()
	c := startRRCluster(t, ctx, 2)
	keys := make([]string, workers)
	for w := range keys {
		keys[w] = fmt.Sprintf("causal-%02d", w)
	}
	c.warmFollowerReads(t, ctx, keys)
	followerBefore, err := c.sumMetric(ctx, "rangestore_follower_reads_total", c.rrs...)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var waits []time.Duration
	var stale, readRetries int
	began := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := w; j < trials; j += workers {
				key, val := keys[w], fmt.Sprintf("v%d", j)
				put, err := c.putRetry(ctx, j%3, key, val)
				if err != nil {
					errc <- err
					return
				}
				rr := c.rrs[j%len(c.rrs)]
				var g *rspb.GetResponse
				start := time.Now()
				for attempt := 0; ; attempt++ {
					gctx, gcancel := context.WithTimeout(ctx, 10*time.Second)
					g, err = c.KV(rr).Get(gctx, causalGet(key, put.Bookmark))
					gcancel()
					if err == nil {
						break
					}
					if attempt == 2 {
						errc <- fmt.Errorf("causal get of %s via read replica process %d: %w", key, rr, err)
						return
					}
					mu.Lock()
					readRetries++
					mu.Unlock()
				}
				mu.Lock()
				waits = append(waits, time.Since(start))
				if !g.Found || string(g.Kv.Value) != val {
					stale++
					t.Errorf("stale causal read of %s via process %d: got %q (found %t), wrote %q", key, rr, g.Kv.GetValue(), g.Found, val)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	followerAfter, err := c.sumMetric(ctx, "rangestore_follower_reads_total", c.rrs...)
	if err != nil {
		t.Fatal(err)
	}
	p50, p99, mx := percentiles(waits)
	t.Logf("causal reads on the read replicas: %d trials (%d workers) in %v, %d stale, %d read retries; wait p50 %v p99 %v max %v (closed timestamp target %v); follower reads served by the read replicas: %.0f",
		len(waits), workers, time.Since(began).Round(100*time.Millisecond), stale, readRetries, p50.Round(time.Millisecond), p99.Round(time.Millisecond), mx.Round(time.Millisecond), rrClosedTarget, followerAfter-followerBefore)
	if stale != 0 || len(waits) != trials {
		t.Fatalf("%d of %d causal reads were stale", stale, len(waits))
	}
	if followerAfter-followerBefore < float64(trials) {
		t.Fatalf("the read replicas served %.0f follower reads for %d causal reads", followerAfter-followerBefore, trials)
	}

	// Sessions under SIGKILL.
	res := runSessions(t, ctx, c, 8, func(logf func(string, ...any)) {
		step := func(what string, d time.Duration, f func()) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d): // the load's pace, not a correctness wait
			}
			f()
			logf("%s", what)
		}
		rr, voter := c.rrs[0], 2
		step(fmt.Sprintf("SIGKILL read replica process %d", rr), 3*time.Second, func() { c.kill(rr) })
		step(fmt.Sprintf("restart read replica process %d", rr), 4*time.Second, func() { c.start(rr) })
		step(fmt.Sprintf("SIGKILL voter process %d", voter), 4*time.Second, func() { c.kill(voter) })
		step(fmt.Sprintf("restart voter process %d", voter), 4*time.Second, func() { c.start(voter) })
		step("end of the session load", 5*time.Second, func() {})
	})
	t.Logf("sessions: %d acknowledged operations (%d writes, the two outside writers' included, %d reads), %d failed writes, %d failed reads (%v)",
		len(res.hist), res.writes, len(res.hist)-res.writes, res.failedWrites, res.failedReads, res.failures)
	if v := checkSessions(res.hist); len(v) > 0 {
		for _, x := range v[:min(len(v), 20)] {
			t.Error(x)
		}
		t.Fatalf("%d session guarantee violations", len(v))
	}
	if len(res.hist)-res.writes < 100 {
		t.Fatalf("only %d acknowledged reads", len(res.hist)-res.writes)
	}
}

// sessionOp is one acknowledged operation of a session.
type sessionOp struct {
	Session int
	Write   bool
	Key     string
	Value   string
	// TS: a write's commit timestamp; a read's value's commit timestamp
	// (empty: not found).
	TS   kv.Timestamp
	Proc int // the process it went through
}

// checkSessions checks read-your-writes and monotonic reads per session
// and per key over a history of acknowledged operations, in which the
// operations of one session are in that session's order (sessions are
// sequential): a read must return a version (by commit timestamp) at
// least as new as the session's last write of the key and as the last
// version it read of the key; and the value read at a timestamp must be
// the one an acknowledged write committed at that timestamp, if any. It
// returns the violations (none: empty).
func checkSessions(hist []sessionOp) []string {
	written := map[string]map[kv.Timestamp]string{}
	for _, op := range hist {
		if op.Write {
			if written[op.Key] == nil {
				written[op.Key] = map[kv.Timestamp]string{}
			}
			written[op.Key][op.TS] = op.Value
		}
	}
	type sk struct {
		s int
		k string
	}
	lastWrite, lastRead := map[sk]kv.Timestamp{}, map[sk]kv.Timestamp{}
	var out []string
	for i, op := range hist {
		id := sk{op.Session, op.Key}
		if op.Write {
			if lastWrite[id].Less(op.TS) {
				lastWrite[id] = op.TS
			}
			continue
		}
		if w := lastWrite[id]; op.TS.Less(w) {
			out = append(out, fmt.Sprintf("op %d: session %d read %s at %s (%q via process %d), older than its own write at %s (read-your-writes)",
				i, op.Session, op.Key, op.TS, op.Value, op.Proc, w))
		}
		if r := lastRead[id]; op.TS.Less(r) {
			out = append(out, fmt.Sprintf("op %d: session %d read %s at %s (%q via process %d), older than its previous read at %s (monotonic reads)",
				i, op.Session, op.Key, op.TS, op.Value, op.Proc, r))
		}
		if v, ok := written[op.Key][op.TS]; ok && !op.TS.IsEmpty() && v != op.Value {
			out = append(out, fmt.Sprintf("op %d: session %d read %s = %q at %s via process %d, but the write committed then was %q",
				i, op.Session, op.Key, op.Value, op.TS, op.Proc, v))
		}
		if lastRead[id].Less(op.TS) {
			lastRead[id] = op.TS
		}
	}
	return out
}

type sessionResult struct {
	hist                      []sessionOp
	writes                    int
	failedWrites, failedReads int
	failures                  map[string]int // failed operations by gRPC code / reason
}

// runSessions runs n sessions until faults returns. Each session (seeded)
// picks a process at random for every operation, writes (Put) its own
// and shared keys and reads them with CAUSAL and the newest bookmark it
// has seen: of its acknowledged writes and of the versions it read
// (GetResponse.bookmark).
func runSessions(t *testing.T, ctx context.Context, c *rrCluster, n int, faults func(logf func(string, ...any))) sessionResult {
	began := time.Now()
	logf := func(f string, args ...any) {
		t.Logf("%.1fs: %s", time.Since(began).Seconds(), fmt.Sprintf(f, args...))
	}
	var stop atomic.Bool
	var mu sync.Mutex
	res := sessionResult{failures: map[string]int{}}
	hists := make([][]sessionOp, n)
	procs := append([]int{0, 1, 2}, c.rrs...)
	var wg sync.WaitGroup
	// Two writers outside the sessions overwrite the shared keys all the
	// time: a session reading them through replicas whose closed
	// timestamps differ would go back in time without the bookmarks of
	// what it read.
	others := make([][]sessionOp, 2)
	for w := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; !stop.Load() && ctx.Err() == nil; seq++ {
				key, val := fmt.Sprintf("sess-shared-%d", seq%3), fmt.Sprintf("w%d-%d", w, seq)
				octx, cancel := context.WithTimeout(ctx, 8*time.Second)
				resp, err := c.KV(seq%3).Put(octx, &rspb.PutRequest{Key: []byte(key), Value: []byte(val)})
				cancel()
				if err == nil {
					others[w] = append(others[w], sessionOp{Session: -1 - w, Write: true, Key: key, Value: val, TS: ranges.TSFromProto(resp.CommitTimestamp), Proc: seq % 3})
				}
			}
		}()
	}
	for s := 0; s < n; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(1300 + s)))
			var bm []byte
			var bmTS kv.Timestamp
			for seq := 0; !stop.Load() && ctx.Err() == nil; seq++ {
				p := procs[rng.Intn(len(procs))]
				key := fmt.Sprintf("sess-shared-%d", rng.Intn(3))
				if rng.Intn(2) == 0 {
					key = fmt.Sprintf("sess-%d-%d", s, rng.Intn(3))
				}
				octx, cancel := context.WithTimeout(ctx, 8*time.Second)
				if rng.Intn(2) == 0 {
					val := fmt.Sprintf("s%d-%d", s, seq)
					resp, err := c.KV(p).Put(octx, &rspb.PutRequest{Key: []byte(key), Value: []byte(val)})
					cancel()
					if err != nil {
						mu.Lock()
						res.failedWrites++
						res.failures["put "+failureReason(err)]++
						mu.Unlock()
						continue
					}
					ts := ranges.TSFromProto(resp.CommitTimestamp)
					if bmTS.Less(ts) {
						bm, bmTS = resp.Bookmark, ts
					}
					hists[s] = append(hists[s], sessionOp{Session: s, Write: true, Key: key, Value: val, TS: ts, Proc: p})
					continue
				}
				var bms [][]byte
				if bm != nil {
					bms = [][]byte{bm}
				}
				g, err := c.KV(p).Get(octx, causalGet(key, bms...))
				cancel()
				if err != nil {
					mu.Lock()
					res.failedReads++
					res.failures["get "+failureReason(err)]++
					mu.Unlock()
					continue
				}
				op := sessionOp{Session: s, Key: key, Proc: p}
				if g.Found {
					op.Value, op.TS = string(g.Kv.Value), ranges.TSFromProto(g.Kv.Timestamp)
					if bmTS.Less(op.TS) {
						bm, bmTS = g.Bookmark, op.TS
					}
				}
				hists[s] = append(hists[s], op)
			}
		}()
	}
	faults(logf)
	stop.Store(true)
	wg.Wait()
	for _, h := range append(hists, others...) {
		res.hist = append(res.hist, h...)
		for _, op := range h {
			if op.Write {
				res.writes++
			}
		}
	}
	return res
}

// failureReason names a failed operation's error: its gRPC code, and the
// ErrorInfo reason if there is one (BOOKMARK_TIMEOUT).
func failureReason(err error) string {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if r, ok := d.(interface{ GetReason() string }); ok && r.GetReason() != "" {
			return st.Code().String() + "/" + r.GetReason()
		}
	}
	if st.Code() == codes.Unknown {
		return "unknown"
	}
	return st.Code().String()
}

// TestCheckSessions: the session checker accepts a history that keeps
// read-your-writes and monotonic reads, and names each violation in
// crafted stale histories.
func TestCheckSessions(t *testing.T) {
	ts := func(w int64) kv.Timestamp { return kv.Timestamp{WallTime: w} }
	good := []sessionOp{
		{Session: 1, Write: true, Key: "a", Value: "s1-0", TS: ts(10)},
		{Session: 2, Write: true, Key: "a", Value: "s2-0", TS: ts(20)},
		{Session: 1, Key: "a", Value: "s1-0", TS: ts(10)}, // own write: may miss s2's
		{Session: 1, Key: "a", Value: "s2-0", TS: ts(20)},
		{Session: 2, Key: "a", Value: "s2-0", TS: ts(20)},
		{Session: 2, Key: "b"}, // never written: not found
	}
	if v := checkSessions(good); len(v) != 0 {
		t.Fatalf("a good history: %v", v)
	}
	for _, tc := range []struct {
		name string
		hist []sessionOp
		want string
	}{
		{"read-your-writes", []sessionOp{
			{Session: 1, Write: true, Key: "a", Value: "s1-0", TS: ts(10)},
			{Session: 1, Write: true, Key: "a", Value: "s1-1", TS: ts(30)},
			{Session: 1, Key: "a", Value: "s1-0", TS: ts(10)},
		}, "read-your-writes"},
		{"own write not found", []sessionOp{
			{Session: 1, Write: true, Key: "a", Value: "s1-0", TS: ts(10)},
			{Session: 1, Key: "a"},
		}, "read-your-writes"},
		{"monotonic reads", []sessionOp{
			{Session: 1, Write: true, Key: "a", Value: "s1-0", TS: ts(10)},
			{Session: 2, Write: true, Key: "a", Value: "s2-0", TS: ts(20)},
			{Session: 3, Key: "a", Value: "s2-0", TS: ts(20)},
			{Session: 3, Key: "a", Value: "s1-0", TS: ts(10)},
		}, "monotonic reads"},
		{"wrong value", []sessionOp{
			{Session: 1, Write: true, Key: "a", Value: "s1-0", TS: ts(10)},
			{Session: 2, Key: "a", Value: "s9-9", TS: ts(10)},
		}, "the write committed then"},
	} {
		v := checkSessions(tc.hist)
		if len(v) != 1 || !strings.Contains(v[0], tc.want) {
			t.Fatalf("%s: violations %q, want one naming %q", tc.name, v, tc.want)
		}
	}
}

// TestReadReplicaBoundedStaleness (issue 13, item 2): BOUNDED_STALENESS
// reads (max_staleness 5 s, no bookmark) on the read replicas of a key
// overwritten every 20 ms: the staleness observed (the reader's clock
// minus the commit timestamp of the value read) stays within the closed
// timestamp target + 1 s at p99, and the reads are follower reads of the
// read replicas: the voters' lease reads grow by about what they grow by
// in a control window of the same length without the reads (background
// traffic: meta and liveness reads), far less than the reads made.
func TestReadReplicaBoundedStaleness(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startRRCluster(t, ctx, 2)
	const key = "bs-hot"
	var stopWriter atomic.Bool
	var writes atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := 0; !stopWriter.Load() && ctx.Err() == nil; j++ {
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := c.KV(j%3).Put(wctx, &rspb.PutRequest{Key: []byte(key), Value: []byte(strconv.Itoa(j))}); err == nil {
				writes.Add(1)
			}
			wcancel()
			time.Sleep(20 * time.Millisecond) // the write load's pace
		}
	}()
	defer func() { stopWriter.Store(true); wg.Wait() }()
	voters := []int{0, 1, 2}
	leaseReads := func() float64 {
		v, err := c.sumMetric(ctx, "rangestore_lease_reads_total", voters...)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	followerReads := func() float64 {
		v, err := c.sumMetric(ctx, "rangestore_follower_reads_total", c.rrs...)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	timeutil.WaitFor(t, 30*time.Second, "the writer's first writes", func() error {
		if writes.Load() < 10 {
			return fmt.Errorf("%d writes", writes.Load())
		}
		return nil
	})
	const window = 4 * time.Second
	// Control: the writer alone.
	l0 := leaseReads()
	controlEnd := time.Now().Add(window)
	timeutil.WaitFor(t, 2*window, "the control window", func() error {
		if time.Now().Before(controlEnd) {
			return errors.New("running")
		}
		return nil
	})
	l1, f1 := leaseReads(), followerReads()
	// The reads: four readers on the read replicas.
	var mu sync.Mutex
	var staleness []time.Duration
	var readErrs []error
	readEnd := time.Now().Add(window)
	var rwg sync.WaitGroup
	for r := 0; r < 4; r++ {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			p := c.rrs[r%len(c.rrs)]
			for time.Now().Before(readEnd) && ctx.Err() == nil {
				gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
				g, err := c.KV(p).Get(gctx, &rspb.GetRequest{Key: []byte(key), ReadMode: rspb.ReadMode_BOUNDED_STALENESS, MaxStaleness: durationpb.New(5 * time.Second)})
				gcancel()
				now := time.Now()
				mu.Lock()
				switch {
				case err != nil:
					readErrs = append(readErrs, fmt.Errorf("process %d: %w", p, err))
				case !g.Found:
					readErrs = append(readErrs, fmt.Errorf("process %d: %s not found", p, key))
				default:
					staleness = append(staleness, now.Sub(time.Unix(0, g.Kv.Timestamp.GetWallTime())))
				}
				mu.Unlock()
			}
		}()
	}
	rwg.Wait()
	l2, f2 := leaseReads(), followerReads()
	reads := len(staleness)
	p50, p99, mx := percentiles(staleness)
	t.Logf("bounded staleness (5s) reads on the read replicas: %d in %v (%d failed), %d writes so far; staleness p50 %v p99 %v max %v (closed timestamp target %v)",
		reads, window, len(readErrs), writes.Load(), p50.Round(time.Millisecond), p99.Round(time.Millisecond), mx.Round(time.Millisecond), rrClosedTarget)
	t.Logf("voters' lease reads: %.0f in the control window (writer alone), %.0f in the read window; read replicas' follower reads in the read window: %.0f", l1-l0, l2-l1, f2-f1)
	if len(readErrs) > 0 {
		t.Fatalf("%d bounded staleness reads failed, e.g. %v", len(readErrs), readErrs[0])
	}
	if reads < 200 {
		t.Fatalf("only %d reads", reads)
	}
	if limit := rrClosedTarget + time.Second; p99 > limit {
		t.Fatalf("staleness p99 %v above the closed timestamp target + 1s (%v)", p99, limit)
	}
	if f2-f1 < float64(reads) {
		t.Fatalf("the read replicas served %.0f follower reads for %d reads", f2-f1, reads)
	}
	// Served by the leaseholders, the reads would add about their number
	// to the background the control window shows.
	if grew := l2 - l1; grew >= l1-l0+float64(reads)/2 {
		t.Fatalf("the voters' lease reads grew by %.0f during %d bounded staleness reads (control window: %.0f)", grew, reads, l1-l0)
	}
}

// listedOn returns the voters (process indexes) whose Nodes answer
// carries a store descriptor heard from node id by gossip: its whiteboard
// entry, neither removed nor hidden. A voter that does not answer counts
// as listing it.
func (c *rrCluster) listedOn(ctx context.Context, id uint64) []int {
	var out []int
	for v := 0; v < 3; v++ {
		nodes, err := c.nodes(ctx, v)
		if err != nil {
			out = append(out, v)
			continue
		}
		for _, ns := range nodes {
			if ns.Node.GetNodeId() == id && ns.Store != nil {
				out = append(out, v)
			}
		}
	}
	return out
}

// inRoutingTable reports whether voter 0's routing table names node id as
// a reader of any range.
func (c *rrCluster) inRoutingTable(ctx context.Context, id uint64) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rt, err := rspb.NewDiscoveryClient(c.Conn(0)).GetRoutingTable(cctx, &rspb.GetRoutingTableRequest{})
	if err != nil {
		return false, err
	}
	for _, e := range rt.Ranges {
		for _, r := range e.Readers {
			if r.NodeId == id {
				return true, nil
			}
		}
	}
	return false, nil
}

// TestReadReplicaLifecycle (issue 13, item 3): a read replica's SIGTERM
// removes its whiteboard entry (every voter's Nodes answer stops carrying
// it) within 1 s of its exit; a SIGKILL hides it once gossip declares the
// process dead; restarted, it catches up from the log and serves causal
// reads with a fresh bookmark; killed again while the voters write enough
// to compact their logs past it (RANGESTORE_TESTING_SNAPSHOT_ENTRIES=200:
// a snapshot every 200 entries, 50 kept), restarted, it is caught up by a
// snapshot and serves causal reads of what was written while it was down.
func TestReadReplicaLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The voters log at info: the whiteboard's drop of an entry after the
	// read replica TTL is an info line.
	t.Setenv("CHAOS_LOG_LEVEL", "info")
	c := startRRCluster(t, ctx, 1, "RANGESTORE_TESTING_SNAPSHOT_ENTRIES=200")
	rr, rrID := c.rrs[0], c.rrIDs[0]
	waitListed := func(what string, d time.Duration) {
		t.Helper()
		timeutil.WaitFor(t, d, what, func() error {
			if l := c.listedOn(ctx, rrID); len(l) != 3 {
				return fmt.Errorf("listed on voters %v", l)
			}
			if in, err := c.inRoutingTable(ctx, rrID); err != nil {
				return err
			} else if !in {
				return errors.New("not a reader in the routing table")
			}
			return nil
		})
	}
	waitUnlisted := func(what string, d time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		timeutil.WaitFor(t, d, what, func() error {
			if l := c.listedOn(ctx, rrID); len(l) != 0 {
				return fmt.Errorf("still listed on voters %v", l)
			}
			return nil
		})
		took := time.Since(start)
		timeutil.WaitFor(t, d, what+" (routing table)", func() error {
			if in, err := c.inRoutingTable(ctx, rrID); err != nil {
				return err
			} else if in {
				return errors.New("still a reader in the routing table")
			}
			return nil
		})
		return took
	}
	causalCheck := func(what string, keys []string, vals []string, bm []byte) {
		t.Helper()
		for j, k := range keys {
			gctx, gcancel := context.WithTimeout(ctx, 10*time.Second)
			g, err := c.KV(rr).Get(gctx, causalGet(k, bm))
			gcancel()
			if err != nil || !g.Found || string(g.Kv.Value) != vals[j] {
				t.Fatalf("%s: causal read of %s on the read replica: %q (found %t), %v; want %q", what, k, g.GetKv().GetValue(), g.GetFound(), err, vals[j])
			}
		}
	}
	writeKeys := func(prefix string, n int) ([]string, []string, []byte) {
		t.Helper()
		keys, vals := make([]string, n), make([]string, n)
		var hi kv.Timestamp
		var bm []byte
		var mu sync.Mutex
		var wg sync.WaitGroup
		errc := make(chan error, 8)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := w; j < n; j += 8 {
					keys[j], vals[j] = fmt.Sprintf("%s-%04d", prefix, j), fmt.Sprintf("%s-v%d-%s", prefix, j, time.Now().Format(time.RFC3339Nano))
					resp, err := c.putRetry(ctx, j%3, keys[j], vals[j])
					if err != nil {
						errc <- err
						return
					}
					mu.Lock()
					if ts := ranges.TSFromProto(resp.CommitTimestamp); hi.Less(ts) {
						hi, bm = ts, resp.Bookmark
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		return keys, vals, bm
	}

	waitListed("the read replica on every voter's whiteboard and in the routing table", 30*time.Second)
	// SIGTERM: a clean leave removes the entry at once.
	signalled := time.Now()
	if !c.Terminate(rr, 30*time.Second) {
		t.Fatalf("the read replica did not exit within 30s of SIGTERM")
	}
	exited := time.Now()
	took := waitUnlisted("the terminated read replica off every whiteboard", 10*time.Second)
	t.Logf("SIGTERM: the read replica exited %v after the signal; its whiteboard entry was gone from every voter %v after its exit", exited.Sub(signalled).Round(time.Millisecond), took.Round(time.Millisecond))
	if took > time.Second {
		t.Fatalf("the whiteboard entry outlived a clean exit by %v (want ≤ 1s)", took)
	}
	c.start(rr)
	waitListed("the restarted read replica back on the whiteboards", 60*time.Second)
	// SIGKILL: hidden once gossip finds the process dead.
	c.kill(rr)
	killed := time.Now()
	took = waitUnlisted("the killed read replica hidden on every whiteboard", 60*time.Second)
	t.Logf("SIGKILL: the read replica's whiteboard entry was hidden on every voter %v after the kill (gossip dead detection)", took.Round(time.Millisecond))
	// Gone after the read replica TTL (10s after it was last heard): the
	// routing table reads voter 0's whiteboard, which drops the entry then.
	dropped := "gossip: read replica dropped from the whiteboard after the read replica TTL"
	timeutil.WaitFor(t, 40*time.Second, "the hidden entry dropped after the read replica TTL", func() error {
		if _, err := c.inRoutingTable(ctx, rrID); err != nil {
			return err
		}
		if l := lastLine(c.Log(0, 1<<20), dropped); !strings.Contains(l, fmt.Sprintf(" node=%d ", rrID)) {
			return errors.New("voter 0 has not logged the drop")
		}
		return nil
	})
	t.Logf("SIGKILL: voter 0 dropped the hidden entry %v after the kill (read replica TTL 10s since last heard): %s",
		time.Since(killed).Round(100*time.Millisecond), lastLine(c.Log(0, 1<<20), dropped))
	// Down: writes; restarted, it catches up from the log.
	keys, vals, bm := writeKeys("life-log", 40)
	c.start(rr)
	restarted := time.Now()
	timeutil.WaitFor(t, 60*time.Second, "the restarted read replica caught up", func() error { return c.caughtUp(ctx, rr) })
	t.Logf("restarted: applied indexes reached the leaseholders' %v after the start", time.Since(restarted).Round(100*time.Millisecond))
	causalCheck("after a restart", keys, vals, bm)
	fk, fv, fbm := writeKeys("life-fresh", 1)
	causalCheck("fresh bookmark after a restart", fk, fv, fbm)
	waitListed("the restarted read replica back on the whiteboards", 60*time.Second)

	// Down while the logs are compacted past it: a snapshot catches it up.
	c.kill(rr)
	sentBefore, err := c.sumMetric(ctx, metricSnapshotsSent, 0, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	keys, vals, bm = writeKeys("life-snap", 600)
	c.start(rr)
	restarted = time.Now()
	timeutil.WaitFor(t, 60*time.Second, "a snapshot received by the restarted read replica", func() error {
		got, err := c.sumMetric(ctx, metricSnapshotsReceived, rr)
		if err != nil {
			return err
		}
		if got < 1 {
			return errors.New("none yet")
		}
		return nil
	})
	timeutil.WaitFor(t, 60*time.Second, "the read replica caught up after the snapshot", func() error { return c.caughtUp(ctx, rr) })
	received, err := c.sumMetric(ctx, metricSnapshotsReceived, rr)
	if err != nil {
		t.Fatal(err)
	}
	sentAfter, err := c.sumMetric(ctx, metricSnapshotsSent, 0, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after 600 writes while it was down: the read replica applied %.0f snapshots (voters sent %.0f) and caught up %v after its start",
		received, sentAfter-sentBefore, time.Since(restarted).Round(100*time.Millisecond))
	if sentAfter-sentBefore < 1 {
		t.Fatalf("the voters sent no snapshot (%v before, %v after)", sentBefore, sentAfter)
	}
	causalCheck("after a snapshot", keys, vals, bm)
	fk, fv, fbm = writeKeys("life-fresh2", 1)
	causalCheck("fresh bookmark after a snapshot", fk, fv, fbm)
}

// lastLine returns the last line of log that contains sub.
func lastLine(log, sub string) string {
	i := strings.LastIndex(log, sub)
	if i < 0 {
		return ""
	}
	start := strings.LastIndexByte(log[:i], '\n') + 1
	end := strings.IndexByte(log[i:], '\n')
	if end < 0 {
		return log[start:]
	}
	return log[start : i+end]
}
