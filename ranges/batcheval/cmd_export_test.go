package batcheval

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

func exportReq(start, end string, from, to int64, all bool) *rspb.RequestUnion {
	q := &rspb.ExportRequest{StartKey: []byte(start), EndKey: []byte(end), EndTs: &rspb.Timestamp{WallTime: to}, AllVersions: all}
	if from > 0 {
		q.StartTs = &rspb.Timestamp{WallTime: from}
	}
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Export{Export: q}}
}

func renderVersions(vs []*rspb.ExportedVersion) string {
	var out []string
	for _, v := range vs {
		s := string(v.Value)
		if v.Deleted {
			s = "<del>"
		}
		k, err := keys.ClientKey(v.Key)
		if err != nil {
			k = v.Key
		}
		out = append(out, fmt.Sprintf("%s@%d=%s", k, v.Timestamp.GetWallTime(), s))
	}
	return strings.Join(out, " ")
}

// TestExportAllVersionsDeclaration: all_versions survives the mapping to
// internal keys and clipping, and an all_versions export without a
// start_ts needs the whole history (Since below any GC threshold).
func TestExportAllVersionsDeclaration(t *testing.T) {
	q := exportReq("a", "m", 0, 50, true)
	c := mustLookup(t, q)
	in := c.ToInternal(q)
	if !in.GetExport().AllVersions {
		t.Fatal("ToInternal dropped all_versions")
	}
	if cl := c.Clip(in, keys.UserKey([]byte("c")), keys.UserKey([]byte("f"))).GetExport(); !cl.AllVersions || cl.EndTs.GetWallTime() != 50 {
		t.Errorf("clip = %v", cl)
	}
	since := kv.Timestamp{WallTime: c.Since(in).GetWallTime(), Logical: c.Since(in).GetLogical()}
	if since.IsEmpty() || !since.Less(kv.Timestamp{WallTime: 1}) {
		t.Errorf("since of an all_versions export from the start = %v, want the lowest timestamp", c.Since(in))
	}
	if got := c.Since(exportReq("a", "m", 20, 50, true)); got.GetWallTime() != 20 {
		t.Errorf("since of an all_versions export from 20 = %v", got)
	}
	if got := c.Since(exportReq("a", "m", 0, 50, false)); got != nil {
		t.Errorf("since of a full export = %v, want none", got)
	}
}

// TestEvalExportAllVersions: every version in the window through the
// command, paged at key boundaries by the response budget; an intent at
// or below end_ts is WRITE_INTENT naming it, as for a plain export.
func TestEvalExportAllVersions(t *testing.T) {
	eng, err := kv.Open(t.TempDir(), kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	b := eng.NewBatch()
	for _, w := range []struct {
		k    string
		wall int64
		v    string
	}{{"a", 10, "a10"}, {"a", 20, ""}, {"a", 30, "a30"}, {"b", 15, "b15"}, {"c", 5, "c5"}, {"c", 25, "c25"}} {
		k := keys.UserKey([]byte(w.k))
		if w.v == "" {
			err = b.DeleteMVCC(k, kv.Timestamp{WallTime: w.wall})
		} else {
			err = b.PutMVCC(k, kv.Timestamp{WallTime: w.wall}, []byte(w.v))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	eval := func(q *rspb.RequestUnion, budget int64) *rspb.ExportResponse {
		t.Helper()
		c := mustLookup(t, q)
		resps, err := EvalRead(eng, []*rspb.RequestUnion{c.ToInternal(q)}, kv.Timestamp{WallTime: 1000}, budget)
		if err != nil {
			t.Fatal(err)
		}
		return resps[0].GetExport()
	}
	for _, c := range []struct {
		from, to int64
		all      bool
		want     string
	}{
		{0, 100, true, "a@30=a30 a@20=<del> a@10=a10 b@15=b15 c@25=c25 c@5=c5"},
		{10, 25, true, "a@20=<del> b@15=b15 c@25=c25"},
		{0, 100, false, "a@30=a30 b@15=b15 c@25=c25"},
	} {
		got := eval(exportReq("a", "z", c.from, c.to, c.all), 0)
		if r := renderVersions(got.Versions); r != c.want || got.ResumeKey != nil {
			t.Errorf("(%d, %d] all=%v: %q resume %q, want %q", c.from, c.to, c.all, r, got.ResumeKey, c.want)
		}
	}
	// A budget below one key's versions: the first key whole, then resume.
	got := eval(exportReq("a", "z", 0, 100, true), 1)
	if r := renderVersions(got.Versions); r != "a@30=a30 a@20=<del> a@10=a10" || string(got.ResumeKey) != string(keys.UserKey([]byte("b"))) {
		t.Errorf("paged: %q resume %q", r, got.ResumeKey)
	}
	// An intent at or below end_ts.
	b = eng.NewBatch()
	txn := &kv.IntentTxn{ID: []byte("T"), Meta: []byte("m")}
	if err := kv.MVCCPut(b, keys.UserKey([]byte("b")), kv.Timestamp{WallTime: 40}, []byte("B"), false, txn); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	q := exportReq("a", "z", 0, 100, true)
	_, err = EvalRead(eng, []*rspb.RequestUnion{mustLookup(t, q).ToInternal(q)}, kv.Timestamp{WallTime: 1000}, 0)
	var re *Error
	if !errors.As(err, &re) || re.E.Code != rspb.RangeError_WRITE_INTENT || len(re.E.Intents) != 1 ||
		re.E.Intents[0].Txn.GetWriteTimestamp().GetWallTime() != 40 {
		t.Errorf("export over an intent at 40: %v, want WRITE_INTENT naming it", err)
	}
	if r := renderVersions(eval(exportReq("a", "z", 0, 35, true), 0).Versions); r != "a@30=a30 a@20=<del> a@10=a10 b@15=b15 c@25=c25 c@5=c5" {
		t.Errorf("export below the intent: %q", r)
	}
}
