package ranges

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// raftAddressKey records the Raft address the store's NodeHost was first
// opened with (Dragonboat refuses any other one for its directory).
var raftAddressKey = []byte{kv.LocalPrefix, nodeStateTag, 'r', 'a', 'f', 't', 'a', 'd', 'd', 'r'}

// RaftAddressChangedError: the store was started with a Raft address other
// than the one its data directory was created with. Peers know each replica
// by that address, so it cannot change across restarts.
type RaftAddressChangedError struct {
	NodeID   uint64 // 0 before init
	Old, New string
}

func (e *RaftAddressChangedError) Error() string {
	who := "this data directory"
	if e.NodeID != 0 {
		who = fmt.Sprintf("this data directory (n%d)", e.NodeID)
	}
	return fmt.Sprintf("raft address %s differs from %s, the raft address of %s; it cannot change across restarts", e.New, e.Old, who)
}

func sameAddr(a, b string) bool {
	return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}

// checkRaftAddress runs before Dragonboat opens its directory, so that a
// changed Raft address gets an error naming both addresses instead of
// Dragonboat's "not the owner of the data directory". Stores from before
// raftAddressKey fall back to the node's own descriptor in the cluster
// record.
func checkRaftAddress(eng *kv.Engine, addr string) error {
	v, ok, err := eng.GetRaw(raftAddressKey)
	if err != nil {
		return err
	}
	var nodeID uint64
	old := string(v)
	if cv, cok, err := eng.GetRaw(clusterRecordKey); err != nil {
		return err
	} else if cok {
		rec := &rspb.ClusterRecord{}
		if err := proto.Unmarshal(cv, rec); err != nil {
			return fmt.Errorf("ranges: cluster record: %w", err)
		}
		nodeID = rec.NodeId
		for _, d := range rec.Nodes {
			if d.NodeId == rec.NodeId && !ok {
				old, ok = d.RaftAddress, d.RaftAddress != ""
			}
		}
	}
	if ok && !sameAddr(old, addr) {
		return &RaftAddressChangedError{NodeID: nodeID, Old: old, New: addr}
	}
	return nil
}

// recordRaftAddress stores the Raft address once NodeHost accepted it.
func recordRaftAddress(eng *kv.Engine, addr string) error {
	if v, ok, err := eng.GetRaw(raftAddressKey); err != nil || (ok && string(v) == addr) {
		return err
	}
	b := eng.NewBatch()
	defer b.Close()
	if err := b.PutRaw(raftAddressKey, []byte(addr)); err != nil {
		return err
	}
	return b.Commit(true)
}

// UpdateNodeDescriptor replaces the descriptor of d.NodeId in this node's
// cluster record (persisted, synced) when its gRPC or HTTP address differs,
// and reports whether it did. Only nodes already in the record are updated;
// the router resolves node addresses through it.
func (s *Store) UpdateNodeDescriptor(d *rspb.NodeDescriptor) (changed bool, err error) {
	if d.GetNodeId() == 0 || d.Address == "" {
		return false, nil
	}
	s.clusterMu.Lock()
	defer s.clusterMu.Unlock()
	cur := s.ClusterRecord()
	if cur == nil {
		return false, nil
	}
	next := proto.Clone(cur).(*rspb.ClusterRecord)
	for _, nd := range next.Nodes {
		if nd.NodeId != d.NodeId {
			continue
		}
		if nd.Address == d.Address && nd.HttpAddress == d.HttpAddress {
			return false, nil
		}
		nd.Address, nd.HttpAddress = d.Address, d.HttpAddress
		cb, err := proto.Marshal(next)
		if err != nil {
			return false, err
		}
		b := s.eng.NewBatch()
		defer b.Close()
		if err := b.PutRaw(clusterRecordKey, cb); err != nil {
			return false, err
		}
		if err := b.Commit(true); err != nil {
			return false, err
		}
		s.mu.Lock()
		s.cluster = next
		s.mu.Unlock()
		return true, nil
	}
	return false, nil
}

// LocalNodeDescriptors reads the node descriptor records (keys.NodePrefix)
// from the local replica of the range holding them, without a lease: the
// data is committed but may lag the leaseholder. ok is false when no local
// replica holds them. Node addresses read this way need no routing, so a
// node learns a peer's new address even while that peer holds the system
// range's lease at an address nobody knows yet.
func (s *Store) LocalNodeDescriptors() (descs []*rspb.NodeDescriptor, ok bool, err error) {
	start, end := keys.NodePrefix, prefixEnd(keys.NodePrefix)
	s.mu.RLock()
	for _, r := range s.replicas {
		d := r.desc()
		if d != nil && !r.sm.merged.Load() && bytes.Compare(d.StartKey, start) <= 0 && bytes.Compare(end, d.EndKey) <= 0 {
			ok = true
			break
		}
	}
	s.mu.RUnlock()
	if !ok {
		return nil, false, nil
	}
	kvs, _, err := kv.MVCCScan(s.eng, start, end, kv.Timestamp{WallTime: math.MaxInt64}, kv.ScanOptions{})
	if err != nil {
		return nil, true, err
	}
	for _, x := range kvs {
		d := &rspb.NodeDescriptor{}
		if err := proto.Unmarshal(x.Value, d); err != nil {
			return nil, true, fmt.Errorf("node record %s: %w", keys.Pretty(x.Key), err)
		}
		descs = append(descs, d)
	}
	return descs, true, nil
}

// noteLeader records since when a local replica has known no Raft leader
// (called from Dragonboat's leader events, must not block).
func (s *Store) noteLeader(rangeID, leaderID uint64) {
	if leaderID == 0 {
		s.noLeaderSince.LoadOrStore(rangeID, s.cfg.TimeSource.Now())
	} else {
		s.noLeaderSince.Delete(rangeID)
	}
}

// QuorumProblems looks for local ranges that cannot serve for lack of a
// quorum and describes the first one found (by range ID) and their number.
//
// Two cheap signals, no I/O, no NodeHost call (fine for thousands of
// ranges):
//   - fewer than a majority of the range's voters are on nodes that live()
//     reports live (the liveness cache, refreshed every heartbeat): this
//     catches quiesced ranges too, whose followers keep the last leader
//     they knew as long as nothing wakes them;
//   - the local replica has known no Raft leader (Dragonboat leader events:
//     a leader that loses its quorum steps down under CheckQuorum, and a
//     follower that lost its leader turns pre-candidate, both reporting no
//     leader) for longer than a grace period of three election timeouts
//     (at least 2 s), which covers an ordinary election.
func (s *Store) QuorumProblems(live func(nodeID uint64) bool) (first string, n int) {
	grace := max(2*time.Second, 3*s.electionTimeout())
	ms := s.replicaList()
	var firstID uint64
	for _, r := range ms {
		d := r.desc()
		if d == nil || r.sm.merged.Load() || r.removedHere() {
			continue // a removed replica knows no leader until it is collected
		}
		voters, liveVoters := 0, 0
		for _, r := range d.Replicas {
			if r.Type != rspb.ReplicaType_VOTER {
				continue
			}
			voters++
			if live(r.NodeId) {
				liveVoters++
			}
		}
		var why string
		if voters > 0 && 2*liveVoters <= voters {
			why = fmt.Sprintf("r%d has no quorum (%d of %d voters on live nodes)", d.RangeId, liveVoters, voters)
		} else if v, ok := s.noLeaderSince.Load(d.RangeId); ok {
			if since := s.cfg.TimeSource.Since(v.(time.Time)); since > grace {
				why = fmt.Sprintf("r%d has no quorum (leader unknown for %s)", d.RangeId, since.Round(100*time.Millisecond))
			}
		}
		if why == "" {
			continue
		}
		n++
		if firstID == 0 || d.RangeId < firstID {
			firstID, first = d.RangeId, why
		}
	}
	return first, n
}
