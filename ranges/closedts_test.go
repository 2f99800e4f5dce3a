package ranges

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestClosedTracker: a promise stays below every write in flight, never
// goes down, and a write admitted at or below it is moved just above it.
func TestClosedTracker(t *testing.T) {
	var tr closedTracker
	at := func(s int64) kv.Timestamp { return kv.Timestamp{WallTime: s} }
	tok1, ts1, c1, bumped := tr.admit(at(100), at(50))
	if ts1 != at(100) || c1 != at(50) || bumped {
		t.Fatalf("first write: ts %s closed %s bumped %v; want 100, 50, false", ts1, c1, bumped)
	}
	// The target is past the first write, still in flight: the promise
	// stops just below it.
	tok2, ts2, c2, _ := tr.admit(at(120), at(200))
	if ts2 != at(120) || c2 != at(100).Prev() {
		t.Fatalf("second write: ts %s closed %s; want 120, %s", ts2, c2, at(100).Prev())
	}
	tr.done(tok1)
	tr.done(tok2)
	// A write evaluated at or below the promise is moved above it, and
	// a lower target does not lower the promise.
	tok3, ts3, c3, bumped := tr.admit(at(90), at(10))
	if !bumped || ts3 != at(100).Prev().Next() || c3 != at(100).Prev() {
		t.Fatalf("write below the promise: ts %s closed %s bumped %v; want %s, %s, true", ts3, c3, bumped, at(100).Prev().Next(), at(100).Prev())
	}
	// The side transport closes up to its target once nothing is in
	// flight, and reports the applied index read after the promise.
	var applied atomic.Uint64
	applied.Store(7)
	if c, idx := tr.close(at(300), &applied); c != ts3.Prev() || idx != 7 {
		t.Fatalf("side close with a write in flight = %s at %d; want %s at 7", c, idx, ts3.Prev())
	}
	tr.done(tok3)
	if c, _ := tr.close(at(300), &applied); c != at(300) {
		t.Fatalf("side close = %s, want 300", c)
	}
	if _, ts, _, bumped := tr.admit(at(250), at(0)); !bumped || ts != at(300).Next() {
		t.Fatalf("write after a side promise: ts %s bumped %v; want %s", ts, bumped, at(300).Next())
	}
}

// followerReadCase is one case of testdata/follower_read.json; times in
// seconds of wall time.
type followerReadCase struct {
	Name                   string
	Uninitialized          bool
	FrozenInto             uint64
	NoLease                bool
	Closed, Now            float64
	ReadTS, Min            float64
	Waited, Budget, Target float64
}

func TestFollowerReadDecision(t *testing.T) {
	var cases []followerReadCase
	golden.LoadJSON(t, "follower_read.json", &cases)
	dur := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	opt := func(s float64) kv.Timestamp {
		if s == 0 {
			return kv.Timestamp{}
		}
		return secs(s)
	}
	var out strings.Builder
	for _, c := range cases {
		d := decideFollowerRead(followerReadInput{Initialized: !c.Uninitialized, FrozenInto: c.FrozenInto, LeaseKnown: !c.NoLease,
			Closed: opt(c.Closed), Now: secs(c.Now), ReadTS: opt(c.ReadTS), Min: opt(c.Min),
			Waited: dur(c.Waited), WaitBudget: dur(c.Budget), Target: dur(c.Target)})
		fmt.Fprintf(&out, "== %s\n%s", c.Name, d.Action)
		if d.Action == followerServe {
			fmt.Fprintf(&out, " at %s", d.At)
		}
		if d.Action == followerRefuse {
			fmt.Fprintf(&out, " %s", d.Code)
		}
		fmt.Fprintf(&out, ": %s\n", d.Reason)
	}
	golden.Check(t, "follower_read.golden", []byte(out.String()))
}

// TestStateMachineClosedTimestamp: a write's closed timestamp raises the
// replica's (never lowers it), is persisted and travels in snapshots; a
// write at or below it does not apply; an entry without one closes
// nothing; a side-transport promise is adopted only once its index applied
// under its lease, and is not persisted; a split's right side inherits
// the closed timestamp.
func TestStateMachineClosedTimestamp(t *testing.T) {
	h := smtNew(t)
	lease := &rspb.Lease{ReplicaId: 1, NodeId: 1, Epoch: 1, Sequence: 1, Start: TSToProto(smtTS(0, 0))}
	if r := h.requestLease(lease, nil); r.Error != nil {
		t.Fatal(r.Error)
	}
	withClosed := func(cmd *rspb.RaftCommand, c kv.Timestamp) *rspb.RaftCommand {
		cmd.GetWrite().ClosedTimestamp = TSToProto(c)
		return cmd
	}
	if c := h.sm.closedTS(); !c.IsEmpty() {
		t.Fatalf("fresh replica closed at %s", c)
	}
	wake := h.sm.closedWaiter()
	c1 := smtTS(5*time.Second, 0)
	if res := h.apply(withClosed(h.mustEvaluate("", smtTS(10*time.Second, 0), smtPut("ua", "1")), c1)); res.Error != nil {
		t.Fatal(res.Error)
	}
	if c := h.sm.closedTS(); c != c1 {
		t.Fatalf("closed after a write carrying %s = %s", c1, c)
	}
	select {
	case <-wake:
	default:
		t.Fatal("waiter not woken when the closed timestamp rose")
	}
	// Lower and missing closed timestamps close nothing more.
	h.apply(withClosed(h.mustEvaluate("", smtTS(11*time.Second, 0), smtPut("ub", "1")), smtTS(time.Second, 0)))
	h.write(smtTS(12*time.Second, 0), smtPut("uc", "1"))
	if c := h.sm.closedTS(); c != c1 {
		t.Fatalf("closed = %s after lower/absent promises, want %s", c, c1)
	}
	// A write at or below the closed timestamp (evaluated against an old
	// view) is refused and writes nothing.
	cmd := h.mustEvaluate("", smtTS(12*time.Second, 0), smtPut("ud", "below"))
	cmd.GetWrite().Result.Timestamp = TSToProto(c1)
	if res := h.apply(cmd); res.Error == nil || res.Error.Code != rspb.RangeError_UNAVAILABLE {
		t.Fatalf("write at the closed timestamp: %v, want UNAVAILABLE", res.Error)
	}
	if _, ok := h.get("ud"); ok {
		t.Fatal("a write at the closed timestamp applied")
	}
	// Side transport: not adopted before its index applied, nor under
	// another lease, nor from a node not holding the lease.
	c2 := smtTS(11*time.Second, 0)
	h.sm.offerClosed(sideClosedUpdate{ts: smtTS(20*time.Second, 0), index: h.index, leaseSeq: 2, from: 1})
	h.sm.offerClosed(sideClosedUpdate{ts: smtTS(20*time.Second, 0), index: h.index, leaseSeq: 1, from: 2})
	h.sm.offerClosed(sideClosedUpdate{ts: c2, index: h.index + 1, leaseSeq: 1, from: 1})
	if c := h.sm.closedTS(); c != c1 {
		t.Fatalf("closed = %s before the promise's index applied, want %s", c, c1)
	}
	h.applyEmpty()
	if c := h.sm.closedTS(); c != c2 {
		t.Fatalf("closed = %s after the promise's index applied, want %s", c, c2)
	}
	// Restart: the log's promise survives, the side transport's does not
	// (it is recomputed from the next one).
	re := smtOpen(t, h.eng, 1)
	if c := re.sm.closedTS(); c != c1 {
		t.Fatalf("closed after restart = %s, want %s", c, c1)
	}
	// Snapshot: the destination gets the log's closed timestamp.
	dst := smtOpen(t, smtOpenEngine(t), 2)
	if err := dst.sm.RecoverFromSnapshot(bytes.NewReader(h.saveSnapshot()), make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	if c := dst.sm.closedTS(); c != c1 {
		t.Fatalf("closed after a snapshot = %s, want %s", c, c1)
	}
	// Split: the right side starts with the parent's (log) closed
	// timestamp.
	desc := h.sm.desc.Load()
	left := proto.Clone(desc).(*rspb.RangeDescriptor)
	left.EndKey, left.Generation = []byte("uf"), desc.Generation+1
	right := proto.Clone(left).(*rspb.RangeDescriptor)
	right.RangeId, right.StartKey, right.EndKey = smtRangeID+1, []byte("uf"), desc.EndKey
	if res := h.apply(&rspb.RaftCommand{LeaseSequence: 1, Generation: desc.Generation,
		Command: &rspb.RaftCommand_Split{Split: &rspb.SplitCommand{Left: left, Right: right}}}); res.Error != nil {
		t.Fatalf("split: %v", res.Error)
	}
	if c := smtOpenRange(t, h.eng, smtRangeID+1, 1).sm.closedTS(); c != c1 {
		t.Fatalf("the split's right side closed at %s, want %s", c, c1)
	}
}

// TestValidateClosedTimestampTarget: the bounds of the cluster setting
// and start flag.
func TestValidateClosedTimestampTarget(t *testing.T) {
	for _, c := range []struct {
		d  time.Duration
		ok bool
	}{{MinClosedTimestampTarget, true}, {3 * time.Second, true}, {MaxClosedTimestampTarget, true},
		{0, false}, {-time.Second, false}, {MinClosedTimestampTarget - 1, false}, {MaxClosedTimestampTarget + 1, false}} {
		err := ValidateClosedTimestampTarget(c.d)
		if (err == nil) != c.ok {
			t.Errorf("%v: %v, want ok %t", c.d, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "50ms") {
			t.Errorf("%v: %v does not name the bounds", c.d, err)
		}
	}
}
