package ranges

import (
	"encoding/binary"
	"fmt"

	"github.com/rangestore/rangestore/kv"
)

// Raw (non-MVCC) engine keys under kv.LocalPrefix.
//
//	0x01 'r' rangeID suffix            replicated range state (travels in snapshots)
//	0x01 'p' rangeID replicaID suffix  this replica's own state (applied index, record)
//	0x01 'n' name                      node-level state (cluster record, store ID)
//	0x01 'k' …                         reserved: kv's keys addressed by user key (kv.AddressedKey)
const (
	rangeStateTag   byte = 'r'
	replicaStateTag byte = 'p'
	nodeStateTag    byte = 'n'
)

var (
	suffixDescriptor  = []byte("desc")
	suffixMaxWriteTS  = []byte("mwts")
	suffixGCThreshold = []byte("gcth")
	suffixClosedTS    = []byte("clts")
	suffixLease       = []byte("lease")
	suffixSize        = []byte("size")
	suffixFrozen      = []byte("frozen")
	suffixDedup       = []byte("dedup")
	suffixApplied     = []byte("applied")
	suffixRecord      = []byte("record")
	// suffixRemoved marks a replica ID a replica change removed from this
	// node (written when its replica is destroyed): it is never created
	// here again.
	suffixRemoved = []byte("removed")

	clusterRecordKey = []byte{kv.LocalPrefix, nodeStateTag, 'c', 'l', 'u', 's', 't', 'e', 'r'}
)

// The key builders below allocate each key once, at its final size: on
// the write path every applied command builds several of them per
// replica (applied index, max write timestamp, closed timestamp, size,
// dedup record), and growing them by appends cost up to five allocations
// per key.

// rangeStatePrefixLen is the length of rangeStatePrefix's keys.
const rangeStatePrefixLen = 2 + 8

func rangeStatePrefix(rangeID uint64) []byte {
	return appendRangeStatePrefix(make([]byte, 0, rangeStatePrefixLen), rangeID)
}

func appendRangeStatePrefix(b []byte, rangeID uint64) []byte {
	return binary.BigEndian.AppendUint64(append(b, kv.LocalPrefix, rangeStateTag), rangeID)
}

func rangeStateKey(rangeID uint64, suffix []byte) []byte {
	return append(appendRangeStatePrefix(make([]byte, 0, rangeStatePrefixLen+len(suffix)), rangeID), suffix...)
}

// dedupKey orders dedup records by the proposal's wall time so that expired
// ones can be dropped with one range deletion.
func dedupKey(rangeID uint64, wall int64, proposalID []byte) []byte {
	k := make([]byte, 0, rangeStatePrefixLen+len(suffixDedup)+8+len(proposalID))
	k = append(appendRangeStatePrefix(k, rangeID), suffixDedup...)
	k = binary.BigEndian.AppendUint64(k, uint64(wall))
	return append(k, proposalID...)
}

func dedupSpanBefore(rangeID uint64, wall int64) (start, end []byte) {
	start = rangeStateKey(rangeID, suffixDedup)
	end = binary.BigEndian.AppendUint64(append(make([]byte, 0, len(start)+8), start...), uint64(wall))
	return start, end
}

func replicaStatePrefix() []byte { return []byte{kv.LocalPrefix, replicaStateTag} }

// replicaStateRangePrefix prefixes the replica state of every local replica
// of one range.
func replicaStateRangePrefix(rangeID uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 2+8), kv.LocalPrefix, replicaStateTag), rangeID)
}

func replicaStateKey(rangeID, replicaID uint64, suffix []byte) []byte {
	k := append(make([]byte, 0, 2+8+8+len(suffix)), kv.LocalPrefix, replicaStateTag)
	k = binary.BigEndian.AppendUint64(k, rangeID)
	k = binary.BigEndian.AppendUint64(k, replicaID)
	return append(k, suffix...)
}

func parseReplicaStateKey(k []byte) (rangeID, replicaID uint64, suffix []byte, err error) {
	if len(k) < 18 || k[0] != kv.LocalPrefix || k[1] != replicaStateTag {
		return 0, 0, nil, fmt.Errorf("ranges: malformed replica state key %x", k)
	}
	return binary.BigEndian.Uint64(k[2:10]), binary.BigEndian.Uint64(k[10:18]), k[18:], nil
}

// prefixEnd returns the first key after every key with the given prefix.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

func encodeTS(ts kv.Timestamp) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 12), uint64(ts.WallTime))
	return binary.BigEndian.AppendUint32(b, uint32(ts.Logical))
}

func decodeTS(b []byte) (kv.Timestamp, error) {
	if len(b) != 12 {
		return kv.Timestamp{}, fmt.Errorf("ranges: malformed timestamp %x", b)
	}
	return kv.Timestamp{WallTime: int64(binary.BigEndian.Uint64(b)), Logical: int32(binary.BigEndian.Uint32(b[8:]))}, nil
}

func encodeUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

func decodeUint64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("ranges: malformed uint64 %x", b)
	}
	return binary.BigEndian.Uint64(b), nil
}
