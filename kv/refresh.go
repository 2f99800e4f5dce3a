package kv

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// RefreshConflictError is the first key whose versions show that a
// transaction's read no longer holds at the refresh timestamp: a committed
// version (a value or a deletion) inside the refresh window, or, if
// Intent, another transaction's intent at or below the window's end.
// Timestamp is that version's.
type RefreshConflictError struct {
	Key       []byte
	Timestamp Timestamp
	Intent    bool
}

func (e *RefreshConflictError) Error() string {
	what := "a committed version"
	if e.Intent {
		what = "an intent of another transaction"
	}
	return fmt.Sprintf("kv: refresh failed: %s of %q at %s", what, e.Key, e.Timestamp)
}

// MVCCCheckRefresh checks that a read of start (end nil) or of the span
// [start, end) made at from returns the same at to: no key in it has a
// committed version in (from, to] (a deletion counts: it changes what the
// read saw), and no transaction other than txn (nil: none) holds an intent
// at or below to. txn's own intents never conflict, whatever their epoch.
// It returns nil if the read holds, else a *RefreshConflictError naming
// the first key that breaks it; other errors report invalid arguments or
// malformed data.
//
// Per user key it reads the newest version and the newest committed one at
// or below to (a seek), never the history at or below from.
func MVCCCheckRefresh(r Reader, start, end []byte, from, to Timestamp, txn *IntentTxn) (err error) {
	if end == nil && len(start) == 0 {
		return fmt.Errorf("kv: refresh: %w", ErrEmptyKey)
	}
	if err := checkReadTimestamp(from); err != nil {
		return fmt.Errorf("kv: refresh from: %w", err)
	}
	if err := checkReadTimestamp(to); err != nil {
		return fmt.Errorf("kv: refresh to: %w", err)
	}
	if to.Less(from) {
		return fmt.Errorf("kv: refresh from %s to %s: the window ends before it starts", from, to)
	}
	if err := checkTxn(txn); err != nil {
		return err
	}
	var lower, upper []byte
	if end == nil {
		lower = EncodeDataSpanStart(start)
		upper = versionsEnd(lower)
	} else {
		if lower, upper, err = DataSpanBounds(start, end); err != nil {
			return err
		}
		if bytes.Equal(start, end) {
			return nil
		}
	}
	it, err := r.NewIter(lower, upper)
	if err != nil {
		return err
	}
	defer closeIter(it, &err)
	for valid := it.First(); valid; {
		prefixLen, vts, err := splitMVCCKey(it.Key())
		if err != nil {
			return err
		}
		prefix := cloneBytes(it.Key()[:prefixLen])
		conflict, left, err := refreshKey(it, prefix, vts, from, to, txn)
		switch {
		case err != nil:
			return fmt.Errorf("kv: refresh %q: %w", prefixKey(prefix), err)
		case conflict != nil:
			return conflict
		case left:
			valid = it.Valid()
		default:
			valid = nextUserKey(it, prefix)
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("kv: refresh: %w", err)
	}
	return nil
}

// refreshKey checks the versions of the user key with the given prefix,
// the iterator being at its newest version (at vts). left reports that the
// iterator went past the key's versions (it is then at the next user key
// if valid); otherwise it is still within them.
func refreshKey(it *pebble.Iterator, prefix []byte, vts, from, to Timestamp, txn *IntentTxn) (conflict *RefreshConflictError, left bool, err error) {
	raw, err := it.ValueAndErr()
	if err != nil {
		return nil, false, err
	}
	d, err := decodeVersionValue(raw)
	if err != nil {
		return nil, false, err
	}
	if d.intent {
		own := txn != nil && bytes.Equal(d.txnID, txn.ID)
		if !own && vts.LessEq(to) {
			return &RefreshConflictError{Key: prefixKey(prefix), Timestamp: vts, Intent: true}, false, nil
		}
		// The transaction's own write, or one above to that a read at to
		// reads beneath: what counts is the committed versions below it.
		if !it.Next() || !samePrefix(it.Key(), prefix) {
			return nil, true, it.Error()
		}
		if _, vts, err = splitMVCCKey(it.Key()); err != nil {
			return nil, false, err
		}
	}
	if to.Less(vts) {
		if !it.SeekGE(appendVersion(cloneBytes(prefix), to)) || !samePrefix(it.Key(), prefix) {
			return nil, true, it.Error()
		}
		if _, vts, err = splitMVCCKey(it.Key()); err != nil {
			return nil, false, err
		}
	}
	// it is at the newest version at or below to, which must be committed.
	if raw, err = it.ValueAndErr(); err != nil {
		return nil, false, err
	}
	if d, err = decodeVersionValue(raw); err != nil {
		return nil, false, err
	}
	if d.intent {
		return nil, false, fmt.Errorf("%w: an intent at %s below a newer version", ErrIntentInvariant, vts)
	}
	if from.Less(vts) {
		return &RefreshConflictError{Key: prefixKey(prefix), Timestamp: vts}, false, nil
	}
	return nil, false, nil
}
