package node

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestDecideMembership: the per-node rule of decommission, its finish and
// recommission (testdata/membership_decision.json -> .golden).
func TestDecideMembership(t *testing.T) {
	var cases struct {
		Cases []struct {
			Name, Op, Current string
			Replicas          int
			RangeIDs          []uint64
			HoldsMeta         bool
		}
	}
	golden.LoadJSON(t, "membership_decision.json", &cases)
	ops := map[string]membershipOp{"decommission": opDecommission, "finish": opFinish, "recommission": opRecommission}
	var out bytes.Buffer
	for _, c := range cases.Cases {
		op, ok := ops[c.Op]
		cur, ok2 := rspb.LivenessMembership_value[c.Current]
		if !ok || !ok2 {
			t.Fatalf("%s: bad op %q or membership %q", c.Name, c.Op, c.Current)
		}
		d := decideMembership(membershipFacts{Op: op, NodeID: 4, Current: rspb.LivenessMembership(cur),
			Replicas: c.Replicas, RangeIDs: c.RangeIDs, HoldsMeta: c.HoldsMeta})
		fmt.Fprintf(&out, "== %s\n%s -> %s", c.Name, d.Action, membershipWord(d.Target))
		if d.Action == membershipRefuse {
			fmt.Fprintf(&out, " (%s)", d.Code)
		}
		fmt.Fprintf(&out, ": %s\n", d.Reason)
	}
	golden.Check(t, "membership_decision.golden", out.Bytes())
}
