package ranges

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Closed timestamps (doc.go, "Closed timestamps"): a leaseholder promises
// that no later write of its range will be at or below a timestamp that
// trails its clock by StoreConfig.ClosedTimestampTarget. Writes carry the
// promise in the Raft log (WriteCommand.closed_timestamp); idle ranges get
// it from the side transport (closedTSLoop). A replica whose closed
// timestamp is T has applied every write at or below T, so it can serve
// reads at T or below from local state, without the lease.

const (
	// DefaultClosedTimestampTarget is how far the closed timestamp trails
	// the leaseholder's clock (StoreConfig.ClosedTimestampTarget).
	DefaultClosedTimestampTarget = 3 * time.Second
	// DefaultClosedTimestampInterval is how often the side transport
	// publishes the leaseholders' closed timestamps.
	DefaultClosedTimestampInterval = 200 * time.Millisecond
)

// closedTracker is the leaseholder's side: what it has promised (the
// highest closed timestamp it handed out, in a write or through the side
// transport) and the writes it has evaluated that have not applied yet
// (their timestamps). A promise never covers a write in flight (it stays
// below the lowest of them), and a write admitted after a promise gets a
// timestamp above it. promised never goes down, across leases too.
type closedTracker struct {
	mu       sync.Mutex
	promised kv.Timestamp
	inflight map[uint64]kv.Timestamp
	next     uint64
}

// admit registers a write that would commit at floor: its timestamp is
// floor, moved above the promise if it is at or below it (bumped reports
// that). It returns the closed timestamp the write carries: the highest of
// the promise and closeAt that stays below every write in flight (this one
// included), which becomes the new promise. The caller calls done(tok)
// once the write applied or can no longer apply.
func (t *closedTracker) admit(floor, closeAt kv.Timestamp) (tok uint64, ts, closed kv.Timestamp, bumped bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ts = floor
	if ts.LessEq(t.promised) {
		ts, bumped = t.promised.Next(), true
	}
	if t.inflight == nil {
		t.inflight = map[uint64]kv.Timestamp{}
	}
	t.next++
	tok = t.next
	t.inflight[tok] = ts
	return tok, ts, t.closeLocked(closeAt), bumped
}

// closeLocked raises the promise towards closeAt, staying below every
// write in flight, and returns it.
func (t *closedTracker) closeLocked(closeAt kv.Timestamp) kv.Timestamp {
	c := closeAt
	for _, w := range t.inflight {
		if p := w.Prev(); p.Less(c) {
			c = p
		}
	}
	if t.promised.Less(c) {
		t.promised = c
	}
	return t.promised
}

// done forgets an admitted write.
func (t *closedTracker) done(tok uint64) {
	t.mu.Lock()
	delete(t.inflight, tok)
	t.mu.Unlock()
}

// close is the side transport's promise: the closed timestamp and the
// applied index after which it holds. applied is read after the promise
// is made: every write at or below it has left the tracker, which happens
// only after it applied here, so its log index is at or below the index
// read; every write admitted later is above the promise.
func (t *closedTracker) close(closeAt kv.Timestamp, applied *atomic.Uint64) (kv.Timestamp, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.closeLocked(closeAt)
	return c, applied.Load()
}

// Bounds of the closed timestamp target (ValidateClosedTimestampTarget).
const (
	MinClosedTimestampTarget = 50 * time.Millisecond
	MaxClosedTimestampTarget = time.Hour
)

// ValidateClosedTimestampTarget checks a closed timestamp target (the
// cluster setting closed_timestamp_target, the start flag): between
// MinClosedTimestampTarget and MaxClosedTimestampTarget. Below, every
// write races the promise and is pushed; above, follower reads are
// useless.
func ValidateClosedTimestampTarget(d time.Duration) error {
	if d < MinClosedTimestampTarget || d > MaxClosedTimestampTarget {
		return fmt.Errorf("%v: must be between %v and %v", d, MinClosedTimestampTarget, MaxClosedTimestampTarget)
	}
	return nil
}

// ClosedTimestampTarget is the target in force: how far behind its clock
// a leaseholder closes timestamps here.
func (s *Store) ClosedTimestampTarget() time.Duration {
	return time.Duration(s.closedTargetNanos.Load())
}

// SetClosedTimestampTarget changes the target in force (the node applies
// the cluster setting): the next promises of this store's leases trail
// its clock by d. Lowering it closes more at the next round; raising it
// only stops the promises rising until the clock catches up (a promise
// never goes down). It reports whether the target changed; d must pass
// ValidateClosedTimestampTarget (else nothing changes).
func (s *Store) SetClosedTimestampTarget(d time.Duration) (bool, error) {
	if err := ValidateClosedTimestampTarget(d); err != nil {
		return false, err
	}
	return s.closedTargetNanos.Swap(int64(d)) != int64(d), nil
}

// closedTarget is the timestamp a leaseholder may close now: its clock
// minus the target.
func (s *Store) closedTarget(now kv.Timestamp) kv.Timestamp {
	return kv.Timestamp{WallTime: now.WallTime - s.closedTargetNanos.Load()}
}

// ClosedTimestamp is the local replica's closed timestamp of a range (the
// empty timestamp if it has none, or there is no replica here).
func (s *Store) ClosedTimestamp(rangeID uint64) kv.Timestamp {
	if r := s.replica(rangeID); r != nil {
		return r.sm.closedTS()
	}
	return kv.Timestamp{}
}

// ReplicaReads reports how many reads the local replica of a range served
// under its lease and as follower reads (below its closed timestamp).
func (s *Store) ReplicaReads(rangeID uint64) (lease, follower int64) {
	if r := s.replica(rangeID); r != nil {
		return r.leaseReads.Load(), r.followerReads.Load()
	}
	return 0, 0
}

// closedTS is the replica's closed timestamp: the highest of what applied
// writes carried (replicated) and what the side transport brought
// (adopted, in memory only).
func (s *stateMachine) closedTS() kv.Timestamp {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.logClosed.Less(s.sideClosed) {
		return s.sideClosed
	}
	return s.logClosed
}

// closedWaiter returns a channel closed the next time the replica's
// closed timestamp rises (or its descriptor or lease changes).
func (s *stateMachine) closedWaiter() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closedCh == nil {
		s.closedCh = make(chan struct{})
	}
	return s.closedCh
}

// notifyClosedLocked wakes the waiters (s.mu held).
func (s *stateMachine) notifyClosedLocked() {
	if s.closedCh != nil {
		close(s.closedCh)
		s.closedCh = nil
	}
}

// sideClosedUpdate is a side-transport promise not adopted yet (the
// replica has not applied its index, or not the lease it names).
type sideClosedUpdate struct {
	ts       kv.Timestamp
	index    uint64
	leaseSeq uint64
	from     uint64 // the sending node: the lease's holder
}

// offerClosed takes a side-transport promise: adopted at once if the
// replica applied its index under the lease it names, else kept (the
// newest one) and tried again after each applied batch.
func (s *stateMachine) offerClosed(u sideClosedUpdate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.adoptLocked(u) {
		s.pendingClosed = u // the newest replaces an older one
	}
}

// adoptLocked adopts u if it applies now (s.mu held); the side transport
// rule: the replica has applied u.index and its lease is u's, held by the
// node that sent it.
func (s *stateMachine) adoptLocked(u sideClosedUpdate) bool {
	if l := s.lease.Load(); u.ts.IsEmpty() || s.applied.Load() < u.index || l.Sequence != u.leaseSeq || l.NodeId != u.from {
		return false
	}
	if s.sideClosed.Less(u.ts) {
		s.sideClosed = u.ts
		s.notifyClosedLocked()
	}
	return true
}

// retryPendingLocked adopts the kept promise once it applies; one for a
// lease no longer current is dropped (s.mu held).
func (s *stateMachine) retryPendingLocked() {
	u := s.pendingClosed
	if u.ts.IsEmpty() {
		return
	}
	if s.adoptLocked(u) || s.lease.Load().Sequence > u.leaseSeq {
		s.pendingClosed = sideClosedUpdate{}
	}
}

// closedTSLoop is the side transport: every ClosedTimestampInterval each
// range whose valid lease this node holds closes what it can (its clock
// minus the target, below its writes in flight) and the promises go, one
// message per node, to the nodes with other replicas of those ranges. The
// local replica adopts its own promise at once. It also refreshes the lag
// gauge. One goroutine per peer node sends (closedSendLoop).
func (s *Store) closedTSLoop(ctx context.Context, interval time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.cfg.TimeSource.After(interval):
		}
		s.publishClosed()
	}
}

// closedLagOf is how far a replica's closed timestamp trails now (from
// the store's start if it has none yet).
func (s *Store) closedLagOf(r *Replica, now kv.Timestamp) time.Duration {
	if c := r.sm.closedTS(); !c.IsEmpty() {
		return time.Duration(now.WallTime - c.WallTime)
	}
	return time.Duration(now.WallTime - s.startTS.WallTime)
}

// ClosedLag is how far the closed timestamp of this node's most behind
// replica trails the node's clock now (a replica with none yet counts from
// the store's start), and that replica's range (0, 0: no replica). It is
// what the lag gauge shows, computed afresh: a replica cut off from its
// leaseholder, or whose leaseholder stopped closing, shows a growing lag.
func (s *Store) ClosedLag() (lag time.Duration, rangeID uint64) {
	now := s.cfg.Clock.Now()
	for _, r := range s.replicaList() {
		if r.sm.desc.Load() == nil || r.sm.merged.Load() {
			continue
		}
		if l := s.closedLagOf(r, now); rangeID == 0 || l > lag {
			lag, rangeID = l, r.rangeID
		}
	}
	return lag, rangeID
}

// publishClosed is one round of the side transport.
func (s *Store) publishClosed() {
	me := s.NodeID()
	if me == 0 {
		return
	}
	now := s.cfg.Clock.Now()
	closeAt := s.closedTarget(now)
	byNode := map[uint64][]*rspb.ClosedTimestampEntry{}
	var maxLag time.Duration
	for _, r := range s.replicaList() {
		m := r.sm
		d := m.desc.Load()
		if d == nil || m.merged.Load() {
			continue
		}
		maxLag = max(maxLag, s.closedLagOf(r, now))
		l := m.lease.Load()
		if l.NodeId != me || l.ReplicaId != r.replicaID || m.frozen.Load() != 0 || r.transferring.Load() != 0 ||
			s.leaseStatus(l, now) != leases.Valid {
			continue
		}
		c, idx := r.closed.close(closeAt, &m.applied)
		u := sideClosedUpdate{ts: c, index: idx, leaseSeq: l.Sequence, from: me}
		m.offerClosed(u)
		e := &rspb.ClosedTimestampEntry{RangeId: r.rangeID, LeaseSequence: l.Sequence, ClosedTimestamp: TSToProto(c), AppliedIndex: idx}
		for _, rep := range d.Replicas {
			if rep.NodeId != me {
				byNode[rep.NodeId] = append(byNode[rep.NodeId], e)
			}
		}
	}
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.closedLag.Set(maxLag.Seconds())
	}
	if s.getSender() == nil {
		return
	}
	for node, entries := range byNode {
		s.closedPeer(node).offer(&rspb.ClosedTimestampUpdate{NodeId: me, Entries: entries})
	}
}

// closedPeerQueue holds the newest side-transport message for one peer
// node; its sender goroutine (closedSendLoop, owned by the store's
// stopper) sends it, so a slow or unreachable peer delays only its own
// messages, and a message it could not take in time is replaced by the
// next round's (each carries every range's current promise).
type closedPeerQueue struct {
	ch chan *rspb.ClosedTimestampUpdate
}

// offer replaces a message not yet taken by the sender.
func (q *closedPeerQueue) offer(u *rspb.ClosedTimestampUpdate) {
	for {
		select {
		case q.ch <- u:
			return
		default:
		}
		select {
		case <-q.ch:
		default:
		}
	}
}

// closedPeer returns the queue of a peer node, starting its sender the
// first time.
func (s *Store) closedPeer(node uint64) *closedPeerQueue {
	if v, ok := s.closedPeers.Load(node); ok {
		return v.(*closedPeerQueue)
	}
	q := &closedPeerQueue{ch: make(chan *rspb.ClosedTimestampUpdate, 1)}
	if v, loaded := s.closedPeers.LoadOrStore(node, q); loaded {
		return v.(*closedPeerQueue)
	}
	s.tasks.run(func(ctx context.Context) { s.closedSendLoop(ctx, node, q) })
	return q
}

// closedSendLoop sends a peer node's side-transport messages as they come.
func (s *Store) closedSendLoop(ctx context.Context, node uint64, q *closedPeerQueue) {
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-q.ch:
			if snd := s.getSender(); snd != nil {
				req := &rspb.RangeRequest{Admin: &rspb.RangeRequest_AdminClosedTimestamps{AdminClosedTimestamps: u}}
				// A lost message is replaced by the next round's.
				_, _ = snd.SendToNode(ctx, node, req)
			}
		}
	}
}

// receiveClosed hands a side-transport message to the local replicas.
func (s *Store) receiveClosed(u *rspb.ClosedTimestampUpdate) *rspb.RangeResponse {
	for _, e := range u.Entries {
		if r := s.replica(e.RangeId); r != nil && !r.sm.merged.Load() {
			r.sm.offerClosed(sideClosedUpdate{ts: TSFromProto(e.ClosedTimestamp), index: e.AppliedIndex, leaseSeq: e.LeaseSequence, from: u.NodeId})
		}
	}
	return &rspb.RangeResponse{}
}
