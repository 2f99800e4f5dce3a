package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"time"

	"github.com/rangestore/rangestore/internal/batchsplit"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Scan returns the keys in [start, end) (empty bounds: open) in key order,
// descending with Reverse, as an iterator over the rows streamed range by
// range:
//
//	for kv, err := range db.Scan(ctx, []byte("a"), []byte("b"), client.Limit(100)) {
//		if err != nil { ... }
//	}
//
// An error is the iterator's last item. Each range is read at its own
// time; AsOf reads them all at one timestamp. A stream cut by a failure
// resumes after the last row returned, at another replica if need be.
// Breaking out of the loop ends the stream.
func (db *DB) Scan(ctx context.Context, start, end []byte, opts ...ReadOption) iter.Seq2[KeyValue, error] {
	return db.scan(ctx, nil, start, end, opts)
}

func (db *DB) scan(ctx context.Context, s *Session, start, end []byte, opts []ReadOption) iter.Seq2[KeyValue, error] {
	return func(yield func(KeyValue, error) bool) {
		if ctx == nil {
			yield(KeyValue{}, invalidf("scan", "ctx: nil context"))
			return
		}
		if db.closed.Load() {
			yield(KeyValue{}, &Error{Code: Closed, Op: "scan", Message: "the DB is closed"})
			return
		}
		ro := applyReadOptions(opts)
		if err := ro.check("scan", true); err != nil {
			yield(KeyValue{}, err)
			return
		}
		if len(end) > 0 && bytes.Compare(start, end) > 0 {
			yield(KeyValue{}, invalidf("scan", "start key %q is after end key %q", start, end))
			return
		}
		s.readDefaults(&ro)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		c := &call{db: db, op: "scan", ro: ro}
		q := &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: start, EndKey: end}}}
		pieces, err := c.split(ctx, batchsplit.Piece{Req: q})
		if err != nil {
			yield(KeyValue{}, err)
			return
		}
		if ro.reverse {
			slices.Reverse(pieces)
		}
		sc := &scanner{c: c, s: s, yield: yield, remaining: ro.limit}
		for _, p := range pieces {
			sp := p.Piece.Req.GetScan()
			if !sc.scanRange(ctx, p.Range, sp.GetStartKey(), sp.GetEndKey()) || ro.limit > 0 && sc.remaining == 0 {
				return
			}
		}
	}
}

// scanner streams a scan's ranges one by one to the consumer.
type scanner struct {
	c         *call
	s         *Session
	yield     func(KeyValue, error) bool
	remaining int64 // rows still wanted (with a limit)
	// stopped: the consumer broke out of the loop, or an error was yielded.
	stopped bool
}

// scanRange streams [lo, hi) of range e (hi nil: open), from the
// leaseholder for a Strong scan, else from the nearest replica (the node
// routes the stream), resuming after the last row on another node when a
// stream breaks. It reports whether the scan goes on.
func (sc *scanner) scanRange(ctx context.Context, e *entry, lo, hi []byte) bool {
	db, ro := sc.c.db, sc.c.ro
	budget := db.cfg.retry.MaxAttempts
	backoff := db.cfg.retry.MinBackoff
	lastRefresh := time.Now()
	var last error
	for round := 0; ; round++ {
		for _, t := range db.targets(e, ro.strong()) {
			if budget == 0 {
				sc.fail(&Error{Code: Unavailable, Op: "scan", Message: fmt.Sprintf("range r%d unavailable: the retry budget of %d attempts ran out (last error: %v)", e.rangeID, db.cfg.retry.MaxAttempts, last)})
				return false
			}
			budget--
			req := &rspb.ScanRequest{StartKey: lo, EndKey: hi, Limit: sc.remaining, Reverse: ro.reverse, KeysOnly: ro.keysOnly}
			if ro.asOf != nil {
				req.AsOf = ro.asOf.proto()
			}
			ro.fillScan(req)
			err := sc.stream(ctx, t.addr, req, func(kv *rspb.KeyValue) {
				if ro.reverse {
					hi = kv.GetKey()
				} else {
					lo = append(append([]byte(nil), kv.GetKey()...), 0)
				}
			})
			if sc.stopped {
				return false
			}
			if err == nil {
				db.pool.markOK(t.addr)
				return true
			}
			last = err
			if errors.Is(err, ErrClosed) || db.closed.Load() {
				sc.fail(&Error{Code: Closed, Op: "scan", Message: "the DB is closed", Err: err})
				return false
			}
			if ctx.Err() != nil {
				sc.fail(ctxError("scan", ctx.Err(), err))
				return false
			}
			if !transportFailure(err) {
				sc.fail(fromStatus("scan", err))
				return false
			}
			db.stats.transport.Add(1)
			db.pool.markFailed(t.addr)
			db.cache.clearWriter(e.rangeID, t.id)
		}
		if time.Since(lastRefresh) >= refreshEvery || round == 0 {
			lastRefresh = time.Now()
			if db.refresh(ctx, lo) == nil {
				if ne := db.cache.lookup(lo); ne != nil {
					e = ne // the rest of the span may lie in other ranges: the node routes it
				}
			}
		}
		if err := sleep(ctx, jitter(backoff)); err != nil {
			sc.fail(ctxError("scan", err, last))
			return false
		}
		backoff = min(2*backoff, db.cfg.retry.MaxBackoff)
	}
}

// stream runs one Scan stream at addr, handing each row to the consumer
// (and to advance, which moves the resume position). A nil error is the
// stream's end, or the limit reached.
func (sc *scanner) stream(ctx context.Context, addr string, req *rspb.ScanRequest, advance func(*rspb.KeyValue)) error {
	db := sc.c.db
	kv, err := db.pool.kv(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	db.stats.attempts.Add(1)
	st, err := kv.Scan(ctx, req)
	if err != nil {
		return err
	}
	var newest Timestamp
	for {
		chunk, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range chunk.GetKvs() {
			advance(p)
			row := kvFromProto(p)
			if newest.Less(row.Timestamp) {
				newest = row.Timestamp
			}
			if !sc.yield(row, nil) {
				sc.stopped = true
				sc.s.observe(chunk.GetBookmark(), newest)
				return nil
			}
			if sc.remaining > 0 {
				if sc.remaining--; sc.remaining == 0 {
					sc.s.observe(chunk.GetBookmark(), newest)
					return nil
				}
			}
		}
		sc.s.observe(chunk.GetBookmark(), newest)
	}
}

// fail yields err as the last item.
func (sc *scanner) fail(err error) {
	sc.stopped = true
	sc.yield(KeyValue{}, err)
}
