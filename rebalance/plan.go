package rebalance

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/proto/rspb"
)

// RangeView is one range as a pass sees it.
type RangeView struct {
	Desc *rspb.RangeDescriptor
	// Leaseholder is the node the lease names as known here (0: unknown);
	// it feeds the lease counts and the allocator's removal choice.
	Leaseholder uint64
	// Mine: this node holds the range's lease, valid now; only then does
	// its queue act on the range.
	Mine bool
	// Fixed, when not empty, says why the range's replicas must not change
	// now: it is counted but never acted on.
	Fixed string
	// Zone is the range's resolved zone config (nil: the default one at
	// the replication factor setting).
	Zone *allocator.ZoneConfig
	// ChangeInFlight, when not empty, says that a replica change of the
	// range is being driven here (an operator's RelocateRange or
	// ChangeReplicas, step by step): its non-voter is the change's own,
	// about to be promoted, not a leftover, so it is not removed.
	ChangeInFlight string
	// QPS is the range's requests per second as its leaseholder here
	// serves them (smoothed; 0 unless Mine), and Sources where they come
	// from, per gateway node: MakePlan turns them into the scorer's
	// request localities (follow-the-workload) from the nodes' localities.
	QPS     float64
	Sources []Source
	// LastLeaseTransfer is when this node's queue last transferred the
	// range's lease away (zero: not recently): at most one transfer per
	// range per MinLeaseTransferInterval.
	LastLeaseTransfer time.Time
}

// Source is a share of a range's requests: those sent by one gateway node
// (0: senders that did not say, counted in the range's QPS only).
type Source struct {
	Gateway uint64
	QPS     float64
}

// Input is everything one pass decides from.
type Input struct {
	Self   uint64           // this node
	Nodes  []allocator.Node // every node of the directory; Replicas and Leases are filled by MakePlan
	Ranges []RangeView      // every range of meta
	Factor int              // the replication factor setting
	// Now is the time of the pass (the lease transfer rate limit).
	Now time.Time
	// Thresholds are the scorer's balance settings (zero value: the
	// defaults; node.Config.Thresholds).
	Thresholds allocator.Thresholds
	// SnapshotSlotsFull: every snapshot send slot of this node is taken
	// (ranges.Store.SnapshotSendSlotsFull).
	SnapshotSlotsFull bool
}

// snapshotBudget: repairs go first in the snapshot budget. A replica move
// that is not a repair (a rebalance, a move for constraints or a full
// disk: each sends a snapshot) waits while any range of the cluster needs
// a repair, or while every snapshot send slot of this node is taken (a
// repair's snapshot would queue behind it). Repairs and lease transfers
// never wait here. It returns why d waits, or "".
func snapshotBudget(d allocator.Decision, repairs int, slotsFull bool) string {
	switch d.Action {
	case allocator.ActionAddVoter, allocator.ActionReplaceVoter, allocator.ActionRebalance, // each adds a replica: a snapshot
		allocator.ActionAddNonVoter, allocator.ActionReplaceNonVoter, allocator.ActionRebalanceNonVoter:
	default:
		return ""
	}
	if d.Priority >= allocator.PriorityRepairMin {
		return ""
	}
	switch {
	case repairs > 0:
		return fmt.Sprintf("waiting: %d range(s) need a repair, which goes first in the snapshot budget", repairs)
	case slotsFull:
		return "waiting: every snapshot send slot of this node is taken (a repair's snapshot must not queue behind this move)"
	}
	return ""
}

// MinLeaseTransferInterval: at most one lease transfer per range per
// interval (CockroachDB's kv.allocator.min_lease_transfer_interval), so
// that a lease never bounces between nodes faster than load figures and
// lease counts can follow.
const MinLeaseTransferInterval = time.Second

// LeaseTransfersPerPass caps the balancing lease transfers (lease counts,
// load, follow-the-workload: allocator priority 1) of one pass of one
// node, as RebalancesPerPass caps replica moves; transfers to a preferred
// node (lease preferences) are not capped.
const LeaseTransfersPerPass = 8

// Step is one replica change the queue carries out: a ChangeReplicas
// call adding Add or removing Remove (one node, one of them empty), or,
// for a rebalance, adding Add and then removing Remove (the lease moved
// away first if the removed voter holds it).
type Step struct {
	RangeID  uint64
	Decision allocator.Decision
	Add      []uint64
	Remove   []uint64
	// NonVoter: Add's replicas are standing non-voters (the allocator's
	// add, replace and rebalance of non-voters), added and never promoted.
	NonVoter bool
	// Transfer, when set, is a lease transfer to that node instead (a
	// zone's lease preferences).
	Transfer uint64
}

// Skip is a range this node does not act on, with its decision and why.
type Skip struct {
	RangeID  uint64
	Decision allocator.Decision
	Why      string
}

// Plan is the outcome of one pass.
type Plan struct {
	// Steps: what this node carries out, in order (the highest allocator
	// priority first, then the lowest range ID).
	Steps []Step
	// Skips: every other range, by range ID.
	Skips []Skip
	// Reporter: this node reports the cluster's gauges (it is the lowest
	// live node ID in its view); the counts are over every range then,
	// else 0.
	Reporter        bool
	UnderReplicated int
	Unavailable     int
	// Counts: replicas and leases per node as counted from the views.
	Counts map[uint64][2]int
}

// MakePlan decides one pass (pure: same input, same plan):
//  1. it counts each node's replicas (from every descriptor) and leases
//     (from the leaseholders known here) into the node views;
//  2. it asks the allocator's scorer (decide) for every range; a range it cannot decide
//     (a descriptor naming a node without a view) is skipped with the
//     error as its reason, and the pass goes on;
//  3. the ranges whose lease this node holds and that need an add or a
//     removal become steps, sorted by priority (the ranges that lost the
//     most replicas first), then by range ID; a range whose voters on live
//     nodes are fewer than a majority waits (its change could not commit
//     while suspect voters are down);
//  4. the steps are decided again in that order against counts that
//     include the earlier steps (an add counts on its target, a removal
//     is taken off, a rebalance both), so that one pass spreads its
//     additions instead of sending them all to the node that was least
//     loaded when it began; rebalances (priority 1, after every repair)
//     are capped at RebalancesPerPass, the others skipped as waiting.
//
// The gauges are reported by one node only, so that their sum over the
// nodes counts every range once: the lowest node ID that is live in the
// view. It counts every range under-replicated (fewer voters kept than
// the factor) and every range unavailable (lost quorum).
func MakePlan(in Input) (Plan, error) {
	if err := allocator.ValidateFactor(in.Factor); err != nil {
		return Plan{}, err
	}
	if err := in.Thresholds.Validate(); err != nil {
		return Plan{}, err
	}
	nodes := make([]allocator.Node, len(in.Nodes))
	copy(nodes, in.Nodes)
	idx := map[uint64]int{}
	for i := range nodes {
		idx[nodes[i].ID] = i
		nodes[i].Replicas, nodes[i].Leases = 0, 0
	}
	for _, r := range in.Ranges {
		for _, rep := range r.Desc.GetReplicas() {
			if i, ok := idx[rep.NodeId]; ok {
				nodes[i].Replicas++
			}
		}
		if i, ok := idx[r.Leaseholder]; ok && r.Leaseholder != 0 {
			nodes[i].Leases++
		}
	}
	p := Plan{Counts: map[uint64][2]int{}}
	for _, n := range nodes {
		p.Counts[n.ID] = [2]int{n.Replicas, n.Leases}
	}
	var reporter uint64
	for _, n := range nodes {
		if n.Liveness == allocator.Live && (reporter == 0 || n.ID < reporter) {
			reporter = n.ID
		}
	}
	p.Reporter = reporter != 0 && reporter == in.Self

	type pending struct {
		view RangeView
		d    allocator.Decision
	}
	var todo []pending
	repairs := 0 // ranges needing a repair, wherever their lease is
	for _, r := range in.Ranges {
		d, err := decide(r, in.Factor, nodes, idx, in.Thresholds)
		if err != nil {
			p.Skips = append(p.Skips, Skip{RangeID: r.Desc.GetRangeId(), Why: "cannot decide: " + err.Error()})
			continue
		}
		if acts(d.Action) && d.Priority >= allocator.PriorityRepairMin {
			repairs++
		}
		if p.Reporter {
			if d.UnderReplicated {
				p.UnderReplicated++
			}
			if d.Action == allocator.ActionUnavailable {
				p.Unavailable++
			}
		}
		why := ""
		switch {
		case !acts(d.Action):
			why = "nothing to do"
		case d.Action == allocator.ActionTransferLease && !r.LastLeaseTransfer.IsZero() && in.Now.Sub(r.LastLeaseTransfer) < MinLeaseTransferInterval:
			why = fmt.Sprintf("waiting: its lease was transferred %s ago, at most one transfer per range per %s",
				in.Now.Sub(r.LastLeaseTransfer).Round(time.Millisecond), MinLeaseTransferInterval)
		case r.Fixed != "":
			why = r.Fixed
		case r.ChangeInFlight != "" && midChange(d, nodes, idx):
			why = r.ChangeInFlight
		case !r.Mine:
			why = "not acted on here: this node does not hold its lease"
		default:
			why = waitForQuorum(r.Desc, nodes, idx)
		}
		if why != "" {
			p.Skips = append(p.Skips, Skip{RangeID: r.Desc.GetRangeId(), Decision: d, Why: why})
			continue
		}
		todo = append(todo, pending{view: r, d: d})
	}
	sort.SliceStable(todo, func(i, j int) bool {
		if todo[i].d.Priority != todo[j].d.Priority {
			return todo[i].d.Priority > todo[j].d.Priority
		}
		return todo[i].view.Desc.RangeId < todo[j].view.Desc.RangeId
	})
	rebalances, transfers := 0, 0
	for _, t := range todo {
		d, err := decide(t.view, in.Factor, nodes, idx, in.Thresholds)
		if err != nil { // cannot happen: the same input decided above
			return Plan{}, err
		}
		if !acts(d.Action) {
			p.Skips = append(p.Skips, Skip{RangeID: t.view.Desc.RangeId, Decision: d, Why: "nothing to do once the earlier steps are counted"})
			continue
		}
		if why := snapshotBudget(d, repairs, in.SnapshotSlotsFull); why != "" {
			p.Skips = append(p.Skips, Skip{RangeID: t.view.Desc.RangeId, Decision: d, Why: why})
			continue
		}
		if d.Action == allocator.ActionRebalance || d.Action == allocator.ActionRebalanceNonVoter {
			if rebalances == RebalancesPerPass {
				p.Skips = append(p.Skips, Skip{RangeID: t.view.Desc.RangeId, Decision: d,
					Why: fmt.Sprintf("waiting: at most %d rebalance per pass", RebalancesPerPass)})
				continue
			}
			rebalances++
		}
		if d.Action == allocator.ActionTransferLease && d.Priority < allocator.PriorityLeasePreference {
			if transfers == LeaseTransfersPerPass {
				p.Skips = append(p.Skips, Skip{RangeID: t.view.Desc.RangeId, Decision: d,
					Why: fmt.Sprintf("waiting: at most %d balancing lease transfers per pass", LeaseTransfersPerPass)})
				continue
			}
			transfers++
		}
		s := Step{RangeID: t.view.Desc.RangeId, Decision: d}
		i := idx[d.Node]
		switch d.Action {
		case allocator.ActionRebalance:
			s.Add, s.Remove = []uint64{d.Node}, []uint64{d.From}
			nodes[i].Replicas++
			nodes[idx[d.From]].Replicas--
			if d.From == t.view.Leaseholder {
				moveLease(nodes, idx[d.From], i, t.view.QPS)
			}
		case allocator.ActionTransferLease:
			s.Transfer = d.Node
			moveLease(nodes, idx[d.From], i, t.view.QPS)
		case allocator.ActionAddNonVoter, allocator.ActionReplaceNonVoter:
			// A replace adds the new non-voter; the lost one goes in a
			// later pass (remove-non-voter).
			s.Add, s.NonVoter = []uint64{d.Node}, true
			nodes[i].Replicas++
		case allocator.ActionRebalanceNonVoter:
			s.Add, s.Remove, s.NonVoter = []uint64{d.Node}, []uint64{d.From}, true
			nodes[i].Replicas++
			nodes[idx[d.From]].Replicas--
		case allocator.ActionReplaceVoter:
			// A replace adds the new voter; the lost or leaving one goes
			// in a later pass (remove-voter), as for a repair.
			s.Add = []uint64{d.Node}
			nodes[i].Replicas++
		case allocator.ActionAddVoter:
			s.Add = []uint64{d.Node}
			if d.ReplicaID == 0 {
				nodes[i].Replicas++
			}
		default:
			s.Remove = []uint64{d.Node}
			nodes[i].Replicas--
		}
		p.Steps = append(p.Steps, s)
	}
	sort.SliceStable(p.Skips, func(i, j int) bool { return p.Skips[i].RangeID < p.Skips[j].RangeID })
	return p, nil
}

// waitForQuorum returns why a change of desc must wait ("" if it need
// not): it commits only with a majority of the voters, and fewer are on
// live nodes (the allocator counts suspect voters for the quorum, since
// their nodes may come back; until they do, a change would only hang).
func waitForQuorum(desc *rspb.RangeDescriptor, nodes []allocator.Node, idx map[uint64]int) string {
	voters, live := 0, 0
	for _, rep := range desc.GetReplicas() {
		if rep.Type != rspb.ReplicaType_VOTER {
			continue
		}
		voters++
		if i, ok := idx[rep.NodeId]; ok && nodes[i].Liveness == allocator.Live {
			live++
		}
	}
	if need := voters/2 + 1; live < need {
		return fmt.Sprintf("waiting: %d of %d voters are on live nodes, fewer than the %d a change needs to commit", live, voters, need)
	}
	return ""
}

// moveLease counts a lease, and the range's load, on node to instead of
// from (the later steps of a pass decide against the counts that include
// the earlier ones).
func moveLease(nodes []allocator.Node, from, to int, qps float64) {
	nodes[from].Leases--
	nodes[to].Leases++
	nodes[from].QPS = max(nodes[from].QPS-qps, 0)
	nodes[to].QPS += qps
}

// decide is the allocator's scorer on one range, with its zone config (nil:
// the default one at the replication factor setting), the nodes' QPS, the
// range's QPS and its request localities (Requests), with the thresholds
// th.
func decide(r RangeView, factor int, nodes []allocator.Node, idx map[uint64]int, th allocator.Thresholds) (allocator.Decision, error) {
	var zone allocator.ZoneConfig
	if r.Zone != nil {
		zone = *r.Zone
	} else {
		zone = allocator.DefaultZoneConfig()
		nr := int32(factor)
		zone.NumReplicas = &nr
		var err error
		if zone, err = zone.Resolve(); err != nil {
			return allocator.Decision{}, err
		}
	}
	rec, err := allocator.Score(allocator.ScoreInput{Desc: r.Desc, Zone: zone, Leaseholder: LeaseholderVoter(r.Desc, r.Leaseholder),
		QPS: r.QPS, Requests: Requests(r.Sources, nodes, idx), Nodes: nodes, Thresholds: th})
	if err != nil {
		return allocator.Decision{}, err
	}
	return rec.Decision, nil
}

// Requests turns a range's request sources into the scorer's request
// localities: each gateway's share goes to the gateway node's locality
// (shares of one locality summed, in the order of their first gateway by
// ID); a gateway that is 0 or not a node of the view is left out (its
// requests still count in the range's QPS).
func Requests(sources []Source, nodes []allocator.Node, idx map[uint64]int) []allocator.LocalityLoad {
	srcs := append([]Source(nil), sources...)
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].Gateway < srcs[j].Gateway })
	var out []allocator.LocalityLoad
	at := map[string]int{}
	for _, src := range srcs {
		i, ok := idx[src.Gateway]
		if src.Gateway == 0 || !ok || src.QPS <= 0 {
			continue
		}
		loc := nodes[i].Locality
		key := formatTiers(loc)
		if j, ok := at[key]; ok {
			out[j].QPS += src.QPS
			continue
		}
		at[key] = len(out)
		out = append(out, allocator.LocalityLoad{Locality: loc, QPS: src.QPS})
	}
	return out
}

func formatTiers(tiers []*rspb.LocalityTier) string {
	parts := make([]string, len(tiers))
	for i, t := range tiers {
		parts[i] = t.Key + "=" + t.Value
	}
	return strings.Join(parts, ",")
}

// LeaseholderVoter is holder if it holds a voter of desc (a lease known
// here may be older than the descriptor), else 0: the scorer's
// Leaseholder input.
func LeaseholderVoter(desc *rspb.RangeDescriptor, holder uint64) uint64 {
	for _, rep := range desc.GetReplicas() {
		if rep.NodeId == holder && rep.Type == rspb.ReplicaType_VOTER {
			return holder
		}
	}
	return 0
}

// acts reports whether an action is a change this queue makes.
func acts(a allocator.Action) bool {
	switch a {
	case allocator.ActionAddVoter, allocator.ActionReplaceVoter, allocator.ActionRemoveVoter, allocator.ActionRemoveNonVoter, allocator.ActionRebalance,
		allocator.ActionTransferLease, allocator.ActionAddNonVoter, allocator.ActionReplaceNonVoter, allocator.ActionRebalanceNonVoter:
		return true
	}
	return false
}

// RebalancesPerPass caps the rebalances (moves of a voter between live
// nodes, allocator.ActionRebalance) one pass of one node carries out: the
// counts a pass decides from go stale as soon as other nodes' queues move
// replicas too, so each node moves one replica and decides again from
// fresh views. Repairs are not capped.
const RebalancesPerPass = 1

// String renders the plan, one line per step and skip (golden tests and
// the queue's debug log).
func (p Plan) String() string {
	var b strings.Builder
	ids := make([]uint64, 0, len(p.Counts))
	for id := range p.Counts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	b.WriteString("counts:")
	for _, id := range ids {
		fmt.Fprintf(&b, " n%d=%d/%d", id, p.Counts[id][0], p.Counts[id][1])
	}
	b.WriteString(" (replicas/leases)\n")
	if p.Reporter {
		fmt.Fprintf(&b, "gauges: under-replicated %d, unavailable %d\n", p.UnderReplicated, p.Unavailable)
	} else {
		b.WriteString("gauges: reported by another node\n")
	}
	for i, s := range p.Steps {
		what := fmt.Sprintf("n%d", s.Decision.Node)
		if s.Decision.Action == allocator.ActionRebalance || s.Decision.Action == allocator.ActionRebalanceNonVoter {
			what = fmt.Sprintf("n%d->n%d", s.Decision.From, s.Decision.Node)
		}
		fmt.Fprintf(&b, "step %d: r%d %s %s (priority %d): %s\n", i+1, s.RangeID, s.Decision.Action, what, s.Decision.Priority, s.Decision.Reason)
	}
	for _, s := range p.Skips {
		if s.Decision.Reason == "" {
			fmt.Fprintf(&b, "skip r%d: %s\n", s.RangeID, s.Why)
			continue
		}
		fmt.Fprintf(&b, "skip r%d: %s (%s: %s)\n", s.RangeID, s.Why, s.Decision.Action, s.Decision.Reason)
	}
	return b.String()
}

// midChange: d would act on what may be the intermediate state of a
// replica change in flight (an operator's relocation adds its voters
// before it removes the others): a non-voter about to be promoted, a
// voter beyond the factor on a live active node about to be removed by
// the change itself, or a voter to move elsewhere. Acting on it undoes
// the change (a relocation to n2,n3,n4 ended on n2,n3 when the queue
// removed the freshly added n4 as an excess voter). Repairs (a voter
// added, a lost one removed) go ahead.
func midChange(d allocator.Decision, nodes []allocator.Node, idx map[uint64]int) bool {
	switch d.Action {
	case allocator.ActionRemoveNonVoter, allocator.ActionRebalance, allocator.ActionRebalanceNonVoter:
		return true
	case allocator.ActionTransferLease:
		// A balancing transfer waits for the change to end (it could
		// land on a voter the change is about to remove); a preferred
		// node's goes ahead.
		return d.Priority < allocator.PriorityLeasePreference
	case allocator.ActionRemoveVoter:
		i, ok := idx[d.Node]
		return ok && nodes[i].Liveness == allocator.Live && nodes[i].Membership == allocator.Active
	}
	return false
}
