// Package keys defines the logical keyspace of rangestore: where the system
// span, the meta records and the user span live, and how client keys are
// mapped into the user span.
//
// Layout (internal keys, bytewise order):
//
//	""            .. "\x00s"   meta range (r1): meta records "\x00m" + endKey
//	"\x00s"       .. "u"       system range (r2): node records, ID allocators, …
//	"u"           .. KeyMax    user span: client key k is stored as "u" + k
//
// Invariants: a client key is always mapped with UserKey, so a client can
// never address the system span; every meta record's key is MetaKey(end) for
// the range ending at end, so the range containing k is the first meta record
// whose key is greater than MetaKey(k).
package keys

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

var (
	// KeyMin is the start of the keyspace.
	KeyMin = []byte{}
	// KeyMax is the end of the keyspace (exclusive).
	KeyMax = []byte{0xff, 0xff}
	// MetaPrefix prefixes meta records (range descriptors keyed by end key).
	MetaPrefix = []byte{0x00, 'm'}
	// MetaSpanEnd is the exclusive end of the meta records.
	MetaSpanEnd = []byte{0x00, 'n'}
	// SystemStart is the start of the system range (end of the meta range).
	SystemStart = []byte{0x00, 's'}
	// NodePrefix prefixes node descriptor records.
	NodePrefix = []byte("\x00snode/")
	// LivenessPrefix prefixes node liveness records.
	LivenessPrefix = []byte("\x00sliveness/")
	// RangeIDGeneratorKey holds the highest range ID allocated so far (a
	// decimal counter, incremented by splits).
	RangeIDGeneratorKey = []byte("\x00srange-id")
	// NodeIDGeneratorKey holds the highest node ID allocated so far (a
	// decimal counter, incremented by joins; IDs are never reused).
	NodeIDGeneratorKey = []byte("\x00snode-id")
	// NodeJoinPrefix prefixes join records: the node ID allocated to a
	// joining store, keyed by its store ID (NodeJoinKey).
	NodeJoinPrefix = []byte("\x00snode-join/")
	// ReplicationFactorKey holds the cluster's replication factor setting
	// (a decimal number; written by init and by SetReplicationFactor,
	// read by the replicate queue; absent in clusters from before it: 3).
	ReplicationFactorKey = []byte("\x00ssetting/replication-factor")
	// ClosedTimestampTargetKey holds the closed_timestamp_target cluster
	// setting (a Go duration, "3s"; written by SetClusterSetting, read by
	// every node; absent until written: each node's start flag).
	ClosedTimestampTargetKey = []byte("\x00ssetting/closed-timestamp-target")
	// ZonePrefix prefixes zone config records, keyed by the client key the
	// record's span starts at (ZoneKey; the default zone at ZonePrefix).
	ZonePrefix = []byte("\x00szone/")
	// ProtectionPrefix prefixes protection records (protected timestamps
	// of backups), keyed by their ID (ProtectionKey).
	ProtectionPrefix = []byte("\x00sprotect/")
	// UserPrefix prefixes every client key.
	UserPrefix = []byte{'u'}
	// UserSpanEnd is the exclusive end of all mapped client keys.
	UserSpanEnd = []byte{'v'}
)

// UserKey maps a client key into the user span.
func UserKey(k []byte) []byte {
	out := make([]byte, 0, len(UserPrefix)+len(k))
	out = append(out, UserPrefix...)
	return append(out, k...)
}

// UserSpan maps a client span [start, end) into the user span. An empty end
// means the end of the user span.
func UserSpan(start, end []byte) ([]byte, []byte) {
	s := UserKey(start)
	if len(end) == 0 {
		return s, append([]byte(nil), UserSpanEnd...)
	}
	return s, UserKey(end)
}

// ClientKey strips the user prefix from an internal key.
func ClientKey(k []byte) ([]byte, error) {
	if !bytes.HasPrefix(k, UserPrefix) {
		return nil, fmt.Errorf("keys: %q is not in the user span", k)
	}
	return k[len(UserPrefix):], nil
}

// IsUserKey reports whether an internal key lies in the user span.
func IsUserKey(k []byte) bool { return bytes.HasPrefix(k, UserPrefix) }

// Pretty renders an internal key for messages: a user key as the client
// wrote it, anything else as /System/… .
func Pretty(k []byte) string {
	if IsUserKey(k) {
		return fmt.Sprintf("%q", k[len(UserPrefix):])
	}
	return fmt.Sprintf("/System/%q", k)
}

// MetaKey is the meta record key of the range whose end key is end.
func MetaKey(end []byte) []byte {
	out := make([]byte, 0, len(MetaPrefix)+len(end))
	out = append(out, MetaPrefix...)
	return append(out, end...)
}

// MetaLookupStart returns the first meta key that can describe the range
// containing k: meta records are keyed by the exclusive end key, so the range
// containing k has end > k, i.e. meta key >= MetaKey(k + "\x00").
func MetaLookupStart(k []byte) []byte { return MetaKey(Next(k)) }

// NodeKey is the system key of a node descriptor.
func NodeKey(nodeID uint64) []byte {
	out := append([]byte(nil), NodePrefix...)
	return binary.BigEndian.AppendUint64(out, nodeID)
}

// NodeJoinKey is the system key of the join record of a store.
func NodeJoinKey(storeID string) []byte {
	return append(append([]byte(nil), NodeJoinPrefix...), storeID...)
}

// LivenessKey is the system key of a node's liveness record.
func LivenessKey(nodeID uint64) []byte {
	out := append([]byte(nil), LivenessPrefix...)
	return binary.BigEndian.AppendUint64(out, nodeID)
}

// Next returns the smallest key greater than k.
func Next(k []byte) []byte {
	out := make([]byte, len(k)+1)
	copy(out, k)
	return out
}

// InSpan reports whether k is in [start, end).
func InSpan(k, start, end []byte) bool {
	return bytes.Compare(k, start) >= 0 && bytes.Compare(k, end) < 0
}

// ContainsSpan reports whether [s, e) lies within [start, end).
func ContainsSpan(s, e, start, end []byte) bool {
	return bytes.Compare(s, start) >= 0 && bytes.Compare(e, end) <= 0 && bytes.Compare(s, e) <= 0
}

// Overlaps reports whether the spans [s1, e1) and [s2, e2) share a key.
func Overlaps(s1, e1, s2, e2 []byte) bool {
	return bytes.Compare(s1, e2) < 0 && bytes.Compare(s2, e1) < 0
}

// DefaultSplitKeys picks n split points (client keys) spread evenly over the
// alphanumeric alphabet, so that typical ASCII keys land in different ranges:
// single characters for up to 61 points, two characters (up to 3,843 points)
// beyond that.
func DefaultSplitKeys(n int) [][]byte {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	if n <= 0 {
		return nil
	}
	width := 1
	space := len(alphabet)
	if n >= len(alphabet) {
		width, space = 2, len(alphabet)*len(alphabet)
	}
	if n >= space {
		n = space - 1
	}
	var out [][]byte
	seen := map[int]bool{}
	for i := 1; i <= n; i++ {
		idx := i * space / (n + 1)
		if idx >= space {
			idx = space - 1
		}
		if seen[idx] {
			continue
		}
		seen[idx] = true
		if width == 1 {
			out = append(out, []byte{alphabet[idx]})
		} else {
			out = append(out, []byte{alphabet[idx/len(alphabet)], alphabet[idx%len(alphabet)]})
		}
	}
	return out
}

// ZoneKey is the key of the zone config record of the span of client keys
// starting at start (empty: the default zone).
func ZoneKey(start []byte) []byte {
	return append(append([]byte(nil), ZonePrefix...), start...)
}

// ProtectionKey is the key of the protection record with the given ID.
func ProtectionKey(id string) []byte {
	return append(append([]byte(nil), ProtectionPrefix...), id...)
}

// PrefixEnd is the exclusive end of the keys starting with prefix (a
// prefix whose last byte is not 0xff).
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	end[len(end)-1]++
	return end
}
