package ranges

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Script-driven apply tests: the scripts under testdata/apply/ drive
// replicas' state machines (stateMachine) the way Dragonboat and the
// leaseholder would, one directive at a time, and compare what each
// directive prints with the expected output written under it. Rewrite the
// expected output after an intended change with
//
//	go test ./ranges/ -run TestApplyScript -rewrite
//
// and review the diff. Directives (r= names a range, replica= one of its
// replicas, node= the engine it lives on; timestamps are whole seconds):
//
//	new-replica r= replica= [node=] [span=(start,end) [replicas=n]]
//	    opens a replica over its node's engine; span= first writes the
//	    range's descriptor (bootstrap), without it the replica is empty or
//	    loads the descriptor a split wrote.
//	write r= ts= [id=]
//	    one request a line: k=v (put), inc k=d, del k. Evaluated by the
//	    first replica of the range that has a descriptor (or replica=) into
//	    a write batch under its lease and generation, then applied; id= is
//	    the proposal ID (none without it).
//	request-lease r= holder= start= [exp=|epoch=] [seq=] [prev=current|none|<seq>]
//	split r= key= right=
//	freeze r= into=          (into=0 thaws)
//	merge r= right= [served-below=]
//	gc r= threshold=
//	apply-raw r= cmd= [replica=] [index=]
//	    applies a command saved with name= (again): a duplicated or stale
//	    entry (index= defaults to the group's next index).
//	snapshot r= from= to=    save from one replica, recover into another
//	restart r= replica=      close the state machine and open it again
//	print-state r= [replica=]
//
// Commands apply to every open replica of the range (replica= to one), at
// the group's next log index unless index= says otherwise; lease-seq= and
// gen= replace the lease sequence and generation the command was evaluated
// under (a stale proposal); name= saves the command for apply-raw, and hold
// (with name=) only saves it (proposed, not applied yet). Each command
// prints, per replica, the checkApply verdict and reason, then what the
// entry answered.

// TestApplyScript runs every script under testdata/apply.
func TestApplyScript(t *testing.T) {
	datadriven.Walk(t, "testdata/apply", func(t *testing.T, path string) {
		h := &applyHarness{t: t, engines: map[uint64]*kv.Engine{}, groups: map[uint64]*applyGroup{},
			cmds: map[string]*rspb.RaftCommand{}}
		datadriven.RunTest(t, path, h.run)
	})
}

// applyHarness is the state of one script: engines by node, and the
// replicas of each range.
type applyHarness struct {
	t       *testing.T
	engines map[uint64]*kv.Engine
	groups  map[uint64]*applyGroup
	cmds    map[string]*rspb.RaftCommand // saved with name=
	ids     int                          // admin proposal IDs handed out
}

// proposalID returns a new proposal ID for an admin command (the store
// draws random ones; these are deterministic).
func (h *applyHarness) proposalID(kind string) []byte {
	h.ids++
	return []byte(fmt.Sprintf("%s-%d", kind, h.ids))
}

// applyGroup is one range's Raft group: its replicas and log index.
type applyGroup struct {
	rangeID  uint64
	replicas map[uint64]*applyReplica
	index    uint64                 // the last index handed out
	leases   map[uint64]*rspb.Lease // applied leases by sequence (for prev=)
}

type applyReplica struct {
	nodeID uint64
	*smtHarness
}

func (h *applyHarness) engine(nodeID uint64) *kv.Engine {
	if e, ok := h.engines[nodeID]; ok {
		return e
	}
	e := smtOpenEngine(h.t)
	h.engines[nodeID] = e
	return e
}

func (h *applyHarness) group(rangeID uint64) *applyGroup {
	g, ok := h.groups[rangeID]
	if !ok {
		g = &applyGroup{rangeID: rangeID, replicas: map[uint64]*applyReplica{}, leases: map[uint64]*rspb.Lease{}}
		h.groups[rangeID] = g
	}
	return g
}

// sortedReplicas returns the group's replicas in replica ID order.
func (g *applyGroup) sortedReplicas() []*applyReplica {
	out := make([]*applyReplica, 0, len(g.replicas))
	for _, r := range g.replicas {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].sm.replicaID < out[j].sm.replicaID })
	return out
}

// scriptError aborts a directive with a message printed as its output.
type scriptError struct{ msg string }

func scriptFail(format string, args ...any) { panic(scriptError{fmt.Sprintf(format, args...)}) }

func (h *applyHarness) run(t *testing.T, d *datadriven.TestData) (out string) {
	defer func() {
		if r := recover(); r != nil {
			se, ok := r.(scriptError)
			if !ok {
				panic(r)
			}
			out = "error: " + se.msg + "\n"
		}
	}()
	var b strings.Builder
	g := h.group(argUint(d, "r", 0))
	switch d.Cmd {
	case "new-replica":
		h.newReplica(&b, d, g)
	case "write":
		h.write(&b, d, g)
	case "request-lease":
		h.requestLease(&b, d, g)
	case "split":
		h.propose(&b, d, g, splitCommand(h.evaluator(d, g), h.proposalID("split"), []byte(argString(d, "key", "")), argUint(d, "right", 0)))
	case "freeze":
		h.propose(&b, d, g, freezeCommand(h.evaluator(d, g), h.proposalID("freeze"), argUint(d, "into", 0)))
	case "merge":
		h.merge(&b, d, g)
	case "gc":
		h.propose(&b, d, g, gcCommand(argTS(d, "threshold", kv.Timestamp{})))
	case "apply-raw":
		cmd, ok := h.cmds[argString(d, "cmd", "")]
		if !ok {
			scriptFail("no command saved as %q", argString(d, "cmd", ""))
		}
		h.propose(&b, d, g, cmd)
	case "snapshot":
		h.snapshot(&b, d, g)
	case "restart":
		h.restart(&b, d, g)
	case "print-state":
		for _, r := range h.targets(d, g) {
			b.WriteString(printState(t, r))
		}
	default:
		scriptFail("unknown directive %q", d.Cmd)
	}
	return b.String()
}

// Arguments.

func argString(d *datadriven.TestData, key, def string) string {
	for _, a := range d.CmdArgs {
		if a.Key == key {
			if len(a.Vals) != 1 {
				scriptFail("%s: want one value, got %v", key, a.Vals)
			}
			return a.Vals[0]
		}
	}
	if def == "" {
		scriptFail("missing argument %s=", key)
	}
	return def
}

// argUint returns a numeric argument (def when absent and def != 0; a
// missing argument without a default fails).
func argUint(d *datadriven.TestData, key string, def uint64) uint64 {
	if !d.HasArg(key) && def != 0 {
		return def
	}
	v, err := strconv.ParseUint(argString(d, key, ""), 10, 64)
	if err != nil {
		scriptFail("%s: %v", key, err)
	}
	return v
}

// argTS reads a timestamp given in whole seconds (def when absent and not
// empty).
func argTS(d *datadriven.TestData, key string, def kv.Timestamp) kv.Timestamp {
	if !d.HasArg(key) && !def.IsEmpty() {
		return def
	}
	sec := argUint(d, key, 0)
	return kv.Timestamp{WallTime: int64(sec) * int64(time.Second)}
}

// targets returns the replicas a directive addresses: replica= or all.
func (h *applyHarness) targets(d *datadriven.TestData, g *applyGroup) []*applyReplica {
	if d.HasArg("replica") {
		r, ok := g.replicas[argUint(d, "replica", 0)]
		if !ok {
			scriptFail("r%d has no replica %s", g.rangeID, argString(d, "replica", ""))
		}
		return []*applyReplica{r}
	}
	if len(g.replicas) == 0 {
		scriptFail("r%d has no replicas", g.rangeID)
	}
	return g.sortedReplicas()
}

// evaluator is the replica that plays the leaseholder: replica= or the
// first replica that has a descriptor.
func (h *applyHarness) evaluator(d *datadriven.TestData, g *applyGroup) *applyReplica {
	for _, r := range h.targets(d, g) {
		if r.sm.desc.Load() != nil {
			return r
		}
	}
	scriptFail("r%d has no replica with a descriptor", g.rangeID)
	return nil
}

// Commands: one builder per kind (the leaseholder's write is built by
// smtHarness.evaluate, which evaluates it into a write batch).

func leaseCommand(next, prev *rspb.Lease) *rspb.RaftCommand {
	return &rspb.RaftCommand{Command: &rspb.RaftCommand_RequestLease{RequestLease: &rspb.RequestLeaseCommand{Lease: next, Prev: prev}}}
}

func gcCommand(threshold kv.Timestamp) *rspb.RaftCommand {
	return &rspb.RaftCommand{Command: &rspb.RaftCommand_Gc{Gc: &rspb.GCCommand{Threshold: TSToProto(threshold)}}}
}

// splitCommand builds the split of ev's range at key as adminSplit does:
// the right side gets rightID and the parent's replicas.
func splitCommand(ev *applyReplica, id, key []byte, rightID uint64) *rspb.RaftCommand {
	desc := ev.sm.desc.Load()
	left := proto.Clone(desc).(*rspb.RangeDescriptor)
	left.EndKey = append([]byte(nil), key...)
	left.Generation++
	left.NextReplicaId = NextReplicaID(desc)
	right := &rspb.RangeDescriptor{RangeId: rightID, StartKey: append([]byte(nil), key...), EndKey: desc.EndKey,
		Generation: left.Generation, NextReplicaId: left.NextReplicaId}
	members := map[uint64]string{}
	for _, r := range desc.Replicas {
		members[r.ReplicaId] = fmt.Sprintf("n%d", r.NodeId)
		right.Replicas = append(right.Replicas, proto.Clone(r).(*rspb.ReplicaDescriptor))
	}
	var leftBytes, rightBytes int64
	if bytes.Compare(desc.StartKey, key) < 0 && bytes.Compare(key, desc.EndKey) < 0 {
		// (A split key outside the range is proposed unmeasured: apply
		// must refuse it.)
		var err error
		if leftBytes, err = spanBytes(ev.eng, desc.StartKey, key); err == nil {
			rightBytes, err = spanBytes(ev.eng, key, desc.EndKey)
		}
		if err != nil {
			scriptFail("measuring the split: %v", err)
		}
	}
	return &rspb.RaftCommand{ProposalId: id, Timestamp: TSToProto(ev.maxWrite()),
		LeaseSequence: ev.sm.lease.Load().Sequence, Generation: desc.Generation,
		Command: &rspb.RaftCommand_Split{Split: &rspb.SplitCommand{Left: left, Right: right, RightMembers: members, LeftBytes: leftBytes, RightBytes: rightBytes}}}
}

// freezeCommand builds the freeze of ev's range for a merge into into.
func freezeCommand(ev *applyReplica, id []byte, into uint64) *rspb.RaftCommand {
	return &rspb.RaftCommand{ProposalId: id, Timestamp: TSToProto(ev.maxWrite()),
		LeaseSequence: ev.sm.lease.Load().Sequence, Generation: ev.sm.desc.Load().Generation, Command: &rspb.RaftCommand_Freeze{Freeze: &rspb.FreezeCommand{MergeInto: into}}}
}

// mergeCommand builds the merge of ev's range with its frozen right
// neighbour (right, as the freeze reported it) as adminMerge does.
func mergeCommand(ev *applyReplica, id []byte, right *rspb.RangeDescriptor, servedBelow kv.Timestamp, rightBytes int64) *rspb.RaftCommand {
	desc := ev.sm.desc.Load()
	merged := proto.Clone(desc).(*rspb.RangeDescriptor)
	merged.EndKey = right.EndKey
	merged.Generation = max(desc.Generation, right.Generation) + 1
	merged.NextReplicaId = max(NextReplicaID(desc), NextReplicaID(right))
	return &rspb.RaftCommand{ProposalId: id, Timestamp: TSToProto(ev.maxWrite()),
		LeaseSequence: ev.sm.lease.Load().Sequence, Generation: desc.Generation,
		Command: &rspb.RaftCommand_Merge{Merge: &rspb.MergeCommand{Right: right, Merged: merged, RightServedBelow: TSToProto(servedBelow), RightBytes: rightBytes}}}
}

func (r *applyReplica) maxWrite() kv.Timestamp {
	r.sm.mu.RLock()
	defer r.sm.mu.RUnlock()
	return r.sm.maxWriteTS
}

// Directives.

func (h *applyHarness) newReplica(b *strings.Builder, d *datadriven.TestData, g *applyGroup) {
	id := argUint(d, "replica", 1)
	if _, ok := g.replicas[id]; ok {
		scriptFail("r%d already has replica %d", g.rangeID, id)
	}
	node := argUint(d, "node", 1)
	eng := h.engine(node)
	if d.HasArg("span") {
		var start, end string
		d.ScanArgs(h.t, "span", &start, &end)
		desc := &rspb.RangeDescriptor{RangeId: g.rangeID, StartKey: []byte(start), EndKey: []byte(end), Generation: 1}
		n := argUint(d, "replicas", 1)
		for rid := uint64(1); rid <= n; rid++ {
			desc.Replicas = append(desc.Replicas, &rspb.ReplicaDescriptor{NodeId: rid, ReplicaId: rid})
		}
		desc.NextReplicaId = n + 1
		smtWriteDesc(h.t, eng, desc)
	}
	sh := smtOpenRange(h.t, eng, g.rangeID, id)
	r := &applyReplica{nodeID: node, smtHarness: sh}
	r.sm.subsume = func(rangeID uint64) *stateMachine { return h.subsume(node, rangeID) }
	g.replicas[id] = r
	g.index = max(g.index, sh.index)
	fmt.Fprintf(b, "r%d/%d on n%d: opened at applied index %d\n", g.rangeID, id, node, sh.index)
	if desc := r.sm.desc.Load(); desc != nil {
		fmt.Fprintf(b, "  desc: %s\n", fmtDesc(desc))
	} else {
		b.WriteString("  desc: none (empty replica)\n")
	}
}

// subsume marks the local replica of rangeID on node merged, as
// Store.subsume does before a merge commits.
func (h *applyHarness) subsume(node, rangeID uint64) *stateMachine {
	g, ok := h.groups[rangeID]
	if !ok {
		return nil
	}
	for _, r := range g.replicas {
		if r.nodeID == node {
			r.sm.applyMu.Lock()
			r.sm.merged.Store(true)
			r.sm.applyMu.Unlock()
			return r.sm
		}
	}
	return nil
}

func (h *applyHarness) write(b *strings.Builder, d *datadriven.TestData, g *applyGroup) {
	ev := h.evaluator(d, g)
	var reqs []*rspb.RequestUnion
	for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "inc "):
			k, v, _ := strings.Cut(strings.TrimPrefix(line, "inc "), "=")
			delta, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				scriptFail("%q: %v", line, err)
			}
			reqs = append(reqs, smtInc(k, delta))
		case strings.HasPrefix(line, "del "):
			reqs = append(reqs, smtDel(strings.TrimPrefix(line, "del ")))
		case strings.Contains(line, "="):
			k, v, _ := strings.Cut(line, "=")
			reqs = append(reqs, smtPut(k, v))
		default:
			scriptFail("write: cannot parse %q (k=v, inc k=d, del k)", line)
		}
	}
	var id string
	if d.HasArg("id") {
		id = argString(d, "id", "")
	}
	cmd, re := ev.evaluate(id, argTS(d, "ts", kv.Timestamp{}), reqs...)
	if re != nil {
		fmt.Fprintf(b, "evaluation refused: %s: %s\n", re.Code, re.Message)
		return
	}
	h.propose(b, d, g, cmd)
}

func (h *applyHarness) requestLease(b *strings.Builder, d *datadriven.TestData, g *applyGroup) {
	ev := h.evaluator(d, g)
	cur := ev.sm.lease.Load()
	holder := argUint(d, "holder", 0)
	hr, ok := g.replicas[holder]
	if !ok {
		scriptFail("r%d has no replica %d to hold the lease", g.rangeID, holder)
	}
	next := &rspb.Lease{ReplicaId: holder, NodeId: hr.nodeID, Start: TSToProto(argTS(d, "start", kv.Timestamp{})),
		Sequence: argUint(d, "seq", cur.Sequence+1)}
	switch {
	case d.HasArg("exp"):
		next.Expiration = TSToProto(argTS(d, "exp", kv.Timestamp{}))
	case d.HasArg("epoch"):
		next.Epoch = int64(argUint(d, "epoch", 0))
	default:
		scriptFail("request-lease needs exp= or epoch=")
	}
	var prev *rspb.Lease
	switch p := argString(d, "prev", "current"); p {
	case "current":
		prev = cur
	case "none":
	default:
		seq, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			scriptFail("prev=%s: want current, none or a lease sequence", p)
		}
		if prev, ok = g.leases[seq]; !ok {
			scriptFail("no lease %d applied so far", seq)
		}
	}
	h.propose(b, d, g, leaseCommand(next, prev))
}

func (h *applyHarness) merge(b *strings.Builder, d *datadriven.TestData, g *applyGroup) {
	ev := h.evaluator(d, g)
	rg := h.group(argUint(d, "right", 0))
	// The freeze answer comes from the right range's replica on the
	// leaseholder's node.
	var rr *applyReplica
	for _, r := range rg.sortedReplicas() {
		if r.nodeID == ev.nodeID {
			rr = r
			break
		}
	}
	if rr == nil || rr.sm.desc.Load() == nil {
		scriptFail("r%d has no replica on n%d", rg.rangeID, ev.nodeID)
	}
	served := argTS(d, "served-below", rr.maxWrite().Next())
	h.propose(b, d, g, mergeCommand(ev, h.proposalID("merge"), rr.sm.desc.Load(), served, rr.sm.size.Load()))
}

// propose appends cmd to g's log (at index= or the next index), saves it
// under name= and applies it to the addressed replicas, printing each
// one's verdict and answer.
func (h *applyHarness) propose(b *strings.Builder, d *datadriven.TestData, g *applyGroup, cmd *rspb.RaftCommand) {
	// A proposal made under an older lease or descriptor generation.
	if d.HasArg("lease-seq") {
		cmd.LeaseSequence = argUint(d, "lease-seq", 0)
	}
	if d.HasArg("gen") {
		cmd.Generation = argUint(d, "gen", 0)
	}
	if d.HasArg("name") {
		h.cmds[argString(d, "name", "")] = cmd
	}
	if d.HasArg("hold") {
		if !d.HasArg("name") {
			scriptFail("hold needs name=")
		}
		fmt.Fprintf(b, "held as %s (proposed, not applied yet)\n", argString(d, "name", ""))
		return
	}
	index := g.index + 1
	if d.HasArg("index") {
		index = argUint(d, "index", 0)
	}
	g.index = max(g.index, index)
	for _, r := range h.targets(d, g) {
		fmt.Fprintf(b, "r%d/%d index %d: ", g.rangeID, r.sm.replicaID, index)
		if r.sm.merged.Load() {
			b.WriteString("(merged away: the entry writes nothing) ")
		} else if desc := r.sm.desc.Load(); desc != nil {
			chk := checkApply(cmd, r.facts(cmd))
			fmt.Fprintf(b, "%s (%s)\n  ", chk.Verdict, chk.Reason)
		}
		res, err := r.update(index, cmd)
		if err != nil {
			fmt.Fprintf(b, "update failed: %v\n", err)
			continue
		}
		if res.Value != resultOK {
			b.WriteString("no result\n")
			continue
		}
		rr := &rspb.RaftResult{}
		if err := proto.Unmarshal(res.Data, rr); err != nil {
			h.t.Fatalf("decode result: %v", err)
		}
		b.WriteString(fmtResult(rr) + "\n")
		if l := r.sm.lease.Load(); l.Sequence != 0 {
			g.leases[l.Sequence] = l
		}
	}
}

// facts gathers what applyEntry hands checkApply for cmd on this replica.
func (r *applyReplica) facts(cmd *rspb.RaftCommand) applyFacts {
	f := applyFacts{RangeID: r.sm.rangeID, Desc: r.sm.desc.Load(), Lease: r.sm.lease.Load(), FrozenInto: r.sm.frozen.Load(),
		MaxWrite: r.maxWrite(), DedupWindow: DedupWindow}
	if len(cmd.ProposalId) > 0 {
		_, hit, err := r.eng.GetRaw(dedupKey(r.sm.rangeID, TSFromProto(cmd.Timestamp).WallTime, cmd.ProposalId))
		if err != nil {
			scriptFail("dedup lookup: %v", err)
		}
		f.DedupHit = hit
	}
	return f
}

func (h *applyHarness) snapshot(b *strings.Builder, d *datadriven.TestData, g *applyGroup) {
	src, ok := g.replicas[argUint(d, "from", 0)]
	dst, ok2 := g.replicas[argUint(d, "to", 0)]
	if !ok || !ok2 {
		scriptFail("r%d: from= and to= must name replicas", g.rangeID)
	}
	if src.eng == dst.eng {
		scriptFail("a snapshot goes to a replica on another node")
	}
	sc, err := src.sm.PrepareSnapshot()
	if err != nil {
		fmt.Fprintf(b, "prepare failed: %v\n", err)
		return
	}
	var buf bytes.Buffer
	if err := src.sm.SaveSnapshot(sc, &buf, nil); err != nil {
		scriptFail("save: %v", err)
	}
	before := dst.sm.applied.Load()
	if err := dst.sm.RecoverFromSnapshot(&buf, nil); err != nil {
		scriptFail("recover: %v", err)
	}
	fmt.Fprintf(b, "r%d/%d -> r%d/%d: applied index %d -> %d\n", g.rangeID, src.sm.replicaID, g.rangeID, dst.sm.replicaID,
		before, dst.sm.applied.Load())
	b.WriteString(sameState(h.t, src, dst))
}

// sameState compares two replicas' print-state bodies.
func sameState(t *testing.T, a, b *applyReplica) string {
	as, bs := stateBody(t, a), stateBody(t, b)
	if as == bs {
		return fmt.Sprintf("state of r%d/%d equals r%d/%d\n", b.sm.rangeID, b.sm.replicaID, a.sm.rangeID, a.sm.replicaID)
	}
	return fmt.Sprintf("STATE DIFFERS\nr%d/%d:\n%sr%d/%d:\n%s", a.sm.rangeID, a.sm.replicaID, as, b.sm.rangeID, b.sm.replicaID, bs)
}

func (h *applyHarness) restart(b *strings.Builder, d *datadriven.TestData, g *applyGroup) {
	for _, r := range h.targets(d, g) {
		before, applied := stateBody(h.t, r), r.sm.applied.Load()
		if err := r.sm.Close(); err != nil {
			scriptFail("close: %v", err)
		}
		old := r.sm
		sh := smtOpenRange(h.t, r.eng, g.rangeID, old.replicaID)
		sh.sm.subsume = old.subsume
		r.smtHarness = sh
		fmt.Fprintf(b, "r%d/%d: reopened at applied index %d (applied before: %d)\n", g.rangeID, old.replicaID, sh.index, applied)
		if after := stateBody(h.t, r); after != before {
			fmt.Fprintf(b, "STATE DIFFERS after restart\nbefore:\n%safter:\n%s", before, after)
		}
	}
}

// Printing.

func fmtTS(ts kv.Timestamp) string {
	if ts.IsEmpty() {
		return "0"
	}
	if ts.WallTime%int64(time.Second) == 0 {
		return fmt.Sprintf("%ds,%d", ts.WallTime/int64(time.Second), ts.Logical)
	}
	return ts.String()
}

func fmtDesc(d *rspb.RangeDescriptor) string {
	var reps []string
	for _, r := range d.Replicas {
		reps = append(reps, fmt.Sprintf("n%d/%d", r.NodeId, r.ReplicaId))
	}
	return fmt.Sprintf("r%d [%s, %s) gen %d replicas %s next-replica-id %d", d.RangeId, d.StartKey, d.EndKey, d.Generation,
		strings.Join(reps, ","), d.NextReplicaId)
}

func fmtLease(l *rspb.Lease) string {
	if l == nil || l.Sequence == 0 {
		return "none"
	}
	s := fmt.Sprintf("seq %d replica %d n%d start %s", l.Sequence, l.ReplicaId, l.NodeId, fmtTS(TSFromProto(l.Start)))
	if l.Epoch != 0 {
		return s + fmt.Sprintf(" epoch %d", l.Epoch)
	}
	return s + " expiration " + fmtTS(TSFromProto(l.Expiration))
}

func fmtResult(r *rspb.RaftResult) string {
	if r.Error != nil {
		return fmt.Sprintf("refused: %s: %s", r.Error.Code, r.Error.Message)
	}
	parts := []string{"ok"}
	if r.Timestamp != nil {
		parts = append(parts, "at "+fmtTS(TSFromProto(r.Timestamp)))
	}
	for _, ru := range r.Responses {
		switch v := ru.Value.(type) {
		case *rspb.ResponseUnion_Put:
			parts = append(parts, "put")
		case *rspb.ResponseUnion_Delete:
			parts = append(parts, "del")
		case *rspb.ResponseUnion_Increment:
			parts = append(parts, fmt.Sprintf("inc=%d", v.Increment.NewValue))
		default:
			parts = append(parts, fmt.Sprintf("%T", v))
		}
	}
	return strings.Join(parts, " ")
}

func printState(t *testing.T, r *applyReplica) string {
	return fmt.Sprintf("r%d/%d on n%d: applied %d\n%s", r.sm.rangeID, r.sm.replicaID, r.nodeID, r.sm.applied.Load(), stateBody(t, r))
}

// stateBody prints the replicated state of r (what a snapshot carries and
// what every replica must agree on): in-memory state, checked against what
// is persisted, the span's MVCC versions and the dedup records.
func stateBody(t *testing.T, r *applyReplica) string {
	t.Helper()
	var b strings.Builder
	m := r.sm
	if m.merged.Load() {
		return "merged away\n"
	}
	desc := m.desc.Load()
	if desc == nil {
		return "desc: none\n"
	}
	m.mu.RLock()
	mw, gc := m.maxWriteTS, m.gcThreshold
	m.mu.RUnlock()
	fmt.Fprintf(&b, "desc: %s\n", fmtDesc(desc))
	fmt.Fprintf(&b, "lease: %s\n", fmtLease(m.lease.Load()))
	fmt.Fprintf(&b, "max-write: %s gc-threshold: %s size: %d\n", fmtTS(mw), fmtTS(gc), m.size.Load())
	if f := m.frozen.Load(); f != 0 {
		fmt.Fprintf(&b, "frozen: into r%d\n", f)
	}
	// The persisted state must be what the replica publishes.
	p := newStateMachine(r.eng, m.rangeID, m.replicaID, nil)
	if err := p.loadState(r.eng); err != nil {
		t.Fatalf("loadState: %v", err)
	}
	if !proto.Equal(p.desc.Load(), desc) || !proto.Equal(p.lease.Load(), m.lease.Load()) || p.maxWriteTS != mw ||
		p.gcThreshold != gc || p.size.Load() != m.size.Load() || p.frozen.Load() != m.frozen.Load() {
		fmt.Fprintf(&b, "PERSISTED STATE DIFFERS: desc %s lease %s max-write %s gc %s size %d frozen %d\n", fmtDesc(p.desc.Load()),
			fmtLease(p.lease.Load()), fmtTS(p.maxWriteTS), fmtTS(p.gcThreshold), p.size.Load(), p.frozen.Load())
	}
	b.WriteString("data:\n")
	err := kv.IterateDataSpan(r.eng, desc.StartKey, desc.EndKey, func(ek, _ []byte) error {
		k, ts, err := kv.DecodeMVCCKey(ek)
		if err != nil {
			return err
		}
		got, found, err := kv.MVCCGet(r.eng, k, ts)
		if err != nil {
			return err
		}
		if found && got.Timestamp == ts {
			fmt.Fprintf(&b, "  %s@%s = %s\n", k, fmtTS(ts), got.Value)
		} else {
			fmt.Fprintf(&b, "  %s@%s deleted\n", k, fmtTS(ts))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("data span: %v", err)
	}
	dp := rangeStateKey(m.rangeID, suffixDedup)
	it, err := r.eng.NewIter(dp, prefixEnd(dp))
	if err != nil {
		t.Fatal(err)
	}
	var dedup []string
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()[len(dp):]
		if len(k) < 8 {
			t.Fatalf("malformed dedup key %x", it.Key())
		}
		wall := int64(decodeUint64Must(t, k[:8]))
		res := &rspb.RaftResult{}
		if err := proto.Unmarshal(it.Value(), res); err != nil {
			t.Fatalf("dedup record: %v", err)
		}
		dedup = append(dedup, fmt.Sprintf("  %s@%s: %s\n", k[8:], fmtTS(kv.Timestamp{WallTime: wall}), fmtResult(res)))
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if len(dedup) > 0 {
		b.WriteString("dedup:\n" + strings.Join(dedup, ""))
	}
	return b.String()
}

func decodeUint64Must(t *testing.T, b []byte) uint64 {
	v, err := decodeUint64(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
