package ranges

import (
	"bufio"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/proto/rspb"
)

// legacyRaftCommands are the commands whose bytes, marshalled by rangestore
// 52bb8a9 (before RaftCommand became a oneof), are in
// testdata/raft_command_52bb8a9.txt, written in today's layout.
func legacyRaftCommands() map[string]*rspb.RaftCommand {
	ts := func(w int64, l int32) *rspb.Timestamp { return &rspb.Timestamp{WallTime: w, Logical: l} }
	reps := []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}, {NodeId: 2, ReplicaId: 2}, {NodeId: 3, ReplicaId: 4}}
	left := &rspb.RangeDescriptor{RangeId: 5, StartKey: []byte("u/a"), EndKey: []byte("u/m"), Replicas: reps, Generation: 8, NextReplicaId: 5}
	right := &rspb.RangeDescriptor{RangeId: 9, StartKey: []byte("u/m"), EndKey: []byte("u/z"), Replicas: reps, Generation: 8, Sticky: true, NextReplicaId: 5}
	merged := &rspb.RangeDescriptor{RangeId: 5, StartKey: []byte("u/a"), EndKey: []byte("u/z"), Replicas: reps, Generation: 9, NextReplicaId: 5}
	lease := &rspb.Lease{ReplicaId: 2, NodeId: 2, Start: ts(1000, 1), Epoch: 3, Sequence: 7}
	prev := &rspb.Lease{ReplicaId: 1, NodeId: 1, Start: ts(500, 0), Expiration: ts(900, 0), Sequence: 6}
	commit := ts(1700000000000000001, 0)
	return map[string]*rspb.RaftCommand{
		"write": {ProposalId: []byte("prop-0001"), Timestamp: ts(1700000000000000000, 2), LeaseSequence: 7, Generation: 8,
			Command: &rspb.RaftCommand_Write{Write: &rspb.WriteCommand{
				Requests: []*rspb.RequestUnion{
					{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("u/b"), Value: []byte("v1")}}},
					{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: []byte("u/c"), Delta: 5}}},
				},
				WriteBatch: []byte{0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 3, 'u', '/', 'b', 2, 'v', '1'},
				Result: &rspb.RaftResult{Timestamp: commit, Responses: []*rspb.ResponseUnion{
					{Value: &rspb.ResponseUnion_Put{Put: &rspb.PutResponse{CommitTimestamp: commit}}},
					{Value: &rspb.ResponseUnion_Increment{Increment: &rspb.IncrementResponse{NewValue: 5, CommitTimestamp: commit}}},
				}}}}},
		"write-refused": {ProposalId: []byte("prop-0002"), Timestamp: ts(1700000000000000000, 0), LeaseSequence: 7, Generation: 8,
			Command: &rspb.RaftCommand_Write{Write: &rspb.WriteCommand{
				Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{Key: []byte("u/d"), Value: []byte("x"), ExpectAbsent: true}}}},
				Result:   &rspb.RaftResult{Error: &rspb.RangeError{Code: rspb.RangeError_FAILED_PRECONDITION, Message: "condition failed"}}}}},
		"request-lease": {Timestamp: ts(1000, 1), Command: &rspb.RaftCommand_RequestLease{RequestLease: &rspb.RequestLeaseCommand{Lease: lease, Prev: prev}}},
		"gc":            {Timestamp: ts(5000, 0), Command: &rspb.RaftCommand_Gc{Gc: &rspb.GCCommand{Threshold: ts(4000, 0)}}},
		"split": {ProposalId: []byte("prop-0003"), Timestamp: ts(2000, 0), LeaseSequence: 7, Generation: 7,
			Command: &rspb.RaftCommand_Split{Split: &rspb.SplitCommand{Left: left, Right: right,
				RightMembers: map[uint64]string{1: "127.0.0.1:7001", 2: "127.0.0.1:7002", 4: "127.0.0.1:7003"}, LeftBytes: 1234, RightBytes: 5678}}},
		"freeze": {ProposalId: []byte("prop-0004"), Timestamp: ts(3000, 0), LeaseSequence: 4, Generation: 8,
			Command: &rspb.RaftCommand_Freeze{Freeze: &rspb.FreezeCommand{MergeInto: 5}}},
		"merge": {ProposalId: []byte("prop-0005"), Timestamp: ts(3100, 0), LeaseSequence: 7, Generation: 8,
			Command: &rspb.RaftCommand_Merge{Merge: &rspb.MergeCommand{Right: right, Merged: merged, RightServedBelow: ts(3050, 3), RightBytes: 5678}}},
	}
}

// TestDecodeLegacyRaftCommands: Raft log entries written before RaftCommand
// became a oneof (a write's body was top-level fields then) decode into the
// same commands as today's, so existing logs apply identically.
func TestDecodeLegacyRaftCommands(t *testing.T) {
	f, err := os.Open("testdata/raft_command_52bb8a9.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := legacyRaftCommands()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hx, ok := strings.Cut(line, " ")
		data, err := hex.DecodeString(hx)
		if !ok || err != nil {
			t.Fatalf("bad fixture line %q: %v", line, err)
		}
		w, ok := want[name]
		if !ok {
			t.Fatalf("fixture has %q, which the test does not know", name)
		}
		seen[name] = true
		got, err := decodeRaftCommand(data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !proto.Equal(got, w) {
			t.Errorf("%s: old bytes decode to\n  %v\nwant\n  %v", name, prototext.Format(got), prototext.Format(w))
		}
		// Today's encoding of the same command decodes to it too.
		cur, err := proto.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := decodeRaftCommand(cur); err != nil || !proto.Equal(got, w) {
			t.Errorf("%s: today's bytes decode to %v, %v", name, got, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("fixture lacks %q", name)
		}
	}
}

// TestStateMachineAppliesLegacyWrite: a write in the pre-oneof layout (the
// same bytes 52bb8a9 wrote, see TestDecodeLegacyRaftCommands) applies like
// today's, and a command that mixes both layouts is refused, changing nothing.
func TestStateMachineAppliesLegacyWrite(t *testing.T) {
	h := smtNew(t)
	cmd := h.mustEvaluate("p1", smtTS(time.Second, 0), smtPut("ub", "old"))
	w := cmd.GetWrite()
	legacy := &rspb.RaftCommand{ProposalId: cmd.ProposalId, Timestamp: cmd.Timestamp, LeaseSequence: cmd.LeaseSequence, Generation: cmd.Generation,
		LegacyWriteBatch: w.WriteBatch, LegacyResult: w.Result} //nolint:staticcheck // the old layout on purpose
	if res := h.apply(legacy); res.Error != nil {
		t.Fatalf("legacy write: %v", res.Error)
	}
	if v, ok := h.get("ub"); !ok || v != "old" {
		t.Fatalf("after a legacy write: ub = %q, %v; want \"old\"", v, ok)
	}
	mixed := h.mustEvaluate("p2", smtTS(2*time.Second, 0), smtPut("ub", "mixed"))
	mixed.LegacyWriteBatch = mixed.GetWrite().WriteBatch //nolint:staticcheck // malformed on purpose
	smtWantCode(t, "mixed layouts", h.apply(mixed), rspb.RangeError_INVALID_ARGUMENT)
	if v, _ := h.get("ub"); v != "old" {
		t.Fatalf("after a malformed command: ub = %q, want \"old\"", v)
	}
}
