package ranges

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lni/dragonboat/v4"
	sm "github.com/lni/dragonboat/v4/statemachine"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/proto/rspb"
)

// proposeRetry is how long one try of a proposal may take before it is
// proposed again. Dragonboat silently drops proposals forwarded to a leader
// that is transferring leadership or died, leaving the proposer waiting;
// re-proposing the same bytes is safe because writes carry a proposal ID
// (deduplicated at apply), lease requests carry their precondition and GC is
// idempotent.
const proposeRetry = 500 * time.Millisecond

// proposeRetryBytes is how many bytes of a command add one proposeRetry to
// the wait before it is proposed again: a 1 MiB write needs longer than a
// small one to reach a quorum's disks.
const proposeRetryBytes = 256 << 10

// retryAfter is how long try number try (0 for the first) of a command of
// size bytes waits for its result before the same bytes are proposed
// again. Each copy is a whole new log entry that every replica writes and
// fsyncs, so a fixed interval shorter than the commit latency of a loaded
// disk added copies faster than the log drained them: under two parallel
// test runs, 1 MiB writes re-proposed every 500 ms took over a minute.
// The wait therefore grows with the command's size and doubles with every
// try that timed out, up to four times its first value. Tries refused at
// once (no leader yet, busy) do not count: they added nothing to the log.
func retryAfter(try, size int) time.Duration {
	first := proposeRetry + time.Duration(size/proposeRetryBytes)*proposeRetry
	return first << min(try, 2)
}

// propose sends a command through Raft and decodes its result.
func (r *Replica) propose(ctx context.Context, cmd *rspb.RaftCommand) (*rspb.RaftResult, *rspb.RangeError) {
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, rangeErr(rspb.RangeError_UNKNOWN, err.Error())
	}
	res, rerr, _ := r.proposeData(ctx, data, isRetryable(cmd))
	return res, rerr
}

// isRetryable: a command that may be proposed again as the same bytes.
func isRetryable(cmd *rspb.RaftCommand) bool {
	return len(cmd.ProposalId) > 0 || cmd.GetRequestLease() != nil || cmd.GetGc() != nil
}

// proposeData proposes data (re-proposing a retryable command whose try
// timed out, after retryAfter, until ctx ends) and decodes its result. inFlight reports an
// error returned while some copy of the command was accepted by Raft and
// none has a result: the command may still apply, at any later time, and
// whoever proposed it must keep what it evaluated under (its latches, a
// transfer's refusal to serve) until settle learns its fate.
func (r *Replica) proposeData(ctx context.Context, data []byte, retryable bool) (_ *rspb.RaftResult, _ *rspb.RangeError, inFlight bool) {
	for timedOut := 0; ; {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if retryable {
			tctx, cancel = context.WithTimeout(ctx, retryAfter(timedOut, len(data)))
		}
		out, accepted, err := r.syncPropose(tctx, data)
		cancel()
		inFlight = inFlight || accepted
		if err != nil {
			if retryable && accepted && ctx.Err() == nil && (errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)) {
				timedOut++
				r.store.cfg.Metrics.reproposal()
			}
			if errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, dragonboat.ErrShardNotReady) {
				// A quiesced follower is not woken by proposals (its dead
				// leader would never be replaced): wake it.
				r.wake()
			}
			if retryable && ctx.Err() == nil && (errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
				errors.Is(err, dragonboat.ErrShardNotReady) || errors.Is(err, dragonboat.ErrSystemBusy)) {
				if errors.Is(err, dragonboat.ErrShardNotReady) || errors.Is(err, dragonboat.ErrSystemBusy) {
					select {
					case <-ctx.Done():
					case <-r.store.cfg.TimeSource.After(20 * time.Millisecond):
					}
				}
				continue
			}
			if inFlight && !replicaGone(err) {
				// Some copy may still apply: whatever the last try ran
				// into (no leader, busy), the caller must treat the command
				// as possibly applied, never as refused (a router re-sends
				// a NOT_LEASEHOLDER write elsewhere under a new proposal).
				return nil, r.incompleteErr(err), true
			}
			return nil, r.mapRaftError(err), false
		}
		res := &rspb.RaftResult{}
		if err := proto.Unmarshal(out.Data, res); err != nil {
			return nil, rangeErr(rspb.RangeError_UNKNOWN, err.Error()), false
		}
		return res, nil, false
	}
}

// replicaGone: the local replica (or the whole NodeHost) is closed; nothing
// proposed through it will report back, and nothing is served here.
func replicaGone(err error) bool {
	return errors.Is(err, dragonboat.ErrShardClosed) || errors.Is(err, dragonboat.ErrClosed) ||
		errors.Is(err, dragonboat.ErrShardNotFound) || errors.Is(err, errReplicaClosed)
}

// settle holds on to what an in-flight command was evaluated under until
// its fate is known, then calls release. A proposal whose caller gave up
// (deadline, cancellation, a Raft timeout) can still be committed later,
// by this leader or by the next one that has it in its log. Releasing its
// latches at once let the next write on the same keys evaluate against
// state without it, and both applied: two increments answered the same
// value, two conditional deletes of one value both succeeded.
//
// The fate is known when a copy of the command gets a result (it applied,
// or was refused at apply: a refusal is permanent, since lease sequences
// and generations only grow), or when decided reports that it can no
// longer apply (the lease or descriptor it was evaluated under has been
// replaced locally, so every earlier entry has applied here and every
// later copy is refused), or when the replica or store closes. Meanwhile
// the same bytes are proposed again (see retryAfter), deduplicated at
// apply by their proposal ID, so a range that regains a quorum decides
// soon; one that does not keeps the keys latched, as CockroachDB does.
func (r *Replica) settle(data []byte, decided func() bool, release func()) {
	if r.store.cfg.Metrics != nil {
		r.store.cfg.Metrics.settling.Inc()
	}
	done := func() {
		release()
		if r.store.cfg.Metrics != nil {
			r.store.cfg.Metrics.settling.Dec()
		}
	}
	ok := r.store.tasks.run(func(ctx context.Context) {
		defer done()
		for timedOut := 0; ctx.Err() == nil && !decided(); {
			tctx, cancel := context.WithTimeout(ctx, retryAfter(timedOut, len(data)))
			_, _, err := r.syncPropose(tctx, data)
			cancel()
			if err == nil || replicaGone(err) {
				return
			}
			if errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				timedOut++
				r.store.cfg.Metrics.reproposal()
			}
			r.wake()
			if !errors.Is(err, dragonboat.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				// Refused at once (no leader, busy): do not spin.
				select {
				case <-ctx.Done():
				case <-r.store.cfg.TimeSource.After(proposeRetry / 10):
				}
			}
		}
	})
	if !ok {
		done() // the store is closing: nothing is served here any more
	}
}

// syncPropose proposes data and waits for its result or for ctx. The Raft
// proposal timeout is not ctx's deadline: Dragonboat refuses a timeout
// below one Raft tick (ErrTimeoutTooSmall), so a client deadline shorter
// than a tick (200 ms under `start`) made every write fail although the
// write itself takes a few ms. The proposal gets at least two ticks; the
// caller's deadline is enforced by waiting on ctx. When ctx ends first the
// command may still apply: the caller reports an ambiguous result (and
// settles the command), and a retry with the same proposal ID is
// deduplicated at apply. accepted reports that Raft took the proposal.
func (r *Replica) syncPropose(ctx context.Context, data []byte) (_ sm.Result, accepted bool, _ error) {
	timeout := DefaultRequestTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if ctx.Err() != nil {
		return sm.Result{}, false, ctx.Err()
	}
	if min := 2 * time.Duration(r.store.cfg.RTTMillisecond) * time.Millisecond; timeout < min {
		timeout = min
	}
	rs, err := r.store.nh.Propose(r.store.nh.GetNoOPSession(r.rangeID), data, timeout)
	if err != nil {
		return sm.Result{}, false, err
	}
	select {
	case res := <-rs.AppliedC():
		switch {
		case res.Completed():
			rs.Release()
			return res.GetResult(), true, nil
		case res.Rejected():
			return sm.Result{}, true, dragonboat.ErrRejected
		case res.Timeout():
			return sm.Result{}, true, dragonboat.ErrTimeout
		case res.Terminated():
			return sm.Result{}, true, dragonboat.ErrShardClosed
		case res.Dropped():
			return sm.Result{}, true, dragonboat.ErrShardNotReady
		case res.Aborted():
			return sm.Result{}, true, dragonboat.ErrAborted
		}
		return sm.Result{}, true, fmt.Errorf("r%d: unexpected proposal result %v", r.rangeID, res)
	case <-ctx.Done():
		return sm.Result{}, true, ctx.Err()
	}
}

// wake makes a quiesced shard active again: a local ReadIndex wakes it (a
// proposal does not), so heartbeats resume and, if its leader died, an
// election follows. It is rate-limited per replica and never waits.
func (r *Replica) wake() {
	if r.store.cfg.DisableQuiesce {
		return
	}
	now := r.store.cfg.TimeSource.Now().UnixNano()
	last := r.lastWake.Load()
	if now-last < int64(r.store.electionTimeout()) || !r.lastWake.CompareAndSwap(last, now) {
		return
	}
	rs, err := r.readIndex(2 * r.store.electionTimeout())
	if err != nil {
		return
	}
	if r.store.cfg.Metrics != nil {
		r.store.cfg.Metrics.wakeups.Inc()
	}
	r.store.tasks.run(func(ctx context.Context) {
		select {
		case <-rs.ResultC():
			rs.Release()
		case <-ctx.Done():
		}
	})
}

// readIndex is the one place the store asks Raft for a ReadIndex, and
// counts every call (rangestore_read_index_total). Only wake uses it: reads
// are served under the lease and never call it.
func (r *Replica) readIndex(timeout time.Duration) (*dragonboat.RequestState, error) {
	if r.store.cfg.Metrics != nil {
		r.store.cfg.Metrics.readIndex.Inc()
	}
	return r.store.nh.ReadIndex(r.rangeID, timeout)
}

// incompleteErr: a command was proposed but its outcome is unknown (the
// caller gave up, Raft timed out, or a retry ran into no leader): it may
// still apply.
func (r *Replica) incompleteErr(err error) *rspb.RangeError {
	return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: request did not complete on n%d (%v); a write may still apply, retry it with the same proposal id", r.rangeID, r.store.NodeID(), err))
}

func (r *Replica) mapRaftError(err error) *rspb.RangeError {
	switch {
	case errors.Is(err, dragonboat.ErrShardNotReady), errors.Is(err, dragonboat.ErrShardNotInitialized),
		errors.Is(err, dragonboat.ErrSystemBusy):
		e := rangeErr(rspb.RangeError_NOT_LEASEHOLDER, fmt.Sprintf("r%d cannot serve on n%d right now: %v", r.rangeID, r.store.NodeID(), err))
		e.LeaderNodeId = r.leaderNode()
		return e
	case errors.Is(err, dragonboat.ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, dragonboat.ErrCanceled),
		errors.Is(err, context.Canceled), errors.Is(err, dragonboat.ErrAborted):
		return r.incompleteErr(err)
	case errors.Is(err, dragonboat.ErrClosed), errors.Is(err, dragonboat.ErrShardClosed), errors.Is(err, errReplicaClosed):
		return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("node n%d is shutting down", r.store.NodeID()))
	case errors.Is(err, dragonboat.ErrShardNotFound):
		return rangeErr(rspb.RangeError_RANGE_NOT_FOUND, fmt.Sprintf("range r%d not found on node n%d", r.rangeID, r.store.NodeID()))
	case errors.Is(err, dragonboat.ErrTimeoutTooSmall):
		return rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d: deadline too close to run the request on n%d", r.rangeID, r.store.NodeID()))
	case errors.Is(err, dragonboat.ErrPayloadTooBig):
		return rangeErr(rspb.RangeError_INVALID_ARGUMENT, fmt.Sprintf("r%d: command too large for the raft log", r.rangeID))
	}
	return rangeErr(rspb.RangeError_UNKNOWN, fmt.Sprintf("r%d: %v", r.rangeID, err))
}

// leaderNode maps the local view of the range's Raft leader to its node ID.
func (r *Replica) leaderNode() uint64 {
	lid, _, ok, err := r.store.nh.GetLeaderID(r.rangeID)
	if err != nil || !ok {
		return 0
	}
	if d := r.desc(); d != nil {
		for _, rep := range d.Replicas {
			if rep.ReplicaId == lid {
				return rep.NodeId
			}
		}
	}
	return 0
}
