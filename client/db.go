package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/proto/rspb"
)

const (
	// openPageRanges, maxOpenPages: Open reads the routing table in pages
	// of this many ranges, at most this many pages (the rest is looked up
	// on use).
	openPageRanges = 1000
	maxOpenPages   = 10
	// defaultRoutingTTL is used until a routing table says otherwise.
	defaultRoutingTTL = 300 * time.Second
)

// DB is a client of a rangestore cluster: it routes every request straight
// to the leaseholder of its range, through a cache of ranges and
// leaseholders. It is safe for concurrent use; Close releases it.
type DB struct {
	cfg   config
	pool  *pool
	cache rangeCache
	seeds []string
	stats stats

	closed atomic.Bool
	ttl    atomic.Int64 // the routing TTL, nanoseconds

	mu       sync.Mutex
	nodes    map[uint64]string // node ID -> address, from routing entries
	lastDisc string            // the address that last answered a routing table
	flights  map[string]*flight
}

// flight is a routing-table lookup in progress, shared by the callers
// that need the same key.
type flight struct {
	done chan struct{}
	err  error
}

// Open returns a client of the cluster that the nodes at addrs (gRPC
// addresses, host:port; one is enough, more give failover) belong to. It
// reads the cluster's routing table before returning, so a wrong address
// or certificate fails here. ctx bounds Open only.
func Open(ctx context.Context, addrs []string, opts ...Option) (*DB, error) {
	if ctx == nil {
		return nil, invalidf("open", "ctx: nil context")
	}
	if len(addrs) == 0 {
		return nil, invalidf("open", "addrs: at least one node address is needed")
	}
	for i, a := range addrs {
		if strings.TrimSpace(a) == "" {
			return nil, invalidf("open", "addrs[%d]: empty address", i)
		}
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	db := &DB{cfg: cfg, pool: newPool(&cfg), seeds: append([]string(nil), addrs...),
		nodes: map[uint64]string{}, flights: map[string]*flight{}}
	db.ttl.Store(int64(defaultRoutingTTL))
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	}
	start := []byte{}
	for range maxOpenPages {
		more, next, err := db.fetchRouting(ctx, start, openPageRanges)
		if err != nil {
			db.Close()
			return nil, withOp(err, "open")
		}
		if !more || next == nil {
			break
		}
		start = next
	}
	cfg.log.Debug("client opened", "seeds", addrs, "ranges", db.cache.len())
	return db, nil
}

// Close closes the connections; calls in flight and later ones fail with
// Closed. Close starts no goroutine and leaves none behind.
func (db *DB) Close() {
	if db.closed.Swap(true) {
		return
	}
	db.pool.close()
}

// Stats returns the routing counters.
func (db *DB) Stats() Stats {
	return Stats{Attempts: db.stats.attempts.Load(), Redirects: db.stats.redirects.Load(), StaleRanges: db.stats.stale.Load(),
		TransportFailures: db.stats.transport.Load(), RoutingLookups: db.stats.lookups.Load(), TxnRetries: db.stats.txnRetries.Load()}
}

func (db *DB) routingTTL() time.Duration { return time.Duration(db.ttl.Load()) }

// noteServers records the addresses of an entry's nodes.
func (db *DB) noteServers(e *entry) {
	db.mu.Lock()
	for _, s := range e.servers {
		db.nodes[s.id] = s.addr
	}
	db.mu.Unlock()
}

// discoveryOrder lists the addresses to ask for a routing table: the one
// that answered last, the seeds, the other known nodes; those that failed
// lately last.
func (db *DB) discoveryOrder() []string {
	db.mu.Lock()
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	add(db.lastDisc)
	for _, a := range db.seeds {
		add(a)
	}
	for _, a := range db.nodes {
		add(a)
	}
	db.mu.Unlock()
	var fresh, suspect []string
	for _, a := range out {
		if db.pool.suspect(a) {
			suspect = append(suspect, a)
		} else {
			fresh = append(fresh, a)
		}
	}
	return append(fresh, suspect...)
}

// fetchRouting reads up to limit ranges of the routing table from start
// into the cache, asking the nodes in discoveryOrder until one answers.
// It returns whether the table holds more and where they start.
func (db *DB) fetchRouting(ctx context.Context, start []byte, limit int32) (more bool, next []byte, err error) {
	req := &rspb.GetRoutingTableRequest{StartKey: start, Limit: limit, IncludeWriter: true, Locality: db.cfg.localityTiers()}
	var errs []string
	for _, addr := range db.discoveryOrder() {
		dc, err := db.pool.discovery(addr)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return false, nil, &Error{Code: Closed, Op: "routing", Message: "the DB is closed"}
			}
			errs = append(errs, fmt.Sprintf("%s: %v", addr, err))
			continue
		}
		actx, cancel := context.WithTimeout(ctx, db.cfg.retry.AttemptTimeout)
		resp, err := dc.GetRoutingTable(actx, req)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return false, nil, ctxError("routing", ctx.Err(), fmt.Errorf("%s: %w", addr, err))
			}
			switch status.Code(err) {
			case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument:
				return false, nil, fromStatus("routing", fmt.Errorf("%s: %w", addr, err))
			}
			db.pool.markFailed(addr)
			errs = append(errs, fmt.Sprintf("%s: %v", addr, err))
			continue
		}
		db.pool.markOK(addr)
		db.stats.lookups.Add(1)
		if resp.TtlSeconds > 0 {
			db.ttl.Store(int64(time.Duration(resp.TtlSeconds) * time.Second))
		}
		exp := time.Now().Add(db.routingTTL())
		for _, r := range resp.Ranges {
			e := entryFromRouting(r, exp)
			db.cache.insert(e)
			db.noteServers(e)
			next = e.end
		}
		db.mu.Lock()
		db.lastDisc = addr
		db.mu.Unlock()
		db.cfg.log.Debug("routing table read", "from", addr, "start", fmt.Sprintf("%q", start), "ranges", len(resp.Ranges), "more", resp.More)
		return resp.More, next, nil
	}
	return false, nil, &Error{Code: Unavailable, Op: "routing", Message: fmt.Sprintf("no node answered for the routing table: %s%s", strings.Join(errs, "; "), modeHint(errs))}
}

// modeHint explains handshakes that fail the same way at every node: a
// plaintext client of TLS nodes, or the other way round.
func modeHint(errs []string) string {
	all := func(s string) bool {
		for _, e := range errs {
			if !strings.Contains(e, s) {
				return false
			}
		}
		return len(errs) > 0
	}
	switch {
	case all("error reading server preface"):
		return " (the nodes may require TLS: give the client certificate's credentials with WithTransportCredentials)"
	case all("first record does not look like a TLS handshake"):
		return " (the nodes serve plaintext, as started with --insecure: open without WithTransportCredentials)"
	}
	return ""
}

// refresh reads the routing table from key into the cache; concurrent
// refreshes of the same key share one lookup.
func (db *DB) refresh(ctx context.Context, key []byte) error {
	k := string(key)
	db.mu.Lock()
	if f := db.flights[k]; f != nil {
		db.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	db.flights[k] = f
	db.mu.Unlock()
	_, _, f.err = db.fetchRouting(ctx, key, db.cfg.routingBatch)
	db.mu.Lock()
	delete(db.flights, k)
	db.mu.Unlock()
	close(f.done)
	return f.err
}

// resolve returns the cached range holding key, reading the routing table
// when there is none (or its TTL expired).
func (db *DB) resolve(ctx context.Context, op string, key []byte) (*entry, error) {
	var last error
	for depth := 0; ; depth++ {
		e := db.cache.lookup(key)
		if e != nil && time.Now().Before(e.expires) {
			return e, nil
		}
		if err := db.refresh(ctx, key); err != nil {
			if ce, ok := errors.AsType[*Error](err); ok && (ce.Code == Closed || ce.Code == PermissionDenied || ce.Code == Unauthenticated) {
				return nil, withOp(ce, op)
			}
			last = err
		}
		if ne := db.cache.lookup(key); ne != nil {
			return ne, nil
		}
		if e != nil {
			return e, nil // expired, and no node answered: use it
		}
		// No range holds the key yet (a split is being recorded), or no
		// node answered: wait.
		d := min(time.Duration(depth+1)*db.cfg.retry.MinBackoff, db.cfg.retry.MaxBackoff)
		if err := sleep(ctx, jitter(d)); err != nil {
			return nil, ctxError(op, err, last)
		}
		if depth+1 >= db.cfg.retry.MaxAttempts {
			return nil, &Error{Code: Unavailable, Op: op, Message: fmt.Sprintf("no range found for key %q after %d lookups (last error: %v)", key, depth+1, last)}
		}
	}
}

// begin checks a call's context and gives it the default deadline.
func (db *DB) begin(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	if ctx == nil {
		return nil, nil, invalidf(op, "ctx: nil context")
	}
	if db.closed.Load() {
		return nil, nil, &Error{Code: Closed, Op: op, Message: "the DB is closed"}
	}
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, db.cfg.timeout)
	return ctx, cancel, nil
}

// exec runs requests (client keys) for op: validates them, applies the
// session's read defaults, sends them and merges the answers in order,
// with each request's bookmark.
func (db *DB) exec(ctx context.Context, s *Session, op string, reqs []*rspb.RequestUnion, ro readOpts, batch bool) ([]*rspb.ResponseUnion, [][]byte, error) {
	ctx, cancel, err := db.begin(ctx, op)
	if err != nil {
		return nil, nil, err
	}
	defer cancel()
	if err := validate(op, reqs, batch); err != nil {
		return nil, nil, err
	}
	write := !readOnly(reqs)
	if write && !ro.strong() {
		return nil, nil, invalidf(op, "read mode %s: for reads only; a batch with writes is Strong", ro.mode)
	}
	if !write {
		s.readDefaults(&ro)
	}
	c := &call{db: db, op: op, ro: ro}
	parts, err := c.send(ctx, reqs)
	if err != nil {
		return nil, nil, err
	}
	out := make([]*rspb.ResponseUnion, len(reqs))
	bms := make([][]byte, len(reqs))
	for i, q := range reqs {
		var ts Timestamp
		out[i], bms[i], ts = merge(q, parts[i])
		s.observe(bms[i], ts)
	}
	return out, bms, nil
}

// validate checks what the client can check of requests without the
// cluster's limits (which the nodes enforce, naming them): keys and spans.
func validate(op string, reqs []*rspb.RequestUnion, batch bool) error {
	if len(reqs) == 0 {
		return invalidf(op, "batch: no requests")
	}
	for i, q := range reqs {
		prefix := ""
		if batch {
			prefix = fmt.Sprintf("requests[%d]: ", i)
		}
		var key []byte
		var name string
		switch v := q.GetValue().(type) {
		case *rspb.RequestUnion_Get:
			key, name = v.Get.GetKey(), "get"
		case *rspb.RequestUnion_Put:
			key, name = v.Put.GetKey(), "put"
		case *rspb.RequestUnion_Delete:
			key, name = v.Delete.GetKey(), "delete"
		case *rspb.RequestUnion_ConditionalPut:
			key, name = v.ConditionalPut.GetKey(), "conditional_put"
		case *rspb.RequestUnion_Increment:
			key, name = v.Increment.GetKey(), "increment"
		case *rspb.RequestUnion_Scan:
			sc := v.Scan
			if len(sc.GetEndKey()) > 0 && string(sc.GetStartKey()) > string(sc.GetEndKey()) {
				return invalidf(op, "%sscan: start key %q is after end key %q", prefix, sc.GetStartKey(), sc.GetEndKey())
			}
			continue
		case *rspb.RequestUnion_DeleteRange:
			dr := v.DeleteRange
			if len(dr.GetStartKey()) == 0 {
				return invalidf(op, "%sdelete_range: start key: empty start key is not allowed", prefix)
			}
			if len(dr.GetEndKey()) > 0 && string(dr.GetStartKey()) > string(dr.GetEndKey()) {
				return invalidf(op, "%sdelete_range: start key %q is after end key %q", prefix, dr.GetStartKey(), dr.GetEndKey())
			}
			continue
		default:
			return invalidf(op, "%sempty request", prefix)
		}
		if len(key) == 0 {
			if batch {
				return invalidf(op, "%s%s: key: empty key is not allowed", prefix, name)
			}
			return invalidf(op, "key: empty key is not allowed")
		}
	}
	return nil
}

// Get reads key: its value, or an error matching ErrNotFound.
func (db *DB) Get(ctx context.Context, key []byte, opts ...ReadOption) (KeyValue, error) {
	return db.get(ctx, nil, key, opts)
}

func (db *DB) get(ctx context.Context, s *Session, key []byte, opts []ReadOption) (KeyValue, error) {
	ro := applyReadOptions(opts)
	if err := ro.check("get", false); err != nil {
		return KeyValue{}, err
	}
	g := &rspb.GetRequest{Key: key}
	if ro.asOf != nil {
		g.AsOf = ro.asOf.proto()
	}
	resps, _, err := db.exec(ctx, s, "get", []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: g}}}, ro, false)
	if err != nil {
		return KeyValue{}, err
	}
	r := resps[0].GetGet()
	if !r.GetFound() {
		return KeyValue{}, &Error{Code: NotFound, Op: "get", Message: fmt.Sprintf("key %q has no value", key)}
	}
	return kvFromProto(r.GetKv()), nil
}

// Put writes value under key.
func (db *DB) Put(ctx context.Context, key, value []byte) (WriteResult, error) {
	return db.put(ctx, nil, key, value)
}

func (db *DB) put(ctx context.Context, s *Session, key, value []byte) (WriteResult, error) {
	resps, bms, err := db.exec(ctx, s, "put", []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: key, Value: value}}}}, readOpts{}, false)
	if err != nil {
		return WriteResult{}, err
	}
	return WriteResult{Timestamp: tsFromProto(resps[0].GetPut().GetCommitTimestamp()), Bookmark: bms[0]}, nil
}

// Delete deletes key; existed says whether it had a live value.
func (db *DB) Delete(ctx context.Context, key []byte) (existed bool, err error) {
	return db.delete(ctx, nil, key)
}

func (db *DB) delete(ctx context.Context, s *Session, key []byte) (bool, error) {
	resps, _, err := db.exec(ctx, s, "delete", []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Delete{Delete: &rspb.DeleteRequest{Key: key}}}}, readOpts{}, false)
	if err != nil {
		return false, err
	}
	return resps[0].GetDelete().GetExisted(), nil
}

// ConditionalPut writes value under key if cond holds; otherwise it
// returns a *ConditionFailedError (matching ErrConditionFailed) saying
// what the key holds.
func (db *DB) ConditionalPut(ctx context.Context, key, value []byte, cond Condition) error {
	return db.cput(ctx, nil, "conditional_put", key, value, cond, false)
}

// ConditionalDelete deletes key if cond holds (see ConditionalPut).
func (db *DB) ConditionalDelete(ctx context.Context, key []byte, cond Condition) error {
	return db.cput(ctx, nil, "conditional_delete", key, nil, cond, true)
}

func (db *DB) cput(ctx context.Context, s *Session, op string, key, value []byte, cond Condition, del bool) error {
	if !cond.set {
		return invalidf(op, "cond: no condition (use client.IfAbsent() or client.IfValue(v))")
	}
	q := &rspb.ConditionalPutRequest{Key: key, Value: value, ExpectedValue: cond.value, ExpectAbsent: cond.absent, Delete: del}
	resps, _, err := db.exec(ctx, s, op, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: q}}}, readOpts{}, false)
	if err != nil {
		return err
	}
	if r := resps[0].GetConditionalPut(); !r.GetSucceeded() {
		return &ConditionFailedError{Key: key, ActualExists: r.GetActualExists(), ActualValue: r.GetActualValue()}
	}
	return nil
}

// Increment adds delta to the integer (decimal) value of key, a missing
// key counting as 0, and returns the new value. A retried Increment
// applies once.
func (db *DB) Increment(ctx context.Context, key []byte, delta int64) (int64, error) {
	return db.increment(ctx, nil, key, delta)
}

func (db *DB) increment(ctx context.Context, s *Session, key []byte, delta int64) (int64, error) {
	resps, _, err := db.exec(ctx, s, "increment", []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: key, Delta: delta}}}}, readOpts{}, false)
	if err != nil {
		return 0, err
	}
	return resps[0].GetIncrement().GetNewValue(), nil
}

// DeleteRange deletes every key in [start, end) (empty end: to the end of
// the keyspace) and returns how many it deleted. Across ranges it is
// atomic per range only.
func (db *DB) DeleteRange(ctx context.Context, start, end []byte) (int64, error) {
	return db.deleteRange(ctx, nil, start, end)
}

func (db *DB) deleteRange(ctx context.Context, s *Session, start, end []byte) (int64, error) {
	resps, _, err := db.exec(ctx, s, "delete_range", []*rspb.RequestUnion{{Value: &rspb.RequestUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeRequest{StartKey: start, EndKey: end}}}}, readOpts{}, false)
	if err != nil {
		return 0, err
	}
	return resps[0].GetDeleteRange().GetDeleted(), nil
}

// Batch runs b's requests: one atomic command per range, the ranges' parts
// in parallel, results in b's order. opts give a read-only batch its read
// mode (a batch with writes is Strong).
func (db *DB) Batch(ctx context.Context, b *Batch, opts ...ReadOption) ([]Result, error) {
	return db.batch(ctx, nil, b, opts)
}

func (db *DB) batch(ctx context.Context, s *Session, b *Batch, opts []ReadOption) ([]Result, error) {
	if b == nil {
		return nil, invalidf("batch", "b: nil batch")
	}
	if len(b.errs) > 0 {
		return nil, b.errs[0]
	}
	ro := applyReadOptions(opts)
	if err := ro.check("batch", false); err != nil {
		return nil, err
	}
	reqs := b.reqs
	if ro.asOf != nil {
		// The batch's AsOf is every read's.
		reqs = make([]*rspb.RequestUnion, len(b.reqs))
		for i, q := range b.reqs {
			switch v := q.GetValue().(type) {
			case *rspb.RequestUnion_Get:
				g := &rspb.GetRequest{Key: v.Get.GetKey(), AsOf: ro.asOf.proto()}
				q = &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: g}}
			case *rspb.RequestUnion_Scan:
				sc := clipSpan(q, v.Scan.GetStartKey(), v.Scan.GetEndKey()).GetScan()
				sc.AsOf = ro.asOf.proto()
				q = &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: sc}}
			default:
				return nil, invalidf("batch", "AsOf: for read-only batches (requests[%d] writes)", i)
			}
			reqs[i] = q
		}
	}
	resps, bms, err := db.exec(ctx, s, "batch", reqs, ro, true)
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(resps))
	for i, r := range resps {
		out[i] = resultFromProto(r)
		out[i].Bookmark = bms[i]
	}
	return out, nil
}
