package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestThresholdsSetting: Start refuses invalid thresholds naming the field
// before creating the store; a node's thresholds reach range explain (its
// inputs list them when they are not the defaults).
func TestThresholdsSetting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	th := allocator.DefaultThresholds()
	th.LeaseThreshold = -1
	_, err := Start(Config{StoreDir: dir, ListenAddr: freeAddr(t), RaftAddr: freeAddr(t), Thresholds: th})
	if err == nil || !strings.Contains(err.Error(), "LeaseThreshold") {
		t.Fatalf("Start with LeaseThreshold -1: %v, want an error naming it", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("Start created %s before refusing", dir)
	}

	th = allocator.DefaultThresholds()
	th.RangeThreshold, th.MinRangeRebalance = 0, 1
	tc := startCluster(t, TestClusterOptions{Thresholds: th})
	var user uint64
	for _, d := range tc.Init.Ranges {
		if keys.IsUserKey(d.StartKey) {
			user = d.RangeId
			break
		}
	}
	resp, err := rspb.NewAdminClient(tc.Conn(0)).ExplainRange(ctxT(t), &rspb.ExplainRangeRequest{RangeId: user})
	if err != nil {
		t.Fatal(err)
	}
	if want := "balance thresholds " + th.String(); !strings.Contains(resp.Inputs, want) {
		t.Fatalf("explain r%d inputs %q: want %q", user, resp.Inputs, want)
	}
	t.Logf("explain r%d inputs: %s", user, resp.Inputs)
}
