package batcheval

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

func mustLookup(t *testing.T, r *rspb.RequestUnion) *Command {
	t.Helper()
	c, err := Lookup(r)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	return c
}

func kvs(ks ...string) []*rspb.KeyValue {
	out := make([]*rspb.KeyValue, len(ks))
	for i, k := range ks {
		out[i] = &rspb.KeyValue{Key: []byte(k)}
	}
	return out
}

func keysOf(x []*rspb.KeyValue) string {
	var b strings.Builder
	for _, kv := range x {
		b.Write(kv.Key)
	}
	return b.String()
}

// TestScanClipAndMerge: a scan crossing ranges is clipped per range, and
// its parts (ordered by range start) are joined in scan order, reverse
// scans from the last range back, cut at the limit.
func TestScanClipAndMerge(t *testing.T) {
	q := &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: []byte("a"), EndKey: []byte("z"), Limit: 5, KeysOnly: true}}}
	c := mustLookup(t, q)
	clipped := c.Clip(q, []byte("c"), []byte("f")).GetScan()
	if string(clipped.StartKey) != "c" || string(clipped.EndKey) != "f" || clipped.Limit != 5 || !clipped.KeysOnly {
		t.Errorf("clip = %v", clipped)
	}
	if string(q.GetScan().StartKey) != "a" {
		t.Errorf("clip changed the request: %v", q.GetScan())
	}
	part := func(ks ...string) *rspb.ResponseUnion {
		return &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Scan{Scan: &rspb.ScanResponse{Kvs: kvs(ks...), ResumeKey: []byte("x")}}}
	}
	got := c.Merge(q, []*rspb.ResponseUnion{part("a", "b"), part("c", "d"), part("e", "f")}).GetScan()
	if keysOf(got.Kvs) != "abcde" || got.ResumeKey != nil {
		t.Errorf("forward merge = %q resume %q, want abcde and no resume key", keysOf(got.Kvs), got.ResumeKey)
	}
	q.GetScan().Reverse = true
	got = c.Merge(q, []*rspb.ResponseUnion{part("b", "a"), part("d", "c"), part("f", "e")}).GetScan()
	if keysOf(got.Kvs) != "fedcb" {
		t.Errorf("reverse merge = %q, want fedcb", keysOf(got.Kvs))
	}
}

func TestDeleteRangeMerge(t *testing.T) {
	q := &rspb.RequestUnion{Value: &rspb.RequestUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeRequest{StartKey: []byte("a"), EndKey: []byte("z")}}}
	c := mustLookup(t, q)
	part := func(n, wall int64) *rspb.ResponseUnion {
		return &rspb.ResponseUnion{Value: &rspb.ResponseUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeResponse{Deleted: n, CommitTimestamp: &rspb.Timestamp{WallTime: wall}}}}
	}
	got := c.Merge(q, []*rspb.ResponseUnion{part(2, 10), part(3, 30), part(4, 20)}).GetDeleteRange()
	if got.Deleted != 9 || got.CommitTimestamp.GetWallTime() != 30 {
		t.Errorf("merge = %v, want 9 deleted at 30", got)
	}
	one := part(1, 5)
	if c.Merge(q, []*rspb.ResponseUnion{one}).GetDeleteRange() != one.GetDeleteRange() {
		t.Errorf("a single part is not the response")
	}
}

// TestKeyMapping: every request's keys move into the user span, and
// responses come back with client keys; the client request is unchanged.
func TestKeyMapping(t *testing.T) {
	k, v := []byte("k"), []byte("v")
	reqs := []*rspb.RequestUnion{
		{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: k, AsOf: &rspb.Timestamp{WallTime: 7}}}},
		{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: k, Value: v}}},
		{Value: &rspb.RequestUnion_Delete{Delete: &rspb.DeleteRequest{Key: k}}},
		{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{Key: k, Value: v, ExpectedValue: v}}},
		{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: k, Delta: 3}}},
		{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: k, EndKey: []byte("m"), Limit: 2, Reverse: true}}},
		{Value: &rspb.RequestUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeRequest{StartKey: k, EndKey: []byte("m")}}},
	}
	for _, q := range reqs {
		c := mustLookup(t, q)
		before := proto.Clone(q)
		in := c.ToInternal(q)
		if !proto.Equal(q, before) {
			t.Errorf("%s: ToInternal changed the client request", c.Name())
		}
		sp := c.Span(in)
		if !bytes.Equal(sp.Key, keys.UserKey(k)) || sp.Point == (c.clip != nil) {
			t.Errorf("%s: internal span %q point=%v", c.Name(), sp.Key, sp.Point)
		}
		if !sp.Point && !bytes.Equal(sp.EndKey, keys.UserKey([]byte("m"))) {
			t.Errorf("%s: internal end key %q", c.Name(), sp.EndKey)
		}
		ks, vs := c.Payload(in)
		for _, b := range ks {
			if len(b) > 0 && !keys.IsUserKey(b) {
				t.Errorf("%s: key %q is not in the user span", c.Name(), b)
			}
		}
		_, cvs := c.Payload(q)
		for i := range cvs {
			if !bytes.Equal(vs[i], cvs[i]) {
				t.Errorf("%s: internal value %d is %q, the client's %q", c.Name(), i, vs[i], cvs[i])
			}
		}
		if !proto.Equal(c.AsOf(in), c.AsOf(q)) {
			t.Errorf("%s: as_of %v, want %v", c.Name(), c.AsOf(in), c.AsOf(q))
		}
	}
	g := &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Get{Get: &rspb.GetResponse{Found: true, Kv: &rspb.KeyValue{Key: keys.UserKey(k)}}}}
	ToClient(g)
	if string(g.GetGet().Kv.Key) != "k" {
		t.Errorf("get response key %q", g.GetGet().Kv.Key)
	}
	s := &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Scan{Scan: &rspb.ScanResponse{Kvs: []*rspb.KeyValue{{Key: keys.UserKey(k)}}, ResumeKey: keys.UserKey(k)}}}
	ToClient(s)
	if keysOf(s.GetScan().Kvs) != "k" || s.GetScan().ResumeKey != nil {
		t.Errorf("scan response %v", s.GetScan())
	}
}

// TestEvalWriteBatch: a write command's reads see its earlier writes; a
// read-only batch refuses writes.
func TestEvalWriteBatch(t *testing.T) {
	eng, err := kv.Open(t.TempDir(), kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	k := keys.UserKey([]byte("n"))
	b := eng.NewBatch()
	defer b.Close()
	ts := kv.Timestamp{WallTime: 100}
	reqs := []*rspb.RequestUnion{
		{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: k, Delta: 5}}},
		{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: k, Delta: -2}}},
		{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: k}}},
	}
	resps, err := EvalWrite(b, reqs, ts, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := resps[1].GetIncrement().GetNewValue(); n != 3 {
		t.Errorf("second increment = %d, want 3", n)
	}
	if g := resps[2].GetGet(); !g.Found || string(g.Kv.Value) != "3" || g.Kv.Timestamp.GetWallTime() != 100 {
		t.Errorf("get in the batch = %v, want 3 at 100", g)
	}
	if _, err := EvalRead(b, reqs, ts, 0); err == nil || !strings.Contains(err.Error(), "is not a read") {
		t.Errorf("read-only evaluation of an increment: %v", err)
	}
}
