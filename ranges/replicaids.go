package ranges

import "github.com/rangestore/rangestore/proto/rspb"

// NextReplicaID returns the ID a new replica of d's range would get:
// d.next_replica_id, or, in a descriptor written before that field
// existed (0 there), one more than its largest replica ID. Replica IDs
// are per range and never reused; they are not node IDs.
func NextReplicaID(d *rspb.RangeDescriptor) uint64 {
	if n := d.GetNextReplicaId(); n != 0 {
		return n
	}
	var top uint64
	for _, r := range d.GetReplicas() {
		top = max(top, r.ReplicaId)
	}
	return top + 1
}
