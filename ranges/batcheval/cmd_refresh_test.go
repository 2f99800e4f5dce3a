package batcheval

import (
	"errors"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

func refreshReq(start, end string, from int64) *rspb.RequestUnion {
	q := &rspb.RefreshRequest{Key: keys.UserKey([]byte(start)), RefreshFrom: &rspb.Timestamp{WallTime: from}}
	if end != "" {
		q.EndKey = keys.UserKey([]byte(end))
	}
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Refresh{Refresh: q}}
}

// testTxn is a transaction reading at read and writing at write.
func testTxn(id byte, read, write int64) *rspb.Transaction {
	idb := make([]byte, TxnIDLen)
	idb[0] = id
	return &rspb.Transaction{
		Meta:          &rspb.TxnMeta{Id: idb, Key: keys.UserKey([]byte("anchor")), WriteTimestamp: &rspb.Timestamp{WallTime: write}, MinTimestamp: &rspb.Timestamp{WallTime: read}},
		ReadTimestamp: &rspb.Timestamp{WallTime: read},
	}
}

// TestRefreshDeclaration: refresh is an internal read of a point or a
// span, needs the versions since refresh_from, and splits across ranges
// into parts whose (empty) responses merge into one.
func TestRefreshDeclaration(t *testing.T) {
	point, span := refreshReq("a", "", 20), refreshReq("a", "m", 20)
	c := mustLookup(t, span)
	if c.Name() != "refresh" || !c.ReadOnly() || !c.Internal() {
		t.Errorf("refresh: name %q readOnly %v internal %v", c.Name(), c.ReadOnly(), c.Internal())
	}
	if sp := c.Span(point); !sp.Point || string(sp.Key) != string(keys.UserKey([]byte("a"))) {
		t.Errorf("point span %+v", sp)
	}
	if sp := c.Span(span); sp.Point || string(sp.EndKey) != string(keys.UserKey([]byte("m"))) {
		t.Errorf("span %+v", sp)
	}
	if got := c.Since(span); got.GetWallTime() != 20 {
		t.Errorf("since = %v, want refresh_from 20", got)
	}
	if c.AsOf(span) != nil {
		t.Errorf("refresh reads at the batch timestamp, not at an as_of")
	}
	clipped := c.Clip(span, keys.UserKey([]byte("c")), keys.UserKey([]byte("f"))).GetRefresh()
	if string(clipped.Key) != string(keys.UserKey([]byte("c"))) || string(clipped.EndKey) != string(keys.UserKey([]byte("f"))) || clipped.RefreshFrom.GetWallTime() != 20 {
		t.Errorf("clip = %v", clipped)
	}
	if string(span.GetRefresh().Key) != string(keys.UserKey([]byte("a"))) {
		t.Errorf("clip changed the request: %v", span.GetRefresh())
	}
	part := &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Refresh{Refresh: &rspb.RefreshResponse{}}}
	if m := c.Merge(span, []*rspb.ResponseUnion{part, part}); m.GetRefresh() == nil {
		t.Errorf("merge = %v, want a refresh response", m)
	}
	if in := c.ToInternal(span).GetRefresh(); string(in.Key) != string(span.GetRefresh().Key) || in == span.GetRefresh() {
		t.Errorf("ToInternal = %v: want an identical copy (nodes send internal keys)", in)
	}

	for _, tc := range []struct {
		q    *rspb.RefreshRequest
		want string
	}{
		{&rspb.RefreshRequest{RefreshFrom: &rspb.Timestamp{WallTime: 1}}, "empty key"},
		{&rspb.RefreshRequest{Key: []byte("b"), EndKey: []byte("a"), RefreshFrom: &rspb.Timestamp{WallTime: 1}}, "not after key"},
		{&rspb.RefreshRequest{Key: []byte("a"), EndKey: []byte("a"), RefreshFrom: &rspb.Timestamp{WallTime: 1}}, "not after key"},
		{&rspb.RefreshRequest{Key: []byte("a")}, "refresh_from must be"},
		{&rspb.RefreshRequest{Key: []byte("a"), RefreshFrom: &rspb.Timestamp{WallTime: -1}}, "refresh_from must be"},
		{&rspb.RefreshRequest{Key: []byte("a"), EndKey: []byte(strings.Repeat("z", 100)), RefreshFrom: &rspb.Timestamp{WallTime: 1}}, "end_key: key of 100 bytes"},
	} {
		_, err := c.Check(&rspb.RequestUnion{Value: &rspb.RequestUnion_Refresh{Refresh: tc.q}}, Limits{MaxKeySize: 10})
		var re *Error
		if !errors.As(err, &re) || re.E.Code != rspb.RangeError_INVALID_ARGUMENT || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("check %v = %v, want INVALID_ARGUMENT with %q", tc.q, err, tc.want)
		}
	}
}

// TestEvalRefresh evaluates refreshes of a transaction (id 1) that read at
// 20 and refreshes to 40, over committed writes and intents of its own and
// of another transaction (id 2).
func TestEvalRefresh(t *testing.T) {
	eng, err := kv.Open(t.TempDir(), kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	write := func(ts int64, txn *rspb.Transaction, k string) {
		t.Helper()
		b := eng.NewBatch()
		defer b.Close()
		put := &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: keys.UserKey([]byte(k)), Value: []byte("v")}}}
		if _, err := EvalWriteTxn(b, []*rspb.RequestUnion{put}, kv.Timestamp{WallTime: ts}, 0, txn, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
	}
	write(10, nil, "a")
	write(30, nil, "b")
	write(10, nil, "c")
	mine, other := testTxn(1, 20, 40), testTxn(2, 35, 35)
	reader := testTxn(3, 20, 40) // it has not written: no anchor yet
	reader.Meta.Key = nil
	write(35, mine, "c")  // its own intent: no conflict
	write(35, other, "d") // another's intent below 40
	write(50, other, "e") // another's intent above 40

	for _, tc := range []struct {
		name string
		req  *rspb.RequestUnion
		txn  *rspb.Transaction
		code rspb.RangeError_Code // 0 (OK): success
		want string               // in the error
	}{
		{"unchanged key", refreshReq("a", "", 20), mine, 0, ""},
		{"a transaction that has not written yet", refreshReq("a", "", 20), reader, 0, ""},
		{"own intent", refreshReq("c", "", 20), mine, 0, ""},
		{"span without conflicts", refreshReq("c", "d", 20), mine, 0, ""},
		{"span over another intent above", refreshReq("e", "z", 20), mine, 0, ""},
		{"a write after the read", refreshReq("b", "", 20), mine, rspb.RangeError_TXN_RETRY,
			`refresh of txn 01000000000000000000000000000000 failed: key "b" was written at 0.000000030,0`},
		{"a write at the read is not a change", refreshReq("b", "", 30), mine, 0, ""},
		{"span meets the write", refreshReq("a", "c", 20), mine, rspb.RangeError_TXN_RETRY, `key "b" was written at 0.000000030,0`},
		{"another transaction's intent", refreshReq("c", "z", 20), mine, rspb.RangeError_TXN_RETRY,
			`key "d" has an intent of another transaction at 0.000000035,0`},
		{"not in a transaction", refreshReq("a", "", 20), nil, rspb.RangeError_INVALID_ARGUMENT, "must run in a transaction"},
		{"refresh_from above the timestamp", refreshReq("a", "", 41), mine, rspb.RangeError_INVALID_ARGUMENT, "is above the read timestamp 0.000000040,0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resps, err := EvalReadTxn(eng, []*rspb.RequestUnion{tc.req}, kv.Timestamp{WallTime: 40}, 0, tc.txn)
			if tc.code == 0 {
				if err != nil || len(resps) != 1 || resps[0].GetRefresh() == nil {
					t.Fatalf("refresh = %v, %v; want a refresh response", resps, err)
				}
				return
			}
			var re *Error
			if !errors.As(err, &re) || re.E.Code != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refresh error %v, want %s containing %q", err, tc.code, tc.want)
			}
		})
	}
}
