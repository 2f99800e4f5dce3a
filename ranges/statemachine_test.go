package ranges

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	sm "github.com/lni/dragonboat/v4/statemachine"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Test fixtures: range 5 owns the span [ua, um).
const (
	smtRangeID = uint64(5)
	smtBase    = int64(1_700_000_000_000_000_000) // a wall time in ns
)

var (
	smtStart = []byte("ua")
	smtEnd   = []byte("um")
)

func smtDesc() *rspb.RangeDescriptor {
	return &rspb.RangeDescriptor{RangeId: smtRangeID, StartKey: smtStart, EndKey: smtEnd, Generation: 1,
		Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}, {NodeId: 2, ReplicaId: 2}}}
}

// smtTS returns a timestamp offset from smtBase.
func smtTS(offset time.Duration, logical int32) kv.Timestamp {
	return kv.Timestamp{WallTime: smtBase + int64(offset), Logical: logical}
}

func smtOpenEngine(t *testing.T) *kv.Engine {
	t.Helper()
	eng, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatalf("kv.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := eng.Close(); err != nil {
			t.Errorf("engine close: %v", err)
		}
	})
	return eng
}

func smtWriteDesc(t *testing.T, eng *kv.Engine, d *rspb.RangeDescriptor) {
	t.Helper()
	data, err := proto.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	b := eng.NewBatch()
	defer func() { _ = b.Close() }()
	if err := b.PutRaw(rangeStateKey(d.RangeId, suffixDescriptor), data); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
}

// smtHarness drives one stateMachine the way Dragonboat would: Open, then
// Update with increasing indexes.
type smtHarness struct {
	t     *testing.T
	eng   *kv.Engine
	sm    *stateMachine
	index uint64

	leaseMu sync.Mutex
	leases  []*rspb.Lease // onLease calls
}

func (h *smtHarness) leaseCalls() []*rspb.Lease {
	h.leaseMu.Lock()
	defer h.leaseMu.Unlock()
	return append([]*rspb.Lease(nil), h.leases...)
}

// saveSnapshot prepares a snapshot of h's replica and returns its stream
// as SaveSnapshot writes it.
func (h *smtHarness) saveSnapshot() []byte {
	h.t.Helper()
	ctx, err := h.sm.PrepareSnapshot()
	if err != nil {
		h.t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := h.sm.SaveSnapshot(ctx, &buf, make(chan struct{})); err != nil {
		h.t.Fatal(err)
	}
	return buf.Bytes()
}

// smtNew creates an engine holding range 5's descriptor and an opened
// state machine (replica 1) over it.
func smtNew(t *testing.T) *smtHarness {
	t.Helper()
	eng := smtOpenEngine(t)
	smtWriteDesc(t, eng, smtDesc())
	return smtOpen(t, eng, 1)
}

func smtOpen(t *testing.T, eng *kv.Engine, replicaID uint64) *smtHarness {
	t.Helper()
	return smtOpenRange(t, eng, smtRangeID, replicaID)
}

// smtOpenRange opens a state machine for replica replicaID of range
// rangeID over eng.
func smtOpenRange(t *testing.T, eng *kv.Engine, rangeID, replicaID uint64) *smtHarness {
	t.Helper()
	h := &smtHarness{t: t, eng: eng}
	h.sm = newStateMachine(eng, rangeID, replicaID, func(id uint64, l *rspb.Lease) {
		if id != rangeID {
			t.Errorf("onLease for r%d on a replica of r%d", id, rangeID)
		}
		h.leaseMu.Lock()
		h.leases = append(h.leases, l)
		h.leaseMu.Unlock()
	})
	idx, err := h.sm.Open(nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	h.index = idx
	return h
}

func smtMarshal(t *testing.T, cmd *rspb.RaftCommand) []byte {
	t.Helper()
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// update hands one command to Update at the given index and returns the
// entry's result (Value 0: nothing was answered) or Update's error.
func (h *smtHarness) update(index uint64, cmd *rspb.RaftCommand) (sm.Result, error) {
	h.t.Helper()
	out, err := h.sm.Update([]sm.Entry{{Index: index, Cmd: smtMarshal(h.t, cmd)}})
	if err != nil {
		return sm.Result{}, err
	}
	if len(out) != 1 {
		h.t.Fatalf("Update returned %d entries, want 1", len(out))
	}
	if index > h.index {
		h.index = index
	}
	return out[0].Result, nil
}

// applyAt applies one command at the given index and decodes its result.
func (h *smtHarness) applyAt(index uint64, cmd *rspb.RaftCommand) *rspb.RaftResult {
	h.t.Helper()
	r, err := h.update(index, cmd)
	if err != nil {
		h.t.Fatalf("Update(index %d): %v", index, err)
	}
	if r.Value != resultOK {
		h.t.Fatalf("entry %d: result value %d, want %d", index, r.Value, resultOK)
	}
	res := &rspb.RaftResult{}
	if err := proto.Unmarshal(r.Data, res); err != nil {
		h.t.Fatalf("entry %d: decode result: %v", index, err)
	}
	return res
}

// applyEmpty applies an entry with an empty Cmd at the next index.
func (h *smtHarness) applyEmpty() {
	h.t.Helper()
	h.index++
	out, err := h.sm.Update([]sm.Entry{{Index: h.index}})
	if err != nil {
		h.t.Fatalf("Update(empty, index %d): %v", h.index, err)
	}
	if out[0].Result.Value != 0 || len(out[0].Result.Data) != 0 {
		h.t.Fatalf("empty entry got result %+v", out[0].Result)
	}
}

// apply applies one command at the next index.
func (h *smtHarness) apply(cmd *rspb.RaftCommand) *rspb.RaftResult {
	h.t.Helper()
	return h.applyAt(h.index+1, cmd)
}

// evaluate plays the leaseholder (Store.serveWrite) without a NodeHost: it
// checks the spans against the descriptor, picks a timestamp at or above the
// proposal's and above the range's last write, evaluates the requests into an
// engine batch and returns the command to propose under the current lease.
// An evaluation error is returned instead (nothing is proposed then).
func (h *smtHarness) evaluate(proposalID string, ts kv.Timestamp, reqs ...*rspb.RequestUnion) (*rspb.RaftCommand, *rspb.RangeError) {
	h.t.Helper()
	if err := checkSpans(h.sm.desc.Load(), reqs); err != nil {
		re, ok := asRangeError(err)
		if !ok {
			h.t.Fatalf("checkSpans: %v", err)
		}
		return nil, re
	}
	commitTS := ts
	h.sm.mu.RLock()
	if mw := h.sm.maxWriteTS; !mw.Less(commitTS) {
		commitTS = mw.Next()
	}
	h.sm.mu.RUnlock()
	b := h.eng.NewBatch()
	defer func() { _ = b.Close() }()
	resps, err := evalWrite(b, reqs, commitTS, 0)
	if err != nil {
		re, ok := asRangeError(err)
		if !ok {
			h.t.Fatalf("evalWrite: %v", err)
		}
		return nil, re
	}
	proposalTS := ts
	if proposalTS.IsEmpty() {
		proposalTS = commitTS
	}
	cmd := &rspb.RaftCommand{Timestamp: TSToProto(proposalTS), LeaseSequence: h.sm.lease.Load().Sequence, Generation: h.sm.desc.Load().GetGeneration(),
		Command: &rspb.RaftCommand_Write{Write: &rspb.WriteCommand{WriteBatch: b.Repr(), Result: &rspb.RaftResult{Responses: resps, Timestamp: TSToProto(commitTS)}}}}
	if proposalID != "" {
		cmd.ProposalId = []byte(proposalID)
	}
	return cmd, nil
}

// mustEvaluate is evaluate that requires success.
func (h *smtHarness) mustEvaluate(proposalID string, ts kv.Timestamp, reqs ...*rspb.RequestUnion) *rspb.RaftCommand {
	h.t.Helper()
	cmd, re := h.evaluate(proposalID, ts, reqs...)
	if re != nil {
		h.t.Fatalf("evaluate at %s: %v %s", ts, re.Code, re.Message)
	}
	return cmd
}

// write evaluates and applies requests at ts (no proposal ID) and requires
// success.
func (h *smtHarness) write(ts kv.Timestamp, reqs ...*rspb.RequestUnion) *rspb.RaftResult {
	h.t.Helper()
	res := h.apply(h.mustEvaluate("", ts, reqs...))
	if res.Error != nil {
		h.t.Fatalf("write at %s failed: %v %s", ts, res.Error.Code, res.Error.Message)
	}
	return res
}

// requestLease applies a RequestLease command.
func (h *smtHarness) requestLease(next, prev *rspb.Lease) *rspb.RaftResult {
	h.t.Helper()
	return h.apply(leaseCommand(next, prev))
}

func (h *smtHarness) lookup(q *ReadQuery) *rspb.RaftResult {
	h.t.Helper()
	v, err := h.sm.Lookup(q)
	if err != nil {
		h.t.Fatalf("Lookup: %v", err)
	}
	res, ok := v.(*rspb.RaftResult)
	if !ok {
		h.t.Fatalf("Lookup returned %T", v)
	}
	return res
}

// get reads key at latest through Lookup; "" with found=false if absent.
func (h *smtHarness) get(key string) (string, bool) {
	h.t.Helper()
	res := h.lookup(&ReadQuery{Requests: []*rspb.RequestUnion{smtGet(key)}})
	if res.Error != nil {
		h.t.Fatalf("get %q: %v %s", key, res.Error.Code, res.Error.Message)
	}
	g := res.Responses[0].GetGet()
	if !g.Found {
		return "", false
	}
	return string(g.Kv.Value), true
}

// versions returns every stored version (tombstones included) of the user
// keys in [start, end), as "key@ts" strings in engine order.
func smtVersions(t *testing.T, r kv.Reader, start, end []byte) []string {
	t.Helper()
	var out []string
	err := kv.IterateDataSpan(r, start, end, func(ek, _ []byte) error {
		k, ts, err := kv.DecodeMVCCKey(ek)
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s@%s", k, ts))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func smtRawData(t *testing.T, r kv.Reader, start, end []byte) []string {
	t.Helper()
	var out []string
	err := kv.IterateRangeData(r, start, end, func(ek, v []byte) error {
		out = append(out, fmt.Sprintf("%x=%x", ek, v))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func smtGet(k string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte(k)}}}
}

func smtGetAsOf(k string, ts kv.Timestamp) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte(k), AsOf: TSToProto(ts)}}}
}

func smtPut(k, v string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
}

func smtDel(k string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Delete{Delete: &rspb.DeleteRequest{Key: []byte(k)}}}
}

func smtCPut(k, v, expected string, expectAbsent bool) *rspb.RequestUnion {
	c := &rspb.ConditionalPutRequest{Key: []byte(k), Value: []byte(v), ExpectAbsent: expectAbsent}
	if !expectAbsent {
		c.ExpectedValue = []byte(expected)
	}
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: c}}
}

func smtInc(k string, d int64) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: []byte(k), Delta: d}}}
}

func smtScan(s, e string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: []byte(s), EndKey: []byte(e)}}}
}

func smtScanAsOf(s, e string, ts kv.Timestamp) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: []byte(s), EndKey: []byte(e), AsOf: TSToProto(ts)}}}
}

func smtDelRange(s, e string) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeRequest{StartKey: []byte(s), EndKey: []byte(e)}}}
}

func smtWantTS(t *testing.T, what string, got *rspb.Timestamp, want kv.Timestamp) {
	t.Helper()
	if g := TSFromProto(got); g != want {
		t.Errorf("%s: timestamp %s, want %s", what, g, want)
	}
}

func smtWantCode(t *testing.T, what string, res *rspb.RaftResult, code rspb.RangeError_Code) {
	t.Helper()
	if res.Error == nil {
		t.Fatalf("%s: no error, want %v (result %v)", what, code, res)
	}
	if res.Error.Code != code {
		t.Fatalf("%s: error %v (%s), want %v", what, res.Error.Code, res.Error.Message, code)
	}
	if len(res.Responses) != 0 {
		t.Errorf("%s: failed result carries %d responses", what, len(res.Responses))
	}
}

func smtScanKVs(res *rspb.ScanResponse) []string {
	var out []string
	for _, x := range res.Kvs {
		out = append(out, string(x.Key)+"="+string(x.Value))
	}
	return out
}

func smtEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStateMachineOpenFresh(t *testing.T) {
	eng := smtOpenEngine(t)
	smtWriteDesc(t, eng, smtDesc())
	h := smtOpen(t, eng, 1)
	if h.index != 0 {
		t.Fatalf("Open of a fresh replica = %d, want 0", h.index)
	}
	if !proto.Equal(h.sm.desc.Load(), smtDesc()) {
		t.Fatalf("loaded descriptor %v", h.sm.desc.Load())
	}
	if l := h.sm.lease.Load(); l == nil || !proto.Equal(l, &rspb.Lease{}) {
		t.Fatalf("fresh replica lease %v, want the empty lease", l)
	}
	h.sm.mu.RLock()
	defer h.sm.mu.RUnlock()
	if !h.sm.maxWriteTS.IsEmpty() || !h.sm.gcThreshold.IsEmpty() {
		t.Fatalf("fresh replica maxWrite %s gc %s", h.sm.maxWriteTS, h.sm.gcThreshold)
	}
}

func TestStateMachineEvaluation(t *testing.T) {
	h := smtNew(t)
	t1 := smtTS(0, 0)

	// Put, then Get and Scan in the same command see the command's writes.
	res := h.write(t1, smtPut("ub", "1"), smtPut("uc", "2"), smtGet("ub"), smtScan("ua", "um"))
	smtWantTS(t, "put result", res.Timestamp, t1)
	if len(res.Responses) != 4 {
		t.Fatalf("got %d responses, want 4", len(res.Responses))
	}
	smtWantTS(t, "put commit", res.Responses[0].GetPut().CommitTimestamp, t1)
	if g := res.Responses[2].GetGet(); !g.Found || string(g.Kv.Value) != "1" {
		t.Fatalf("in-command get: %v", g)
	}
	if got := smtScanKVs(res.Responses[3].GetScan()); !smtEqual(got, []string{"ub=1", "uc=2"}) {
		t.Fatalf("in-command scan: %v", got)
	}

	// ConditionalPut: success on expected value, failure reports the actual
	// value, expect-absent succeeds only on absent keys.
	t2 := smtTS(time.Second, 0)
	res = h.write(t2,
		smtCPut("ub", "10", "1", false),
		smtCPut("uc", "20", "wrong", false),
		smtCPut("ud", "30", "", true),
		smtCPut("ub", "x", "", true),
	)
	c := res.Responses[0].GetConditionalPut()
	if !c.Succeeded {
		t.Fatalf("cput ub: %v", c)
	}
	smtWantTS(t, "cput commit", c.CommitTimestamp, t2)
	c = res.Responses[1].GetConditionalPut()
	if c.Succeeded || !c.ActualExists || string(c.ActualValue) != "2" || c.CommitTimestamp != nil {
		t.Fatalf("cput uc with wrong expected value: %v", c)
	}
	if c = res.Responses[2].GetConditionalPut(); !c.Succeeded {
		t.Fatalf("cput ud expect absent: %v", c)
	}
	c = res.Responses[3].GetConditionalPut()
	if c.Succeeded || !c.ActualExists || string(c.ActualValue) != "10" {
		t.Fatalf("cput ub expect absent on a live key: %v", c)
	}
	for k, want := range map[string]string{"ub": "10", "uc": "2", "ud": "30"} {
		if v, ok := h.get(k); !ok || v != want {
			t.Errorf("after cput: %s = %q (found %v), want %q", k, v, ok, want)
		}
	}

	// Increment: a missing key starts at 0; increments stack in a command.
	t3 := smtTS(2*time.Second, 0)
	res = h.write(t3, smtInc("ue", 5), smtInc("ue", -7), smtInc("ub", 1))
	if n := res.Responses[0].GetIncrement().NewValue; n != 5 {
		t.Errorf("inc ue: %d, want 5", n)
	}
	if n := res.Responses[1].GetIncrement().NewValue; n != -2 {
		t.Errorf("inc ue again: %d, want -2", n)
	}
	if n := res.Responses[2].GetIncrement().NewValue; n != 11 {
		t.Errorf("inc ub: %d, want 11", n)
	}
	smtWantTS(t, "inc commit", res.Responses[0].GetIncrement().CommitTimestamp, t3)

	// Delete of a live key writes a tombstone; of a missing key writes nothing.
	t4 := smtTS(3*time.Second, 0)
	res = h.write(t4, smtDel("uc"), smtDel("uj"))
	if d := res.Responses[0].GetDelete(); !d.Existed {
		t.Errorf("delete uc: %v", d)
	}
	smtWantTS(t, "delete commit", res.Responses[0].GetDelete().CommitTimestamp, t4)
	if d := res.Responses[1].GetDelete(); d.Existed {
		t.Errorf("delete of a missing key reports existed: %v", d)
	}
	if vs := smtVersions(t, h.eng, []byte("uj"), []byte("uj\x00")); len(vs) != 0 {
		t.Errorf("delete of a missing key wrote %v", vs)
	}
	if _, ok := h.get("uc"); ok {
		t.Errorf("uc still visible after delete")
	}

	// DeleteRange counts only live keys.
	h.write(smtTS(4*time.Second, 0), smtPut("uf", "f"), smtPut("ug", "g"), smtPut("uh", "h"))
	t5 := smtTS(5*time.Second, 0)
	res = h.write(t5, smtDelRange("ub", "ug"))
	dr := res.Responses[0].GetDeleteRange()
	if dr.Deleted != 4 { // ub, ud, ue, uf (uc was already deleted)
		t.Errorf("delete range deleted %d, want 4", dr.Deleted)
	}
	smtWantTS(t, "delete range commit", dr.CommitTimestamp, t5)

	// Scan at latest and as of an earlier time.
	res = h.lookup(&ReadQuery{Requests: []*rspb.RequestUnion{smtScan("ua", "um"), smtScanAsOf("ua", "um", t2)}})
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	if got := smtScanKVs(res.Responses[0].GetScan()); !smtEqual(got, []string{"ug=g", "uh=h"}) {
		t.Errorf("scan latest: %v", got)
	}
	if got := smtScanKVs(res.Responses[1].GetScan()); !smtEqual(got, []string{"ub=10", "uc=2", "ud=30"}) {
		t.Errorf("scan as of t2: %v", got)
	}
	smtWantTS(t, "latest read timestamp", res.Timestamp, t5)

	// Evaluation failures: nothing is proposed, so nothing is written.
	h.write(smtTS(6*time.Second, 0), smtPut("uk", "abc"), smtPut("ul", strconv.FormatInt(1<<62, 10)))
	before := smtVersions(t, h.eng, nil, nil)
	for name, reqs := range map[string][]*rspb.RequestUnion{
		"increment of a non-integer": {smtPut("uc", "written?"), smtInc("uk", 1)},
		"increment overflow":         {smtInc("ul", 1<<62), smtInc("ul", 1<<62)},
	} {
		if _, re := h.evaluate("", smtTS(7*time.Second, 0), reqs...); re == nil || re.Code != rspb.RangeError_FAILED_PRECONDITION {
			t.Errorf("%s: evaluation error %v, want FAILED_PRECONDITION", name, re)
		}
	}
	if after := smtVersions(t, h.eng, nil, nil); !smtEqual(after, before) {
		t.Fatalf("failed evaluation wrote: %v", after)
	}
}

// TestStateMachineMaxWriteTimestamp covers the state machine's share of the
// commit timestamp rule: it tracks the range's max write timestamp (which
// the leaseholder evaluates above) durably and never lowers it.
func TestStateMachineMaxWriteTimestamp(t *testing.T) {
	h := smtNew(t)
	maxWrite := func() kv.Timestamp {
		h.sm.mu.RLock()
		defer h.sm.mu.RUnlock()
		return h.sm.maxWriteTS
	}
	commit := func(ts kv.Timestamp, k string) kv.Timestamp {
		t.Helper()
		res := h.write(ts, smtPut(k, "v"))
		got := TSFromProto(res.Timestamp)
		if c := TSFromProto(res.Responses[0].GetPut().CommitTimestamp); c != got {
			t.Fatalf("put commit ts %s != result ts %s", c, got)
		}
		return got
	}
	t10 := smtTS(10*time.Second, 0)
	if got := commit(t10, "ub"); got != t10 || maxWrite() != t10 {
		t.Fatalf("first write: commit %s, max write %s, want %s", got, maxWrite(), t10)
	}
	// A proposal older than the last write commits strictly above it.
	if got, want := commit(smtTS(time.Second, 0), "uc"), t10.Next(); got != want {
		t.Fatalf("older proposal: commit %s, want %s", got, want)
	}
	if got, want := commit(t10.Next(), "ud"), t10.Next().Next(); got != want {
		t.Fatalf("equal proposal: commit %s, want %s", got, want)
	}
	t20 := smtTS(20*time.Second, 3)
	if got := commit(t20, "ub"); got != t20 {
		t.Fatalf("newer proposal: commit %s, want %s", got, t20)
	}

	// An applied result with an older timestamp (a write evaluated
	// concurrently on another span) does not lower the max write timestamp.
	older := h.mustEvaluate("", smtTS(0, 0), smtPut("ue", "old"))
	older.GetWrite().Result.Timestamp = TSToProto(smtTS(15*time.Second, 0))
	if res := h.apply(older); res.Error != nil {
		t.Fatal(res.Error)
	}
	if v, _ := h.get("ue"); v != "old" {
		t.Fatalf("older write not applied: ue = %q", v)
	}
	if got := maxWrite(); got != t20 {
		t.Fatalf("max write after an older result: %s, want %s", got, t20)
	}

	// Commands that write no data do not advance it: GC, lease, a result
	// carrying an error, a command under a stale lease, an expired proposal.
	h.apply(&rspb.RaftCommand{Timestamp: TSToProto(smtTS(time.Hour, 0)), Command: &rspb.RaftCommand_Gc{Gc: &rspb.GCCommand{Threshold: TSToProto(smtTS(time.Second, 0))}}})
	h.requestLease(&rspb.Lease{ReplicaId: 1, NodeId: 1, Sequence: 1, Epoch: 1, Start: TSToProto(smtTS(time.Hour, 0))}, nil)
	failed := h.mustEvaluate("", smtTS(time.Hour, 0), smtPut("uf", "x"))
	failed.GetWrite().Result = &rspb.RaftResult{Error: rangeErr(rspb.RangeError_FAILED_PRECONDITION, "x"), Timestamp: TSToProto(smtTS(time.Hour, 0))}
	h.apply(failed)
	stale := h.mustEvaluate("", smtTS(time.Hour, 0), smtPut("uf", "x"))
	stale.LeaseSequence = 0
	smtWantCode(t, "stale lease", h.apply(stale), rspb.RangeError_NOT_LEASEHOLDER)
	if got := maxWrite(); got != t20 {
		t.Fatalf("max write after commands without data: %s, want %s", got, t20)
	}
	if r := h.lookup(&ReadQuery{Requests: []*rspb.RequestUnion{smtGet("ub")}}); TSFromProto(r.Timestamp) != t20 {
		t.Fatalf("latest read timestamp %s, want %s", TSFromProto(r.Timestamp), t20)
	}

	// The max write timestamp survives a restart.
	h2 := smtOpen(t, h.eng, 1)
	if got, want := TSFromProto(h2.write(smtTS(0, 0), smtPut("uj", "v")).Timestamp), t20.Next(); got != want {
		t.Fatalf("after reopen: commit %s, want %s", got, want)
	}

	// Versions of one key are strictly increasing with apply order.
	vs := smtVersions(t, h.eng, []byte("ub"), []byte("ub\x00"))
	if want := []string{"ub@" + t20.String(), "ub@" + t10.String()}; !smtEqual(vs, want) {
		t.Fatalf("versions of ub: %v, want %v", vs, want)
	}
}

func TestStateMachineDedup(t *testing.T) {
	h := smtNew(t)
	ts := smtTS(0, 0)
	cmd := h.mustEvaluate("p-1", ts, smtInc("uk", 1))
	r1 := h.applyAt(1, cmd)
	if r1.Error != nil || r1.Responses[0].GetIncrement().NewValue != 1 {
		t.Fatalf("first apply: %v", r1)
	}
	h.applyAt(2, h.mustEvaluate("p-2", smtTS(time.Second, 0), smtPut("ub", "x")))
	// The proposer retries with the same ID and timestamp; a leaseholder
	// evaluates it again (now to 2). It applies once: the retry gets the
	// original result.
	retry := h.mustEvaluate("p-1", ts, smtInc("uk", 1))
	if retry.GetWrite().Result.Responses[0].GetIncrement().NewValue != 2 {
		t.Fatalf("re-evaluation: %v", retry.GetWrite().Result)
	}
	r2 := h.applyAt(3, retry)
	if !proto.Equal(r1, r2) {
		t.Fatalf("retry result %v differs from original %v", r2, r1)
	}
	// The identical command re-delivered is deduplicated too.
	if r := h.applyAt(4, cmd); !proto.Equal(r1, r) {
		t.Fatalf("re-delivered command: %v, want %v", r, r1)
	}
	if v, ok := h.get("uk"); !ok || v != "1" {
		t.Fatalf("uk = %q (found %v) after a retried increment, want 1", v, ok)
	}
	if vs := smtVersions(t, h.eng, []byte("uk"), []byte("uk\x00")); len(vs) != 1 {
		t.Fatalf("retried increment wrote versions %v", vs)
	}
	if got := h.sm.applied.Load(); got != 4 {
		t.Fatalf("applied = %d, want 4", got)
	}
	// Same ID, different timestamp: a different proposal.
	r3 := h.applyAt(5, h.mustEvaluate("p-1", smtTS(2*time.Second, 0), smtInc("uk", 1)))
	if r3.Error != nil || r3.Responses[0].GetIncrement().NewValue != 2 {
		t.Fatalf("same ID at another time: %v", r3)
	}
	// Dedup survives a restart (the record is in Pebble).
	h2 := smtOpen(t, h.eng, 1)
	if r4 := h2.applyAt(6, h2.mustEvaluate("p-1", ts, smtInc("uk", 1))); !proto.Equal(r1, r4) {
		t.Fatalf("retry after reopen %v differs from original %v", r4, r1)
	}
	if v, _ := h2.get("uk"); v != "2" {
		t.Fatalf("uk = %q, want 2", v)
	}

	// A failed command's result is remembered too: its retry does not apply.
	bad := h2.mustEvaluate("p-bad", smtTS(3*time.Second, 0), smtPut("ub", "y"))
	bad.GetWrite().Result = &rspb.RaftResult{Error: rangeErr(rspb.RangeError_FAILED_PRECONDITION, "failed at the leaseholder")}
	e1 := h2.applyAt(7, bad)
	smtWantCode(t, "failed command", e1, rspb.RangeError_FAILED_PRECONDITION)
	e2 := h2.applyAt(8, h2.mustEvaluate("p-bad", smtTS(3*time.Second, 0), smtPut("ub", "y")))
	if !proto.Equal(e1, e2) {
		t.Fatalf("retry of a failed command: %v, want cached %v", e2, e1)
	}
	if v, _ := h2.get("ub"); v != "x" {
		t.Fatalf("ub = %q, want x", v)
	}
}

func TestStateMachineDedupExpiry(t *testing.T) {
	h := smtNew(t)
	now := smtTS(time.Hour, 0)
	h.write(now, smtPut("ub", "1"))

	// Older than the window behind the max write: ambiguous, nothing written.
	old := kv.Timestamp{WallTime: now.WallTime - int64(DedupWindow) - 1}
	late := h.mustEvaluate("late", old, smtPut("uc", "late"), smtInc("ub", 1))
	res := h.apply(late)
	smtWantCode(t, "expired proposal", res, rspb.RangeError_AMBIGUOUS)
	if _, ok := h.get("uc"); ok {
		t.Fatal("expired proposal wrote uc")
	}
	if v, _ := h.get("ub"); v != "1" {
		t.Fatalf("expired proposal changed ub to %q", v)
	}
	// Its retry stays ambiguous and still writes nothing.
	smtWantCode(t, "retry of expired proposal", h.apply(late), rspb.RangeError_AMBIGUOUS)
	if _, ok := h.get("uc"); ok {
		t.Fatal("retried expired proposal wrote uc")
	}
	// The max write timestamp did not move.
	if got := TSFromProto(h.write(kv.Timestamp{}, smtPut("ud", "x")).Timestamp); got != now.Next() {
		t.Fatalf("after expired proposal: commit %s, want %s", got, now.Next())
	}

	// Exactly at the window edge: still accepted.
	edge := kv.Timestamp{WallTime: now.WallTime - int64(DedupWindow)}
	if res := h.apply(h.mustEvaluate("edge", edge, smtPut("ue", "edge"))); res.Error != nil {
		t.Fatalf("proposal at the window edge: %v", res.Error)
	}
	// Without a proposal ID there is nothing to dedup: old timestamps are fine.
	if res := h.apply(h.mustEvaluate("", old, smtPut("uf", "anon"))); res.Error != nil {
		t.Fatalf("old proposal without ID: %v", res.Error)
	}
	if v, _ := h.get("uf"); v != "anon" {
		t.Fatalf("uf = %q", v)
	}
}

func TestStateMachineDedupPrune(t *testing.T) {
	h := smtNew(t)
	oldTS := smtTS(0, 0)
	recentTS := smtTS(DedupWindow+time.Minute, 0)
	h.applyAt(1, h.mustEvaluate("old", oldTS, smtPut("ub", "1")))
	h.applyAt(2, h.mustEvaluate("recent", recentTS, smtPut("uc", "1")))
	oldKey := dedupKey(smtRangeID, oldTS.WallTime, []byte("old"))
	recentKey := dedupKey(smtRangeID, recentTS.WallTime, []byte("recent"))
	for _, k := range [][]byte{oldKey, recentKey} {
		if _, ok, err := h.eng.GetRaw(k); err != nil || !ok {
			t.Fatalf("dedup record %x missing (err %v)", k, err)
		}
	}
	// An entry at a multiple of dedupPruneEvery drops expired records.
	out, err := h.sm.Update([]sm.Entry{{Index: dedupPruneEvery}})
	if err != nil || len(out) != 1 {
		t.Fatalf("Update: %v", err)
	}
	if _, ok, _ := h.eng.GetRaw(oldKey); ok {
		t.Errorf("expired dedup record survived the prune at index %d", dedupPruneEvery)
	}
	if _, ok, _ := h.eng.GetRaw(recentKey); !ok {
		t.Errorf("live dedup record was pruned")
	}
}

func TestStateMachineLeases(t *testing.T) {
	h := smtNew(t)
	start := TSToProto(smtTS(0, 0))
	epoch1 := &rspb.Lease{ReplicaId: 1, NodeId: 1, Start: start, Epoch: 1, Sequence: 1}
	epoch2 := &rspb.Lease{ReplicaId: 2, NodeId: 2, Start: start, Epoch: 4, Sequence: 2}
	exp3 := &rspb.Lease{ReplicaId: 1, NodeId: 1, Start: start, Expiration: TSToProto(smtTS(10*time.Second, 0)), Sequence: 3}
	exp3ext := &rspb.Lease{ReplicaId: 1, NodeId: 1, Start: start, Expiration: TSToProto(smtTS(20*time.Second, 0)), Sequence: 3}
	steps := []struct {
		name        string
		next, prev  *rspb.Lease
		ok          bool
		wantCurrent *rspb.Lease
		notified    bool // onLease called with next
	}{
		{"first lease", epoch1, nil, true, epoch1, true},
		{"stale prev", epoch2, nil, false, epoch1, false},
		{"sequence gap", &rspb.Lease{ReplicaId: 2, NodeId: 2, Epoch: 4, Sequence: 3}, epoch1, false, epoch1, false},
		{"same sequence epoch lease", &rspb.Lease{ReplicaId: 1, NodeId: 1, Epoch: 2, Sequence: 1}, epoch1, false, epoch1, false},
		{"no lease", nil, epoch1, false, epoch1, false},
		{"transfer", epoch2, epoch1, true, epoch2, true},
		{"expiration lease", exp3, epoch2, true, exp3, true},
		{"extension", exp3ext, exp3, true, exp3ext, false},
		{"extension with earlier expiration", exp3, exp3ext, false, exp3ext, false},
		{"extension by another replica", &rspb.Lease{ReplicaId: 2, NodeId: 2, Expiration: TSToProto(smtTS(30*time.Second, 0)), Sequence: 3}, exp3ext, false, exp3ext, false},
	}
	for _, st := range steps {
		calls := len(h.leaseCalls())
		res := h.requestLease(st.next, st.prev)
		if st.ok {
			if res.Error != nil {
				t.Fatalf("%s: rejected: %v", st.name, res.Error)
			}
		} else {
			smtWantCode(t, st.name, res, rspb.RangeError_NOT_LEASEHOLDER)
			if res.Error.LeaderNodeId != st.wantCurrent.NodeId {
				t.Errorf("%s: rejection names n%d, want n%d", st.name, res.Error.LeaderNodeId, st.wantCurrent.NodeId)
			}
		}
		if cur := h.sm.lease.Load(); !proto.Equal(cur, st.wantCurrent) {
			t.Fatalf("%s: current lease %v, want %v", st.name, cur, st.wantCurrent)
		}
		got := h.leaseCalls()
		if st.notified {
			if len(got) != calls+1 || !proto.Equal(got[len(got)-1], st.next) {
				t.Fatalf("%s: onLease calls %v, want one more with %v", st.name, got[calls:], st.next)
			}
		} else if len(got) != calls {
			t.Fatalf("%s: unexpected onLease calls %v", st.name, got[calls:])
		}
	}

	// Writes apply only under the lease they were evaluated with; a
	// rejected write leaves no dedup record, so its retry can apply.
	cmd := h.mustEvaluate("w-1", smtTS(time.Minute, 0), smtPut("ub", "x"))
	cmd.LeaseSequence = 2
	res := h.apply(cmd)
	smtWantCode(t, "write under an old lease", res, rspb.RangeError_NOT_LEASEHOLDER)
	if res.Error.LeaderNodeId != 1 {
		t.Errorf("rejection names n%d, want n1", res.Error.LeaderNodeId)
	}
	if _, ok := h.get("ub"); ok {
		t.Fatal("write under an old lease applied")
	}
	if _, ok, _ := h.eng.GetRaw(dedupKey(smtRangeID, smtTS(time.Minute, 0).WallTime, []byte("w-1"))); ok {
		t.Fatal("rejected write left a dedup record")
	}
	if res := h.apply(h.mustEvaluate("w-1", smtTS(time.Minute, 0), smtPut("ub", "x"))); res.Error != nil {
		t.Fatalf("retry under the current lease: %v", res.Error)
	}
	if v, _ := h.get("ub"); v != "x" {
		t.Fatalf("ub = %q", v)
	}

	// The lease is durable.
	h2 := smtOpen(t, h.eng, 1)
	if cur := h2.sm.lease.Load(); !proto.Equal(cur, exp3ext) {
		t.Fatalf("lease after reopen %v, want %v", cur, exp3ext)
	}
}

func TestStateMachineRangeKeyMismatch(t *testing.T) {
	h := smtNew(t)
	h.write(smtTS(0, 0), smtPut("ub", "orig"))
	cases := []struct {
		name string
		reqs []*rspb.RequestUnion
	}{
		{"put after end", []*rspb.RequestUnion{smtPut("uc", "x"), smtPut("uz", "x")}},
		{"put at end key", []*rspb.RequestUnion{smtPut("uc", "x"), smtPut("um", "x")}},
		{"put before start", []*rspb.RequestUnion{smtPut("uc", "x"), smtPut("u0", "x")}},
		{"increment outside", []*rspb.RequestUnion{smtPut("uc", "x"), smtInc("a", 1)}},
		{"scan past end", []*rspb.RequestUnion{smtPut("uc", "x"), smtScan("ub", "uz")}},
		{"delete range before start", []*rspb.RequestUnion{smtPut("uc", "x"), smtDelRange("u", "uc")}},
		{"mismatch first", []*rspb.RequestUnion{smtDel("v"), smtPut("uc", "x"), smtDel("ub")}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd, re := h.evaluate(fmt.Sprint("m", i), smtTS(time.Duration(i+1)*time.Second, 0), tc.reqs...)
			if re == nil {
				t.Fatalf("evaluated to %v, want RANGE_KEY_MISMATCH", cmd.GetWrite().GetResult())
			}
			if re.Code != rspb.RangeError_RANGE_KEY_MISMATCH {
				t.Fatalf("error %v, want RANGE_KEY_MISMATCH", re)
			}
			if !proto.Equal(re.RangeDescriptor, smtDesc()) {
				t.Errorf("mismatch carries descriptor %v, want %v", re.RangeDescriptor, smtDesc())
			}
			if vs := smtVersions(t, h.eng, nil, nil); !smtEqual(vs, []string{"ub@" + smtTS(0, 0).String()}) {
				t.Errorf("data after rejected command: %v", vs)
			}
		})
	}
	// Boundary keys that are inside: the start key itself and keys just below end.
	h.write(smtTS(time.Minute, 0), smtPut("ua", "s"), smtPut("ul\xff", "e"), smtScan("ua", "um"), smtDelRange("ua", "um"))
}

func TestStateMachineFailedCommandAdvancesIndex(t *testing.T) {
	h := smtNew(t)
	h.write(smtTS(0, 0), smtPut("ub", "abc"))
	want := smtVersions(t, h.eng, nil, nil)

	// A command whose result carries an error: its batch is not applied.
	failed := h.mustEvaluate("", smtTS(time.Second, 0), smtPut("uc", "written?"), smtDel("ub"))
	failed.GetWrite().Result = &rspb.RaftResult{Error: rangeErr(rspb.RangeError_FAILED_PRECONDITION, "evaluation failed")}
	smtWantCode(t, "failed command", h.apply(failed), rspb.RangeError_FAILED_PRECONDITION)
	// A command under a stale lease.
	stale := h.mustEvaluate("", smtTS(2*time.Second, 0), smtPut("uc", "written?"))
	stale.LeaseSequence = 7
	smtWantCode(t, "stale lease", h.apply(stale), rspb.RangeError_NOT_LEASEHOLDER)
	// A malformed command fails as INVALID_ARGUMENT and applies nothing.
	out, err := h.sm.Update([]sm.Entry{{Index: h.index + 1, Cmd: []byte{0xff, 0xff, 0xff}}})
	if err != nil {
		t.Fatal(err)
	}
	h.index++
	bad := &rspb.RaftResult{}
	if err := proto.Unmarshal(out[0].Result.Data, bad); err != nil {
		t.Fatal(err)
	}
	smtWantCode(t, "malformed command", bad, rspb.RangeError_INVALID_ARGUMENT)

	if vs := smtVersions(t, h.eng, nil, nil); !smtEqual(vs, want) {
		t.Fatalf("data after failed commands: %v, want %v", vs, want)
	}
	if v, _ := h.get("ub"); v != "abc" {
		t.Fatalf("ub = %q", v)
	}
	if h.index != 4 || h.sm.applied.Load() != 4 {
		t.Fatalf("index %d, applied %d, want 4", h.index, h.sm.applied.Load())
	}
	idx, err := newStateMachine(h.eng, smtRangeID, 1, nil).Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	if idx != h.index {
		t.Fatalf("Open after failed commands = %d, want %d", idx, h.index)
	}
}

func TestStateMachineCorruptWriteBatch(t *testing.T) {
	h := smtNew(t)
	h.write(smtTS(0, 0), smtPut("ub", "x"))
	cmd := h.mustEvaluate("", smtTS(time.Second, 0), smtPut("uc", "y"))
	cmd.GetWrite().WriteBatch = []byte{1, 2, 3}
	if _, err := h.sm.Update([]sm.Entry{{Index: 2, Cmd: smtMarshal(t, cmd)}}); err == nil {
		t.Fatal("Update with a corrupt write batch succeeded")
	}
	if got := h.sm.applied.Load(); got != 1 {
		t.Fatalf("applied %d after a failed Update, want 1", got)
	}
	if idx, err := newStateMachine(h.eng, smtRangeID, 1, nil).Open(nil); err != nil || idx != 1 {
		t.Fatalf("Open after a failed Update = %d, %v; want 1", idx, err)
	}
}

func TestStateMachineEmptyEntries(t *testing.T) {
	h := smtNew(t)
	cmd := h.mustEvaluate("", smtTS(0, 0), smtPut("ub", "x"))
	out, err := h.sm.Update([]sm.Entry{{Index: 1}, {Index: 2, Cmd: []byte{}}, {Index: 3, Cmd: smtMarshal(t, cmd)}, {Index: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 4 {
		t.Fatalf("Update returned %d entries", len(out))
	}
	if out[0].Result.Value != 0 || out[1].Result.Data != nil || out[3].Result.Value != 0 {
		t.Errorf("empty entries got results %+v %+v %+v", out[0].Result, out[1].Result, out[3].Result)
	}
	if out[2].Result.Value != resultOK {
		t.Errorf("command in a multi-entry batch: result %+v", out[2].Result)
	}
	if got := h.sm.applied.Load(); got != 4 {
		t.Fatalf("applied %d, want 4", got)
	}
	if idx, err := newStateMachine(h.eng, smtRangeID, 1, nil).Open(nil); err != nil || idx != 4 {
		t.Fatalf("reopen: %d %v, want 4", idx, err)
	}
	if v, _ := h.get("ub"); v != "x" {
		t.Fatalf("ub = %q", v)
	}
}
func TestStateMachineLookup(t *testing.T) {
	h := smtNew(t)
	t1, t2, t3 := smtTS(time.Second, 0), smtTS(2*time.Second, 0), smtTS(3*time.Second, 0)
	h.write(t1, smtPut("ub", "b1"), smtPut("uc", "c1"))
	h.write(t2, smtPut("ub", "b2"))
	h.write(t3, smtDel("uc"), smtPut("ud", "d3"))

	type read struct {
		name   string
		q      *ReadQuery
		want   []string // per request: value or "-" for absent; scans join with ","
		wantTS kv.Timestamp
	}
	join := func(r *rspb.ResponseUnion) string {
		if g := r.GetGet(); g != nil {
			if !g.Found {
				return "-"
			}
			return string(g.Kv.Value) + "@" + TSFromProto(g.Kv.Timestamp).String()
		}
		var s []byte
		for i, x := range r.GetScan().Kvs {
			if i > 0 {
				s = append(s, ',')
			}
			s = append(s, x.Key...)
			s = append(s, '=')
			s = append(s, x.Value...)
		}
		return string(s)
	}
	reads := []read{
		{"latest", &ReadQuery{Requests: []*rspb.RequestUnion{smtGet("ub"), smtGet("uc"), smtScan("ua", "um")}},
			[]string{"b2@" + t2.String(), "-", "ub=b2,ud=d3"}, t3},
		{"read ts t1", &ReadQuery{ReadTS: t1, Requests: []*rspb.RequestUnion{smtGet("ub"), smtGet("uc"), smtScan("ua", "um")}},
			[]string{"b1@" + t1.String(), "c1@" + t1.String(), "ub=b1,uc=c1"}, t1},
		{"read ts before t1", &ReadQuery{ReadTS: t1.Prev(), Requests: []*rspb.RequestUnion{smtGet("ub"), smtScan("ua", "um")}},
			[]string{"-", ""}, t1.Prev()},
		{"per request as-of", &ReadQuery{Requests: []*rspb.RequestUnion{smtGetAsOf("ub", t1), smtScanAsOf("ua", "um", t2), smtGet("ub")}},
			[]string{"b1@" + t1.String(), "ub=b2,uc=c1", "b2@" + t2.String()}, t3},
		{"empty scan span", &ReadQuery{Requests: []*rspb.RequestUnion{smtScan("uc", "uc")}}, []string{""}, t3},
	}
	for _, rd := range reads {
		t.Run(rd.name, func(t *testing.T) {
			res := h.lookup(rd.q)
			if res.Error != nil {
				t.Fatalf("error %v", res.Error)
			}
			var got []string
			for _, r := range res.Responses {
				got = append(got, join(r))
			}
			if !smtEqual(got, rd.want) {
				t.Errorf("got %q, want %q", got, rd.want)
			}
			smtWantTS(t, "read timestamp", res.Timestamp, rd.wantTS)
		})
	}

	t.Run("out of span", func(t *testing.T) {
		for _, q := range []*ReadQuery{
			{Requests: []*rspb.RequestUnion{smtGet("ub"), smtGet("uz")}},
			{Requests: []*rspb.RequestUnion{smtScan("u", "uc")}},
			{Requests: []*rspb.RequestUnion{smtScan("ub", "un")}},
			{Requests: []*rspb.RequestUnion{smtGet("um")}},
		} {
			res := h.lookup(q)
			smtWantCode(t, "out of span read", res, rspb.RangeError_RANGE_KEY_MISMATCH)
			if !proto.Equal(res.Error.RangeDescriptor, smtDesc()) {
				t.Errorf("descriptor %v", res.Error.RangeDescriptor)
			}
		}
	})
	t.Run("write request", func(t *testing.T) {
		res := h.lookup(&ReadQuery{Requests: []*rspb.RequestUnion{smtPut("ub", "x")}})
		smtWantCode(t, "put via lookup", res, rspb.RangeError_INVALID_ARGUMENT)
		if v, _ := h.get("ub"); v != "b2" {
			t.Errorf("lookup wrote: ub = %q", v)
		}
	})
	t.Run("empty key", func(t *testing.T) {
		smtWantCode(t, "empty key", h.lookup(&ReadQuery{Requests: []*rspb.RequestUnion{smtGet("")}}), rspb.RangeError_INVALID_ARGUMENT)
		smtWantCode(t, "empty request", h.lookup(&ReadQuery{Requests: []*rspb.RequestUnion{{}}}), rspb.RangeError_INVALID_ARGUMENT)
	})
	t.Run("unknown query", func(t *testing.T) {
		if _, err := h.sm.Lookup("nope"); err == nil {
			t.Fatal("Lookup of a string succeeded")
		}
	})
	t.Run("no descriptor", func(t *testing.T) {
		s := newStateMachine(smtOpenEngine(t), smtRangeID, 1, nil)
		if _, err := s.Open(nil); err != nil {
			t.Fatal(err)
		}
		v, err := s.Lookup(&ReadQuery{Requests: []*rspb.RequestUnion{smtGet("ub")}})
		if err != nil {
			t.Fatal(err)
		}
		smtWantCode(t, "no descriptor", v.(*rspb.RaftResult), rspb.RangeError_UNAVAILABLE)
	})
}

func TestStateMachineGC(t *testing.T) {
	h := smtNew(t)
	t1, t2, t3, t4 := smtTS(time.Second, 0), smtTS(2*time.Second, 0), smtTS(3*time.Second, 0), smtTS(4*time.Second, 0)
	h.write(t1, smtPut("ug", "g1"), smtPut("uh", "h1"), smtPut("ui", "i1"))
	h.write(t2, smtPut("ug", "g2"), smtDel("uh"))
	h.write(t4, smtPut("ug", "g4"))

	// GC at t3: ug@t1 is shadowed by ug@t2, uh's newest version <= t3 is a
	// tombstone, ui@t1 is the newest visible version.
	res := h.apply(&rspb.RaftCommand{Command: &rspb.RaftCommand_Gc{Gc: &rspb.GCCommand{Threshold: TSToProto(t3)}}})
	if res.Error != nil {
		t.Fatalf("gc: %v", res.Error)
	}
	want := []string{"ug@" + t4.String(), "ug@" + t2.String(), "ui@" + t1.String()}
	if vs := smtVersions(t, h.eng, nil, nil); !smtEqual(vs, want) {
		t.Fatalf("versions after GC: %v, want %v", vs, want)
	}

	below := []*ReadQuery{
		{ReadTS: t3, Requests: []*rspb.RequestUnion{smtGet("ug")}},
		{ReadTS: t1, Requests: []*rspb.RequestUnion{smtScan("ua", "um")}},
		{Requests: []*rspb.RequestUnion{smtGet("ui"), smtGetAsOf("ug", t2)}},
		{Requests: []*rspb.RequestUnion{smtScanAsOf("ua", "um", t3)}},
	}
	for i, q := range below {
		smtWantCode(t, fmt.Sprint("read below threshold #", i), h.lookup(q), rspb.RangeError_BELOW_GC_THRESHOLD)
	}

	res = h.lookup(&ReadQuery{ReadTS: t3.Next(), Requests: []*rspb.RequestUnion{smtScan("ua", "um")}})
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	if got := smtScanKVs(res.Responses[0].GetScan()); !smtEqual(got, []string{"ug=g2", "ui=i1"}) {
		t.Fatalf("scan just above the threshold: %v", got)
	}
	for k, v := range map[string]string{"ug": "g4", "ui": "i1"} {
		if got, ok := h.get(k); !ok || got != v {
			t.Errorf("latest %s = %q (found %v), want %q", k, got, ok, v)
		}
	}
	if _, ok := h.get("uh"); ok {
		t.Errorf("deleted key uh visible after GC")
	}

	// A lower threshold is a no-op: the threshold never goes back.
	if res := h.apply(&rspb.RaftCommand{Command: &rspb.RaftCommand_Gc{Gc: &rspb.GCCommand{Threshold: TSToProto(t1)}}}); res.Error != nil {
		t.Fatal(res.Error)
	}
	smtWantCode(t, "after lower GC", h.lookup(&ReadQuery{ReadTS: t2, Requests: []*rspb.RequestUnion{smtGet("ug")}}), rspb.RangeError_BELOW_GC_THRESHOLD)

	// The threshold is persisted.
	h2 := smtOpen(t, h.eng, 1)
	smtWantCode(t, "after reopen", h2.lookup(&ReadQuery{ReadTS: t3, Requests: []*rspb.RequestUnion{smtGet("ug")}}), rspb.RangeError_BELOW_GC_THRESHOLD)
	if r := h2.lookup(&ReadQuery{ReadTS: t3.Next(), Requests: []*rspb.RequestUnion{smtGet("ug")}}); r.Error != nil || string(r.Responses[0].GetGet().Kv.GetValue()) != "g2" {
		t.Fatalf("read above threshold after reopen: %v", r)
	}
}

// smtPutRaw writes raw keys (with a fixed value) into eng.
func smtPutRaw(t *testing.T, eng *kv.Engine, keys ...[]byte) {
	t.Helper()
	b := eng.NewBatch()
	defer b.Close()
	for _, k := range keys {
		if err := b.PutRaw(k, []byte("record")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
}

func TestStateMachineSnapshotRoundTrip(t *testing.T) {
	// Source: replica 1 of r5 with data, a dedup record and a GC threshold.
	src := smtNew(t)
	src.write(smtTS(time.Second, 0), smtPut("ub", "b1"), smtPut("uc", "c1"), smtPut("ua\x00z", "nul"))
	src.write(smtTS(2*time.Second, 0), smtPut("ub", "b2"), smtDel("uc"))
	origRes := src.apply(src.mustEvaluate("snap-p", smtTS(3*time.Second, 0), smtInc("ue", 3)))
	srcLease := &rspb.Lease{ReplicaId: 1, NodeId: 1, Epoch: 1, Sequence: 1, Start: TSToProto(smtTS(0, 0))}
	if r := src.requestLease(srcLease, nil); r.Error != nil {
		t.Fatal(r.Error)
	}
	src.apply(&rspb.RaftCommand{Command: &rspb.RaftCommand_Gc{Gc: &rspb.GCCommand{Threshold: TSToProto(smtTS(1500*time.Millisecond, 0))}}})
	src.write(smtTS(4*time.Second, 0), smtPut("ul", "l4"))
	srcIndex := src.index
	// Keys addressed by user keys of the span (transaction records) are
	// range data: the source's travel, the destination's stale one goes,
	// its neighbours' stay.
	srcRecord, staleRecord := kv.AddressedKey([]byte("ub"), []byte("txn-1")), kv.AddressedKey([]byte("uk"), []byte("txn-0"))
	outsideRecords := [][]byte{kv.AddressedKey([]byte("u0"), []byte("txn-2")), kv.AddressedKey(smtEnd, []byte("txn-3"))}
	smtPutRaw(t, src.eng, srcRecord)

	// Destination: replica 2 of r5 on another engine, with stale state in
	// the span and a neighbour's data around it.
	dstEng := smtOpenEngine(t)
	staleDesc := smtDesc()
	staleDesc.Generation = 0
	smtWriteDesc(t, dstEng, staleDesc)
	neighbour := &rspb.RangeDescriptor{RangeId: smtRangeID + 1, StartKey: smtEnd, EndKey: []byte("uz")}
	smtWriteDesc(t, dstEng, neighbour)
	prev := &rspb.RangeDescriptor{RangeId: smtRangeID - 1, StartKey: []byte("u"), EndKey: smtStart}
	smtWriteDesc(t, dstEng, prev)
	dst := smtOpen(t, dstEng, 2)
	dst.write(smtTS(time.Hour, 0), smtPut("ub", "stale"), smtPut("uk", "stale"), smtPut("ua", "stale"))
	dst.apply(&rspb.RaftCommand{Command: &rspb.RaftCommand_Gc{Gc: &rspb.GCCommand{Threshold: TSToProto(smtTS(30*time.Minute, 0))}}})
	dst.apply(dst.mustEvaluate("stale-p", smtTS(time.Hour+time.Second, 0), smtPut("uf", "f")))
	dstLeaseA := &rspb.Lease{ReplicaId: 2, NodeId: 2, Epoch: 1, Sequence: 1}
	dstLeaseB := &rspb.Lease{ReplicaId: 2, NodeId: 2, Epoch: 2, Sequence: 2}
	if r := dst.requestLease(dstLeaseA, nil); r.Error != nil {
		t.Fatal(r.Error)
	}
	if r := dst.requestLease(dstLeaseB, dstLeaseA); r.Error != nil {
		t.Fatal(r.Error)
	}
	leaseCallsBefore := len(dst.leaseCalls())
	for i := 0; i < 20; i++ { // a higher applied index than the snapshot's
		dst.applyEmpty()
	}
	{
		b := dstEng.NewBatch()
		for _, k := range []string{"u", "u0", "u`", "um", "um\x00", "uy"} {
			if err := b.PutMVCC([]byte(k), smtTS(0, 1), []byte("neighbour")); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		_ = b.Close()
	}
	smtPutRaw(t, dstEng, append([][]byte{staleRecord}, outsideRecords...)...)
	outsideBefore := append(smtRawData(t, dstEng, nil, smtStart), smtRawData(t, dstEng, smtEnd, nil)...)
	neighbourDescBefore, _, _ := dstEng.GetRaw(rangeStateKey(smtRangeID+1, suffixDescriptor))
	prevDescBefore, _, _ := dstEng.GetRaw(rangeStateKey(smtRangeID-1, suffixDescriptor))

	// Snapshot the source while it keeps applying: the snapshot is of the
	// prepared point.
	ctx, err := src.sm.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	srcDataAtSnap := smtRawData(t, src.eng, smtStart, smtEnd)
	src.write(smtTS(5*time.Second, 0), smtPut("ub", "after-snapshot"))
	var buf bytes.Buffer
	if err := src.sm.SaveSnapshot(ctx, &buf, make(chan struct{})); err != nil {
		t.Fatal(err)
	}

	if err := dst.sm.RecoverFromSnapshot(bytes.NewReader(buf.Bytes()), make(chan struct{})); err != nil {
		t.Fatal(err)
	}

	if got := smtRawData(t, dstEng, smtStart, smtEnd); !smtEqual(got, srcDataAtSnap) {
		t.Fatalf("data after recovery:\n%v\nwant\n%v", got, srcDataAtSnap)
	}
	for k, want := range map[string]bool{string(srcRecord): true, string(staleRecord): false, string(outsideRecords[0]): true, string(outsideRecords[1]): true} {
		if _, ok, err := dstEng.GetRaw([]byte(k)); err != nil || ok != want {
			t.Fatalf("addressed key %x after recovery: present %v (%v), want %v", k, ok, err, want)
		}
	}
	if !proto.Equal(dst.sm.desc.Load(), smtDesc()) {
		t.Fatalf("descriptor after recovery %v", dst.sm.desc.Load())
	}
	if got := dst.sm.applied.Load(); got != srcIndex {
		t.Fatalf("applied after recovery %d, want %d", got, srcIndex)
	}
	if cur := dst.sm.lease.Load(); !proto.Equal(cur, srcLease) {
		t.Fatalf("lease after recovery %v, want the source's %v", cur, srcLease)
	}
	if calls := dst.leaseCalls()[leaseCallsBefore:]; len(calls) != 1 || !proto.Equal(calls[0], srcLease) {
		t.Fatalf("onLease calls during recovery %v, want one with %v", calls, srcLease)
	}
	outsideAfter := append(smtRawData(t, dstEng, nil, smtStart), smtRawData(t, dstEng, smtEnd, nil)...)
	if !smtEqual(outsideAfter, outsideBefore) || len(outsideAfter) != 8 {
		t.Fatalf("data outside the span changed:\n%v\nwas\n%v", outsideAfter, outsideBefore)
	}
	if v, _, _ := dstEng.GetRaw(rangeStateKey(smtRangeID+1, suffixDescriptor)); !bytes.Equal(v, neighbourDescBefore) {
		t.Fatalf("neighbour descriptor changed")
	}
	if v, _, _ := dstEng.GetRaw(rangeStateKey(smtRangeID-1, suffixDescriptor)); !bytes.Equal(v, prevDescBefore) {
		t.Fatalf("previous range's descriptor changed")
	}
	// Replicated range state is the source's: the stale dedup record is
	// gone, the source's is there; GC threshold and max write ts are the
	// source's.
	if _, ok, _ := dstEng.GetRaw(dedupKey(smtRangeID, smtTS(time.Hour+time.Second, 0).WallTime, []byte("stale-p"))); ok {
		t.Errorf("stale dedup record survived recovery")
	}
	dst.sm.mu.RLock()
	gc, mw := dst.sm.gcThreshold, dst.sm.maxWriteTS
	dst.sm.mu.RUnlock()
	if gc != smtTS(1500*time.Millisecond, 0) || mw != smtTS(4*time.Second, 0) {
		t.Errorf("after recovery gc=%s maxWrite=%s", gc, mw)
	}

	// Reads see the snapshot's state.
	for k, want := range map[string]string{"ub": "b2", "uc": "", "uk": "", "ua": "", "ue": "3", "ul": "l4", "ua\x00z": "nul"} {
		got, _ := dst.get(k)
		if got != want {
			t.Errorf("after recovery %q = %q, want %q", k, got, want)
		}
	}
	if r := dst.lookup(&ReadQuery{ReadTS: smtTS(time.Second, 0), Requests: []*rspb.RequestUnion{smtGet("ub")}}); r.Error == nil || r.Error.Code != rspb.RangeError_BELOW_GC_THRESHOLD {
		t.Errorf("read below the source's GC threshold: %v", r)
	}
	if r := dst.lookup(&ReadQuery{ReadTS: smtTS(10*time.Minute, 0), Requests: []*rspb.RequestUnion{smtGet("ub")}}); r.Error != nil {
		t.Errorf("read above the source's GC threshold but below the stale one: %v", r.Error)
	}

	// A fresh instance opens at the snapshot's index.
	if idx, err := newStateMachine(dstEng, smtRangeID, 2, nil).Open(nil); err != nil || idx != srcIndex {
		t.Fatalf("Open after recovery = %d, %v; want %d", idx, err, srcIndex)
	}
	// The source's dedup record travelled: a retry is not re-applied.
	dst.index = srcIndex
	if r := dst.apply(dst.mustEvaluate("snap-p", smtTS(3*time.Second, 0), smtInc("ue", 3))); !proto.Equal(r, origRes) {
		t.Fatalf("retry on the recovered replica: %v, want %v", r, origRes)
	}
	if v, _ := dst.get("ue"); v != "3" {
		t.Fatalf("retried increment re-applied on the recovered replica: ue = %q", v)
	}
	// New writes continue above the source's max write timestamp.
	if r := dst.write(smtTS(0, 0), smtPut("ud", "x")); TSFromProto(r.Timestamp) != smtTS(4*time.Second, 1) {
		t.Fatalf("first write after recovery committed at %s", TSFromProto(r.Timestamp))
	}
}

func TestStateMachineSnapshotStopped(t *testing.T) {
	h := smtNew(t)
	reqs := make([]*rspb.RequestUnion, 0, 3000)
	for i := 0; i < 3000; i++ {
		reqs = append(reqs, smtPut(fmt.Sprintf("ub%05d", i), "v"))
	}
	h.write(smtTS(0, 0), reqs...)
	ctx, err := h.sm.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	close(stop)
	var buf bytes.Buffer
	if err := h.sm.SaveSnapshot(ctx, &buf, stop); !errors.Is(err, sm.ErrSnapshotStopped) {
		t.Fatalf("SaveSnapshot with a closed stop channel: %v, want ErrSnapshotStopped", err)
	}
	// A truncated stream fails recovery and leaves the target untouched.
	ctx, err = h.sm.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := h.sm.SaveSnapshot(ctx, &buf, make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	dstEng := smtOpenEngine(t)
	smtWriteDesc(t, dstEng, smtDesc())
	dst := smtOpen(t, dstEng, 2)
	dst.write(smtTS(time.Hour, 0), smtPut("uk", "keep"))
	truncated := buf.Bytes()[:buf.Len()/2]
	if err := dst.sm.RecoverFromSnapshot(bytes.NewReader(truncated), make(chan struct{})); err == nil {
		t.Fatal("recovery from a truncated stream succeeded")
	}
	if v, _ := dst.get("uk"); v != "keep" {
		t.Fatalf("failed recovery changed data: uk = %q", v)
	}
	if got := dst.sm.applied.Load(); got != 1 {
		t.Fatalf("failed recovery changed the applied index to %d", got)
	}
}

func TestStateMachinePrepareSnapshotWithoutDescriptor(t *testing.T) {
	s := newStateMachine(smtOpenEngine(t), smtRangeID, 1, nil)
	if _, err := s.Open(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareSnapshot(); err == nil {
		t.Fatal("PrepareSnapshot without a descriptor succeeded")
	}
	// Applying a command without a descriptor is an invariant violation.
	if _, err := s.Update([]sm.Entry{{Index: 1, Cmd: smtMarshal(t, &rspb.RaftCommand{Command: &rspb.RaftCommand_Write{Write: &rspb.WriteCommand{Requests: []*rspb.RequestUnion{smtPut("ub", "x")}}}})}}); err == nil {
		t.Fatal("Update without a descriptor succeeded")
	}
}

func TestStateMachineClose(t *testing.T) {
	h := smtNew(t)
	h.write(smtTS(0, 0), smtPut("ub", "x"))
	if err := h.sm.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := h.sm.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sm.Lookup(&ReadQuery{Requests: []*rspb.RequestUnion{smtGet("ub")}}); !errors.Is(err, errReplicaClosed) {
		t.Fatalf("Lookup after Close: %v, want %v", err, errReplicaClosed)
	}
	// The shared engine stays usable by other replicas.
	if v, _ := smtOpen(t, h.eng, 1).get("ub"); v != "x" {
		t.Fatalf("reopened replica reads %q", v)
	}
}

func TestStateMachineAppliedIndexPersistence(t *testing.T) {
	h := smtNew(t)
	for i := uint64(1); i <= 10; i++ {
		cmd := h.mustEvaluate("", smtTS(time.Duration(i)*time.Second, 0), smtInc("uc", 1))
		if _, err := h.sm.Update([]sm.Entry{{Index: i, Cmd: smtMarshal(t, cmd)}}); err != nil {
			t.Fatal(err)
		}
		if idx, err := newStateMachine(h.eng, smtRangeID, 1, nil).Open(nil); err != nil || idx != i {
			t.Fatalf("Open after %d entries = %d, %v", i, idx, err)
		}
	}
	// Another replica ID of the same range on this engine is a new replica.
	if idx, err := newStateMachine(h.eng, smtRangeID, 3, nil).Open(nil); err != nil || idx != 0 {
		t.Fatalf("Open of another replica ID = %d, %v; want 0", idx, err)
	}
	if v, _ := h.get("uc"); v != "10" {
		t.Fatalf("uc = %q, want 10", v)
	}
}

func TestStateMachineConcurrentLookup(t *testing.T) {
	h := smtNew(t)
	h.write(smtTS(0, 0), smtPut("ub", "0"))
	const writes = 200
	var wg sync.WaitGroup
	done := make(chan struct{})
	errc := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := int64(-1)
			for {
				select {
				case <-done:
					return
				default:
				}
				v, err := h.sm.Lookup(&ReadQuery{Requests: []*rspb.RequestUnion{smtGet("ub"), smtScan("ua", "um")}})
				if err != nil {
					errc <- err
					return
				}
				res := v.(*rspb.RaftResult)
				if res.Error != nil {
					errc <- fmt.Errorf("lookup: %v", res.Error)
					return
				}
				n, err := strconv.ParseInt(string(res.Responses[0].GetGet().Kv.GetValue()), 10, 64)
				if err != nil {
					errc <- fmt.Errorf("read after %d: %w", last, err)
					return
				}
				if n < last {
					errc <- fmt.Errorf("read %d after %d", n, last)
					return
				}
				last = n
			}
		}()
	}
	for i := 1; i <= writes; i++ {
		h.write(smtTS(time.Duration(i)*time.Millisecond, 0), smtInc("ub", 1), smtPut(fmt.Sprintf("uc%03d", i), "x"))
	}
	close(done)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if v, _ := h.get("ub"); v != strconv.Itoa(writes) {
		t.Fatalf("ub = %q", v)
	}
}
