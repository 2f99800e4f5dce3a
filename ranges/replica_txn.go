package ranges

import (
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/batcheval"
	"github.com/rangestore/rangestore/ranges/txnwait"
)

// Transactions at the leaseholder (batcheval/txn.go has the model).
//
// A transactional read runs at the transaction's read timestamp and enters
// the timestamp cache (as the transaction's). A transactional write runs at
// the transaction's write timestamp, pushed above the timestamp cache (every
// reader, the transaction itself included: CockroachDB skips the writer's
// own reads, and with that skip TestBankSmoke created money here in 3 of 6
// runs, 0 of 12 without it; the cause is not found yet), the closed
// timestamp and the lease start, and above a newer committed value of a
// key it writes (kv's WriteTooOld: the batch is evaluated again higher, at
// most maxWriteTooOldRetries times); the response's txn carries the
// timestamp it wrote at, which the coordinator must refresh its reads to
// before it commits. Unlike a non-transactional write it is not placed
// above the range's max write timestamp: per-key WriteTooOld checks keep
// its intents above every committed version, and its resolution (EndTxn,
// ResolveIntent) is proposed at or above the commit timestamp
// (Command.MinWriteTimestamp), which keeps the max write timestamp above
// every committed version.

// maxWriteTooOldRetries bounds the evaluations of one transactional write
// that keeps meeting newer committed values.
const maxWriteTooOldRetries = 5

// txnEnv is the leaseholder's batcheval.TxnEnv: its clock, its timestamp
// cache's transaction markers, and the range's span.
type txnEnv struct {
	r    *Replica
	desc *rspb.RangeDescriptor
}

func (e txnEnv) Now() kv.Timestamp { return e.r.store.cfg.Clock.Now() }

// RecordCheck: a tombstone marker means a pusher aborted the transaction
// before it had a record; a transaction that started at or below the
// timestamp cache's low water (a new lease, a split, an overflow) may have
// been pushed by a previous leaseholder, so its record can no longer be
// created either.
func (e txnEnv) RecordCheck(m *rspb.TxnMeta) txnwait.RecordCheck {
	if _, ok := e.r.tscache.explicit(batcheval.TombstoneKey(m.Key, m.Id)); ok {
		return txnwait.RecordTombstone
	}
	start := TSFromProto(m.MinTimestamp)
	if start.IsEmpty() {
		start = TSFromProto(m.WriteTimestamp)
	}
	if start.LessEq(e.r.tscache.lowWater()) {
		return txnwait.RecordBelowLowWater
	}
	return txnwait.RecordCreatable
}

// PushedTo is the push marker, or the low water (a previous leaseholder's
// pushes are forgotten, but none was above it).
func (e txnEnv) PushedTo(m *rspb.TxnMeta) kv.Timestamp {
	return e.r.tscache.max(span{start: batcheval.PushMarkerKey(m.Key, m.Id)})
}

func (e txnEnv) Mark(key []byte, ts kv.Timestamp) { e.r.tscache.add(span{start: key}, ts, "") }

func (e txnEnv) RangeSpan() (start, end []byte) { return e.desc.StartKey, e.desc.EndKey }

// txnID is the timestamp cache's name of the batch's transaction ("" for
// none).
func txnID(t *rspb.Transaction) string {
	if t == nil {
		return ""
	}
	return string(t.Meta.Id)
}

// evalTxnWrite evaluates a write batch into a fresh engine batch at ts,
// again higher while a transactional write meets newer committed values.
// It returns the batch (the caller closes it), the responses and the
// timestamp it evaluated at.
func (r *Replica) evalTxnWrite(req *rspb.RangeRequest, ts kv.Timestamp, env txnEnv) (*kv.Batch, []*rspb.ResponseUnion, kv.Timestamp, error) {
	for attempt := 0; ; attempt++ {
		b := r.store.eng.NewBatch()
		resps, err := batcheval.EvalWriteTxn(b, req.Requests, ts, r.store.cfg.Limits.responseBudget(), req.Txn, env)
		var wto *kv.WriteTooOldError
		if err == nil {
			return b, resps, ts, nil
		}
		_ = b.Close()
		if req.Txn == nil || !errors.As(err, &wto) || attempt >= maxWriteTooOldRetries {
			return nil, nil, ts, err
		}
		if ts.Less(wto.ActualTimestamp) {
			ts = wto.ActualTimestamp
		}
	}
}

// withWriteTS returns a copy of txn writing at ts.
func withWriteTS(txn *rspb.Transaction, ts kv.Timestamp) *rspb.Transaction {
	if txn == nil {
		return nil
	}
	out := cloneTxn(txn)
	out.Meta.WriteTimestamp = TSToProto(ts)
	return out
}

func cloneTxn(t *rspb.Transaction) *rspb.Transaction { return proto.Clone(t).(*rspb.Transaction) }

// dedupTxn is the transaction of a write answered from its dedup record:
// the header, writing at the timestamp the recorded attempt applied at
// (its coordinator must learn a push even from a retry's answer).
func dedupTxn(req *rspb.RangeRequest, res *rspb.RaftResult) *rspb.Transaction {
	if req.Txn == nil || res.Error != nil {
		return nil
	}
	return withWriteTS(req.Txn, TSFromProto(res.Timestamp))
}
