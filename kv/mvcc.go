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
	// Txn is the reading transaction, if any: it sees its own intents.
	// Other transactions' intents at or below the read timestamp make the
	// scan fail with an *IntentError listing them.
	Txn *IntentTxn
	// Uncertainty is the reader's uncertainty limit (empty: none): a
	// committed version in (read timestamp, Uncertainty] fails the scan
	// with an *UncertaintyError, and intents up to it conflict.
	Uncertainty Timestamp
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
	// Versions is the total number of versions, tombstones and intents
	// included.
	Versions int64
	// Intents is the number of keys whose newest version is an intent (also
	// counted in LiveKeys and LiveBytes if it writes a value).
	Intents int64
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
// version is a tombstone, or there is none, found is false. An intent at or
// below readTS is an *IntentError (see MVCCGetTxn).
func MVCCGet(r Reader, key []byte, readTS Timestamp) (kv KeyValue, found bool, err error) {
	return MVCCGetTxn(r, key, readTS, nil)
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
// visited key (exclusive end of the next call). Intents are read as readKey
// does (txn, anyIntent); conflicting ones are collected (up to
// maxIntentsPerError) and returned as an *IntentError once the scan ends.
func scanVisible(r Reader, start, end []byte, readTS, limit Timestamp, reverse bool, txn *IntentTxn, anyIntent bool, fn visibleFunc) (resume []byte, err error) {
	if err := checkReadTimestamp(readTS); err != nil {
		return nil, fmt.Errorf("kv: scan: %w", err)
	}
	if err := checkTxn(txn); err != nil {
		return nil, err
	}
	it, err := spanIter(r, start, end)
	if err != nil || it == nil {
		return nil, err
	}
	defer closeIter(it, &err)

	var conflicts []Intent
	// visit reads the user key of prefix, the iterator being at its newest
	// version. It reports whether fn stopped the scan, and leaves the
	// iterator within the key's versions unless kr.moved.
	visit := func(prefix []byte) (stop bool, key []byte, kr keyRead, err error) {
		if kr, err = readKey(it, prefix, readTS, limit, txn, anyIntent); err != nil {
			return false, nil, kr, err
		}
		if kr.uncertain {
			return false, nil, kr, &UncertaintyError{Key: prefixKey(prefix), ReadTimestamp: readTS, Existing: kr.ts, Limit: limit}
		}
		if kr.conflict != nil {
			conflicts = append(conflicts, *kr.conflict)
			return len(conflicts) >= maxIntentsPerError, kr.conflict.Key, kr, nil
		}
		if !kr.found {
			return false, nil, kr, nil
		}
		if key, err = userKeyFromPrefix(prefix); err != nil {
			return false, nil, kr, err
		}
		stop, err = fn(KeyValue{Key: key, Value: kr.payload, Timestamp: kr.ts})
		return stop, key, kr, err
	}
	finish := func(resume []byte) ([]byte, error) {
		if len(conflicts) > 0 {
			return nil, &IntentError{Intents: conflicts}
		}
		return resume, nil
	}

	if !reverse {
		valid := it.First()
		for valid {
			prefixLen, _, err := splitMVCCKey(it.Key())
			if err != nil {
				return nil, err
			}
			prefix := cloneBytes(it.Key()[:prefixLen])
			stop, _, kr, err := visit(prefix)
			if err != nil {
				return nil, err
			}
			if kr.moved {
				valid = kr.valid
			} else {
				valid = nextUserKey(it, prefix)
			}
			if stop {
				if !valid {
					break
				}
				pl, _, err := splitMVCCKey(it.Key())
				if err != nil {
					return nil, err
				}
				k, err := userKeyFromPrefix(it.Key()[:pl])
				if err != nil {
					return nil, err
				}
				return finish(k)
			}
		}
	} else {
		valid := it.Last()
		for valid {
			// Positioned at the oldest version of some user key: go to its
			// newest.
			prefixLen, _, err := splitMVCCKey(it.Key())
			if err != nil {
				return nil, err
			}
			prefix := cloneBytes(it.Key()[:prefixLen])
			if !it.SeekGE(prefix) || !samePrefix(it.Key(), prefix) {
				if err := it.Error(); err != nil {
					return nil, fmt.Errorf("kv: scan: %w", err)
				}
				return nil, fmt.Errorf("kv: scan: lost position at key prefix %x", prefix)
			}
			stop, key, _, err := visit(prefix)
			if err != nil {
				return nil, err
			}
			valid = it.SeekLT(prefix)
			if stop {
				if valid {
					return finish(key)
				}
				break
			}
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("kv: scan: %w", err)
	}
	return finish(nil)
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
	resume, err = scanVisible(r, start, end, readTS, opts.Uncertainty, opts.Reverse, opts.Txn, false, func(kv KeyValue) (bool, error) {
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
// respected. An intent in the span, at any timestamp, is an *IntentError
// and nothing is written.
func MVCCDeleteRange(b *Batch, start, end []byte, ts Timestamp, max int) (deleted [][]byte, resume []byte, err error) {
	if ts.IsEmpty() {
		return nil, nil, fmt.Errorf("kv: delete range: %w", ErrEmptyTimestamp)
	}
	if max < 0 {
		return nil, nil, fmt.Errorf("kv: delete range: negative max")
	}
	// Collect first, then write: the batch must not change under its own
	// iterator.
	resume, err = scanVisible(b, start, end, ts, Timestamp{}, false, nil, true, func(kv KeyValue) (bool, error) {
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
// never be read at or above threshold: per key, among the committed versions
// with timestamp <= threshold only the newest is kept, and it too is removed
// if it is a tombstone. Versions above threshold are never touched, and
// neither is an intent (a key's newest version, not yet committed or
// aborted) nor, below an intent, the newest committed version a read would
// see if the intent were aborted. r may be b.
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
	newest := false     // the iterator is at prefix's newest version
	sawVisible := false // a committed version <= threshold was already seen for prefix
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		prefixLen, ts, err := splitMVCCKey(k)
		if err != nil {
			return stats, err
		}
		newest = false
		if !bytes.Equal(k[:prefixLen], prefix) {
			prefix = cloneBytes(k[:prefixLen])
			stats.KeysScanned++
			sawVisible = false
			newest = true
		}
		if threshold.Less(ts) && !newest {
			continue
		}
		if newest || !sawVisible {
			raw, err := it.ValueAndErr()
			if err != nil {
				return stats, fmt.Errorf("kv: gc: %w", err)
			}
			d, err := decodeVersionValue(raw)
			if err != nil {
				return stats, err
			}
			if d.intent || threshold.Less(ts) {
				continue // an intent, or a version above threshold
			}
			sawVisible = true
			if !d.tombstone {
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
		d, err := decodeVersionValue(raw)
		if err != nil {
			return MVCCStats{}, err
		}
		if d.intent {
			stats.Intents++
		}
		if !d.tombstone {
			stats.LiveKeys++
			stats.LiveBytes += int64(userKeyLenFromPrefix(prefix) + len(d.payload))
		}
	}
	if err := it.Error(); err != nil {
		return MVCCStats{}, fmt.Errorf("kv: stats: %w", err)
	}
	return stats, nil
}

// IterateDataSpan calls fn for every raw engine key/value (all versions,
// tombstones and intents included) whose user key is in [start, end), in
// engine order; addressed keys are not included (IterateRangeData). The
// slices passed to fn are only valid during the call. A non-nil error from
// fn stops the iteration and is returned unchanged.
func IterateDataSpan(r Reader, start, end []byte, fn func(engineKey, value []byte) error) (err error) {
	lower, upper, err := DataSpanBounds(start, end)
	if err != nil {
		return err
	}
	return iterateRaw(r, Span{Start: lower, End: upper}, fn)
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
