package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/internal/batchsplit"
	"github.com/rangestore/rangestore/proto/rspb"
)

const (
	// proposalClockMargin: a write's proposal timestamp is the client's
	// clock this far back, so that a client clock slightly ahead of the
	// nodes' neither makes them wait nor is refused (the timestamp is only
	// the write's identity; the leaseholder picks the commit timestamp).
	proposalClockMargin = time.Second
	// maxIdentityAge: a write still being retried this long after its
	// first attempt gets a new identity if nothing may have applied, and
	// fails as Ambiguous otherwise (the nodes keep dedup records for 5
	// minutes and refuse identities more than 2.5 minutes old).
	maxIdentityAge = 2 * time.Minute
	// maxHintTries bounds the re-sends of a write that may have applied
	// to a range merged away, asking its replicas which range subsumed it
	// (holding its dedup record).
	maxHintTries = 3
	// refreshEvery: a part of a call refreshes its range from a routing
	// table at most this often while no replica serves it.
	refreshEvery = time.Second
)

// errStale: the range entry a part was sent by is out of date (a key is
// outside the range, or every replica that answered denied having it):
// the part is resolved again.
var errStale = errors.New("stale range entry")

// Stats counts the client's routing events since Open.
type Stats struct {
	// Attempts: RPCs sent to nodes (KV calls, not routing lookups).
	Attempts int64
	// Redirects: NOT_LEASEHOLDER refusals (the cached leaseholder was
	// wrong); a warm cache keeps this near 0.
	Redirects int64
	// StaleRanges: RANGE_KEY_MISMATCH and RANGE_NOT_FOUND refusals (a
	// split, merge or replica move the cache had not seen).
	StaleRanges int64
	// TransportFailures: attempts that failed without an answer (node
	// down, connection lost, attempt timeout).
	TransportFailures int64
	// RoutingLookups: routing tables fetched (Discovery).
	RoutingLookups int64
	// TxnRetries: runs of DB.Txn functions after the first (conflicts).
	TxnRetries int64
}

type stats struct {
	attempts, redirects, stale, transport, lookups, txnRetries atomic.Int64
}

// newWriteAttempt returns a write's identity for its first attempt.
func newWriteAttempt() *batchsplit.Write {
	w := &batchsplit.Write{}
	renew(w)
	return w
}

// renew gives the write a new identity (only while nothing may have
// applied): the client's clock, less proposalClockMargin.
func renew(w *batchsplit.Write) {
	now := time.Now()
	w.Renew(&rspb.Timestamp{WallTime: now.Add(-proposalClockMargin).UnixNano()}, now)
}

// rangedResp is one range's answer to a piece.
type rangedResp struct {
	start []byte // the piece's start key (parts of a span sort by it)
	resp  *rspb.ResponseUnion
	// bookmark of the range's answer, and the newest timestamp it covers.
	bookmark []byte
	bmTS     Timestamp
}

// call is one operation of the API on its way through the ranges.
type call struct {
	db *DB
	op string
	ro readOpts
}

// send runs reqs (client keys): one range command per range, sent in
// parallel; the answers per request index, in range order.
func (c *call) send(ctx context.Context, reqs []*rspb.RequestUnion) (map[int][]rangedResp, error) {
	return c.sendPieces(ctx, batchsplit.Pieces(reqs), nil, nil, 0)
}

// sendPieces resolves pieces to ranges (splitting spans), sends one command
// per range and collects the answers. prev is the command these pieces were
// last sent as (nil at first): they keep its identity if they still form
// one command to one range; if they do not and it may have applied, the
// write is Ambiguous. budget is the attempts left to them (nil: a new
// budget per range).
func (c *call) sendPieces(ctx context.Context, pieces []batchsplit.Piece, prev *batchsplit.Write, budget *atomic.Int64, depth int) (map[int][]rangedResp, error) {
	groups, err := batchsplit.GroupByRange(ctx, keyspace{c}, pieces)
	if err != nil {
		return nil, c.splitError(err)
	}
	reuse, why := batchsplit.Reuse(prev, groups)
	if why != "" {
		return nil, c.ambiguous(prev, why)
	}
	return batchsplit.Send(groups, func(g *batchsplit.Group[*entry]) (map[int][]rangedResp, error) {
		b := budget
		if b == nil {
			b = new(atomic.Int64)
			b.Store(int64(c.db.cfg.retry.MaxAttempts))
		}
		return c.sendGroup(ctx, g.Range, g.Pieces, reuse, b, depth)
	})
}

// split resolves a piece to the range(s) holding it, clipping span
// requests at range bounds.
func (c *call) split(ctx context.Context, p batchsplit.Piece) ([]batchsplit.Ranged[*entry], error) {
	out, err := batchsplit.Split(ctx, keyspace{c}, p)
	if err != nil {
		return nil, c.splitError(err)
	}
	return out, nil
}

// splitError is an error of splitting: a lookup's *Error as it is, any
// other (a range entry that does not hold the key it was found for) as
// Internal.
func (c *call) splitError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Code: Internal, Op: c.op, Message: err.Error(), Err: err}
}

// keyspace is the client's range cache and client keys as seen by
// batchsplit.
type keyspace struct{ c *call }

func (k keyspace) Locate(ctx context.Context, key []byte) (*entry, error) {
	return k.c.db.resolve(ctx, k.c.op, key)
}

func (keyspace) RangeID(e *entry) uint64 { return e.rangeID }

func (keyspace) RangeEnd(e *entry) []byte { return e.end }

// Span is requestSpan, except that an empty span (start at or after end)
// is asked of the range of its start key as a point, for a well-formed
// empty answer.
func (keyspace) Span(q *rspb.RequestUnion) (start, end []byte, point bool) {
	start, end, point = requestSpan(q)
	if !point && end != nil && bytes.Compare(start, end) >= 0 {
		return start, nil, true
	}
	return start, end, point
}

func (keyspace) Clip(q *rspb.RequestUnion, start, end []byte) *rspb.RequestUnion {
	return clipSpan(q, start, end)
}

// sendGroup sends the pieces for one range as one command (w: the write
// they were sent as before, or nil) and re-resolves them when the range
// entry was stale.
func (c *call) sendGroup(ctx context.Context, e *entry, pieces []batchsplit.Piece, w *batchsplit.Write, budget *atomic.Int64, depth int) (map[int][]rangedResp, error) {
	reqs := batchsplit.Requests(pieces)
	write := !readOnly(reqs)
	if !write {
		w = nil // a read applies nothing: it is simply sent again
	} else if w == nil {
		w = newWriteAttempt()
	}
	w.HeldBy(e.rangeID)
	resp, err := c.sendToRange(ctx, e, reqs, w, budget)
	for w != nil && w.Ambiguous && errors.Is(err, errStale) && !w.SubsumerKnown(e.rangeID) && w.HintTries < maxHintTries {
		// Every replica denied the range (merged away?) and none named
		// the range that subsumed it yet: ask again before giving up on
		// exactly-once.
		w.HintTries++
		if werr := c.wait(ctx, depth+w.HintTries); werr != nil {
			return nil, c.giveUp(e, werr, err, w)
		}
		resp, err = c.sendToRange(ctx, e, reqs, w, budget)
	}
	if errors.Is(err, errStale) {
		c.db.cache.evict(e)
		if budget.Add(-1) < 0 { // a re-resolution costs an attempt
			return nil, c.exhausted(e, err, w)
		}
		if werr := c.wait(ctx, depth); werr != nil {
			return nil, c.giveUp(e, werr, err, w)
		}
		return c.sendPieces(ctx, pieces, w, budget, depth+1)
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Responses) != len(pieces) {
		return nil, &Error{Code: Internal, Op: c.op, Message: fmt.Sprintf("r%d answered %d of %d requests", e.rangeID, len(resp.Responses), len(pieces))}
	}
	bmTS := newestOf(resp.Responses)
	out := map[int][]rangedResp{}
	for i, p := range pieces {
		start, _, _ := requestSpan(p.Req)
		out[p.Index] = append(out[p.Index], rangedResp{start: start, resp: resp.Responses[i], bookmark: resp.Bookmark, bmTS: bmTS})
	}
	return out, nil
}

// sendToRange sends one range command: a Strong one to the leaseholder
// (directly routed, following NOT_LEASEHOLDER hints), any other read to
// the nearest replica (the node routes it). It retries attempts that got
// no answer, with backoff, within the budget; errStale means the entry is
// out of date.
func (c *call) sendToRange(ctx context.Context, e *entry, reqs []*rspb.RequestUnion, w *batchsplit.Write, budget *atomic.Int64) (*rspb.BatchResponse, error) {
	db := c.db
	strong := c.ro.strong() || w != nil
	backoff := db.cfg.retry.MinBackoff
	var last error
	lastRefresh := time.Now()
	for round := 0; ; round++ {
		targets := db.targets(e, strong)
		notFound, unreachable := 0, 0
		for i := 0; i < len(targets); i++ {
			t := targets[i]
			if budget.Add(-1) < 0 {
				return nil, c.exhausted(e, last, w)
			}
			if w != nil && time.Since(w.Created) > maxIdentityAge {
				if w.Ambiguous {
					return nil, c.ambiguous(w, fmt.Sprintf("it was first sent %v ago, beyond what the nodes deduplicate", maxIdentityAge))
				}
				renew(w)
			}
			req := &rspb.BatchRequest{Requests: reqs}
			if strong {
				req.Route = &rspb.DirectRoute{RangeId: e.rangeID}
				if w != nil {
					req.Route.ProposalId, req.Route.ProposalTimestamp = w.ID, w.Timestamp
				}
			} else {
				c.ro.fill(req)
			}
			resp, err := db.attempt(ctx, t.addr, req)
			if err == nil {
				db.pool.markOK(t.addr)
				if strong {
					db.cache.setWriter(e.rangeID, t.id)
				}
				return resp, nil
			}
			if errors.Is(err, ErrClosed) || db.closed.Load() {
				return nil, &Error{Code: Closed, Op: c.op, Message: "the DB is closed", Err: err}
			}
			last = fmt.Errorf("n%d (%s): %w", t.id, t.addr, err)
			if ctx.Err() != nil {
				// The caller's context ended while this attempt was on its
				// way: a write may have reached the leaseholder and applied.
				if routeHint(err) == nil {
					w.MayHaveApplied()
				}
				return nil, c.giveUp(e, ctx.Err(), last, w)
			}
			hint := routeHint(err)
			if hint == nil {
				if !transportFailure(err) {
					return nil, fromStatus(c.op, err)
				}
				// No answer: the node is down, the connection broke, or the
				// attempt timed out. A write may have applied.
				db.stats.transport.Add(1)
				db.cfg.log.Debug("attempt got no answer", "op", c.op, "range", e.rangeID, "node", t.id, "addr", t.addr, "err", err)
				w.MayHaveApplied()
				db.pool.markFailed(t.addr)
				db.cache.clearWriter(e.rangeID, t.id)
				unreachable++
				continue
			}
			switch hint.Code {
			case rspb.RangeError_NOT_LEASEHOLDER:
				db.stats.redirects.Add(1)
				lh := hint.GetLeaseholder()
				if lh.GetNodeId() == 0 || lh.GetNodeId() == t.id || lh.GetAddress() == "" {
					db.cache.clearWriter(e.rangeID, t.id)
					continue
				}
				db.cache.setWriter(e.rangeID, lh.NodeId)
				db.cfg.log.Debug("redirected to the leaseholder", "op", c.op, "range", e.rangeID, "from", t.id, "to", lh.NodeId)
				// Try it next (a node that failed lately keeps its place
				// at the end of the round; one tried in this round is not
				// tried again before the backoff: two replicas that each
				// name the other, during a lease transfer, would burn the
				// budget at once).
				next := server{id: lh.NodeId, addr: lh.Address, voter: true}
				if slices.ContainsFunc(targets[:i], func(s server) bool { return s.id == next.id }) {
					continue
				}
				j := slices.IndexFunc(targets[i+1:], func(s server) bool { return s.id == next.id })
				switch {
				case j < 0:
					targets = slices.Insert(targets, i+1, next)
				case j > 0 && !db.pool.suspect(next.addr):
					targets = slices.Delete(targets, i+1+j, i+2+j)
					targets = slices.Insert(targets, i+1, next)
				}
			case rspb.RangeError_RANGE_KEY_MISMATCH:
				db.stats.stale.Add(1)
				c.learn(hint, e, t.id)
				return nil, errStale
			case rspb.RangeError_RANGE_NOT_FOUND:
				db.stats.stale.Add(1)
				c.learn(hint, e, t.id)
				w.HeldBy(hint.SubsumedBy)
				notFound++
			case rspb.RangeError_UNAVAILABLE:
				// The replica could not serve now (e.g. a proposal that
				// did not complete in time: it may still apply).
				w.MayHaveApplied()
			default:
				return nil, c.refusal(hint.Code, err)
			}
		}
		if len(targets) == 0 || notFound > 0 && notFound+unreachable == len(targets) {
			return nil, errStale
		}
		// No replica served this round: look at the routing table again
		// (at most every refreshEvery), then back off.
		if round > 0 && time.Since(lastRefresh) >= refreshEvery {
			lastRefresh = time.Now()
			if err := db.refresh(ctx, e.start); err == nil {
				ne := db.cache.lookup(e.start)
				if ne == nil || ne.rangeID != e.rangeID || ne.generation != e.generation || compareEnd(ne.end, e.end) != 0 {
					return nil, errStale
				}
				e = ne
			}
		}
		if err := sleep(ctx, jitter(backoff)); err != nil {
			return nil, c.giveUp(e, err, last, w)
		}
		backoff = min(2*backoff, db.cfg.retry.MaxBackoff)
		if e2 := db.cache.byID(e.rangeID); e2 != nil && e2.generation == e.generation {
			e = e2 // the writer learned meanwhile
		}
	}
}

// learn puts what a refusal's hint says into the cache. The node that
// answered is taken as the writer of the new ranges it holds a voter of
// (after a split, both sides' leases are where the parent's was).
func (c *call) learn(hint *rspb.RouteHint, e *entry, answered uint64) {
	exp := time.Now().Add(c.db.routingTTL())
	for _, r := range hint.GetRanges() {
		ne := entryFromRouting(r, exp)
		if ne.writer == 0 && ne.isVoter(answered) {
			ne.writer = answered
		}
		c.db.cache.insert(ne)
		c.db.noteServers(ne)
	}
}

// targets lists the nodes to try: for a strong command the believed
// leaseholder, then the other voters; otherwise every replica, nearest
// first. Nodes that failed lately go last.
func (db *DB) targets(e *entry, strong bool) []server {
	out := make([]server, 0, len(e.servers))
	if strong {
		if s, ok := e.server(e.writer); ok && e.writer != 0 {
			out = append(out, s)
		}
		for _, s := range e.servers {
			if s.voter && s.id != e.writer {
				out = append(out, s)
			}
		}
	} else {
		out = append(out, e.servers...)
	}
	slices.SortStableFunc(out, func(a, b server) int {
		sa, sb := db.pool.suspect(a.addr), db.pool.suspect(b.addr)
		switch {
		case sa == sb:
			return 0
		case sb:
			return -1
		}
		return 1
	})
	return out
}

// attempt is one Batch RPC to one node, bounded by the attempt timeout.
func (db *DB) attempt(ctx context.Context, addr string, req *rspb.BatchRequest) (*rspb.BatchResponse, error) {
	kv, err := db.pool.kv(addr)
	if err != nil {
		return nil, err
	}
	db.stats.attempts.Add(1)
	actx, cancel := context.WithTimeout(ctx, db.cfg.retry.AttemptTimeout)
	defer cancel()
	return kv.Batch(actx, req)
}

// routeHint returns the RouteHint detail of a refusal, or nil.
func routeHint(err error) *rspb.RouteHint {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if h, ok := d.(*rspb.RouteHint); ok {
			return h
		}
	}
	return nil
}

// errorReason returns the reason of a status's ErrorInfo detail ("" if
// none).
func errorReason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

// transportFailure reports whether err is an attempt that got no answer
// from the service (or the service was going away): worth trying
// elsewhere. Unavailable with a reason (BOOKMARK_TIMEOUT) is an answer.
func transportFailure(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return errorReason(err) == ""
	case codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// refusal is the error of a replica refusal that is not about routing.
func (c *call) refusal(code rspb.RangeError_Code, err error) *Error {
	e := fromStatus(c.op, err)
	switch code {
	case rspb.RangeError_AMBIGUOUS:
		e.Code = Ambiguous
	case rspb.RangeError_INVALID_ARGUMENT:
		e.Code = InvalidArgument
	case rspb.RangeError_FAILED_PRECONDITION, rspb.RangeError_BELOW_GC_THRESHOLD:
		e.Code = FailedPrecondition
	}
	return e
}

// ambiguous is the error of a write that may have applied and cannot be
// retried with exactly-once semantics any more.
func (c *call) ambiguous(w *batchsplit.Write, why string) *Error {
	return &Error{Code: Ambiguous, Op: c.op, Message: fmt.Sprintf("the write may or may not have applied: an attempt got no answer, and %s, so retrying it could apply it twice (ranges holding its dedup record: %v)", why, w.Holders)}
}

// giveUp is the error of a part whose context ended (ctxErr): Ambiguous for
// a write that may have applied.
func (c *call) giveUp(e *entry, ctxErr, last error, w *batchsplit.Write) *Error {
	if w != nil && w.Ambiguous {
		return &Error{Code: Ambiguous, Op: c.op, Err: ctxErr,
			Message: fmt.Sprintf("the write to range r%d may or may not have applied: %v before an attempt completed (last error: %v)", e.rangeID, ctxErr, last)}
	}
	return ctxError(c.op, ctxErr, last)
}

// exhausted is the error of a part that ran out of attempts.
func (c *call) exhausted(e *entry, last error, w *batchsplit.Write) *Error {
	if w != nil && w.Ambiguous {
		return &Error{Code: Ambiguous, Op: c.op,
			Message: fmt.Sprintf("the write to range r%d may or may not have applied: the retry budget of %d attempts ran out before an attempt completed (last error: %v)", e.rangeID, c.db.cfg.retry.MaxAttempts, last)}
	}
	return &Error{Code: Unavailable, Op: c.op,
		Message: fmt.Sprintf("range r%d unavailable: the retry budget of %d attempts ran out (last error: %v)", e.rangeID, c.db.cfg.retry.MaxAttempts, last)}
}

// wait backs off before the depth-th re-resolution of a part.
func (c *call) wait(ctx context.Context, depth int) error {
	d := min(time.Duration(depth)*c.db.cfg.retry.MinBackoff, c.db.cfg.retry.MaxBackoff)
	if err := ctx.Err(); err != nil || d == 0 {
		return err
	}
	return sleep(ctx, d)
}

// sleep waits d or until ctx ends (its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// jitter spreads d over [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + mrand.N(d/2)
}

// readOnly reports whether every request only reads.
func readOnly(reqs []*rspb.RequestUnion) bool {
	for _, q := range reqs {
		switch q.GetValue().(type) {
		case *rspb.RequestUnion_Get, *rspb.RequestUnion_Scan:
		default:
			return false
		}
	}
	return true
}

// requestSpan is the client-key span of a request: a point (key) or
// [start, end) with end nil for the end of the keyspace.
func requestSpan(q *rspb.RequestUnion) (start, end []byte, point bool) {
	switch v := q.GetValue().(type) {
	case *rspb.RequestUnion_Get:
		return v.Get.GetKey(), nil, true
	case *rspb.RequestUnion_Put:
		return v.Put.GetKey(), nil, true
	case *rspb.RequestUnion_Delete:
		return v.Delete.GetKey(), nil, true
	case *rspb.RequestUnion_ConditionalPut:
		return v.ConditionalPut.GetKey(), nil, true
	case *rspb.RequestUnion_Increment:
		return v.Increment.GetKey(), nil, true
	case *rspb.RequestUnion_Scan:
		return nonNil(v.Scan.GetStartKey()), nilIfEmpty(v.Scan.GetEndKey()), false
	case *rspb.RequestUnion_DeleteRange:
		return nonNil(v.DeleteRange.GetStartKey()), nilIfEmpty(v.DeleteRange.GetEndKey()), false
	}
	return nil, nil, true
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// clipSpan returns a copy of a span request restricted to [start, end)
// (end nil: open).
func clipSpan(q *rspb.RequestUnion, start, end []byte) *rspb.RequestUnion {
	switch v := q.GetValue().(type) {
	case *rspb.RequestUnion_Scan:
		s := v.Scan
		c := &rspb.ScanRequest{StartKey: start, EndKey: end, Limit: s.GetLimit(), Reverse: s.GetReverse(), AsOf: s.GetAsOf(), KeysOnly: s.GetKeysOnly()}
		return &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: c}}
	case *rspb.RequestUnion_DeleteRange:
		return &rspb.RequestUnion{Value: &rspb.RequestUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeRequest{StartKey: start, EndKey: end}}}
	}
	return q
}

// merge folds the per-range answers to request q into one response (in
// key order; descending for a reverse scan) and the newest bookmark among
// them.
func merge(q *rspb.RequestUnion, parts []rangedResp) (*rspb.ResponseUnion, []byte, Timestamp) {
	batchsplit.SortByStart(parts, func(p rangedResp) []byte { return p.start })
	var bm []byte
	var bmTS Timestamp
	for _, p := range parts {
		if len(p.bookmark) > 0 && (bm == nil || bmTS.Less(p.bmTS)) {
			bm, bmTS = p.bookmark, p.bmTS
		}
	}
	if len(parts) == 1 {
		return parts[0].resp, bm, bmTS
	}
	switch v := q.GetValue().(type) {
	case *rspb.RequestUnion_Scan:
		out := &rspb.ScanResponse{}
		for i := range parts {
			p := parts[i]
			if v.Scan.GetReverse() {
				p = parts[len(parts)-1-i]
			}
			out.Kvs = append(out.Kvs, p.resp.GetScan().GetKvs()...)
		}
		if l := v.Scan.GetLimit(); l > 0 && int64(len(out.Kvs)) > l {
			out.Kvs = out.Kvs[:l]
		}
		return &rspb.ResponseUnion{Value: &rspb.ResponseUnion_Scan{Scan: out}}, bm, bmTS
	case *rspb.RequestUnion_DeleteRange:
		out := &rspb.DeleteRangeResponse{}
		for _, p := range parts {
			d := p.resp.GetDeleteRange()
			out.Deleted += d.GetDeleted()
			if tsFromProto(out.CommitTimestamp).Less(tsFromProto(d.GetCommitTimestamp())) {
				out.CommitTimestamp = d.GetCommitTimestamp()
			}
		}
		return &rspb.ResponseUnion{Value: &rspb.ResponseUnion_DeleteRange{DeleteRange: out}}, bm, bmTS
	}
	if len(parts) == 0 {
		return nil, nil, Timestamp{}
	}
	return parts[0].resp, bm, bmTS
}

// newestOf is the newest timestamp a range's answers carry: the commit
// timestamps of writes, the versions reads returned.
func newestOf(resps []*rspb.ResponseUnion) Timestamp {
	var hi Timestamp
	see := func(p *rspb.Timestamp) {
		if t := tsFromProto(p); hi.Less(t) {
			hi = t
		}
	}
	for _, r := range resps {
		switch v := r.GetValue().(type) {
		case *rspb.ResponseUnion_Get:
			see(v.Get.GetKv().GetTimestamp())
		case *rspb.ResponseUnion_Scan:
			for _, kv := range v.Scan.GetKvs() {
				see(kv.GetTimestamp())
			}
		case *rspb.ResponseUnion_Put:
			see(v.Put.GetCommitTimestamp())
		case *rspb.ResponseUnion_Delete:
			see(v.Delete.GetCommitTimestamp())
		case *rspb.ResponseUnion_ConditionalPut:
			see(v.ConditionalPut.GetCommitTimestamp())
		case *rspb.ResponseUnion_Increment:
			see(v.Increment.GetCommitTimestamp())
		case *rspb.ResponseUnion_DeleteRange:
			see(v.DeleteRange.GetCommitTimestamp())
		}
	}
	return hi
}
