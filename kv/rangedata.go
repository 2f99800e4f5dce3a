package kv

import (
	"bytes"
	"fmt"
)

// Addressed keys are raw (non-versioned) keys that belong to a user key
// rather than to a range ID: a transaction record lives with its anchor
// key, on whichever range holds that key now. Their engine key is
//
//	0x01 'k' | escaped(userKey) | 0x00 0x01 | suffix
//
// with the escaping of MVCC keys, so addressed keys sort by user key
// exactly as data keys do, and those of the user keys in [start, end) lie
// in [AddressedSpanBounds(start, end)). A range's data (RangeDataSpans) is
// its MVCC span plus its addressed span: whatever copies, clears or
// digests a range's data covers both, and splits and merges (which only
// move range boundaries) carry addressed keys along like data.
const addressedTag byte = 'k'

// AddressedKey returns the engine key of the raw key addressed by key
// with suffix (which names what it is, e.g. a transaction record).
func AddressedKey(key, suffix []byte) []byte {
	buf := make([]byte, 0, 1+encodedPrefixLen(key)+len(suffix))
	buf = append(buf, LocalPrefix)
	buf = appendEscapedPrefix(buf, key)
	buf[1] = addressedTag // appendEscapedPrefix wrote DataPrefix there
	return append(buf, suffix...)
}

// DecodeAddressedKey splits an addressed engine key into its user key (a
// fresh copy) and its suffix (aliasing engineKey).
func DecodeAddressedKey(engineKey []byte) (key, suffix []byte, err error) {
	if len(engineKey) < 2+terminatorLen || engineKey[0] != LocalPrefix || engineKey[1] != addressedTag {
		return nil, nil, fmt.Errorf("kv: malformed addressed key %x: too short or wrong prefix", engineKey)
	}
	body := engineKey[2:]
	end := bytes.Index(body, []byte{escapeByte, terminatorByte})
	if end < 0 {
		return nil, nil, fmt.Errorf("kv: malformed addressed key %x: missing terminator", engineKey)
	}
	key, err = unescapeUserKey(body[:end])
	if err != nil {
		return nil, nil, fmt.Errorf("kv: malformed addressed key %x: %w", engineKey, err)
	}
	return key, body[end+terminatorLen:], nil
}

// AddressedSpanBounds returns the engine key bounds [lower, upper) of the
// addressed keys of the user keys in [start, end); end == nil means no
// upper bound.
func AddressedSpanBounds(start, end []byte) (lower, upper []byte, err error) {
	if end != nil && string(start) > string(end) {
		return nil, nil, fmt.Errorf("kv: span start %q > end %q: %w", start, end, ErrInvalidSpan)
	}
	lower = AddressedKey(start, nil)
	if end == nil {
		upper = []byte{LocalPrefix, addressedTag + 1}
	} else {
		upper = AddressedKey(end, nil)
	}
	return lower, upper, nil
}

// RangeDataSpans returns the engine spans holding the data of the user
// keys in [start, end), in engine order: the addressed keys, then the
// MVCC versions.
func RangeDataSpans(start, end []byte) ([]Span, error) {
	al, au, err := AddressedSpanBounds(start, end)
	if err != nil {
		return nil, err
	}
	dl, du, err := DataSpanBounds(start, end)
	if err != nil {
		return nil, err
	}
	return []Span{{Start: al, End: au}, {Start: dl, End: du}}, nil
}

// IterateRangeData calls fn for every raw engine key/value of the range
// data of [start, end) (RangeDataSpans), in engine order. The slices passed
// to fn are only valid during the call; an error from fn stops the
// iteration and is returned unchanged.
func IterateRangeData(r Reader, start, end []byte, fn func(engineKey, value []byte) error) (err error) {
	spans, err := RangeDataSpans(start, end)
	if err != nil {
		return err
	}
	for _, sp := range spans {
		if err := iterateRaw(r, sp, fn); err != nil {
			return err
		}
	}
	return nil
}

func iterateRaw(r Reader, sp Span, fn func(engineKey, value []byte) error) (err error) {
	it, err := r.NewIter(sp.Start, sp.End)
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

// ClearRangeData deletes the range data of [start, end) (every MVCC
// version and addressed key) with one range deletion per span.
func ClearRangeData(b *Batch, start, end []byte) error {
	spans, err := RangeDataSpans(start, end)
	if err != nil {
		return err
	}
	for _, sp := range spans {
		if err := b.DeleteRawRange(sp.Start, sp.End); err != nil {
			return err
		}
	}
	return nil
}
