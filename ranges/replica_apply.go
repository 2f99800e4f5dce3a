package ranges

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	sm "github.com/lni/dragonboat/v4/statemachine"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

const (
	// DedupWindow is how long a proposal can be retried: its dedup record is
	// kept at least this long (by command timestamps, so deterministically),
	// and a proposal older than this when it applies is refused as ambiguous.
	DedupWindow = 5 * time.Minute
	// dedupPruneEvery is how often (in log entries) expired dedup records are
	// range-deleted.
	dedupPruneEvery = 512

	resultOK uint64 = 1
)

// errReplicaClosed is returned by Lookup after Close.
var errReplicaClosed = errors.New("ranges: replica closed")

// ReadQuery is the Lookup argument: read-only requests at a timestamp.
type ReadQuery struct {
	Requests []*rspb.RequestUnion
	ReadTS   kv.Timestamp // empty = latest
	// MaxResponseBytes bounds the response's keys and values (0 = the
	// default limits' max_batch_bytes).
	MaxResponseBytes int64
	// Txn is the reading transaction (nil: none), which sees its own
	// intents.
	Txn *rspb.Transaction
}

// stateMachine is one replica's IOnDiskStateMachine over the node's shared
// Pebble engine. Its state is: the range's data span (MVCC keys), its
// replicated range-local keys (descriptor, max write timestamp, GC threshold,
// dedup records) and this replica's applied index. All writes of one Update call,
// together with the applied index, commit in one Pebble batch.
type stateMachine struct {
	eng       *kv.Engine
	rangeID   uint64
	replicaID uint64
	onLease   func(rangeID uint64, lease *rspb.Lease) // called when a new lease applies (must not block)
	onSplit   func(split *splitApplied)               // called after a split committed (must not block)
	onMerge   func(merge *mergeApplied)               // called after a merge committed (must not block)
	// onSnapshot is called after a snapshot replaced the replica's state
	// (its span may now cover ranges subsumed meanwhile).
	onSnapshot func(m *stateMachine)
	// subsume marks a local range as merged away (so it is never started
	// again and its running replica writes nothing more) and returns its
	// state machine if it runs here (merges).
	subsume func(rangeID uint64) *stateMachine
	// snaps bounds and measures the snapshots this replica sends and
	// applies (shared by the node's replicas; nil = unbounded).
	snaps *snapshotLimits

	// applyMu is held for each Update; a merge takes the subsumed right
	// replica's applyMu to mark it merged, after which its Update writes
	// nothing (its state was deleted with the merge).
	applyMu sync.Mutex
	merged  atomic.Bool
	// frozen is the range this one is being merged into (0 = not frozen).
	frozen atomic.Uint64

	desc    atomic.Pointer[rspb.RangeDescriptor]
	lease   atomic.Pointer[rspb.Lease]
	applied atomic.Uint64
	closed  atomic.Bool
	// onOpen, when set, is called once Open has loaded the replica's state
	// (descriptor, lease): it closes Replica.ready. beforeOpen, when set,
	// is called first (a testing hook).
	onOpen     func()
	beforeOpen func()
	// beforeIngest, when set, is called by RecoverFromSnapshot once the
	// snapshot is staged, before it is ingested; an error aborts the
	// recovery (a testing hook).
	beforeIngest func() error
	// beforeRecover, when set, is called when a snapshot (received whole)
	// is about to be applied (a testing hook: crash point).
	beforeRecover func()
	// midSend and midRecover, when set, are called once per snapshot when
	// SaveSnapshot has written, or RecoverFromSnapshot has read,
	// snapshotMidBytes of a snapshot longer than that (testing hooks:
	// crash points inside the stream; see snapshotMidBytes).
	midSend    func()
	midRecover func()
	// sending counts the SaveSnapshot calls running (streams of this
	// replica's state to another replica).
	sending atomic.Int32
	// recovering counts the RecoverFromSnapshot calls running.
	recovering atomic.Int32
	// sendEnded, when set, is called as each SaveSnapshot call returns,
	// with the applied index of the state it streamed.
	sendEnded func(index uint64)
	// beforeSend, when set, is called before SaveSnapshot streams
	// anything; an error ends the stream unsent (a snapshot not needed).
	beforeSend func(stopc <-chan struct{}) error

	mu          sync.RWMutex // guards the timestamps below (Update writes, Lookup reads)
	maxWriteTS  kv.Timestamp
	gcThreshold kv.Timestamp
	// logClosed is the closed timestamp applied writes carried (replicated
	// range state, persisted); sideClosed the highest one adopted from the
	// side transport (in memory only; a restart falls back to logClosed).
	// pendingClosed is a side-transport promise waiting for its index or
	// lease; closedCh is closed when the closed timestamp rises
	// (closedts.go).
	logClosed     kv.Timestamp
	sideClosed    kv.Timestamp
	pendingClosed sideClosedUpdate
	closedCh      chan struct{}
	// size is the replicated estimate of the range's data bytes: writes add
	// the size of their batch, a split sets both sides to measured values.
	size atomic.Int64
}

var _ sm.IOnDiskStateMachine = (*stateMachine)(nil)

func newStateMachine(eng *kv.Engine, rangeID, replicaID uint64, onLease func(uint64, *rspb.Lease)) *stateMachine {
	m := &stateMachine{eng: eng, rangeID: rangeID, replicaID: replicaID, onLease: onLease}
	m.lease.Store(&rspb.Lease{})
	return m
}

func (s *stateMachine) loadState(r kv.Reader) error {
	d := &rspb.RangeDescriptor{}
	if ok, err := s.readState(r, suffixDescriptor, d); err != nil {
		return err
	} else if ok {
		s.desc.Store(d)
	}
	l := &rspb.Lease{}
	if _, err := s.readState(r, suffixLease, l); err != nil {
		return err
	}
	s.lease.Store(l) // empty if the range has had no lease yet
	mw, err := readTS(r, rangeStateKey(s.rangeID, suffixMaxWriteTS))
	if err != nil {
		return err
	}
	gc, err := readTS(r, rangeStateKey(s.rangeID, suffixGCThreshold))
	if err != nil {
		return err
	}
	closed, err := readTS(r, rangeStateKey(s.rangeID, suffixClosedTS))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.maxWriteTS, s.gcThreshold = mw, gc
	if s.logClosed.Less(closed) {
		s.logClosed = closed
		s.notifyClosedLocked()
	}
	s.mu.Unlock()
	size, err := readUint64(r, rangeStateKey(s.rangeID, suffixSize))
	if err != nil {
		return err
	}
	frozen, err := readUint64(r, rangeStateKey(s.rangeID, suffixFrozen))
	if err != nil {
		return err
	}
	s.size.Store(int64(size))
	s.frozen.Store(frozen)
	return nil
}

// readState unmarshals the replica's range-local state key with suffix
// into msg (ok=false, msg untouched, if absent).
func (s *stateMachine) readState(r kv.Reader, suffix []byte, msg proto.Message) (ok bool, err error) {
	v, ok, err := r.GetRaw(rangeStateKey(s.rangeID, suffix))
	if err != nil || !ok {
		return false, err
	}
	if err := proto.Unmarshal(v, msg); err != nil {
		return false, fmt.Errorf("ranges: r%d %s: %w", s.rangeID, suffix, err)
	}
	return true, nil
}

// readUint64 reads a uint64 raw key (0 if absent); a malformed value is
// an error naming the key.
func readUint64(r kv.Reader, key []byte) (uint64, error) {
	v, ok, err := r.GetRaw(key)
	if err != nil || !ok {
		return 0, err
	}
	n, err := decodeUint64(v)
	if err != nil {
		return 0, fmt.Errorf("%w (key %q)", err, key)
	}
	return n, nil
}

// readTS reads a timestamp raw key (empty if absent); a malformed value
// is an error naming the key.
func readTS(r kv.Reader, key []byte) (kv.Timestamp, error) {
	v, ok, err := r.GetRaw(key)
	if err != nil || !ok {
		return kv.Timestamp{}, err
	}
	ts, err := decodeTS(v)
	if err != nil {
		return kv.Timestamp{}, fmt.Errorf("%w (key %q)", err, key)
	}
	return ts, nil
}

// Open returns the applied index that is durable in Pebble (0 for a new
// replica: its replica-keyed applied index does not exist yet).
func (s *stateMachine) Open(stopc <-chan struct{}) (uint64, error) {
	if s.beforeOpen != nil {
		s.beforeOpen()
	}
	if err := s.loadState(s.eng); err != nil {
		return 0, err
	}
	v, ok, err := s.eng.GetRaw(replicaStateKey(s.rangeID, s.replicaID, suffixApplied))
	if err != nil {
		return 0, err
	}
	var idx uint64
	if ok {
		if idx, err = decodeUint64(v); err != nil {
			return 0, err
		}
	}
	s.applied.Store(idx)
	if s.onOpen != nil {
		s.onOpen()
	}
	return idx, nil
}

// applyState is the replica state as of the entries applied so far in one
// Update call. It is published (made visible to readers and the
// leaseholder) only after the batch holding those entries has committed, so
// nobody acts on a lease or timestamp whose preceding writes are not yet
// readable.
type applyState struct {
	desc     *rspb.RangeDescriptor
	lease    *rspb.Lease
	maxWrite kv.Timestamp
	gc       kv.Timestamp
	closed   kv.Timestamp // the closed timestamp applied writes carried
	size     int64
	frozen   uint64
	splits   []*splitApplied
	merges   []*mergeApplied
}

// Update applies committed entries: all of them, their dedup records and the
// last applied index go into one Pebble batch and one commit. Commands that
// are refused (stale lease, expired proposal) write nothing but their dedup
// record. Errors returned here are I/O failures only: they crash the process
// by Dragonboat's contract.
func (s *stateMachine) Update(entries []sm.Entry) ([]sm.Entry, error) {
	if len(entries) == 0 {
		return entries, nil
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.merged.Load() {
		// Subsumed by a merge: this replica's state is gone and it is being
		// stopped; nothing may be written for it any more.
		return entries, nil
	}
	b := s.eng.NewBatch()
	defer func() { _ = b.Close() }()
	s.mu.RLock()
	st := applyState{desc: s.desc.Load(), lease: s.lease.Load(), maxWrite: s.maxWriteTS, gc: s.gcThreshold, closed: s.logClosed, size: s.size.Load(), frozen: s.frozen.Load()}
	prevSize := st.size
	s.mu.RUnlock()
	prevLease := st.lease
	for i := range entries {
		e := &entries[i]
		res, dk, err := s.applyEntry(b, &st, e)
		if err != nil {
			return nil, err
		}
		if e.Index%dedupPruneEvery == 0 {
			if wall := st.maxWrite.WallTime - int64(DedupWindow); wall > 0 {
				start, end := dedupSpanBefore(s.rangeID, wall)
				if err := b.DeleteRawRange(start, end); err != nil {
					return nil, err
				}
			}
		}
		if res == nil {
			continue
		}
		data, err := proto.Marshal(res)
		if err != nil {
			return nil, err
		}
		if dk != nil {
			if err := b.PutRaw(dk, data); err != nil {
				return nil, err
			}
		}
		e.Result = sm.Result{Value: resultOK, Data: data}
	}
	last := entries[len(entries)-1].Index
	if st.size != prevSize {
		if err := b.PutRaw(rangeStateKey(s.rangeID, suffixSize), encodeUint64(uint64(max(st.size, 0)))); err != nil {
			return nil, err
		}
	}
	if err := b.PutRaw(replicaStateKey(s.rangeID, s.replicaID, suffixApplied), encodeUint64(last)); err != nil {
		return nil, err
	}
	// A merge marks the subsumed local replica merged before committing, so
	// it never writes again after its state is deleted.
	for _, mg := range st.merges {
		if s.subsume != nil {
			mg.rightSM = s.subsume(mg.right.RangeId)
		}
	}
	if err := b.Commit(false); err != nil {
		return nil, err
	}
	// Publish.
	s.desc.Store(st.desc)
	s.size.Store(st.size)
	s.frozen.Store(st.frozen)
	s.mu.Lock()
	s.maxWriteTS, s.gcThreshold = st.maxWrite, st.gc
	s.mu.Unlock()
	s.applied.Store(last)
	if st.lease != prevLease {
		s.lease.Store(st.lease)
		if s.onLease != nil && st.lease.Sequence != prevLease.Sequence {
			s.onLease(s.rangeID, st.lease)
		}
	}
	// The closed timestamp rises once the writes below it are readable.
	s.mu.Lock()
	if s.logClosed.Less(st.closed) {
		s.logClosed = st.closed
		s.notifyClosedLocked()
	}
	s.retryPendingLocked()
	s.mu.Unlock()
	for _, sp := range st.splits {
		if s.onSplit != nil {
			s.onSplit(sp)
		}
	}
	for _, mg := range st.merges {
		if s.onMerge != nil {
			s.onMerge(mg)
		}
	}
	return entries, nil
}

// applyEntry evaluates one entry into b. It returns the result to hand to the
// proposer and the key of the dedup record to write (nil for none), or an
// error only for storage failures.
func (s *stateMachine) applyEntry(b *kv.Batch, st *applyState, e *sm.Entry) (*rspb.RaftResult, []byte, error) {
	if len(e.Cmd) == 0 {
		return nil, nil, nil
	}
	cmd, err := decodeRaftCommand(e.Cmd)
	if err != nil {
		return &rspb.RaftResult{Error: rangeErr(rspb.RangeError_INVALID_ARGUMENT, "malformed command: "+err.Error())}, nil, nil
	}
	desc := st.desc
	if desc == nil {
		// Replicas get their descriptor at bootstrap or from a snapshot,
		// both before any command applies; keep the invariant loud.
		return nil, nil, fmt.Errorf("ranges: r%d replica %d applied entry %d without a descriptor", s.rangeID, s.replicaID, e.Index)
	}
	proposedTS := TSFromProto(cmd.Timestamp)
	var dk []byte
	var prev []byte
	if len(cmd.ProposalId) > 0 {
		dk = dedupKey(s.rangeID, proposedTS.WallTime, cmd.ProposalId)
		v, ok, err := b.GetRaw(dk)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			prev = v
		}
	}
	chk := checkApply(cmd, applyFacts{RangeID: s.rangeID, Desc: desc, Lease: st.lease, FrozenInto: st.frozen,
		MaxWrite: st.maxWrite, Closed: st.closed, DedupWindow: DedupWindow, DedupHit: prev != nil})
	switch chk.Verdict {
	case applyAnswerDedup:
		res := &rspb.RaftResult{}
		if err := proto.Unmarshal(prev, res); err != nil {
			return nil, nil, err
		}
		return res, nil, nil
	case applyRefuse:
		return &rspb.RaftResult{Error: chk.Err}, nil, nil
	case applyRefuseRecorded:
		return &rspb.RaftResult{Error: chk.Err}, dk, nil
	}
	var w *rspb.WriteCommand
	var res *rspb.RaftResult
	switch c := cmd.Command.(type) {
	case *rspb.RaftCommand_RequestLease:
		res, err := s.applyRequestLease(b, st, c.RequestLease)
		return res, nil, err
	case *rspb.RaftCommand_Gc:
		res, err := s.applyGC(b, st, desc, TSFromProto(c.Gc.Threshold))
		return res, nil, err
	case *rspb.RaftCommand_Split:
		res, err = s.applySplit(b, st, c.Split)
	case *rspb.RaftCommand_Freeze:
		res, err = s.applyFreeze(b, st, c.Freeze)
	case *rspb.RaftCommand_Merge:
		res, err = s.applyMerge(b, st, c.Merge)
	case *rspb.RaftCommand_ChangeReplicas:
		res, err = s.applyChangeReplicas(b, st, c.ChangeReplicas)
	case *rspb.RaftCommand_Write:
		w = c.Write
	default:
		// decodeRaftCommand makes every command without a case a write.
		return nil, nil, fmt.Errorf("ranges: r%d replica %d entry %d: unknown command %T", s.rangeID, s.replicaID, e.Index, c)
	}
	if w == nil { // a split, freeze, merge or replica change
		if err != nil || res.Error != nil {
			return res, nil, err // refused: no dedup record
		}
		return res, dk, nil
	}
	maxWrite := st.maxWrite
	res = w.Result
	if res == nil {
		res = &rspb.RaftResult{}
	}
	if res.Error != nil {
		return res, dk, nil
	}
	if err := b.ApplyRepr(w.WriteBatch); err != nil {
		return nil, nil, err
	}
	st.size += int64(len(w.WriteBatch))
	if commitTS := TSFromProto(res.Timestamp); maxWrite.Less(commitTS) {
		if err := b.PutRaw(rangeStateKey(s.rangeID, suffixMaxWriteTS), encodeTS(commitTS)); err != nil {
			return nil, nil, err
		}
		st.maxWrite = commitTS
	}
	if c := TSFromProto(w.ClosedTimestamp); st.closed.Less(c) {
		if err := b.PutRaw(rangeStateKey(s.rangeID, suffixClosedTS), encodeTS(c)); err != nil {
			return nil, nil, err
		}
		st.closed = c
	}
	return res, dk, nil
}

// applyRequestLease installs a new lease (or extends the current one).
func (s *stateMachine) applyRequestLease(b *kv.Batch, st *applyState, rl *rspb.RequestLeaseCommand) (*rspb.RaftResult, error) {
	// checkApply (checkLeaseRequest) admitted it.
	next := rl.Lease
	data, err := proto.Marshal(next)
	if err != nil {
		return nil, err
	}
	if err := b.PutRaw(rangeStateKey(s.rangeID, suffixLease), data); err != nil {
		return nil, err
	}
	st.lease = next
	return &rspb.RaftResult{}, nil
}

func orEmpty(l *rspb.Lease) *rspb.Lease {
	if l == nil {
		return &rspb.Lease{}
	}
	return l
}

func (s *stateMachine) applyGC(b *kv.Batch, st *applyState, desc *rspb.RangeDescriptor, threshold kv.Timestamp) (*rspb.RaftResult, error) {
	cur := st.gc
	if !cur.Less(threshold) {
		return &rspb.RaftResult{}, nil
	}
	if _, err := kv.MVCCGarbageCollect(b, b, desc.StartKey, desc.EndKey, threshold); err != nil {
		return nil, err
	}
	if err := b.PutRaw(rangeStateKey(s.rangeID, suffixGCThreshold), encodeTS(threshold)); err != nil {
		return nil, err
	}
	st.gc = threshold
	return &rspb.RaftResult{}, nil
}

// Lookup serves read-only requests from local state. It runs concurrently
// with Update; a kv.View gives the requests one consistent view (a Pebble
// iterator's point-in-time state, shared by every iterator of the batch:
// what a snapshot gave them, without the snapshot list and the compaction
// check each snapshot's Close made).
func (s *stateMachine) Lookup(q interface{}) (interface{}, error) {
	if s.closed.Load() {
		return nil, errReplicaClosed
	}
	rq, ok := q.(*ReadQuery)
	if !ok {
		return nil, fmt.Errorf("ranges: unknown query %T", q)
	}
	desc := s.desc.Load()
	if desc == nil {
		return &rspb.RaftResult{Error: rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("replica of r%d has no data yet", s.rangeID))}, nil
	}
	if err := checkSpans(desc, rq.Requests); err != nil {
		if re, ok := asRangeError(err); ok {
			return &rspb.RaftResult{Error: re}, nil
		}
		return nil, err
	}
	// View first, then the GC threshold: a GC that commits in between
	// raises the threshold we check (refusing more than needed), never the
	// other way round (serving versions it already removed).
	view, err := s.eng.NewView()
	if err != nil {
		return nil, err
	}
	defer func() { _ = view.Close() }()
	s.mu.RLock()
	gc, maxWrite := s.gcThreshold, s.maxWriteTS
	s.mu.RUnlock()
	readTS := rq.ReadTS
	if readTS.IsEmpty() {
		readTS = kv.MaxTimestamp
	}
	for _, r := range rq.Requests {
		if ts := readTimestamp(r, readTS); !gc.IsEmpty() && ts.LessEq(gc) {
			return &rspb.RaftResult{Error: rangeErr(rspb.RangeError_BELOW_GC_THRESHOLD,
				fmt.Sprintf("read at %s is at or below the GC threshold %s of r%d", ts, gc, s.rangeID))}, nil
		}
		if since := TSFromProto(sinceTimestamp(r)); !since.IsEmpty() && since.Less(gc) {
			return &rspb.RaftResult{Error: rangeErr(rspb.RangeError_BELOW_GC_THRESHOLD,
				fmt.Sprintf("versions since %s are needed but r%d's GC threshold is %s: they may have been garbage-collected (a protected timestamp keeps them; take a full backup)", since, s.rangeID, gc))}, nil
		}
	}
	resps, err := batcheval.EvalReadTxn(view, rq.Requests, readTS, rq.MaxResponseBytes, rq.Txn)
	if err != nil {
		if re, ok := asRangeError(err); ok {
			return &rspb.RaftResult{Error: re}, nil
		}
		return nil, err
	}
	outTS := readTS
	if outTS == kv.MaxTimestamp {
		outTS = maxWrite
	}
	return &rspb.RaftResult{Responses: resps, Timestamp: TSToProto(outTS)}, nil
}

// Sync makes every applied entry durable.
func (s *stateMachine) Sync() error { return s.eng.Sync() }

// snapshotMidBytes is where the crash points inside a snapshot stream
// fire (snapshot-send-mid, snapshot-receive-mid): two of Dragonboat's
// snapshot chunks (settings.SnapshotChunkSize, 2 MiB, uncompressed: the
// store sets no SnapshotCompressionType) and a quarter MiB more.
//
// How Dragonboat moves an on-disk state machine's snapshot: SaveSnapshot
// writes into a ChunkWriter (internal/rsm/chunkwriter.go) that cuts the
// stream into 2 MiB blocks; each block becomes a chunk handed to the
// snapshot job (internal/transport/job.go, a queue of 4), which sends it
// on the job's own TCP connection while SaveSnapshot goes on writing.
// Nothing is staged on the sender. The receiver's chunk tracker
// (internal/transport/chunk.go) appends the chunks to a file in a
// snapshot-<index>-<from>.receiving directory of the target replica's
// snapshot directory; only the tail chunk makes it validate the
// checksums, rename the directory to its final name and deliver an
// InstallSnapshot message. The replica then records the snapshot in its
// LogDB and calls RecoverFromSnapshot, which reads the complete, finished
// file: on the receiving side the network stream is over before any of
// our code runs.
const snapshotMidBytes = 2*(2<<20) + 256<<10

type snapshotCtx struct {
	snap    *kv.Snapshot
	desc    *rspb.RangeDescriptor
	applied uint64
}

// PrepareSnapshot captures a consistent point: a Pebble snapshot plus the
// descriptor and applied index (Update is excluded while this runs).
func (s *stateMachine) PrepareSnapshot() (interface{}, error) {
	desc := s.desc.Load()
	if desc == nil {
		return nil, fmt.Errorf("ranges: r%d has no descriptor to snapshot", s.rangeID)
	}
	return &snapshotCtx{snap: s.eng.NewSnapshot(), desc: desc, applied: s.applied.Load()}, nil
}

// SaveSnapshot streams the range: a length-prefixed SnapshotHeader (the
// descriptor, applied index and replicated range-local keys), then
// length-prefixed (engine key, value) pairs of the data span, then a zero
// length.
//
// It first takes one of the node's send slots, and it writes at the node's
// snapshot rate (snapshot_limits.go).
func (s *stateMachine) SaveSnapshot(c interface{}, w io.Writer, stopc <-chan struct{}) (err error) {
	sc := c.(*snapshotCtx)
	defer sc.snap.Close()
	s.sending.Add(1)
	defer func() {
		if s.sendEnded != nil {
			s.sendEnded(sc.applied)
		}
		s.sending.Add(-1)
	}()
	if s.beforeSend != nil {
		if err := s.beforeSend(stopc); err != nil {
			return err
		}
	}
	release, err := s.snaps.acquire(snapSend, stopc)
	if err != nil {
		return err
	}
	defer release()
	start := time.Now()
	lw := &limitedWriter{w: w, l: s.snaps, stopc: stopc, mid: s.midSend, midAt: snapshotMidBytes}
	defer func() {
		if s.snaps != nil {
			s.snaps.metrics.snapshotDone(snapSend, time.Since(start), err)
		}
	}()
	hdr := &rspb.SnapshotHeader{RangeDescriptor: sc.desc, AppliedIndex: sc.applied}
	prefix := rangeStatePrefix(s.rangeID)
	it, err := sc.snap.NewIter(prefix, prefixEnd(prefix))
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		hdr.Local = append(hdr.Local, &rspb.KeyValue{Key: append([]byte(nil), it.Key()...), Value: append([]byte(nil), it.Value()...)})
	}
	if err := it.Close(); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(lw, 256<<10)
	hb, err := proto.Marshal(hdr)
	if err != nil {
		return err
	}
	if err := writeFrame(bw, hb); err != nil {
		return err
	}
	n := 0
	err = kv.IterateRangeData(sc.snap, sc.desc.StartKey, sc.desc.EndKey, func(k, v []byte) error {
		n++
		if n%1024 == 0 {
			select {
			case <-stopc:
				return sm.ErrSnapshotStopped
			default:
			}
		}
		if err := writeFrame(bw, k); err != nil {
			return err
		}
		return writeFrame(bw, v)
	})
	if err != nil {
		return err
	}
	if err := writeFrame(bw, nil); err != nil {
		return err
	}
	return bw.Flush()
}

// inSpans reports whether engine key k lies in one of spans.
func inSpans(k []byte, spans []kv.Span) bool {
	for _, sp := range spans {
		if bytes.Compare(k, sp.Start) >= 0 && bytes.Compare(k, sp.End) < 0 {
			return true
		}
	}
	return false
}

// RecoverFromSnapshot atomically replaces the replica's state with the
// snapshot's, holding only a bounded part of it in memory: the snapshot's
// keys are written into sstables that also delete everything in the old
// and new data spans and the range-local keys, together with the new
// applied index, and the sstables are ingested in one step (kv.Replacement).
// A failure or crash before the ingestion changes nothing visible; see
// doc.go (Snapshots) for why Dragonboat then applies the snapshot again.
//
// It first takes one of the node's apply slots (snapshot_limits.go).
func (s *stateMachine) RecoverFromSnapshot(r io.Reader, stopc <-chan struct{}) (err error) {
	s.recovering.Add(1)
	defer s.recovering.Add(-1)
	if s.beforeRecover != nil {
		s.beforeRecover()
	}
	release, err := s.snaps.acquire(snapApply, stopc)
	if err != nil {
		return err
	}
	defer release()
	start := time.Now()
	cr := &countingReader{r: r, l: s.snaps}
	defer func() {
		if s.snaps != nil {
			s.snaps.metrics.snapshotDone(snapApply, time.Since(start), err)
		}
	}()
	br := bufio.NewReaderSize(cr, 256<<10)
	hb, err := readFrame(br)
	if err != nil {
		return err
	}
	hdr := &rspb.SnapshotHeader{}
	if err := proto.Unmarshal(hb, hdr); err != nil {
		return fmt.Errorf("ranges: r%d snapshot header: %w", s.rangeID, err)
	}
	if err := checkSnapshotHeader(s.rangeID, hdr); err != nil {
		return err
	}
	newSpans, err := kv.RangeDataSpans(hdr.RangeDescriptor.StartKey, hdr.RangeDescriptor.EndKey)
	if err != nil {
		return err
	}
	prefix := rangeStatePrefix(s.rangeID)
	appliedKey := replicaStateKey(s.rangeID, s.replicaID, suffixApplied)
	spans := append([]kv.Span{{Start: prefix, End: prefixEnd(prefix)},
		{Start: appliedKey, End: append(append([]byte(nil), appliedKey...), 0)}}, newSpans...)
	if old := s.desc.Load(); old != nil {
		oldSpans, err := kv.RangeDataSpans(old.StartKey, old.EndKey)
		if err != nil {
			return err
		}
		spans = append(spans, oldSpans...)
	}
	rep, err := s.eng.NewReplacement(spans...)
	if err != nil {
		return err
	}
	defer rep.Abort()
	for _, l := range hdr.Local {
		if err := rep.Set(l.Key, l.Value); err != nil {
			return err
		}
	}
	if err := rep.Set(appliedKey, encodeUint64(hdr.AppliedIndex)); err != nil {
		return err
	}
	midDone := false
	for n := 0; ; n++ {
		k, err := readFrame(br)
		if err != nil {
			return err
		}
		if len(k) == 0 {
			break
		}
		v, err := readFrame(br)
		if err != nil {
			return err
		}
		if !inSpans(k, newSpans) {
			// (Set takes any key of the replaced spans, the old data span
			// included: such a key would stay behind outside the range.)
			return fmt.Errorf("ranges: r%d snapshot: data key %x is outside the snapshot's spans %x", s.rangeID, k, newSpans)
		}
		if err := rep.Set(k, v); err != nil {
			return err
		}
		if !midDone && cr.n >= snapshotMidBytes && s.midRecover != nil {
			// Crash point snapshot-receive-mid: part of the snapshot file
			// read and written into sstables (in the engine's ingest-tmp
			// directory, removed when the engine opens), nothing ingested:
			// the replica keeps its old state and applied index. The
			// received file is complete and recorded in Dragonboat's LogDB
			// (not yet shrunk), so the restarted replica applies it again
			// from the start (as after snapshot-before-ingest).
			midDone = true
			s.midRecover()
		}
		if n%1024 == 0 {
			select {
			case <-stopc:
				return sm.ErrSnapshotStopped
			default:
			}
		}
	}
	if s.beforeIngest != nil {
		if err := s.beforeIngest(); err != nil {
			return err
		}
	}
	if err := rep.Ingest(context.Background()); err != nil {
		return err
	}
	s.applied.Store(hdr.AppliedIndex)
	if err := s.loadState(s.eng); err != nil {
		return err
	}
	if s.onLease != nil {
		s.onLease(s.rangeID, s.lease.Load())
	}
	if s.onSnapshot != nil {
		s.onSnapshot(s)
	}
	return nil
}

// checkSnapshotHeader refuses, before anything is written, a snapshot
// header that would leave the replica with state it cannot load or with
// data outside its span: a descriptor of another range, a range-local key
// of another range, no descriptor record or one of another span than the
// header's descriptor (the data span is the header's, the descriptor
// loadState loads is the record's), or a range-local value that loadState
// (or a dedup answer) cannot decode. Keep it in step with loadState.
func checkSnapshotHeader(rangeID uint64, hdr *rspb.SnapshotHeader) error {
	d := hdr.RangeDescriptor
	if d == nil {
		return fmt.Errorf("ranges: r%d snapshot without a descriptor", rangeID)
	}
	if d.RangeId != rangeID {
		return fmt.Errorf("ranges: r%d snapshot carries the descriptor of r%d", rangeID, d.RangeId)
	}
	prefix := rangeStatePrefix(rangeID)
	sawDesc := false
	for _, l := range hdr.Local {
		if !bytes.HasPrefix(l.Key, prefix) {
			return fmt.Errorf("ranges: r%d snapshot: range-local key %q is not this range's", rangeID, l.Key)
		}
		suffix := l.Key[len(prefix):]
		var err error
		switch {
		case bytes.Equal(suffix, suffixDescriptor):
			sawDesc = true
			rec := &rspb.RangeDescriptor{}
			if err = proto.Unmarshal(l.Value, rec); err == nil && (rec.RangeId != d.RangeId || !bytes.Equal(rec.StartKey, d.StartKey) || !bytes.Equal(rec.EndKey, d.EndKey)) {
				err = fmt.Errorf("r%d [%q, %q) differs from the header's r%d [%q, %q)", rec.RangeId, rec.StartKey, rec.EndKey, d.RangeId, d.StartKey, d.EndKey)
			}
		case bytes.Equal(suffix, suffixLease):
			err = proto.Unmarshal(l.Value, &rspb.Lease{})
		case bytes.Equal(suffix, suffixMaxWriteTS), bytes.Equal(suffix, suffixGCThreshold), bytes.Equal(suffix, suffixClosedTS):
			_, err = decodeTS(l.Value)
		case bytes.Equal(suffix, suffixSize), bytes.Equal(suffix, suffixFrozen):
			_, err = decodeUint64(l.Value)
		case bytes.HasPrefix(suffix, suffixDedup):
			err = proto.Unmarshal(l.Value, &rspb.RaftResult{})
		}
		if err != nil {
			return fmt.Errorf("ranges: r%d snapshot: range-local key %q: %w", rangeID, l.Key, err)
		}
	}
	if !sawDesc {
		return fmt.Errorf("ranges: r%d snapshot has no descriptor record among its range-local keys", rangeID)
	}
	return nil
}

// Close marks the replica closed; the shared engine stays open.
func (s *stateMachine) Close() error {
	s.closed.Store(true)
	return nil
}

func writeFrame(w *bufio.Writer, b []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("ranges: snapshot stream: %w", err)
	}
	if n > 1<<30 {
		return nil, fmt.Errorf("ranges: snapshot stream: frame of %d bytes", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("ranges: snapshot stream: %w", err)
	}
	return buf, nil
}
