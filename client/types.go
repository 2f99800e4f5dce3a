package client

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Timestamp is a hybrid logical clock timestamp: a commit timestamp, or
// the time a read is made at (AsOf).
type Timestamp struct {
	WallTime int64 // nanoseconds since the Unix epoch
	Logical  int32
}

// IsZero reports whether t is unset.
func (t Timestamp) IsZero() bool { return t.WallTime == 0 && t.Logical == 0 }

// Less orders timestamps.
func (t Timestamp) Less(o Timestamp) bool {
	return t.WallTime < o.WallTime || t.WallTime == o.WallTime && t.Logical < o.Logical
}

// Time is the wall time of t.
func (t Timestamp) Time() time.Time { return time.Unix(0, t.WallTime) }

func (t Timestamp) String() string {
	return fmt.Sprintf("%d.%09d,%d", t.WallTime/1e9, t.WallTime%1e9, t.Logical)
}

func tsFromProto(p *rspb.Timestamp) Timestamp {
	return Timestamp{WallTime: p.GetWallTime(), Logical: p.GetLogical()}
}

func (t Timestamp) proto() *rspb.Timestamp {
	return &rspb.Timestamp{WallTime: t.WallTime, Logical: t.Logical}
}

// KeyValue is a key and its value, with the commit timestamp of the
// version read.
type KeyValue struct {
	Key, Value []byte
	Timestamp  Timestamp
}

func kvFromProto(p *rspb.KeyValue) KeyValue {
	return KeyValue{Key: p.GetKey(), Value: p.GetValue(), Timestamp: tsFromProto(p.GetTimestamp())}
}

// Condition is what a conditional write expects of the key: IfAbsent or
// IfValue. The zero Condition is invalid.
type Condition struct {
	set    bool
	absent bool
	value  []byte
}

// IfAbsent: the key must have no live value.
func IfAbsent() Condition { return Condition{set: true, absent: true} }

// IfValue: the key's current value must equal v.
func IfValue(v []byte) Condition { return Condition{set: true, value: v} }

// ReadOption chooses how a read is served (Strong, AsOf, BoundedStaleness,
// Causal, WithBookmarks, BookmarkTimeout) and, for scans, what it returns
// (Limit, Reverse, KeysOnly).
type ReadOption func(*readOpts)

type readOpts struct {
	mode         rspb.ReadMode
	modeSet      bool
	maxStaleness time.Duration
	bookmarks    [][]byte
	timeout      time.Duration
	timeoutSet   bool
	asOf         *Timestamp
	// Scan options, and the names of those given (refused outside scans).
	limit    int64
	reverse  bool
	keysOnly bool
	scanOnly []string
}

// Strong reads the latest committed state at the range's leaseholder
// (the default outside a Session).
func Strong() ReadOption {
	return func(o *readOpts) { o.mode, o.modeSet = rspb.ReadMode_STRONG, true }
}

// AsOf reads the state as of ts, at the leaseholder (a strong read in the
// past: the same result on every range of a scan or batch).
func AsOf(ts Timestamp) ReadOption {
	return func(o *readOpts) { o.asOf = &ts }
}

// BoundedStaleness lets the nearest replica serve the read at its closed
// timestamp if that is at most d old; else the leaseholder serves it.
func BoundedStaleness(d time.Duration) ReadOption {
	return func(o *readOpts) { o.mode, o.modeSet, o.maxStaleness = rspb.ReadMode_BOUNDED_STALENESS, true, d }
}

// Causal lets the nearest replica serve the read once it has caught up
// with the bookmarks given (WithBookmarks, or a Session's): the read sees
// every write they stand for.
func Causal() ReadOption {
	return func(o *readOpts) { o.mode, o.modeSet = rspb.ReadMode_CAUSAL, true }
}

// WithBookmarks makes the read Causal, carrying these bookmarks (from
// WriteResult.Bookmark, Session.Bookmark).
func WithBookmarks(bookmarks ...[]byte) ReadOption {
	return func(o *readOpts) {
		o.mode, o.modeSet = rspb.ReadMode_CAUSAL, true
		o.bookmarks = append(o.bookmarks, bookmarks...)
	}
}

// BookmarkTimeout bounds how long a Causal read waits for a replica to
// catch up (0: the server's default, 30 s).
func BookmarkTimeout(d time.Duration) ReadOption {
	return func(o *readOpts) { o.timeout, o.timeoutSet = d, true }
}

// Limit returns at most n rows (scans only; 0: no limit).
func Limit(n int64) ReadOption {
	return func(o *readOpts) { o.limit = n; o.scanOnly = append(o.scanOnly, "Limit") }
}

// Reverse scans in descending key order (scans only).
func Reverse() ReadOption {
	return func(o *readOpts) { o.reverse = true; o.scanOnly = append(o.scanOnly, "Reverse") }
}

// KeysOnly returns keys without values (scans only).
func KeysOnly() ReadOption {
	return func(o *readOpts) { o.keysOnly = true; o.scanOnly = append(o.scanOnly, "KeysOnly") }
}

func applyReadOptions(opts []ReadOption) readOpts {
	var o readOpts
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return o
}

// check validates read options for op (scan: whether scan options are
// allowed).
func (o *readOpts) check(op string, scan bool) error {
	if !scan && len(o.scanOnly) > 0 {
		return invalidf(op, "%s: a scan option, not for %s", o.scanOnly[0], op)
	}
	if o.limit < 0 {
		return invalidf(op, "Limit %d: must not be negative (0: no limit)", o.limit)
	}
	switch o.mode {
	case rspb.ReadMode_BOUNDED_STALENESS:
		if o.maxStaleness <= 0 {
			return invalidf(op, "BoundedStaleness %v: must be positive", o.maxStaleness)
		}
	case rspb.ReadMode_CAUSAL:
	default:
		if len(o.bookmarks) > 0 {
			return invalidf(op, "WithBookmarks: only for Causal reads, not %s", o.mode)
		}
	}
	if o.maxStaleness != 0 && o.mode != rspb.ReadMode_BOUNDED_STALENESS {
		return invalidf(op, "BoundedStaleness: conflicts with %s (give one read mode)", o.mode)
	}
	if o.asOf != nil && o.mode != rspb.ReadMode_STRONG {
		return invalidf(op, "AsOf: only for Strong reads, not %s (which picks its own timestamp)", o.mode)
	}
	if o.asOf != nil && (o.asOf.WallTime <= 0 || o.asOf.Logical < 0) {
		return invalidf(op, "AsOf %s: not a valid timestamp", *o.asOf)
	}
	if o.timeoutSet && o.mode != rspb.ReadMode_CAUSAL {
		return invalidf(op, "BookmarkTimeout: only for Causal reads, not %s", o.mode)
	}
	if o.timeout < 0 {
		return invalidf(op, "BookmarkTimeout %v: must not be negative", o.timeout)
	}
	return nil
}

// strong reports whether the read goes to the leaseholder.
func (o *readOpts) strong() bool { return o.mode == rspb.ReadMode_STRONG }

// fill sets the read mode fields of a BatchRequest.
func (o *readOpts) fill(b *rspb.BatchRequest) {
	if o.strong() {
		return
	}
	b.ReadMode = o.mode
	if o.mode == rspb.ReadMode_BOUNDED_STALENESS {
		b.MaxStaleness = durationpb.New(o.maxStaleness)
	}
	if o.mode == rspb.ReadMode_CAUSAL {
		b.Bookmarks = o.bookmarks
		if o.timeoutSet {
			b.BookmarkTimeout = durationpb.New(o.timeout)
		}
	}
}

// fillScan sets the read mode fields of a streamed ScanRequest.
func (o *readOpts) fillScan(s *rspb.ScanRequest) {
	var b rspb.BatchRequest
	o.fill(&b)
	s.ReadMode, s.MaxStaleness, s.Bookmarks, s.BookmarkTimeout = b.ReadMode, b.MaxStaleness, b.Bookmarks, b.BookmarkTimeout
}

// WriteResult is what a write returns besides its own result.
type WriteResult struct {
	// Timestamp is the write's commit timestamp.
	Timestamp Timestamp
	// Bookmark stands for the write: a Causal read carrying it (on any
	// replica) sees the write.
	Bookmark []byte
}

// Result is the result of one request of a Batch, in the batch's order;
// the fields of its request type are set.
type Result struct {
	// Get: whether the key had a live value, and that value.
	Found bool
	KV    KeyValue
	// Scan: the rows.
	Rows []KeyValue
	// Delete: whether a live value was deleted.
	Existed bool
	// ConditionalPut, ConditionalDelete: whether the condition held (a
	// failed condition is not an error inside a batch), and if not what
	// the key held.
	Succeeded    bool
	ActualExists bool
	ActualValue  []byte
	// Increment: the new value.
	Value int64
	// DeleteRange: the number of keys deleted.
	Deleted int64
	// Writes: the commit timestamp.
	Timestamp Timestamp
	// Bookmark: of the range part that served the request (a write's,
	// or the newest version a read returned; see WriteResult.Bookmark).
	Bookmark []byte
}

func resultFromProto(r *rspb.ResponseUnion) Result {
	var out Result
	switch v := r.GetValue().(type) {
	case *rspb.ResponseUnion_Get:
		out.Found = v.Get.GetFound()
		if out.Found {
			out.KV = kvFromProto(v.Get.GetKv())
		}
	case *rspb.ResponseUnion_Scan:
		out.Rows = make([]KeyValue, 0, len(v.Scan.GetKvs()))
		for _, kv := range v.Scan.GetKvs() {
			out.Rows = append(out.Rows, kvFromProto(kv))
		}
	case *rspb.ResponseUnion_Put:
		out.Timestamp = tsFromProto(v.Put.GetCommitTimestamp())
	case *rspb.ResponseUnion_Delete:
		out.Existed, out.Timestamp = v.Delete.GetExisted(), tsFromProto(v.Delete.GetCommitTimestamp())
	case *rspb.ResponseUnion_ConditionalPut:
		c := v.ConditionalPut
		out.Succeeded, out.ActualExists, out.ActualValue = c.GetSucceeded(), c.GetActualExists(), c.GetActualValue()
		out.Timestamp = tsFromProto(c.GetCommitTimestamp())
	case *rspb.ResponseUnion_Increment:
		out.Value, out.Timestamp = v.Increment.GetNewValue(), tsFromProto(v.Increment.GetCommitTimestamp())
	case *rspb.ResponseUnion_DeleteRange:
		out.Deleted, out.Timestamp = v.DeleteRange.GetDeleted(), tsFromProto(v.DeleteRange.GetCommitTimestamp())
	}
	return out
}

// Batch collects requests for DB.Batch (or Session.Batch). The requests
// that fall into one range are applied atomically, as one command; a
// batch spanning several ranges is atomic per range only, and its ranges'
// parts are sent in parallel. Results come back in the order added.
type Batch struct {
	reqs []*rspb.RequestUnion
	// errs: bad input found while adding (reported by DB.Batch).
	errs []error
}

func (b *Batch) add(q *rspb.RequestUnion) *Batch {
	b.reqs = append(b.reqs, q)
	return b
}

// Len is the number of requests.
func (b *Batch) Len() int { return len(b.reqs) }

// Get reads a key.
func (b *Batch) Get(key []byte) *Batch {
	return b.add(&rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: key}}})
}

// Put writes a key.
func (b *Batch) Put(key, value []byte) *Batch {
	return b.add(&rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: key, Value: value}}})
}

// Delete deletes a key.
func (b *Batch) Delete(key []byte) *Batch {
	return b.add(&rspb.RequestUnion{Value: &rspb.RequestUnion_Delete{Delete: &rspb.DeleteRequest{Key: key}}})
}

// ConditionalPut writes value if cond holds.
func (b *Batch) ConditionalPut(key, value []byte, cond Condition) *Batch {
	if !cond.set {
		b.errs = append(b.errs, invalidf("batch", "requests[%d]: conditional_put of %q: no condition (use client.IfAbsent() or client.IfValue(v))", len(b.reqs), key))
	}
	return b.add(&rspb.RequestUnion{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{
		Key: key, Value: value, ExpectedValue: cond.value, ExpectAbsent: cond.absent}}})
}

// ConditionalDelete deletes the key if cond holds.
func (b *Batch) ConditionalDelete(key []byte, cond Condition) *Batch {
	if !cond.set {
		b.errs = append(b.errs, invalidf("batch", "requests[%d]: conditional delete of %q: no condition (use client.IfAbsent() or client.IfValue(v))", len(b.reqs), key))
	}
	return b.add(&rspb.RequestUnion{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{
		Key: key, ExpectedValue: cond.value, ExpectAbsent: cond.absent, Delete: true}}})
}

// Increment adds delta to the integer value of key (a missing key counts
// as 0).
func (b *Batch) Increment(key []byte, delta int64) *Batch {
	return b.add(&rspb.RequestUnion{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: key, Delta: delta}}})
}

// DeleteRange deletes every key in [start, end) (empty end: to the end of
// the keyspace).
func (b *Batch) DeleteRange(start, end []byte) *Batch {
	return b.add(&rspb.RequestUnion{Value: &rspb.RequestUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeRequest{StartKey: start, EndKey: end}}})
}

// Scan reads the keys in [start, end) (empty bounds: open); opts may be
// Limit, Reverse, KeysOnly and AsOf (the batch's read mode is
// DB.Batch's).
func (b *Batch) Scan(start, end []byte, opts ...ReadOption) *Batch {
	o := applyReadOptions(opts)
	if o.modeSet || len(o.bookmarks) > 0 || o.timeoutSet {
		b.errs = append(b.errs, invalidf("batch", "requests[%d]: scan: a read mode is the batch's (pass it to Batch), not the scan's", len(b.reqs)))
	}
	if o.limit < 0 {
		b.errs = append(b.errs, invalidf("batch", "requests[%d]: scan: Limit %d: must not be negative (0: no limit)", len(b.reqs), o.limit))
	}
	s := &rspb.ScanRequest{StartKey: start, EndKey: end, Limit: o.limit, Reverse: o.reverse, KeysOnly: o.keysOnly}
	if o.asOf != nil {
		s.AsOf = o.asOf.proto()
	}
	return b.add(&rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: s}})
}
