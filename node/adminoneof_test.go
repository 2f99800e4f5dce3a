package node

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestRangeRequestRequestsOrAdmin: a range request carries KV requests or
// one admin command (the oneof admin), never both. One with both is refused
// by every replica with INVALID_ARGUMENT naming the two fields, and neither
// the requests nor the admin command take effect.
func TestRangeRequestRequestsOrAdmin(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{SplitCheckInterval: time.Hour})
	ctx := ctxT(t)
	var rd *rspb.RangeDescriptor // the range starting at client key "C"
	for _, d := range tc.Init.Ranges {
		if bytes.Equal(d.StartKey, keys.UserKey([]byte("C"))) {
			rd = d
		}
	}
	uk := func(s string) []byte { return keys.UserKey([]byte(s)) }
	put := badPutU(uk("C-both"), []byte("v"))
	// Each case sets the oneof on a request that carries a put.
	for _, c := range []struct {
		field string
		set   func(*rspb.RangeRequest)
	}{
		{"admin_split", func(r *rspb.RangeRequest) {
			r.Admin = &rspb.RangeRequest_AdminSplit{AdminSplit: &rspb.AdminSplitRequest{SplitKey: uk("C-m")}}
		}},
		{"admin_merge", func(r *rspb.RangeRequest) {
			r.Admin = &rspb.RangeRequest_AdminMerge{AdminMerge: &rspb.AdminMergeRequest{}}
		}},
		{"admin_freeze", func(r *rspb.RangeRequest) {
			r.Admin = &rspb.RangeRequest_AdminFreeze{AdminFreeze: &rspb.AdminFreezeRequest{MergeInto: rd.RangeId - 1}}
		}},
		{"admin_log_compacted", func(r *rspb.RangeRequest) { r.Admin = &rspb.RangeRequest_AdminLogCompacted{AdminLogCompacted: true} }},
	} {
		req := &rspb.RangeRequest{RangeId: rd.RangeId, ProposalId: []byte(fmt.Sprintf("both-%s", c.field)),
			Timestamp: &rspb.Timestamp{WallTime: time.Now().UnixNano()}, Requests: []*rspb.RequestUnion{put}}
		c.set(req)
		for i := 0; i < tc.NumNodes(); i++ {
			resp, err := rspb.NewInternalClient(tc.Conn(i)).RangeBatch(ctx, req)
			if err != nil || resp.Error == nil || resp.Error.Code != rspb.RangeError_INVALID_ARGUMENT ||
				!strings.Contains(resp.Error.Message, "requests") || !strings.Contains(resp.Error.Message, c.field) {
				t.Fatalf("requests and %s to n%d: got %v / %v, want INVALID_ARGUMENT naming requests and %s", c.field, i+1, err, resp, c.field)
			}
		}
	}
	// Nothing changed: the range has its initial descriptor on every node
	// (not split, merged or frozen) and the put was not applied.
	for i := 0; i < tc.NumNodes(); i++ {
		for _, ri := range tc.Node(i).Ranges() {
			if ri.RangeDescriptor.GetRangeId() != rd.RangeId {
				continue
			}
			if !proto.Equal(ri.RangeDescriptor, rd) || ri.FrozenInto != 0 {
				t.Fatalf("n%d: r%d is now %v (frozen into %d), want it unchanged: %v", i+1, rd.RangeId, ri.RangeDescriptor, ri.FrozenInto, rd)
			}
		}
	}
	if g, err := tc.KV(0).Get(ctx, &rspb.GetRequest{Key: []byte("C-both")}); err != nil || g.Found {
		t.Fatalf("the refused batch's put was applied: %v %v", g, err)
	}
}
