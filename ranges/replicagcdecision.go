package ranges

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// replicaGCFacts is what decideReplicaGC looks at for one local replica.
type replicaGCFacts struct {
	Desc *rspb.RangeDescriptor // the local replica's descriptor
	// Meta is every meta record, as one scan read them.
	Meta []*rspb.RangeDescriptor
	// Others are the local replicas (loaded, not merged away); Desc's own
	// entry, if there, is skipped.
	Others []replicaGCOther
	// AllLoaded: every local replica has loaded its descriptor.
	AllLoaded bool
	// LeaderKnown: the replica knows a Raft leader; otherwise NoLeaderFor
	// is how long it has known none, and Grace how long that must last.
	LeaderKnown        bool
	NoLeaderFor, Grace time.Duration
	// NodeID is this node, ReplicaID the local replica's ID (0: not known,
	// the removal rule does not apply).
	NodeID, ReplicaID uint64
}

// replicaGCOther is another local replica, as decideReplicaGC sees it.
type replicaGCOther struct {
	Desc        *rspb.RangeDescriptor
	LeaderKnown bool
}

// replicaGCAction is what to do with a local replica.
type replicaGCAction int

const (
	// replicaGCKeep: the replica stays.
	replicaGCKeep replicaGCAction = iota
	// replicaGCDestroy: the replica is an orphan; it is destroyed with its
	// data.
	replicaGCDestroy
	// replicaGCDestroyRemoved: a replica change removed the replica from
	// its range; it is destroyed with its data (the range lives on).
	replicaGCDestroyRemoved
)

var replicaGCActionNames = [...]string{replicaGCKeep: "keep", replicaGCDestroy: "destroy", replicaGCDestroyRemoved: "destroy-removed"}

func (a replicaGCAction) String() string {
	if a >= 0 && int(a) < len(replicaGCActionNames) {
		return replicaGCActionNames[a]
	}
	return fmt.Sprintf("replicaGCAction(%d)", int(a))
}

// decideReplicaGC decides whether a local replica R (range ID id, span S,
// generation g) was removed from its range (decideRemovedReplica), or is
// the orphan of a range merged away while this node
// missed the merge (it was down, and its replica of the left range caught
// up later by a snapshot of a different layout, which covers nothing of
// S). Nothing else ever removes such a replica: its range has no other
// replica, so it never learns a leader, and it blocks the creation of the
// replicas of the ranges now covering S (a missing replica is not created
// over a local one). R is destroyed, with its data, only if all hold:
//
//  1. meta has no record of id. A range that still exists has a record
//     (or, while its meta update lags after a split, it is covered by its
//     parent's, see 2);
//  2. the meta records overlapping S cover all of S, and every one of
//     them has a generation above g: they were made after R by merges and
//     splits that R took part in. A split's right-hand side whose record
//     lags is covered by its parent's record, whose generation is lower
//     than its own, or not covered at all: it is kept;
//  3. no other local replica overlaps the span of any of those records,
//     and no other local replica is behind meta (meta holds its range at
//     a higher generation than the local one). Such a replica may still
//     apply, from its log, the merge that subsumes R (which keeps R's data
//     in place for it, as its own) or a snapshot covering S (which
//     replaces R's data and removes R, destroySubsumed): deleting R's data
//     under it would lose data. A local replica of a range now covering
//     part of S holds its own data there, which deleting S would destroy.
//     Another orphan O (1 and 2 hold for it too, and it knows no leader)
//     does not count: O's range was merged away, so every replica of it,
//     this one included, had applied O's freeze (and everything before it)
//     before the merge, and a frozen range applies nothing but no-ops; O's
//     data lies outside S;
//  4. R has known no Raft leader for at least a grace period (a replica
//     with a leader is part of a live range, or about to learn its fate
//     from it), and every local replica has loaded its descriptor (one
//     still opening has no span yet, so it could not count in 3).
//
// Then deleting S's data is safe: no local replica covers any part of S,
// and the replicas here of the ranges now covering S do not exist yet: the
// missing-replica repair creates them empty, from meta, and they are
// caught up by a snapshot, never by replaying their log over S (its rules:
// decideMissingReplica).
func decideReplicaGC(f replicaGCFacts) (replicaGCAction, string) {
	d := f.Desc
	keep := func(format string, args ...any) (replicaGCAction, string) {
		return replicaGCKeep, fmt.Sprintf(format, args...)
	}
	if removed, action, reason := decideRemovedReplica(f); removed {
		return action, reason
	}
	if !keys.IsUserKey(d.StartKey) {
		return keep("%s is a system range (never merged)", spanOf(d))
	}
	if !f.AllLoaded {
		return keep("a local replica has not loaded its descriptor yet (it could overlap %s)", spanOf(d))
	}
	covering, why := mergedAway(d, f.Meta)
	if why != "" {
		return replicaGCKeep, why
	}
	for _, o := range f.Others {
		if o.Desc.RangeId == d.RangeId {
			continue
		}
		if !o.LeaderKnown {
			if _, why := mergedAway(o.Desc, f.Meta); why == "" {
				continue // another orphan: it applies nothing more
			}
		}
		for _, m := range covering {
			if keys.Overlaps(o.Desc.StartKey, o.Desc.EndKey, m.StartKey, m.EndKey) {
				return keep("the local %s overlaps meta's %s, which covers %s (it may still subsume it, or hold data there)", spanOf(o.Desc), spanOf(m), spanOf(d))
			}
		}
		for _, m := range f.Meta {
			if m.RangeId == o.Desc.RangeId && m.Generation > o.Desc.Generation {
				return keep("the local %s is behind meta's %s (it may still apply a merge of %s)", spanOf(o.Desc), spanOf(m), spanOf(d))
			}
		}
	}
	if f.LeaderKnown {
		return keep("%s knows a Raft leader", spanOf(d))
	}
	if f.NoLeaderFor < f.Grace {
		return keep("%s has known no Raft leader for %s, less than %s", spanOf(d), f.NoLeaderFor, f.Grace)
	}
	return replicaGCDestroy, fmt.Sprintf("%s is in no meta record, meta's newer ranges over it have no replica here, and it has known no Raft leader for %s", spanOf(d), f.NoLeaderFor)
}

// decideRemovedReplica: R (replica ReplicaID of range id on NodeID) was
// removed by a replica change if the newest descriptor of id known here
// (R's own, or a meta record of id with a higher generation) does not list
// it. Generations only grow through committed changes, and a replica ID is
// never reused, so R can never be part of the range again. It is then
// destroyed with S's data unless another local replica overlaps S (its data
// there would go too; that replica is newer than R's layout, and R waits
// until it has settled) or a local replica has not loaded its descriptor
// (it could overlap S). Its Raft membership does not matter: the leaseholder
// removes it from the descriptor first and from Raft second, and a replica
// that is no longer in the descriptor serves nothing (the lease is
// elsewhere, and the store refuses requests for it); losing its state
// removes a voter's copy the quorum no longer needs (its ID cannot return).
// removed is false when the rule does not apply (R is listed, or its ID is
// unknown): the orphan rules decide.
func decideRemovedReplica(f replicaGCFacts) (removed bool, action replicaGCAction, reason string) {
	d := f.Desc
	if f.ReplicaID == 0 {
		return false, replicaGCKeep, ""
	}
	newest, from := d, "its own"
	for _, m := range f.Meta {
		if m.RangeId == d.RangeId && m.Generation > newest.Generation {
			newest, from = m, "meta's"
		}
	}
	if hasReplicaID(newest, f.NodeID, f.ReplicaID) {
		return false, replicaGCKeep, ""
	}
	what := fmt.Sprintf("replica %d of r%d on n%d is not in %s descriptor %s", f.ReplicaID, d.RangeId, f.NodeID, from, spanOf(newest))
	if !f.AllLoaded {
		return true, replicaGCKeep, what + ", but a local replica has not loaded its descriptor yet (it could overlap it)"
	}
	for _, o := range f.Others {
		if o.Desc.RangeId != d.RangeId && keys.Overlaps(o.Desc.StartKey, o.Desc.EndKey, d.StartKey, d.EndKey) {
			return true, replicaGCKeep, fmt.Sprintf("%s, but the local %s overlaps its span (its data would go too)", what, spanOf(o.Desc))
		}
	}
	return true, replicaGCDestroyRemoved, what + ": it was removed from the range"
}

// mergedAway checks conditions 1 and 2 of decideReplicaGC for d: it
// returns the meta records overlapping d, or why d may still exist.
func mergedAway(d *rspb.RangeDescriptor, meta []*rspb.RangeDescriptor) ([]*rspb.RangeDescriptor, string) {
	var covering []*rspb.RangeDescriptor
	for _, m := range meta {
		if m.RangeId == d.RangeId {
			return nil, fmt.Sprintf("meta holds %s: the range exists", spanOf(m))
		}
		if keys.Overlaps(m.StartKey, m.EndKey, d.StartKey, d.EndKey) {
			covering = append(covering, m)
		}
	}
	sort.Slice(covering, func(i, j int) bool { return bytes.Compare(covering[i].StartKey, covering[j].StartKey) < 0 })
	next := d.StartKey
	for _, m := range covering {
		if bytes.Compare(m.StartKey, next) > 0 {
			break
		}
		if bytes.Compare(m.EndKey, next) > 0 {
			next = m.EndKey
		}
	}
	if bytes.Compare(next, d.EndKey) < 0 {
		return nil, fmt.Sprintf("meta does not cover %s from %s on (a record lags)", spanOf(d), keys.Pretty(next))
	}
	for _, m := range covering {
		if m.Generation <= d.Generation {
			return nil, fmt.Sprintf("meta's %s over %s is not newer than it (a split's record may lag)", spanOf(m), spanOf(d))
		}
	}
	return covering, ""
}
