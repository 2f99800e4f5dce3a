package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// DefaultBookmarkReadyTimeout bounds how long a CAUSAL read waits for a
// replica's closed timestamp to pass its bookmarks (Neo4j's
// bookmark_ready_timeout); a request's bookmark_timeout may shorten it.
const DefaultBookmarkReadyTimeout = 30 * time.Second

// Bookmarks: opaque to clients, bookmarkLen bytes: a version byte, the
// commit timestamp (wall time, 8 bytes, and logical, 4 bytes, big-endian)
// and a CRC-32C of the cluster ID followed by the 13 bytes before it. A
// bookmark from another cluster fails the checksum like a corrupted one.
const (
	bookmarkVersion byte = 1
	bookmarkLen          = 1 + 8 + 4 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func bookmarkSum(clusterID string, body []byte) uint32 {
	h := crc32.New(castagnoli)
	_, _ = h.Write([]byte(clusterID))
	_, _ = h.Write(body)
	return h.Sum32()
}

// EncodeBookmark returns the bookmark of a write committed at ts in the
// cluster clusterID.
func EncodeBookmark(clusterID string, ts kv.Timestamp) []byte {
	b := make([]byte, 0, bookmarkLen)
	b = append(b, bookmarkVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(ts.WallTime))
	b = binary.BigEndian.AppendUint32(b, uint32(ts.Logical))
	return binary.BigEndian.AppendUint32(b, bookmarkSum(clusterID, b))
}

// DecodeBookmark returns the commit timestamp a bookmark of cluster
// clusterID holds.
func DecodeBookmark(clusterID string, b []byte) (kv.Timestamp, error) {
	switch {
	case len(b) != bookmarkLen:
		return kv.Timestamp{}, fmt.Errorf("malformed bookmark: %d bytes, want %d", len(b), bookmarkLen)
	case b[0] != bookmarkVersion:
		return kv.Timestamp{}, fmt.Errorf("malformed bookmark: version %d, this node reads version %d", b[0], bookmarkVersion)
	case binary.BigEndian.Uint32(b[13:]) != bookmarkSum(clusterID, b[:13]):
		return kv.Timestamp{}, errors.New("bookmark checksum mismatch: corrupted, or from another cluster")
	}
	ts := kv.Timestamp{WallTime: int64(binary.BigEndian.Uint64(b[1:9])), Logical: int32(binary.BigEndian.Uint32(b[9:13]))}
	if ts.IsEmpty() || ts.WallTime < 0 || ts.Logical < 0 {
		return kv.Timestamp{}, fmt.Errorf("malformed bookmark: timestamp %s", ts)
	}
	return ts, nil
}

// readOpts is how a read that is not STRONG is routed (Router,
// sendFollowerRead): the nearest replica serves at its closed timestamp,
// which must be at least minTS; it may wait up to wait for that (CAUSAL),
// else the leaseholder serves.
type readOpts struct {
	mode  rspb.ReadMode
	minTS kv.Timestamp
	wait  time.Duration
	// until (CAUSAL) ends the whole read, every range and every replica
	// tried, the leaseholder included: wait is the budget of one request,
	// not of each attempt.
	until time.Time
}

type readOptsKey struct{}

func withReadOpts(ctx context.Context, o *readOpts) context.Context {
	if o == nil {
		return ctx
	}
	return context.WithValue(ctx, readOptsKey{}, o)
}

func readOptsFrom(ctx context.Context) *readOpts {
	o, _ := ctx.Value(readOptsKey{}).(*readOpts)
	return o
}

// readModeFields are a request's read mode fields (Get, Scan and Batch
// have the same ones, read by name).
type readModeFields struct {
	mode         rspb.ReadMode
	maxStaleness *durationpb.Duration
	bookmarks    [][]byte
	timeout      *durationpb.Duration
}

func readModeOf(m protoreflect.Message) readModeFields {
	var f readModeFields
	fd := m.Descriptor().Fields()
	if x := fd.ByName("read_mode"); x != nil {
		f.mode = rspb.ReadMode(m.Get(x).Enum())
	}
	if x := fd.ByName("max_staleness"); x != nil && m.Has(x) {
		f.maxStaleness = m.Get(x).Message().Interface().(*durationpb.Duration)
	}
	if x := fd.ByName("bookmarks"); x != nil {
		l := m.Get(x).List()
		for i := 0; i < l.Len(); i++ {
			f.bookmarks = append(f.bookmarks, l.Get(i).Bytes())
		}
	}
	if x := fd.ByName("bookmark_timeout"); x != nil && m.Has(x) {
		f.timeout = m.Get(x).Message().Interface().(*durationpb.Duration)
	}
	return f
}

func (f readModeFields) set() bool {
	return f.mode != rspb.ReadMode_STRONG || f.maxStaleness != nil || len(f.bookmarks) > 0 || f.timeout != nil
}

// readOptions validates a request's read mode (prefix names the request,
// "" for a top-level one) and returns how to route it (nil: STRONG). Bad
// input is INVALID_ARGUMENT naming the field.
func (s *KVServer) readOptions(ctx context.Context, prefix string, f readModeFields, asOf *rspb.Timestamp) (*readOpts, error) {
	if _, ok := rspb.ReadMode_name[int32(f.mode)]; !ok {
		return nil, invalidf("%sread_mode: unknown read mode %d", prefix, f.mode)
	}
	if f.mode != rspb.ReadMode_STRONG && asOf != nil {
		return nil, invalidf("%sas_of: not allowed with read_mode %s (a %s read picks its timestamp)", prefix, f.mode, f.mode)
	}
	if f.mode != rspb.ReadMode_BOUNDED_STALENESS && f.maxStaleness != nil {
		return nil, invalidf("%smax_staleness: only for read_mode BOUNDED_STALENESS, not %s", prefix, f.mode)
	}
	if f.mode != rspb.ReadMode_CAUSAL && len(f.bookmarks) > 0 {
		return nil, invalidf("%sbookmarks: only for read_mode CAUSAL, not %s", prefix, f.mode)
	}
	if f.mode != rspb.ReadMode_CAUSAL && f.timeout != nil {
		return nil, invalidf("%sbookmark_timeout: only for read_mode CAUSAL, not %s", prefix, f.mode)
	}
	switch f.mode {
	case rspb.ReadMode_BOUNDED_STALENESS:
		if f.maxStaleness == nil {
			return nil, invalidf("%smax_staleness: required for read_mode BOUNDED_STALENESS (a positive duration)", prefix)
		}
		if err := f.maxStaleness.CheckValid(); err != nil {
			return nil, invalidf("%smax_staleness: %v", prefix, err)
		}
		d := f.maxStaleness.AsDuration()
		if d <= 0 {
			return nil, invalidf("%smax_staleness: %v: must be positive", prefix, d)
		}
		now := s.clock.Now()
		return &readOpts{mode: f.mode, minTS: kv.Timestamp{WallTime: now.WallTime - int64(d)}}, nil
	case rspb.ReadMode_CAUSAL:
		wait := DefaultBookmarkReadyTimeout
		if f.timeout != nil {
			if err := f.timeout.CheckValid(); err != nil {
				return nil, invalidf("%sbookmark_timeout: %v", prefix, err)
			}
			switch d := f.timeout.AsDuration(); {
			case d < 0:
				return nil, invalidf("%sbookmark_timeout: %v: must not be negative", prefix, d)
			case d > 0 && d < wait:
				wait = d
			}
		}
		var hi kv.Timestamp
		for i, b := range f.bookmarks {
			ts, err := DecodeBookmark(s.clusterID(), b)
			if err != nil {
				return nil, invalidf("%sbookmarks[%d]: %v", prefix, i, err)
			}
			if err := s.clock.CheckPeer(ts, s.clock.MaxOffset()); err != nil {
				return nil, invalidf("%sbookmarks[%d]: bookmark timestamp %s is in the future beyond the max clock offset: %v", prefix, i, ts, err)
			}
			if hi.Less(ts) {
				hi = ts
			}
		}
		if dl, ok := ctx.Deadline(); ok {
			// Answer before the caller gives up, with the reason.
			wait = min(wait, time.Until(dl)-attemptTimeout/3)
		}
		wait = max(wait, 0)
		return &readOpts{mode: f.mode, minTS: hi, wait: wait, until: time.Now().Add(wait)}, nil
	}
	return nil, nil
}

// clusterID is the cluster's ID as bookmarks are checksummed with it.
func (s *KVServer) clusterID() string {
	if s.cluster == nil {
		return ""
	}
	return s.cluster()
}

// SetClusterID tells the server its cluster's ID (bookmarks).
func (s *KVServer) SetClusterID(f func() string) { s.cluster = f }

// commitTimestamp returns a write response's commit_timestamp (empty if it
// has none, e.g. a failed conditional put). Responses are read by field
// name: every write response has commit_timestamp and bookmark.
func commitTimestamp(r *rspb.ResponseUnion) (kv.Timestamp, bool) {
	inner, ok := innerResponse(r)
	if !ok {
		return kv.Timestamp{}, false
	}
	fd := inner.Descriptor().Fields().ByName("commit_timestamp")
	if fd == nil {
		return kv.Timestamp{}, false
	}
	if !inner.Has(fd) {
		return kv.Timestamp{}, true
	}
	return ranges.TSFromProto(inner.Get(fd).Message().Interface().(*rspb.Timestamp)), true
}

func setBookmark(r *rspb.ResponseUnion, b []byte) {
	if inner, ok := innerResponse(r); ok {
		if fd := inner.Descriptor().Fields().ByName("bookmark"); fd != nil {
			inner.Set(fd, protoreflect.ValueOfBytes(b))
		}
	}
}

func innerRequest(q *rspb.RequestUnion) (protoreflect.Message, bool) {
	if q == nil {
		return nil, false
	}
	m := q.ProtoReflect()
	which := m.WhichOneof(m.Descriptor().Oneofs().ByName("value"))
	if which == nil {
		return nil, false
	}
	return m.Get(which).Message(), true
}

func innerResponse(r *rspb.ResponseUnion) (protoreflect.Message, bool) {
	if r == nil {
		return nil, false
	}
	m := r.ProtoReflect()
	which := m.WhichOneof(m.Descriptor().Oneofs().ByName("value"))
	if which == nil {
		return nil, false
	}
	return m.Get(which).Message(), true
}

// readBookmarkFor returns the bookmark of the newest version a read-only
// batch returned (its Gets' values and Scans' rows), or nil if it returned
// none: a CAUSAL read carrying it sees those versions or newer ones.
func (s *KVServer) readBookmarkFor(resps []*rspb.ResponseUnion) []byte {
	var hi kv.Timestamp
	for _, r := range resps {
		if g := r.GetGet(); g.GetFound() {
			hi = newestVersion(hi, []*rspb.KeyValue{g.GetKv()})
		}
		hi = newestVersion(hi, r.GetScan().GetKvs())
	}
	return s.readBookmark(hi)
}

// newestVersion returns the newest of hi and the versions of kvs.
func newestVersion(hi kv.Timestamp, kvs []*rspb.KeyValue) kv.Timestamp {
	for _, x := range kvs {
		if ts := ranges.TSFromProto(x.GetTimestamp()); hi.Less(ts) {
			hi = ts
		}
	}
	return hi
}

// readBookmark is the bookmark of a read whose newest version is hi (nil
// if it read none).
func (s *KVServer) readBookmark(hi kv.Timestamp) []byte {
	if hi.IsEmpty() {
		return nil
	}
	return EncodeBookmark(s.clusterID(), hi)
}

// bookmarkFor returns the bookmark of a batch's writes: the highest commit
// timestamp among them; when none has one (a conditional put whose
// condition failed wrote nothing), this node's clock, which the router
// moved past every timestamp its replicas answered with.
func (s *KVServer) bookmarkFor(resps []*rspb.ResponseUnion) []byte {
	var hi kv.Timestamp
	for _, r := range resps {
		if ts, ok := commitTimestamp(r); ok && hi.Less(ts) {
			hi = ts
		}
	}
	if hi.IsEmpty() {
		hi = s.clock.Now()
	}
	return EncodeBookmark(s.clusterID(), hi)
}
