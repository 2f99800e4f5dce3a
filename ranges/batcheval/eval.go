package batcheval

import (
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// DefaultScanChunkBytes bounds one scan response from a replica; the gateway
// pages through larger results.
const DefaultScanChunkBytes = 1 << 20

// kvResponseOverhead is charged per key/value in a read response's budget
// for its encoding (timestamp, field tags and lengths), so many tiny keys
// cannot blow a response up either.
const kvResponseOverhead = 64

// Args is what the evaluation of one request sees.
type Args struct {
	// Reader is what reads see: a snapshot for a read-only batch, the
	// write batch itself (with the batch's earlier writes) for a write.
	Reader kv.Reader
	// Batch receives the writes; nil in a read-only batch.
	Batch *kv.Batch
	// Timestamp is the batch's: writes commit at it, reads without as_of
	// read at it.
	Timestamp kv.Timestamp
	// Budget bounds the key/value bytes of the whole batch's response.
	Budget *ReadBudget
	// Txn is the transaction the requests run in (nil: none): reads see
	// its intents, writes leave intents (txn.go).
	Txn *rspb.Transaction
	// Env is the leaseholder's clock and timestamp cache, which the
	// transaction record commands need (nil elsewhere: they refuse).
	Env TxnEnv

	itxn *kv.IntentTxn // Txn as kv stores it with intents (intentTxn)
}

// readTS is the timestamp a read with as_of asOf reads at.
func (a *Args) readTS(asOf *rspb.Timestamp) kv.Timestamp {
	if asOf != nil {
		return TSFromProto(asOf)
	}
	return a.Timestamp
}

// EvalWrite applies the requests of one command to b at ts. Reads inside the
// command see the command's earlier writes; their results must fit the
// response budget (a write batch is atomic and cannot be paged). On error
// the caller discards b.
func EvalWrite(b *kv.Batch, reqs []*rspb.RequestUnion, ts kv.Timestamp, budget int64) ([]*rspb.ResponseUnion, error) {
	return evalBatch(&Args{Reader: b, Batch: b, Timestamp: ts, Budget: NewReadBudget(budget)}, reqs)
}

// EvalWriteTxn is EvalWrite for the requests of transaction txn (nil:
// none), with the leaseholder's env for the transaction record commands.
func EvalWriteTxn(b *kv.Batch, reqs []*rspb.RequestUnion, ts kv.Timestamp, budget int64, txn *rspb.Transaction, env TxnEnv) ([]*rspb.ResponseUnion, error) {
	return evalBatch(&Args{Reader: b, Batch: b, Timestamp: ts, Budget: NewReadBudget(budget), Txn: txn, Env: env}, reqs)
}

// EvalReadTxn is EvalRead for the reads of transaction txn (nil: none),
// which see its own intents.
func EvalReadTxn(r kv.Reader, reqs []*rspb.RequestUnion, readTS kv.Timestamp, budget int64, txn *rspb.Transaction) ([]*rspb.ResponseUnion, error) {
	return evalBatch(&Args{Reader: r, Timestamp: readTS, Budget: NewReadBudget(budget), Txn: txn}, reqs)
}

// EvalRead serves read-only requests from r at readTS. The response stays
// within budget bytes (0 = the default limits): scans stop early with a
// resume key, point reads beyond it are an error.
func EvalRead(r kv.Reader, reqs []*rspb.RequestUnion, readTS kv.Timestamp, budget int64) ([]*rspb.ResponseUnion, error) {
	return evalBatch(&Args{Reader: r, Timestamp: readTS, Budget: NewReadBudget(budget)}, reqs)
}

// evalBatch evaluates reqs in order against a; without a write batch,
// only reads.
func evalBatch(a *Args, reqs []*rspb.RequestUnion) ([]*rspb.ResponseUnion, error) {
	out := make([]*rspb.ResponseUnion, 0, len(reqs))
	for _, r := range reqs {
		c, err := Lookup(r)
		if err == nil && a.Batch == nil && !c.ReadOnly() {
			err = invalidf("request %T is not a read", r.Value)
		}
		if err != nil {
			return nil, err
		}
		res, err := c.Eval(a, r)
		if err != nil {
			return nil, a.conflictError(err)
		}
		out = append(out, res)
	}
	return out, nil
}

// ReadTimestamp is the timestamp a request reads at: its own as_of, or the
// batch's timestamp def. Writes (and unknown requests) get def.
func ReadTimestamp(r *rspb.RequestUnion, def kv.Timestamp) kv.Timestamp {
	c, err := Lookup(r)
	if err != nil {
		return def
	}
	a := Args{Timestamp: def}
	return a.readTS(c.AsOf(r))
}

// ReadBudget bounds the key/value bytes of one replica response
// (kvResponseOverhead charged per key).
type ReadBudget struct{ total, used int64 }

// NewReadBudget returns a budget of total bytes (<= 0: the default
// limits' max_batch_bytes).
func NewReadBudget(total int64) *ReadBudget {
	if total <= 0 {
		total = int64(DefaultLimits.MaxBatchBytes)
	}
	return &ReadBudget{total: total}
}

func (b *ReadBudget) left() int64 { return b.total - b.used }

// chargeGet charges a point read; over the budget it is an error (a batch
// of point reads cannot be paged).
func (b *ReadBudget) chargeGet(res *rspb.GetResponse) error {
	b.used += int64(len(res.GetKv().GetKey())+len(res.GetKv().GetValue())) + kvResponseOverhead
	if b.used > b.total {
		return errResponseTooLarge(b.used, b.total)
	}
	return nil
}

// errResponseTooLarge is the error for point reads whose values together
// exceed the response budget.
func errResponseTooLarge(n, budget int64) error {
	return invalidf("read response of at least %d bytes exceeds max_batch_bytes of %d: read fewer keys per batch", n, budget)
}

// TSToProto converts a kv timestamp to its wire form.
func TSToProto(ts kv.Timestamp) *rspb.Timestamp {
	if ts.IsEmpty() {
		return nil
	}
	return &rspb.Timestamp{WallTime: ts.WallTime, Logical: ts.Logical}
}

// TSFromProto converts a wire timestamp (nil = empty).
func TSFromProto(ts *rspb.Timestamp) kv.Timestamp {
	if ts == nil {
		return kv.Timestamp{}
	}
	return kv.Timestamp{WallTime: ts.WallTime, Logical: ts.Logical}
}

func kvToProto(x kv.KeyValue, keysOnly bool) *rspb.KeyValue {
	out := &rspb.KeyValue{Key: x.Key, Timestamp: TSToProto(x.Timestamp)}
	if !keysOnly {
		out.Value = x.Value
	}
	return out
}

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return append(append([]byte(nil), b[:32]...), "…"...)
	}
	return b
}
