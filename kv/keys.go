package kv

import (
	"encoding/binary"
	"fmt"
)

// Engine key prefixes. The first byte of every Pebble key says what it is.
const (
	// LocalPrefix marks raw, non-versioned keys owned by callers (e.g.
	// range-local state). kv never interprets them.
	LocalPrefix byte = 0x01
	// DataPrefix marks MVCC data keys.
	DataPrefix byte = 0x02
)

const (
	escapeByte     byte = 0x00 // introduces an escape sequence in an encoded user key
	escapedZero    byte = 0xFF // 0x00 0xFF encodes a literal 0x00 byte
	terminatorByte byte = 0x01 // 0x00 0x01 terminates an encoded user key
	// versionSuffixLen is the length of the timestamp suffix of an MVCC key.
	versionSuffixLen = 12
	// terminatorLen is the length of the user key terminator.
	terminatorLen = 2
)

// appendEscapedPrefix appends DataPrefix + escaped(key) + terminator to dst.
// The result is the common prefix of every version of key.
func appendEscapedPrefix(dst, key []byte) []byte {
	dst = append(dst, DataPrefix)
	for _, c := range key {
		if c == escapeByte {
			dst = append(dst, escapeByte, escapedZero)
		} else {
			dst = append(dst, c)
		}
	}
	return append(dst, escapeByte, terminatorByte)
}

func encodedPrefixLen(key []byte) int {
	n := 1 + len(key) + terminatorLen
	for _, c := range key {
		if c == escapeByte {
			n++
		}
	}
	return n
}

// appendVersion appends the 12-byte, descending-order encoding of ts.
func appendVersion(dst []byte, ts Timestamp) []byte {
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(ts.WallTime))
	return binary.BigEndian.AppendUint32(dst, ^uint32(ts.Logical))
}

func decodeVersion(suffix []byte) Timestamp {
	return Timestamp{
		WallTime: int64(^binary.BigEndian.Uint64(suffix[:8])),
		Logical:  int32(^binary.BigEndian.Uint32(suffix[8:12])),
	}
}

// EncodeMVCCKey returns the engine key of the version of key at ts:
// DataPrefix + escaped(key) + 0x00 0x01 + 12-byte descending timestamp.
// ts should be non-empty (PutMVCC/DeleteMVCC enforce this).
func EncodeMVCCKey(key []byte, ts Timestamp) []byte {
	buf := make([]byte, 0, encodedPrefixLen(key)+versionSuffixLen)
	buf = appendEscapedPrefix(buf, key)
	return appendVersion(buf, ts)
}

// DecodeMVCCKey splits an MVCC engine key into its user key (a fresh copy) and
// version timestamp.
func DecodeMVCCKey(engineKey []byte) (key []byte, ts Timestamp, err error) {
	prefixLen, ts, err := splitMVCCKey(engineKey)
	if err != nil {
		return nil, Timestamp{}, err
	}
	key, err = unescapeUserKey(engineKey[1 : prefixLen-terminatorLen])
	if err != nil {
		return nil, Timestamp{}, fmt.Errorf("kv: malformed MVCC key %x: %w", engineKey, err)
	}
	return key, ts, nil
}

// splitMVCCKey validates the framing of an MVCC engine key and returns the
// length of its per-user-key prefix (DataPrefix + escaped key + terminator)
// and its timestamp. It does not validate the escaping of the user key.
func splitMVCCKey(engineKey []byte) (prefixLen int, ts Timestamp, err error) {
	if len(engineKey) < 1+terminatorLen+versionSuffixLen || engineKey[0] != DataPrefix {
		return 0, Timestamp{}, fmt.Errorf("kv: malformed MVCC key %x: too short or wrong prefix", engineKey)
	}
	prefixLen = len(engineKey) - versionSuffixLen
	if engineKey[prefixLen-2] != escapeByte || engineKey[prefixLen-1] != terminatorByte {
		return 0, Timestamp{}, fmt.Errorf("kv: malformed MVCC key %x: missing terminator", engineKey)
	}
	ts = decodeVersion(engineKey[prefixLen:])
	if ts.IsEmpty() {
		return 0, Timestamp{}, fmt.Errorf("kv: malformed MVCC key %x: empty timestamp", engineKey)
	}
	return prefixLen, ts, nil
}

// unescapeUserKey reverses the escaping of a user key (without the
// terminator). It always returns a fresh, non-nil slice.
func unescapeUserKey(esc []byte) ([]byte, error) {
	out := make([]byte, 0, len(esc))
	for i := 0; i < len(esc); i++ {
		c := esc[i]
		if c != escapeByte {
			out = append(out, c)
			continue
		}
		if i+1 >= len(esc) || esc[i+1] != escapedZero {
			return nil, fmt.Errorf("invalid escape at offset %d", i)
		}
		out = append(out, escapeByte)
		i++
	}
	return out, nil
}

// EncodeDataSpanStart returns the smallest engine key of any version of any
// user key >= key. For a span [start, end) of user keys, the engine key bounds
// are [EncodeDataSpanStart(start), EncodeDataSpanStart(end)); an open-ended
// span (end == nil) uses DataEnd() as its upper bound.
func EncodeDataSpanStart(key []byte) []byte {
	return appendEscapedPrefix(make([]byte, 0, encodedPrefixLen(key)), key)
}

// DataEnd returns the exclusive upper bound of the whole MVCC data keyspace
// (DataPrefix+1).
func DataEnd() []byte { return []byte{DataPrefix + 1} }

// DataSpanBounds returns the engine key bounds [lower, upper) covering all
// versions of all user keys in [start, end). end == nil means no upper bound.
// It returns an error wrapping ErrInvalidSpan if end != nil and start > end.
func DataSpanBounds(start, end []byte) (lower, upper []byte, err error) {
	if end != nil && string(start) > string(end) {
		return nil, nil, fmt.Errorf("kv: span start %q > end %q: %w", start, end, ErrInvalidSpan)
	}
	lower = EncodeDataSpanStart(start)
	if end == nil {
		upper = DataEnd()
	} else {
		upper = EncodeDataSpanStart(end)
	}
	return lower, upper, nil
}

// versionsEnd returns the exclusive upper bound of all versions of the user
// key whose encoded prefix is prefix (ending in the 0x00 0x01 terminator):
// the same bytes with the terminator's last byte incremented.
func versionsEnd(prefix []byte) []byte {
	end := make([]byte, len(prefix))
	copy(end, prefix)
	end[len(end)-1]++
	return end
}

// Value encoding: a 1-byte tag followed by the payload.
const (
	tagTombstone byte = 0
	tagValue     byte = 1
)

func encodeValue(v []byte) []byte {
	buf := make([]byte, 1+len(v))
	buf[0] = tagValue
	copy(buf[1:], v)
	return buf
}

var tombstoneValue = []byte{tagTombstone}

// decodeValue returns the payload (aliasing raw) and whether the version is a
// tombstone.
func decodeValue(raw []byte) (payload []byte, tombstone bool, err error) {
	if len(raw) == 0 {
		return nil, false, fmt.Errorf("kv: malformed MVCC value: empty")
	}
	switch raw[0] {
	case tagTombstone:
		if len(raw) != 1 {
			return nil, false, fmt.Errorf("kv: malformed MVCC value: tombstone with %d payload bytes", len(raw)-1)
		}
		return nil, true, nil
	case tagValue:
		return raw[1:], false, nil
	default:
		return nil, false, fmt.Errorf("kv: malformed MVCC value: unknown tag %d", raw[0])
	}
}
