package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestConsistencyCheckFindsDivergence: the check passes on a healthy
// cluster and names the range whose replica got a write beside the Raft
// log (one node's engine, directly).
func TestConsistencyCheckFindsDivergence(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	for _, k := range []string{"A1", "P1", "o1"} {
		if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := checkConsistency(ctx, tc, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Diverged) != 0 || rep.Compared == 0 {
		t.Fatalf("healthy cluster: compared %d, skipped %v, diverged %v", rep.Compared, rep.Skipped, rep.Diverged)
	}
	t.Logf("healthy cluster: %d ranges compared, %d skipped", rep.Compared, len(rep.Skipped))

	// A version of P1 that only node 0's replica has.
	b := tc.Node(0).Engine().NewBatch()
	if err := b.PutMVCC(keys.UserKey([]byte("P1")), kv.Timestamp{WallTime: time.Now().UnixNano()}, []byte("beside raft")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	rep, err = checkConsistency(ctx, tc, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// P1's range only; the extra version shows as one more key there.
	if len(rep.Diverged) != 1 || !strings.Contains(rep.Diverged[0], "(2 keys)") || !strings.Contains(rep.Diverged[0], "(1 keys)") {
		t.Fatalf("after a write beside Raft on n1: compared %d, skipped %v, diverged %v", rep.Compared, rep.Skipped, rep.Diverged)
	}
	t.Logf("diverged: %s", rep.Diverged[0])
}
