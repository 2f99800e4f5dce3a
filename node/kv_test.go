package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// Helpers of this file are prefixed with kvt to stay clear of other test
// files of the package.

func kvtPut(t *testing.T, ctx context.Context, c rspb.KVClient, k, v string) *rspb.Timestamp {
	t.Helper()
	r, err := c.Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte(v)})
	if err != nil {
		t.Fatalf("put %q: %v", k, err)
	}
	if r.CommitTimestamp == nil || r.CommitTimestamp.WallTime <= 0 {
		t.Fatalf("put %q: bad commit timestamp %v", k, r.CommitTimestamp)
	}
	return r.CommitTimestamp
}

func kvtGet(t *testing.T, ctx context.Context, c rspb.KVClient, k string, asOf *rspb.Timestamp) *rspb.GetResponse {
	t.Helper()
	r, err := c.Get(ctx, &rspb.GetRequest{Key: []byte(k), AsOf: asOf})
	if err != nil {
		t.Fatalf("get %q: %v", k, err)
	}
	return r
}

// kvtWantValue asserts that k reads back as v.
func kvtWantValue(t *testing.T, ctx context.Context, c rspb.KVClient, k, v string) *rspb.GetResponse {
	t.Helper()
	g := kvtGet(t, ctx, c, k, nil)
	if !g.Found || g.Kv == nil || string(g.Kv.Key) != k || string(g.Kv.Value) != v {
		t.Fatalf("get %q: want %q, got %v", k, v, g)
	}
	return g
}

func kvtWantMissing(t *testing.T, ctx context.Context, c rspb.KVClient, k string) {
	t.Helper()
	if g := kvtGet(t, ctx, c, k, nil); g.Found || g.Kv != nil {
		t.Fatalf("get %q: want not found, got %v", k, g)
	}
}

// kvtScan runs a streamed scan to its end and returns the pairs and the
// number of stream messages.
func kvtScan(t *testing.T, ctx context.Context, c rspb.KVClient, req *rspb.ScanRequest) ([]*rspb.KeyValue, int) {
	t.Helper()
	kvs, msgs, err := kvtScanErr(ctx, c, req)
	if err != nil {
		t.Fatalf("scan %v: %v", req, err)
	}
	return kvs, msgs
}

func kvtScanErr(ctx context.Context, c rspb.KVClient, req *rspb.ScanRequest) ([]*rspb.KeyValue, int, error) {
	st, err := c.Scan(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	var out []*rspb.KeyValue
	msgs := 0
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, msgs, nil
		}
		if err != nil {
			return nil, msgs, err
		}
		msgs++
		out = append(out, m.Kvs...)
	}
}

func kvtKeys(kvs []*rspb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, x := range kvs {
		out[i] = string(x.Key)
	}
	return out
}

func kvtReversed(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[len(s)-1-i] = x
	}
	return out
}

func kvtSameKeys(t *testing.T, what string, got []*rspb.KeyValue, want []string) {
	t.Helper()
	g := kvtKeys(got)
	if len(g) != len(want) {
		t.Fatalf("%s: got %d keys, want %d\n got: %q\nwant: %q", what, len(g), len(want), kvtAbbrev(g), kvtAbbrev(want))
	}
	for i := range g {
		if g[i] != want[i] {
			t.Fatalf("%s: key %d is %q, want %q\n got: %q\nwant: %q", what, i, g[i], want[i], kvtAbbrev(g), kvtAbbrev(want))
		}
	}
}

func kvtAbbrev(s []string) []string {
	if len(s) <= 20 {
		return s
	}
	return append(append(append([]string(nil), s[:10]...), "…"), s[len(s)-10:]...)
}

func kvtLess(a, b *rspb.Timestamp) bool { return ranges.TSFromProto(a).Less(ranges.TSFromProto(b)) }

func kvtPrev(ts *rspb.Timestamp) *rspb.Timestamp {
	return ranges.TSToProto(ranges.TSFromProto(ts).Prev())
}

func kvtWantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	st, ok := status.FromError(err)
	if err == nil || !ok || st.Code() != code || !strings.Contains(st.Message(), substr) {
		t.Fatalf("want %v error containing %q, got %v", code, substr, err)
	}
}

// kvtLoad writes the pairs through Batch RPCs of at most 1000 requests and
// about 3.5 MiB each.
func kvtLoad(t *testing.T, ctx context.Context, c rspb.KVClient, ks []string, val func(string) []byte) {
	t.Helper()
	var reqs []*rspb.RequestUnion
	size := 0
	flush := func() {
		if len(reqs) == 0 {
			return
		}
		r, err := c.Batch(ctx, &rspb.BatchRequest{Requests: reqs})
		if err != nil {
			t.Fatalf("load batch of %d: %v", len(reqs), err)
		}
		if len(r.Responses) != len(reqs) {
			t.Fatalf("load batch: %d responses for %d requests", len(r.Responses), len(reqs))
		}
		for i, x := range r.Responses {
			if x.GetPut().GetCommitTimestamp() == nil {
				t.Fatalf("load batch: response %d is %v", i, x)
			}
		}
		reqs, size = nil, 0
	}
	for _, k := range ks {
		v := val(k)
		if len(reqs) == 1000 || size+len(k)+len(v) > 7<<19 {
			flush()
		}
		reqs = append(reqs, &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte(k), Value: v}}})
		size += len(k) + len(v)
	}
	flush()
}

// TestKVBasic exercises the point RPCs and Batch through every node.
func TestKVBasic(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})

	t.Run("PutGetDelete", func(t *testing.T) {
		ctx := ctxT(t)
		for i, k := range []string{"A-pgd", "D-pgd", "P-pgd", "c-pgd", "o-pgd"} {
			w, r := tc.KV(i%3), tc.KV((i+1)%3)
			kvtPut(t, ctx, w, k, "val-"+k)
			for n := 0; n < 3; n++ {
				kvtWantValue(t, ctx, tc.KV(n), k, "val-"+k)
			}
			d, err := r.Delete(ctx, &rspb.DeleteRequest{Key: []byte(k)})
			if err != nil || !d.Existed || d.CommitTimestamp == nil {
				t.Fatalf("delete %q: %v %v", k, d, err)
			}
			for n := 0; n < 3; n++ {
				kvtWantMissing(t, ctx, tc.KV(n), k)
			}
			d, err = w.Delete(ctx, &rspb.DeleteRequest{Key: []byte(k)})
			if err != nil || d.Existed {
				t.Fatalf("second delete %q: want existed=false, got %v %v", k, d, err)
			}
		}
		kvtWantMissing(t, ctx, tc.KV(0), "D-never-written")
		d, err := tc.KV(2).Delete(ctx, &rspb.DeleteRequest{Key: []byte("D-never-written")})
		if err != nil || d.Existed {
			t.Fatalf("delete of a missing key: %v %v", d, err)
		}
		// Overwrite after delete.
		kvtPut(t, ctx, tc.KV(1), "A-pgd", "again")
		kvtWantValue(t, ctx, tc.KV(2), "A-pgd", "again")
		// Empty value is a value.
		kvtPut(t, ctx, tc.KV(0), "P-empty", "")
		if g := kvtGet(t, ctx, tc.KV(1), "P-empty", nil); !g.Found || len(g.Kv.Value) != 0 {
			t.Fatalf("empty value: %v", g)
		}
	})

	t.Run("CommitTimestamps", func(t *testing.T) {
		ctx := ctxT(t)
		const k = "P-ts"
		var prev *rspb.Timestamp
		for i := 0; i < 10; i++ {
			before := time.Now().Add(-time.Minute).UnixNano()
			ts := kvtPut(t, ctx, tc.KV(i%3), k, "v"+strconv.Itoa(i))
			if ts.WallTime < before || ts.WallTime > time.Now().Add(time.Minute).UnixNano() {
				t.Fatalf("commit timestamp %v is not near the wall clock", ts)
			}
			if prev != nil && !kvtLess(prev, ts) {
				t.Fatalf("write %d: commit timestamp %v not after %v", i, ts, prev)
			}
			prev = ts
			g := kvtWantValue(t, ctx, tc.KV((i+1)%3), k, "v"+strconv.Itoa(i))
			if !proto.Equal(g.Kv.Timestamp, ts) {
				t.Fatalf("write %d: get timestamp %v, put committed at %v", i, g.Kv.Timestamp, ts)
			}
		}
		// Other write kinds advance the key's timestamp as well.
		inc, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("1")})
		if err != nil || !kvtLess(prev, inc.CommitTimestamp) {
			t.Fatalf("put: %v %v", inc, err)
		}
		ir, err := tc.KV(1).Increment(ctx, &rspb.IncrementRequest{Key: []byte(k), Delta: 1})
		if err != nil || ir.NewValue != 2 || !kvtLess(inc.CommitTimestamp, ir.CommitTimestamp) {
			t.Fatalf("increment: %v %v", ir, err)
		}
		cp, err := tc.KV(2).ConditionalPut(ctx, &rspb.ConditionalPutRequest{Key: []byte(k), Value: []byte("x"), ExpectedValue: []byte("2")})
		if err != nil || !cp.Succeeded || !kvtLess(ir.CommitTimestamp, cp.CommitTimestamp) {
			t.Fatalf("conditional put: %v %v", cp, err)
		}
		g := kvtWantValue(t, ctx, tc.KV(0), k, "x")
		if !proto.Equal(g.Kv.Timestamp, cp.CommitTimestamp) {
			t.Fatalf("get timestamp %v, conditional put committed at %v", g.Kv.Timestamp, cp.CommitTimestamp)
		}
		d, err := tc.KV(0).Delete(ctx, &rspb.DeleteRequest{Key: []byte(k)})
		if err != nil || !d.Existed || !kvtLess(cp.CommitTimestamp, d.CommitTimestamp) {
			t.Fatalf("delete: %v %v", d, err)
		}
	})

	t.Run("AsOf", func(t *testing.T) {
		ctx := ctxT(t)
		c := tc.KV(0)
		const k1, k2 = "c-asof/1", "c-asof/2"
		t1 := kvtPut(t, ctx, c, k1, "v1")
		t2 := kvtPut(t, ctx, tc.KV(1), k2, "w1")
		t3 := kvtPut(t, ctx, tc.KV(2), k1, "v2")
		if !kvtLess(t1, t2) || !kvtLess(t2, t3) {
			t.Fatalf("timestamps out of order: %v %v %v", t1, t2, t3)
		}
		for n := 0; n < 3; n++ {
			c := tc.KV(n)
			g := kvtGet(t, ctx, c, k1, t1)
			if !g.Found || string(g.Kv.Value) != "v1" || !proto.Equal(g.Kv.Timestamp, t1) {
				t.Fatalf("n%d: get as of t1: %v", n+1, g)
			}
			if g := kvtGet(t, ctx, c, k1, kvtPrev(t1)); g.Found {
				t.Fatalf("n%d: get just below t1 found %v", n+1, g)
			}
			if g := kvtGet(t, ctx, c, k1, t2); !g.Found || string(g.Kv.Value) != "v1" {
				t.Fatalf("n%d: get as of t2: %v", n+1, g)
			}
			if g := kvtGet(t, ctx, c, k1, kvtPrev(t3)); !g.Found || string(g.Kv.Value) != "v1" {
				t.Fatalf("n%d: get just below t3: %v", n+1, g)
			}
			if g := kvtGet(t, ctx, c, k1, t3); !g.Found || string(g.Kv.Value) != "v2" || !proto.Equal(g.Kv.Timestamp, t3) {
				t.Fatalf("n%d: get as of t3: %v", n+1, g)
			}
			if g := kvtGet(t, ctx, c, k2, t1); g.Found {
				t.Fatalf("n%d: k2 as of t1 found %v", n+1, g)
			}
		}
		span := func(asOf *rspb.Timestamp, reverse bool) []string {
			kvs, _ := kvtScan(t, ctx, c, &rspb.ScanRequest{StartKey: []byte("c-asof/"), EndKey: []byte("c-asof0"), AsOf: asOf, Reverse: reverse})
			var out []string
			for _, x := range kvs {
				out = append(out, string(x.Key)+"="+string(x.Value))
			}
			return out
		}
		for _, rev := range []bool{false, true} {
			cases := []struct {
				asOf *rspb.Timestamp
				want []string
			}{
				{kvtPrev(t1), nil},
				{t1, []string{"c-asof/1=v1"}},
				{kvtPrev(t2), []string{"c-asof/1=v1"}},
				{t2, []string{"c-asof/1=v1", "c-asof/2=w1"}},
				{t3, []string{"c-asof/1=v2", "c-asof/2=w1"}},
				{nil, []string{"c-asof/1=v2", "c-asof/2=w1"}},
			}
			for i, cs := range cases {
				want := cs.want
				if rev {
					want = kvtReversed(want)
				}
				if got := span(cs.asOf, rev); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("scan case %d (reverse %v) as of %v: got %v, want %v", i, rev, cs.asOf, got, want)
				}
			}
		}
		// A deleted key is still visible below the deletion.
		d, err := c.Delete(ctx, &rspb.DeleteRequest{Key: []byte(k1)})
		if err != nil || !d.Existed {
			t.Fatalf("delete: %v %v", d, err)
		}
		kvtWantMissing(t, ctx, c, k1)
		if g := kvtGet(t, ctx, c, k1, kvtPrev(d.CommitTimestamp)); !g.Found || string(g.Kv.Value) != "v2" {
			t.Fatalf("get below the deletion: %v", g)
		}
		if g := kvtGet(t, ctx, c, k1, d.CommitTimestamp); g.Found {
			t.Fatalf("get at the deletion: %v", g)
		}
		// Batch reads honour as_of too.
		br, err := c.Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{
			{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte(k1), AsOf: t1}}},
			{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: []byte("c-asof/"), EndKey: []byte("c-asof0"), AsOf: t2}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if g := br.Responses[0].GetGet(); !g.GetFound() || string(g.Kv.Value) != "v1" {
			t.Fatalf("batch get as of t1: %v", g)
		}
		if kvs := br.Responses[1].GetScan().GetKvs(); fmt.Sprint(kvtKeys(kvs)) != "[c-asof/1 c-asof/2]" || string(kvs[0].Value) != "v1" {
			t.Fatalf("batch scan as of t2: %v", kvs)
		}
	})

	t.Run("AsOfInsideWriteBatch", func(t *testing.T) {
		ctx := ctxT(t)
		const k = "c-wasof"
		t1 := kvtPut(t, ctx, tc.KV(0), k, "v1")
		kvtPut(t, ctx, tc.KV(0), k, "v2")
		// The Put makes the command for this range a write command; the
		// reads in it still carry their own as_of.
		br, err := tc.KV(1).Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{
			{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("c-wasof-other"), Value: []byte("x")}}},
			{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte(k), AsOf: t1}}},
			{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte(k), AsOf: kvtPrev(t1)}}},
			{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: []byte(k), EndKey: []byte(k + "\x00"), AsOf: t1}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		g1, g0, sc := br.Responses[1].GetGet(), br.Responses[2].GetGet(), br.Responses[3].GetScan()
		ok := g1.GetFound() && string(g1.Kv.Value) == "v1" && !g0.GetFound() &&
			len(sc.GetKvs()) == 1 && string(sc.Kvs[0].Value) == "v1"
		if !ok {
			t.Fatalf("reads inside a write batch ignored as_of: get as of t1 = %v, get below t1 = %v, scan as of t1 = %v", g1, g0, sc)
		}
	})

	t.Run("ConditionalPut", func(t *testing.T) {
		ctx := ctxT(t)
		const k = "o-cput"
		cp := func(c rspb.KVClient, req *rspb.ConditionalPutRequest) *rspb.ConditionalPutResponse {
			t.Helper()
			req.Key = []byte(k)
			r, err := c.ConditionalPut(ctx, req)
			if err != nil {
				t.Fatalf("conditional put %v: %v", req, err)
			}
			return r
		}
		r := cp(tc.KV(0), &rspb.ConditionalPutRequest{Value: []byte("v1"), ExpectAbsent: true})
		if !r.Succeeded || r.CommitTimestamp == nil || r.ActualExists {
			t.Fatalf("expect_absent on a missing key: %v", r)
		}
		g := kvtWantValue(t, ctx, tc.KV(1), k, "v1")
		if !proto.Equal(g.Kv.Timestamp, r.CommitTimestamp) {
			t.Fatalf("timestamp %v != %v", g.Kv.Timestamp, r.CommitTimestamp)
		}
		r = cp(tc.KV(1), &rspb.ConditionalPutRequest{Value: []byte("nope"), ExpectAbsent: true})
		if r.Succeeded || !r.ActualExists || string(r.ActualValue) != "v1" || r.CommitTimestamp != nil {
			t.Fatalf("expect_absent on an existing key: %v", r)
		}
		r = cp(tc.KV(2), &rspb.ConditionalPutRequest{Value: []byte("v2"), ExpectedValue: []byte("v1")})
		if !r.Succeeded || r.CommitTimestamp == nil {
			t.Fatalf("expected_value match: %v", r)
		}
		r = cp(tc.KV(0), &rspb.ConditionalPutRequest{Value: []byte("v3"), ExpectedValue: []byte("v1")})
		if r.Succeeded || !r.ActualExists || string(r.ActualValue) != "v2" {
			t.Fatalf("expected_value mismatch: %v", r)
		}
		kvtWantValue(t, ctx, tc.KV(0), k, "v2")
		// After a delete the key is absent again.
		if _, err := tc.KV(1).Delete(ctx, &rspb.DeleteRequest{Key: []byte(k)}); err != nil {
			t.Fatal(err)
		}
		r = cp(tc.KV(2), &rspb.ConditionalPutRequest{Value: []byte("v4"), ExpectedValue: []byte("v2")})
		if r.Succeeded || r.ActualExists || len(r.ActualValue) != 0 {
			t.Fatalf("expected_value on a deleted key: %v", r)
		}
		r = cp(tc.KV(2), &rspb.ConditionalPutRequest{Value: []byte("v5"), ExpectAbsent: true})
		if !r.Succeeded {
			t.Fatalf("expect_absent on a deleted key: %v", r)
		}
		kvtWantValue(t, ctx, tc.KV(0), k, "v5")
		// An empty expected value without expect_absent matches an existing
		// empty value, but not a missing key.
		m, err := tc.KV(0).ConditionalPut(ctx, &rspb.ConditionalPutRequest{Key: []byte("o-cput-missing"), Value: []byte("x")})
		if err != nil || m.Succeeded || m.ActualExists {
			t.Fatalf("empty expectation on a missing key: %v %v", m, err)
		}
		kvtWantMissing(t, ctx, tc.KV(1), "o-cput-missing")
		kvtPut(t, ctx, tc.KV(0), "o-cput-empty", "")
		m, err = tc.KV(1).ConditionalPut(ctx, &rspb.ConditionalPutRequest{Key: []byte("o-cput-empty"), Value: []byte("x")})
		if err != nil || !m.Succeeded {
			t.Fatalf("empty expectation on an empty value: %v %v", m, err)
		}
	})

	t.Run("Increment", func(t *testing.T) {
		ctx := ctxT(t)
		inc := func(n int, k string, d int64) int64 {
			t.Helper()
			r, err := tc.KV(n).Increment(ctx, &rspb.IncrementRequest{Key: []byte(k), Delta: d})
			if err != nil {
				t.Fatalf("increment %q by %d: %v", k, d, err)
			}
			if r.CommitTimestamp == nil {
				t.Fatalf("increment %q: no commit timestamp", k)
			}
			return r.NewValue
		}
		if v := inc(0, "A-inc", 5); v != 5 {
			t.Fatalf("missing key +5 = %d", v)
		}
		if v := inc(1, "A-inc", -12); v != -7 {
			t.Fatalf("5-12 = %d", v)
		}
		if v := inc(2, "A-inc", 0); v != -7 {
			t.Fatalf("-7+0 = %d", v)
		}
		kvtWantValue(t, ctx, tc.KV(0), "A-inc", "-7")
		if v := inc(0, "A-inc-zero", 0); v != 0 {
			t.Fatalf("missing key +0 = %d", v)
		}
		kvtWantValue(t, ctx, tc.KV(1), "A-inc-zero", "0")
		if v := inc(1, "A-inc-neg", -3); v != -3 {
			t.Fatalf("missing key -3 = %d", v)
		}
		// A decimal value written by Put can be incremented.
		kvtPut(t, ctx, tc.KV(0), "A-inc-put", "41")
		if v := inc(2, "A-inc-put", 1); v != 42 {
			t.Fatalf("41+1 = %d", v)
		}

		kvtPut(t, ctx, tc.KV(0), "A-notint", "hello")
		for n := 0; n < 3; n++ {
			_, err := tc.KV(n).Increment(ctx, &rspb.IncrementRequest{Key: []byte("A-notint"), Delta: 1})
			kvtWantCode(t, err, codes.FailedPrecondition, "A-notint")
		}
		kvtWantValue(t, ctx, tc.KV(1), "A-notint", "hello")
		// Overflow fails and leaves the value alone.
		kvtPut(t, ctx, tc.KV(0), "A-inc-max", strconv.FormatInt(1<<63-1, 10))
		_, err := tc.KV(1).Increment(ctx, &rspb.IncrementRequest{Key: []byte("A-inc-max"), Delta: 1})
		kvtWantCode(t, err, codes.FailedPrecondition, "overflow")
		kvtWantValue(t, ctx, tc.KV(2), "A-inc-max", strconv.FormatInt(1<<63-1, 10))
	})

	t.Run("IncrementErrorNamesClientKey", func(t *testing.T) {
		ctx := ctxT(t)
		kvtPut(t, ctx, tc.KV(0), "D-notint", "xyz")
		_, err := tc.KV(0).Increment(ctx, &rspb.IncrementRequest{Key: []byte("D-notint"), Delta: 1})
		kvtWantCode(t, err, codes.FailedPrecondition, "D-notint")
		// The key as the client wrote it, not the internal one ("uD-notint").
		if msg := status.Convert(err).Message(); !strings.Contains(msg, strconv.Quote("D-notint")) || strings.Contains(msg, "uD-notint") {
			t.Fatalf("increment error names a key the client never wrote: %s", msg)
		}
	})

	t.Run("ConcurrentIncrements", func(t *testing.T) {
		ctx := ctxT(t)
		const perNode = 20
		var (
			mu   sync.Mutex
			seen []int64
			wg   sync.WaitGroup
		)
		for n := 0; n < 3; n++ {
			c := tc.KV(n)
			for i := 0; i < perNode; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := c.Increment(ctx, &rspb.IncrementRequest{Key: []byte("D-counter"), Delta: 1})
					if err != nil {
						t.Errorf("increment via n%d: %v", n+1, err)
						return
					}
					mu.Lock()
					seen = append(seen, r.NewValue)
					mu.Unlock()
				}()
			}
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		sort.Slice(seen, func(i, j int) bool { return seen[i] < seen[j] })
		for i, v := range seen {
			if v != int64(i+1) {
				t.Fatalf("increment results are not exactly 1..60: %v", seen)
			}
		}
		for n := 0; n < 3; n++ {
			kvtWantValue(t, ctx, tc.KV(n), "D-counter", "60")
		}
	})

	t.Run("BatchMixed", func(t *testing.T) {
		ctx := ctxT(t)
		reqs := []*rspb.RequestUnion{
			{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("A-b1"), Value: []byte("x")}}},
			{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("P-b1"), Value: []byte("y")}}},
			{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("A-b1")}}},
			{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: []byte("c-b1"), Delta: 3}}},
			{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("P-b1")}}},
			{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{Key: []byte("o-b1"), Value: []byte("z"), ExpectAbsent: true}}},
			{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("o-b1")}}},
			{Value: &rspb.RequestUnion_Delete{Delete: &rspb.DeleteRequest{Key: []byte("D-b1")}}},
			{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("D-b-missing")}}},
			{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: []byte("A-b"), EndKey: []byte("A-c")}}},
			{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: []byte("c-b1"), Delta: -1}}},
			{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("A-b2"), Value: []byte("x2")}}},
			{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: []byte("A-b"), EndKey: []byte("A-c"), Reverse: true}}},
			{Value: &rspb.RequestUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeRequest{StartKey: []byte("A-b2"), EndKey: []byte("A-b3")}}},
			{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("A-b2")}}},
		}
		br, err := tc.KV(1).Batch(ctx, &rspb.BatchRequest{Requests: reqs})
		if err != nil {
			t.Fatal(err)
		}
		rs := br.Responses
		if len(rs) != len(reqs) {
			t.Fatalf("%d responses for %d requests", len(rs), len(reqs))
		}
		check := func(i int, ok bool) {
			t.Helper()
			if !ok {
				t.Fatalf("response %d is wrong: %v", i, rs[i])
			}
		}
		check(0, rs[0].GetPut().GetCommitTimestamp() != nil)
		check(1, rs[1].GetPut().GetCommitTimestamp() != nil)
		check(2, rs[2].GetGet().GetFound() && string(rs[2].GetGet().Kv.Key) == "A-b1" && string(rs[2].GetGet().Kv.Value) == "x" &&
			proto.Equal(rs[2].GetGet().Kv.Timestamp, rs[0].GetPut().CommitTimestamp))
		check(3, rs[3].GetIncrement() != nil && rs[3].GetIncrement().NewValue == 3)
		check(4, rs[4].GetGet().GetFound() && string(rs[4].GetGet().Kv.Key) == "P-b1" && string(rs[4].GetGet().Kv.Value) == "y")
		check(5, rs[5].GetConditionalPut().GetSucceeded())
		check(6, rs[6].GetGet().GetFound() && string(rs[6].GetGet().Kv.Value) == "z")
		check(7, rs[7].GetDelete() != nil && !rs[7].GetDelete().Existed)
		check(8, rs[8].GetGet() != nil && !rs[8].GetGet().Found)
		check(9, rs[9].GetScan() != nil && fmt.Sprint(kvtKeys(rs[9].GetScan().Kvs)) == "[A-b1]" && len(rs[9].GetScan().ResumeKey) == 0)
		check(10, rs[10].GetIncrement() != nil && rs[10].GetIncrement().NewValue == 2)
		check(11, rs[11].GetPut().GetCommitTimestamp() != nil)
		check(12, rs[12].GetScan() != nil && fmt.Sprint(kvtKeys(rs[12].GetScan().Kvs)) == "[A-b2 A-b1]")
		check(13, rs[13].GetDeleteRange() != nil && rs[13].GetDeleteRange().Deleted == 1)
		check(14, rs[14].GetGet() != nil && !rs[14].GetGet().Found)

		// The writes are visible afterwards through every node, and a
		// read-only batch over several ranges answers in request order.
		for n := 0; n < 3; n++ {
			rb, err := tc.KV(n).Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{
				{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("o-b1")}}},
				{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("c-b1")}}},
				{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("A-b2")}}},
				{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("P-b1")}}},
				{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("A-b1")}}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rb.Responses {
				g := r.GetGet()
				if g.GetFound() {
					got = append(got, string(g.Kv.Key)+"="+string(g.Kv.Value))
				} else {
					got = append(got, "-")
				}
			}
			if want := "[o-b1=z c-b1=2 - P-b1=y A-b1=x]"; fmt.Sprint(got) != want {
				t.Fatalf("n%d: read batch got %v, want %v", n+1, got, want)
			}
		}
	})

	t.Run("BatchAtomicInOneRange", func(t *testing.T) {
		ctx := ctxT(t)
		// "d-…" keys all live in the range [b, n).
		kvtPut(t, ctx, tc.KV(0), "d-notint", "abc")
		for i, reqs := range [][]*rspb.RequestUnion{
			{
				{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("d-atom1"), Value: []byte("v")}}},
				{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: []byte("d-notint"), Delta: 1}}},
			},
			{
				{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("d-atom1"), Value: []byte("v")}}},
				{Value: &rspb.RequestUnion_Delete{Delete: &rspb.DeleteRequest{Key: []byte("d-notint")}}},
				{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: []byte("d-atom2"), Delta: 1}}},
				{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("d-atom2"), Value: []byte("not a number")}}},
				{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: []byte("d-atom2"), Delta: 1}}},
				{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("d-atom3"), Value: []byte("v")}}},
			},
		} {
			_, err := tc.KV(i%3).Batch(ctx, &rspb.BatchRequest{Requests: reqs})
			kvtWantCode(t, err, codes.FailedPrecondition, "not a decimal integer")
			for n := 0; n < 3; n++ {
				kvtWantMissing(t, ctx, tc.KV(n), "d-atom1")
				kvtWantMissing(t, ctx, tc.KV(n), "d-atom2")
				kvtWantMissing(t, ctx, tc.KV(n), "d-atom3")
				kvtWantValue(t, ctx, tc.KV(n), "d-notint", "abc")
			}
		}
		// The same batch without the failing request applies as a whole.
		br, err := tc.KV(2).Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{
			{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("d-atom1"), Value: []byte("v")}}},
			{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: []byte("d-atom2"), Delta: 7}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(br.Responses[0].GetPut().CommitTimestamp, br.Responses[1].GetIncrement().CommitTimestamp) {
			t.Fatalf("one command, two commit timestamps: %v", br.Responses)
		}
		kvtWantValue(t, ctx, tc.KV(0), "d-atom1", "v")
		kvtWantValue(t, ctx, tc.KV(1), "d-atom2", "7")
	})
}

// TestKVScanAndDeleteRange checks scans and range deletions over every user
// range.
func TestKVScanAndDeleteRange(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})
	ctx := ctxT(t)
	// Two keys in each of the five user ranges, plus two outside [A, p).
	small := []string{"A1", "A2", "D1", "D2", "P1", "P2", "c1", "c2", "o1", "o2"}
	all := append(append([]string{"0out"}, small...), "zout")
	for i, k := range all {
		kvtPut(t, ctx, tc.KV(i%3), k, "v-"+k)
	}

	t.Run("Small", func(t *testing.T) {
		ctx := ctxT(t)
		sp := func(s, e string) *rspb.ScanRequest {
			return &rspb.ScanRequest{StartKey: []byte(s), EndKey: []byte(e)}
		}
		with := func(r *rspb.ScanRequest, f func(*rspb.ScanRequest)) *rspb.ScanRequest { f(r); return r }
		rev := func(r *rspb.ScanRequest) { r.Reverse = true }
		lim := func(n int64) func(*rspb.ScanRequest) { return func(r *rspb.ScanRequest) { r.Limit = n } }
		revLim := func(n int64) func(*rspb.ScanRequest) {
			return func(r *rspb.ScanRequest) { r.Reverse, r.Limit = true, n }
		}
		cases := []struct {
			name string
			req  *rspb.ScanRequest
			want []string
		}{
			{"full", &rspb.ScanRequest{}, all},
			{"full reverse", with(&rspb.ScanRequest{}, rev), kvtReversed(all)},
			{"user ranges", sp("A", "p"), small},
			{"user ranges reverse", with(sp("A", "p"), rev), kvtReversed(small)},
			{"open end", sp("c", ""), []string{"c1", "c2", "o1", "o2", "zout"}},
			{"open end reverse", with(sp("c", ""), rev), []string{"zout", "o2", "o1", "c2", "c1"}},
			{"open start", sp("", "D2"), []string{"0out", "A1", "A2", "D1"}},
			{"open start reverse", with(sp("", "D2"), rev), []string{"D1", "A2", "A1", "0out"}},
			{"start inclusive end exclusive", sp("D2", "c1"), []string{"D2", "P1", "P2"}},
			{"start inclusive end exclusive reverse", with(sp("D2", "c1"), rev), []string{"P2", "P1", "D2"}},
			{"exact range bounds", sp("C", "O"), []string{"D1", "D2"}},
			{"exact range bounds reverse", with(sp("C", "O"), rev), []string{"D2", "D1"}},
			{"range bounds b..n", sp("b", "n"), []string{"c1", "c2"}},
			{"range bounds b..n reverse", with(sp("b", "n"), rev), []string{"c2", "c1"}},
			{"limit crossing ranges", with(sp("A", "p"), lim(5)), []string{"A1", "A2", "D1", "D2", "P1"}},
			{"limit crossing ranges reverse", with(sp("A", "p"), revLim(5)), []string{"o2", "o1", "c2", "c1", "P2"}},
			{"limit at range end", with(sp("A", "p"), lim(2)), []string{"A1", "A2"}},
			{"limit at range end reverse", with(sp("A", "p"), revLim(2)), []string{"o2", "o1"}},
			{"limit 1 full", with(&rspb.ScanRequest{}, lim(1)), []string{"0out"}},
			{"limit 1 full reverse", with(&rspb.ScanRequest{}, revLim(1)), []string{"zout"}},
			{"limit above count", with(sp("A", "p"), lim(1000)), small},
			{"limit above count reverse", with(sp("A", "p"), revLim(11)), kvtReversed(small)},
			{"limit exact count", with(&rspb.ScanRequest{}, lim(12)), all},
			{"empty span between keys", sp("E", "F"), nil},
			{"empty span between keys reverse", with(sp("E", "F"), rev), nil},
			{"empty range", sp("d", "n"), nil},
			{"start equals end", sp("D1", "D1"), nil},
			{"start equals end reverse", with(sp("D1", "D1"), rev), nil},
			{"single key span", sp("D1", "D1\x00"), []string{"D1"}},
			{"past the last key", sp("zz", ""), nil},
			{"past the last key reverse", with(sp("zz", ""), rev), nil},
			{"before the first key reverse", with(sp("", "0"), rev), nil},
		}
		for _, cs := range cases {
			for n := 0; n < 3; n++ {
				got, _ := kvtScan(t, ctx, tc.KV(n), proto.Clone(cs.req).(*rspb.ScanRequest))
				kvtSameKeys(t, fmt.Sprintf("%s via n%d", cs.name, n+1), got, cs.want)
				for _, x := range got {
					if string(x.Value) != "v-"+string(x.Key) || x.Timestamp == nil {
						t.Fatalf("%s: bad pair %v", cs.name, x)
					}
				}
			}
			// The same scan inside a Batch gives the same keys.
			br, err := tc.KV(0).Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{Scan: proto.Clone(cs.req).(*rspb.ScanRequest)}}}})
			if err != nil {
				t.Fatalf("%s: batch: %v", cs.name, err)
			}
			kvtSameKeys(t, cs.name+" in a batch", br.Responses[0].GetScan().GetKvs(), cs.want)
		}
		// Get timestamps match scan timestamps.
		got, _ := kvtScan(t, ctx, tc.KV(1), sp("A", "p"))
		for _, x := range got {
			g := kvtWantValue(t, ctx, tc.KV(2), string(x.Key), "v-"+string(x.Key))
			if !proto.Equal(g.Kv.Timestamp, x.Timestamp) {
				t.Fatalf("%q: scan timestamp %v, get timestamp %v", x.Key, x.Timestamp, g.Kv.Timestamp)
			}
		}
		// keys_only returns keys and timestamps without values.
		for _, r := range []bool{false, true} {
			got, _ := kvtScan(t, ctx, tc.KV(2), &rspb.ScanRequest{StartKey: []byte("A"), EndKey: []byte("p"), KeysOnly: true, Reverse: r})
			want := small
			if r {
				want = kvtReversed(small)
			}
			kvtSameKeys(t, "keys_only", got, want)
			for _, x := range got {
				if len(x.Value) != 0 || x.Timestamp == nil {
					t.Fatalf("keys_only pair %v", x)
				}
			}
		}
	})

	t.Run("DeleteRange", func(t *testing.T) {
		ctx := ctxT(t)
		// Nothing in a span without keys.
		r, err := tc.KV(2).DeleteRange(ctx, &rspb.DeleteRangeRequest{StartKey: []byte("E"), EndKey: []byte("F")})
		if err != nil || r.Deleted != 0 {
			t.Fatalf("empty delete range: %v %v", r, err)
		}
		// Deleted keys are not counted again.
		if _, err := tc.KV(0).Delete(ctx, &rspb.DeleteRequest{Key: []byte("P2")}); err != nil {
			t.Fatal(err)
		}
		old, _ := kvtScan(t, ctx, tc.KV(0), &rspb.ScanRequest{StartKey: []byte("A"), EndKey: []byte("p")})
		before := time.Now().Add(-time.Minute).UnixNano()
		r, err = tc.KV(1).DeleteRange(ctx, &rspb.DeleteRangeRequest{StartKey: []byte("A"), EndKey: []byte("p")})
		if err != nil {
			t.Fatal(err)
		}
		if r.Deleted != int64(len(small)-1) || r.CommitTimestamp == nil || r.CommitTimestamp.WallTime < before {
			t.Fatalf("delete range over five ranges: %v, want %d deleted", r, len(small)-1)
		}
		for n := 0; n < 3; n++ {
			got, _ := kvtScan(t, ctx, tc.KV(n), &rspb.ScanRequest{StartKey: []byte("A"), EndKey: []byte("p")})
			kvtSameKeys(t, "after delete range", got, nil)
			got, _ = kvtScan(t, ctx, tc.KV(n), &rspb.ScanRequest{Reverse: true})
			kvtSameKeys(t, "full reverse after delete range", got, []string{"zout", "0out"})
			for _, k := range small {
				kvtWantMissing(t, ctx, tc.KV(n), k)
			}
			kvtWantValue(t, ctx, tc.KV(n), "0out", "v-0out")
			kvtWantValue(t, ctx, tc.KV(n), "zout", "v-zout")
		}
		// The deleted values are still there in the past. (Each range
		// commits its part at its own timestamp; the response carries the
		// highest.)
		for _, x := range old {
			g := kvtGet(t, ctx, tc.KV(0), string(x.Key), x.Timestamp)
			if !g.Found || string(g.Kv.Value) != "v-"+string(x.Key) {
				t.Fatalf("%q as of its write, after the range deletion: %v", x.Key, g)
			}
			if !kvtLess(x.Timestamp, r.CommitTimestamp) {
				t.Fatalf("%q written at %v, deleted at %v", x.Key, x.Timestamp, r.CommitTimestamp)
			}
		}
		// A scan over all five ranges as of the newest of those writes sees
		// every one of them (P2 aside, deleted in between).
		maxTS := old[0].Timestamp
		for _, x := range old {
			if kvtLess(maxTS, x.Timestamp) {
				maxTS = x.Timestamp
			}
		}
		for _, rev := range []bool{false, true} {
			got, _ := kvtScan(t, ctx, tc.KV(2), &rspb.ScanRequest{StartKey: []byte("A"), EndKey: []byte("p"), AsOf: maxTS, Reverse: rev})
			var gotKeys []string
			for _, x := range got {
				if string(x.Key) != "P2" {
					gotKeys = append(gotKeys, string(x.Key))
				}
			}
			want := kvtKeys(old)
			if rev {
				want = kvtReversed(want)
			}
			if fmt.Sprint(gotKeys) != fmt.Sprint(want) {
				t.Fatalf("scan as of %v (reverse %v): %q, want %q", maxTS, rev, gotKeys, want)
			}
		}
		r, err = tc.KV(0).DeleteRange(ctx, &rspb.DeleteRangeRequest{StartKey: []byte("A"), EndKey: []byte("p")})
		if err != nil || r.Deleted != 0 {
			t.Fatalf("second delete range: %v %v", r, err)
		}
	})

	t.Run("LargeScan", func(t *testing.T) {
		// Moves ~50 MiB through the cluster: allow for a slow -race run.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// 3000 keys of ~1 KiB in all five user ranges; 1500 of them in
		// [O, b), i.e. ~1.5 MiB in one range, more than one replica chunk.
		var ks []string
		for _, p := range []string{"Abig", "Dbig", "cbig", "obig"} {
			for i := 0; i < 375; i++ {
				ks = append(ks, fmt.Sprintf("%s%04d", p, i))
			}
		}
		for i := 0; i < 1500; i++ {
			ks = append(ks, fmt.Sprintf("Pbig%05d", i))
		}
		val := func(k string) []byte {
			return bytes.Repeat([]byte(k+"."), 1024/(len(k)+1)+1)[:1024]
		}
		kvtLoad(t, ctx, tc.KV(0), ks, val)
		sort.Strings(ks)
		want := append(append([]string{"0out"}, ks...), "zout")
		checkVals := func(what string, kvs []*rspb.KeyValue) {
			t.Helper()
			for _, x := range kvs {
				k := string(x.Key)
				if k == "0out" || k == "zout" {
					continue
				}
				if !bytes.Equal(x.Value, val(k)) {
					t.Fatalf("%s: wrong value for %q", what, k)
				}
			}
		}
		for n := 0; n < 3; n++ {
			got, msgs := kvtScan(t, ctx, tc.KV(n), &rspb.ScanRequest{})
			kvtSameKeys(t, "large forward scan", got, want)
			checkVals("large forward scan", got)
			if msgs < 4 {
				t.Fatalf("large forward scan came in %d messages", msgs)
			}
			got, msgs = kvtScan(t, ctx, tc.KV(n), &rspb.ScanRequest{Reverse: true})
			kvtSameKeys(t, "large reverse scan", got, kvtReversed(want))
			checkVals("large reverse scan", got)
			if msgs < 4 {
				t.Fatalf("large reverse scan came in %d messages", msgs)
			}
		}
		// No message carries more than 1000 pairs.
		st, err := tc.KV(1).Scan(ctx, &rspb.ScanRequest{KeysOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for {
			m, err := st.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Kvs) == 0 || len(m.Kvs) > 1000 {
				t.Fatalf("scan message of %d pairs", len(m.Kvs))
			}
			if len(m.ResumeKey) != 0 {
				t.Fatalf("resume key leaked to the client: %q", m.ResumeKey)
			}
			total += len(m.Kvs)
		}
		if total != len(want) {
			t.Fatalf("keys_only scan: %d pairs, want %d", total, len(want))
		}
		// Limits that end inside the big range, past it, and in reverse.
		for _, lim := range []int64{1, 999, 1000, 1001, 1200, 2000, 2999, 3001, 3002, 5000} {
			wantN := min(int(lim), len(want))
			got, _ := kvtScan(t, ctx, tc.KV(int(lim)%3), &rspb.ScanRequest{Limit: lim})
			kvtSameKeys(t, fmt.Sprintf("limit %d", lim), got, want[:wantN])
			got, _ = kvtScan(t, ctx, tc.KV(int(lim+1)%3), &rspb.ScanRequest{Limit: lim, Reverse: true})
			kvtSameKeys(t, fmt.Sprintf("reverse limit %d", lim), got, kvtReversed(want)[:wantN])
		}
		// Bounded span inside the big range, forward and reverse.
		got, _ := kvtScan(t, ctx, tc.KV(2), &rspb.ScanRequest{StartKey: []byte("Pbig00100"), EndKey: []byte("Pbig01400")})
		if len(got) != 1300 || string(got[0].Key) != "Pbig00100" || string(got[1299].Key) != "Pbig01399" {
			t.Fatalf("bounded scan: %d pairs", len(got))
		}
		kvtSameKeys(t, "bounded scan", got, ks[375*2+100:375*2+1400])
		got, _ = kvtScan(t, ctx, tc.KV(2), &rspb.ScanRequest{StartKey: []byte("Pbig00100"), EndKey: []byte("Pbig01400"), Reverse: true})
		kvtSameKeys(t, "bounded reverse scan", got, kvtReversed(ks[375*2+100:375*2+1400]))
		// Scans inside a Batch page through the big range too.
		br, err := tc.KV(1).Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{
			{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{KeysOnly: true}}},
			{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{Limit: 2000}}},
			{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{Limit: 1900, Reverse: true, KeysOnly: true}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		kvtSameKeys(t, "batch keys_only scan", br.Responses[0].GetScan().GetKvs(), want)
		kvtSameKeys(t, "batch scan limit 2000", br.Responses[1].GetScan().GetKvs(), want[:2000])
		checkVals("batch scan limit 2000", br.Responses[1].GetScan().GetKvs())
		kvtSameKeys(t, "batch reverse scan limit 1900", br.Responses[2].GetScan().GetKvs(), kvtReversed(want)[:1900])
		// [D, c) holds the 375 Dbig and 1500 Pbig keys; reverse from the end.
		// (A separate call: the client's default receive limit is 4 MiB.)
		br, err = tc.KV(2).Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{
			{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: []byte("D"), EndKey: []byte("c"), Reverse: true, Limit: 1700}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		kvtSameKeys(t, "batch bounded reverse scan limit 1700", br.Responses[0].GetScan().GetKvs(), kvtReversed(ks[375 : 375+1875])[:1700])
		checkVals("batch bounded reverse scan limit 1700", br.Responses[0].GetScan().GetKvs())
		// And the whole lot can be deleted in one call.
		dr, err := tc.KV(2).DeleteRange(ctx, &rspb.DeleteRangeRequest{StartKey: []byte("A"), EndKey: []byte("p")})
		if err != nil || dr.Deleted != int64(len(ks)) {
			t.Fatalf("delete range of the big data: %v %v", dr, err)
		}
		got, _ = kvtScan(t, ctx, tc.KV(0), &rspb.ScanRequest{})
		kvtSameKeys(t, "after deleting the big data", got, []string{"0out", "zout"})
	})
}

// TestKVSystemLookingKeys writes client keys that look like system keys:
// they must stay in the user span and leave routing intact.
func TestKVSystemLookingKeys(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})
	ctx := ctxT(t)
	ks := []string{
		"\x00meta", "\x00m", "\x00mu", "\x00m\xff\xff", "\x00snode/", "\x00snode/\x00\x00\x00\x00\x00\x00\x00\x01",
		"\x00s", "\x00", "\x00\x00", "u", "uA", "v", "\xff", "\xff\xff", "\xff\xff\xff", "A", "P", "o",
	}
	for i, k := range ks {
		kvtPut(t, ctx, tc.KV(i%3), k, "v-"+k)
	}
	sorted := append([]string(nil), ks...)
	sort.Strings(sorted)
	for n := 0; n < 3; n++ {
		for _, k := range ks {
			kvtWantValue(t, ctx, tc.KV(n), k, "v-"+k)
		}
		got, _ := kvtScan(t, ctx, tc.KV(n), &rspb.ScanRequest{})
		kvtSameKeys(t, "full scan", got, sorted)
		got, _ = kvtScan(t, ctx, tc.KV(n), &rspb.ScanRequest{Reverse: true})
		kvtSameKeys(t, "full reverse scan", got, kvtReversed(sorted))
		got, _ = kvtScan(t, ctx, tc.KV(n), &rspb.ScanRequest{StartKey: []byte("\x00m"), EndKey: []byte("\x00t")})
		kvtSameKeys(t, "meta-looking span", got, []string{"\x00m", "\x00meta", "\x00mu", "\x00m\xff\xff", "\x00s", "\x00snode/", "\x00snode/\x00\x00\x00\x00\x00\x00\x00\x01"})
	}
	// Routing still works: fresh keys in every range, through every node,
	// and the system-looking keys can be deleted like any others.
	for i, k := range []string{"0-after", "D-after", "P-after", "c-after", "o-after"} {
		kvtPut(t, ctx, tc.KV(i%3), k, "x")
		kvtWantValue(t, ctx, tc.KV((i+1)%3), k, "x")
	}
	r, err := tc.KV(1).DeleteRange(ctx, &rspb.DeleteRangeRequest{StartKey: []byte("\x00"), EndKey: []byte("\x01")})
	if err != nil || r.Deleted != 9 {
		t.Fatalf("delete range of the \\x00 keys: %v %v", r, err)
	}
	d, err := tc.KV(2).Delete(ctx, &rspb.DeleteRequest{Key: []byte("\xff\xff")})
	if err != nil || !d.Existed {
		t.Fatalf("delete \\xff\\xff: %v %v", d, err)
	}
	got, _ := kvtScan(t, ctx, tc.KV(0), &rspb.ScanRequest{})
	kvtSameKeys(t, "final scan", got, []string{"0-after", "A", "D-after", "P", "P-after", "c-after", "o", "o-after", "u", "uA", "v", "\xff", "\xff\xff\xff"})
	// The cluster's own records are intact: every node still sees all
	// seven ranges with their replicas.
	for n := 0; n < 3; n++ {
		rr, err := rspb.NewAdminClient(tc.Conn(n)).Ranges(ctx, &rspb.RangesRequest{})
		if err != nil || len(rr.Ranges) != len(tc.Init.Ranges) {
			t.Fatalf("n%d ranges: %v %v", n+1, rr, err)
		}
	}
}

// TestKVNodeRestart writes while a node is down, restarts it, then stops
// another node: the restarted node must have caught up for the remaining
// two to serve.
func TestKVNodeRestart(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	key := func(i int) string { return fmt.Sprintf("%c-restart-%03d", alphabet[i%len(alphabet)], i) }

	start := time.Now()
	tc.StopNode(2)
	t.Logf("n3 stopped after %v", time.Since(start))
	for i := 0; i < 200; i++ {
		kvtPut(t, ctx, tc.KV(0), key(i), "v"+strconv.Itoa(i))
	}
	if err := tc.RestartNode(2); err != nil {
		t.Fatalf("restart n3: %v", err)
	}
	t.Logf("wrote and restarted n3 after %v", time.Since(start))
	tc.StopNode(0)
	t.Logf("n1 stopped after %v", time.Since(start))

	c := tc.KV(1)
	for i := 0; i < 200; i++ {
		k := key(i)
		for {
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			g, err := c.Get(actx, &rspb.GetRequest{Key: []byte(k)})
			acancel()
			if err == nil {
				if !g.Found || string(g.Kv.Value) != "v"+strconv.Itoa(i) {
					t.Fatalf("%q after the restart: %v", k, g)
				}
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%q unreadable via n2 with n1 down: %v", k, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	var want []string
	for i := 0; i < 200; i++ {
		want = append(want, key(i))
	}
	sort.Strings(want)
	for {
		got, _, err := kvtScanErr(ctx, c, &rspb.ScanRequest{})
		if err == nil {
			kvtSameKeys(t, "scan via n2", got, want)
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("scan via n2 with n1 down: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Writes still reach a quorum (n2 + n3), and n3 serves them too.
	kvtPut(t, ctx, c, "o-after-restart", "ok")
	kvtWantValue(t, ctx, tc.KV(2), "o-after-restart", "ok")
	kvtWantValue(t, ctx, tc.KV(2), key(199), "v199")
}
