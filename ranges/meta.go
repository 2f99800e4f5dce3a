package ranges

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/lni/dragonboat/v4"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// metaLoop keeps meta consistent with the ranges this node leads: a split
// updates meta after it applied, from the proposer, so a crash in between
// leaves meta behind. Every interval the leaseholder of each range reads
// the meta record at its end key and, if it is missing or older (lower
// generation), writes its descriptor (fixMeta). The record of the parent
// at the old end key keeps covering the right side until then, and the
// gateway learns the right side from RANGE_KEY_MISMATCH hints meanwhile.
func (s *Store) metaLoop(ctx context.Context, interval time.Duration) {
	n := 0
	s.every(interval, func() {
		if s.NodeID() == 0 || s.stopping.Load() {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, interval)
		defer cancel()
		_ = s.checkMeta(ctx)
		// Less often, from one scan of meta: records left inside ranges led
		// here by merges whose proposer died before cleaning them up,
		// orphaned replicas of ranges merged away (before the repair, which
		// they would block), and replicas meta says this node should have.
		if n++; n%5 != 1 {
			return
		}
		snd := s.getSender()
		if snd == nil {
			return
		}
		recs, err := scanMeta(ctx, snd, keys.MetaPrefix, keys.MetaSpanEnd)
		if err != nil {
			s.log.Debug("meta check: scanning meta failed", "err", err)
			return
		}
		s.cleanInnerMeta(ctx, snd, recs)
		s.collectOrphans(ctx, recs)
		s.repairMissingReplicas(ctx, snd, recs)
	})
}

// metaRecord is one meta record as read: its key, its exact bytes (for
// conditional writes) and the descriptor they hold.
type metaRecord struct {
	key, raw []byte
	desc     *rspb.RangeDescriptor
}

// scanMeta reads the meta records with keys in [start, end).
func scanMeta(ctx context.Context, snd leases.KV, start, end []byte) ([]metaRecord, error) {
	resps, err := snd.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: start, EndKey: end}}}})
	if err != nil {
		return nil, err
	}
	kvs := resps[0].GetScan().GetKvs()
	out := make([]metaRecord, 0, len(kvs))
	for _, kv := range kvs {
		d := &rspb.RangeDescriptor{}
		if err := proto.Unmarshal(kv.Value, d); err != nil {
			return nil, fmt.Errorf("meta record %s: %w", keys.Pretty(kv.Key), err)
		}
		out = append(out, metaRecord{key: kv.Key, raw: kv.Value, desc: d})
	}
	return out, nil
}

// MetaDescriptors reads every meta record: the cluster's range
// descriptors, in key order.
func MetaDescriptors(ctx context.Context, snd leases.KV) ([]*rspb.RangeDescriptor, error) {
	recs, err := scanMeta(ctx, snd, keys.MetaPrefix, keys.MetaSpanEnd)
	if err != nil {
		return nil, err
	}
	out := make([]*rspb.RangeDescriptor, len(recs))
	for i, r := range recs {
		out[i] = r.desc
	}
	return out, nil
}

// deleteStaleMeta deletes a meta record that ends strictly inside d and is
// older than d (a range d subsumed), unless it changed since it was read.
func (s *Store) deleteStaleMeta(ctx context.Context, snd Sender, rec metaRecord, d *rspb.RangeDescriptor) error {
	dec, _ := decideInnerRecord(rec.key[len(keys.MetaPrefix):], rec.desc, []*rspb.RangeDescriptor{d})
	if dec.Action != metaDelete {
		return nil
	}
	if _, err := snd.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{
		Key: rec.key, ExpectedValue: rec.raw, Delete: true}}}}); err != nil {
		return err
	}
	s.log.Info("stale meta record removed", "reason", dec.Reason)
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.metaUpdates.Inc()
	}
	return nil
}

// cleanInnerMeta deletes every record that ends strictly inside a range led
// here and is older than it.
func (s *Store) cleanInnerMeta(ctx context.Context, snd Sender, recs []metaRecord) {
	descs := s.heldDescriptors() // sorted by start key, not overlapping
	for _, rec := range recs {
		dec, d := decideInnerRecord(rec.key[len(keys.MetaPrefix):], rec.desc, descs)
		if dec.Action != metaDelete {
			continue
		}
		if err := s.deleteStaleMeta(ctx, snd, rec, d); err != nil {
			return
		}
	}
}

// heldDescriptors returns the descriptors of the local replicas whose lease
// this node holds and may serve under, sorted by start key.
func (s *Store) heldDescriptors() []*rspb.RangeDescriptor {
	sms := s.replicaList()
	now := s.cfg.Clock.Now()
	var out []*rspb.RangeDescriptor
	for _, r := range sms {
		d, l := r.desc(), r.lease()
		if d == nil || l.NodeId != s.NodeID() || l.ReplicaId != r.replicaID || !s.ownLeaseUsable(l) {
			continue
		}
		if s.leaseStatus(l, now) != leases.Valid {
			continue
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].StartKey) < string(out[j].StartKey) })
	return out
}

// checkMeta reads the meta records of every range led here in one batch and
// repairs those that are missing or older than the local descriptor. It
// returns the number of records repaired.
func (s *Store) checkMeta(ctx context.Context) int {
	snd := s.getSender()
	if snd == nil {
		return 0
	}
	descs := s.heldDescriptors()
	if len(descs) == 0 {
		return 0
	}
	reqs := make([]*rspb.RequestUnion, len(descs))
	for i, d := range descs {
		reqs[i] = &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.MetaKey(d.EndKey)}}}
	}
	resps, err := snd.Send(ctx, reqs)
	if err != nil {
		s.log.Debug("meta check: reading meta failed", "err", err)
		return 0
	}
	fixed := 0
	for i, d := range descs {
		var cur *rspb.RangeDescriptor
		if g := resps[i].GetGet(); g.GetFound() {
			cur = &rspb.RangeDescriptor{}
			if proto.Unmarshal(g.GetKv().GetValue(), cur) != nil {
				cur = nil // unreadable: fixMeta reads it again and reports it
			}
		}
		if cur != nil && decideMetaRecord(d, cur).Action == metaKeep {
			continue
		}
		wrote, err := s.fixMeta(ctx, snd, d)
		if err != nil {
			s.log.Warn("meta repair failed", "range", d.RangeId, "err", err)
			continue
		}
		if !wrote {
			continue
		}
		s.log.Info("meta record repaired", "range", d.RangeId, "end", keys.Pretty(d.EndKey), "generation", d.Generation)
		fixed++
	}
	return fixed
}

// repairMissingReplicas creates the local replicas that meta says this node
// has but it does not: the right side of a split this node's replica of the
// parent skipped by installing a later snapshot of the parent. Such a
// replica starts empty, with the range's members, and is caught up by a
// snapshot: the right side's log was compacted when it started (every one
// of its replicas compacts its log right after the split, behind the
// range's first command), so it is never replayed from index 1 over an
// empty span, and the snapshot it gets carries an on-disk index above its
// own 0, which Dragonboat loads (compactPastFirstCommand). A range is
// skipped while any local replica overlaps it (the parent has yet to apply
// the split, or the range was merged into a local one).
func (s *Store) repairMissingReplicas(ctx context.Context, snd Sender, recs []metaRecord) int {
	cr := s.ClusterRecord()
	if cr == nil {
		return 0
	}
	addrs := map[uint64]string{}
	for _, n := range cr.Nodes {
		addrs[n.NodeId] = n.RaftAddress
	}
	// Only once every local replica has loaded its state: a replica still
	// opening (after a restart) has no descriptor yet, so its span would
	// not count as overlapping, and it may be about to apply the very split
	// that creates the range, with its data.
	for _, r := range s.replicaList() {
		if r.desc() == nil && !r.sm.merged.Load() {
			return 0
		}
	}
	me := s.NodeID()
	created := 0
	for _, mr := range recs {
		d := mr.desc
		f := missingReplicaFacts{Desc: d, NodeID: me}
		var mine *rspb.ReplicaDescriptor
		members := map[uint64]string{}
		for _, r := range d.Replicas {
			members[r.ReplicaId] = addrs[r.NodeId]
			if r.NodeId == me {
				mine = r
			}
		}
		// The facts in the order the decision looks at them; the costly
		// ones only when the earlier ones have not settled it.
		f.LocalReplica = s.replica(d.RangeId) != nil
		if mine != nil && !f.LocalReplica {
			if f.OverlapsLocal = s.overlapsLocal(d); !f.OverlapsLocal {
				_, ok, err := s.eng.GetRaw(replicaStateKey(d.RangeId, mine.ReplicaId, suffixRecord))
				f.RecordOnDisk = ok || err != nil
				_, gone, err := s.eng.GetRaw(replicaStateKey(d.RangeId, mine.ReplicaId, suffixRemoved))
				f.RemovedHere = gone || err != nil
			}
		}
		action, reason := decideMissingReplica(f)
		if action == missingAskCompaction {
			compacted := s.othersCompacted(ctx, snd, d, me)
			f.OthersCompacted = &compacted
			action, reason = decideMissingReplica(f)
		}
		if action != missingCreate {
			continue
		}
		s.log.Info("creating a missing replica", "reason", reason)
		rec := &rspb.ReplicaRecord{RangeId: d.RangeId, ReplicaId: mine.ReplicaId, InitialMembers: members}
		if err := s.createReplica(rec); err != nil {
			s.log.Warn("creating a missing replica", "range", d.RangeId, "err", err)
			continue
		}
		s.log.Info("created missing replica (it will get a snapshot)", "range", d.RangeId, "replica", mine.ReplicaId)
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.replicasRepaired.Inc()
		}
		created++
	}
	return created
}

// othersCompacted asks every other replica of d whether its initial Raft log
// was compacted (so a new empty replica can only be caught up by snapshot).
func (s *Store) othersCompacted(ctx context.Context, snd Sender, d *rspb.RangeDescriptor, me uint64) bool {
	for _, r := range d.Replicas {
		if r.NodeId == me {
			continue
		}
		resp, err := snd.SendToNode(ctx, r.NodeId, &rspb.RangeRequest{RangeId: d.RangeId, Admin: &rspb.RangeRequest_AdminLogCompacted{AdminLogCompacted: true}})
		if err != nil || resp.Error != nil || !resp.GetLogCompacted() {
			return false
		}
	}
	return true
}

// logCompacted reports whether this replica was created by a split and has
// since compacted its initial log behind the range's first command
// (compactPastFirstCommand): every snapshot it sends now carries an
// on-disk index above 0, which Dragonboat loads into an empty replica. The
// applied index is asked as well, not only the record: a record written
// by an older binary says compacted without that guarantee.
func (r *Replica) logCompacted() bool {
	if r.sm.applied.Load() == 0 {
		return false
	}
	v, ok, err := r.store.eng.GetRaw(replicaStateKey(r.rangeID, r.replicaID, suffixRecord))
	if err != nil || !ok {
		return false
	}
	rec := &rspb.ReplicaRecord{}
	if proto.Unmarshal(v, rec) != nil {
		return false
	}
	return rec.CreatedBySplit && !rec.PendingLogCompaction
}

// overlapsLocal reports whether any local replica's span overlaps d's.
func (s *Store) overlapsLocal(d *rspb.RangeDescriptor) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range s.replicas {
		od := r.desc()
		if od != nil && !r.sm.merged.Load() && keys.Overlaps(od.StartKey, od.EndKey, d.StartKey, d.EndKey) {
			return true
		}
	}
	return false
}

// CompactRaftLog takes a snapshot of a local replica and drops its whole
// Raft log behind it (replicas that need older entries get a snapshot).
func (s *Store) CompactRaftLog(ctx context.Context, rangeID uint64) (uint64, error) {
	return s.nh.SyncRequestSnapshot(ctx, rangeID, dragonboat.SnapshotOption{OverrideCompactionOverhead: true, CompactionOverhead: 0})
}

// createReplica persists rec (synced: a restart must start the replica
// the same way, e.g. as a joined non-voter) and then starts the replica.
func (s *Store) createReplica(rec *rspb.ReplicaRecord) error {
	data, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	b := s.eng.NewBatch()
	err = b.PutRaw(replicaStateKey(rec.RangeId, rec.ReplicaId, suffixRecord), data)
	if err == nil {
		err = b.Commit(true)
	}
	_ = b.Close()
	if err != nil {
		return err
	}
	return s.startReplica(rec)
}
