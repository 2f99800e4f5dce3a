package gateway

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// Conflicts with transactions, as the router meets them.
//
// A replica that finds intents of other transactions in a request's way
// answers WRITE_INTENT listing them, and applies nothing. The router then
// pushes each conflicting transaction at its record (PushTxn to the
// intent's anchor key): a read pushes the writer's timestamp above its own
// read timestamp, a write aborts the writer. A push that wins is followed
// by the resolution of the intents met (ResolveIntent: committed, removed,
// or moved above the reader), and the request is sent again, as the same
// command. A push that loses (the pushee is live and does not rank below
// the pusher) is retried with backoff: the request waits for the pushee to
// finish or expire (a coordinator that stopped heartbeating is aborted by
// the next push after the liveness threshold, 5 s).
//
// The wait: a push that would lose waits first at the leaseholder of the
// pushee's record (ranges/pushqueue.go) until the record changes, the
// pushee could have expired, or 1 s; a push that still loses is retried
// here after a short backoff.
//
// Deadlocks. Each
// coordinator's heartbeat records in its transaction's record what it
// waits on (Transaction.waiting_on): the edges of the waits-for graph. A
// transaction that has waited deadlockDelay on a pushee with a lower ID
// follows those edges from the pushee (QueryTxn, at most maxCycleHops);
// if they lead back to itself it forces the push, aborting the pushee.
// Around any cycle some edge goes from a higher ID to a lower one, so
// every cycle is broken, deterministically, about a heartbeat interval
// after it closes; a transaction merely waiting on a slow one (no cycle)
// is never forced. A non-transactional request holds nothing while it
// waits, so it is never in a cycle and never forces.

// deadlockDelay is how long a transaction waits on a live pushee before
// it looks for a waits-for cycle through it.
const deadlockDelay = time.Second

// maxCycleHops bounds the records a cycle search reads.
const maxCycleHops = 8

// pushBackoff bounds the wait between lost pushes.
const (
	minPushBackoff = 10 * time.Millisecond
	maxPushBackoff = 200 * time.Millisecond
)

// txnSend is the transaction a routed batch runs in (set in its context by
// the coordinator): its header, and the highest write timestamp the ranges
// answered with.
type txnSend struct {
	txn *rspb.Transaction
	// onWait, if set, is told what the batch waits on (nil: nothing now).
	onWait func(w *waitInfo)
	// aborted, if set, reports whether the transaction was found aborted
	// meanwhile (a deadlock victim, or expired): a waiting request then
	// stops waiting.
	aborted func() bool

	mu      sync.Mutex
	writeTS kv.Timestamp
}

// waitInfo is what a request waits on: a transaction it could not push,
// at some keys (internal), since a time.
type waitInfo struct {
	pushee *rspb.TxnMeta
	keys   [][]byte
	since  time.Time
}

type txnSendKey struct{}

func withTxnSend(ctx context.Context, t *txnSend) context.Context {
	return context.WithValue(ctx, txnSendKey{}, t)
}

func txnSendFrom(ctx context.Context) *txnSend {
	t, _ := ctx.Value(txnSendKey{}).(*txnSend)
	return t
}

// observe notes the transaction as a range answered with it.
func (t *txnSend) observe(resp *rspb.Transaction) {
	if t == nil || resp == nil || resp.Meta == nil {
		return
	}
	ts := ranges.TSFromProto(resp.Meta.WriteTimestamp)
	t.mu.Lock()
	if t.writeTS.Less(ts) {
		t.writeTS = ts
	}
	t.mu.Unlock()
}

// conflictWait is the state of one request's waiting on intents.
type conflictWait struct {
	start   time.Time
	backoff time.Duration
}

// handleIntents pushes the transactions of the intents a request met
// (resp is the replica's WRITE_INTENT answer) and resolves the intents of
// those it pushed. It returns nil when the request should be sent again
// (at once if something was resolved, after a backoff if every push
// lost), or the error that ends the request.
func (r *Router) handleIntents(ctx context.Context, req *rspb.RangeRequest, resp *rspb.RangeResponse, cw *conflictWait) error {
	write := !ranges.IsReadOnly(req.Requests)
	readTS := ranges.TSFromProto(resp.Timestamp)
	if req.Txn != nil {
		readTS = ranges.TSFromProto(req.Txn.ReadTimestamp)
	}
	if readTS.IsEmpty() && r.clock != nil {
		readTS = r.clock.Now()
	}
	if cw.start.IsZero() {
		cw.start, cw.backoff = time.Now(), minPushBackoff
	}
	var pusher *rspb.Transaction
	if req.Txn != nil {
		pusher = req.Txn
	}
	byTxn := map[string][]*rspb.Intent{}
	var order []string
	for _, in := range resp.Error.Intents {
		if in.GetTxn() == nil || len(in.Txn.Key) == 0 {
			return &RangeError{E: resp.Error}
		}
		id := string(in.Txn.Id)
		if byTxn[id] == nil {
			order = append(order, id)
		}
		byTxn[id] = append(byTxn[id], in)
	}
	resolvedAny := false
	for _, id := range order {
		intents := byTxn[id]
		pushee := intents[0].Txn
		typ := rspb.PushType_PUSH_TIMESTAMP
		if write {
			typ = rspb.PushType_PUSH_ABORT
		}
		force := false
		if pusher != nil && time.Since(cw.start) >= deadlockDelay && bytes.Compare(pusher.Meta.Id, pushee.Id) > 0 {
			force = r.waitsOn(ctx, pushee, pusher.Meta.Id)
		}
		push := &rspb.PushTxnRequest{Key: pushee.Key, Pusher: pusher, Pushee: pushee, PushTo: ranges.TSToProto(readTS.Next()),
			PushType: typ, Force: force}
		if r.clock != nil {
			push.Now = ranges.TSToProto(r.clock.Now())
		}
		out, err := r.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_PushTxn{PushTxn: push}}})
		if err != nil {
			return fmt.Errorf("pushing txn %x for intents on %s: %w", pushee.Id, prettyIntents(intents), err)
		}
		p := out[0].GetPushTxn()
		if p.GetNeedsRecovery() {
			// A STAGING pushee: only recovery may finish it.
			if err := r.recoverAndResolve(ctx, p.Pushee, intents); err != nil {
				return err
			}
			resolvedAny = true
			continue
		}
		if !p.GetPushed() {
			continue
		}
		if r.metrics != nil {
			r.metrics.txnPushes.Inc()
		}
		if err := r.resolveIntents(ctx, p.Pushee, intents); err != nil {
			return err
		}
		resolvedAny = true
	}
	ts := txnSendFrom(ctx)
	if resolvedAny {
		if ts != nil && ts.onWait != nil {
			ts.onWait(nil)
		}
		return nil
	}
	if ts != nil && ts.onWait != nil {
		first := byTxn[order[0]]
		w := &waitInfo{pushee: first[0].Txn, since: cw.start}
		for _, in := range first {
			w.keys = append(w.keys, in.Key)
		}
		ts.onWait(w)
	}
	// Every push lost: wait, then try the request again (the pushee may
	// have finished meanwhile), unless this transaction was aborted while
	// it waited (say, as the victim of a deadlock).
	if ts != nil && ts.aborted != nil && ts.aborted() {
		return &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_TXN_ABORTED, Txn: ts.txn,
			Message: fmt.Sprintf("txn %x was aborted while it waited on conflicting transactions (%s): a deadlock victim, or it expired", ts.txn.Meta.Id, resp.Error.Message)}}
	}
	select {
	case <-ctx.Done():
		return &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_WRITE_INTENT, Intents: resp.Error.Intents,
			Message: fmt.Sprintf("gave up after %v waiting on conflicting transactions (%s): %v", time.Since(cw.start).Round(time.Millisecond), resp.Error.Message, ctx.Err())}}
	case <-time.After(cw.backoff):
	}
	if cw.backoff *= 2; cw.backoff > maxPushBackoff {
		cw.backoff = maxPushBackoff
	}
	return nil
}

// recoverAndResolve recovers the STAGING transaction staging whose
// intents a request met (recovery.go), then resolves them and the rest of
// its intents. A record that moved on (STOP) is left to the request's next
// attempt, which meets it again.
func (r *Router) recoverAndResolve(ctx context.Context, staging *rspb.Transaction, intents []*rspb.Intent) error {
	res, err := r.recoverTxn(ctx, staging)
	if err != nil {
		return err
	}
	rec := res.GetTxn()
	if !isFinal(rec) || len(rec.GetMeta().GetId()) == 0 {
		return nil
	}
	if err := r.resolveIntents(ctx, rec, intents); err != nil {
		return err
	}
	if !res.ResolvedAll {
		if err := r.resolveTxn(ctx, rec, rec.LockSpans); err != nil {
			r.log.Warn("txn recovery: resolving the rest of its intents failed; readers that meet them resolve them", "txn", fmt.Sprintf("%x", rec.Meta.Id), "err", err)
		}
	}
	return nil
}

// resolveIntents resolves intents of the pushed transaction pushee (its
// record after the push): committed, aborted, or pushed above a reader.
func (r *Router) resolveIntents(ctx context.Context, pushee *rspb.Transaction, intents []*rspb.Intent) error {
	reqs := make([]*rspb.RequestUnion, 0, len(intents))
	for _, in := range intents {
		meta := pushee.Meta
		if pushee.Status == rspb.TransactionStatus_TXN_ABORTED {
			// Whatever epoch the intent was written in, it goes.
			meta = in.Txn
		}
		reqs = append(reqs, &rspb.RequestUnion{Value: &rspb.RequestUnion_ResolveIntent{ResolveIntent: &rspb.ResolveIntentRequest{
			Key: in.Key, Txn: meta, Status: pushee.Status}}})
	}
	if _, err := r.Send(ctx, reqs); err != nil {
		return fmt.Errorf("resolving intents of txn %x on %s: %w", pushee.Meta.GetId(), prettyIntents(intents), err)
	}
	return nil
}

func prettyIntents(intents []*rspb.Intent) string {
	var b bytes.Buffer
	for i, in := range intents {
		if i == 3 {
			fmt.Fprintf(&b, ", … (%d)", len(intents))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(keys.Pretty(in.Key))
	}
	return b.String()
}

// waitsOn reports whether the transaction from waits (through the
// waiting_on edges of the records, at most maxCycleHops of them) on the
// transaction id.
func (r *Router) waitsOn(ctx context.Context, from *rspb.TxnMeta, id []byte) bool {
	cur := from
	for hop := 0; hop < maxCycleHops && cur != nil && len(cur.Key) > 0; hop++ {
		q := &rspb.QueryTxnRequest{Key: cur.Key, Txn: cur}
		out, err := r.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_QueryTxn{QueryTxn: q}}})
		if err != nil {
			return false
		}
		rec := out[0].GetQueryTxn()
		if !rec.GetFound() || rec.Txn.GetStatus() != rspb.TransactionStatus_TXN_PENDING {
			return false
		}
		next := rec.Txn.GetWaitingOn()
		if next == nil {
			return false
		}
		if bytes.Equal(next.Id, id) {
			return true
		}
		cur = next
	}
	return false
}
