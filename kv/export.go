package kv

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// ExportedKV is one key's newest version in an export's time window (of
// MVCCExportAllVersions: one of its versions there); a Deleted version (a
// tombstone) has no value.
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
// is the start key of the next call. An intent at or below endTS (its
// transaction may yet commit there) fails the export with an *IntentError
// listing the intents met: the caller resolves them and exports again.
// Intents above endTS are left out; an export never contains an
// uncommitted write.
func MVCCExport(r Reader, start, end []byte, startTS, endTS Timestamp, opts ExportOptions) (out []ExportedKV, resume []byte, err error) {
	it, err := exportIter("export", r, start, end, startTS, endTS, opts)
	if err != nil {
		return nil, nil, err
	}
	defer closeIter(it, &err)
	full := startTS.IsEmpty()
	var nbytes int64
	var conflicts []Intent
	valid := it.First()
	for valid {
		prefixLen, _, err := splitMVCCKey(it.Key())
		if err != nil {
			return nil, nil, err
		}
		prefix := cloneBytes(it.Key()[:prefixLen])
		if opts.MaxBytes > 0 && nbytes >= opts.MaxBytes {
			if len(conflicts) > 0 {
				break
			}
			key, err := userKeyFromPrefix(prefix)
			if err != nil {
				return nil, nil, err
			}
			return out, key, nil
		}
		// The newest version at or below endTS, tombstones included; an
		// intent there conflicts.
		kr, err := readKey(it, prefix, endTS, Timestamp{}, nil, false)
		if err != nil {
			return nil, nil, fmt.Errorf("kv: export: %w", err)
		}
		switch {
		case kr.conflict != nil:
			conflicts = append(conflicts, *kr.conflict)
		case kr.moved:
			// No version at or below endTS.
		case full && !kr.found:
			// A tombstone: a full export leaves deleted keys out.
		case full || startTS.Less(kr.ts):
			key, err := userKeyFromPrefix(prefix)
			if err != nil {
				return nil, nil, err
			}
			x := ExportedKV{Key: key, Timestamp: kr.ts, Deleted: !kr.found}
			if kr.found {
				x.Value = cloneBytes(kr.payload)
			}
			out = append(out, x)
			nbytes += int64(len(x.Key)+len(x.Value)) + opts.KeyOverhead
		}
		if len(conflicts) >= maxIntentsPerError {
			break
		}
		if kr.moved {
			valid = kr.valid
		} else {
			valid = nextUserKey(it, prefix)
		}
	}
	if len(conflicts) > 0 {
		return nil, nil, &IntentError{Intents: conflicts}
	}
	if err := it.Error(); err != nil {
		return nil, nil, fmt.Errorf("kv: export: %w", err)
	}
	return out, nil, nil
}

// MVCCExportAllVersions returns every version of every user key of
// [start, end) with a timestamp in (startTS, endTS], values and tombstones
// alike (an empty startTS: every version at or below endTS), in key order
// and, per key, newest first: the full history of the span, as far as GC
// left it. Paging is by key: MaxBytes is checked before each key, so a
// call returns all of a key's versions in the window or none of them (it
// may exceed MaxBytes by one key's versions), and resume is the next
// key's start. Intents are handled as by MVCCExport: one at or below
// endTS fails the export with an *IntentError listing the intents met; one
// above endTS is left out and the committed versions beneath it are
// returned.
func MVCCExportAllVersions(r Reader, start, end []byte, startTS, endTS Timestamp, opts ExportOptions) (out []ExportedKV, resume []byte, err error) {
	it, err := exportIter("export all versions", r, start, end, startTS, endTS, opts)
	if err != nil {
		return nil, nil, err
	}
	defer closeIter(it, &err)
	var nbytes int64
	var conflicts []Intent
	valid := it.First()
	for valid && len(conflicts) < maxIntentsPerError {
		prefixLen, _, err := splitMVCCKey(it.Key())
		if err != nil {
			return nil, nil, err
		}
		prefix := cloneBytes(it.Key()[:prefixLen])
		key, err := userKeyFromPrefix(prefix)
		if err != nil {
			return nil, nil, err
		}
		if opts.MaxBytes > 0 && nbytes >= opts.MaxBytes {
			if len(conflicts) > 0 {
				break
			}
			return out, key, nil
		}
		valid, err = exportKeyVersions(it, prefix, key, startTS, endTS, func(x ExportedKV) {
			out = append(out, x)
			nbytes += int64(len(x.Key)+len(x.Value)) + opts.KeyOverhead
		}, &conflicts)
		if err != nil {
			return nil, nil, fmt.Errorf("kv: export all versions: %w", err)
		}
	}
	if len(conflicts) > 0 {
		return nil, nil, &IntentError{Intents: conflicts}
	}
	if err := it.Error(); err != nil {
		return nil, nil, fmt.Errorf("kv: export all versions: %w", err)
	}
	return out, nil, nil
}

// exportKeyVersions emits the versions of one user key (prefix; the
// iterator at its newest version) in (startTS, endTS], or adds its intent
// to conflicts if that is at or below endTS. It leaves the iterator at the
// next user key and reports whether there is one.
func exportKeyVersions(it *pebble.Iterator, prefix, key []byte, startTS, endTS Timestamp, emit func(ExportedKV), conflicts *[]Intent) (bool, error) {
	for newest := true; ; newest = false {
		_, ts, err := splitMVCCKey(it.Key())
		if err != nil {
			return false, err
		}
		raw, err := it.ValueAndErr()
		if err != nil {
			return false, err
		}
		d, err := decodeVersionValue(raw)
		if err != nil {
			return false, err
		}
		switch {
		case d.intent && !newest:
			return false, fmt.Errorf("%w: key %q has an intent at %s below a newer version", ErrIntentInvariant, key, ts)
		case d.intent && ts.LessEq(endTS):
			*conflicts = append(*conflicts, d.toIntent(key, ts))
			return nextUserKey(it, prefix), it.Error()
		case d.intent, endTS.Less(ts):
			// An intent above the window (the committed versions beneath
			// it count), or a version above it.
		case ts.LessEq(startTS):
			// This version and the older ones are below the window.
			return nextUserKey(it, prefix), it.Error()
		default:
			x := ExportedKV{Key: cloneBytes(key), Timestamp: ts, Deleted: d.tombstone}
			if !d.tombstone {
				x.Value = cloneBytes(d.payload)
			}
			emit(x)
		}
		if !it.Next() {
			return false, it.Error()
		}
		if !samePrefix(it.Key(), prefix) {
			return true, nil
		}
	}
}

// exportIter checks the arguments of an export (what names it in errors)
// and opens its iterator over the versions of [start, end).
func exportIter(what string, r Reader, start, end []byte, startTS, endTS Timestamp, opts ExportOptions) (*pebble.Iterator, error) {
	if err := checkReadTimestamp(endTS); err != nil {
		return nil, fmt.Errorf("kv: %s: end timestamp: %w", what, err)
	}
	if !startTS.Less(endTS) {
		return nil, fmt.Errorf("kv: %s: start timestamp %s is not below end timestamp %s", what, startTS, endTS)
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("kv: %s: negative max bytes", what)
	}
	lower, upper, err := DataSpanBounds(start, end)
	if err != nil {
		return nil, err
	}
	return r.NewIter(lower, upper)
}
