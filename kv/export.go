package kv

import (
	"fmt"
)

// ExportedKV is one key's newest version in an export's time window; a
// Deleted version (a tombstone) has no value.
type ExportedKV struct {
	Key       []byte
	Value     []byte
	Timestamp Timestamp
	Deleted   bool
}

// ExportOptions bounds one MVCCExport call.
type ExportOptions struct {
	// MaxBytes stops the export once at least this many key+value bytes
	// (plus KeyOverhead per key) were returned; 0 means no limit.
	MaxBytes    int64
	KeyOverhead int64
}

// MVCCExport returns, for every user key of [start, end) in key order, its
// newest version with a timestamp <= endTS, if that version is newer than
// startTS. With an empty startTS (a full export) tombstones are left out:
// the result is what a scan at endTS returns. With startTS set (an
// incremental export) a tombstone is returned as Deleted, so that applying
// the result on top of a restore of the state at startTS gives the state at
// endTS. If the export stopped at MaxBytes and more keys may follow, resume
// is the start key of the next call.
func MVCCExport(r Reader, start, end []byte, startTS, endTS Timestamp, opts ExportOptions) (out []ExportedKV, resume []byte, err error) {
	if err := checkReadTimestamp(endTS); err != nil {
		return nil, nil, fmt.Errorf("kv: export: end timestamp: %w", err)
	}
	if !startTS.Less(endTS) {
		return nil, nil, fmt.Errorf("kv: export: start timestamp %s is not below end timestamp %s", startTS, endTS)
	}
	if opts.MaxBytes < 0 {
		return nil, nil, fmt.Errorf("kv: export: negative max bytes")
	}
	lower, upper, err := DataSpanBounds(start, end)
	if err != nil {
		return nil, nil, err
	}
	it, err := r.NewIter(lower, upper)
	if err != nil {
		return nil, nil, err
	}
	defer closeIter(it, &err)
	full := startTS.IsEmpty()
	var nbytes int64
	valid := it.First()
	for valid {
		prefixLen, ts, err := splitMVCCKey(it.Key())
		if err != nil {
			return nil, nil, err
		}
		prefix := cloneBytes(it.Key()[:prefixLen])
		if opts.MaxBytes > 0 && nbytes >= opts.MaxBytes {
			key, err := userKeyFromPrefix(prefix)
			if err != nil {
				return nil, nil, err
			}
			return out, key, nil
		}
		if endTS.Less(ts) {
			// Skip the versions newer than endTS.
			if valid = it.SeekGE(appendVersion(cloneBytes(prefix), endTS)); !valid {
				break
			}
			if !samePrefix(it.Key(), prefix) {
				continue // no version at or below endTS: now at the next key
			}
			if _, ts, err = splitMVCCKey(it.Key()); err != nil {
				return nil, nil, err
			}
		}
		if full || startTS.Less(ts) {
			raw, err := it.ValueAndErr()
			if err != nil {
				return nil, nil, fmt.Errorf("kv: export: %w", err)
			}
			payload, tombstone, err := decodeValue(raw)
			if err != nil {
				return nil, nil, err
			}
			if !tombstone || !full {
				key, err := userKeyFromPrefix(prefix)
				if err != nil {
					return nil, nil, err
				}
				x := ExportedKV{Key: key, Timestamp: ts, Deleted: tombstone}
				if !tombstone {
					x.Value = cloneBytes(payload)
				}
				out = append(out, x)
				nbytes += int64(len(x.Key)+len(x.Value)) + opts.KeyOverhead
			}
		}
		valid = nextUserKey(it, prefix)
	}
	if err := it.Error(); err != nil {
		return nil, nil, fmt.Errorf("kv: export: %w", err)
	}
	return out, nil, nil
}
