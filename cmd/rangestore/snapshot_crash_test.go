package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestSnapshotCrashBeforeIngest: the node receiving a new replica's
// snapshot is SIGKILLed after staging it and before ingesting it
// (RANGESTORE_CRASH_AT=snapshot-before-ingest). Restarted, it comes back
// with the replica's old (empty) state, the snapshot is applied again, the
// change completes, and the new replica's data and state digests equal
// the other replicas' at one applied index.
func TestSnapshotCrashBeforeIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pc := newProcClusterB(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	init, err := pc.Init(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var d *rspb.RangeDescriptor
	for _, r := range init.Ranges {
		if keys.InSpan(keys.UserKey([]byte("k")), r.StartKey, r.EndKey) {
			d = r
		}
	}
	has := map[uint64]bool{}
	for _, r := range d.Replicas {
		has[r.NodeId] = true
	}
	target := -1
	var targetID uint64
	for id := uint64(1); id <= uint64(pc.NumNodes()); id++ {
		if !has[id] {
			target, targetID = pc.indexOfNodeID(id), id
		}
	}
	if target < 0 {
		t.Fatalf("r%d is on every node", d.RangeId)
	}
	val := bytes.Repeat([]byte("x"), 16<<10)
	for j := 0; j < 64; j++ {
		k := []byte(fmt.Sprintf("k%03d", j))
		for {
			pctx, c := context.WithTimeout(ctx, 5*time.Second)
			_, err := pc.KV(0).Put(pctx, &rspb.PutRequest{Key: k, Value: val})
			c()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("put %s: %v", k, err)
			}
		}
	}
	// Arm the crash point on the target only.
	pc.kill(target)
	pc.SetEnv(target, "RANGESTORE_CRASH_AT=snapshot-before-ingest")
	pc.start(target)
	admin := rspb.NewAdminClient(pc.Conn(0))
	// Ask for the change (again while the target is still starting) until
	// the target dies at the crash point.
	if !waitUntil(60*time.Second, func() bool {
		if !pc.Running(target) {
			return true
		}
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := admin.ChangeReplicas(cctx, &rspb.ChangeReplicasRequest{RangeId: d.RangeId, AddNodeIds: []uint64{targetID}})
		ccancel()
		t.Logf("add n%d to r%d with the crash armed: %v", targetID, d.RangeId, err)
		return !pc.Running(target)
	}) {
		t.Fatalf("n%d did not reach snapshot-before-ingest", targetID)
	}
	if l := pc.Log(target, 4000); !strings.Contains(l, "RANGESTORE_CRASH_AT=snapshot-before-ingest reached") {
		t.Fatalf("n%d stopped without reaching the crash point:\n%s", targetID, l)
	}
	pc.SetEnv(target)
	pc.start(target)
	// Asking again rolls the change forward.
	var nd *rspb.RangeDescriptor
	if !waitUntil(60*time.Second, func() bool {
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		defer ccancel()
		resp, err := admin.ChangeReplicas(cctx, &rspb.ChangeReplicasRequest{RangeId: d.RangeId, AddNodeIds: []uint64{targetID}})
		if err != nil {
			t.Logf("add n%d again: %v", targetID, err)
			return false
		}
		nd = resp.RangeDescriptor
		return true
	}) {
		t.Fatalf("the change did not complete after the restart")
	}
	var voters int
	for _, r := range nd.Replicas {
		if r.NodeId == targetID && r.Type != rspb.ReplicaType_VOTER {
			t.Fatalf("n%d's replica is %v after the change: %v", targetID, r.Type, nd)
		}
		voters++
	}
	if voters != 4 {
		t.Fatalf("r%d after the change: %v", d.RangeId, nd)
	}
	// Every replica, the restarted one included, holds the same data and
	// state at one applied index.
	last, err := waitDigestsAgree(ctx, pc, nd, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("r%d digests after the restart: %s", d.RangeId, last)
}

// waitDigestsAgree waits (30 s) until every replica d names reports the
// same data and state digests at one applied index, over at least
// minKeys data keys (Internal RangeBatch AdminDigest), and returns the
// digests as text.
func waitDigestsAgree(ctx context.Context, pc *procCluster, d *rspb.RangeDescriptor, minKeys int64) (string, error) {
	var last string
	if !waitUntil(30*time.Second, func() bool {
		var ds []*rspb.ReplicaDigest
		for _, r := range d.Replicas {
			i := pc.indexOfNodeID(r.NodeId)
			dctx, c := context.WithTimeout(ctx, 5*time.Second)
			resp, err := rspb.NewInternalClient(pc.NodeConn(i)).RangeBatch(dctx, &rspb.RangeRequest{RangeId: d.RangeId,
				Admin: &rspb.RangeRequest_AdminDigest{AdminDigest: true}}, grpc.WaitForReady(true))
			c()
			if err != nil || resp.Error != nil {
				last = fmt.Sprintf("digest on n%d: %v %v", r.NodeId, err, resp.GetError())
				return false
			}
			ds = append(ds, resp.GetReplicaDigest())
		}
		last = ""
		for _, x := range ds {
			last += fmt.Sprintf("n%d@%d keys=%d data=%x state=%x; ", x.NodeId, x.AppliedIndex, x.DataKeys, x.DataHash[:4], x.StateHash[:4])
		}
		for _, x := range ds {
			if x.AppliedIndex != ds[0].AppliedIndex || !bytes.Equal(x.DataHash, ds[0].DataHash) ||
				!bytes.Equal(x.StateHash, ds[0].StateHash) || x.DataKeys < minKeys {
				return false
			}
		}
		return true
	}) {
		return last, fmt.Errorf("replicas of r%d differ: %s", d.RangeId, last)
	}
	return last, nil
}
