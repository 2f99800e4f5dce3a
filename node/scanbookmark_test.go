package node

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// scanChunks runs a streamed Scan and returns its chunks.
func scanChunks(ctx context.Context, c rspb.KVClient, req *rspb.ScanRequest) ([]*rspb.ScanResponse, error) {
	st, err := c.Scan(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []*rspb.ScanResponse
	for {
		chunk, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, chunk)
	}
}

// TestScanBookmarks: a Scan's responses carry a read bookmark, as a Get's
// and a read-only Batch's do (issue 13 item 4): each streamed chunk the
// newest version of the rows returned so far (so the last chunk's covers
// the whole scan, over range boundaries), a Scan inside a read-only Batch
// that of its own rows, an empty scan none. A session that scanned
// another writer's newer version through one node and carries the scan's
// bookmark reads that version or a newer one with CAUSAL Gets and Scans
// through every node.
func TestScanBookmarks(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{ClosedTimestampTarget: 200 * time.Millisecond, SplitKeys: [][]byte{[]byte("sbm")}})
	ctx := ctxT(t)
	cid := tc.Node(0).ClusterID()
	// sba and sbb are in the range before sbm, sbx in the one from it;
	// sbb is written last, so the first range's chunk holds the newest
	// version.
	commit := map[string]kv.Timestamp{}
	for _, k := range []string{"sba", "sbx", "sbb"} {
		p, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("1")})
		if err != nil {
			t.Fatal(err)
		}
		commit[k] = ranges.TSFromProto(p.CommitTimestamp)
	}
	decode := func(what string, b []byte) kv.Timestamp {
		t.Helper()
		ts, err := gateway.DecodeBookmark(cid, b)
		if err != nil {
			t.Fatalf("%s: bookmark %x: %v", what, b, err)
		}
		return ts
	}
	chunks, err := scanChunks(ctx, tc.KV(1), &rspb.ScanRequest{StartKey: []byte("sb"), EndKey: []byte("sbz")})
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 2 || len(chunks[0].Kvs) != 2 || len(chunks[1].Kvs) != 1 {
		t.Fatalf("scan over two ranges: %v, want a chunk of 2 rows and one of 1", chunks)
	}
	for i, c := range chunks {
		if got := decode("chunk", c.Bookmark); got != commit["sbb"] {
			t.Fatalf("chunk %d (%d rows): bookmark %s, want the newest version so far %s (sbx's alone would be %s)", i, len(c.Kvs), got, commit["sbb"], commit["sbx"])
		}
	}
	// A reverse scan meets sbx first: its chunk has sbx's version, the
	// next one the newest of all.
	chunks, err = scanChunks(ctx, tc.KV(2), &rspb.ScanRequest{StartKey: []byte("sb"), EndKey: []byte("sbz"), Reverse: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 2 || decode("reverse chunk 0", chunks[0].Bookmark) != commit["sbx"] || decode("reverse chunk 1", chunks[1].Bookmark) != commit["sbb"] {
		t.Fatalf("reverse scan: %v, want bookmarks %s then %s", chunks, commit["sbx"], commit["sbb"])
	}
	// Nothing read: no bookmark (no chunk at all).
	if chunks, err := scanChunks(ctx, tc.KV(0), &rspb.ScanRequest{StartKey: []byte("sc"), EndKey: []byte("sd")}); err != nil || len(chunks) != 0 {
		t.Fatalf("empty scan: %v, %v; want no chunk", chunks, err)
	}
	// A Scan in a read-only Batch: its own rows' newest version.
	b, err := tc.KV(2).Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{
		{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: []byte("sbm"), EndKey: []byte("sbz")}}},
		{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: []byte("sc"), EndKey: []byte("sd")}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := decode("batch scan", b.Responses[0].GetScan().Bookmark); got != commit["sbx"] || len(b.Responses[1].GetScan().Bookmark) != 0 {
		t.Fatalf("batch scans' bookmarks: %s and %x, want sbx's %s and none", got, b.Responses[1].GetScan().Bookmark, commit["sbx"])
	}
	// Another writer's newer version of sbx, scanned (STRONG) through n1:
	// a CAUSAL read through every node with the scan's last bookmark
	// sees it.
	p, err := tc.KV(2).Put(ctx, &rspb.PutRequest{Key: []byte("sbx"), Value: []byte("2")})
	if err != nil {
		t.Fatal(err)
	}
	chunks, err = scanChunks(ctx, tc.KV(0), &rspb.ScanRequest{StartKey: []byte("sb"), EndKey: []byte("sbz")})
	if err != nil || len(chunks) == 0 {
		t.Fatalf("strong scan after the second write: %v, %v", chunks, err)
	}
	bm := chunks[len(chunks)-1].Bookmark
	if got := decode("last chunk", bm); got != ranges.TSFromProto(p.CommitTimestamp) {
		t.Fatalf("last chunk's bookmark %s, want the new version's %s", got, ranges.TSFromProto(p.CommitTimestamp))
	}
	for i := 0; i < tc.NumNodes(); i++ {
		g, err := tc.KV(i).Get(ctx, &rspb.GetRequest{Key: []byte("sbx"), ReadMode: rspb.ReadMode_CAUSAL, Bookmarks: [][]byte{bm}})
		if err != nil || string(g.GetKv().GetValue()) != "2" {
			t.Fatalf("causal get via n%d with the scan's bookmark: %v, %v; want the version written at %s", i+1, g, err, ranges.TSFromProto(p.CommitTimestamp))
		}
		cs, err := scanChunks(ctx, tc.KV(i), &rspb.ScanRequest{StartKey: []byte("sb"), EndKey: []byte("sbz"), ReadMode: rspb.ReadMode_CAUSAL, Bookmarks: [][]byte{bm}})
		var got []string
		for _, c := range cs {
			for _, x := range c.Kvs {
				got = append(got, string(x.Key)+"="+string(x.Value))
			}
		}
		if err != nil || strings.Join(got, ",") != "sba=1,sbb=1,sbx=2" {
			t.Fatalf("causal scan via n%d with the scan's bookmark: %v, %v", i+1, got, err)
		}
	}
}
