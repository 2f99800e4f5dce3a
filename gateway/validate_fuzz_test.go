package gateway

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

const fuzzClusterID = "fuzz-cluster"

// fuzzRefusal checks that a validation error is a gRPC status a client
// can act on: INVALID_ARGUMENT with a message (or, for an as_of just
// ahead of the clock, the deadline that cut the wait short).
func fuzzRefusal(t *testing.T, what string, ctx context.Context, err error) {
	t.Helper()
	st, ok := status.FromError(err)
	switch {
	case !ok:
		t.Fatalf("%s refused with a non-status error %T: %v", what, err, err)
	case st.Message() == "":
		t.Fatalf("%s refused with an empty message (code %s)", what, st.Code())
	case st.Code() == codes.InvalidArgument:
	case ctx.Err() != nil && (st.Code() == codes.DeadlineExceeded || st.Code() == codes.Unavailable):
	default:
		t.Fatalf("%s refused with %s, want InvalidArgument: %v", what, st.Code(), err)
	}
}

// fuzzInUserSpan checks that an internal request only touches the user
// span and carries keys the replicas accept, and that its point key maps
// back to the client's.
func fuzzInUserSpan(t *testing.T, client, internal *rspb.RequestUnion) {
	t.Helper()
	c, err := batcheval.Lookup(internal)
	if err != nil {
		t.Fatalf("validation produced an internal request without a command: %v", err)
	}
	sp := c.Span(internal)
	if sp.Point {
		if !keys.InSpan(sp.Key, keys.UserPrefix, keys.UserSpanEnd) {
			t.Fatalf("%s: internal key %q is outside the user span", c.Name(), sp.Key)
		}
		ck, err := keys.ClientKey(sp.Key)
		if err != nil || !bytes.Equal(ck, c.Span(client).Key) {
			t.Fatalf("%s: internal key %q does not map back to the client's %q", c.Name(), sp.Key, c.Span(client).Key)
		}
	} else if len(sp.Key) == 0 || len(sp.EndKey) == 0 || !keys.ContainsSpan(sp.Key, sp.EndKey, keys.UserPrefix, keys.UserSpanEnd) {
		t.Fatalf("%s: internal span [%q, %q) is not inside the user span", c.Name(), sp.Key, sp.EndKey)
	}
	ks, vs := c.Payload(internal)
	for _, k := range ks {
		if len(k) > DefaultLimits.MaxKeySize+len(keys.UserPrefix) {
			t.Fatalf("%s: internal key of %d bytes passed max_key_size %d", c.Name(), len(k), DefaultLimits.MaxKeySize)
		}
	}
	for _, v := range vs {
		if len(v) > DefaultLimits.MaxValueSize {
			t.Fatalf("%s: value of %d bytes passed max_value_size %d", c.Name(), len(v), DefaultLimits.MaxValueSize)
		}
	}
}

// FuzzRequestValidation feeds arbitrary bytes through the KV service's
// request path short of routing: unmarshal as a BatchRequest, validate
// (KVServer.validate: limits, each command's checks, read mode,
// bookmarks, as_of) and map into the user span; each scan in it also goes
// through the streamed Scan's validation (validateScan). Properties:
//   - nothing panics, and validation changes nothing: the request is
//     unchanged afterwards, refused or not;
//   - a refusal is INVALID_ARGUMENT with a message;
//   - an accepted request maps to internal requests that touch only the
//     user span with keys and values within the limits the replicas
//     enforce, and that a replica evaluates without panicking against an
//     in-memory engine (reads on a snapshot, writes into a batch that is
//     then discarded) with every write inside the user span;
//   - a bookmark either fails to decode or re-encodes to its own bytes.
func FuzzRequestValidation(f *testing.F) {
	eng, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := eng.Close(); err != nil {
			f.Error(err)
		}
	})
	clock := leases.NewClock(nil, 0)
	// Client keys a, b (an integer, for Increment) and c, written long
	// ago so that every read sees them.
	b := eng.NewBatch()
	for k, v := range map[string]string{"a": "va", "b": "41", "c": "vc"} {
		if err := b.PutMVCC(keys.UserKey([]byte(k)), kv.Timestamp{WallTime: 1}, []byte(v)); err != nil {
			f.Fatal(err)
		}
	}
	if err := b.Commit(false); err != nil {
		f.Fatal(err)
	}
	if err := b.Close(); err != nil {
		f.Fatal(err)
	}
	s := NewKVServer(nil, DefaultLimits, clock, func() uint64 { return 1 })
	s.SetClusterID(func() string { return fuzzClusterID })

	f.Fuzz(func(t *testing.T, data []byte) {
		req := &rspb.BatchRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		for i, bm := range req.Bookmarks {
			if ts, err := DecodeBookmark(fuzzClusterID, bm); err == nil && !bytes.Equal(EncodeBookmark(fuzzClusterID, ts), bm) {
				t.Fatalf("bookmarks[%d] = %x decodes to %s, which encodes as %x", i, bm, ts, EncodeBookmark(fuzzClusterID, ts))
			}
		}
		orig := proto.Clone(req)
		// A short deadline: an as_of just ahead of the clock is waited
		// for, up to the max offset.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()

		for _, q := range req.Requests {
			sc := q.GetScan()
			if sc == nil {
				continue
			}
			in, _, err := s.validateScan(ctx, sc)
			if err != nil {
				fuzzRefusal(t, "Scan", ctx, err)
				continue
			}
			fuzzInUserSpan(t, q, &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: in}})
		}

		internal, _, err := s.validate(ctx, req.Requests, readModeOf(req.ProtoReflect()), true)
		if !proto.Equal(req, orig) {
			t.Fatalf("validation changed the request:\n%v\nto\n%v", orig, req)
		}
		if err != nil {
			fuzzRefusal(t, "Batch", ctx, err)
			return
		}
		if len(internal) != len(req.Requests) {
			t.Fatalf("validation returned %d internal requests for %d", len(internal), len(req.Requests))
		}
		for i, q := range internal {
			c, err := batcheval.Lookup(q)
			if err != nil || c.Internal() {
				t.Fatalf("requests[%d]: accepted an internal or unknown request %v (%v)", i, q, err)
			}
			fuzzInUserSpan(t, req.Requests[i], q)
		}

		// A replica evaluates what the gateway accepted.
		now := clock.Now()
		if ranges.IsReadOnly(internal) {
			snap := eng.NewSnapshot()
			defer func() { _ = snap.Close() }()
			if _, err := batcheval.EvalRead(snap, internal, now, 0); err != nil && err.Error() == "" {
				t.Fatal("evaluation failed with an empty error")
			}
			return
		}
		wb := eng.NewBatch()
		defer func() { _ = wb.Close() }()
		if _, err := batcheval.EvalWrite(wb, internal, now, 0); err != nil {
			if err.Error() == "" {
				t.Fatal("evaluation failed with an empty error")
			}
			return
		}
		for _, sp := range [][2][]byte{{nil, keys.UserPrefix}, {keys.UserSpanEnd, nil}} {
			if err := kv.IterateDataSpan(wb, sp[0], sp[1], func(k, _ []byte) error {
				t.Fatalf("an accepted request wrote %x outside the user span", k)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	})
}
