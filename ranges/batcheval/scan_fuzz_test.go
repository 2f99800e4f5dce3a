package batcheval

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// fuzzClientKey maps two fuzz bytes to a short client key over "abcdef"
// (so that keys collide, and prefix each other, often).
func fuzzClientKey(b0, b1 byte) []byte {
	k := []byte{'a' + b0%6}
	if b1%3 != 0 {
		k = append(k, 'a'+b1%6)
	}
	return k
}

func fuzzKVString(kvs []*rspb.KeyValue) string {
	var b strings.Builder
	for _, x := range kvs {
		fmt.Fprintf(&b, "%s=%d@%d ", x.Key, len(x.Value), x.GetTimestamp().GetWallTime())
	}
	return b.String()
}

// FuzzScanResume checks the resume keys of paged scans: a replica stops a
// scan at its response budget (or its limit) with a resume key, and the
// router continues from it (finishScan: a forward scan starts at the
// resume key, a reverse scan ends there, with the limit reduced by what
// came back), range by range (a scan crossing a range boundary is clipped
// per range and the parts merged, Command.Clip and Merge). The data are
// versions of short keys (live, deleted, or newer than the read) derived
// from the input, in an uncommitted batch over an in-memory engine; the
// first page of each range may share its budget with a second copy of the
// scan in the same batch. Properties:
//   - every resume key lies inside the span of the page that returned it
//     (forward: the inclusive start of the next page, in [start, end);
//     reverse: its exclusive end, in (start, end]), past (forward) or at
//     (reverse) the last key returned, and a page sent alone always makes
//     progress;
//   - the pages, merged, are exactly one unbounded scan of the span at the
//     same timestamp cut at the limit, in both directions.
func FuzzScanResume(f *testing.F) {
	eng, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := eng.Close(); err != nil {
			f.Error(err)
		}
	})
	readTS := kv.Timestamp{WallTime: 3}
	f.Fuzz(func(t *testing.T, data, start, end, split []byte, limit uint8, budget uint16, reverse, shared bool) {
		b := eng.NewBatch()
		defer func() { _ = b.Close() }()
		// Every 3 bytes of data are one version: key, value size, wall
		// time 1-4 (4 is above the read), tombstone.
		for i := 0; i+2 < len(data) && i < 3*64; i += 3 {
			k := keys.UserKey(fuzzClientKey(data[i], data[i+1]))
			ts := kv.Timestamp{WallTime: int64(1 + (data[i+2]>>1)%4)}
			var err error
			if data[i+2]&0x80 != 0 {
				err = b.DeleteMVCC(k, ts)
			} else {
				err = b.PutMVCC(k, ts, bytes.Repeat([]byte{'x'}, int(data[i+1])%48))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(start) > 3 {
			start = start[:3]
		}
		if len(end) > 3 {
			end = end[:3]
		}
		if len(end) > 0 && bytes.Compare(start, end) > 0 {
			start, end = end, start
		}
		lo, hi := keys.UserSpan(start, end)
		q := &rspb.ScanRequest{StartKey: lo, EndKey: hi, Limit: int64(limit % 8), Reverse: reverse}
		qu := &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: q}}
		c, err := Lookup(qu)
		if err != nil {
			t.Fatal(err)
		}
		pageBudget := int64(budget%2048) + 1

		full, resume, err := kv.MVCCScan(b, lo, hi, readTS, kv.ScanOptions{Reverse: reverse})
		if err != nil || resume != nil {
			t.Fatalf("unbounded scan: resume %q, %v", resume, err)
		}
		var want []*rspb.KeyValue
		for _, x := range full {
			want = append(want, kvToProto(x, false))
		}
		if q.Limit > 0 && int64(len(want)) > q.Limit {
			want = want[:q.Limit]
		}

		// checkPage checks one page's keys and resume key against its span.
		checkPage := func(p *rspb.ScanRequest, res *rspb.ScanResponse) {
			t.Helper()
			for i, x := range res.Kvs {
				if !keys.InSpan(x.Key, p.StartKey, p.EndKey) {
					t.Fatalf("page [%q, %q) returned %q outside it", p.StartKey, p.EndKey, x.Key)
				}
				if i > 0 && (bytes.Compare(res.Kvs[i-1].Key, x.Key) < 0) == p.Reverse {
					t.Fatalf("page [%q, %q) (reverse %v) out of order: %s", p.StartKey, p.EndKey, p.Reverse, fuzzKVString(res.Kvs))
				}
			}
			if len(res.ResumeKey) == 0 {
				return
			}
			// A forward page resumes at the inclusive start of the next
			// one, in [start, end); a reverse page at its exclusive end,
			// in (start, end]. (At a bound: a copy whose budget was spent
			// by the batch's earlier requests resumes where it started.)
			inside := keys.InSpan(res.ResumeKey, p.StartKey, p.EndKey)
			if p.Reverse {
				inside = bytes.Compare(p.StartKey, res.ResumeKey) < 0 && bytes.Compare(res.ResumeKey, p.EndKey) <= 0
			}
			if !inside {
				t.Fatalf("page [%q, %q) (reverse %v) resumes at %q outside it", p.StartKey, p.EndKey, p.Reverse, res.ResumeKey)
			}
			if n := len(res.Kvs); n > 0 {
				last := res.Kvs[n-1].Key
				if !p.Reverse && bytes.Compare(res.ResumeKey, last) <= 0 || p.Reverse && !bytes.Equal(res.ResumeKey, last) {
					t.Fatalf("page [%q, %q) (reverse %v) ends at %q but resumes at %q", p.StartKey, p.EndKey, p.Reverse, last, res.ResumeKey)
				}
			}
		}
		// finish pages one range's part as finishScan does.
		finish := func(part *rspb.ScanRequest, acc *rspb.ScanResponse) *rspb.ScanResponse {
			for pages := 0; len(acc.ResumeKey) > 0 && (part.Limit == 0 || int64(len(acc.Kvs)) < part.Limit); pages++ {
				if pages > len(data) {
					t.Fatalf("part [%q, %q) still resuming after %d pages", part.StartKey, part.EndKey, pages)
				}
				next := proto.Clone(part).(*rspb.ScanRequest)
				if part.Reverse {
					next.EndKey = acc.ResumeKey
				} else {
					next.StartKey = acc.ResumeKey
				}
				if part.Limit > 0 {
					next.Limit = part.Limit - int64(len(acc.Kvs))
				}
				resps, err := EvalRead(b, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{Scan: next}}}, readTS, pageBudget)
				if err != nil {
					t.Fatalf("page [%q, %q): %v", next.StartKey, next.EndKey, err)
				}
				more := resps[0].GetScan()
				checkPage(next, more)
				if len(more.Kvs) == 0 && bytes.Equal(more.ResumeKey, acc.ResumeKey) {
					t.Fatalf("page [%q, %q) sent alone made no progress: resumes at %q again", next.StartKey, next.EndKey, more.ResumeKey)
				}
				acc.Kvs = append(acc.Kvs, more.Kvs...)
				acc.ResumeKey = more.ResumeKey
			}
			acc.ResumeKey = nil
			return acc
		}

		// The range boundary, if it falls inside the span.
		parts := []*rspb.ScanRequest{q}
		if p := keys.UserKey(fuzzSplit(split)); bytes.Compare(lo, p) < 0 && bytes.Compare(p, hi) < 0 {
			parts = []*rspb.ScanRequest{c.Clip(qu, lo, p).GetScan(), c.Clip(qu, p, hi).GetScan()}
		}
		results := make([][]*rspb.ResponseUnion, 2) // per copy: the parts' responses in range order
		for _, part := range parts {
			copies := 1
			if shared {
				copies = 2
			}
			batch := make([]*rspb.RequestUnion, copies)
			for i := range batch {
				batch[i] = &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: part}}
			}
			resps, err := EvalRead(b, batch, readTS, pageBudget)
			if err != nil {
				t.Fatalf("first page of [%q, %q): %v", part.StartKey, part.EndKey, err)
			}
			for i, r := range resps {
				checkPage(part, r.GetScan())
				results[i] = append(results[i], &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Scan{Scan: finish(part, r.GetScan())}})
			}
		}
		for i, rs := range results {
			if rs == nil {
				continue
			}
			got := c.Merge(qu, rs).GetScan()
			if fuzzKVString(got.Kvs) != fuzzKVString(want) || len(got.ResumeKey) > 0 {
				t.Fatalf("copy %d of scan [%q, %q) limit %d reverse %v, budget %d, %d parts:\npaged:     %s\nunbounded: %s",
					i, lo, hi, q.Limit, reverse, pageBudget, len(parts), fuzzKVString(got.Kvs), fuzzKVString(want))
			}
		}
	})
}

// fuzzSplit is the client key a range boundary falls on.
func fuzzSplit(b []byte) []byte {
	if len(b) < 2 {
		return []byte("c")
	}
	return fuzzClientKey(b[0], b[1])
}
