package ranges

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// applyCase is one case of testdata/apply_check.json. Leases are written
// "n2 s5 epoch 3" (epoch lease) or "n2 s5 exp 40" (expiration lease
// expiring at wall time 40 s); "" is no lease.
type applyCase struct {
	Name  string
	State struct {
		Lease      string
		Generation uint64
		FrozenInto uint64
		MaxWriteS  int64 // the range's highest write, wall seconds
		ClosedS    int64 // the closed timestamp the log carried, wall seconds
		DedupHit   bool
	}
	Cmd struct {
		Kind       string // write, lease, gc, split, freeze, merge
		LeaseSeq   uint64
		Generation uint64
		ProposalID bool
		ProposedS  int64  // the proposal's timestamp, wall seconds
		CommitS    int64  // a write's commit timestamp, wall seconds (0: none)
		Prev, Next string // lease requests
	}
}

func parseLease(t *testing.T, s string) *rspb.Lease {
	t.Helper()
	if s == "" {
		return &rspb.Lease{}
	}
	f := strings.Fields(s)
	if len(f) != 4 || !strings.HasPrefix(f[0], "n") || !strings.HasPrefix(f[1], "s") {
		t.Fatalf("lease %q: want \"nNODE sSEQ epoch E\" or \"nNODE sSEQ exp SECONDS\"", s)
	}
	node, _ := strconv.ParseUint(f[0][1:], 10, 64)
	seq, _ := strconv.ParseUint(f[1][1:], 10, 64)
	v, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		t.Fatalf("lease %q: %v", s, err)
	}
	l := &rspb.Lease{NodeId: node, ReplicaId: node, Sequence: seq}
	switch f[2] {
	case "epoch":
		l.Epoch = v
	case "exp":
		l.Expiration = TSToProto(kv.Timestamp{WallTime: v * int64(time.Second)})
	default:
		t.Fatalf("lease %q: %q is neither epoch nor exp", s, f[2])
	}
	return l
}

// TestApplyCheck replays testdata/apply_check.json through checkApply and
// compares the verdicts with testdata/apply_check.golden (-rewrite).
func TestApplyCheck(t *testing.T) {
	var cases []applyCase
	golden.LoadJSON(t, "apply_check.json", &cases)
	var out strings.Builder
	for _, c := range cases {
		f := applyFacts{RangeID: 7, Desc: &rspb.RangeDescriptor{RangeId: 7, Generation: c.State.Generation},
			Lease: parseLease(t, c.State.Lease), FrozenInto: c.State.FrozenInto,
			MaxWrite: kv.Timestamp{WallTime: c.State.MaxWriteS * int64(time.Second)}, DedupWindow: 5 * time.Minute, DedupHit: c.State.DedupHit}
		if c.State.ClosedS != 0 {
			f.Closed = kv.Timestamp{WallTime: c.State.ClosedS * int64(time.Second)}
		}
		cmd := &rspb.RaftCommand{LeaseSequence: c.Cmd.LeaseSeq, Generation: c.Cmd.Generation,
			Timestamp: TSToProto(kv.Timestamp{WallTime: c.Cmd.ProposedS * int64(time.Second)})}
		if c.Cmd.ProposalID {
			cmd.ProposalId = []byte("p")
		}
		switch c.Cmd.Kind {
		case "write":
			w := &rspb.WriteCommand{WriteBatch: []byte{1}}
			if c.Cmd.CommitS != 0 {
				w.Result = &rspb.RaftResult{Timestamp: TSToProto(kv.Timestamp{WallTime: c.Cmd.CommitS * int64(time.Second)})}
			}
			cmd.Command = &rspb.RaftCommand_Write{Write: w}
		case "lease":
			rl := &rspb.RequestLeaseCommand{Lease: parseLease(t, c.Cmd.Next)}
			if c.Cmd.Prev != "" {
				rl.Prev = parseLease(t, c.Cmd.Prev)
			}
			cmd.Command = &rspb.RaftCommand_RequestLease{RequestLease: rl}
		case "gc":
			cmd.Command = &rspb.RaftCommand_Gc{Gc: &rspb.GCCommand{}}
		case "split":
			cmd.Command = &rspb.RaftCommand_Split{Split: &rspb.SplitCommand{}}
		case "freeze":
			cmd.Command = &rspb.RaftCommand_Freeze{Freeze: &rspb.FreezeCommand{MergeInto: 6}}
		case "merge":
			cmd.Command = &rspb.RaftCommand_Merge{Merge: &rspb.MergeCommand{}}
		case "change-replicas":
			cmd.Command = &rspb.RaftCommand_ChangeReplicas{ChangeReplicas: &rspb.ChangeReplicasCommand{}}
		default:
			t.Fatalf("%s: unknown command kind %q", c.Name, c.Cmd.Kind)
		}
		chk := checkApply(cmd, f)
		fmt.Fprintf(&out, "== %s\n%s: %s\n", c.Name, chk.Verdict, chk.Reason)
		if chk.Err != nil {
			fmt.Fprintf(&out, "   error %s", chk.Err.Code)
			if chk.Err.LeaderNodeId != 0 {
				fmt.Fprintf(&out, " (hint n%d)", chk.Err.LeaderNodeId)
			}
			if chk.Err.RangeDescriptor != nil {
				fmt.Fprintf(&out, " (descriptor generation %d)", chk.Err.RangeDescriptor.Generation)
			}
			out.WriteString("\n")
		}
	}
	golden.Check(t, "apply_check.golden", []byte(out.String()))
}
