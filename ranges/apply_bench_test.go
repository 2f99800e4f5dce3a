package ranges

import (
	"fmt"
	"strings"
	"testing"
	"time"

	sm "github.com/lni/dragonboat/v4/statemachine"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// BenchmarkApplyWrite: what every replica does per client write, without
// Raft or gRPC: Update of one entry holding a Put of a 256-byte value
// with a proposal ID (decode, dedup check and record, the write batch, the
// range state keys, one Pebble commit). Commands are evaluated and
// marshalled ahead, with the timer stopped, so allocs/op is the apply's
// alone.
func BenchmarkApplyWrite(b *testing.B) {
	eng, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = eng.Close() }()
	desc, err := proto.Marshal(smtDesc())
	if err != nil {
		b.Fatal(err)
	}
	db := eng.NewBatch()
	if err := db.PutRaw(rangeStateKey(smtRangeID, suffixDescriptor), desc); err != nil {
		b.Fatal(err)
	}
	if err := db.Commit(false); err != nil {
		b.Fatal(err)
	}
	_ = db.Close()
	m := newStateMachine(eng, smtRangeID, 1, func(uint64, *rspb.Lease) {})
	index, err := m.Open(nil)
	if err != nil {
		b.Fatal(err)
	}
	value := []byte(strings.Repeat("v", 256))
	const ahead = 1024
	n := 0
	// prepare evaluates and marshals the next ahead commands.
	prepare := func() [][]byte {
		out := make([][]byte, ahead)
		for i := range out {
			ts := kv.Timestamp{WallTime: time.Now().UnixNano(), Logical: int32(n)}
			wb := eng.NewBatch()
			resps, err := evalWrite(wb, []*rspb.RequestUnion{smtPut(fmt.Sprintf("ub%02d", n%64), string(value))}, ts, 0)
			if err != nil {
				b.Fatal(err)
			}
			cmd := &rspb.RaftCommand{ProposalId: []byte(fmt.Sprintf("proposal-%07d", n)), Timestamp: TSToProto(ts), Generation: 1,
				Command: &rspb.RaftCommand_Write{Write: &rspb.WriteCommand{WriteBatch: wb.Repr(), Result: &rspb.RaftResult{Responses: resps, Timestamp: TSToProto(ts)}}}}
			_ = wb.Close()
			if out[i], err = proto.Marshal(cmd); err != nil {
				b.Fatal(err)
			}
			n++
		}
		return out
	}
	cmds := prepare()
	entries := make([]sm.Entry, 1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(cmds) {
			b.StopTimer()
			cmds, i = prepare(), 0
			b.StartTimer()
		}
		index++
		entries[0] = sm.Entry{Index: index, Cmd: cmds[i]}
		out, err := m.Update(entries)
		if err != nil {
			b.Fatal(err)
		}
		if out[0].Result.Value != resultOK {
			b.Fatalf("entry %d: result %d, want %d", index, out[0].Result.Value, resultOK)
		}
		i++
	}
}
