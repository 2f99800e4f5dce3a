package ranges

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// FuzzRangeState checks the decoding of a replica's persisted range state
// (the range descriptor, the lease, the max write timestamp and the size
// counter, stored as range-local keys) by stateMachine.Open, and the pure
// decisions that then consume the decoded descriptor and lease. Each input
// overwrites the state of range 5 in one in-memory engine. Properties:
//   - Open never panics: it fails, naming the first malformed key, exactly
//     when one of the values does not decode, and otherwise loads exactly
//     what the values hold;
//   - a range-local key of a replica parses back into its parts, and
//     arbitrary bytes either fail to parse or re-encode to themselves;
//   - a decoded descriptor and lease, however odd, go through checkApply
//     (with an arbitrary decoded Raft command), checkSpans,
//     decideMetaRecord, checkReplicaChange, leases.Status and
//     decideTakeover without panicking, and every refusal carries a reason.
func FuzzRangeState(f *testing.F) {
	eng, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := eng.Close(); err != nil {
			f.Error(err)
		}
	})
	const rangeID, replicaID, applied = uint64(5), uint64(2), uint64(9)
	f.Fuzz(func(t *testing.T, descRaw, leaseRaw, maxWriteRaw, sizeRaw, cmdRaw []byte) {
		b := eng.NewBatch()
		defer func() { _ = b.Close() }()
		for _, w := range []struct {
			key, val []byte
		}{
			{rangeStateKey(rangeID, suffixDescriptor), descRaw},
			{rangeStateKey(rangeID, suffixLease), leaseRaw},
			{rangeStateKey(rangeID, suffixMaxWriteTS), maxWriteRaw},
			{rangeStateKey(rangeID, suffixGCThreshold), encodeTS(kv.Timestamp{WallTime: 10})},
			{rangeStateKey(rangeID, suffixClosedTS), encodeTS(kv.Timestamp{WallTime: 20})},
			{rangeStateKey(rangeID, suffixSize), sizeRaw},
			{rangeStateKey(rangeID, suffixFrozen), encodeUint64(0)},
			{replicaStateKey(rangeID, replicaID, suffixApplied), encodeUint64(applied)},
		} {
			if err := b.PutRaw(w.key, w.val); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}

		// What the values hold, in the order Open reads them.
		wantDesc, wantLease := &rspb.RangeDescriptor{}, &rspb.Lease{}
		errDesc, errLease := proto.Unmarshal(descRaw, wantDesc), proto.Unmarshal(leaseRaw, wantLease)
		wantMaxWrite, errMaxWrite := decodeTS(maxWriteRaw)
		wantSize, errSize := decodeUint64(sizeRaw)
		var firstBad string
		for _, c := range []struct {
			suffix []byte
			err    error
		}{{suffixDescriptor, errDesc}, {suffixLease, errLease}, {suffixMaxWriteTS, errMaxWrite}, {suffixSize, errSize}} {
			if c.err != nil {
				firstBad = string(c.suffix)
				break
			}
		}

		s := newStateMachine(eng, rangeID, replicaID, nil)
		idx, err := s.Open(nil)
		if firstBad != "" {
			if err == nil || !strings.Contains(err.Error(), firstBad) {
				t.Fatalf("Open with a malformed %s: error %v, want one naming %s", firstBad, err, firstBad)
			}
			return
		}
		if err != nil {
			t.Fatalf("Open of well-formed state: %v", err)
		}
		desc, lease := s.desc.Load(), s.lease.Load()
		if idx != applied || !proto.Equal(desc, wantDesc) || !proto.Equal(lease, wantLease) || s.maxWriteTS != wantMaxWrite || s.size.Load() != int64(wantSize) {
			t.Fatalf("Open loaded applied %d, %v, %v, max write %s, size %d; want %d, %v, %v, %s, %d",
				idx, desc, lease, s.maxWriteTS, s.size.Load(), applied, wantDesc, wantLease, wantMaxWrite, int64(wantSize))
		}

		// Range-local keys of replicas.
		if r, p, suffix, err := parseReplicaStateKey(replicaStateKey(desc.RangeId, lease.ReplicaId, descRaw)); err != nil || r != desc.RangeId || p != lease.ReplicaId || !bytes.Equal(suffix, descRaw) {
			t.Fatalf("parseReplicaStateKey(replicaStateKey(%d, %d, %x)) = %d, %d, %x, %v", desc.RangeId, lease.ReplicaId, descRaw, r, p, suffix, err)
		}
		if r, p, suffix, err := parseReplicaStateKey(cmdRaw); err == nil && !bytes.Equal(replicaStateKey(r, p, suffix), cmdRaw) {
			t.Fatalf("parseReplicaStateKey(%x) = %d, %d, %x, which encodes differently", cmdRaw, r, p, suffix)
		}

		// The decisions that consume a decoded descriptor and lease.
		if cmd, err := decodeRaftCommand(cmdRaw); err == nil {
			chk := checkApply(cmd, applyFacts{RangeID: rangeID, Desc: desc, Lease: lease, MaxWrite: wantMaxWrite, DedupWindow: DedupWindow})
			if chk.Reason == "" || (chk.Verdict == applyRefuse || chk.Verdict == applyRefuseRecorded) && (chk.Err == nil || chk.Err.Message == "") {
				t.Fatalf("checkApply(%v) = %+v: a verdict without a reason, or a refusal without an error", cmd, chk)
			}
		}
		get := &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: desc.StartKey}}}
		err = checkSpans(desc, []*rspb.RequestUnion{get})
		if inside := len(desc.StartKey) > 0 && bytes.Compare(desc.StartKey, desc.EndKey) < 0; (err == nil) != inside {
			t.Fatalf("checkSpans(%v) of a get of its start key: %v; the key is inside: %v", desc, err, inside)
		}
		if d := decideMetaRecord(desc, desc); d.Action != metaKeep || d.Reason == "" {
			t.Fatalf("decideMetaRecord of a descriptor against itself = %+v, want keep", d)
		}
		if d := decideMetaRecord(desc, nil); d.Action != metaWrite || d.Reason == "" {
			t.Fatalf("decideMetaRecord of a descriptor without a record = %+v, want write", d)
		}
		if why := checkReplicaChange(desc, desc, lease); why == "" {
			t.Fatalf("checkReplicaChange accepted a descriptor as its own successor: %v", desc)
		}
		now := kv.Timestamp{WallTime: 1_000_000_000_000}
		st := leases.Status(lease, now, &rspb.Liveness{NodeId: lease.NodeId, Epoch: lease.Epoch, Expiration: lease.Expiration}, leases.DefaultMaxOffset)
		if (lease.Sequence == 0) != (st == leases.None) || st.String() == "" {
			t.Fatalf("leases.Status(%v) = %v", lease, st)
		}
		if d := decideTakeover(lease, &rspb.Liveness{NodeId: lease.NodeId, Epoch: lease.Epoch, Expiration: lease.Expiration}, now); d.Reason == "" {
			t.Fatalf("decideTakeover(%v) = %+v without a reason", lease, d)
		}
	})
}
