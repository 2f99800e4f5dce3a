package gateway

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/ranges/batcheval"
	"github.com/rangestore/rangestore/security"
	"github.com/rangestore/rangestore/timeutil"
)

// The transaction coordinator: the gateway node holds the state of the
// transactions its clients begin (CockroachDB's TxnCoordSender, with
// parallel commits for a last batch of point writes; without write
// pipelining yet).
//
//   - Begin picks an ID (16 random bytes), a read timestamp (the node's
//     clock) and a priority. The handle a client gets is the node ID plus
//     the ID: another node refuses it by name.
//   - The anchor, where the record lives, is the first key the transaction
//     writes; from then on a heartbeat loop keeps the record alive (every
//     HeartbeatInterval; the first creates it). Reads and writes run
//     through the router with the transaction in their context
//     (txnSend): reads at the read timestamp seeing the transaction's
//     intents, writes leaving intents at the write timestamp, which ranges
//     may push (the coordinator keeps the highest). The spans read are
//     kept for refreshing, the spans written for resolution, within
//     MaxIntents/MaxIntentBytes.
//   - Commit: if the write timestamp moved above the read timestamp, the
//     reads are refreshed to it (RefreshRequest: nothing committed or
//     locked in between) or the transaction restarts (TXN_RETRY); then
//     EndTxn(commit) at the anchor writes the record COMMITTED and
//     resolves the intents in the anchor's range; a TXN_RETRY there (a
//     pusher moved the timestamp) refreshes again. The other intents are
//     resolved asynchronously. A read-only transaction commits at its read
//     timestamp without any request.
//   - Rollback, an expired deadline (MaxDuration or the client's timeout)
//     or a client gone quiet (IdleTimeout without a request) abort it:
//     EndTxn(abort) and asynchronous resolution. A heartbeat that finds the
//     record ABORTED (a pusher won) ends it too; its next request or commit
//     answers TXN_ABORTED.
//   - Parallel commit (CommitWith): when the transaction's last requests
//     are point writes, they go out in one round together with an EndTxn
//     that writes the record STAGING, listing them as in-flight writes.
//     Once every one succeeded at or below the staging timestamp, the
//     transaction is committed (implicitly): the client gets its answer
//     after one round of consensus, and the record is made COMMITTED and
//     the intents resolved asynchronously. A write pushed above the
//     staging timestamp falls back to an explicit commit at the higher
//     one. If the round fails, the coordinator settles the outcome before
//     it answers: a rollback that meets the STAGING record runs recovery
//     (recovery.go), which commits if every write landed.
//   - A commit whose outcome is unknown (the EndTxn may have applied) is
//     AMBIGUOUS and is never retried; its intents are left to readers,
//     which learn the outcome from the record.
//
// Every goroutine (one watcher per open transaction, resolution tasks) is
// tracked by wg and stopped by Close, which aborts what is still open.

// TxnConfig configures the coordinator.
type TxnConfig struct {
	HeartbeatInterval time.Duration // 1 s
	MaxDuration       time.Duration // max_txn_duration: 5 min
	IdleTimeout       time.Duration // no request for this long: the client is gone (30 s)
	MaxIntents        int           // spans written (10,000)
	MaxIntentBytes    int           // bytes of their keys (4 MiB)
	// TestingSkipResolve: a committed or aborted transaction's intents
	// outside its anchor's range are left for readers to resolve (as if
	// the coordinator died right after its EndTxn).
	TestingSkipResolve bool
	// CrashPoint, when set, is called at named steps of a commit (fault
	// tests: "txn-after-stage", once a parallel commit's round succeeded,
	// before the client is answered and before the record is made
	// COMMITTED).
	CrashPoint func(name string)
}

// DefaultTxnConfig is the default coordinator configuration.
var DefaultTxnConfig = TxnConfig{HeartbeatInterval: time.Second, MaxDuration: 5 * time.Minute, IdleTimeout: 30 * time.Second,
	MaxIntents: 10000, MaxIntentBytes: 4 << 20}

// maxCommitAttempts bounds the refresh-and-commit rounds of one commit.
const maxCommitAttempts = 4

// handleLen is the length of a transaction handle: node ID and txn ID.
const handleLen = 8 + batcheval.TxnIDLen

// TxnCoordinator coordinates the transactions begun at this node.
type TxnCoordinator struct {
	router  *Router
	clock   *leases.Clock
	nodeID  func() uint64
	cfg     TxnConfig
	metrics *TxnMetrics
	log     *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu     sync.Mutex
	txns   map[string]*coordTxn
	closed bool
	wg     sync.WaitGroup
}

type txnStatus int

const (
	txnOpen txnStatus = iota
	txnCommitted
	txnAborted
	// txnUnknown: its commit was AMBIGUOUS; the record decides.
	txnUnknown
)

// coordTxn is one transaction's coordinator state; mu serializes its
// operations.
type coordTxn struct {
	mu        sync.Mutex
	handleID  string // the ID in its handle (the first incarnation's)
	user      string // who began it: only that user's calls may use it
	txn       *rspb.Transaction
	readSpans []*rspb.Span
	lockSpans []*rspb.Span
	lockSet   map[string]bool // of lockSpans
	lockBytes int
	status    txnStatus
	why       string // why it was aborted
	// restartable: the batch being sent is its first write and it read
	// nothing before (sendLocked).
	restartable bool
	deadline    time.Time
	begun       time.Time
	lastUsed    time.Time
	done        chan struct{} // closed when it is finished

	info      atomic.Pointer[TxnInfo]          // published state (List)
	header    atomic.Pointer[rspb.Transaction] // published header (heartbeats; a copy)
	waiting   atomic.Pointer[waitInfo]         // what its request in flight waits on
	pushedOut atomic.Bool                      // a heartbeat found the record ABORTED
}

// NewTxnCoordinator returns a coordinator sending through router.
func NewTxnCoordinator(router *Router, clock *leases.Clock, nodeID func() uint64, cfg TxnConfig, metrics *TxnMetrics, log *slog.Logger) *TxnCoordinator {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultTxnConfig.HeartbeatInterval
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = DefaultTxnConfig.MaxDuration
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultTxnConfig.IdleTimeout
	}
	if cfg.MaxIntents <= 0 {
		cfg.MaxIntents = DefaultTxnConfig.MaxIntents
	}
	if cfg.MaxIntentBytes <= 0 {
		cfg.MaxIntentBytes = DefaultTxnConfig.MaxIntentBytes
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &TxnCoordinator{router: router, clock: clock, nodeID: nodeID, cfg: cfg, metrics: metrics, log: log,
		txns: map[string]*coordTxn{}, ctx: ctx, cancel: cancel}
}

// TxnInfo describes an open transaction (`rangestore txn list`).
type TxnInfo struct {
	ID             []byte
	Anchor         []byte // internal key (empty: it has not written)
	ReadTimestamp  kv.Timestamp
	WriteTimestamp kv.Timestamp
	Age            time.Duration
	WriteSpans     int
	// WaitingOn: the transaction whose intents its request in flight waits
	// on (nil: none), at WaitingKeys (internal keys), for WaitingFor.
	WaitingOn   []byte
	WaitingKeys [][]byte
	WaitingFor  time.Duration
}

// List returns the transactions this node coordinates now, oldest first.
// It takes no transaction's lock: a request in flight (perhaps waiting on
// a conflict) does not hold it up.
func (c *TxnCoordinator) List() []TxnInfo {
	c.mu.Lock()
	txns := make([]*coordTxn, 0, len(c.txns))
	for _, t := range c.txns {
		txns = append(txns, t)
	}
	c.mu.Unlock()
	out := make([]TxnInfo, 0, len(txns))
	for _, t := range txns {
		info := *t.info.Load()
		info.Age = time.Since(t.begun)
		if w := t.waiting.Load(); w != nil {
			info.WaitingOn, info.WaitingKeys, info.WaitingFor = w.pushee.GetId(), w.keys, time.Since(w.since)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Age > out[j].Age })
	return out
}

// snapshotLocked publishes t's state for List and heartbeats (t.mu held).
func (t *coordTxn) snapshotLocked() {
	t.header.Store(proto.Clone(t.txn).(*rspb.Transaction))
	t.info.Store(&TxnInfo{ID: t.txn.Meta.Id, Anchor: t.txn.Meta.Key, ReadTimestamp: ranges.TSFromProto(t.txn.ReadTimestamp),
		WriteTimestamp: ranges.TSFromProto(t.txn.Meta.WriteTimestamp), WriteSpans: len(t.lockSpans)})
}

func txnErr(code rspb.RangeError_Code, format string, args ...any) error {
	return &RangeError{E: &rspb.RangeError{Code: code, Message: fmt.Sprintf(format, args...)}}
}

// BeginAs starts a transaction for a caller authenticated as user ("" in
// the insecure mode, or a caller inside the node) and returns its handle:
// only that user's calls may use it.
func (c *TxnCoordinator) BeginAs(user string, priority int32, timeout time.Duration) ([]byte, *rspb.Transaction, error) {
	if priority < 0 {
		return nil, nil, invalidf("begin_txn: priority must not be negative (got %d)", priority)
	}
	if timeout < 0 {
		return nil, nil, invalidf("begin_txn: timeout must not be negative (got %v)", timeout)
	}
	if timeout == 0 || timeout > c.cfg.MaxDuration {
		timeout = c.cfg.MaxDuration
	}
	id := make([]byte, batcheval.TxnIDLen)
	if _, err := rand.Read(id); err != nil {
		return nil, nil, err
	}
	now := ranges.TSToProto(c.clock.Now())
	// Normal priorities are 1..MaxInt32-1: the client's, shifted above min.
	pri := int32(1)
	if priority < 1<<31-2 {
		pri += priority
	} else {
		pri = 1<<31 - 2
	}
	t := &coordTxn{
		txn: &rspb.Transaction{Meta: &rspb.TxnMeta{Id: id, WriteTimestamp: now, MinTimestamp: now, Priority: pri,
			CoordinatorNodeId: c.nodeID()}, ReadTimestamp: now, GlobalUncertaintyLimit: ranges.TSToProto(kv.Timestamp{
			WallTime: now.WallTime + int64(c.clock.MaxOffset())})},
		begun: time.Now(), lastUsed: time.Now(), deadline: time.Now().Add(timeout), done: make(chan struct{}),
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, nil, txnErr(rspb.RangeError_UNAVAILABLE, "node n%d is shutting down", c.nodeID())
	}
	t.handleID, t.user = string(id), user
	t.snapshotLocked()
	c.txns[string(id)] = t
	c.wg.Add(1)
	c.mu.Unlock()
	if c.metrics != nil {
		c.metrics.open.Inc()
	}
	go c.watch(t)
	handle := binary.BigEndian.AppendUint64(make([]byte, 0, handleLen), c.nodeID())
	return append(handle, id...), proto.Clone(t.txn).(*rspb.Transaction), nil
}

// get returns the transaction of a handle, or an error naming what is
// wrong; a transaction begun by another user is not found for this one.
func (c *TxnCoordinator) get(ctx context.Context, handle []byte) (*coordTxn, error) {
	if len(handle) != handleLen {
		return nil, invalidf("txn: handle must be %d bytes, as BeginTxn returned it (got %d)", handleLen, len(handle))
	}
	if n := binary.BigEndian.Uint64(handle); n != c.nodeID() {
		return nil, txnErr(rspb.RangeError_FAILED_PRECONDITION, "txn: the handle belongs to a transaction of n%d; send its requests to n%d (this is n%d)", n, n, c.nodeID())
	}
	c.mu.Lock()
	t := c.txns[string(handle[8:])]
	c.mu.Unlock()
	if t == nil || t.user != callerUser(ctx) {
		return nil, txnErr(rspb.RangeError_TXN_ABORTED, "txn %x: no such open transaction of this user on n%d (finished, expired or aborted)", handle[8:], c.nodeID())
	}
	return t, nil
}

// callerUser is the certificate user of the call in ctx ("" without one:
// the insecure mode, or a call from inside the node).
func callerUser(ctx context.Context) string {
	id, _ := security.PeerIdentity(ctx)
	return id.User
}

// usable checks that t can run requests (t.mu held).
func (t *coordTxn) usable() error {
	switch t.status {
	case txnCommitted:
		return txnErr(rspb.RangeError_FAILED_PRECONDITION, "txn %x is already committed", t.txn.Meta.Id)
	case txnUnknown:
		return txnErr(rspb.RangeError_FAILED_PRECONDITION, "txn %x: its commit had an unknown outcome (AMBIGUOUS): it is finished either way", t.txn.Meta.Id)
	case txnAborted:
		return &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_TXN_ABORTED, Txn: t.txn,
			Message: fmt.Sprintf("txn %x was aborted: %s", t.txn.Meta.Id, t.why)}}
	}
	if t.pushedOut.Load() {
		return &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_TXN_ABORTED, Txn: t.txn,
			Message: fmt.Sprintf("txn %x was aborted by a conflicting transaction (its record is ABORTED)", t.txn.Meta.Id)}}
	}
	return nil
}

// Execute runs internal requests in the transaction of handle.
func (c *TxnCoordinator) Execute(ctx context.Context, handle []byte, reqs []*rspb.RequestUnion) ([]*rspb.ResponseUnion, error) {
	t, err := c.get(ctx, handle)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return nil, err
	}
	t.lastUsed = time.Now()
	reads, writes, err := c.spansLocked(t, reqs)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		resps, err := c.sendLocked(ctx, t, reqs, reads, writes)
		if err == nil {
			return resps, nil
		}
		var re *RangeError
		errors.As(err, &re)
		switch {
		case re != nil && re.E.Code == rspb.RangeError_TXN_ABORTED && t.restartable && attempt < maxExecuteRetries:
			// Its first writes found its record uncreatable (its anchor's
			// range got a new lease or split since it began) and it has
			// read nothing: nothing was returned that depends on it, so it
			// restarts as a new incarnation under the same handle; the old
			// one's intents go.
			c.abortAsync(proto.Clone(t.txn).(*rspb.Transaction), t.lockSpans)
			if err := timeutil.Sleep(ctx, timeutil.DefaultTimeSource{}, time.Duration(attempt+1)*20*time.Millisecond); err != nil {
				return nil, err
			}
			if err := c.reincarnateLocked(t); err != nil {
				return nil, err
			}
			continue
		case re != nil && re.E.Code == rspb.RangeError_TXN_RETRY && re.E.Txn != nil && attempt < maxExecuteRetries:
			// A read met a value within its uncertainty interval: move the
			// transaction above it, prove its earlier reads still hold
			// there, and send the batch again.
			if w := ranges.TSFromProto(re.E.Txn.Meta.GetWriteTimestamp()); ranges.TSFromProto(t.txn.Meta.WriteTimestamp).Less(w) {
				t.txn.Meta.WriteTimestamp = ranges.TSToProto(w)
			}
			if rerr := c.refreshLocked(ctx, t); rerr != nil {
				c.abortLocked(t, "refresh failed: "+rerr.Error())
				c.countRestart(rerr)
				return nil, rerr
			}
			continue
		}
		switch {
		case re != nil && re.E.Code == rspb.RangeError_TXN_ABORTED:
			c.abortLocked(t, "a request found it aborted: "+re.E.Message)
		case len(writes) > 0:
			// A write that failed may still have left intents, or may
			// apply later (an ambiguous one): the transaction cannot
			// commit without knowing, so it ends here, and never commits
			// (an intent that lands later is resolved as aborted): the
			// client may run it again.
			c.abortLocked(t, "a write failed: "+err.Error())
			if re == nil || re.E.Code != rspb.RangeError_INVALID_ARGUMENT {
				err = &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_TXN_ABORTED, Txn: t.txn,
					Message: fmt.Sprintf("txn %x: a write failed, so the transaction was aborted: %v", t.txn.Meta.Id, err)}}
			}
		}
		c.countRestart(err)
		return nil, err
	}
}

// maxExecuteRetries bounds the transparent retries of one batch of a
// transaction (restarts of a first write, uncertainty refreshes).
const maxExecuteRetries = 10

// spansLocked returns the spans reqs read and write (t.mu held), or an
// error if the writes would take t past MaxIntents or MaxIntentBytes.
func (c *TxnCoordinator) spansLocked(t *coordTxn, reqs []*rspb.RequestUnion) (reads, writes []*rspb.Span, err error) {
	for _, q := range reqs {
		cmd, err := batcheval.Lookup(q)
		if err != nil {
			return nil, nil, err
		}
		sp := cmd.Span(q)
		s := &rspb.Span{Key: sp.Key}
		if !sp.Point {
			s.EndKey = sp.EndKey
		}
		if cmd.ReadOnly() {
			reads = append(reads, s)
		} else {
			writes = append(writes, s)
		}
	}
	if len(writes) > 0 {
		n, bytes := len(t.lockSpans), t.lockBytes
		for _, s := range writes {
			n, bytes = n+1, bytes+len(s.Key)+len(s.EndKey)
		}
		if n > c.cfg.MaxIntents || bytes > c.cfg.MaxIntentBytes {
			return nil, nil, invalidf("txn %x: %d write spans of %d key bytes would exceed max_txn_intents of %d or max_txn_intent_bytes of %d; split the work into smaller transactions",
				t.txn.Meta.Id, n, bytes, c.cfg.MaxIntents, c.cfg.MaxIntentBytes)
		}
	}
	return reads, writes, nil
}

// reincarnateLocked gives t a new ID and timestamps (t.mu held; nothing
// read or written by it yet counts).
func (c *TxnCoordinator) reincarnateLocked(t *coordTxn) error {
	id := make([]byte, batcheval.TxnIDLen)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	now := ranges.TSToProto(c.clock.Now())
	m := t.txn.Meta
	t.txn = &rspb.Transaction{Meta: &rspb.TxnMeta{Id: id, WriteTimestamp: now, MinTimestamp: now, Priority: m.Priority,
		CoordinatorNodeId: m.CoordinatorNodeId}, ReadTimestamp: now,
		GlobalUncertaintyLimit: ranges.TSToProto(kv.Timestamp{WallTime: now.WallTime + int64(c.clock.MaxOffset())})}
	t.lockSpans, t.lockSet, t.lockBytes, t.readSpans = nil, nil, 0, nil
	return nil
}

// sendLocked sends one batch of t (t.mu held) and records its spans.
func (c *TxnCoordinator) sendLocked(ctx context.Context, t *coordTxn, reqs []*rspb.RequestUnion, reads, writes []*rspb.Span) ([]*rspb.ResponseUnion, error) {
	first := c.anchorLocked(t, writes)
	if first {
		// The record is created with the first writes (a heartbeat in the
		// same batch, which goes to the anchor's range with them), so the
		// transaction is known to pushers from its first intent on: a
		// transaction without a record is aborted by a pusher once a new
		// lease or a split moved the anchor range's low water above its
		// start.
		hb := &rspb.HeartbeatTxnRequest{Key: t.txn.Meta.Key, Txn: proto.Clone(t.txn).(*rspb.Transaction), Now: ranges.TSToProto(c.clock.Now())}
		reqs = append([]*rspb.RequestUnion{{Value: &rspb.RequestUnion_HeartbeatTxn{HeartbeatTxn: hb}}}, reqs...)
	}
	ts := &txnSend{txn: proto.Clone(t.txn).(*rspb.Transaction), onWait: func(w *waitInfo) { t.waiting.Store(w) },
		aborted: t.pushedOut.Load}
	resps, err := c.router.Send(withTxnSend(ctx, ts), reqs)
	t.waiting.Store(nil)
	defer t.snapshotLocked()
	if first && err == nil {
		rec := resps[0].GetHeartbeatTxn().GetTxn()
		resps = resps[1:]
		if rec.GetStatus() == rspb.TransactionStatus_TXN_ABORTED {
			err = &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_TXN_ABORTED, Txn: rec,
				Message: fmt.Sprintf("txn %x: its record cannot be created at its anchor (a new lease or split there since it began): restart", t.txn.Meta.Id)}}
		}
	}
	// Writes may have left intents on some ranges even if others failed.
	t.addLockSpansLocked(writes)
	if w := ts.writeTS; ranges.TSFromProto(t.txn.Meta.WriteTimestamp).Less(w) {
		t.txn.Meta.WriteTimestamp = ranges.TSToProto(w)
	}
	if err != nil {
		return nil, err
	}
	t.readSpans = append(t.readSpans, reads...)
	return resps, nil
}

// anchorLocked picks t's anchor, the first key it writes, if writes are
// its first (t.mu held), and reports whether they are. A first write that
// follows no read is restartable (sendLocked), and starts the transaction
// now: nothing depends on its earlier timestamp, and a lease change or
// split of its anchor's range since Begin must not make its record
// uncreatable.
func (c *TxnCoordinator) anchorLocked(t *coordTxn, writes []*rspb.Span) bool {
	first := len(writes) > 0 && len(t.txn.Meta.Key) == 0
	t.restartable = first && len(t.readSpans) == 0
	if first {
		t.txn.Meta.Key = append([]byte(nil), writes[0].Key...)
		if t.restartable {
			now := ranges.TSToProto(c.clock.Now())
			t.txn.ReadTimestamp, t.txn.Meta.WriteTimestamp, t.txn.Meta.MinTimestamp = now, now, now
		}
	}
	return first
}

// addLockSpansLocked records writes as spans t may hold intents on.
func (t *coordTxn) addLockSpansLocked(writes []*rspb.Span) {
	for _, s := range writes {
		k := string(s.Key) + "\x00" + string(s.EndKey)
		if t.lockSet[k] {
			continue
		}
		if t.lockSet == nil {
			t.lockSet = map[string]bool{}
		}
		t.lockSet[k] = true
		t.lockSpans = append(t.lockSpans, s)
		t.lockBytes += len(s.Key) + len(s.EndKey)
	}
}

// Commit commits the transaction of handle and returns its commit
// timestamp.
func (c *TxnCoordinator) Commit(ctx context.Context, handle []byte) (kv.Timestamp, error) {
	t, err := c.get(ctx, handle)
	if err != nil {
		return kv.Timestamp{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return kv.Timestamp{}, err
	}
	if len(t.txn.Meta.Key) == 0 {
		// Read-only: its reads hold at its read timestamp.
		c.finishLocked(t, txnCommitted, "")
		return ranges.TSFromProto(t.txn.ReadTimestamp), nil
	}
	return c.commitLocked(ctx, t)
}

// commitLocked commits t explicitly (t.mu held): refresh if pushed, then
// EndTxn(commit), again after a push it learns of, up to maxCommitAttempts.
func (c *TxnCoordinator) commitLocked(ctx context.Context, t *coordTxn) (kv.Timestamp, error) {
	for attempt := 0; ; attempt++ {
		if err := c.refreshLocked(ctx, t); err != nil {
			c.abortLocked(t, "refresh failed: "+err.Error())
			c.countRestart(err)
			return kv.Timestamp{}, err
		}
		end := &rspb.EndTxnRequest{Key: t.txn.Meta.Key, Txn: proto.Clone(t.txn).(*rspb.Transaction), Commit: true, LockSpans: t.lockSpans,
			CanForward: len(t.readSpans) == 0}
		out, err := c.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_EndTxn{EndTxn: end}}})
		if err == nil {
			rec := out[0].GetEndTxn().GetTxn()
			if rec.GetStatus() != rspb.TransactionStatus_TXN_COMMITTED {
				return kv.Timestamp{}, txnErr(rspb.RangeError_UNKNOWN, "txn %x: commit answered status %s", t.txn.Meta.Id, rec.GetStatus())
			}
			t.txn = rec
			if out[0].GetEndTxn().GetResolvedAll() {
				t.lockSpans = nil // nothing left to resolve
			}
			c.finishLocked(t, txnCommitted, "")
			return ranges.TSFromProto(rec.Meta.WriteTimestamp), nil
		}
		var re *RangeError
		switch {
		case errors.As(err, &re) && re.E.Code == rspb.RangeError_TXN_RETRY && re.E.Txn != nil && attempt+1 < maxCommitAttempts:
			// Pushed: refresh to the new timestamp and commit again.
			if w := ranges.TSFromProto(re.E.Txn.Meta.GetWriteTimestamp()); ranges.TSFromProto(t.txn.Meta.WriteTimestamp).Less(w) {
				t.txn.Meta.WriteTimestamp = ranges.TSToProto(w)
			}
			continue
		case errors.As(err, &re) && (re.E.Code == rspb.RangeError_TXN_ABORTED || re.E.Code == rspb.RangeError_TXN_RETRY):
			c.abortLocked(t, re.E.Message)
			c.countRestart(err)
			return kv.Timestamp{}, err
		case errors.As(err, &re) && re.E.Code == rspb.RangeError_AMBIGUOUS:
			// It may have committed: never retried, never rolled back, and
			// its intents are not resolved on a guess: its record (COMMITTED,
			// or PENDING and expiring now that heartbeats stop) tells the
			// readers that meet them.
			c.finishLocked(t, txnUnknown, "")
			return kv.Timestamp{}, err
		default:
			// Nothing applied that we know of: roll back.
			c.abortLocked(t, "commit failed: "+err.Error())
			return kv.Timestamp{}, err
		}
	}
}

// refreshLocked moves the read timestamp up to the write timestamp,
// proving the reads still hold there; a failure is TXN_RETRY.
func (c *TxnCoordinator) refreshLocked(ctx context.Context, t *coordTxn) error {
	from, to := ranges.TSFromProto(t.txn.ReadTimestamp), ranges.TSFromProto(t.txn.Meta.WriteTimestamp)
	if !from.Less(to) {
		return nil
	}
	if len(t.readSpans) > 0 {
		hdr := proto.Clone(t.txn).(*rspb.Transaction)
		hdr.ReadTimestamp = hdr.Meta.WriteTimestamp
		reqs := make([]*rspb.RequestUnion, 0, len(t.readSpans))
		for _, s := range t.readSpans {
			reqs = append(reqs, &rspb.RequestUnion{Value: &rspb.RequestUnion_Refresh{Refresh: &rspb.RefreshRequest{
				Key: s.Key, EndKey: s.EndKey, RefreshFrom: t.txn.ReadTimestamp}}})
		}
		if _, err := c.router.Send(withTxnSend(ctx, &txnSend{txn: hdr}), reqs); err != nil {
			return err
		}
	}
	t.txn.ReadTimestamp = t.txn.Meta.WriteTimestamp
	return nil
}

// Rollback aborts the transaction of handle.
func (c *TxnCoordinator) Rollback(ctx context.Context, handle []byte) error {
	t, err := c.get(ctx, handle)
	if err != nil {
		var re *RangeError
		if errors.As(err, &re) && re.E.Code == rspb.RangeError_TXN_ABORTED {
			return nil // already gone: rolling back again is fine
		}
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.status == txnCommitted {
		return txnErr(rspb.RangeError_FAILED_PRECONDITION, "txn %x is already committed: it cannot be rolled back", t.txn.Meta.Id)
	}
	c.abortLocked(t, "rolled back by the client")
	return nil
}

// abortLocked ends t as aborted (t.mu held): EndTxn(abort) and resolution
// run asynchronously.
func (c *TxnCoordinator) abortLocked(t *coordTxn, why string) {
	if t.status != txnOpen {
		return
	}
	c.finishLocked(t, txnAborted, why)
	if c.metrics != nil {
		c.metrics.aborts.WithLabelValues(abortReason(why)).Inc()
	}
	if len(t.txn.Meta.Key) == 0 {
		return
	}
	c.abortAsync(proto.Clone(t.txn).(*rspb.Transaction), t.lockSpans)
}

// abortAsync writes txn's record ABORTED and resolves its intents in
// spans, as a task.
func (c *TxnCoordinator) abortAsync(txn *rspb.Transaction, spans []*rspb.Span) {
	c.async(func(ctx context.Context) {
		end := &rspb.EndTxnRequest{Key: txn.Meta.Key, Txn: txn, Commit: false, LockSpans: spans}
		out, err := c.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_EndTxn{EndTxn: end}}})
		if err != nil {
			c.log.Warn("txn rollback: writing the aborted record failed; pushers will abort it once it expires", "txn", fmt.Sprintf("%x", txn.Meta.Id), "err", err)
			return
		}
		if e := out[0].GetEndTxn(); e.GetNeedsRecovery() {
			// A parallel commit's STAGING record: recovery decides.
			res, err := c.router.recoverTxn(ctx, e.Txn)
			if err != nil {
				c.log.Warn("txn rollback: recovering its STAGING record failed; pushers recover it once it expires", "txn", fmt.Sprintf("%x", txn.Meta.Id), "err", err)
				return
			}
			if rec := res.GetTxn(); isFinal(rec) && !res.ResolvedAll {
				c.resolve(ctx, rec, rec.LockSpans)
			}
			return
		}
		if out[0].GetEndTxn().GetResolvedAll() {
			return
		}
		txn.Status = rspb.TransactionStatus_TXN_ABORTED
		c.resolve(ctx, txn, spans)
	})
}

func abortReason(why string) string {
	switch {
	case len(why) >= 7 && why[:7] == "refresh":
		return "refresh"
	case why == "rolled back by the client":
		return "client"
	case len(why) >= 8 && why[:8] == "deadline":
		return "deadline"
	case len(why) >= 4 && why[:4] == "idle":
		return "idle"
	case len(why) >= 9 && why[:9] == "heartbeat":
		return "pushed"
	}
	return "conflict"
}

// finishLocked ends t (t.mu held) and, once committed, resolves its
// intents asynchronously.
func (c *TxnCoordinator) finishLocked(t *coordTxn, st txnStatus, why string) {
	if t.status != txnOpen {
		return
	}
	t.status, t.why = st, why
	close(t.done)
	c.mu.Lock()
	delete(c.txns, t.handleID)
	c.mu.Unlock()
	if c.metrics != nil {
		c.metrics.open.Dec()
		if st == txnCommitted {
			c.metrics.commits.Inc()
		}
	}
	switch {
	case st == txnCommitted && t.txn.Status == rspb.TransactionStatus_TXN_STAGING:
		// Implicitly committed: make the record COMMITTED first (intents
		// resolved while it is STAGING would read as missing writes to a
		// recovery), then resolve the rest.
		txn, spans := proto.Clone(t.txn).(*rspb.Transaction), t.lockSpans
		c.async(func(ctx context.Context) { c.commitStaged(ctx, txn, spans) })
	case st == txnCommitted && len(t.txn.Meta.Key) > 0 && len(t.lockSpans) > 0:
		txn := proto.Clone(t.txn).(*rspb.Transaction)
		txn.Status = rspb.TransactionStatus_TXN_COMMITTED
		spans := t.lockSpans
		c.async(func(ctx context.Context) { c.resolve(ctx, txn, spans) })
	}
}

// commitStaged makes the STAGING record of the implicitly committed txn
// COMMITTED (an EndTxn, which resolves the intents in the anchor's range),
// then resolves its other intents in spans. A failure leaves the record
// STAGING: once it expires, the readers that meet its intents recover it,
// and find it committed.
func (c *TxnCoordinator) commitStaged(ctx context.Context, txn *rspb.Transaction, spans []*rspb.Span) {
	hdr := proto.Clone(txn).(*rspb.Transaction)
	hdr.Status, hdr.InFlightWrites = rspb.TransactionStatus_TXN_PENDING, nil
	end := &rspb.EndTxnRequest{Key: txn.Meta.Key, Txn: hdr, Commit: true, LockSpans: spans}
	out, err := c.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_EndTxn{EndTxn: end}}})
	if err != nil {
		c.log.Warn("txn commit: making the STAGING record COMMITTED failed; readers will recover it", "txn", fmt.Sprintf("%x", txn.Meta.Id), "err", err)
		return
	}
	e := out[0].GetEndTxn()
	if rec := e.GetTxn(); rec.GetStatus() != rspb.TransactionStatus_TXN_COMMITTED {
		// Never: every in-flight write landed, so nothing can abort it.
		c.log.Error("txn commit: an implicitly committed transaction's record is not COMMITTED", "txn", fmt.Sprintf("%x", txn.Meta.Id), "status", rec.GetStatus())
		return
	}
	if !e.GetResolvedAll() {
		c.resolve(ctx, e.Txn, spans)
	}
}

// resolve resolves the intents of the final txn in spans (resolving again
// those the EndTxn resolved in the anchor's range finds none), then removes
// its record. A failure leaves both to readers and pushers: the record
// stays, so they learn the transaction's outcome from it. Callers skip it
// when the EndTxn resolved everything (EndTxnResponse.resolved_all): the
// ranges' bounds as this node's cache knows them may be stale, so they are
// not used to decide what the EndTxn resolved.
func (c *TxnCoordinator) resolve(ctx context.Context, txn *rspb.Transaction, spans []*rspb.Span) {
	if c.cfg.TestingSkipResolve {
		return
	}
	if err := c.router.resolveTxn(ctx, txn, spans); err != nil {
		c.log.Warn("txn intent resolution failed; readers that meet the intents resolve them, and the record stays", "txn", fmt.Sprintf("%x", txn.Meta.Id), "err", err)
	}
}

// async runs f as a task of the coordinator, bounded by 30 s and by
// Close.
func (c *TxnCoordinator) async(f func(ctx context.Context)) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
		defer cancel()
		f(ctx)
	}()
}

// watch heartbeats t once it has an anchor, and aborts it past its
// deadline or after the client went quiet.
func (c *TxnCoordinator) watch(t *coordTxn) {
	defer c.wg.Done()
	tick := time.NewTicker(c.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-c.ctx.Done():
			t.mu.Lock()
			c.abortLocked(t, "node shutting down")
			t.mu.Unlock()
			return
		case <-tick.C:
		}
		// The heartbeat needs no lock: a request in flight (perhaps waiting
		// on a conflict for long) must not let the record expire.
		if hdr := t.header.Load(); hdr != nil && len(hdr.Meta.Key) > 0 {
			c.heartbeat(t, hdr)
		}
		if !t.mu.TryLock() {
			continue // a request or commit is running: not idle
		}
		now := time.Now()
		switch {
		case t.status != txnOpen:
		case t.pushedOut.Load():
			c.abortLocked(t, "heartbeat found the record aborted by a pusher")
		case now.After(t.deadline):
			c.abortLocked(t, fmt.Sprintf("deadline: open for %v, past its timeout or max_txn_duration", now.Sub(t.begun).Round(time.Millisecond)))
		case now.Sub(t.lastUsed) > c.cfg.IdleTimeout:
			c.abortLocked(t, fmt.Sprintf("idle for %v: the client is gone", now.Sub(t.lastUsed).Round(time.Millisecond)))
		}
		t.mu.Unlock()
	}
}

// heartbeat heartbeats t's record with its published header and what it
// waits on now (the edge pushers follow to find deadlocks). A record found
// aborted marks t (pushedOut): its next request, commit or watch tick ends
// it.
func (c *TxnCoordinator) heartbeat(t *coordTxn, hdr *rspb.Transaction) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.HeartbeatInterval)
	defer cancel()
	txn := proto.Clone(hdr).(*rspb.Transaction)
	if w := t.waiting.Load(); w != nil {
		txn.WaitingOn = w.pushee
	}
	hb := &rspb.HeartbeatTxnRequest{Key: txn.Meta.Key, Txn: txn, Now: ranges.TSToProto(c.clock.Now())}
	out, err := c.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_HeartbeatTxn{HeartbeatTxn: hb}}})
	if err != nil {
		return // the next tick tries again
	}
	if rec := out[0].GetHeartbeatTxn().GetTxn(); rec.GetStatus() == rspb.TransactionStatus_TXN_ABORTED {
		t.pushedOut.Store(true)
	}
}

// countRestart counts a retryable error returned to a client.
func (c *TxnCoordinator) countRestart(err error) {
	var re *RangeError
	if c.metrics == nil || !errors.As(err, &re) {
		return
	}
	switch re.E.Code {
	case rspb.RangeError_TXN_RETRY, rspb.RangeError_TXN_ABORTED, rspb.RangeError_WRITE_INTENT:
		c.metrics.restarts.WithLabelValues(re.E.Code.String()).Inc()
	}
}

// Close aborts the open transactions and waits for every goroutine of the
// coordinator.
func (c *TxnCoordinator) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}
