package ranges

import (
	"testing"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestNextReplicaID: a descriptor's counter is used as is; one written
// before next_replica_id existed (0) is read as its largest replica ID + 1,
// whatever the order of its replicas and whichever nodes they are on.
func TestNextReplicaID(t *testing.T) {
	reps := func(ids ...uint64) []*rspb.ReplicaDescriptor {
		var out []*rspb.ReplicaDescriptor
		for i, id := range ids {
			out = append(out, &rspb.ReplicaDescriptor{NodeId: uint64(i + 1), ReplicaId: id})
		}
		return out
	}
	for _, c := range []struct {
		name string
		d    *rspb.RangeDescriptor
		want uint64
	}{
		{"set", &rspb.RangeDescriptor{Replicas: reps(1, 2, 3), NextReplicaId: 7}, 7},
		{"old descriptor, IDs equal to node IDs", &rspb.RangeDescriptor{Replicas: reps(1, 2, 3)}, 4},
		{"old descriptor, IDs out of order", &rspb.RangeDescriptor{Replicas: reps(5, 2, 9)}, 10},
		{"no replicas", &rspb.RangeDescriptor{}, 1},
		{"nil", nil, 1},
	} {
		if got := NextReplicaID(c.d); got != c.want {
			t.Errorf("%s: NextReplicaID = %d, want %d", c.name, got, c.want)
		}
	}
}
