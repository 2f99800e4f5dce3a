package kv

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// KeyValue is one visible MVCC version: the user key, its value and the
// version's timestamp. Key and Value never alias engine memory.
type KeyValue struct {
	Key       []byte
	Value     []byte
	Timestamp Timestamp
}

// ScanOptions controls MVCCScan.
type ScanOptions struct {
	// Limit is the maximum number of live keys returned; 0 means no limit.
	Limit int
	// MaxBytes stops the scan once at least this many key+value bytes have
	// been returned; 0 means no limit.
	MaxBytes int64
	// KeyOverhead is added to MaxBytes' count for every key returned (the
	// encoding cost of a key/value in a response).
	KeyOverhead int64
	// Reverse iterates from end-1 down to start.
	Reverse bool
}

// GCStats reports the work done by MVCCGarbageCollect.
type GCStats struct {
	// KeysScanned is the number of distinct user keys examined.
	KeysScanned int64
	// VersionsRemoved is the number of versions deleted.
	VersionsRemoved int64
}

// MVCCStats summarizes a span as of MaxTimestamp.
type MVCCStats struct {
	// LiveKeys is the number of keys whose newest version is a live value.
	LiveKeys int64
	// LiveBytes is len(userKey)+len(value) summed over those newest versions.
	LiveBytes int64
	// Versions is the total number of versions, tombstones included.
	Versions int64
}

func checkReadTimestamp(ts Timestamp) error {
	if ts.IsEmpty() {
		return ErrEmptyTimestamp
	}
	if ts.WallTime < 0 || ts.Logical < 0 {
		return fmt.Errorf("kv: negative timestamp %s", ts)
	}
	return nil
}

func cloneBytes(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}

// closeIter closes it, reporting its error into *errp unless an error is
// already set.
func closeIter(it *pebble.Iterator, errp *error) {
	if cerr := it.Close(); cerr != nil && *errp == nil {
		*errp = fmt.Errorf("kv: close iterator: %w", cerr)
	}
}

// userKeyFromPrefix decodes the user key from an encoded per-key prefix
// (DataPrefix + escaped key + terminator).
func userKeyFromPrefix(prefix []byte) ([]byte, error) {
	k, err := unescapeUserKey(prefix[1 : len(prefix)-terminatorLen])
	if err != nil {
		return nil, fmt.Errorf("kv: malformed MVCC key prefix %x: %w", prefix, err)
	}
	return k, nil
}

// userKeyLenFromPrefix returns the length of the user key encoded in prefix
// without allocating.
func userKeyLenFromPrefix(prefix []byte) int {
	esc := prefix[1 : len(prefix)-terminatorLen]
	return len(esc) - bytes.Count(esc, []byte{escapeByte})
}

// MVCCGet returns the newest version of key with timestamp <= readTS. If that
// version is a tombstone, or there is none, found is false.
func MVCCGet(r Reader, key []byte, readTS Timestamp) (kv KeyValue, found bool, err error) {
	if len(key) == 0 {
		return KeyValue{}, false, fmt.Errorf("kv: get: %w", ErrEmptyKey)
	}
	if err := checkReadTimestamp(readTS); err != nil {
		return KeyValue{}, false, fmt.Errorf("kv: get %q: %w", key, err)
	}
	prefix := EncodeDataSpanStart(key)
	lower := appendVersion(cloneBytes(prefix), readTS)
	it, err := r.NewIter(lower, versionsEnd(prefix))
	if err != nil {
		return KeyValue{}, false, err
	}
	defer closeIter(it, &err)
	if !it.First() {
		if err := it.Error(); err != nil {
			return KeyValue{}, false, fmt.Errorf("kv: get %q: %w", key, err)
		}
		return KeyValue{}, false, nil
	}
	_, ts, err := splitMVCCKey(it.Key())
	if err != nil {
		return KeyValue{}, false, err
	}
	raw, err := it.ValueAndErr()
	if err != nil {
		return KeyValue{}, false, fmt.Errorf("kv: get %q: %w", key, err)
	}
	payload, tombstone, err := decodeValue(raw)
	if err != nil || tombstone {
		return KeyValue{}, false, err
	}
	return KeyValue{Key: cloneBytes(key), Value: cloneBytes(payload), Timestamp: ts}, true, nil
}

// MVCCGetNewestVersion returns the timestamp of the newest version (value or
// tombstone) of key, if any. New writes to key must be above it.
func MVCCGetNewestVersion(r Reader, key []byte) (ts Timestamp, exists bool, err error) {
	if len(key) == 0 {
		return Timestamp{}, false, fmt.Errorf("kv: get newest version: %w", ErrEmptyKey)
	}
	prefix := EncodeDataSpanStart(key)
	it, err := r.NewIter(prefix, versionsEnd(prefix))
	if err != nil {
		return Timestamp{}, false, err
	}
	defer closeIter(it, &err)
	if !it.First() {
		if err := it.Error(); err != nil {
			return Timestamp{}, false, fmt.Errorf("kv: get newest version %q: %w", key, err)
		}
		return Timestamp{}, false, nil
	}
	_, ts, err = splitMVCCKey(it.Key())
	if err != nil {
		return Timestamp{}, false, err
	}
	return ts, true, nil
}

// visibleFunc is called by scanVisible for each live visible version, in scan
// order. kv.Key is a fresh copy; kv.Value aliases iterator memory and is only
// valid during the call. Returning stop=true ends the scan.
type visibleFunc func(kv KeyValue) (stop bool, err error)

// samePrefix reports whether engine key k is a version of the user key whose
// encoded prefix is prefix.
func samePrefix(k, prefix []byte) bool {
	return len(k) == len(prefix)+versionSuffixLen && bytes.HasPrefix(k, prefix)
}

// nextUserKey positions it at the first version of the next user key after
// the one with the given prefix (or invalidates it). It steps a few times
// before falling back to a seek.
func nextUserKey(it *pebble.Iterator, prefix []byte) bool {
	for i := 0; i < 4; i++ {
		if !it.Next() {
			return false
		}
		if !samePrefix(it.Key(), prefix) {
			return true
		}
	}
	return it.SeekGE(versionsEnd(prefix))
}

// scanVisible iterates the live keys of [start, end) as of readTS, calling fn
// with each one's newest visible version. If fn stops the scan and further
// user keys exist in the span, resume is returned: for forward scans the next
// user key (inclusive start of the next call), for reverse scans the last
// visited key (exclusive end of the next call).
func scanVisible(r Reader, start, end []byte, readTS Timestamp, reverse bool, fn visibleFunc) (resume []byte, err error) {
	if err := checkReadTimestamp(readTS); err != nil {
		return nil, fmt.Errorf("kv: scan: %w", err)
	}
	lower, upper, err := DataSpanBounds(start, end)
	if err != nil {
		return nil, err
	}
	if end != nil && bytes.Equal(start, end) {
		return nil, nil
	}
	it, err := r.NewIter(lower, upper)
	if err != nil {
		return nil, err
	}
	defer closeIter(it, &err)

	// visit handles the version at the iterator's position, which must be
	// the newest visible version of prefix's user key.
	visit := func(prefix []byte, ts Timestamp) (bool, []byte, error) {
		raw, err := it.ValueAndErr()
		if err != nil {
			return false, nil, fmt.Errorf("kv: scan: %w", err)
		}
		payload, tombstone, err := decodeValue(raw)
		if err != nil || tombstone {
			return false, nil, err
		}
		key, err := userKeyFromPrefix(prefix)
		if err != nil {
			return false, nil, err
		}
		stop, err := fn(KeyValue{Key: key, Value: payload, Timestamp: ts})
		return stop, key, err
	}

	if !reverse {
		valid := it.First()
		for valid {
			prefixLen, ts, err := splitMVCCKey(it.Key())
			if err != nil {
				return nil, err
			}
			prefix := cloneBytes(it.Key()[:prefixLen])
			if readTS.Less(ts) {
				// Skip versions newer than readTS.
				valid = it.SeekGE(appendVersion(cloneBytes(prefix), readTS))
				if !valid {
					break
				}
				if !samePrefix(it.Key(), prefix) {
					continue // no visible version; now at the next user key
				}
				if _, ts, err = splitMVCCKey(it.Key()); err != nil {
					return nil, err
				}
			}
			stop, _, err := visit(prefix, ts)
			if err != nil {
				return nil, err
			}
			valid = nextUserKey(it, prefix)
			if stop {
				if !valid {
					break
				}
				pl, _, err := splitMVCCKey(it.Key())
				if err != nil {
					return nil, err
				}
				return userKeyFromPrefix(it.Key()[:pl])
			}
		}
	} else {
		valid := it.Last()
		for valid {
			// Positioned at the oldest version of some user key.
			prefixLen, oldest, err := splitMVCCKey(it.Key())
			if err != nil {
				return nil, err
			}
			prefix := cloneBytes(it.Key()[:prefixLen])
			stop := false
			var key []byte
			if oldest.LessEq(readTS) {
				if !it.SeekGE(appendVersion(cloneBytes(prefix), readTS)) || !samePrefix(it.Key(), prefix) {
					if err := it.Error(); err != nil {
						return nil, fmt.Errorf("kv: scan: %w", err)
					}
					return nil, fmt.Errorf("kv: scan: lost position at key prefix %x", prefix)
				}
				_, ts, err := splitMVCCKey(it.Key())
				if err != nil {
					return nil, err
				}
				if stop, key, err = visit(prefix, ts); err != nil {
					return nil, err
				}
			}
			valid = it.SeekLT(prefix)
			if stop {
				if valid {
					return key, nil
				}
				break
			}
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("kv: scan: %w", err)
	}
	return nil, nil
}

// MVCCScan returns the live keys in [start, end) as of readTS (each key's
// newest version with timestamp <= readTS; keys whose visible version is a
// tombstone are skipped), ascending, or descending if opts.Reverse. end ==
// nil means no upper bound. If the scan stopped because of Limit or MaxBytes
// and more keys may remain, resume is non-nil: for forward scans the start
// key (inclusive) of the next call, for reverse scans the exclusive end of
// the next call (the last returned key).
func MVCCScan(r Reader, start, end []byte, readTS Timestamp, opts ScanOptions) (kvs []KeyValue, resume []byte, err error) {
	if opts.Limit < 0 || opts.MaxBytes < 0 {
		return nil, nil, fmt.Errorf("kv: scan: negative limit")
	}
	var nbytes int64
	resume, err = scanVisible(r, start, end, readTS, opts.Reverse, func(kv KeyValue) (bool, error) {
		kv.Value = cloneBytes(kv.Value)
		kvs = append(kvs, kv)
		nbytes += int64(len(kv.Key)+len(kv.Value)) + opts.KeyOverhead
		return (opts.Limit > 0 && len(kvs) >= opts.Limit) ||
			(opts.MaxBytes > 0 && nbytes >= opts.MaxBytes), nil
	})
	if err != nil {
		return nil, nil, err
	}
	return kvs, resume, nil
}

// MVCCDeleteRange writes tombstones at ts for every key live as of ts in
// [start, end) and returns those keys, up to max (0 = no limit). resume is as
// for a forward MVCCScan. Reads go through b, so its earlier writes are
// respected.
func MVCCDeleteRange(b *Batch, start, end []byte, ts Timestamp, max int) (deleted [][]byte, resume []byte, err error) {
	if ts.IsEmpty() {
		return nil, nil, fmt.Errorf("kv: delete range: %w", ErrEmptyTimestamp)
	}
	if max < 0 {
		return nil, nil, fmt.Errorf("kv: delete range: negative max")
	}
	// Collect first, then write: the batch must not change under its own
	// iterator.
	resume, err = scanVisible(b, start, end, ts, false, func(kv KeyValue) (bool, error) {
		deleted = append(deleted, kv.Key)
		return max > 0 && len(deleted) >= max, nil
	})
	if err != nil {
		return nil, nil, err
	}
	for _, k := range deleted {
		if err := b.DeleteMVCC(k, ts); err != nil {
			return nil, nil, err
		}
	}
	return deleted, resume, nil
}

// MVCCGarbageCollect deletes (into b) the versions in [start, end) that can
// never be read at or above threshold: per key, among the versions with
// timestamp <= threshold only the newest is kept, and it too is removed if it
// is a tombstone. Versions above threshold are never touched. r may be b.
func MVCCGarbageCollect(b *Batch, r Reader, start, end []byte, threshold Timestamp) (stats GCStats, err error) {
	lower, upper, err := DataSpanBounds(start, end)
	if err != nil {
		return GCStats{}, err
	}
	if threshold.IsEmpty() || (end != nil && bytes.Equal(start, end)) {
		return GCStats{}, nil
	}
	it, err := r.NewIter(lower, upper)
	if err != nil {
		return GCStats{}, err
	}
	defer closeIter(it, &err)

	var prefix []byte
	sawVisible := false // a version <= threshold was already seen for prefix
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		prefixLen, ts, err := splitMVCCKey(k)
		if err != nil {
			return stats, err
		}
		if !bytes.Equal(k[:prefixLen], prefix) {
			prefix = cloneBytes(k[:prefixLen])
			stats.KeysScanned++
			sawVisible = false
		}
		if threshold.Less(ts) {
			continue
		}
		if !sawVisible {
			sawVisible = true
			raw, err := it.ValueAndErr()
			if err != nil {
				return stats, fmt.Errorf("kv: gc: %w", err)
			}
			_, tombstone, err := decodeValue(raw)
			if err != nil {
				return stats, err
			}
			if !tombstone {
				continue
			}
		}
		if err := b.DeleteRaw(k); err != nil {
			return stats, err
		}
		stats.VersionsRemoved++
	}
	if err := it.Error(); err != nil {
		return stats, fmt.Errorf("kv: gc: %w", err)
	}
	return stats, nil
}

// ComputeStats computes MVCCStats for [start, end) as of MaxTimestamp.
func ComputeStats(r Reader, start, end []byte) (stats MVCCStats, err error) {
	lower, upper, err := DataSpanBounds(start, end)
	if err != nil {
		return MVCCStats{}, err
	}
	it, err := r.NewIter(lower, upper)
	if err != nil {
		return MVCCStats{}, err
	}
	defer closeIter(it, &err)
	var prefix []byte
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		prefixLen, _, err := splitMVCCKey(k)
		if err != nil {
			return MVCCStats{}, err
		}
		stats.Versions++
		if bytes.Equal(k[:prefixLen], prefix) {
			continue
		}
		prefix = cloneBytes(k[:prefixLen])
		raw, err := it.ValueAndErr()
		if err != nil {
			return MVCCStats{}, fmt.Errorf("kv: stats: %w", err)
		}
		payload, tombstone, err := decodeValue(raw)
		if err != nil {
			return MVCCStats{}, err
		}
		if !tombstone {
			stats.LiveKeys++
			stats.LiveBytes += int64(userKeyLenFromPrefix(prefix) + len(payload))
		}
	}
	if err := it.Error(); err != nil {
		return MVCCStats{}, fmt.Errorf("kv: stats: %w", err)
	}
	return stats, nil
}

// IterateDataSpan calls fn for every raw engine key/value (all versions,
// tombstones included) whose user key is in [start, end), in engine order.
// The slices passed to fn are only valid during the call. A non-nil error
// from fn stops the iteration and is returned unchanged.
func IterateDataSpan(r Reader, start, end []byte, fn func(engineKey, value []byte) error) (err error) {
	lower, upper, err := DataSpanBounds(start, end)
	if err != nil {
		return err
	}
	it, err := r.NewIter(lower, upper)
	if err != nil {
		return err
	}
	defer closeIter(it, &err)
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("kv: iterate: %w", err)
		}
		if err := fn(it.Key(), v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("kv: iterate: %w", err)
	}
	return nil
}

// ClearDataSpan deletes all versions of all keys in [start, end) with one
// range deletion. end == nil clears to the end of the data keyspace.
func ClearDataSpan(b *Batch, start, end []byte) error {
	lower, upper, err := DataSpanBounds(start, end)
	if err != nil {
		return err
	}
	return b.DeleteRawRange(lower, upper)
}
