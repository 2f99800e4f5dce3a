package batcheval

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/txnwait"
)

// Transactions as commands see them.
//
// A request of a transaction (Args.Txn set) reads at the batch timestamp
// and sees the transaction's own intents; it writes intents
// (kv.MVCCPut with the transaction) at the batch timestamp, which the
// replica sets to the transaction's write timestamp, pushed if need be.
//
// A transaction's record is a raw key addressed by its anchor key
// (RecordKey), so it lives on whichever range holds the anchor. The
// leaseholder's timestamp cache holds two markers per transaction, keys
// addressed by the anchor too: a push marker (PushMarkerKey: the
// transaction never commits at or below its timestamp; pushes of a PENDING
// transaction's timestamp go there, not into the record) and a tombstone
// (TombstoneKey: the record can never be created, because a pusher aborted
// the transaction before it had one). TxnEnv reads and writes them.

// TxnEnv is what the transaction record commands need from the
// leaseholder besides the engine: its clock and its timestamp cache.
type TxnEnv interface {
	// Now is the leaseholder's clock.
	Now() kv.Timestamp
	// RecordCheck says whether the record of meta may still be created.
	RecordCheck(meta *rspb.TxnMeta) txnwait.RecordCheck
	// PushedTo is the push marker of meta (zero: none): the lowest
	// timestamp it may commit at.
	PushedTo(meta *rspb.TxnMeta) kv.Timestamp
	// Mark records ts on a marker key in the timestamp cache.
	Mark(key []byte, ts kv.Timestamp)
	// RangeSpan is the range's span: an EndTxn resolves the intents in it.
	RangeSpan() (start, end []byte)
}

var (
	recordSuffix    = []byte("txn-record/")
	pushSuffix      = []byte("txn-push/")
	tombstoneSuffix = []byte("txn-tomb/")
)

// RecordKey is the engine key of the record of the transaction id
// anchored at key.
func RecordKey(anchor, id []byte) []byte {
	return kv.AddressedKey(anchor, append(append([]byte(nil), recordSuffix...), id...))
}

// PushMarkerKey and TombstoneKey are the timestamp-cache keys of a
// transaction's markers (see the package comment on transactions).
func PushMarkerKey(anchor, id []byte) []byte {
	return kv.AddressedKey(anchor, append(append([]byte(nil), pushSuffix...), id...))
}

// TombstoneKey: see PushMarkerKey.
func TombstoneKey(anchor, id []byte) []byte {
	return kv.AddressedKey(anchor, append(append([]byte(nil), tombstoneSuffix...), id...))
}

// TxnIDLen is the length of a transaction ID.
const TxnIDLen = 16

// checkTxnMeta validates the identity of a transaction in a request.
func checkTxnMeta(what string, m *rspb.TxnMeta) error {
	switch {
	case m == nil:
		return invalidf("%s: the transaction is missing", what)
	case len(m.Id) != TxnIDLen:
		return invalidf("%s: transaction id must be %d bytes (got %d)", what, TxnIDLen, len(m.Id))
	case len(m.Key) == 0:
		return invalidf("%s: transaction %x has no anchor key", what, m.Id)
	case m.Epoch < 0:
		return invalidf("%s: transaction %x has a negative epoch", what, m.Id)
	case TSFromProto(m.WriteTimestamp).IsEmpty():
		return invalidf("%s: transaction %x has no write timestamp", what, m.Id)
	}
	return nil
}

// checkTxnMetaNoAnchor is checkTxnMeta for a transaction that may not
// have written yet (no anchor key: a request header, a pusher).
func checkTxnMetaNoAnchor(what string, m *rspb.TxnMeta) error {
	if m != nil && len(m.Key) == 0 {
		c := proto.Clone(m).(*rspb.TxnMeta)
		c.Key = []byte{0}
		return checkTxnMeta(what, c)
	}
	return checkTxnMeta(what, m)
}

// CheckTxn validates a request header's transaction.
func CheckTxn(t *rspb.Transaction) error {
	if t == nil {
		return nil
	}
	if err := checkTxnMetaNoAnchor("txn", t.Meta); err != nil {
		return err
	}
	if TSFromProto(t.ReadTimestamp).IsEmpty() || TSFromProto(t.Meta.WriteTimestamp).Less(TSFromProto(t.ReadTimestamp)) {
		return invalidf("txn %x: read timestamp %s must be set and not above the write timestamp %s",
			t.Meta.Id, TSFromProto(t.ReadTimestamp), TSFromProto(t.Meta.WriteTimestamp))
	}
	if t.Status != rspb.TransactionStatus_TXN_PENDING {
		return Errorf(rspb.RangeError_TXN_ABORTED, "txn %x is %s: it cannot run requests", t.Meta.Id, t.Status)
	}
	return nil
}

// intentTxn is the transaction as kv stores it with each intent written at
// the batch timestamp: its ID, epoch and meta (with that write timestamp).
func (a *Args) intentTxn() *kv.IntentTxn {
	if a.Txn == nil {
		return nil
	}
	if a.itxn == nil {
		m := proto.Clone(a.Txn.Meta).(*rspb.TxnMeta)
		m.WriteTimestamp = TSToProto(a.Timestamp)
		meta, err := proto.Marshal(m)
		if err != nil {
			panic(fmt.Sprintf("batcheval: marshal TxnMeta: %v", err)) // a valid message always marshals
		}
		a.itxn = &kv.IntentTxn{ID: m.Id, Epoch: m.Epoch, Meta: meta}
	}
	return a.itxn
}

// getForWrite reads key's newest value inside a write batch: what a
// conditional write decides on. Any other transaction's intent conflicts.
func (a *Args) getForWrite(key []byte) (kv.KeyValue, bool, error) {
	return kv.MVCCGetTxn(a.Batch, key, kv.MaxTimestamp, a.intentTxn())
}

// get reads key at ts (its own intents visible to a transaction, within
// its uncertainty limit).
func (a *Args) get(r kv.Reader, key []byte, ts kv.Timestamp) (kv.KeyValue, bool, error) {
	return kv.MVCCGetUncertain(r, key, ts, a.uncertaintyLimit(ts), a.intentTxn())
}

// uncertaintyLimit is the uncertainty limit of a transaction's read at ts
// (empty: none, as for a non-transactional read, which the leaseholder
// serves at its own clock, or a read of the transaction's writes in a
// write batch at the latest timestamp).
func (a *Args) uncertaintyLimit(ts kv.Timestamp) kv.Timestamp {
	if a.Txn == nil || ts == kv.MaxTimestamp {
		return kv.Timestamp{}
	}
	return TSFromProto(a.Txn.GlobalUncertaintyLimit)
}

// put writes value (a deletion if tombstone) at the batch timestamp: an
// intent in a transaction.
func (a *Args) put(key, value []byte, tombstone bool) error {
	if a.Txn != nil && len(a.Txn.Meta.Key) == 0 {
		return invalidf("txn %x: a write needs the transaction's anchor key (txn.meta.key), where its record lives", a.Txn.Meta.Id)
	}
	return kv.MVCCPut(a.Batch, key, a.Timestamp, value, tombstone, a.intentTxn())
}

// conflictError turns kv's conflicts into the replica's verdicts: intents
// of other transactions into WRITE_INTENT (listing them), an uncertain
// read into TXN_RETRY with the transaction moved above the uncertain
// version (its coordinator refreshes its reads there and reads again);
// other errors are returned as they are (a *kv.WriteTooOldError is the
// replica's to handle: it retries the batch at a higher timestamp).
func (a *Args) conflictError(err error) error {
	var ue *kv.UncertaintyError
	if errors.As(err, &ue) && a.Txn != nil {
		t := proto.Clone(a.Txn).(*rspb.Transaction)
		next := ue.Existing.Next()
		if TSFromProto(t.Meta.WriteTimestamp).Less(next) {
			t.Meta.WriteTimestamp = TSToProto(next)
		}
		return &Error{E: &rspb.RangeError{Code: rspb.RangeError_TXN_RETRY, Txn: t,
			Message: fmt.Sprintf("ReadWithinUncertaintyInterval: txn %x read %s at %s and met a value written at %s, within its uncertainty limit %s: read again above it",
				a.Txn.Meta.Id, keys.Pretty(ue.Key), ue.ReadTimestamp, ue.Existing, ue.Limit)}}
	}
	var ie *kv.IntentError
	if !errors.As(err, &ie) {
		return err
	}
	re := &rspb.RangeError{Code: rspb.RangeError_WRITE_INTENT, Message: err.Error()}
	for _, in := range ie.Intents {
		m := &rspb.TxnMeta{}
		if proto.Unmarshal(in.Txn.Meta, m) != nil || len(m.Id) == 0 {
			m = &rspb.TxnMeta{Id: in.Txn.ID, Epoch: in.Txn.Epoch}
		}
		m.WriteTimestamp = TSToProto(in.Timestamp)
		re.Intents = append(re.Intents, &rspb.Intent{Key: in.Key, Txn: m})
	}
	re.Message = fmt.Sprintf("conflicting intent on %s of txn %x (%d intents)", keys.Pretty(ie.Intents[0].Key), ie.Intents[0].Txn.ID, len(ie.Intents))
	return &Error{E: re}
}

// readRecord reads the record of the transaction meta (nil if none).
func readRecord(r kv.Reader, meta *rspb.TxnMeta) (*rspb.Transaction, error) {
	v, ok, err := r.GetRaw(RecordKey(meta.Key, meta.Id))
	if err != nil || !ok {
		return nil, err
	}
	rec := &rspb.Transaction{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("batcheval: transaction record %x: %w", meta.Id, err)
	}
	return rec, nil
}

func writeRecord(b *kv.Batch, rec *rspb.Transaction) error {
	v, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	return b.PutRaw(RecordKey(rec.Meta.Key, rec.Meta.Id), v)
}

func toWaitTS(ts *rspb.Timestamp) txnwait.Timestamp {
	t := TSFromProto(ts)
	return txnwait.Timestamp{WallTime: t.WallTime, Logical: t.Logical}
}

func fromWaitTS(ts txnwait.Timestamp) *rspb.Timestamp {
	return TSToProto(kv.Timestamp{WallTime: ts.WallTime, Logical: ts.Logical})
}

func waitID(id []byte) txnwait.TxnID {
	var out txnwait.TxnID
	copy(out[:], id)
	return out
}

var toWaitStatus = map[rspb.TransactionStatus]txnwait.TxnStatus{
	rspb.TransactionStatus_TXN_PENDING: txnwait.Pending, rspb.TransactionStatus_TXN_STAGING: txnwait.Staging,
	rspb.TransactionStatus_TXN_COMMITTED: txnwait.Committed, rspb.TransactionStatus_TXN_ABORTED: txnwait.Aborted,
}

var fromWaitStatus = map[txnwait.TxnStatus]rspb.TransactionStatus{
	txnwait.Pending: rspb.TransactionStatus_TXN_PENDING, txnwait.Staging: rspb.TransactionStatus_TXN_STAGING,
	txnwait.Committed: rspb.TransactionStatus_TXN_COMMITTED, txnwait.Aborted: rspb.TransactionStatus_TXN_ABORTED,
}

// metaState is what the decisions know of a transaction from its meta (an
// intent's or a request's).
func metaState(m *rspb.TxnMeta) txnwait.TxnState {
	return txnwait.TxnState{ID: waitID(m.Id), Epoch: m.Epoch, Priority: m.Priority, Status: txnwait.Pending,
		WriteTS: toWaitTS(m.WriteTimestamp), StartTS: toWaitTS(m.MinTimestamp)}
}

// txnState is what the decisions know of a transaction record or header.
func txnState(t *rspb.Transaction) *txnwait.TxnState {
	if t == nil {
		return nil
	}
	s := metaState(t.Meta)
	s.Status = toWaitStatus[t.Status]
	s.LastHeartbeat = toWaitTS(t.LastHeartbeat)
	s.InFlightWrites = len(t.InFlightWrites)
	return &s
}

// applyState writes a decision's view of a transaction back into t (a
// copy of the record or header).
func applyState(t *rspb.Transaction, s txnwait.TxnState) *rspb.Transaction {
	out := proto.Clone(t).(*rspb.Transaction)
	out.Meta.Epoch, out.Meta.Priority = s.Epoch, s.Priority
	out.Meta.WriteTimestamp = fromWaitTS(s.WriteTS)
	out.Status = fromWaitStatus[s.Status]
	if !s.LastHeartbeat.IsEmpty() {
		out.LastHeartbeat = fromWaitTS(s.LastHeartbeat)
	}
	return out
}

// envOf returns the batch's TxnEnv, or an error for a record command
// evaluated without one (it must run at a leaseholder).
func envOf(a *Args, what string) (TxnEnv, error) {
	if a.Env == nil || a.Batch == nil {
		return nil, Errorf(rspb.RangeError_INVALID_ARGUMENT, "%s must be evaluated as a write at the leaseholder", what)
	}
	return a.Env, nil
}

// identityIn is the toIn of the transaction commands: only nodes send them,
// with internal keys already.
func identityIn[Q proto.Message](q Q) Q { return proto.Clone(q).(Q) }

// checkInternalKey validates the anchor key of a transaction command.
func (l Limits) checkInternalKey(what string, k []byte) error {
	if len(k) == 0 {
		return invalidf("%s: empty key is not allowed", what)
	}
	if len(k) > l.MaxKeySize+16 {
		return invalidf("%s: key of %d bytes exceeds max_key_size of %d bytes", what, len(k), l.MaxKeySize)
	}
	return nil
}
