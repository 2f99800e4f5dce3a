package ranges

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// fuzzSnapRange is the range whose snapshots FuzzSnapshotHeader applies.
const fuzzSnapRange = uint64(5)

// fuzzOpenEngine opens an in-memory engine closed when tb ends.
func fuzzOpenEngine(tb testing.TB) *kv.Engine {
	tb.Helper()
	eng, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := eng.Close(); err != nil {
			tb.Error(err)
		}
	})
	return eng
}

// fuzzWriteRange commits a replica of range 5 with span [start, end),
// generation gen and the given live keys at wall time 100 into eng, plus
// the lease held by replica replicaID and its applied index 3*gen, and
// returns its opened state machine.
func fuzzWriteRange(tb testing.TB, eng *kv.Engine, replicaID uint64, start, end string, gen uint64, data map[string]string) *stateMachine {
	tb.Helper()
	desc := &rspb.RangeDescriptor{RangeId: fuzzSnapRange, StartKey: []byte(start), EndKey: []byte(end), Generation: gen, NextReplicaId: 3,
		Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}, {NodeId: 2, ReplicaId: 2}}}
	lease := &rspb.Lease{Sequence: gen, NodeId: replicaID, ReplicaId: replicaID, Expiration: &rspb.Timestamp{WallTime: 1000}}
	b := eng.NewBatch()
	defer func() { _ = b.Close() }()
	for suffix, m := range map[string]proto.Message{string(suffixDescriptor): desc, string(suffixLease): lease} {
		v, err := proto.Marshal(m)
		if err == nil {
			err = b.PutRaw(rangeStateKey(fuzzSnapRange, []byte(suffix)), v)
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	if err := b.PutRaw(rangeStateKey(fuzzSnapRange, suffixMaxWriteTS), encodeTS(kv.Timestamp{WallTime: 100})); err != nil {
		tb.Fatal(err)
	}
	if err := b.PutRaw(replicaStateKey(fuzzSnapRange, replicaID, suffixApplied), encodeUint64(3*gen)); err != nil {
		tb.Fatal(err)
	}
	for k, v := range data {
		if err := b.PutMVCC([]byte(k), kv.Timestamp{WallTime: 100}, []byte(v)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := b.Commit(false); err != nil {
		tb.Fatal(err)
	}
	s := newStateMachine(eng, fuzzSnapRange, replicaID, nil)
	if _, err := s.Open(nil); err != nil {
		tb.Fatal(err)
	}
	return s
}

// fuzzSnapshot returns the snapshot stream of s as SaveSnapshot writes it.
func fuzzSnapshot(tb testing.TB, s *stateMachine) []byte {
	tb.Helper()
	ctx, err := s.PrepareSnapshot()
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.SaveSnapshot(ctx, &buf, make(chan struct{})); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// fuzzPair is one raw engine key and its value.
type fuzzPair struct{ key, value []byte }

func (p fuzzPair) String() string { return fmt.Sprintf("%x=%x", p.key, p.value) }

// fuzzDump lists every raw key and value of eng, in order.
func fuzzDump(tb testing.TB, eng *kv.Engine) []fuzzPair {
	tb.Helper()
	it, err := eng.NewIter(nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	var out []fuzzPair
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, fuzzPair{append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...)})
	}
	if err := it.Close(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func fuzzDumpString(ps []fuzzPair) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// fuzzReset makes eng hold exactly pairs again and reloads s from it (so
// that one input's failure does not carry over into the next).
func fuzzReset(tb testing.TB, eng *kv.Engine, s *stateMachine, pairs []fuzzPair) {
	tb.Helper()
	b := eng.NewBatch()
	defer func() { _ = b.Close() }()
	if err := b.DeleteRawRange([]byte{0}, []byte{0xff}); err != nil {
		tb.Fatal(err)
	}
	for _, p := range pairs {
		if err := b.PutRaw(p.key, p.value); err != nil {
			tb.Fatal(err)
		}
	}
	if err := b.Commit(false); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Open(nil); err != nil {
		tb.Fatal(err)
	}
}

// fuzzReplicaState is the in-memory state of a replica that a snapshot
// replaces.
type fuzzReplicaState struct {
	desc    *rspb.RangeDescriptor
	lease   *rspb.Lease
	applied uint64
}

func fuzzStateOf(s *stateMachine) fuzzReplicaState {
	return fuzzReplicaState{desc: s.desc.Load(), lease: s.lease.Load(), applied: s.applied.Load()}
}

func (a fuzzReplicaState) equal(b fuzzReplicaState) bool {
	return proto.Equal(a.desc, b.desc) && proto.Equal(a.lease, b.lease) && a.applied == b.applied
}

// FuzzSnapshotHeader applies arbitrary snapshot streams (a
// length-prefixed SnapshotHeader, then length-prefixed engine key/value
// pairs, then an empty frame) to replica 2 of range 5, which holds
// [ua, um) with its own data next to data and state of other ranges. The
// seeds are streams SaveSnapshot wrote. Properties:
//   - RecoverFromSnapshot never panics;
//   - a stream it refuses changes nothing: not one engine key, nor the
//     replica's descriptor, lease or applied index;
//   - a stream it accepts leaves exactly what the stream says: the
//     header's descriptor and applied index, its range-local keys, its
//     data pairs in the header's span, and nothing else changed (then the
//     replica's own earlier snapshot restores the original state exactly).
func FuzzSnapshotHeader(f *testing.F) {
	eng := fuzzOpenEngine(f)
	dst := fuzzWriteRange(f, eng, 2, "ua", "um", 1, map[string]string{"ub": "old", "uk": "old"})
	// Another range's data and state next to it.
	other := eng.NewBatch()
	for _, err := range []error{
		other.PutMVCC([]byte("uz"), kv.Timestamp{WallTime: 50}, []byte("other")),
		other.PutMVCC([]byte("u"), kv.Timestamp{WallTime: 50}, []byte("other")),
		other.PutRaw(rangeStateKey(fuzzSnapRange+1, suffixDescriptor), []byte("r6 descriptor")),
		other.PutRaw(rangeStateKey(fuzzSnapRange-1, suffixLease), []byte("r4 lease")),
		other.Commit(false),
		other.Close(),
	} {
		if err != nil {
			f.Fatal(err)
		}
	}
	original := fuzzSnapshot(f, dst)
	before, beforeState := fuzzDump(f, eng), fuzzStateOf(dst)
	stopc := make(chan struct{})

	f.Fuzz(func(t *testing.T, stream []byte) {
		err := dst.RecoverFromSnapshot(bytes.NewReader(stream), stopc)
		after, afterState := fuzzDump(t, eng), fuzzStateOf(dst)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("RecoverFromSnapshot refused a stream with an empty error")
			}
			if !afterState.equal(beforeState) || fuzzDumpString(after) != fuzzDumpString(before) {
				defer fuzzReset(t, eng, dst, before)
				t.Fatalf("RecoverFromSnapshot refused a stream (%v) but changed the replica:\nstate %+v -> %+v\nengine:\n%s->\n%s",
					err, beforeState, afterState, fuzzDumpString(before), fuzzDumpString(after))
			}
			return
		}
		restored := false
		defer func() {
			if !restored {
				fuzzReset(t, eng, dst, before)
			}
		}()

		// Accepted: what the stream says is what the replica now holds.
		br := bufio.NewReader(bytes.NewReader(stream))
		hb, err := readFrame(br)
		if err != nil {
			t.Fatalf("RecoverFromSnapshot accepted a stream without a header frame: %v", err)
		}
		hdr := &rspb.SnapshotHeader{}
		if err := proto.Unmarshal(hb, hdr); err != nil {
			t.Fatalf("RecoverFromSnapshot accepted a stream whose header does not decode: %v", err)
		}
		if want := (fuzzReplicaState{desc: afterState.desc, lease: afterState.lease, applied: hdr.AppliedIndex}); !afterState.equal(want) ||
			afterState.desc.RangeId != fuzzSnapRange || !bytes.Equal(afterState.desc.StartKey, hdr.RangeDescriptor.StartKey) || !bytes.Equal(afterState.desc.EndKey, hdr.RangeDescriptor.EndKey) {
			t.Fatalf("after a snapshot of %v at index %d the replica holds %v at index %d", hdr.RangeDescriptor, hdr.AppliedIndex, afterState.desc, afterState.applied)
		}
		lower, upper, err := kv.DataSpanBounds(hdr.RangeDescriptor.StartKey, hdr.RangeDescriptor.EndKey)
		if err != nil {
			t.Fatalf("RecoverFromSnapshot accepted the invalid span of %v: %v", hdr.RangeDescriptor, err)
		}
		oldLower, oldUpper, err := kv.DataSpanBounds(beforeState.desc.StartKey, beforeState.desc.EndKey)
		if err != nil {
			t.Fatal(err)
		}
		prefix := rangeStatePrefix(fuzzSnapRange)
		appliedKey := replicaStateKey(fuzzSnapRange, 2, suffixApplied)
		want := map[string]bool{}
		for _, l := range hdr.Local {
			want[fuzzPair{l.Key, l.Value}.String()] = true
		}
		want[fuzzPair{appliedKey, encodeUint64(hdr.AppliedIndex)}.String()] = true
		for {
			k, err := readFrame(br)
			if err != nil {
				t.Fatalf("RecoverFromSnapshot accepted a stream without its end frame: %v", err)
			}
			if len(k) == 0 {
				break
			}
			v, err := readFrame(br)
			if err != nil {
				t.Fatalf("RecoverFromSnapshot accepted a key without its value: %v", err)
			}
			if bytes.Compare(k, lower) < 0 || bytes.Compare(k, upper) >= 0 {
				t.Fatalf("RecoverFromSnapshot accepted the key %x outside the snapshot's span [%x, %x)", k, lower, upper)
			}
			want[fuzzPair{k, v}.String()] = true
		}
		in := func(k, lo, hi []byte) bool { return bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0 }
		for _, p := range before {
			if !bytes.HasPrefix(p.key, prefix) && !bytes.Equal(p.key, appliedKey) && !in(p.key, lower, upper) && !in(p.key, oldLower, oldUpper) {
				want[p.String()] = true // not replaced: stays
			}
		}
		got := map[string]bool{}
		for _, p := range after {
			got[p.String()] = true
		}
		for e := range want {
			if !got[e] {
				t.Fatalf("after the snapshot the engine lacks %s; it holds:\n%s", e, fuzzDumpString(after))
			}
		}
		for e := range got {
			if !want[e] {
				t.Fatalf("after the snapshot the engine holds %s, which the snapshot did not carry", e)
			}
		}

		// The replica's own snapshot from before restores it exactly.
		if err := dst.RecoverFromSnapshot(bytes.NewReader(original), stopc); err != nil {
			t.Fatalf("restoring the original snapshot: %v", err)
		}
		if got := fuzzDump(t, eng); !fuzzStateOf(dst).equal(beforeState) || fuzzDumpString(got) != fuzzDumpString(before) {
			t.Fatalf("the original snapshot did not restore the replica:\n%s\nwant\n%s", fuzzDumpString(got), fuzzDumpString(before))
		}
		restored = true
	})
}
