package node

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestKVConditionalDelete checks ConditionalPut with delete through the public
// KV API, alone and inside a Batch: a successful condition deletes the key
// (an MVCC tombstone: older versions stay readable with as_of), a failed one
// changes nothing.
func TestKVConditionalDelete(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})
	ctx := ctxT(t)
	cp := func(n int, req *rspb.ConditionalPutRequest) *rspb.ConditionalPutResponse {
		t.Helper()
		r, err := tc.KV(n).ConditionalPut(ctx, req)
		if err != nil {
			t.Fatalf("conditional put %v: %v", req, err)
		}
		return r
	}

	t.Run("Single", func(t *testing.T) {
		for i, k := range []string{"A-cdel", "P-cdel", "o-cdel"} {
			w, d := i%3, (i+1)%3
			put := kvtPut(t, ctx, tc.KV(w), k, "one")

			// A mismatch changes nothing and reports the current value.
			r := cp(d, &rspb.ConditionalPutRequest{Key: []byte(k), ExpectedValue: []byte("two"), Delete: true})
			if r.Succeeded || !r.ActualExists || string(r.ActualValue) != "one" || r.CommitTimestamp != nil {
				t.Fatalf("%s: delete on mismatch: %v", k, r)
			}
			r = cp(d, &rspb.ConditionalPutRequest{Key: []byte(k), ExpectAbsent: true, Delete: true})
			if r.Succeeded || !r.ActualExists || string(r.ActualValue) != "one" {
				t.Fatalf("%s: delete expecting absence of an existing key: %v", k, r)
			}
			for n := 0; n < 3; n++ {
				kvtWantValue(t, ctx, tc.KV(n), k, "one")
			}

			// A match deletes the key.
			r = cp(d, &rspb.ConditionalPutRequest{Key: []byte(k), ExpectedValue: []byte("one"), Delete: true})
			if !r.Succeeded || r.CommitTimestamp == nil || !kvtLess(put, r.CommitTimestamp) {
				t.Fatalf("%s: delete on match: %v (put at %v)", k, r, put)
			}
			for n := 0; n < 3; n++ {
				kvtWantMissing(t, ctx, tc.KV(n), k)
			}
			// A tombstone, not an erasure: the old version is still there
			// just below the delete, and gone at it.
			if g := kvtGet(t, ctx, tc.KV(w), k, kvtPrev(r.CommitTimestamp)); !g.Found || string(g.Kv.Value) != "one" || !proto.Equal(g.Kv.Timestamp, put) {
				t.Fatalf("%s: read below the delete: %v", k, g)
			}
			if g := kvtGet(t, ctx, tc.KV(w), k, r.CommitTimestamp); g.Found {
				t.Fatalf("%s: read at the delete: %v", k, g)
			}
			sc, _ := kvtScan(t, ctx, tc.KV(d), &rspb.ScanRequest{StartKey: []byte(k), EndKey: []byte(k + "\x00")})
			if len(sc) != 0 {
				t.Fatalf("%s: scan after delete: %v", k, sc)
			}

			// The same condition fails now, and the key stays absent.
			r = cp(w, &rspb.ConditionalPutRequest{Key: []byte(k), ExpectedValue: []byte("one"), Delete: true})
			if r.Succeeded || r.ActualExists {
				t.Fatalf("%s: second delete: %v", k, r)
			}
			// Delete expecting absence on an absent key succeeds and
			// leaves it absent.
			r = cp(w, &rspb.ConditionalPutRequest{Key: []byte(k), ExpectAbsent: true, Delete: true})
			if !r.Succeeded {
				t.Fatalf("%s: delete expecting absence of a missing key: %v", k, r)
			}
			kvtWantMissing(t, ctx, tc.KV(d), k)
			// A conditional put can recreate it.
			r = cp(d, &rspb.ConditionalPutRequest{Key: []byte(k), Value: []byte("three"), ExpectAbsent: true})
			if !r.Succeeded {
				t.Fatalf("%s: recreate: %v", k, r)
			}
			kvtWantValue(t, ctx, tc.KV(w), k, "three")
		}
		// An empty expected value deletes an existing empty value.
		kvtPut(t, ctx, tc.KV(0), "c-cdel-empty", "")
		if r := cp(1, &rspb.ConditionalPutRequest{Key: []byte("c-cdel-empty"), Delete: true}); !r.Succeeded {
			t.Fatalf("delete of an empty value: %v", r)
		}
		kvtWantMissing(t, ctx, tc.KV(2), "c-cdel-empty")
	})

	t.Run("ValueWithDelete", func(t *testing.T) {
		kvtPut(t, ctx, tc.KV(0), "D-cdel-val", "one")
		_, err := tc.KV(1).ConditionalPut(ctx, &rspb.ConditionalPutRequest{Key: []byte("D-cdel-val"), Value: []byte("two"), ExpectedValue: []byte("one"), Delete: true})
		kvtWantCode(t, err, codes.InvalidArgument, "value")
		kvtWantValue(t, ctx, tc.KV(2), "D-cdel-val", "one")
	})

	t.Run("Batch", func(t *testing.T) {
		kvtPut(t, ctx, tc.KV(0), "A-cdel-b1", "x")
		kvtPut(t, ctx, tc.KV(1), "P-cdel-b2", "y")
		cdel := func(k, expected string) *rspb.RequestUnion {
			return &rspb.RequestUnion{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{
				Key: []byte(k), ExpectedValue: []byte(expected), Delete: true}}}
		}
		get := func(k string) *rspb.RequestUnion {
			return &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte(k)}}}
		}
		br, err := tc.KV(2).Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{
			cdel("A-cdel-b1", "x"),
			get("A-cdel-b1"),
			cdel("P-cdel-b2", "not-y"),
			get("P-cdel-b2"),
			{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("o-cdel-b3"), Value: []byte("z")}}},
			cdel("o-cdel-b3", "z"),
			get("o-cdel-b3"),
		}})
		if err != nil {
			t.Fatal(err)
		}
		rs := br.Responses
		if len(rs) != 7 {
			t.Fatalf("%d responses for 7 requests", len(rs))
		}
		check := func(i int, ok bool) {
			t.Helper()
			if !ok {
				t.Fatalf("response %d is wrong: %v", i, rs[i])
			}
		}
		check(0, rs[0].GetConditionalPut().GetSucceeded() && rs[0].GetConditionalPut().CommitTimestamp != nil)
		check(1, rs[1].GetGet() != nil && !rs[1].GetGet().Found)
		check(2, rs[2].GetConditionalPut() != nil && !rs[2].GetConditionalPut().Succeeded && string(rs[2].GetConditionalPut().ActualValue) == "y")
		check(3, rs[3].GetGet().GetFound() && string(rs[3].GetGet().Kv.Value) == "y")
		check(5, rs[5].GetConditionalPut().GetSucceeded())
		check(6, rs[6].GetGet() != nil && !rs[6].GetGet().Found)
		for n := 0; n < 3; n++ {
			kvtWantMissing(t, ctx, tc.KV(n), "A-cdel-b1")
			kvtWantValue(t, ctx, tc.KV(n), "P-cdel-b2", "y")
			kvtWantMissing(t, ctx, tc.KV(n), "o-cdel-b3")
		}
	})
}
