package ranges

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestReplicaChangeDecision replays testdata/replica_change.json through
// decideReplicaChange (which step of adding or removing a replica comes
// next, given the descriptor and Dragonboat's membership) and
// checkReplicaChange (whether a committed descriptor change applies), and
// compares the results with testdata/replica_change.golden. Descriptors
// are written as in meta_decision.json, with "n4:7" for replica 7 on n4,
// "~" for a non-voter (a learner, or a standing one in a descriptor
// written before ReplicaDescriptor.standing), "~~" for one recorded as
// standing and "nextN" for next_replica_id; a node's Raft address is
// "nN"; NonVoter adds a standing non-voter. Regenerate with -rewrite.
func TestReplicaChangeDecision(t *testing.T) {
	var cases struct {
		Steps []struct {
			Name              string
			Desc              string
			Remove            bool
			NonVoter          bool
			Node              uint64
			UnknownNode       bool
			Voters, NonVoters map[uint64]string
			Removed           []uint64
			ReadReplicaNodes  []uint64
			LeaseNode         uint64
			LogsCompacted     *bool
			TargetApplied     *uint64
			WantApplied       uint64
		}
		Applies []struct {
			Name, Cur, Next string
			LeaseReplica    uint64
			// MarkStanding: mark this replica of Next standing (a voter
			// too, which the descriptor syntax cannot say).
			MarkStanding uint64
		}
	}
	golden.LoadJSON(t, "replica_change.json", &cases)
	var out strings.Builder
	out.WriteString("# The next step of a replica change\n")
	for _, c := range cases.Steps {
		f := replicaChangeFacts{Desc: parseDesc(t, c.Desc), Remove: c.Remove, NonVoter: c.NonVoter, NodeID: c.Node, Voters: c.Voters, NonVoters: c.NonVoters,
			Removed: map[uint64]bool{}, LeaseNode: c.LeaseNode, LogsCompacted: c.LogsCompacted, TargetApplied: c.TargetApplied, WantApplied: c.WantApplied}
		if !c.UnknownNode {
			f.NodeAddr = fmt.Sprintf("n%d", c.Node)
		}
		f.ReadReplicaNodes = map[uint64]bool{}
		for _, n := range c.ReadReplicaNodes {
			f.ReadReplicaNodes[n] = true
		}
		for _, id := range c.Removed {
			f.Removed[id] = true
		}
		d := decideReplicaChange(f)
		fmt.Fprintf(&out, "== %s\n%s replica=%d", c.Name, d.Step, d.ReplicaID)
		if d.LeaseTo != 0 {
			fmt.Fprintf(&out, " lease-to=n%d", d.LeaseTo)
		}
		fmt.Fprintf(&out, ": %s\n", d.Reason)
	}
	out.WriteString("\n# Whether a committed descriptor change applies\n")
	for _, c := range cases.Applies {
		var next *rspb.RangeDescriptor
		if c.Next != "" {
			next = parseDesc(t, c.Next)
			for _, rep := range next.Replicas {
				if rep.ReplicaId == c.MarkStanding {
					rep.Standing = true
				}
			}
		}
		why := checkReplicaChange(parseDesc(t, c.Cur), next, &rspb.Lease{ReplicaId: c.LeaseReplica})
		if why == "" {
			why = "applies"
		}
		fmt.Fprintf(&out, "== %s\n%s\n", c.Name, why)
	}
	golden.Check(t, "replica_change.golden", []byte(out.String()))
}
