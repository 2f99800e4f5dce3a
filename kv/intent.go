package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// IntentTxn identifies the transaction that owns an intent, as kv knows
// it: an ID (compared bytewise), an epoch (a transaction that restarts
// keeps its ID and increments its epoch; intents of an earlier epoch are
// not part of the restarted transaction) and Meta, the caller's encoding
// of the rest of the transaction (where its record lives, its priority),
// which kv stores with the intent and never interprets.
type IntentTxn struct {
	ID    []byte
	Epoch int32
	Meta  []byte
}

// Intent is a provisional version: written by a transaction that has not
// been resolved yet, at Timestamp.
type Intent struct {
	Key       []byte
	Timestamp Timestamp
	Txn       IntentTxn
}

// maxIntentsPerError bounds the intents one IntentError lists (a scan
// over many intents stops collecting there).
const maxIntentsPerError = 1000

// IntentError is returned when a read or a write meets intents of other
// transactions that it must not ignore: a read at or above an intent's
// timestamp, any write. The caller resolves them (pushing their
// transactions) and retries. Nothing was written.
type IntentError struct {
	Intents []Intent
}

func (e *IntentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kv: conflicting intent")
	if len(e.Intents) > 1 {
		fmt.Fprintf(&b, "s (%d)", len(e.Intents))
	}
	for i, in := range e.Intents {
		if i == 3 {
			b.WriteString(", …")
			break
		}
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%skey %q at %s of txn %x", sep, in.Key, in.Timestamp, in.Txn.ID)
	}
	return b.String()
}

// WriteTooOldError is returned when a transactional write at Timestamp
// meets a committed version of Key at or above it: the transaction must
// write at ActualTimestamp (above that version) or later. Nothing was
// written.
type WriteTooOldError struct {
	Key             []byte
	Timestamp       Timestamp
	Existing        Timestamp
	ActualTimestamp Timestamp
}

func (e *WriteTooOldError) Error() string {
	return fmt.Sprintf("kv: write of %q at %s is too old: a committed version exists at %s; write at %s or later",
		e.Key, e.Timestamp, e.Existing, e.ActualTimestamp)
}

// ErrIntentInvariant reports an intent that is not the newest version of
// its key, or a resolution below an intent's timestamp: corrupt data or a
// caller bug, never a conflict.
var ErrIntentInvariant = errors.New("kv: intent invariant violated")

// Value tags of intents (see keys.go for the committed ones): the tag is
// followed by uvarint(len(header)), the header and then the payload; the
// header is uvarint(len(txnID)), txnID, uvarint(epoch) and then the meta.
const (
	tagIntentTombstone byte = 2
	tagIntentValue     byte = 3
)

// decoded is one version's value. payload and the intent's fields alias
// the raw value.
type decoded struct {
	payload   []byte
	tombstone bool
	intent    bool
	txnID     []byte
	epoch     int32
	meta      []byte
}

func decodeVersionValue(raw []byte) (decoded, error) {
	if len(raw) == 0 {
		return decoded{}, fmt.Errorf("kv: malformed MVCC value: empty")
	}
	switch raw[0] {
	case tagTombstone, tagValue:
		p, tomb, err := decodeValue(raw)
		return decoded{payload: p, tombstone: tomb}, err
	case tagIntentTombstone, tagIntentValue:
	default:
		return decoded{}, fmt.Errorf("kv: malformed MVCC value: unknown tag %d", raw[0])
	}
	bad := func(what string) (decoded, error) {
		return decoded{}, fmt.Errorf("kv: malformed MVCC value: intent: %s", what)
	}
	rest := raw[1:]
	hlen, n := binary.Uvarint(rest)
	if n <= 0 || hlen > uint64(len(rest)-n) {
		return bad("header length")
	}
	hdr, payload := rest[n:n+int(hlen)], rest[n+int(hlen):]
	idLen, n := binary.Uvarint(hdr)
	if n <= 0 || idLen == 0 || idLen > uint64(len(hdr)-n) {
		return bad("transaction ID")
	}
	id := hdr[n : n+int(idLen)]
	hdr = hdr[n+int(idLen):]
	epoch, n := binary.Uvarint(hdr)
	if n <= 0 || epoch > 1<<31-1 {
		return bad("epoch")
	}
	d := decoded{payload: payload, intent: true, txnID: id, epoch: int32(epoch), meta: hdr[n:]}
	if raw[0] == tagIntentTombstone {
		if len(payload) != 0 {
			return bad("tombstone with a payload")
		}
		d.tombstone, d.payload = true, nil
	}
	return d, nil
}

func encodeIntentValue(txn *IntentTxn, value []byte, tombstone bool) []byte {
	hdr := binary.AppendUvarint(nil, uint64(len(txn.ID)))
	hdr = append(hdr, txn.ID...)
	hdr = binary.AppendUvarint(hdr, uint64(txn.Epoch))
	hdr = append(hdr, txn.Meta...)
	tag := tagIntentValue
	if tombstone {
		tag, value = tagIntentTombstone, nil
	}
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(hdr)+len(value))
	out = append(out, tag)
	out = binary.AppendUvarint(out, uint64(len(hdr)))
	out = append(out, hdr...)
	return append(out, value...)
}

func (d *decoded) toIntent(key []byte, ts Timestamp) Intent {
	return Intent{Key: cloneBytes(key), Timestamp: ts, Txn: IntentTxn{
		ID: cloneBytes(d.txnID), Epoch: d.epoch, Meta: cloneBytes(d.meta)}}
}

func checkTxn(txn *IntentTxn) error {
	if txn != nil && (len(txn.ID) == 0 || txn.Epoch < 0) {
		return fmt.Errorf("kv: transaction with an empty ID or a negative epoch")
	}
	return nil
}

// UncertaintyError is returned when a transaction's read at ReadTimestamp
// meets a committed version of Key at Existing, above the read timestamp
// but within its uncertainty limit: the version may have been written
// before the transaction began (on a node whose clock ran ahead), so the
// transaction must read again above it. Nothing was read.
type UncertaintyError struct {
	Key           []byte
	ReadTimestamp Timestamp
	Existing      Timestamp
	Limit         Timestamp
}

func (e *UncertaintyError) Error() string {
	return fmt.Sprintf("kv: read of %q at %s is uncertain: a version at %s is within the uncertainty limit %s",
		e.Key, e.ReadTimestamp, e.Existing, e.Limit)
}

// keyRead is the outcome of reading one user key: a visible version
// (found: a live value), a conflicting intent, or an uncertain version.
type keyRead struct {
	found     bool
	payload   []byte // aliases iterator memory
	ts        Timestamp
	conflict  *Intent
	uncertain bool // a committed version at ts in (readTS, limit]
	// moved: the iterator left the key's versions; it is at the next
	// user key if valid, else exhausted.
	moved, valid bool
}

// readKey reads the user key whose versions share prefix, as of readTS,
// for txn (nil: a non-transactional reader). The iterator must be at the
// key's newest version. txn's own intent of its current epoch is visible
// whatever its timestamp; another transaction's intent conflicts if it is
// at or below limit (the reader's uncertainty limit, at least readTS), or
// always if anyIntent (a write); otherwise it is read beneath. A committed
// version in (readTS, limit] makes the read uncertain.
func readKey(it *pebble.Iterator, prefix []byte, readTS, limit Timestamp, txn *IntentTxn, anyIntent bool) (keyRead, error) {
	if limit.Less(readTS) {
		limit = readTS
	}
	_, ts, err := splitMVCCKey(it.Key())
	if err != nil {
		return keyRead{}, err
	}
	raw, err := it.ValueAndErr()
	if err != nil {
		return keyRead{}, fmt.Errorf("kv: read: %w", err)
	}
	d, err := decodeVersionValue(raw)
	if err != nil {
		return keyRead{}, err
	}
	if d.intent {
		own := txn != nil && bytes.Equal(d.txnID, txn.ID)
		switch {
		case own && d.epoch == txn.Epoch:
			return keyRead{found: !d.tombstone, payload: d.payload, ts: ts}, nil
		case own && d.epoch > txn.Epoch:
			return keyRead{}, fmt.Errorf("%w: key %q has an intent of epoch %d of a transaction reading at epoch %d",
				ErrIntentInvariant, prefixKey(prefix), d.epoch, txn.Epoch)
		case !own && (anyIntent || ts.LessEq(limit)):
			in := d.toIntent(prefixKey(prefix), ts)
			return keyRead{conflict: &in}, nil
		}
		// Read beneath the intent: an older epoch's own write, or
		// another transaction's write above readTS.
		if !it.Next() || !samePrefix(it.Key(), prefix) {
			return keyRead{moved: true, valid: it.Valid()}, it.Error()
		}
		if _, ts, err = splitMVCCKey(it.Key()); err != nil {
			return keyRead{}, err
		}
	}
	if limit.Less(ts) {
		if !it.SeekGE(appendVersion(cloneBytes(prefix), limit)) || !samePrefix(it.Key(), prefix) {
			return keyRead{moved: true, valid: it.Valid()}, it.Error()
		}
		if _, ts, err = splitMVCCKey(it.Key()); err != nil {
			return keyRead{}, err
		}
	}
	if readTS.Less(ts) {
		// Committed in (readTS, limit]: uncertain.
		return keyRead{uncertain: true, ts: ts}, nil
	}
	if raw, err = it.ValueAndErr(); err != nil {
		return keyRead{}, fmt.Errorf("kv: read: %w", err)
	}
	if d, err = decodeVersionValue(raw); err != nil {
		return keyRead{}, err
	}
	if d.intent {
		return keyRead{}, fmt.Errorf("%w: key %q has an intent at %s below a newer version",
			ErrIntentInvariant, prefixKey(prefix), ts)
	}
	return keyRead{found: !d.tombstone, payload: d.payload, ts: ts}, nil
}

// prefixKey decodes the user key of an encoded prefix for messages and
// intents; a malformed prefix (already rejected by splitMVCCKey) yields
// the raw bytes.
func prefixKey(prefix []byte) []byte {
	k, err := userKeyFromPrefix(prefix)
	if err != nil {
		return cloneBytes(prefix)
	}
	return k
}

// MVCCGetTxn is MVCCGet for a reader that may be a transaction (txn nil:
// none). The transaction sees its own intents (of its current epoch); an
// intent of another transaction at or below readTS is an *IntentError.
func MVCCGetTxn(r Reader, key []byte, readTS Timestamp, txn *IntentTxn) (kv KeyValue, found bool, err error) {
	return MVCCGetUncertain(r, key, readTS, Timestamp{}, txn)
}

// MVCCGetUncertain is MVCCGetTxn with an uncertainty limit (empty: none):
// a committed version in (readTS, limit] is an *UncertaintyError, and an
// intent of another transaction at or below limit an *IntentError.
func MVCCGetUncertain(r Reader, key []byte, readTS, limit Timestamp, txn *IntentTxn) (kv KeyValue, found bool, err error) {
	if len(key) == 0 {
		return KeyValue{}, false, fmt.Errorf("kv: get: %w", ErrEmptyKey)
	}
	if err := checkReadTimestamp(readTS); err != nil {
		return KeyValue{}, false, fmt.Errorf("kv: get %q: %w", key, err)
	}
	if err := checkTxn(txn); err != nil {
		return KeyValue{}, false, err
	}
	prefix := EncodeDataSpanStart(key)
	it, err := r.NewIter(prefix, versionsEnd(prefix))
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
	kr, err := readKey(it, prefix, readTS, limit, txn, false)
	switch {
	case err != nil:
		return KeyValue{}, false, fmt.Errorf("kv: get %q: %w", key, err)
	case kr.conflict != nil:
		return KeyValue{}, false, &IntentError{Intents: []Intent{*kr.conflict}}
	case kr.uncertain:
		return KeyValue{}, false, &UncertaintyError{Key: cloneBytes(key), ReadTimestamp: readTS, Existing: kr.ts, Limit: limit}
	case !kr.found:
		return KeyValue{}, false, nil
	}
	return KeyValue{Key: cloneBytes(key), Value: cloneBytes(kr.payload), Timestamp: kr.ts}, true, nil
}

// MVCCPut writes value (a tombstone if tombstone) to key at ts, into b.
//
// Without a transaction (txn nil) it writes a committed version; any
// intent on key is an *IntentError. The caller keeps ts above the key's
// committed versions (as the leaseholder's clock and timestamp cache do).
//
// With a transaction it writes an intent at ts, replacing the
// transaction's earlier intent on key (of any epoch). Another
// transaction's intent is an *IntentError; a committed version at or
// above ts is a *WriteTooOldError. On error nothing is written.
func MVCCPut(b *Batch, key []byte, ts Timestamp, value []byte, tombstone bool, txn *IntentTxn) (err error) {
	if err := checkVersion(key, ts); err != nil {
		return fmt.Errorf("kv: put %q@%s: %w", key, ts, err)
	}
	if err := checkTxn(txn); err != nil {
		return err
	}
	prefix := EncodeDataSpanStart(key)
	it, err := b.NewIter(prefix, versionsEnd(prefix))
	if err != nil {
		return err
	}
	var ownIntent []byte // engine key of txn's earlier intent
	var newest Timestamp // newest committed version
	func() {
		defer closeIter(it, &err)
		if !it.First() {
			return
		}
		var ts Timestamp
		if _, ts, err = splitMVCCKey(it.Key()); err != nil {
			return
		}
		var raw []byte
		if raw, err = it.ValueAndErr(); err != nil {
			return
		}
		var d decoded
		if d, err = decodeVersionValue(raw); err != nil {
			return
		}
		if d.intent {
			if txn == nil || !bytes.Equal(d.txnID, txn.ID) {
				err = &IntentError{Intents: []Intent{d.toIntent(key, ts)}}
				return
			}
			ownIntent = cloneBytes(it.Key())
			if !it.Next() {
				err = it.Error()
				return
			}
			if _, ts, err = splitMVCCKey(it.Key()); err != nil {
				return
			}
		}
		newest = ts
	}()
	if err != nil {
		return err
	}
	if txn == nil {
		if tombstone {
			return b.DeleteMVCC(key, ts)
		}
		return b.PutMVCC(key, ts, value)
	}
	if !newest.IsEmpty() && ts.LessEq(newest) {
		return &WriteTooOldError{Key: cloneBytes(key), Timestamp: ts, Existing: newest, ActualTimestamp: newest.Next()}
	}
	if ownIntent != nil {
		if err := b.DeleteRaw(ownIntent); err != nil {
			return err
		}
	}
	if err := b.b.Set(EncodeMVCCKey(key, ts), encodeIntentValue(txn, value, tombstone), nil); err != nil {
		return fmt.Errorf("kv: put intent %q@%s: %w", key, ts, err)
	}
	return nil
}

// MVCCResolveIntent resolves the intent of the transaction txnID on key,
// if there is one, into b: with commit, an intent of epoch is rewritten
// as a committed version at commitTS (which must not be below it), and an
// intent of an earlier epoch is removed (the restarted transaction did
// not write the key again); without commit the intent is removed. found
// reports whether there was an intent of txnID. A missing intent is not an
// error: it was resolved before, or never written.
func MVCCResolveIntent(b *Batch, key []byte, txnID []byte, epoch int32, commit bool, commitTS Timestamp) (found bool, err error) {
	if len(key) == 0 {
		return false, fmt.Errorf("kv: resolve: %w", ErrEmptyKey)
	}
	if commit {
		if err := checkVersion(key, commitTS); err != nil {
			return false, fmt.Errorf("kv: resolve %q@%s: %w", key, commitTS, err)
		}
	}
	prefix := EncodeDataSpanStart(key)
	it, err := b.NewIter(prefix, versionsEnd(prefix))
	if err != nil {
		return false, err
	}
	var engineKey []byte
	var ts Timestamp
	var d decoded
	func() {
		defer closeIter(it, &err)
		if !it.First() {
			return
		}
		if _, ts, err = splitMVCCKey(it.Key()); err != nil {
			return
		}
		var raw []byte
		if raw, err = it.ValueAndErr(); err != nil {
			return
		}
		if d, err = decodeVersionValue(raw); err != nil {
			return
		}
		if d.intent && bytes.Equal(d.txnID, txnID) {
			engineKey = cloneBytes(it.Key())
			d.payload = cloneBytes(d.payload)
		}
	}()
	if err != nil || engineKey == nil {
		return false, err
	}
	return true, resolveAt(b, key, engineKey, ts, &d, epoch, commit, commitTS)
}

// resolveAt resolves the intent d found at engineKey (key@ts).
func resolveAt(b *Batch, key, engineKey []byte, ts Timestamp, d *decoded, epoch int32, commit bool, commitTS Timestamp) error {
	if !commit || d.epoch < epoch {
		return b.DeleteRaw(engineKey)
	}
	if d.epoch > epoch {
		return fmt.Errorf("%w: commit of epoch %d meets an intent of epoch %d on %q", ErrIntentInvariant, epoch, d.epoch, key)
	}
	if commitTS.Less(ts) {
		return fmt.Errorf("%w: commit at %s below the intent at %s on %q", ErrIntentInvariant, commitTS, ts, key)
	}
	if commitTS != ts {
		if err := b.DeleteRaw(engineKey); err != nil {
			return err
		}
	}
	if d.tombstone {
		return b.DeleteMVCC(key, commitTS)
	}
	return b.PutMVCC(key, commitTS, d.payload)
}

// MVCCResolveIntentRange resolves, as MVCCResolveIntent, every intent of
// txnID in [start, end), up to max of them (0 = no limit). If it stopped
// at max and more keys may follow, resume is the start key of the next
// call.
func MVCCResolveIntentRange(b *Batch, start, end []byte, txnID []byte, epoch int32, commit bool, commitTS Timestamp, max int) (resolved int, resume []byte, err error) {
	if max < 0 {
		return 0, nil, fmt.Errorf("kv: resolve range: negative max")
	}
	type found struct {
		key, engineKey []byte
		ts             Timestamp
		d              decoded
	}
	var todo []found
	// Collect first, then write: the batch must not change under its own
	// iterator.
	resume, err = scanNewest(b, start, end, func(prefix []byte, ts Timestamp, d *decoded, engineKey []byte) (bool, error) {
		if !d.intent || !bytes.Equal(d.txnID, txnID) {
			return false, nil
		}
		if max > 0 && len(todo) >= max {
			return true, nil
		}
		dd := *d
		dd.payload = cloneBytes(d.payload)
		todo = append(todo, found{key: prefixKey(prefix), engineKey: cloneBytes(engineKey), ts: ts, d: dd})
		return false, nil
	})
	if err != nil {
		return 0, nil, err
	}
	for i := range todo {
		f := &todo[i]
		if err := resolveAt(b, f.key, f.engineKey, f.ts, &f.d, epoch, commit, commitTS); err != nil {
			return 0, nil, err
		}
	}
	return len(todo), resume, nil
}

// MVCCFindIntents returns the intents in [start, end), up to max (0 = no
// limit), in key order; resume is as for MVCCResolveIntentRange.
func MVCCFindIntents(r Reader, start, end []byte, max int) (intents []Intent, resume []byte, err error) {
	if max < 0 {
		return nil, nil, fmt.Errorf("kv: find intents: negative max")
	}
	resume, err = scanNewest(r, start, end, func(prefix []byte, ts Timestamp, d *decoded, _ []byte) (bool, error) {
		if !d.intent {
			return false, nil
		}
		if max > 0 && len(intents) >= max {
			return true, nil
		}
		intents = append(intents, d.toIntent(prefixKey(prefix), ts))
		return false, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return intents, resume, nil
}

// scanNewest calls fn with the newest version of every user key in
// [start, end), in key order (d aliases iterator memory). If fn returns
// stop, the scan ends and resume is the key it stopped at.
func scanNewest(r Reader, start, end []byte, fn func(prefix []byte, ts Timestamp, d *decoded, engineKey []byte) (stop bool, err error)) (resume []byte, err error) {
	it, err := spanIter(r, start, end)
	if err != nil || it == nil {
		return nil, err
	}
	defer closeIter(it, &err)
	for valid := it.First(); valid; {
		prefixLen, ts, err := splitMVCCKey(it.Key())
		if err != nil {
			return nil, err
		}
		prefix := cloneBytes(it.Key()[:prefixLen])
		raw, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("kv: scan: %w", err)
		}
		d, err := decodeVersionValue(raw)
		if err != nil {
			return nil, err
		}
		stop, err := fn(prefix, ts, &d, it.Key())
		if err != nil {
			return nil, err
		}
		if stop {
			return userKeyFromPrefix(prefix)
		}
		valid = nextUserKey(it, prefix)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("kv: scan: %w", err)
	}
	return nil, nil
}

// MVCCPushIntent moves the intent of the transaction txnID on key up to ts
// (a pusher moved the transaction's timestamp there), if it is below ts;
// found reports whether there was an intent of txnID. Reads below ts then
// read beneath it instead of meeting it.
func MVCCPushIntent(b *Batch, key []byte, txnID []byte, ts Timestamp) (found bool, err error) {
	if err := checkVersion(key, ts); err != nil {
		return false, fmt.Errorf("kv: push intent %q@%s: %w", key, ts, err)
	}
	prefix := EncodeDataSpanStart(key)
	it, err := b.NewIter(prefix, versionsEnd(prefix))
	if err != nil {
		return false, err
	}
	var engineKey, raw []byte
	var cur Timestamp
	func() {
		defer closeIter(it, &err)
		if !it.First() {
			return
		}
		if _, cur, err = splitMVCCKey(it.Key()); err != nil {
			return
		}
		var v []byte
		if v, err = it.ValueAndErr(); err != nil {
			return
		}
		var d decoded
		if d, err = decodeVersionValue(v); err != nil {
			return
		}
		if d.intent && bytes.Equal(d.txnID, txnID) {
			engineKey, raw = cloneBytes(it.Key()), cloneBytes(v)
		}
	}()
	if err != nil || engineKey == nil {
		return false, err
	}
	if !cur.Less(ts) {
		return true, nil
	}
	if err := b.DeleteRaw(engineKey); err != nil {
		return true, err
	}
	if err := b.b.Set(EncodeMVCCKey(key, ts), raw, nil); err != nil {
		return true, fmt.Errorf("kv: push intent %q@%s: %w", key, ts, err)
	}
	return true, nil
}

// spanIter opens an iterator over the MVCC versions of the user keys in
// [start, end) (end nil: to the end of the data); nil, without an error,
// for an empty span.
func spanIter(r Reader, start, end []byte) (*pebble.Iterator, error) {
	lower, upper, err := DataSpanBounds(start, end)
	if err != nil {
		return nil, err
	}
	if end != nil && bytes.Equal(start, end) {
		return nil, nil
	}
	return r.NewIter(lower, upper)
}
