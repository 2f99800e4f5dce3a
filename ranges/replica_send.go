package ranges

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

// send serves a batch routed to this replica (Store.send): admin commands,
// an answer from the dedup record, then the request checks (frozen,
// timestamps, limits, key span), the lease, and the read or write.
func (r *Replica) send(ctx context.Context, req *rspb.RangeRequest) *rspb.RangeResponse {
	nodeID := r.store.NodeID()
	if req.GetAdminLogCompacted() {
		return &rspb.RangeResponse{Admin: &rspb.RangeResponse_LogCompacted{LogCompacted: r.logCompacted()}}
	}
	if req.GetAdminDigest() {
		d, rerr := r.digest()
		if rerr != nil {
			return &rspb.RangeResponse{Error: rerr}
		}
		return &rspb.RangeResponse{Admin: &rspb.RangeResponse_ReplicaDigest{ReplicaDigest: d}}
	}
	if req.GetAdminReplicaProgress() {
		return &rspb.RangeResponse{Admin: &rspb.RangeResponse_ReplicaProgress{ReplicaProgress: &rspb.ReplicaProgress{ReplicaId: r.replicaID, AppliedIndex: r.sm.applied.Load(), Restoring: r.sm.recovering.Load() > 0}}}
	}
	if req.GetAdminCompactLog() {
		return &rspb.RangeResponse{Admin: &rspb.RangeResponse_LogCompacted{LogCompacted: r.compactLogForJoin(ctx)}}
	}
	if req.GetAdminFreeze() != nil || req.GetAdminSplit() != nil || req.GetAdminMerge() != nil || req.GetAdminChangeReplicas() != nil {
		// Admin commands act on the replica's loaded state: they wait
		// (within the caller's deadline) until Dragonboat has opened it.
		if rerr := r.waitOpened(ctx); rerr != nil {
			return &rspb.RangeResponse{Error: rerr}
		}
	}
	if req.GetAdminFreeze() != nil {
		return r.adminFreeze(ctx, req.GetAdminFreeze())
	}
	// A retried write that already applied answers from its dedup record,
	// even if the range has split or frozen for a merge since (the keys are
	// now elsewhere, or nothing is served here any more).
	if res := r.dedupResult(req); res != nil {
		return &rspb.RangeResponse{Responses: res.Responses, Error: res.Error, Timestamp: res.Timestamp, Txn: dedupTxn(req, res)}
	}
	if f := r.sm.frozen.Load(); f != 0 {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d is being merged into r%d", req.RangeId, f))}
	}
	if len(req.Requests) == 0 && req.GetAdminSplit() == nil && req.GetAdminMerge() == nil && req.GetAdminChangeReplicas() == nil {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_INVALID_ARGUMENT, "empty batch")}
	}
	reqTS, rerr := r.checkTimestamps(req)
	if rerr != nil {
		return &rspb.RangeResponse{Error: rerr}
	}
	// Observe the request's timestamps, reads included: every later lease
	// start from this node, and so every write under a later lease, is
	// above them. One from a peer whose physical clock runs ahead is waited
	// for, so the clock never passes physical + max offset.
	if err := r.store.cfg.Clock.UpdateWait(ctx, reqTS); err != nil {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_INVALID_ARGUMENT, fmt.Sprintf("r%d on n%d: %v", req.RangeId, nodeID, err))}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	if r.desc() == nil {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d on n%d has no data yet", req.RangeId, nodeID))}
	}
	if req.GetAdminSplit() != nil || req.GetAdminMerge() != nil || req.GetAdminChangeReplicas() != nil {
		lease, rerr := r.ensureLease(ctx)
		if rerr != nil {
			return &rspb.RangeResponse{Error: rerr}
		}
		if c := req.GetAdminChangeReplicas(); c != nil {
			return r.adminChangeReplicas(ctx, lease, c)
		}
		if req.GetAdminSplit() != nil {
			resp := r.adminSplit(ctx, lease, req.GetAdminSplit())
			if e := resp.Error; e != nil && e.Code != rspb.RangeError_NOT_LEASEHOLDER && e.Code != rspb.RangeError_RANGE_KEY_MISMATCH {
				r.store.log.Warn("split refused", "range", req.RangeId, "key", keys.Pretty(req.GetAdminSplit().SplitKey), "code", e.Code.String(), "reason", e.Message)
			}
			return resp
		}
		return r.adminMerge(ctx, lease, req.GetAdminMerge())
	}
	// Malformed requests and keys outside the range are refused wherever
	// they arrive, before looking at the lease.
	// Size limits hold here too: the Internal service reaches replicas
	// without the gateway's checks.
	if err := r.store.cfg.Limits.check(req.RangeId, req.Requests); err != nil {
		re, _ := asRangeError(err)
		return &rspb.RangeResponse{Error: re}
	}
	if err := checkSpans(r.desc(), req.Requests); err != nil {
		re, _ := asRangeError(err)
		r.store.addLocalDescriptors(re, req.Requests)
		return &rspb.RangeResponse{Error: re}
	}
	if err := batcheval.CheckTxn(req.Txn); err != nil {
		re, _ := asRangeError(err)
		return &rspb.RangeResponse{Error: re}
	}
	if req.FollowerRead && req.Txn != nil {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_INVALID_ARGUMENT, fmt.Sprintf("r%d: follower_read: a transaction reads at its leaseholders", req.RangeId))}
	}
	if req.FollowerRead {
		// Any replica, without the lease (closedts.go).
		return r.serveFollowerRead(ctx, req)
	}
	lease, rerr := r.ensureLease(ctx)
	if rerr != nil {
		return &rspb.RangeResponse{Error: rerr}
	}
	now := r.store.cfg.TimeSource.Now()
	r.split.recordLoad(now, req.Requests)
	if r.reqLoad != nil {
		r.reqLoad.RecordUnder(now, lease.Sequence, req.GatewayNodeId)
	}
	if IsReadOnly(req.Requests) {
		return r.serveRead(ctx, req)
	}
	if p := singlePush(req); p != nil {
		if waited, _ := r.waitForPush(ctx, p); waited > 0 && r.store.cfg.Metrics != nil {
			r.store.cfg.Metrics.pushWaited(waited)
		}
		// The lease may have moved while it waited: serveWrite checks.
		if lease = r.lease(); lease.NodeId != nodeID {
			return &rspb.RangeResponse{Error: notLeaseholder(r.rangeID, lease.NodeId, "lease moved while a push waited")}
		}
	}
	resp := r.serveWrite(ctx, lease, req)
	if resp.Error == nil {
		r.notePushees(req)
	}
	if d := r.store.cfg.TestingAckDelay; d > 0 && resp.Error == nil && hasIncrement(req.Requests) {
		// Applied now (a retry answered from its dedup record returned
		// above): the reply is held back, with the latches released, and
		// lost if the caller gives up meanwhile.
		select {
		case <-ctx.Done():
			return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNAVAILABLE,
				fmt.Sprintf("r%d: the reply to an applied write was held back until the caller gave up (testing ack delay)", req.RangeId))}
		case <-time.After(d):
		}
	}
	return resp
}

// hasIncrement reports whether a batch holds an Increment of a user key
// (TestingAckDelay: range ID allocation increments a system key).
func hasIncrement(reqs []*rspb.RequestUnion) bool {
	for _, r := range reqs {
		if inc := r.GetIncrement(); inc != nil && keys.IsUserKey(inc.Key) {
			return true
		}
	}
	return false
}

// checkTimestamps refuses a request carrying a timestamp (batch timestamp,
// read timestamp, as_of) further ahead of this node's physical clock than a
// peer's clock may run (max offset between physical clocks + max offset of
// its HLC): it would drag the clock, the timestamp cache and every later
// write of the range into the future. It returns the latest of them
// otherwise, for UpdateWait.
func (r *Replica) checkTimestamps(req *rspb.RangeRequest) (kv.Timestamp, *rspb.RangeError) {
	var latest kv.Timestamp
	// field names the timestamp (built only for an error: this runs for
	// every request).
	check := func(field func() string, p *rspb.Timestamp) *rspb.RangeError {
		if p == nil {
			return nil
		}
		ts := TSFromProto(p)
		if err := r.store.cfg.Clock.CheckPeer(ts, r.store.cfg.Clock.MaxOffset()); err != nil {
			return rangeErr(rspb.RangeError_INVALID_ARGUMENT, fmt.Sprintf("r%d on n%d: %s: %v", req.RangeId, r.store.NodeID(), field(), err))
		}
		if latest.Less(ts) {
			latest = ts
		}
		return nil
	}
	named := func(s string) func() string { return func() string { return s } }
	if re := check(named("timestamp"), req.Timestamp); re != nil {
		return latest, re
	}
	if re := check(named("read_timestamp"), req.ReadTimestamp); re != nil {
		return latest, re
	}
	if re := check(named("min_closed_timestamp"), req.MinClosedTimestamp); re != nil {
		return latest, re
	}
	// A transaction's timestamps come from its coordinator's clock: this
	// clock observes them before serving, so a lease this node gives away
	// later starts above every read it served for them.
	if re := check(named("txn.meta.write_timestamp"), req.GetTxn().GetMeta().GetWriteTimestamp()); re != nil {
		return latest, re
	}
	if re := check(named("txn.read_timestamp"), req.GetTxn().GetReadTimestamp()); re != nil {
		return latest, re
	}
	for i, ru := range req.Requests {
		var asOf *rspb.Timestamp
		if c, err := batcheval.Lookup(ru); err == nil {
			asOf = c.AsOf(ru)
		}
		if re := check(func() string { return fmt.Sprintf("requests[%d].as_of", i) }, asOf); re != nil {
			return latest, re
		}
	}
	return latest, nil
}

// dedupResult returns the recorded result of a write that already applied
// with this proposal ID, or nil.
func (r *Replica) dedupResult(req *rspb.RangeRequest) *rspb.RaftResult {
	if len(req.ProposalId) == 0 || req.Timestamp == nil || IsReadOnly(req.Requests) {
		return nil
	}
	v, ok, err := r.store.eng.GetRaw(dedupKey(r.rangeID, TSFromProto(req.Timestamp).WallTime, req.ProposalId))
	if err != nil || !ok {
		return nil
	}
	res := &rspb.RaftResult{}
	if proto.Unmarshal(v, res) != nil {
		return nil
	}
	return res
}

// serveRead serves read-only requests from local state under the lease,
// without a Raft round trip: it waits for overlapping in-flight writes
// (latches), records the read in the timestamp cache so no later write can
// land at or below it, and reads a Pebble snapshot at the read timestamp.
func (r *Replica) serveRead(ctx context.Context, req *rspb.RangeRequest) *rspb.RangeResponse {
	now := r.store.cfg.Clock.Now()
	readTS := TSFromProto(req.ReadTimestamp)
	if req.Txn != nil {
		readTS = TSFromProto(req.Txn.ReadTimestamp)
	}
	if readTS.IsEmpty() {
		readTS = now
	}
	spans := requestSpans(req.Requests)
	l, err := r.latches.acquire(ctx, spans, false)
	if err != nil {
		return &rspb.RangeResponse{Error: r.mapRaftError(err)}
	}
	defer r.latches.release(l)
	for i, ru := range req.Requests {
		r.tscache.add(spans[i], readTimestamp(ru, readTS), txnID(req.Txn))
	}
	// The lease must still be valid now that we hold the latches.
	if lease := r.lease(); lease.NodeId != r.store.NodeID() || lease.ReplicaId != r.replicaID || r.store.leaseStatus(lease, r.store.cfg.Clock.Now()) != leases.Valid {
		return &rspb.RangeResponse{Error: notLeaseholder(r.rangeID, lease.NodeId, "lease changed while reading")}
	}
	out, err := r.sm.Lookup(&ReadQuery{Requests: req.Requests, ReadTS: readTS, MaxResponseBytes: r.store.cfg.Limits.responseBudget(), Txn: req.Txn})
	if err != nil {
		return &rspb.RangeResponse{Error: r.mapRaftError(err)}
	}
	if r.store.cfg.Metrics != nil {
		r.store.cfg.Metrics.leaseReads.Inc()
	}
	r.leaseReads.Add(1)
	res := out.(*rspb.RaftResult)
	return &rspb.RangeResponse{Responses: res.Responses, Error: res.Error, Timestamp: TSToProto(readTS), Txn: req.Txn}
}

// serveWrite evaluates a write at the leaseholder under write latches, at a
// timestamp above every read of its spans (timestamp cache) and every
// earlier write of the range, then proposes the resulting engine batch
// under the current lease and waits until it has applied locally.
func (r *Replica) serveWrite(ctx context.Context, lease *rspb.Lease, req *rspb.RangeRequest) *rspb.RangeResponse {
	spans := requestSpans(req.Requests)
	l, err := r.latches.acquire(ctx, spans, true)
	if err != nil {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNAVAILABLE,
			fmt.Sprintf("r%d: gave up waiting on n%d for an earlier write to the same keys (%v); this write was not proposed", r.rangeID, r.store.NodeID(), err))}
	}
	settling := false
	defer func() {
		if !settling {
			r.latches.release(l)
		}
	}()
	if cur := r.lease(); cur.Sequence != lease.Sequence || r.store.leaseStatus(cur, r.store.cfg.Clock.Now()) != leases.Valid {
		return &rspb.RangeResponse{Error: notLeaseholder(r.rangeID, cur.NodeId, "lease changed while waiting for latches")}
	}
	// A retry that waited for its own earlier attempt (still in flight when
	// it arrived: it holds the latches until its fate is known) answers
	// from that attempt's dedup record if it applied, rather than being
	// evaluated again: evaluated again it could fail where the first
	// succeeded (an EndTxn that removed its record, found missing, reads
	// as aborted) and report the applied write as not applied.
	if res := r.dedupResult(req); res != nil {
		return &rspb.RangeResponse{Responses: res.Responses, Error: res.Error, Timestamp: res.Timestamp, Txn: dedupTxn(req, res)}
	}
	desc := r.desc()
	if err := checkSpans(desc, req.Requests); err != nil {
		re, _ := asRangeError(err)
		r.store.addLocalDescriptors(re, req.Requests)
		return &rspb.RangeResponse{Error: re}
	}
	// A non-transactional write goes above every read of its spans and
	// every earlier write of the range; a transaction's at its write
	// timestamp, above every read of its spans (replica_txn.go).
	// Either goes at or above what its requests need (a resolution: the
	// commit timestamp).
	ts := r.store.cfg.Clock.Now()
	if req.Txn != nil {
		ts = TSFromProto(req.Txn.Meta.WriteTimestamp)
	}
	for _, sp := range spans {
		if hi := r.tscache.max(sp); !hi.Less(ts) {
			ts = hi.Next()
		}
	}
	if req.Txn == nil {
		r.sm.mu.RLock()
		if mw := r.sm.maxWriteTS; !mw.Less(ts) {
			ts = mw.Next()
		}
		r.sm.mu.RUnlock()
	}
	for _, ru := range req.Requests {
		if c, err := batcheval.Lookup(ru); err == nil {
			if m := TSFromProto(c.MinWriteTimestamp(ru)); ts.Less(m) {
				ts = m
			}
		}
	}
	if start := TSFromProto(lease.Start); ts.Less(start) {
		ts = start
	}
	// Above every closed timestamp this replica knows (one inherited by a
	// split, or adopted under an earlier lease), then above what it
	// promised itself (closedTracker); the write carries the new promise.
	if c := r.sm.closedTS(); !c.Less(ts) {
		ts = c.Next()
	}
	tok, ts, closed, _ := r.closed.admit(ts, r.store.closedTarget(r.store.cfg.Clock.Now()))
	defer func() {
		if !settling {
			r.closed.done(tok)
		}
	}()
	b, resps, ts, err := r.evalTxnWrite(req, ts, txnEnv{r: r, desc: desc})
	if err != nil {
		if re, ok := asRangeError(err); ok {
			return &rspb.RangeResponse{Error: re}
		}
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNKNOWN, err.Error())}
	}
	// The batch's reads were evaluated at ts: they enter the timestamp
	// cache as a lease read would, or a later transactional write (which
	// is not placed above the range's max write timestamp) could land
	// under a value this batch read and reported.
	for i, ru := range req.Requests {
		if c, err := batcheval.Lookup(ru); err == nil && c.ReadOnly() {
			r.tscache.add(spans[i], readTimestamp(ru, ts), txnID(req.Txn))
		}
	}
	repr := b.Repr()
	_ = b.Close()
	reqTS := req.Timestamp
	if reqTS == nil {
		reqTS = TSToProto(ts)
	}
	cmd := &rspb.RaftCommand{ProposalId: req.ProposalId, Timestamp: reqTS, LeaseSequence: lease.Sequence, Generation: desc.Generation,
		Command: &rspb.RaftCommand_Write{Write: &rspb.WriteCommand{WriteBatch: repr, Result: &rspb.RaftResult{Responses: resps, Timestamp: TSToProto(ts)},
			ClosedTimestamp: TSToProto(closed)}}}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNKNOWN, err.Error())}
	}
	res, rerr, inFlight := r.proposeData(ctx, data, isRetryable(cmd))
	if rerr != nil {
		if inFlight {
			// The latches stay until the command's fate is known.
			settling = true
			r.settle(data, func() bool { return evaluatedUnderReplaced(r.sm, lease.Sequence, desc.Generation) },
				func() { r.latches.release(l); r.closed.done(tok) })
		}
		return &rspb.RangeResponse{Error: rerr}
	}
	return &rspb.RangeResponse{Responses: res.Responses, Error: res.Error, Timestamp: res.Timestamp, Txn: withWriteTS(req.Txn, TSFromProto(res.Timestamp))}
}

// evaluatedUnderReplaced: the lease or descriptor a command was evaluated
// under has been replaced on m, so no copy of it can apply any more.
func evaluatedUnderReplaced(m *stateMachine, leaseSeq, generation uint64) bool {
	return m.lease.Load().Sequence != leaseSeq || m.desc.Load().GetGeneration() != generation || m.closed.Load()
}

// serveFollowerRead serves a read-only batch from local state at or below
// the replica's closed timestamp, without the lease (any replica: voter,
// non-voter, leaseholder or not). What to do is decideFollowerRead's
// verdict; a wait ends when the closed timestamp rises (closedWaiter), the
// budget runs out or ctx ends, and is decided again.
func (r *Replica) serveFollowerRead(ctx context.Context, req *rspb.RangeRequest) *rspb.RangeResponse {
	if !IsReadOnly(req.Requests) {
		return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_INVALID_ARGUMENT, fmt.Sprintf("r%d: follower_read: the batch writes; only reads can be served below a closed timestamp", req.RangeId))}
	}
	// A request's own as_of (an export's end_ts) is served like a read
	// timestamp: the batch waits for, and reads at, the highest one (each
	// request still reads at its own, all of them closed by then).
	readTS := TSFromProto(req.ReadTimestamp)
	for _, ru := range req.Requests {
		if a := readTimestamp(ru, readTS); readTS.Less(a) {
			readTS = a
		}
	}
	ts := r.store.cfg.TimeSource
	start := ts.Now()
	budget := time.Duration(max(req.ClosedWaitMillis, 0)) * time.Millisecond
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, dl.Sub(ts.Now()))
	}
	var budgetOver <-chan time.Time // the end of the wait, set at its start
	for {
		wake := r.sm.closedWaiter()
		m := r.sm
		waited := ts.Since(start)
		d := decideFollowerRead(followerReadInput{Initialized: m.desc.Load() != nil, FrozenInto: m.frozen.Load(), LeaseKnown: m.lease.Load().Sequence != 0,
			Closed: m.closedTS(), Now: r.store.cfg.Clock.Now(), ReadTS: readTS, Min: TSFromProto(req.MinClosedTimestamp),
			Waited: waited, WaitBudget: budget, Target: r.store.ClosedTimestampTarget()})
		notClosed := func(code rspb.RangeError_Code) *rspb.RangeResponse {
			return &rspb.RangeResponse{Error: &rspb.RangeError{Code: code, ClosedTimestamp: TSToProto(m.closedTS()),
				Message: fmt.Sprintf("r%d on n%d: %s", r.rangeID, r.store.NodeID(), d.Reason)}}
		}
		switch d.Action {
		case followerRefuse:
			return &rspb.RangeResponse{Error: rangeErr(d.Code, fmt.Sprintf("r%d on n%d: %s", r.rangeID, r.store.NodeID(), d.Reason))}
		case followerRedirect:
			return notClosed(rspb.RangeError_NOT_CLOSED)
		case followerTimeout:
			return notClosed(rspb.RangeError_BOOKMARK_TIMEOUT)
		case followerWait:
			if budgetOver == nil {
				budgetOver = ts.After(budget - waited)
			}
			select {
			case <-wake:
			case <-budgetOver:
			case <-ctx.Done():
				d.Reason = fmt.Sprintf("%s; the caller gave up after %v", d.Reason, ts.Since(start))
				return notClosed(rspb.RangeError_BOOKMARK_TIMEOUT)
			case <-r.store.stopc:
				return &rspb.RangeResponse{Error: rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("node n%d is shutting down", r.store.NodeID()))}
			}
			continue
		}
		out, err := m.Lookup(&ReadQuery{Requests: req.Requests, ReadTS: d.At, MaxResponseBytes: r.store.cfg.Limits.responseBudget()})
		if err != nil {
			return &rspb.RangeResponse{Error: r.mapRaftError(err)}
		}
		res := out.(*rspb.RaftResult)
		if res.Error != nil && res.Error.Code == rspb.RangeError_WRITE_INTENT {
			// A follower never resolves intents (its lock state is not
			// the leaseholder's, and its closed timestamp does not wait
			// for them): the read goes to the leaseholder, which pushes,
			// waits and resolves (CockroachDB #70382).
			return &rspb.RangeResponse{Error: &rspb.RangeError{Code: rspb.RangeError_NOT_CLOSED, ClosedTimestamp: TSToProto(m.closedTS()),
				Message: fmt.Sprintf("r%d on n%d: the read at %s meets an unresolved intent: read at the leaseholder (%s)", r.rangeID, r.store.NodeID(), d.At, res.Error.Message)}}
		}
		if res.Error == nil {
			if r.store.cfg.Metrics != nil {
				r.store.cfg.Metrics.followerReads.Inc()
			}
			r.followerReads.Add(1)
		}
		return &rspb.RangeResponse{Responses: res.Responses, Error: res.Error, Timestamp: TSToProto(d.At)}
	}
}
