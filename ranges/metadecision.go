package ranges

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Meta repair decisions, without I/O. The meta loop (meta.go) and the
// split and merge proposers gather what meta holds and what this node
// leads, ask these functions what to do, and perform it with conditional
// writes on the exact bytes they read. Tests replay them from
// testdata/meta_decision.json against golden output.

// metaAction is what to do about one meta record.
type metaAction int

const (
	// metaKeep: the record is right (or newer than what is known here).
	metaKeep metaAction = iota
	// metaWrite: write the local descriptor at its end key (conditional
	// on the record read, or on its absence).
	metaWrite
	// metaDelete: delete a stale record (conditional on its bytes).
	metaDelete
)

func (a metaAction) String() string {
	switch a {
	case metaKeep:
		return "keep"
	case metaWrite:
		return "write"
	case metaDelete:
		return "delete"
	}
	return fmt.Sprintf("metaAction(%d)", int(a))
}

// metaDecision is an action and the reason for it.
type metaDecision struct {
	Action metaAction
	Reason string
}

func spanOf(d *rspb.RangeDescriptor) string {
	return fmt.Sprintf("r%d [%s, %s) generation %d", d.RangeId, keys.Pretty(d.StartKey), keys.Pretty(d.EndKey), d.Generation)
}

// decideMetaRecord judges the record at the end key of a range this node
// leads (local): cur is what meta holds there (nil: nothing). A newer
// record (higher generation, of any range: the range was since split or
// merged elsewhere and this node has not applied it yet) is never
// overwritten; the same range at the same generation is kept even if it
// differs in detail (replica order).
func decideMetaRecord(local, cur *rspb.RangeDescriptor) metaDecision {
	switch {
	case cur == nil:
		return metaDecision{metaWrite, fmt.Sprintf("no record at the end of %s", spanOf(local))}
	case cur.Generation > local.Generation:
		return metaDecision{metaKeep, fmt.Sprintf("the record (%s) is newer than the local %s", spanOf(cur), spanOf(local))}
	case cur.Generation == local.Generation && cur.RangeId == local.RangeId:
		return metaDecision{metaKeep, fmt.Sprintf("the record matches the local %s", spanOf(local))}
	case cur.RangeId == local.RangeId:
		return metaDecision{metaWrite, fmt.Sprintf("the record (generation %d) is older than the local %s", cur.Generation, spanOf(local))}
	}
	return metaDecision{metaWrite, fmt.Sprintf("the record (%s) is older than the local %s that replaced it", spanOf(cur), spanOf(local))}
}

// decideInnerRecord judges a meta record whose key is at end against the
// ranges this node leads (held, sorted by start key, not overlapping): a
// record ending strictly inside one of them and older than it is left by
// a range that one subsumed (a merge whose proposer died before cleaning
// up), and is deleted. It returns the range the record lies in (nil if
// none).
func decideInnerRecord(end []byte, rec *rspb.RangeDescriptor, held []*rspb.RangeDescriptor) (metaDecision, *rspb.RangeDescriptor) {
	// The first held range ending after end; a record exactly at a held
	// range's end is that range's own (decideMetaRecord judges it).
	i := sort.Search(len(held), func(i int) bool { return bytes.Compare(held[i].EndKey, end) > 0 })
	if i == len(held) || bytes.Compare(held[i].StartKey, end) >= 0 {
		return metaDecision{metaKeep, fmt.Sprintf("the record of %s ends strictly inside no range led here", spanOf(rec))}, nil
	}
	d := held[i]
	if rec.Generation >= d.Generation {
		return metaDecision{metaKeep, fmt.Sprintf("the record of %s ends inside %s but is not older than it (this node has yet to learn of a change)", spanOf(rec), spanOf(d))}, d
	}
	return metaDecision{metaDelete, fmt.Sprintf("the record of %s ends inside %s, which subsumed it", spanOf(rec), spanOf(d))}, d
}

// missingReplicaFacts is what decideMissingReplica looks at for one meta
// record naming this node.
type missingReplicaFacts struct {
	Desc            *rspb.RangeDescriptor
	NodeID          uint64
	LocalReplica    bool  // a replica of this range is open here
	OverlapsLocal   bool  // some local replica's span overlaps Desc's
	RecordOnDisk    bool  // a replica record for it is on disk (a split just created it)
	RemovedHere     bool  // this replica ID was removed from this node by a replica change
	OthersCompacted *bool // every other replica's initial log was compacted behind a command it applied (nil: not asked yet)
}

// missingReplicaAction is the next step for a range meta says this node
// should hold a replica of.
type missingReplicaAction int

const (
	missingSkip          missingReplicaAction = iota
	missingAskCompaction                      // ask the other replicas whether their initial log was compacted, then decide again
	missingCreate                             // create the replica empty; a snapshot catches it up
)

func (a missingReplicaAction) String() string {
	switch a {
	case missingSkip:
		return "skip"
	case missingAskCompaction:
		return "ask-compaction"
	case missingCreate:
		return "create"
	}
	return fmt.Sprintf("missingReplicaAction(%d)", int(a))
}

// decideMissingReplica decides whether to create a local replica that meta
// says this node has but it does not (the right side of a split that this
// node's replica of the parent skipped by installing a later snapshot). An
// empty replica is safe only if nobody can replay the range's log from
// index 1 to it, or send it a snapshot that Dragonboat would not load (one
// taken before the range's first command): every other replica must have
// compacted its initial log behind a command it applied.
func decideMissingReplica(f missingReplicaFacts) (missingReplicaAction, string) {
	d := f.Desc
	if !keys.IsUserKey(d.StartKey) {
		return missingSkip, fmt.Sprintf("%s is a system range (never created from meta)", spanOf(d))
	}
	var mine *rspb.ReplicaDescriptor
	for _, r := range d.Replicas {
		if r.NodeId == f.NodeID {
			mine = r
		}
	}
	switch {
	case mine == nil:
		return missingSkip, fmt.Sprintf("%s has no replica on n%d", spanOf(d), f.NodeID)
	case mine.Type != rspb.ReplicaType_VOTER:
		return missingSkip, fmt.Sprintf("the replica of %s on n%d is not a voter", spanOf(d), f.NodeID)
	case f.LocalReplica:
		return missingSkip, fmt.Sprintf("%s is open here", spanOf(d))
	case f.OverlapsLocal:
		return missingSkip, fmt.Sprintf("a local replica overlaps %s (the parent has yet to apply the split, or it was merged into a local range)", spanOf(d))
	case f.RemovedHere:
		return missingSkip, fmt.Sprintf("replica %d of %s was removed from n%d (meta's record is older than the removal)", mine.ReplicaId, spanOf(d), f.NodeID)
	case f.RecordOnDisk:
		return missingSkip, fmt.Sprintf("replica %d of %s is being created by a split that just applied here", mine.ReplicaId, spanOf(d))
	case f.OthersCompacted == nil:
		return missingAskCompaction, fmt.Sprintf("%s is missing here: ask its other replicas whether their initial log is compacted", spanOf(d))
	case !*f.OthersCompacted:
		return missingSkip, fmt.Sprintf("%s is missing here, but another replica could still replay its log from the start", spanOf(d))
	}
	return missingCreate, fmt.Sprintf("%s is missing here: create replica %d empty, to be caught up by snapshot", spanOf(d), mine.ReplicaId)
}
