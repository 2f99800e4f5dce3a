package gateway

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// The KV service's transactions: thin handlers over the node's
// TxnCoordinator (txncoord.go).

// maxAtomicAttempts bounds the runs of one atomic batch that keeps meeting
// retryable conflicts.
const maxAtomicAttempts = 10

// SetTxnCoordinator enables transactions on the KV service.
func (s *KVServer) SetTxnCoordinator(c *TxnCoordinator) { s.txns = c }

func (s *KVServer) coordinator() (*TxnCoordinator, error) {
	if s.txns == nil {
		return nil, txnErr(rspb.RangeError_FAILED_PRECONDITION, "transactions are not enabled on n%d", s.nodeID())
	}
	return s.txns, nil
}

// BeginTxn starts a transaction coordinated by this node.
func (s *KVServer) BeginTxn(ctx context.Context, r *rspb.BeginTxnRequest) (*rspb.BeginTxnResponse, error) {
	if s.draining.Load() {
		_, _, err := s.begin(ctx)
		return nil, err
	}
	c, err := s.coordinator()
	if err != nil {
		return nil, ToStatus(err)
	}
	var timeout time.Duration
	if r.Timeout != nil {
		if err := r.Timeout.CheckValid(); err != nil {
			return nil, invalidf("begin_txn: timeout: %v", err)
		}
		timeout = r.Timeout.AsDuration()
	}
	h, txn, err := c.BeginAs(callerUser(ctx), r.Priority, timeout)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.BeginTxnResponse{Txn: h, ReadTimestamp: txn.ReadTimestamp}, nil
}

// beginTxnCall starts a call on the coordinator: the call's deadline
// (begin) and the coordinator.
func (s *KVServer) beginTxnCall(ctx context.Context) (context.Context, context.CancelFunc, *TxnCoordinator, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := s.coordinator()
	if err != nil {
		cancel()
		return nil, nil, nil, ToStatus(err)
	}
	return ctx, cancel, c, nil
}

// CommitTxn commits a transaction and returns its commit timestamp.
func (s *KVServer) CommitTxn(ctx context.Context, r *rspb.CommitTxnRequest) (*rspb.CommitTxnResponse, error) {
	ctx, cancel, c, err := s.beginTxnCall(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	ts, err := c.Commit(ctx, r.Txn)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.CommitTxnResponse{CommitTimestamp: ranges.TSToProto(ts), Bookmark: EncodeBookmark(s.clusterID(), ts)}, nil
}

// RollbackTxn aborts a transaction (rolling back one that is gone already
// succeeds).
func (s *KVServer) RollbackTxn(ctx context.Context, r *rspb.RollbackTxnRequest) (*rspb.RollbackTxnResponse, error) {
	ctx, cancel, c, err := s.beginTxnCall(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if err := c.Rollback(ctx, r.Txn); err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.RollbackTxnResponse{}, nil
}

// batchInTxn runs a Batch that names a transaction (txn) or is one
// (atomic). Its writes' commit timestamps are the commit's (atomic) or left
// out (a transaction's writes commit when it does: CommitTxn says when).
func (s *KVServer) batchInTxn(ctx context.Context, r *rspb.BatchRequest) (*rspb.BatchResponse, error) {
	switch {
	case len(r.Txn) > 0 && r.Atomic:
		return nil, invalidf("txn and atomic: a batch runs in a transaction or is one, not both")
	case r.Route != nil:
		return nil, invalidf("route: a transactional batch is routed by its node, not addressed to a range")
	}
	if rm := readModeOf(r.ProtoReflect()); rm.set() && rm.mode != rspb.ReadMode_STRONG {
		return nil, invalidf("read_mode: a transaction reads at its own timestamp (STRONG); %s is not allowed", rm.mode)
	}
	ctx, cancel, c, err := s.beginTxnCall(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	internal, _, err := s.validate(ctx, r.Requests, readModeFields{}, true)
	if err != nil {
		return nil, err
	}
	if len(r.Txn) > 0 {
		resps, err := c.Execute(ctx, r.Txn, internal)
		if err != nil {
			return nil, ToStatus(err)
		}
		for _, q := range resps {
			toClient(q)
			setCommitTimestamp(q, nil)
		}
		return &rspb.BatchResponse{Responses: resps}, nil
	}
	if d := s.oneRange(ctx, internal); d != nil {
		// One-phase commit: every request is in one range, where one
		// command is atomic already: no record, no intents. It goes to
		// that range as one command; if its keys left the range meanwhile
		// (a split), it runs as a transaction instead.
		resps, err := s.router.sendOnePhase(ctx, d, internal)
		if errors.Is(err, errNotOneRange) {
			goto txn
		}
		if err != nil {
			return nil, ToStatus(err)
		}
		for _, q := range resps {
			toClient(q)
		}
		return s.batchResponse(r.Requests, resps), nil
	}
txn:
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		resps, ts, err := s.runAtomic(ctx, c, internal)
		if err == nil {
			for _, q := range resps {
				toClient(q)
				setCommitTimestamp(q, ranges.TSToProto(ts))
			}
			out := &rspb.BatchResponse{Responses: resps}
			if !ranges.IsReadOnly(r.Requests) {
				out.Bookmark = EncodeBookmark(s.clusterID(), ts)
			}
			return out, nil
		}
		if !retryableTxnErr(err) || attempt >= maxAtomicAttempts {
			return nil, ToStatus(err)
		}
		select {
		case <-ctx.Done():
			return nil, ToStatus(err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// oneRange returns the range holding every key of internal requests, as
// the router's cache knows it now, or nil if they span several (or a
// lookup fails), or if they hold a scan.
func (s *KVServer) oneRange(ctx context.Context, internal []*rspb.RequestUnion) *rspb.RangeDescriptor {
	var d *rspb.RangeDescriptor
	for _, q := range internal {
		if q.GetScan() != nil {
			return nil // paged scans: see sendOnePhase
		}
		start, end, point := ranges.RequestSpan(q)
		rd, err := s.router.LookupRange(ctx, start, false)
		if err != nil {
			return nil
		}
		inside := keys.InSpan(start, rd.StartKey, rd.EndKey)
		if !point {
			inside = keys.ContainsSpan(start, end, rd.StartKey, rd.EndKey)
		}
		if !inside || (d != nil && d.RangeId != rd.RangeId) {
			return nil
		}
		d = rd
	}
	return d
}

// runAtomic runs internal requests as one transaction: begin, run, commit
// (rolled back on failure). Nothing was returned to the client yet, so a
// retryable failure can run it again.
func (s *KVServer) runAtomic(ctx context.Context, c *TxnCoordinator, internal []*rspb.RequestUnion) ([]*rspb.ResponseUnion, kv.Timestamp, error) {
	h, _, err := c.BeginAs(callerUser(ctx), 0, 0)
	if err != nil {
		return nil, kv.Timestamp{}, err
	}
	resps, ts, err := c.CommitWith(ctx, h, internal)
	if err != nil {
		_ = c.Rollback(ctx, h)
		return nil, kv.Timestamp{}, err
	}
	return resps, ts, nil
}

// retryableTxnErr: a conflict after which the whole transaction may run
// again (never an AMBIGUOUS commit).
func retryableTxnErr(err error) bool {
	var re *RangeError
	if !errors.As(err, &re) {
		return false
	}
	switch re.E.Code {
	case rspb.RangeError_TXN_RETRY, rspb.RangeError_TXN_ABORTED, rspb.RangeError_WRITE_INTENT:
		return true
	}
	return false
}

// setCommitTimestamp sets (nil: clears) a write response's commit_timestamp.
func setCommitTimestamp(r *rspb.ResponseUnion, ts *rspb.Timestamp) {
	inner, ok := innerResponse(r)
	if !ok {
		return
	}
	fd := inner.Descriptor().Fields().ByName("commit_timestamp")
	if fd == nil {
		return
	}
	if ts == nil {
		inner.Clear(fd)
		return
	}
	inner.Set(fd, protoreflect.ValueOfMessage(ts.ProtoReflect()))
}
