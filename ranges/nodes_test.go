package ranges

import (
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

func quorumTestStore(n int) *Store {
	s := &Store{cfg: StoreConfig{RTTMillisecond: 200, ElectionRTT: 5, TimeSource: timeutil.NewManualTimeSource(time.Unix(1e9, 0))},
		replicas: map[uint64]*Replica{}}
	for i := 1; i <= n; i++ {
		m := &stateMachine{rangeID: uint64(i)}
		d := &rspb.RangeDescriptor{RangeId: uint64(i)}
		for r := uint64(1); r <= 3; r++ {
			// Replica IDs are not node IDs (n1 holds replica 2, …).
			d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: r, ReplicaId: r%3 + 1})
		}
		m.desc.Store(d)
		s.replicas[uint64(i)] = &Replica{rangeID: uint64(i), replicaID: 2, store: s, sm: m} // this node is n1
	}
	return s
}

func TestQuorumProblems(t *testing.T) {
	s := quorumTestStore(10)
	all := func(uint64) bool { return true }
	if first, n := s.QuorumProblems(all); n != 0 {
		t.Fatalf("all live: %d problems (%s)", n, first)
	}
	// One of three down: still a quorum.
	if first, n := s.QuorumProblems(func(id uint64) bool { return id != 3 }); n != 0 {
		t.Fatalf("n3 down: %d problems (%s)", n, first)
	}
	// Two of three down: every range, the lowest named.
	first, n := s.QuorumProblems(func(id uint64) bool { return id == 1 })
	if n != 10 || first != "r1 has no quorum (1 of 3 voters on live nodes)" {
		t.Fatalf("n2, n3 down: %d problems, first %q", n, first)
	}
	// Leader unknown: only after the grace period.
	s.noteLeader(7, 0)
	if _, n := s.QuorumProblems(all); n != 0 {
		t.Fatalf("leader just lost: %d problems", n)
	}
	ts := s.cfg.TimeSource.(*timeutil.ManualTimeSource)
	ts.Advance(1900 * time.Millisecond) // within the grace period (2 s)
	if _, n := s.QuorumProblems(all); n != 0 {
		t.Fatalf("leader unknown for 1.9s: %d problems", n)
	}
	ts.Advance(2100 * time.Millisecond)
	if first, n := s.QuorumProblems(all); n != 1 || !strings.HasPrefix(first, "r7 has no quorum (leader unknown for 4") {
		t.Fatalf("leader unknown for 4s: %d problems, first %q", n, first)
	}
	s.noteLeader(7, 2)
	if _, n := s.QuorumProblems(all); n != 0 {
		t.Fatalf("leader known again: %d problems", n)
	}
}

// BenchmarkQuorumProblems1000: the readiness check over 1000 local ranges
// (run every 250 ms and on each health Check).
func BenchmarkQuorumProblems1000(b *testing.B) {
	s := quorumTestStore(1000)
	live := func(id uint64) bool { return id != 3 }
	for i := 0; i < b.N; i++ {
		s.QuorumProblems(live)
	}
}
