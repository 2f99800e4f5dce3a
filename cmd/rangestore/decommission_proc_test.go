package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestDecommissionUnderLoadProcesses (issue 11, acceptance 3): four
// processes, every range on three. Under a porcupine-checked get/put/cas
// load and acknowledged writes, `node decommission` of a node (through
// another node's Admin service) ends with 0 replicas on it, marked
// decommissioned, with no acknowledged write lost; the history is
// linearizable; stopping the node afterwards leaves every range with three
// voters on the other nodes, each taking a write and a read through every
// remaining node.
func TestDecommissionUnderLoadProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const procs = 4
	pc := newInitProcCluster(t, procs, 6, "--replicate-queue-interval", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	began := time.Now()
	since := func() float64 { return time.Since(began).Seconds() }

	w := newAckedWriter(pc, 300)
	if err := w.fill(ctx); err != nil {
		t.Fatal(err)
	}
	const victim = 3
	descs, held := readMetaHeld(t, ctx, pc, victim)
	vi := pc.indexOfNodeID(victim)
	t.Logf("%.1fs: %d ranges, n%d holds %d replicas; load starts", since(), len(descs), victim, held)
	load := startCheckedLoad(ctx, pc, 4, 30)
	defer load.Stop()
	stopWriters := w.run(ctx, 4)
	var writersStopped atomic.Bool
	defer func() {
		if !writersStopped.Load() {
			stopWriters()
		}
	}()

	admin := rspb.NewAdminClient(pc.Conn((vi + 1) % procs))
	started := time.Now()
	var last *rspb.DecommissionNodeStatus
	var lastErr error
	var logOnce sync.Once
	if !waitUntil(150*time.Second, func() bool {
		actx, c := context.WithTimeout(ctx, 20*time.Second)
		defer c()
		resp, err := admin.Decommission(actx, &rspb.DecommissionRequest{NodeIds: []uint64{victim}})
		if err != nil {
			lastErr = err
			return false
		}
		last = resp.Nodes[0]
		logOnce.Do(func() { t.Logf("%.1fs: decommission n%d: %s", since(), victim, last.Message) })
		return last.ReplicaCount == 0
	}) {
		t.Fatalf("n%d not emptied: %v (last status %v)", victim, lastErr, last)
	}
	emptied := time.Since(started)
	actx, c := context.WithTimeout(ctx, 20*time.Second)
	resp, err := admin.Decommission(actx, &rspb.DecommissionRequest{NodeIds: []uint64{victim}, Finish: true})
	c()
	if err != nil {
		t.Fatalf("finish the decommission of n%d: %v", victim, err)
	}
	if m := resp.Nodes[0].Membership; m != rspb.MembershipState_MEMBERSHIP_DECOMMISSIONED {
		t.Fatalf("n%d after finish: %v (%s)", victim, m, resp.Nodes[0].Message)
	}
	t.Logf("%.1fs: n%d emptied %.1fs after the decommission started (held %d replicas), then marked decommissioned", since(), victim, emptied.Seconds(), held)

	stopWriters()
	writersStopped.Store(true)
	res := load.finish()
	t.Logf("load: %d operations (%d ambiguous)", res.ops, res.ambiguous)
	if res.check != porcupine.Ok {
		t.Fatalf("the history is not linearizable (%v)", res.check)
	}
	if _, err := w.check(ctx); err != nil {
		t.Fatalf("acknowledged writes: %v", err)
	}
	t.Logf("%.1fs: the history is linearizable; every acknowledged write is there", since())

	// Stop the decommissioned node: nothing is under-replicated.
	pc.kill(vi)
	final, err := readMetaAll(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range final {
		voters := 0
		for _, r := range d.Replicas {
			if r.NodeId == victim {
				t.Fatalf("r%d still names n%d: %v", d.RangeId, victim, d.Replicas)
			}
			if r.Type == rspb.ReplicaType_VOTER {
				voters++
			}
		}
		if voters != 3 {
			t.Fatalf("r%d has %d voters after the decommission: %v", d.RangeId, voters, d.Replicas)
		}
	}
	if err := probeEveryRange(ctx, pc, final); err != nil {
		t.Fatalf("with n%d stopped: %v", victim, err)
	}
	t.Logf("%.1fs: n%d stopped: %s", since(), victim, fmt.Sprintf("%d ranges, each with 3 voters on the other nodes, take a write and a read through every remaining node", len(final)))
}
