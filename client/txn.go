package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Transactions.
//
// DB.Txn runs a function in a serializable transaction that may span
// ranges, and runs it again when the cluster asks for a retry (a
// conflict: Code Retry), as cockroach-go's crdb.ExecuteTx does:
//
//	ts, err := db.Txn(ctx, func(ctx context.Context, txn *client.Txn) error {
//		a, err := txn.Get(ctx, []byte("a"))
//		if err != nil {
//			return err
//		}
//		return txn.Put(ctx, []byte("b"), a.Value)
//	})
//
// The function must have no effects outside the transaction: it may run
// several times. A transaction is coordinated by one node (the first that
// answers BeginTxn); all its requests go there, which routes them. A
// commit whose outcome is unknown is Ambiguous and never run again.

// TxnOption configures DB.Txn.
type TxnOption func(*txnConfig)

type txnConfig struct {
	priority   int32
	maxRetries int
	timeout    time.Duration
}

// WithTxnPriority sets the transaction's priority (0, the default, is
// normal; a higher one wins more conflicts).
func WithTxnPriority(p int32) TxnOption { return func(c *txnConfig) { c.priority = p } }

// WithTxnMaxRetries bounds the runs after the first (default 50).
func WithTxnMaxRetries(n int) TxnOption { return func(c *txnConfig) { c.maxRetries = n } }

// WithTxnTimeout bounds each run of the transaction at the node (0: the
// node's max_txn_duration).
func WithTxnTimeout(d time.Duration) TxnOption { return func(c *txnConfig) { c.timeout = d } }

// Txn is one run of a transaction (DB.Txn passes it to its function). Its
// methods must not be called after the function returned.
type Txn struct {
	db     *DB
	kv     rspb.KVClient
	addr   string
	handle []byte
	// ReadTimestamp is the timestamp the transaction reads at (it may move
	// up while it runs).
	ReadTimestamp Timestamp
}

// Txn runs fn in a transaction and commits it, running it again (after a
// rollback and a backoff) as long as the cluster answers Retry, up to the
// retry limit. It returns the commit timestamp. An error of fn is returned
// as it is, after a rollback.
func (db *DB) Txn(ctx context.Context, fn func(ctx context.Context, txn *Txn) error, opts ...TxnOption) (Timestamp, error) {
	cfg := txnConfig{maxRetries: 50}
	for _, o := range opts {
		o(&cfg)
	}
	if fn == nil {
		return Timestamp{}, invalidf("txn", "fn: nil function")
	}
	if cfg.priority < 0 || cfg.maxRetries < 0 || cfg.timeout < 0 {
		return Timestamp{}, invalidf("txn", "priority, max retries and timeout must not be negative")
	}
	ctx, cancel, err := db.begin(ctx, "txn")
	if err != nil {
		return Timestamp{}, err
	}
	defer cancel()
	backoff := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		ts, err := db.runTxn(ctx, fn, cfg)
		if err == nil {
			return ts, nil
		}
		if !errors.Is(err, ErrRetry) || attempt >= cfg.maxRetries {
			return Timestamp{}, err
		}
		db.stats.txnRetries.Add(1)
		if serr := sleep(ctx, backoff+rand.N(backoff)); serr != nil {
			return Timestamp{}, err
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// runTxn is one run: begin, fn, commit (rollback on failure).
func (db *DB) runTxn(ctx context.Context, fn func(ctx context.Context, txn *Txn) error, cfg txnConfig) (Timestamp, error) {
	txn, err := db.beginTxn(ctx, cfg)
	if err != nil {
		return Timestamp{}, err
	}
	if err := fn(ctx, txn); err != nil {
		txn.rollback(ctx)
		return Timestamp{}, err
	}
	return txn.commit(ctx)
}

// commit commits the transaction (rolled back on a failure the
// coordinator answered, except a retry or an ambiguous one).
func (txn *Txn) commit(ctx context.Context) (Timestamp, error) {
	resp, err := txn.kv.CommitTxn(ctx, &rspb.CommitTxnRequest{Txn: txn.handle})
	if err != nil {
		e := txnError("commit", err)
		answered := errorReason(err) != "" // a conflict (TXN_RETRY, ...), AMBIGUOUS: the coordinator's answer
		if !answered && (transportFailure(err) || contextError(err) != nil || status.Code(err) == codes.Unavailable) {
			// No answer from the coordinator (it died, the connection broke,
			// the call ran out of time): the commit may have been sent and
			// applied. Never reported as not applied, never retried.
			return Timestamp{}, &Error{Code: Ambiguous, Op: "commit", Err: err,
				Message: "the commit's outcome is unknown: the coordinator did not answer (" + e.Message + ")"}
		}
		if e.Code != Ambiguous && e.Code != Retry {
			txn.rollback(ctx)
		}
		return Timestamp{}, e
	}
	return tsFromProto(resp.CommitTimestamp), nil
}

// coordinatorOrder is the order in which to ask nodes to coordinate a
// transaction: coordinators are spread over the nodes, so it starts at a
// random one of those that did not fail lately (discoveryOrder puts those
// last).
func (db *DB) coordinatorOrder() []string {
	order := db.discoveryOrder()
	fresh := 0
	for _, a := range order {
		if !db.pool.suspect(a) {
			fresh++
		}
	}
	if fresh > 1 {
		k := rand.IntN(fresh)
		order = append(append(append([]string(nil), order[k:fresh]...), order[:k]...), order[fresh:]...)
	}
	return order
}

// AtomicBatch runs b as one transaction (BatchRequest.atomic): every
// request or none takes effect, across ranges, and the writes commit at
// one timestamp (each write's Result.Timestamp, with its Bookmark). A
// batch of point writes (puts, deletes) in several ranges commits in one
// round of consensus (parallel commit); one in a single range costs what
// Batch does. The node running it retries conflicts a few times, then
// returns Retry. A node that does not answer a batch with writes makes
// its outcome Ambiguous: it may have committed.
func (db *DB) AtomicBatch(ctx context.Context, b *Batch) ([]Result, error) {
	const op = "atomic batch"
	if b == nil {
		return nil, invalidf(op, "b: nil batch")
	}
	if len(b.errs) > 0 {
		return nil, b.errs[0]
	}
	if err := validate(op, b.reqs, true); err != nil {
		return nil, err
	}
	writes := false
	for _, q := range b.reqs {
		switch q.GetValue().(type) {
		case *rspb.RequestUnion_Get, *rspb.RequestUnion_Scan:
		default:
			writes = true
		}
	}
	var out []Result
	done, err := db.tryCoordinators(func(addr string, kv rspb.KVClient) (bool, error) {
		resp, err := kv.Batch(ctx, &rspb.BatchRequest{Atomic: true, Requests: b.reqs})
		if err != nil {
			answered := errorReason(err) != ""
			noAnswer := !answered && (transportFailure(err) || contextError(err) != nil || status.Code(err) == codes.Unavailable)
			switch {
			case noAnswer && writes:
				return true, &Error{Code: Ambiguous, Op: op, Err: err,
					Message: "the atomic batch's outcome is unknown: the node running it did not answer (" + txnError(op, err).Message + ")"}
			case noAnswer && transportFailure(err):
				db.pool.markFailed(addr)
				return false, err // reads only: another node may run it
			}
			return true, txnError(op, err)
		}
		out = make([]Result, len(resp.Responses))
		for i, r := range resp.Responses {
			out[i] = resultFromProto(r)
			if !out[i].Timestamp.IsZero() {
				out[i].Bookmark = resp.Bookmark
			}
		}
		return true, nil
	})
	if !done {
		return nil, &Error{Code: Unavailable, Op: op, Message: "no node ran the atomic batch: " + err.Error(), Err: err}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// tryCoordinators calls try with each node's KV client, in
// coordinatorOrder, until it reports done, and returns its error then;
// if no call was done, the last error met (getting a client, or from
// try; never nil).
func (db *DB) tryCoordinators(try func(addr string, kv rspb.KVClient) (done bool, err error)) (bool, error) {
	var last error
	for _, addr := range db.coordinatorOrder() {
		kv, err := db.pool.kv(addr)
		if err != nil {
			last = err
			continue
		}
		done, err := try(addr, kv)
		if done {
			return true, err
		}
		last = err
	}
	if last == nil {
		last = errors.New("no node to ask")
	}
	return false, last
}

// beginTxn starts a transaction at the first node that answers.
func (db *DB) beginTxn(ctx context.Context, cfg txnConfig) (*Txn, error) {
	req := &rspb.BeginTxnRequest{Priority: cfg.priority}
	if cfg.timeout > 0 {
		req.Timeout = durationpb.New(cfg.timeout)
	}
	var txn *Txn
	done, err := db.tryCoordinators(func(addr string, kv rspb.KVClient) (bool, error) {
		resp, err := kv.BeginTxn(ctx, req)
		if err != nil {
			if transportFailure(err) || status.Code(err) == codes.Unavailable {
				db.pool.markFailed(addr)
				return false, err
			}
			return true, txnError("begin", err)
		}
		txn = &Txn{db: db, kv: kv, addr: addr, handle: resp.Txn, ReadTimestamp: tsFromProto(resp.ReadTimestamp)}
		return true, nil
	})
	if !done {
		return nil, &Error{Code: Unavailable, Op: "begin", Message: "no node began the transaction: " + err.Error(), Err: err}
	}
	if err != nil {
		return nil, err
	}
	return txn, nil
}

func (t *Txn) rollback(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = t.kv.RollbackTxn(ctx, &rspb.RollbackTxnRequest{Txn: t.handle})
}

// txnError is the error of a transaction call: a conflict is Retry.
func txnError(op string, err error) *Error {
	e := fromStatus(op, err)
	switch {
	case status.Code(err) == codes.Aborted:
		e.Code = Retry
	case errorReason(err) == "AMBIGUOUS":
		e.Code = Ambiguous
	}
	return e
}

// Batch runs b in the transaction (its results in b's order; the writes'
// timestamps are left empty: they commit when the transaction does).
func (t *Txn) Batch(ctx context.Context, b *Batch) ([]Result, error) {
	if b == nil {
		return nil, invalidf("txn batch", "b: nil batch")
	}
	if len(b.errs) > 0 {
		return nil, b.errs[0]
	}
	resps, err := t.send(ctx, "txn batch", b.reqs)
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(resps))
	for i, r := range resps {
		out[i] = resultFromProto(r)
	}
	return out, nil
}

func (t *Txn) send(ctx context.Context, op string, reqs []*rspb.RequestUnion) ([]*rspb.ResponseUnion, error) {
	if err := validate(op, reqs, true); err != nil {
		return nil, err
	}
	resp, err := t.kv.Batch(ctx, &rspb.BatchRequest{Txn: t.handle, Requests: reqs})
	if err != nil {
		return nil, txnError(op, err)
	}
	return resp.Responses, nil
}

// Get reads a key in the transaction (ErrNotFound if it has no value).
func (t *Txn) Get(ctx context.Context, key []byte) (KeyValue, error) {
	res, err := t.Batch(ctx, new(Batch).Get(key))
	if err != nil {
		return KeyValue{}, withOp(err, "txn get")
	}
	if !res[0].Found {
		return KeyValue{}, &Error{Code: NotFound, Op: "txn get", Message: "no value for the key"}
	}
	return res[0].KV, nil
}

// Put writes a key in the transaction.
func (t *Txn) Put(ctx context.Context, key, value []byte) error {
	_, err := t.Batch(ctx, new(Batch).Put(key, value))
	return withOp(err, "txn put")
}

// Delete deletes a key in the transaction and reports whether it had a
// value.
func (t *Txn) Delete(ctx context.Context, key []byte) (bool, error) {
	res, err := t.Batch(ctx, new(Batch).Delete(key))
	if err != nil {
		return false, withOp(err, "txn delete")
	}
	return res[0].Existed, nil
}

// Scan reads the keys of [start, end) in the transaction, at most limit of
// them (0: all).
func (t *Txn) Scan(ctx context.Context, start, end []byte, limit int64) ([]KeyValue, error) {
	q := &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: start, EndKey: end, Limit: limit}}}
	resps, err := t.send(ctx, "txn scan", []*rspb.RequestUnion{q})
	if err != nil {
		return nil, err
	}
	return resultFromProto(resps[0]).Rows, nil
}
