package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rangestore/rangestore/chaos"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestDeadNodeRepairAndStaleGC (issue 11, acceptance 2): four processes,
// every range on three (so a dead node's replicas have somewhere to go),
// --time-until-store-dead 10s. Under a porcupine-checked get/put/cas load,
// n2 is SIGKILLed and stays down: every range it held gets a replacement
// and loses the dead replica, ending with three live voters (the meta
// range too).
// The test reports the time from the kill to full repair and the data
// moved. Then n2 restarts with its old store: its removed replicas are
// garbage-collected (it ends holding exactly what meta names), reads
// through it join the checked history and return every data key's value,
// and the whole history is linearizable.
func TestDeadNodeRepairAndStaleGC(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const procs = 4
	pc := newProcClusterB(t, procs)
	for i := 0; i < procs; i++ {
		pc.SetArg(i, "--time-until-store-dead", "10s", false)
		pc.SetArg(i, "--replicate-queue-interval", "1s", false)
		if _, err := pc.ServeHTTP(i); err != nil { // its /metrics: snapshot bytes sent
			t.Fatal(err)
		}
		pc.kill(i) // not initialized yet: restarted with the flags
		pc.start(i)
	}
	pc.cliRetry(60*time.Second, "init", "--host", pc.addrs[0], "--initial-splits", "6")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	began := time.Now()
	since := func() float64 { return time.Since(began).Seconds() }

	// Data to move: 1000 keys of 256 bytes.
	data := map[string]string{}
	for i := 0; i < 1000; i++ {
		data[fmt.Sprintf("d%04d", i)] = fmt.Sprintf("%04d-%s", i, strings.Repeat("x", 251))
	}
	var fill sync.WaitGroup
	var fillErr atomic.Value
	for g := 0; g < 8; g++ {
		fill.Add(1)
		go func() {
			defer fill.Done()
			for i := g; i < 1000; i += 8 {
				k := fmt.Sprintf("d%04d", i)
				if !waitUntil(60*time.Second, func() bool {
					actx, c := context.WithTimeout(ctx, 5*time.Second)
					defer c()
					_, err := pc.KV(i%procs).Put(actx, &rspb.PutRequest{Key: []byte(k), Value: []byte(data[k])})
					return err == nil
				}) {
					fillErr.Store(fmt.Errorf("put %s did not succeed", k))
					return
				}
			}
		}()
	}
	fill.Wait()
	if err, _ := fillErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	descs, err := readMetaAll(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	const victim = 2
	vi := pc.indexOfNodeID(victim)
	held := 0
	for _, d := range descs {
		for _, r := range d.Replicas {
			if r.NodeId == victim {
				held++
			}
		}
	}
	t.Logf("%.1fs: %d ranges, n%d holds %d replicas; load starts", since(), len(descs), victim, held)

	load := startCheckedLoad(ctx, pc, 6, 30)
	defer load.halt()
	time.Sleep(2 * time.Second)

	// Kill n2 for good (until the GC part below).
	load.setTargets(othersThan(procs, vi))
	pc.kill(vi)
	killed := time.Now()
	t.Logf("%.1fs: n%d (process %d) SIGKILLed", since(), victim, vi)
	sentBefore, err := snapshotsSentBy(ctx, pc, othersThan(procs, vi))
	if err != nil {
		t.Fatal(err)
	}

	// Every range, the meta range too: three voters, none on n2.
	var lastErr error
	var repaired []*rspb.RangeDescriptor
	if !waitUntil(150*time.Second, func() bool {
		repaired, lastErr = readMetaAll(ctx, pc)
		if lastErr != nil {
			return false
		}
		for _, d := range repaired {
			voters := 0
			for _, r := range d.Replicas {
				if r.NodeId == victim {
					lastErr = fmt.Errorf("r%d still has a replica on n%d: %v", d.RangeId, victim, d.Replicas)
					return false
				}
				if r.Type == rspb.ReplicaType_VOTER {
					voters++
				}
			}
			if voters != 3 || len(d.Replicas) != 3 {
				lastErr = fmt.Errorf("r%d has %v", d.RangeId, d.Replicas)
				return false
			}
		}
		return true
	}) {
		t.Fatalf("repair after killing n%d: %v", victim, lastErr)
	}
	repairTime := time.Since(killed)
	sentAfter, err := snapshotsSentBy(ctx, pc, othersThan(procs, vi))
	if err != nil {
		t.Fatal(err)
	}
	sent := sentAfter.minus(sentBefore)
	// Data moved: the replicated size estimate of every range that gained
	// a replica (each got one snapshot of about that size).
	before := map[uint64]bool{}
	for _, d := range descs {
		for _, r := range d.Replicas {
			if r.NodeId == victim {
				before[d.RangeId] = true
			}
		}
	}
	var moved int64
	counted := map[uint64]bool{}
	for i := 0; i < procs; i++ {
		if i == vi {
			continue
		}
		r, err := rspb.NewAdminClient(pc.Conn(i)).Ranges(ctx, &rspb.RangesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, ri := range r.Ranges {
			id := ri.RangeDescriptor.GetRangeId()
			if before[id] && !counted[id] {
				moved += ri.ApproxBytes
				counted[id] = true
			}
		}
	}
	movedRanges := len(counted)
	t.Logf("%.1fs: every range has 3 live voters, none on n%d: repaired in %.1f s after the kill (time-until-store-dead 10s); %s (%s of the live nodes, from the kill to full repair); %d ranges re-replicated, their size estimates sum to %.1f MiB",
		since(), victim, repairTime.Seconds(), sent, metricSnapshotBytesSent, movedRanges, float64(moved)/(1<<20))
	if movedRanges > 0 && sent.bytes <= 0 {
		t.Fatalf("%d ranges were re-replicated but the live nodes' snapshot counters did not grow (a repair sends snapshots): %s", movedRanges, sent)
	}
	time.Sleep(time.Second) // load goes on after the repair

	// n2 comes back with its old store: its removed replicas are collected
	// and it serves reads (routed to the real leaseholders) from then on.
	// From its restart on, the load also goes through n2 (reads and writes,
	// in the checked history: a stale read would not linearize), and its
	// stale replicas are asked directly (Internal.RangeBatch by range ID,
	// bypassing routing) until they are gone: none may answer a read.
	stale := map[uint64]*rspb.RangeDescriptor{}
	for _, d := range descs {
		if before[d.RangeId] && d.RangeId != 1 {
			stale[d.RangeId] = d
		}
	}
	pc.start(vi)
	load.setTargets(allProcs(procs))
	load.readOnly(vi)
	t.Logf("%.1fs: n%d restarted with its old store; the load goes through it too", since(), victim)
	var final []*rspb.RangeDescriptor
	refused, refusals := 0, map[string]int{}
	if !waitUntil(90*time.Second, func() bool {
		for _, d := range stale {
			k := probeKey(d)
			actx, c := context.WithTimeout(ctx, 2*time.Second)
			resp, err := rspb.NewInternalClient(pc.Conn(vi)).RangeBatch(actx, &rspb.RangeRequest{RangeId: d.RangeId,
				Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: k}}}}})
			c()
			if err == nil && resp.Error == nil {
				t.Fatalf("n%d's removed replica of r%d answered a read: %v", victim, d.RangeId, resp)
			}
			if err == nil {
				refused++
				refusals[resp.Error.Code.String()]++
			}
		}
		final, lastErr = checkMetaMatchesReplicas(ctx, pc)
		return lastErr == nil
	}) {
		t.Fatalf("after n%d's restart: %v", victim, lastErr)
	}
	r2, err := rspb.NewAdminClient(pc.Conn(vi)).Ranges(ctx, &rspb.RangesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	inMeta := 0
	for _, d := range final {
		for _, r := range d.Replicas {
			if r.NodeId == victim {
				inMeta++
			}
		}
	}
	t.Logf("%.1fs: n%d holds %d replicas (held %d before the kill), meta names it in %d", since(), victim, len(r2.Ranges), held, inMeta)
	t.Logf("%.1fs: n%d's removed replicas refused %d direct reads before they were collected (%v)", since(), victim, refused, refusals)
	// The same direct read is answered by the range's leaseholder now (the
	// refusals above are not the probe's own fault).
	for id := range stale {
		var m *rspb.RangeDescriptor
		for _, d := range final {
			if d.RangeId == id {
				m = d
			}
		}
		if m == nil {
			continue // merged away meanwhile
		}
		k := probeKey(m)
		if !waitUntil(30*time.Second, func() bool {
			for _, r := range m.Replicas {
				actx, c := context.WithTimeout(ctx, 2*time.Second)
				resp, err := rspb.NewInternalClient(pc.Conn(pc.indexOfNodeID(r.NodeId))).RangeBatch(actx, &rspb.RangeRequest{RangeId: id,
					Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: k}}}}})
				c()
				if err == nil && resp.Error == nil {
					return true
				}
			}
			return false
		}) {
			t.Fatalf("no replica of r%d answers the direct read", id)
		}
	}
	time.Sleep(2 * time.Second)
	for k, v := range data {
		actx, c := context.WithTimeout(ctx, 5*time.Second)
		g, err := pc.KV(vi).Get(actx, &rspb.GetRequest{Key: []byte(k)})
		c()
		if err != nil || !g.Found || string(g.Kv.Value) != v {
			t.Fatalf("get %s through n%d = %v %v, want the value written", k, victim, g, err)
		}
	}
	t.Logf("%.1fs: all %d data keys read correctly through n%d", since(), len(data), victim)
	res := load.stop()
	t.Logf("load: %d operations (%d through n%d after its restart, %d ambiguous)", res.ops, res.viaVictim, victim, res.ambiguous)
	if res.viaVictim == 0 {
		t.Fatalf("no operation went through n%d after its restart", victim)
	}
	if res.check != porcupine.Ok {
		t.Fatalf("linearizability check of %d operations: %s", res.ops, res.check)
	}
	t.Logf("%.1fs: the history is linearizable", since())
}

func othersThan(n, skip int) []int {
	var out []int
	for i := 0; i < n; i++ {
		if i != skip {
			out = append(out, i)
		}
	}
	return out
}

func allProcs(n int) []int { return othersThan(n, -1) }

// checkedLoad runs clients doing get, put and compare-and-set on a few
// keys through the target processes and records a porcupine history
// (chaos.KVModel).
type checkedLoad struct {
	pc        *procCluster
	mu        sync.Mutex
	targets   []int
	readVia   int // a process also read through (-1: none)
	ops       []porcupine.Operation
	viaVictim int
	ambiguous int
	start     time.Time
	stopc     chan struct{}
	wg        sync.WaitGroup
	once      sync.Once
}

type loadResult struct {
	ops, viaVictim, ambiguous int
	check                     porcupine.CheckResult
}

func startCheckedLoad(ctx context.Context, pc *procCluster, clients, nkeys int) *checkedLoad {
	l := &checkedLoad{pc: pc, targets: allProcs(pc.NumNodes()), readVia: -1, start: time.Now(), stopc: make(chan struct{})}
	for c := 0; c < clients; c++ {
		l.wg.Add(1)
		go l.client(ctx, c, nkeys)
	}
	return l
}

func (l *checkedLoad) setTargets(t []int) {
	l.mu.Lock()
	l.targets = t
	l.mu.Unlock()
}

// readOnly makes process i serve reads too (counted apart).
func (l *checkedLoad) readOnly(i int) {
	l.mu.Lock()
	l.readVia = i
	l.mu.Unlock()
}

func (l *checkedLoad) client(ctx context.Context, c, nkeys int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewSource(int64(c) + 1))
	seen := map[string]string{}
	for seq := 0; ; seq++ {
		select {
		case <-l.stopc:
			return
		default:
		}
		if ctx.Err() != nil {
			return
		}
		k := fmt.Sprintf("p%02d", rng.Intn(nkeys))
		p := rng.Intn(10)
		l.mu.Lock()
		via := l.targets[rng.Intn(len(l.targets))]
		readVia := l.readVia
		l.mu.Unlock()
		if p < 4 && readVia >= 0 && rng.Intn(2) == 0 {
			via = readVia
		}
		kvc := l.pc.KV(via)
		in, out := chaos.Input{Key: k}, chaos.Output{}
		octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
		call := time.Since(l.start).Nanoseconds()
		var err error
		switch {
		case p < 4:
			in.Op = "get"
			var g *rspb.GetResponse
			g, err = kvc.Get(octx, &rspb.GetRequest{Key: []byte(k)})
			if err == nil {
				out.Found = g.Found
				if g.Found {
					out.Value = string(g.Kv.Value)
					seen[k] = out.Value
				}
			}
		case p < 7:
			in.Op, in.Value = "put", fmt.Sprintf("c%d-%d", c, seq)
			_, err = kvc.Put(octx, &rspb.PutRequest{Key: []byte(k), Value: []byte(in.Value)})
		default:
			in.Op, in.Value, in.Expected = "cas", fmt.Sprintf("c%d-%d", c, seq), seen[k]
			req := &rspb.ConditionalPutRequest{Key: []byte(k), Value: []byte(in.Value), ExpectedValue: []byte(in.Expected)}
			if in.Expected == "" {
				req.ExpectAbsent, in.Absent = true, true
			}
			var r *rspb.ConditionalPutResponse
			r, err = kvc.ConditionalPut(octx, req)
			if err == nil {
				out.OK = r.Succeeded
				if !r.Succeeded && r.ActualExists {
					seen[k] = string(r.ActualValue)
				}
			}
		}
		ocancel()
		ret := time.Since(l.start).Nanoseconds()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			if in.Op == "get" || strings.Contains(err.Error(), "Error while dialing") {
				continue // no effect
			}
			out.Unknown = true
			ret = -1 // patched to the end of the history
		}
		l.mu.Lock()
		l.ops = append(l.ops, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
		if out.Unknown {
			l.ambiguous++
		}
		if via == readVia {
			l.viaVictim++
		}
		l.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

// halt stops the clients (idempotent).
func (l *checkedLoad) halt() {
	l.once.Do(func() {
		close(l.stopc)
		l.wg.Wait()
	})
}

// stop stops the clients and checks the history.
func (l *checkedLoad) stop() loadResult {
	l.halt()
	l.mu.Lock()
	defer l.mu.Unlock()
	end := time.Since(l.start).Nanoseconds() + 1
	for i := range l.ops {
		if l.ops[i].Return < 0 {
			l.ops[i].Return = end
		}
	}
	check := porcupine.CheckOperationsTimeout(chaos.KVModel.ToModel(), l.ops, 2*time.Minute)
	return loadResult{ops: len(l.ops), viaVictim: l.viaVictim, ambiguous: l.ambiguous, check: check}
}

// probeKey is a key of d's span to read directly (Internal.RangeBatch
// takes internal keys): its first user key, else its start key.
func probeKey(d *rspb.RangeDescriptor) []byte {
	k := d.StartKey
	if bytes.Compare(k, keys.UserPrefix) < 0 && keys.InSpan(keys.UserPrefix, d.StartKey, d.EndKey) {
		k = keys.UserPrefix
	}
	return k
}
