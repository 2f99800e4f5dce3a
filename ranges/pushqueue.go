package ranges

import (
	"context"
	"sync"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/batcheval"
	"github.com/rangestore/rangestore/ranges/txnwait"
)

// The push wait queue (CockroachDB's txnwait.Queue, reduced): a pusher
// that would lose against a live transaction waits at the leaseholder of
// that transaction's record until the record changes here (an EndTxn, a
// RecoverTxn or a winning push of it applies), until the pushee could
// have expired, or at most maxPushWait, and only then is its push
// evaluated (and proposed). Without it, a losing push is a Raft proposal
// that answers WAIT, and the pusher polls with backoff: a waiter learns
// that its pushee committed only at its next poll.
//
// The wait happens before latches are taken (the pushee's EndTxn needs
// the record's latch), and decides on the applied state without them;
// the push itself is decided again, under latches, when it is evaluated.
// Pushes with force (deadlock breaking) never wait. The queue is the
// store's, keyed by transaction ID: a record's leaseholder is the only
// place its changes are applied first; a lease that moves away leaves
// waiters to their timeout.

// maxPushWait bounds one wait: a waiting transaction looks for waits-for
// cycles about this often (gateway's deadlock detection runs between
// pushes). A variable for tests.
var maxPushWait = time.Second

// pushQueue holds one channel per transaction being waited on, closed
// when its record changes.
type pushQueue struct {
	mu      sync.Mutex
	waiting map[string]chan struct{}
}

func newPushQueue() *pushQueue { return &pushQueue{waiting: map[string]chan struct{}{}} }

// watch returns the channel closed at the next change of txn id's record.
func (q *pushQueue) watch(id string) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	ch := q.waiting[id]
	if ch == nil {
		ch = make(chan struct{})
		q.waiting[id] = ch
	}
	return ch
}

// changed wakes the waiters on txn id.
func (q *pushQueue) changed(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ch := q.waiting[id]; ch != nil {
		close(ch)
		delete(q.waiting, id)
	}
}

// pushWait is how long a push decided as d at now waits (0: it does not):
// a losing push waits until its pushee could have expired (then a push
// aborts it), at most maxPushWait.
func pushWait(d txnwait.PushDecision, now txnwait.Timestamp, threshold time.Duration) time.Duration {
	if d.Action != txnwait.PushWait {
		return 0
	}
	expires := d.Pushee.LastActive().WallTime + int64(threshold) - now.WallTime
	return min(maxPushWait, max(time.Duration(expires), 0)+10*time.Millisecond)
}

// singlePush returns the batch's push if it is a batch of one push
// without force, else nil.
func singlePush(req *rspb.RangeRequest) *rspb.PushTxnRequest {
	if len(req.Requests) != 1 {
		return nil
	}
	if p := req.Requests[0].GetPushTxn(); p != nil && !p.Force && p.Pushee != nil && len(p.Pushee.Id) > 0 {
		return p
	}
	return nil
}

// pushWaitEnd is why a wait in the push queue ended.
type pushWaitEnd int

const (
	pushNoWait        pushWaitEnd = iota // the push would not lose: no wait
	pushWoken                            // the pushee's record changed
	pushWaitTimeout                      // the pushee may have expired, or maxPushWait
	pushWaitCancelled                    // the caller gave up
)

// waitForPush waits, before a push is evaluated, while it would lose
// (see the comment on the queue). It returns how long it waited and why
// it stopped.
func (r *Replica) waitForPush(ctx context.Context, p *rspb.PushTxnRequest) (time.Duration, pushWaitEnd) {
	q := r.store.pushes
	ch := q.watch(string(p.Pushee.Id)) // before deciding: no change is missed
	d, _, now, err := batcheval.DecidePushAt(r.store.eng, txnEnv{r: r, desc: r.desc()}, p)
	if err != nil {
		return 0, pushNoWait
	}
	wait := pushWait(d, txnwait.Timestamp{WallTime: now.WallTime, Logical: now.Logical}, txnwait.DefaultLivenessThreshold)
	if wait <= 0 {
		return 0, pushNoWait
	}
	ts := r.store.cfg.TimeSource
	start := ts.Now()
	t := ts.NewTimer(wait)
	defer t.Stop()
	end := pushWoken
	select {
	case <-ch:
	case <-t.C():
		end = pushWaitTimeout
	case <-ctx.Done():
		end = pushWaitCancelled
	}
	return ts.Since(start), end
}

// notePushees wakes the waiters on the transactions whose records a
// write batch that applied here changed.
func (r *Replica) notePushees(req *rspb.RangeRequest) {
	for _, ru := range req.Requests {
		var id []byte
		switch {
		case ru.GetEndTxn() != nil:
			id = ru.GetEndTxn().GetTxn().GetMeta().GetId()
		case ru.GetRecoverTxn() != nil:
			id = ru.GetRecoverTxn().GetTxn().GetMeta().GetId()
		case ru.GetPushTxn() != nil:
			id = ru.GetPushTxn().GetPushee().GetId()
		}
		if len(id) > 0 {
			r.store.pushes.changed(string(id))
		}
	}
}
