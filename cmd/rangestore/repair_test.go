package main

import (
	"bytes"
	"context"
	"fmt"
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
	// Every process serves its /metrics on a loopback port: the snapshot
	// bytes sent are read from them.
	pc := newInitProcCluster(t, procs, 6, "--time-until-store-dead", "10s", "--replicate-queue-interval", "1s", "--http-addr", chaos.FreeLoopback)
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
	const victim = 2
	descs, held := readMetaHeld(t, ctx, pc, victim)
	vi := pc.indexOfNodeID(victim)
	t.Logf("%.1fs: %d ranges, n%d holds %d replicas; load starts", since(), len(descs), victim, held)

	load := startCheckedLoad(ctx, pc, 6, 30)
	defer load.Stop()
	time.Sleep(2 * time.Second)

	// Kill n2 for good (until the GC part below).
	load.SetTargets(othersThan(procs, vi))
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
	load.SetTargets(allProcs(procs))
	load.PreferReads(vi)
	t.Logf("%.1fs: n%d restarted with its old store; the load goes through it too", since(), victim)
	var final []*rspb.RangeDescriptor
	refused, refusals := 0, map[string]int{}
	if !waitUntil(90*time.Second, func() bool {
		for _, d := range stale {
			k := probeKey(d)
			actx, c := context.WithTimeout(ctx, 2*time.Second)
			resp, err := rspb.NewInternalClient(pc.NodeConn(vi)).RangeBatch(actx, &rspb.RangeRequest{RangeId: d.RangeId,
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
	inMeta := replicasOn(final, victim)
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
				resp, err := rspb.NewInternalClient(pc.NodeConn(pc.indexOfNodeID(r.NodeId))).RangeBatch(actx, &rspb.RangeRequest{RangeId: id,
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
	res := load.finish()
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

// checkedLoad is a chaos.ClientLoad (get, put, compare-and-set and
// conditional delete) on nkeys keys p00.. through the processes, whose
// history is checked against chaos.KVModel when it stops.
type checkedLoad struct{ *chaos.ClientLoad }

type loadResult struct {
	ops, viaVictim, ambiguous int
	check                     porcupine.CheckResult
}

func startCheckedLoad(ctx context.Context, pc *procCluster, clients, nkeys int) checkedLoad {
	ks := make([]string, nkeys)
	for i := range ks {
		ks[i] = fmt.Sprintf("p%02d", i)
	}
	return checkedLoad{chaos.StartClients(ctx, pc, chaos.ClientOptions{Keys: ks, Clients: clients, Seed: 1,
		Timeout: 5 * time.Second, Pause: 2 * time.Millisecond})}
}

// finish stops the clients and checks the history; viaVictim counts the
// operations through the node named by PreferReads.
func (l checkedLoad) finish() loadResult {
	l.Stop()
	st := l.Stats()
	check := porcupine.CheckOperationsTimeout(chaos.KVModel.ToModel(), l.History(), 2*time.Minute)
	return loadResult{ops: st.Ops, viaVictim: st.ViaPreferred, ambiguous: st.Ambiguous, check: check}
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
