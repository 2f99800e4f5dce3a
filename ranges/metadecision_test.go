package ranges

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// metaCases is testdata/meta_decision.json. Descriptors are written
// "r5 [a,m) g3 n1,n2,n3~": range ID, span in client keys ("" is the start
// of the user span, "end" its end, "!x" the meta key of x, below the user
// span), generation,
// and the nodes of its replicas (replica IDs 1, 2, …; "~" marks a
// non-voter).
type metaCases struct {
	Records []struct {
		Name       string
		Local, Cur string // Cur "": no record
	}
	Inner []struct {
		Name   string
		Held   []string
		Record string
		End    string // the record's key (its range's end key) if not the record's own end
	}
	Missing []struct {
		Name            string
		Desc            string
		Node            uint64
		LocalReplica    bool
		OverlapsLocal   bool
		RecordOnDisk    bool
		RemovedHere     bool
		OthersCompacted *bool
	}
}

func metaKeyArg(t *testing.T, s string) []byte {
	switch {
	case s == "":
		return keys.UserKey(nil)
	case s == "end":
		return keys.UserSpanEnd
	case strings.HasPrefix(s, "!"):
		return keys.MetaKey([]byte(s[1:]))
	}
	return keys.UserKey([]byte(s))
}

func parseDesc(t *testing.T, s string) *rspb.RangeDescriptor {
	t.Helper()
	f := strings.Fields(s)
	if len(f) < 3 || !strings.HasPrefix(f[0], "r") || !strings.HasPrefix(f[1], "[") || !strings.HasSuffix(f[1], ")") || !strings.HasPrefix(f[2], "g") {
		t.Fatalf("descriptor %q: want \"rID [start,end) gGEN [nodes [nextN]]\"", s)
	}
	id, err1 := strconv.ParseUint(f[0][1:], 10, 64)
	gen, err2 := strconv.ParseUint(f[2][1:], 10, 64)
	span := strings.Split(strings.TrimSuffix(strings.TrimPrefix(f[1], "["), ")"), ",")
	if err1 != nil || err2 != nil || len(span) != 2 {
		t.Fatalf("descriptor %q: bad range ID, generation or span", s)
	}
	d := &rspb.RangeDescriptor{RangeId: id, StartKey: metaKeyArg(t, span[0]), EndKey: metaKeyArg(t, span[1]), Generation: gen}
	if len(f) > 3 {
		for i, n := range strings.Split(f[3], ",") {
			typ, standing := rspb.ReplicaType_VOTER, false
			switch {
			case strings.HasSuffix(n, "~~"): // a standing non-voter
				typ, standing, n = rspb.ReplicaType_NON_VOTER, true, strings.TrimSuffix(n, "~~")
			case strings.HasSuffix(n, "~"):
				typ, n = rspb.ReplicaType_NON_VOTER, strings.TrimSuffix(n, "~")
			}
			// "n4:7" is node 4 with replica ID 7 (default: the position).
			rid := uint64(i + 1)
			if j := strings.IndexByte(n, ':'); j >= 0 {
				id, err := strconv.ParseUint(n[j+1:], 10, 64)
				if err != nil {
					t.Fatalf("descriptor %q: replica ID in %q", s, n)
				}
				rid, n = id, n[:j]
			}
			node, err := strconv.ParseUint(strings.TrimPrefix(n, "n"), 10, 64)
			if err != nil {
				t.Fatalf("descriptor %q: node %q", s, n)
			}
			d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: node, ReplicaId: rid, Type: typ, Standing: standing})
		}
	}
	if len(f) > 4 {
		// "next7": next_replica_id 7.
		n, err := strconv.ParseUint(strings.TrimPrefix(f[4], "next"), 10, 64)
		if err != nil || !strings.HasPrefix(f[4], "next") {
			t.Fatalf("descriptor %q: want nextN after the replicas", s)
		}
		d.NextReplicaId = n
	}
	return d
}

// TestMetaDecision replays testdata/meta_decision.json through the pure
// meta repair decisions and compares them with
// testdata/meta_decision.golden. Regenerate with -rewrite.
func TestMetaDecision(t *testing.T) {
	var cases metaCases
	golden.LoadJSON(t, "meta_decision.json", &cases)
	var out strings.Builder
	out.WriteString("# The record at the end key of a range led here\n")
	for _, c := range cases.Records {
		var cur *rspb.RangeDescriptor
		if c.Cur != "" {
			cur = parseDesc(t, c.Cur)
		}
		d := decideMetaRecord(parseDesc(t, c.Local), cur)
		fmt.Fprintf(&out, "== %s\n%s: %s\n", c.Name, d.Action, d.Reason)
	}
	out.WriteString("\n# Records ending inside ranges led here\n")
	for _, c := range cases.Inner {
		var held []*rspb.RangeDescriptor
		for _, h := range c.Held {
			held = append(held, parseDesc(t, h))
		}
		rec := parseDesc(t, c.Record)
		end := rec.EndKey
		if c.End != "" {
			end = metaKeyArg(t, c.End)
		}
		d, in := decideInnerRecord(end, rec, held)
		fmt.Fprintf(&out, "== %s\n%s: %s", c.Name, d.Action, d.Reason)
		if in != nil {
			fmt.Fprintf(&out, " (in r%d)", in.RangeId)
		}
		out.WriteString("\n")
	}
	out.WriteString("\n# Replicas meta names on this node that it does not have\n")
	for _, c := range cases.Missing {
		f := missingReplicaFacts{Desc: parseDesc(t, c.Desc), NodeID: c.Node, LocalReplica: c.LocalReplica,
			OverlapsLocal: c.OverlapsLocal, RecordOnDisk: c.RecordOnDisk, RemovedHere: c.RemovedHere, OthersCompacted: c.OthersCompacted}
		a, reason := decideMissingReplica(f)
		fmt.Fprintf(&out, "== %s\n%s: %s\n", c.Name, a, reason)
	}
	golden.Check(t, "meta_decision.golden", []byte(out.String()))
}
