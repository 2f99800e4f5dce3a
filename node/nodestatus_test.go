package node

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestDecideNodeState: the liveness rule of `node list` / `node status`
// (testdata/node_state.json -> node_state.golden).
func TestDecideNodeState(t *testing.T) {
	var cases struct {
		Cases []struct {
			Name, ExpiresIn, DeadAfter string
			NoRecord, Draining         bool
			Epoch                      int64
			Membership                 string
		}
	}
	golden.LoadJSON(t, "node_state.json", &cases)
	const now = int64(1_700_000_000_000_000_000)
	var out bytes.Buffer
	for _, c := range cases.Cases {
		deadAfter, err := time.ParseDuration(c.DeadAfter)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		var rec *rspb.Liveness
		if !c.NoRecord {
			in, err := time.ParseDuration(c.ExpiresIn)
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			rec = &rspb.Liveness{NodeId: 4, Epoch: c.Epoch, Draining: c.Draining, Expiration: &rspb.Timestamp{WallTime: now + int64(in)},
				Membership: rspb.LivenessMembership(rspb.LivenessMembership_value[c.Membership])}
		}
		st := decideNodeState(rec, now, deadAfter)
		fmt.Fprintf(&out, "== %s\n%s %s: %s\n", c.Name, LivenessName(st.Liveness), MembershipName(st.Membership), st.Reason)
	}
	golden.Check(t, "node_state.golden", out.Bytes())
}
