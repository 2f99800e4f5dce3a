package ranges

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// digest summarises this replica at its applied index for the consistency
// check: every replica of a range that has applied the same entries must
// hold the same replicated state and data, so equal applied indexes with
// different digests mean a replica diverged (an entry applied differently,
// or data lost or written outside the Raft log). It holds applyMu only to
// take a Pebble snapshot and the applied index together (Update publishes
// both under it); the hashing runs on the snapshot.
func (r *Replica) digest() (*rspb.ReplicaDigest, *rspb.RangeError) {
	m := r.sm
	m.applyMu.Lock()
	if m.merged.Load() || m.closed.Load() {
		m.applyMu.Unlock()
		return nil, rangeErr(rspb.RangeError_RANGE_NOT_FOUND, fmt.Sprintf("r%d on n%d is being removed", r.rangeID, r.store.NodeID()))
	}
	desc := m.desc.Load()
	applied := m.applied.Load()
	snap := r.store.eng.NewSnapshot()
	m.applyMu.Unlock()
	defer snap.Close()
	if desc == nil {
		return nil, rangeErr(rspb.RangeError_UNAVAILABLE, fmt.Sprintf("r%d on n%d has no data yet", r.rangeID, r.store.NodeID()))
	}
	d := &rspb.ReplicaDigest{NodeId: r.store.NodeID(), ReplicaId: r.replicaID, AppliedIndex: applied, Generation: desc.Generation}
	data := sha256.New()
	err := kv.IterateRangeData(snap, desc.StartKey, desc.EndKey, func(k, v []byte) error {
		d.DataKeys++
		hashKV(data, k, v)
		return nil
	})
	if err != nil {
		return nil, rangeErr(rspb.RangeError_UNKNOWN, fmt.Sprintf("r%d on n%d: reading data for a digest: %v", r.rangeID, r.store.NodeID(), err))
	}
	state := sha256.New()
	prefix := rangeStatePrefix(r.rangeID)
	it, err := snap.NewIter(prefix, prefixEnd(prefix))
	if err == nil {
		for ok := it.First(); ok; ok = it.Next() {
			hashKV(state, it.Key(), it.Value())
		}
		err = it.Close()
	}
	if err != nil {
		return nil, rangeErr(rspb.RangeError_UNKNOWN, fmt.Sprintf("r%d on n%d: reading state for a digest: %v", r.rangeID, r.store.NodeID(), err))
	}
	d.DataHash, d.StateHash = data.Sum(nil), state.Sum(nil)
	return d, nil
}

// hashKV adds one length-prefixed key and value to h.
func hashKV(h hash.Hash, k, v []byte) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(k)))])
	h.Write(k)
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(v)))])
	h.Write(v)
}
