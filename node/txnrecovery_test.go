package node

import (
	"context"
	"testing"
	"time"

	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestTxnAbandonedCoordinator: a transaction whose coordinator stops
// (its node shut down without handing anything over: the record stays
// PENDING and its heartbeats end) blocks readers of its intents for about
// one liveness threshold (5 s), then the next reader aborts it and resolves
// its intents; the other writes of the transaction are gone too.
func TestTxnAbandonedCoordinator(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{SplitKeys: [][]byte{[]byte("m")}})
	ctx := ctxT(t)
	if _, err := tc.KV(1).Put(ctx, &rspb.PutRequest{Key: []byte("z"), Value: []byte("z0")}); err != nil {
		t.Fatal(err)
	}
	kv0 := tc.KV(0)
	beginWriting(ctx, t, kv0, txnPut("a", "a1"), txnPut("z", "z1"))
	tc.stopNode(0, false)
	start := time.Now()
	g, err := tc.KV(1).Get(ctx, &rspb.GetRequest{Key: []byte("z")})
	waited := time.Since(start)
	if err != nil || string(g.GetKv().GetValue()) != "z0" {
		t.Fatalf("read of z after the coordinator stopped: %v, %v; want z0 (its transaction aborted)", g, err)
	}
	if waited > 20*time.Second {
		t.Fatalf("the reader waited %v on an abandoned transaction", waited)
	}
	if g, err := tc.KV(2).Get(ctx, &rspb.GetRequest{Key: []byte("a")}); err != nil || g.Found {
		t.Fatalf("read of a: %v, %v; want nothing (the aborted transaction's write)", g, err)
	}
	t.Logf("the reader waited %v for the abandoned transaction", waited.Round(time.Millisecond))
}

// TestTxnCommittedUnresolved: a committed transaction whose intents
// outside its anchor's range were never resolved (its coordinator skipped
// it, as if it died right after committing) is found committed by the next
// reader, which resolves them: the writes are visible at the commit
// timestamp.
func TestTxnCommittedUnresolved(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{SplitKeys: [][]byte{[]byte("m")}, Txn: gateway.TxnConfig{TestingSkipResolve: true}})
	ctx := ctxT(t)
	kv0 := tc.KV(0)
	b := beginWriting(ctx, t, kv0, txnPut("a", "a1"), txnPut("z", "z1"))
	c, err := kv0.CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: b.Txn})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second) // no waiting on a committed record
	defer cancel()
	g, err := tc.KV(1).Get(rctx, &rspb.GetRequest{Key: []byte("z")})
	if err != nil || string(g.GetKv().GetValue()) != "z1" || g.Kv.Timestamp.WallTime != c.CommitTimestamp.WallTime || g.Kv.Timestamp.Logical != c.CommitTimestamp.Logical {
		t.Fatalf("read of z: %v, %v; want z1 at the commit timestamp %v", g, err, c.CommitTimestamp)
	}
}

// beginWriting begins a transaction at kv and runs reqs in it.
func beginWriting(ctx context.Context, t *testing.T, kv rspb.KVClient, reqs ...*rspb.RequestUnion) *rspb.BeginTxnResponse {
	t.Helper()
	b, err := kv.BeginTxn(ctx, &rspb.BeginTxnRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Batch(ctx, &rspb.BatchRequest{Txn: b.Txn, Requests: reqs}); err != nil {
		t.Fatal(err)
	}
	return b
}
