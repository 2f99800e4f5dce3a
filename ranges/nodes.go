package ranges

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
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

// UpdateNodeDescriptor records d in this node's cluster record (persisted,
// synced), the node's cached directory: it replaces the descriptor of
// d.NodeId when its gRPC or HTTP address or locality differs (or d marks
// it a read replica, a role never cleared), and adds a
// node the record does not know yet (one that joined, d must then carry
// its Raft address). It reports whether it changed the record. The router
// resolves node addresses, and the store peers' Raft addresses, through it.
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
	found := false
	for _, nd := range next.Nodes {
		if nd.NodeId != d.NodeId {
			continue
		}
		found = true
		// The read-replica role is for the node's lifetime: set, never
		// cleared.
		if nd.Address == d.Address && nd.HttpAddress == d.HttpAddress && (d.Locality == nil || sameLocality(nd.Locality, d.Locality)) &&
			(nd.ReadReplica || !d.ReadReplica) {
			return false, nil
		}
		nd.Address, nd.HttpAddress = d.Address, d.HttpAddress
		nd.ReadReplica = nd.ReadReplica || d.ReadReplica
		if d.Locality != nil {
			nd.Locality = d.Locality
		}
	}
	if !found {
		if d.RaftAddress == "" {
			return false, nil
		}
		next.Nodes = append(next.Nodes, proto.Clone(d).(*rspb.NodeDescriptor))
		sort.Slice(next.Nodes, func(i, j int) bool { return next.Nodes[i].NodeId < next.Nodes[j].NodeId })
	}
	if err := s.writeClusterRecord(next); err != nil {
		return false, err
	}
	return true, nil
}

func sameLocality(a, b []*rspb.LocalityTier) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// writeClusterRecord persists rec (synced) and makes it current; callers
// hold clusterMu.
func (s *Store) writeClusterRecord(rec *rspb.ClusterRecord) error {
	cb, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	b := s.eng.NewBatch()
	defer b.Close()
	if err := b.PutRaw(clusterRecordKey, cb); err != nil {
		return err
	}
	if err := b.Commit(true); err != nil {
		return err
	}
	s.mu.Lock()
	s.cluster = rec
	s.mu.Unlock()
	return nil
}

// storeIDKey holds the store's random ID (StoreID).
var storeIDKey = []byte{kv.LocalPrefix, nodeStateTag, 's', 't', 'o', 'r', 'e', 'i', 'd'}

// StoreID returns this store's random ID, generated and persisted (synced)
// on first use. A joining node sends it with every try, so that a retried
// join gets the node ID of the first one.
func (s *Store) StoreID() (string, error) {
	s.clusterMu.Lock()
	defer s.clusterMu.Unlock()
	v, ok, err := s.eng.GetRaw(storeIDKey)
	if err != nil || ok {
		return string(v), err
	}
	idb := make([]byte, 16)
	if _, err := rand.Read(idb); err != nil {
		return "", err
	}
	id := hex.EncodeToString(idb)
	b := s.eng.NewBatch()
	defer b.Close()
	if err := b.PutRaw(storeIDKey, []byte(id)); err != nil {
		return "", err
	}
	if err := b.Commit(true); err != nil {
		return "", err
	}
	return id, nil
}

// JoinCluster makes this store, not yet part of any cluster, a member of
// the cluster a join admitted it to: it persists rec as its cluster record
// (synced). The store holds no replica yet; its node ID is rec.NodeId from
// now on. It is idempotent for the same cluster and node ID.
func (s *Store) JoinCluster(rec *rspb.ClusterRecord) error {
	if rec.GetClusterId() == "" || rec.NodeId == 0 || rec.MetaRange == nil {
		return errors.New("join: the cluster record lacks a cluster ID, node ID or meta range")
	}
	s.clusterMu.Lock()
	defer s.clusterMu.Unlock()
	if cur := s.ClusterRecord(); cur != nil {
		if cur.ClusterId == rec.ClusterId && cur.NodeId == rec.NodeId {
			return nil
		}
		return fmt.Errorf("node is already part of cluster %s as n%d", cur.ClusterId, cur.NodeId)
	}
	if err := s.writeClusterRecord(rec); err != nil {
		return err
	}
	s.log.Info("store joined the cluster", "cluster", rec.ClusterId, "node", rec.NodeId, "nodes", len(rec.Nodes))
	return nil
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

// MetaDescriptor returns the newest descriptor of the meta range this node
// knows: its own replica's, if it has one with a newer generation than the
// cluster record's copy, else that copy (nil before bootstrap). The meta
// range's replicas change like any range's; the router finds meta through
// this descriptor, and a node that holds no replica of meta keeps its copy
// current with LearnMetaDescriptor.
func (s *Store) MetaDescriptor() *rspb.RangeDescriptor {
	c := s.ClusterRecord()
	if c == nil {
		return nil
	}
	best := c.MetaRange
	if r := s.replica(MetaRangeID); r != nil && !r.sm.merged.Load() {
		if d := r.desc(); d != nil && (best == nil || d.Generation > best.Generation) {
			best = d
		}
	}
	return best
}

// LearnMetaDescriptor records d, a descriptor of the meta range, in the
// cluster record (synced) if it is newer than the record's copy, and
// reports whether it did.
func (s *Store) LearnMetaDescriptor(d *rspb.RangeDescriptor) (bool, error) {
	if d == nil || d.RangeId != MetaRangeID {
		return false, nil
	}
	s.clusterMu.Lock()
	defer s.clusterMu.Unlock()
	cur := s.ClusterRecord()
	if cur == nil || (cur.MetaRange != nil && cur.MetaRange.Generation >= d.Generation) {
		return false, nil
	}
	next := proto.Clone(cur).(*rspb.ClusterRecord)
	next.MetaRange = proto.Clone(d).(*rspb.RangeDescriptor)
	if err := s.writeClusterRecord(next); err != nil {
		return false, err
	}
	return true, nil
}
