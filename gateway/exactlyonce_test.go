package gateway

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// scriptNode is a one-node cluster whose user ranges change under the
// router: meta serves the current records, and each range answers writes
// through a script, which sees every request the router sent.
type scriptNode struct {
	meta *rspb.RangeDescriptor

	mu      sync.Mutex
	records []*rspb.RangeDescriptor // user ranges in meta, in key order
	sent    []*rspb.RangeRequest
	answer  func(req *rspb.RangeRequest, nth int) *rspb.RangeResponse
}

func (n *scriptNode) NodeAddress(uint64) (string, bool) { return "", false }
func (n *scriptNode) MetaRange() *rspb.RangeDescriptor  { return n.meta }
func (n *scriptNode) NodeID() uint64                    { return 1 }

func (n *scriptNode) Send(_ context.Context, req *rspb.RangeRequest) *rspb.RangeResponse {
	n.mu.Lock()
	defer n.mu.Unlock()
	if req.RangeId == n.meta.RangeId {
		start := req.Requests[0].GetScan().StartKey
		for _, d := range n.records {
			if bytes.Compare(keys.MetaKey(d.EndKey), start) >= 0 {
				b, _ := proto.Marshal(d)
				kv := &rspb.KeyValue{Key: keys.MetaKey(d.EndKey), Value: b}
				return &rspb.RangeResponse{Responses: []*rspb.ResponseUnion{{Value: &rspb.ResponseUnion_Scan{Scan: &rspb.ScanResponse{Kvs: []*rspb.KeyValue{kv}}}}}}
			}
		}
		return &rspb.RangeResponse{Responses: []*rspb.ResponseUnion{{Value: &rspb.ResponseUnion_Scan{Scan: &rspb.ScanResponse{}}}}}
	}
	n.sent = append(n.sent, proto.Clone(req).(*rspb.RangeRequest))
	return n.answer(req, len(n.sent))
}

func (n *scriptNode) setRecords(ds ...*rspb.RangeDescriptor) {
	n.mu.Lock()
	n.records = ds
	n.mu.Unlock()
}

func (n *scriptNode) requests() []*rspb.RangeRequest {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*rspb.RangeRequest(nil), n.sent...)
}

func userRange(id uint64, start, end []byte) *rspb.RangeDescriptor {
	return &rspb.RangeDescriptor{RangeId: id, StartKey: start, EndKey: end, Generation: 1, Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}}
}

func newScriptNode() *scriptNode {
	return &scriptNode{meta: &rspb.RangeDescriptor{RangeId: 1, StartKey: keys.KeyMin, EndKey: keys.SystemStart, Generation: 1,
		Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}}}
}

func incr(k string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: keys.UserKey([]byte(k)), Delta: 1}}}
}

func okIncr() *rspb.RangeResponse {
	return &rspb.RangeResponse{Responses: []*rspb.ResponseUnion{{Value: &rspb.ResponseUnion_Increment{Increment: &rspb.IncrementResponse{NewValue: 1}}}}}
}

var notCompleted = &rspb.RangeError{Code: rspb.RangeError_UNAVAILABLE, Message: "request did not complete; a write may still apply"}

// TestRouterRetryAfterMergeKeepsProposal: an increment whose first attempt
// may have applied on r5, merged meanwhile into r4, is sent to r4 with the
// same proposal ID and timestamp (r4 holds r5's dedup records), once a
// node names r4 as the range that subsumed r5.
func TestRouterRetryAfterMergeKeepsProposal(t *testing.T) {
	n := newScriptNode()
	left := userRange(4, keys.UserPrefix, keys.UserKey([]byte("m")))
	right := userRange(5, keys.UserKey([]byte("m")), keys.KeyMax)
	merged := userRange(4, keys.UserPrefix, keys.KeyMax)
	merged.Generation = 2
	n.setRecords(left, right)
	n.answer = func(req *rspb.RangeRequest, nth int) *rspb.RangeResponse {
		switch {
		case nth == 1: // applied, but the reply is lost; then r5 merges away
			n.records = []*rspb.RangeDescriptor{merged}
			return &rspb.RangeResponse{Error: notCompleted}
		case req.RangeId == 5 && nth < 4: // the merge has not applied here yet: no hint
			return &rspb.RangeResponse{Error: &rspb.RangeError{Code: rspb.RangeError_RANGE_NOT_FOUND, Message: "r5 not found"}}
		case req.RangeId == 5:
			return &rspb.RangeResponse{Error: &rspb.RangeError{Code: rspb.RangeError_RANGE_NOT_FOUND, Message: "r5 not found", RangeDescriptor: merged}}
		}
		return okIncr()
	}
	r := NewRouter(n, n, leases.NewClock(nil, 0), nil)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.Send(ctx, []*rspb.RequestUnion{incr("x")}); err != nil {
		t.Fatalf("increment: %v", err)
	}
	sent := n.requests()
	first, last := sent[0], sent[len(sent)-1]
	if last.RangeId != 4 {
		t.Fatalf("last attempt went to r%d, want r4 (the range that subsumed r5); attempts: %d", last.RangeId, len(sent))
	}
	if !bytes.Equal(first.ProposalId, last.ProposalId) || !proto.Equal(first.Timestamp, last.Timestamp) {
		t.Fatalf("the retry on r4 has proposal %x at %v, the first attempt on r5 had %x at %v: a new proposal applies a second time",
			last.ProposalId, last.Timestamp, first.ProposalId, first.Timestamp)
	}
}

// TestRouterAmbiguousWhenRecordUnreachable: a write that may have applied
// is not proposed again where its dedup record is not (its keys now in
// several ranges, or in a range no node named as holding the record): the
// router answers AMBIGUOUS.
func TestRouterAmbiguousWhenRecordUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after []*rspb.RangeDescriptor // meta once the first attempt timed out
		stale *rspb.RangeError        // r5's answers to the retries
	}{
		{name: "split across ranges",
			after: []*rspb.RangeDescriptor{userRange(5, keys.UserPrefix, keys.UserKey([]byte("m"))), userRange(6, keys.UserKey([]byte("m")), keys.KeyMax)},
			stale: &rspb.RangeError{Code: rspb.RangeError_RANGE_KEY_MISMATCH, Message: "split"}},
		{name: "merged, subsumer unknown",
			after: []*rspb.RangeDescriptor{userRange(4, keys.UserPrefix, keys.KeyMax)},
			stale: &rspb.RangeError{Code: rspb.RangeError_RANGE_NOT_FOUND, Message: "r5 not found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newScriptNode()
			n.setRecords(userRange(5, keys.UserPrefix, keys.KeyMax))
			n.answer = func(req *rspb.RangeRequest, nth int) *rspb.RangeResponse {
				if nth == 1 {
					n.records = tc.after
					return &rspb.RangeResponse{Error: notCompleted}
				}
				if req.RangeId == 5 {
					return &rspb.RangeResponse{Error: tc.stale}
				}
				return okIncr()
			}
			r := NewRouter(n, n, leases.NewClock(nil, 0), nil)
			defer r.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := r.Send(ctx, []*rspb.RequestUnion{incr("a"), incr("z")})
			var re *RangeError
			if !errors.As(err, &re) || re.E.Code != rspb.RangeError_AMBIGUOUS {
				t.Fatalf("got %v, want AMBIGUOUS", err)
			}
			for _, q := range n.requests() {
				if q.RangeId != 5 {
					t.Fatalf("the write was proposed again on r%d, which does not hold its dedup record", q.RangeId)
				}
			}
		})
	}
}

// TestRouterResplitsWriteThatDidNotApply: a write refused before it could
// apply (its keys left the range) is re-split over the new ranges as
// before.
func TestRouterResplitsWriteThatDidNotApply(t *testing.T) {
	n := newScriptNode()
	n.setRecords(userRange(5, keys.UserPrefix, keys.KeyMax))
	split := []*rspb.RangeDescriptor{userRange(5, keys.UserPrefix, keys.UserKey([]byte("m"))), userRange(6, keys.UserKey([]byte("m")), keys.KeyMax)}
	n.answer = func(req *rspb.RangeRequest, nth int) *rspb.RangeResponse {
		if nth == 1 {
			n.records = split
			return &rspb.RangeResponse{Error: &rspb.RangeError{Code: rspb.RangeError_RANGE_KEY_MISMATCH, Message: "split"}}
		}
		return okIncr()
	}
	r := NewRouter(n, n, leases.NewClock(nil, 0), nil)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.Send(ctx, []*rspb.RequestUnion{incr("a"), incr("z")}); err != nil {
		t.Fatalf("increments across a split: %v", err)
	}
	if sent := n.requests(); len(sent) != 3 {
		t.Fatalf("%d range commands sent, want 3 (one refused, then one per range)", len(sent))
	}
}

// TestRouterDeadlineAfterMaybeAppliedIsAmbiguous: a write whose first
// attempt may have applied (the leaseholder proposed it, then went away),
// and whose retries fail until the deadline, is answered AMBIGUOUS (gRPC
// Unknown), not UNAVAILABLE: a client reading UNAVAILABLE with a dial
// error in it took the write for never sent, and a conditional delete that
// had applied made a later read look non-linearizable. A read in the same
// situation is UNAVAILABLE: it applies nothing.
func TestRouterDeadlineAfterMaybeAppliedIsAmbiguous(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *rspb.RequestUnion
		want codes.Code
	}{
		{"write", incr("x"), codes.Unknown},
		{"read", &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.UserKey([]byte("x"))}}}, codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newScriptNode()
			n.setRecords(userRange(5, keys.UserPrefix, keys.KeyMax))
			n.answer = func(req *rspb.RangeRequest, nth int) *rspb.RangeResponse {
				if nth == 1 {
					return &rspb.RangeResponse{Error: notCompleted}
				}
				return &rspb.RangeResponse{Error: &rspb.RangeError{Code: rspb.RangeError_NOT_LEASEHOLDER, Message: "the lease is not valid here yet"}}
			}
			r := NewRouter(n, n, leases.NewClock(nil, 0), nil)
			defer r.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			_, err := r.Send(ctx, []*rspb.RequestUnion{tc.req})
			st := status.Convert(ToStatus(err))
			if st.Code() != tc.want || !strings.Contains(st.Message(), "r5") {
				t.Fatalf("%s after the deadline: %v %q, want %v naming r5", tc.name, st.Code(), st.Message(), tc.want)
			}
			if tc.want == codes.Unknown && !strings.Contains(st.Message(), "may or may not have applied") {
				t.Fatalf("the ambiguous answer does not say so: %q", st.Message())
			}
		})
	}
}
