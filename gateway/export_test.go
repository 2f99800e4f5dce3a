package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

// exportNode is a one-node cluster whose user range r3 evaluates reads
// against a real engine with a tiny response budget, so that every export
// answer is cut short with a resume key.
type exportNode struct {
	rtNode
	eng    *kv.Engine
	served int
}

func (n *exportNode) Send(ctx context.Context, req *rspb.RangeRequest) *rspb.RangeResponse {
	if req.RangeId != n.record.RangeId {
		return n.rtNode.Send(ctx, req)
	}
	n.served++
	resps, err := batcheval.EvalRead(n.eng, req.Requests, kv.Timestamp{}, 200)
	if err != nil {
		return &rspb.RangeResponse{Error: &rspb.RangeError{Code: rspb.RangeError_UNKNOWN, Message: err.Error()}}
	}
	return &rspb.RangeResponse{Responses: resps}
}

// TestRouterPagesExports: an export through Send (one response, paged
// by finishExport) and through ExportStream (chunk by chunk) returns every
// version of the window, in key order, though each replica answer holds
// only a few.
func TestRouterPagesExports(t *testing.T) {
	eng, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	b := eng.NewBatch()
	for i := 0; i < 40; i++ {
		k := keys.UserKey([]byte(fmt.Sprintf("k%02d", i)))
		if err := b.PutMVCC(k, kv.Timestamp{WallTime: 10}, []byte("value-of-some-length")); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			if err := b.DeleteMVCC(k, kv.Timestamp{WallTime: 20}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	n := &exportNode{rtNode: rtNode{
		meta:   &rspb.RangeDescriptor{RangeId: 1, StartKey: keys.KeyMin, EndKey: keys.SystemStart, Generation: 1, Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}},
		record: &rspb.RangeDescriptor{RangeId: 3, StartKey: keys.UserPrefix, EndKey: keys.KeyMax, Generation: 1, Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}},
	}, eng: eng}
	r := NewRouter(n, n, nil, nil)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, en := keys.UserSpan(nil, nil)
	for _, c := range []struct {
		start        *rspb.Timestamp
		keys, tombst int
	}{{nil, 30, 0}, {&rspb.Timestamp{WallTime: 5}, 40, 10}, {&rspb.Timestamp{WallTime: 10}, 10, 10}} {
		q := &rspb.ExportRequest{StartKey: st, EndKey: en, StartTs: c.start, EndTs: &rspb.Timestamp{WallTime: 30}}
		n.served = 0
		resps, err := r.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Export{Export: proto.Clone(q).(*rspb.ExportRequest)}}})
		if err != nil {
			t.Fatal(err)
		}
		viaSend := resps[0].GetExport()
		sendCalls := n.served
		n.served = 0
		var viaStream []*rspb.ExportedVersion
		if err := r.ExportStream(ctx, q, func(vs []*rspb.ExportedVersion) error { viaStream = append(viaStream, vs...); return nil }); err != nil {
			t.Fatal(err)
		}
		for what, vs := range map[string][]*rspb.ExportedVersion{"Send": viaSend.GetVersions(), "ExportStream": viaStream} {
			dels := 0
			for i, v := range vs {
				if v.Deleted {
					dels++
				}
				if i > 0 && string(vs[i-1].Key) >= string(v.Key) {
					t.Fatalf("%s from %v: key %q after %q", what, c.start, v.Key, vs[i-1].Key)
				}
			}
			if len(vs) != c.keys || dels != c.tombst {
				t.Fatalf("%s from %v: %d versions (%d deleted), want %d (%d)", what, c.start, len(vs), dels, c.keys, c.tombst)
			}
		}
		if len(viaSend.GetResumeKey()) > 0 || sendCalls < 3 || n.served < 3 {
			t.Fatalf("from %v: resume key %q left; %d and %d replica answers (the budget should have cut each short)", c.start, viaSend.GetResumeKey(), sendCalls, n.served)
		}
	}
}
