package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestParallelCommitCoordinatorKilled: the gateway node coordinating an
// atomic batch of two writes in two ranges is killed (SIGKILL, from inside
// at the crash point txn-after-stage) once its parallel commit's round
// succeeded: the record is STAGING, both intents are written, and the
// client has no answer. The next reader (another node) recovers the
// transaction: it committed, since both writes landed, so the reader sees
// both new values at one timestamp; the recovery resolves the other
// intent too (a reader of it through a third node meets no intent: it
// pushes nothing and recovers nothing), and the killed node, restarted,
// reads the same.
func TestParallelCommitCoordinatorKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	once := filepath.Join(t.TempDir(), "crash-once")
	pc := newProcClusterArgs(t, 3, []string{"--http-addr", chaos.FreeLoopback},
		"RANGESTORE_CRASH_AT=txn-after-stage", "RANGESTORE_CRASH_ONCE_FILE="+once)
	pc.cliRetry(60*time.Second, "init", "--host", pc.addrs[0], "--split-at", "m")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kv := func(i int) rspb.KVClient { return rspb.NewKVClient(pc.Conn(i)) }
	if !waitUntil(60*time.Second, func() bool {
		_, e1 := kv(1).Put(ctx, &rspb.PutRequest{Key: []byte("a"), Value: []byte("a0")})
		_, e2 := kv(1).Put(ctx, &rspb.PutRequest{Key: []byte("z"), Value: []byte("z0")})
		return e1 == nil && e2 == nil
	}) {
		t.Fatal("the cluster never served the first writes")
	}
	if err := os.WriteFile(once, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := kv(0).Batch(ctx, &rspb.BatchRequest{Atomic: true, Requests: []*rspb.RequestUnion{
		{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("a"), Value: []byte("a1")}}},
		{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("z"), Value: []byte("z1")}}}}})
	if err == nil {
		t.Fatalf("the atomic batch was answered (%v): its coordinator never reached txn-after-stage", resp)
	}
	if !waitUntil(20*time.Second, func() bool { return !pc.Running(0) }) {
		t.Fatalf("the coordinator's process is still running after the batch failed: %v", err)
	}
	t.Logf("the atomic batch's call ended with the coordinator's death: %v", err)

	start := time.Now()
	var g *rspb.GetResponse
	if !waitUntil(60*time.Second, func() bool {
		g, err = kv(1).Get(ctx, &rspb.GetRequest{Key: []byte("a")})
		return err == nil
	}) {
		t.Fatalf("read of a through n2 after the kill: %v", err)
	}
	if string(g.GetKv().GetValue()) != "a1" {
		t.Fatalf("read of a: %v; want a1 (both writes of the STAGING transaction landed: it committed)", g)
	}
	t.Logf("the reader on the second node answered after %v (it waited for the STAGING record to expire, then recovered it)", time.Since(start).Round(time.Millisecond))
	if n := metricSum(ctx, t, pc.HTTPAddr(1), "rangestore_txn_recoveries_total"); n < 1 {
		t.Fatalf("the reader's node ran %v recoveries; want 1", n)
	}
	pushes := metricSum(ctx, t, pc.HTTPAddr(2), "rangestore_txn_pushes_total") + metricSum(ctx, t, pc.HTTPAddr(2), "rangestore_txn_recoveries_total")
	z, err := kv(2).Get(ctx, &rspb.GetRequest{Key: []byte("z")})
	if err != nil || string(z.GetKv().GetValue()) != "z1" || z.Kv.Timestamp.WallTime != g.Kv.Timestamp.WallTime || z.Kv.Timestamp.Logical != g.Kv.Timestamp.Logical {
		t.Fatalf("read of z through n3: %v, %v; want z1 at a's commit timestamp %v", z, err, g.Kv.Timestamp)
	}
	if after := metricSum(ctx, t, pc.HTTPAddr(2), "rangestore_txn_pushes_total") + metricSum(ctx, t, pc.HTTPAddr(2), "rangestore_txn_recoveries_total"); after != pushes {
		t.Fatalf("the reader of z pushed or recovered %v times: its intent was not resolved by the recovery", after-pushes)
	}
	pc.SetEnv(0)
	pc.start(0)
	for _, want := range []*rspb.KeyValue{g.Kv, z.Kv} {
		var r *rspb.GetResponse
		if !waitUntil(60*time.Second, func() bool {
			r, err = kv(0).Get(ctx, &rspb.GetRequest{Key: want.Key})
			return err == nil
		}) {
			t.Fatalf("read of %s through the restarted node: %v", want.Key, err)
		}
		if !bytes.Equal(r.GetKv().GetValue(), want.Value) {
			t.Fatalf("read of %s through the restarted node: %v; want %s", want.Key, r, want.Value)
		}
	}
}
