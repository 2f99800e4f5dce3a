package allocator

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/rangestore/rangestore/proto/rspb"
)

// The scorer: one action for a range from its descriptor, its zone config,
// the store views and its load, with every candidate scored criterion by
// criterion (doc.go describes the order of the checks).

// Thresholds of the scorer (CockroachDB's defaults, research anchors
// §1.3); all but DiskFullFraction are the defaults of Thresholds, which
// ScoreInput.Thresholds may change.
const (
	// DiskFullFraction: a store using more than this share of its
	// capacity takes no new replica and sheds the ones it has.
	DiskFullFraction = 0.95
	// QPSThreshold: a store serving more than (1+QPSThreshold)·mean QPS
	// is hot: it sheds leases first, then replicas.
	QPSThreshold = 0.25
	// LeaseThreshold and MinLeaseRebalance: a store is over (under) on
	// leases past mean ± max(LeaseThreshold·mean, MinLeaseRebalance).
	LeaseThreshold    = 0.05
	MinLeaseRebalance = 5
	// FollowWorkloadMargin: the lease follows the workload to a voter
	// whose locality matches the range's requests by at least this much
	// more than the leaseholder's (0 to 1, see workloadScore): the
	// hysteresis that keeps a lease from flapping between localities.
	FollowWorkloadMargin = 0.25
	// MinQPSAboveMean: a store is hot only if it also serves at least
	// this many requests per second more than the mean (CockroachDB
	// ignores stores within 100 QPS of the mean): a lightly loaded
	// cluster's noise moves neither leases nor replicas.
	MinQPSAboveMean = 100
)

// PriorityLeasePreference is the priority of a lease transfer to a
// preferred voter (lease_preferences); balancing transfers (load,
// follow-the-workload, lease counts) have priority 1, and the replicate
// queue paces those (rebalance.LeaseTransfersPerPass).
const PriorityLeasePreference = 2

// Priorities of the scorer's own actions (repairs keep Decide's, which
// are all above 1000): non-voter repairs, then constraint and disk moves,
// then lease preferences, then balance.
const (
	priorityReplaceNonVoter = 900
	priorityAddNonVoter     = 800
	priorityRemoveNonVoter  = 700
	priorityConstraint      = 4
	priorityDiskFull        = 3
	priorityLeasePreference = PriorityLeasePreference
	priorityBalance         = 1
)

// priorityReadReplicaFirst: a zone's non-voter moves from an ordinary node
// to a read replica that can hold it (num_non_voters set: read replicas
// first), above the constraint and balance moves.
const priorityReadReplicaFirst = 5

// LocalityLoad is a share of a range's requests: those whose gateway is in
// Locality (tiers from the widest, as a node's).
type LocalityLoad struct {
	Locality []*rspb.LocalityTier
	QPS      float64
}

// ScoreInput is what the scorer decides from.
type ScoreInput struct {
	Desc *rspb.RangeDescriptor
	// Zone is the range's resolved config (ZoneConfig.Resolve).
	Zone ZoneConfig
	// Leaseholder is the node holding the lease, 0 if unknown (then no
	// lease decision is made).
	Leaseholder uint64
	// QPS is the range's requests per second, served by its leaseholder.
	QPS float64
	// Requests says where the range's requests come from (may be empty).
	Requests []LocalityLoad
	// Nodes are the store views of every node (one store per node).
	Nodes []Node
	// Thresholds are the balance settings (zero value:
	// DefaultThresholds()).
	Thresholds Thresholds
}

// Recommendation is the scorer's one action for a range: a Decision (the
// same fields and meanings as Decide's, with the scorer's actions added)
// and the scoring behind it.
type Recommendation struct {
	Decision
	Explain Explanation
}

// String prints the action line, then the explanation.
func (r Recommendation) String() string {
	var b strings.Builder
	b.WriteString(r.Action.String())
	switch {
	case r.From != 0:
		fmt.Fprintf(&b, " n%d->n%d", r.From, r.Node)
	case r.Node != 0:
		fmt.Fprintf(&b, " n%d", r.Node)
	}
	if r.ReplicaID != 0 {
		fmt.Fprintf(&b, " replica=%d", r.ReplicaID)
	}
	fmt.Fprintf(&b, " priority=%d", r.Priority)
	if r.UnderReplicated {
		b.WriteString(" under-replicated")
	}
	fmt.Fprintf(&b, "\n%s", r.Explain.String())
	return b.String()
}

// Explanation is the structured reason of a Recommendation: the checks
// made in order and what each found, then the candidates.
type Explanation struct {
	Summary string
	// Checks lists each step of the order that was looked at, with what
	// it found ("repair: fully replicated, 3 of 3 voters").
	Checks []string
	// Replicas scores every node as a holder or a target of a replica.
	Replicas Table
	// Lease scores the voters as leaseholders (nil when the leaseholder
	// is unknown).
	Lease *Table
}

// Table is candidates × criteria; the criteria are in the order the
// scorer weighs them (the first that differs decides).
type Table struct {
	Title    string
	Criteria []string
	Rows     []Row
}

// Row is one node: its role in the range, one cell per criterion, and the
// verdict of the decision on it ("target", "leaves", "refused: ...").
type Row struct {
	Node    uint64
	Role    string
	Cells   []string
	Verdict string
}

// String renders the explanation as `range explain` prints it.
func (e Explanation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reason: %s\n", e.Summary)
	for _, c := range e.Checks {
		fmt.Fprintf(&b, "  - %s\n", c)
	}
	b.WriteString(e.Replicas.String())
	if e.Lease != nil {
		b.WriteString(e.Lease.String())
	}
	return b.String()
}

// String renders the table with aligned columns.
func (t Table) String() string {
	head := append(append([]string{"node", "role"}, t.Criteria...), "verdict")
	rows := [][]string{head}
	for _, r := range t.Rows {
		row := append(append([]string{fmt.Sprintf("n%d", r.Node), r.Role}, r.Cells...), r.Verdict)
		rows = append(rows, row)
	}
	width := make([]int, len(head))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", t.Title)
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			if i > 0 {
				line.WriteString("  ")
			}
			line.WriteString(c)
			if i < len(r)-1 {
				line.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))))
			}
		}
		fmt.Fprintf(&b, "  %s\n", strings.TrimRight(line.String(), " "))
	}
	return b.String()
}

// scorer holds one Score call's checked input and derived figures.
type scorer struct {
	in         ScoreInput
	th         Thresholds // in.Thresholds or the defaults
	m          map[uint64]*Node
	all        []*Node
	voters     []replica
	nonVoters  []replica
	readReps   []replica // the non-voters on read-replica nodes
	holds      map[uint64]*replica
	counts     bounds
	countsOK   bool
	qpsMean    float64
	qpsHot     float64 // hot: QPS above this
	leaseMean  float64
	leaseOver  float64 // over: leases above this
	leaseUnder float64 // under: leases below this
	checks     []string
	basis      []*Node // what the table's diversity of a non-holder is against (nil: the staying voters)
	verdict    map[uint64]string
	leaseVerd  map[uint64]string
	// rankedNonVoter: the last targets ranked were for a non-voter (the
	// table judges the nodes without a replica for that role).
	rankedNonVoter bool
	// zoneReadReps: the read replicas' non-voters that count as the
	// zone's (num_non_voters set: kept and meeting the non-voter
	// constraints), counted with the zone's non-voters for constraints.
	zoneReadReps []*Node
}

// Score returns the one next action for a range, with its explanation.
// The checks, in order (the first that yields an action wins):
//
//  1. repair of voters, as Decide (unavailable, add, replace, remove);
//     targets ranked by the criteria below;
//  2. repair of non-voters (num_replicas − num_voters of them);
//  3. a replica that breaks a constraint moves to a node that meets it;
//  4. a replica on a full disk (more than 95 % used) moves away;
//  5. the lease moves to a voter of a more preferred lease preference;
//  6. a voter moves to a node that makes the range more diverse;
//  7. a voter moves for range-count balance (balance.go);
//  8. a hot leaseholder (QPS above 1.25× the mean) transfers the lease;
//  9. else, if no voter can take it, a voter moves to a cool node;
//  10. the lease follows the workload (Requests);
//  11. the lease moves for lease-count balance;
//  12. none.
//
// Candidates for a new replica are ranked valid (live, active, no replica
// of the range) → constraints (a node breaking an all-replica constraint
// is refused; then fewer unmet constraints) → disk not full → diversity →
// fewer replicas → lower QPS → lower node ID. Leaseholder candidates are
// voters on live active nodes, ranked by lease preference, then the
// criterion of the step. It returns an ErrInvalid error for an invalid
// zone config and what Decide refuses.
func Score(in ScoreInput) (Recommendation, error) {
	if err := in.Zone.Validate(); err != nil {
		return Recommendation{}, err
	}
	if in.Zone.Replicas() == 0 {
		return Recommendation{}, invalid("num_replicas: unset (resolve the zone config from the default first)")
	}
	if err := in.Thresholds.Validate(); err != nil {
		return Recommendation{}, err
	}
	if in.QPS < 0 || math.IsNaN(in.QPS) {
		return Recommendation{}, invalid("range QPS %v: must not be negative", in.QPS)
	}
	for i, r := range in.Requests {
		if r.QPS < 0 || math.IsNaN(r.QPS) {
			return Recommendation{}, invalid("request locality %d (%s): QPS %v must not be negative", i, formatLocality(r.Locality), r.QPS)
		}
	}
	m, err := nodeMap(in.Nodes)
	if err != nil {
		return Recommendation{}, err
	}
	voters, nonVoters, err := replicas(in.Desc, m)
	if err != nil {
		return Recommendation{}, err
	}
	if in.Leaseholder != 0 {
		isVoter := false
		for _, v := range voters {
			isVoter = isVoter || v.node.ID == in.Leaseholder
		}
		if !isVoter {
			return Recommendation{}, invalid("leaseholder n%d holds no voter of r%d", in.Leaseholder, in.Desc.RangeId)
		}
	}
	s := &scorer{in: in, th: in.Thresholds.orDefault(), m: m, all: sortedNodes(m), voters: voters, nonVoters: nonVoters,
		holds: map[uint64]*replica{}, verdict: map[uint64]string{}, leaseVerd: map[uint64]string{}}
	for i := range voters {
		s.holds[voters[i].node.ID] = &voters[i]
	}
	for i := range nonVoters {
		s.holds[nonVoters[i].node.ID] = &nonVoters[i]
	}
	s.readReps = readReplicas(in.Desc, m)
	for i := range s.readReps {
		s.holds[s.readReps[i].node.ID] = &s.readReps[i]
	}
	s.figures()
	d, err := s.decide()
	if err != nil {
		return Recommendation{}, err
	}
	return Recommendation{Decision: d, Explain: s.explain(d)}, nil
}

// figures computes the means and thresholds over the live active nodes.
func (s *scorer) figures() {
	s.counts, s.countsOK = balanceBounds(s.all, s.th)
	n, qps, leases := 0, 0.0, 0
	for _, x := range s.all {
		if x.canTakeReplica() {
			n++
			qps += x.QPS
			leases += x.Leases
		}
	}
	if n == 0 {
		return
	}
	s.qpsMean = qps / float64(n)
	s.qpsHot = math.Max(s.qpsMean*(1+s.th.QPSThreshold), s.qpsMean+s.th.MinQPSAboveMean)
	s.leaseMean = float64(leases) / float64(n)
	margin := math.Max(s.leaseMean*s.th.LeaseThreshold, float64(s.th.MinLeaseRebalance))
	s.leaseOver, s.leaseUnder = s.leaseMean+margin, s.leaseMean-margin
}

// hotRule explains the hot line: the mean ×(1+QPSThreshold), at least
// MinQPSAboveMean above it.
func (s *scorer) hotRule() string {
	return fmt.Sprintf("mean %.0f ×%.2f, at least +%.0f", s.qpsMean, 1+s.th.QPSThreshold, s.th.MinQPSAboveMean)
}

func (s *scorer) check(format string, args ...any) {
	s.checks = append(s.checks, fmt.Sprintf(format, args...))
}

// diskFull reports whether n uses more than DiskFullFraction of its disk.
func diskFull(n *Node) bool {
	return n.CapacityBytes > 0 && float64(n.UsedBytes) > DiskFullFraction*float64(n.CapacityBytes)
}

func diskCell(n *Node) string {
	if n.CapacityBytes <= 0 {
		return "?"
	}
	pct := fmt.Sprintf("%.0f%%", 100*float64(n.UsedBytes)/float64(n.CapacityBytes))
	if diskFull(n) {
		return pct + " full"
	}
	return pct
}

// allReplicaConj returns the conjunctions every replica in the role must
// meet: the zone's constraints, plus its voter constraints for a voter
// or its non-voter constraints for a non-voter.
func (s *scorer) allReplicaConj(voter bool) []Conjunction {
	var out []Conjunction
	for _, c := range s.in.Zone.Constraints {
		if c.NumReplicas == 0 {
			out = append(out, c)
		}
	}
	role := s.in.Zone.NonVoterConstraints
	if voter {
		role = s.in.Zone.VoterConstraints
	}
	for _, c := range role {
		if c.NumReplicas == 0 {
			out = append(out, c)
		}
	}
	return out
}

// meets reports whether n meets every all-replica constraint of the role,
// and names the first it breaks ("lacks +region=eu", "has -zone=a").
func (s *scorer) meets(n *Node, voter bool) (bool, string) {
	for _, c := range s.allReplicaConj(voter) {
		if ok, k := c.satisfiedBy(n.Locality); !ok {
			if k.Type == Required {
				return false, "lacks " + k.String()
			}
			return false, "has " + k.String()
		}
	}
	return true, ""
}

func (s *scorer) hasConstraints() bool {
	return len(s.in.Zone.Constraints) > 0 || len(s.in.Zone.VoterConstraints) > 0 || len(s.in.Zone.NonVoterConstraints) > 0
}

// violations counts the unmet constraints of a placement: one per replica
// and all-replica constraint set it breaks, plus the replicas missing
// from each per-replica-count set.
func (s *scorer) violations(voters, nonVoters []*Node) int {
	v := 0
	for _, n := range voters {
		if ok, _ := s.meets(n, true); !ok {
			v++
		}
	}
	for _, n := range nonVoters {
		if ok, _ := s.meets(n, false); !ok {
			v++
		}
	}
	count := func(cs []Conjunction, ns []*Node) {
		for _, c := range cs {
			if c.NumReplicas == 0 {
				continue
			}
			v += max(0, int(c.NumReplicas)-matching(c, ns))
		}
	}
	count(s.in.Zone.Constraints, append(append([]*Node(nil), voters...), nonVoters...))
	count(s.in.Zone.VoterConstraints, voters)
	count(s.in.Zone.NonVoterConstraints, nonVoters)
	return v
}

// placement returns the nodes of the voters and non-voters, with from
// replaced by to (from nil: to is added as a voter if voter, else as a
// non-voter; to nil: from is removed).
func (s *scorer) placement(from *replica, to *Node, voter bool) (vs, nvs []*Node) {
	for _, r := range s.voters {
		if from != nil && r.node == from.node {
			if to != nil {
				vs = append(vs, to)
			}
			continue
		}
		vs = append(vs, r.node)
	}
	for _, r := range s.nonVoters {
		if from != nil && r.node == from.node {
			if to != nil {
				nvs = append(nvs, to)
			}
			continue
		}
		nvs = append(nvs, r.node)
	}
	if from == nil && to != nil {
		if voter {
			vs = append(vs, to)
		} else {
			nvs = append(nvs, to)
		}
	}
	return vs, append(nvs, s.zoneReadReps...)
}

// target is a ranked candidate for a new replica.
type target struct {
	node       *Node
	div        diversity
	violations int
}

// betterTarget orders candidates: fewer unmet constraints, more diverse,
// fewer replicas, lower QPS, lower ID.
func betterTarget(a, b target) bool {
	switch {
	case a.violations != b.violations:
		return a.violations < b.violations
	case a.div.compare(b.div) != 0:
		return a.div.compare(b.div) < 0
	case a.node.Replicas != b.node.Replicas:
		return a.node.Replicas < b.node.Replicas
	case a.node.QPS != b.node.QPS:
		return a.node.QPS < b.node.QPS
	default:
		return a.node.ID < b.node.ID
	}
}

// refusal says why n cannot take a replica of the role ("" if it can).
func (s *scorer) refusal(n *Node, voter bool) string {
	if _, ok := s.holds[n.ID]; ok {
		return "has a replica"
	}
	if !n.canTakeReplica() {
		return whyIneligible(n, false)
	}
	if ok, why := s.meets(n, voter); !ok {
		return why
	}
	if diskFull(n) {
		return "disk " + diskCell(n)
	}
	return ""
}

// targets ranks the nodes that can take a replica of the role replacing
// from (nil: a new replica), diversity against basis; the refused ones
// get their verdict.
func (s *scorer) targets(from *replica, voter bool, basis []*Node) []target {
	s.rankedNonVoter = !voter
	var out []target
	for _, n := range s.all {
		if why := s.refusal(n, voter); why != "" {
			if _, holds := s.holds[n.ID]; !holds {
				s.verdict[n.ID] = "refused: " + why
			}
			continue
		}
		vs, nvs := s.placement(from, n, voter)
		out = append(out, target{node: n, div: diversityOf(n, basis), violations: s.violations(vs, nvs)})
	}
	sort.SliceStable(out, func(i, j int) bool { return betterTarget(out[i], out[j]) })
	return out
}

// whyBeat says which criterion put w ahead of c.
func whyBeat(w, c target) string {
	switch {
	case w.violations != c.violations:
		return fmt.Sprintf("lost on constraints (%d unmet, %d)", c.violations, w.violations)
	case w.div.compare(c.div) != 0:
		return "lost on diversity"
	case w.node.Replicas != c.node.Replicas:
		return fmt.Sprintf("lost on ranges (%d, %d)", c.node.Replicas, w.node.Replicas)
	case w.node.QPS != c.node.QPS:
		return fmt.Sprintf("lost on qps (%.0f, %.0f)", c.node.QPS, w.node.QPS)
	default:
		return "lost on node ID"
	}
}

// markTargets sets the verdicts of ranked targets, the first chosen.
func (s *scorer) markTargets(ts []target) {
	for i, t := range ts {
		if i == 0 {
			s.verdict[t.node.ID] = "target"
		} else {
			s.verdict[t.node.ID] = whyBeat(ts[0], t)
		}
	}
}

// stayingAll returns the nodes of the voters and non-voters that stay.
func stayingAll(voters, nonVoters []replica) []*Node {
	return append(staying(voters), staying(nonVoters)...)
}

// notSatisfiable returns the "constraint not satisfiable" lines of the
// zone with today's nodes.
func (s *scorer) notSatisfiable() string {
	lines := Satisfiable(s.in.Zone, s.in.Nodes)
	return strings.Join(lines, "; ")
}

func (s *scorer) decide() (Decision, error) {
	z := s.in.Zone
	dec, err := Decide(Range{Desc: s.in.Desc, Factor: z.Voters(), Leaseholder: s.in.Leaseholder}, s.in.Nodes)
	if err != nil {
		return Decision{}, err
	}
	// 1. Voter repairs: Decide's order; the scorer picks the targets.
	switch dec.Action {
	case ActionUnavailable:
		s.check("repair: %s", dec.Reason)
		return dec, nil
	case ActionAddVoter, ActionNoTarget:
		return s.addVoter(dec)
	case ActionRemoveVoter:
		return s.removeVoter(dec)
	}
	s.check("repair: voters: fully replicated, %d of %d voters kept", len(staying(s.voters)), z.Voters())
	// 2. Non-voters: the zone's, then the read replicas' (or both at once
	// when the zone counts the read replicas' among its own).
	// (Without read-replica nodes, num_non_voters places and explains
	// the zone's non-voters as it always did.)
	if z.readReplicaRule() == rrCounted && s.anyReadReplica() {
		if d, ok := s.countedNonVoterRepair(); ok {
			return d, nil
		}
	} else {
		zd, zok := s.nonVoterRepair()
		if zok && zd.Action != ActionNoTarget {
			return zd, nil
		}
		// No node for the zone's non-voter does not hold up the read
		// replicas' (they are not the zone's).
		if d, ok := s.readReplicaRepair(); ok {
			return d, nil
		}
		if zok {
			return zd, nil
		}
	}
	// Moves need every replica on a live active node.
	for _, r := range append(append([]replica(nil), s.voters...), s.nonVoters...) {
		if r.health != healthy || !r.node.canTakeReplica() {
			s.check("moves: none while n%d is %s", r.node.ID, healthWord(r))
			return s.leaseSteps(false)
		}
	}
	if d, ok := s.constraintMove(); ok {
		return d, nil
	}
	if d, ok := s.diskMove(); ok {
		return d, nil
	}
	if d, ok := s.leasePreference(); ok {
		return d, nil
	}
	if d, ok := s.diversityMove(); ok {
		return d, nil
	}
	if d, ok := s.countMove(); ok {
		return d, nil
	}
	return s.leaseSteps(true)
}

// leaseSteps runs the lease checks (and the load-based replica move when
// moves is true) after the replica checks found nothing.
func (s *scorer) leaseSteps(moves bool) (Decision, error) {
	if !moves {
		if d, ok := s.leasePreference(); ok {
			return d, nil
		}
	}
	if d, ok := s.loadLease(moves); ok {
		return d, nil
	}
	if d, ok := s.followWorkload(); ok {
		return d, nil
	}
	if d, ok := s.leaseCount(); ok {
		return d, nil
	}
	return Decision{Action: ActionNone, Reason: "nothing to do: every check passed"}, nil
}

// addVoter re-ranks Decide's add (or no-target) with the scorer's
// criteria and names a replace when a voter is lost or leaving.
func (s *scorer) addVoter(dec Decision) (Decision, error) {
	status, _, _ := strings.Cut(dec.Reason, "; ")
	s.check("repair: %s", status)
	var gone []replica
	for _, v := range s.voters {
		if v.health == lost || v.health == leaving {
			gone = append(gone, v)
		}
	}
	d := Decision{Priority: dec.Priority, UnderReplicated: true}
	if dec.Action == ActionAddVoter && dec.ReplicaID != 0 {
		// Decide promotes a non-voter: keep it if it may be a voter.
		n := s.m[dec.Node]
		if ok, why := s.meets(n, true); ok && !diskFull(n) {
			s.verdict[n.ID] = "promote"
			d.Action, d.Node, d.ReplicaID = ActionAddVoter, dec.Node, dec.ReplicaID
			d.Reason = dec.Reason
			if s.in.Zone.Replicas() > s.in.Zone.Voters() {
				d.Reason = strings.Replace(d.Reason, ", left by a half-done change", "", 1)
			}
			return d, nil
		} else if !ok {
			s.check("the non-voter on n%d is not promoted: %s", n.ID, why)
		} else {
			s.check("the non-voter on n%d is not promoted: disk %s", n.ID, diskCell(n))
		}
	}
	ts := s.targets(nil, true, staying(s.voters))
	if len(ts) == 0 {
		d.Action = ActionNoTarget
		d.Priority = 0
		d.Reason = status + "; no node can take a voter"
		if ns := s.notSatisfiable(); ns != "" {
			d.Reason += "; " + ns
		}
		return d, nil
	}
	s.markTargets(ts)
	t := ts[0]
	d.Node = t.node.ID
	why := fmt.Sprintf("n%d (%s, %d replicas", t.node.ID, t.div, t.node.Replicas)
	if s.hasConstraints() {
		why += fmt.Sprintf(", %d constraints unmet after", t.violations)
	}
	why += ")"
	if len(gone) > 0 {
		g, _ := worst(gone, staying(s.voters), s.in.Leaseholder)
		s.verdict[g.node.ID] = "replaced"
		d.Action, d.From, d.ReplicaID = ActionReplaceVoter, g.node.ID, g.desc.ReplicaId
		d.Reason = fmt.Sprintf("%s; replace n%d's voter (replica %d, %s) with one on %s", status, g.node.ID, g.desc.ReplicaId, healthWord(g), why)
		return d, nil
	}
	d.Action = ActionAddVoter
	d.Reason = fmt.Sprintf("%s; add a voter on %s", status, why)
	return d, nil
}

// removeVoter keeps Decide's removal of a lost or leaving voter; for an
// extra voter it removes one that breaks a constraint first.
func (s *scorer) removeVoter(dec Decision) (Decision, error) {
	s.check("repair: %s", dec.Reason)
	rep := s.holds[dec.Node]
	if rep.health == healthy || rep.health == suspect {
		var breaking []replica
		for _, v := range s.voters {
			if ok, _ := s.meets(v.node, true); !ok && (v.health == healthy || v.health == suspect) {
				breaking = append(breaking, v)
			}
		}
		if len(breaking) > 0 {
			b, _ := worst(breaking, staying(s.voters), s.in.Leaseholder)
			_, why := s.meets(b.node, true)
			dec.Node, dec.ReplicaID = b.node.ID, b.desc.ReplicaId
			dec.Reason = fmt.Sprintf("over-replicated: remove n%d's voter (replica %d), which %s", b.node.ID, b.desc.ReplicaId, why)
			s.check("constraints: n%d %s: removed first", b.node.ID, why)
		}
	}
	s.verdict[dec.Node] = "removed"
	return dec, nil
}

// nonVoterRepair adds, replaces or removes non-voters so that the range
// keeps num_replicas − num_voters of them on healthy nodes.
func (s *scorer) nonVoterRepair() (Decision, bool) {
	want := s.in.Zone.Replicas() - s.in.Zone.Voters()
	var kept, gone []replica
	for _, r := range s.nonVoters {
		if r.health == healthy || r.health == suspect {
			kept = append(kept, r)
		} else {
			gone = append(gone, r)
		}
	}
	status := fmt.Sprintf("non-voters: %d of %d kept", len(kept), want)
	if len(gone) > 0 {
		status += " (" + describe(gone) + ")"
	}
	basis := stayingAll(s.voters, s.nonVoters)
	switch {
	case len(kept) < want:
		s.check("repair: %s", status)
		ts := s.targets(nil, false, basis)
		s.basis = basis
		if len(ts) == 0 {
			d := Decision{Action: ActionNoTarget, Reason: status + "; no node can take a non-voter"}
			if ns := s.notSatisfiable(); ns != "" {
				d.Reason += "; " + ns
			}
			return d, true
		}
		s.markTargets(ts)
		t := ts[0]
		why := fmt.Sprintf("n%d (%s, %d replicas)", t.node.ID, t.div, t.node.Replicas)
		if len(gone) > 0 {
			g, _ := worst(gone, basis, 0)
			s.verdict[g.node.ID] = "replaced"
			return Decision{Action: ActionReplaceNonVoter, Node: t.node.ID, From: g.node.ID, ReplicaID: g.desc.ReplicaId,
				Priority: priorityReplaceNonVoter,
				Reason:   fmt.Sprintf("%s; replace n%d's non-voter (replica %d, %s) with one on %s", status, g.node.ID, g.desc.ReplicaId, healthWord(g), why)}, true
		}
		return Decision{Action: ActionAddNonVoter, Node: t.node.ID, Priority: priorityAddNonVoter,
			Reason: fmt.Sprintf("%s; add a non-voter on %s", status, why)}, true
	case len(gone) > 0 || len(kept) > want:
		s.check("repair: %s", status)
		from, why := gone, "lost or leaving"
		if len(gone) == 0 {
			from, why = kept, fmt.Sprintf("more than the %d wanted", want)
		}
		g, because := worst(from, basis, 0)
		s.verdict[g.node.ID] = "removed"
		return Decision{Action: ActionRemoveNonVoter, Node: g.node.ID, ReplicaID: g.desc.ReplicaId, Priority: priorityRemoveNonVoter,
			Reason: fmt.Sprintf("%s: remove n%d's non-voter (replica %d, %s)%s", status, g.node.ID, g.desc.ReplicaId, why, because)}, true
	}
	s.check("repair: %s", status)
	return Decision{}, false
}

// selects reports whether the range's zone has read replica n hold a
// non-voter under rule (why names what n lacks when it does not): every
// read replica under rrEvery; under rrSelected and rrCounted one that
// meets the constraints of a non-voter (the zone's constraints and
// non_voter_constraints that apply to every replica), and under
// rrSelected also, when non_voter_constraints count replicas
// ({"+region=eu": 1}), one that meets one of those (under rrCounted the
// counts rank the targets instead, as for any non-voter).
func (s *scorer) selects(n *Node, rule readReplicaRule) (bool, string) {
	if rule == rrEvery {
		return true, ""
	}
	if ok, why := s.meets(n, false); !ok {
		return false, why
	}
	if rule == rrCounted {
		return true, ""
	}
	var counted []Conjunction
	for _, c := range s.in.Zone.NonVoterConstraints {
		if c.NumReplicas == 0 {
			continue
		}
		if ok, _ := c.satisfiedBy(n.Locality); ok {
			return true, ""
		}
		counted = append(counted, c)
	}
	if len(counted) == 0 {
		return true, ""
	}
	return false, "meets none of " + formatConjunctions(counted)
}

// readReplicaRepair applies the read-replica rule of a zone that does not
// set num_non_voters (rrEvery, rrSelected): each live active read-replica
// node (disk not full) that the rule selects gets a non-voter of the
// range, in addition to the zone's num_replicas, the lowest node ID first;
// it removes the non-voter of a read-replica node that is dead (past the
// time-until-store-dead), decommissioned or decommissioning (priority
// 700), then that of one the rule no longer selects. There is nothing to
// replace: the other selected read replicas hold theirs already.
func (s *scorer) readReplicaRepair() (Decision, bool) {
	rule := s.in.Zone.readReplicaRule()
	nodes, selected := 0, 0
	var missing []*Node
	for _, n := range s.all {
		if !n.ReadReplica {
			continue
		}
		nodes++
		ok, why := s.selects(n, rule)
		_, holds := s.holds[n.ID]
		switch {
		case ok:
			selected++
		case !holds:
			s.verdict[n.ID] = "refused: " + why
		}
		if ok && !holds && n.canTakeReadReplica() {
			missing = append(missing, n)
		}
	}
	if nodes == 0 && len(s.readReps) == 0 {
		return Decision{}, false // no line: clusters without read replicas explain as before
	}
	held := 0
	var unselected []replica
	for _, r := range s.readReps {
		if ok, _ := s.selects(r.node, rule); ok {
			held++
		} else {
			unselected = append(unselected, r)
		}
	}
	nvc := formatConjunctions(s.in.Zone.NonVoterConstraints)
	status := fmt.Sprintf("read replicas: %d of %d hold a non-voter", len(s.readReps), nodes)
	why := "every live read replica holds one of every range"
	if rule == rrSelected {
		status = fmt.Sprintf("read replicas: non_voter_constraints %s select %d of %d, %d of them hold a non-voter", nvc, selected, nodes, held)
		if len(unselected) > 0 {
			status += fmt.Sprintf(", and %d not selected hold one", len(unselected))
		}
	}
	if len(missing) > 0 {
		n := missing[0]
		s.check("repair: %s", status)
		s.verdict[n.ID] = "target"
		if rule == rrSelected {
			why = fmt.Sprintf("it meets non_voter_constraints %s: a read replica holds the spans whose constraints it meets", nvc)
		}
		return Decision{Action: ActionAddNonVoter, Node: n.ID, Priority: priorityAddNonVoter,
			Reason: fmt.Sprintf("%s; add a non-voter on read replica n%d (%s)", status, n.ID, why)}, true
	}
	for _, r := range s.readReps {
		if r.health == lost || r.health == leaving {
			s.check("repair: %s", status)
			s.verdict[r.node.ID] = "removed"
			return Decision{Action: ActionRemoveNonVoter, Node: r.node.ID, ReplicaID: r.desc.ReplicaId, Priority: priorityRemoveNonVoter,
				Reason: fmt.Sprintf("%s: remove read replica n%d's non-voter (replica %d, %s)", status, r.node.ID, r.desc.ReplicaId, healthWord(r))}, true
		}
	}
	if len(unselected) > 0 {
		r := unselected[0]
		_, lacks := s.selects(r.node, rule)
		s.check("repair: %s", status)
		s.verdict[r.node.ID] = "removed"
		return Decision{Action: ActionRemoveNonVoter, Node: r.node.ID, ReplicaID: r.desc.ReplicaId, Priority: priorityRemoveNonVoter,
			Reason: fmt.Sprintf("%s: remove read replica n%d's non-voter (replica %d): it %s, so non_voter_constraints %s no longer select it for this span",
				status, r.node.ID, r.desc.ReplicaId, lacks, nvc)}, true
	}
	s.check("%s", status)
	return Decision{}, false
}

// removeReadReplicas removes read replica r's non-voter under
// num_non_voters: r is lost or leaving, or breaks a constraint of the
// zone's non-voters.
func (s *scorer) removeReadReplicas(status string, r replica) Decision {
	why := healthWord(r)
	if r.health != lost && r.health != leaving {
		_, lacks := s.selects(r.node, rrCounted)
		why = "it " + lacks + ", a constraint of the zone's non-voters"
	}
	s.verdict[r.node.ID] = "removed"
	return Decision{Action: ActionRemoveNonVoter, Node: r.node.ID, ReplicaID: r.desc.ReplicaId, Priority: priorityRemoveNonVoter,
		Reason: fmt.Sprintf("%s: remove read replica n%d's non-voter (replica %d, %s)", status, r.node.ID, r.desc.ReplicaId, why)}
}

// anyReadReplica reports whether a node of the view is a read replica or
// the range has a non-voter on one.
func (s *scorer) anyReadReplica() bool {
	for _, n := range s.all {
		if n.ReadReplica {
			return true
		}
	}
	return len(s.readReps) > 0
}

// whyNoReadReplica says why read-replica node n cannot get a new
// non-voter now ("" if it can).
func whyNoReadReplica(n *Node) string {
	switch {
	case n.canTakeReadReplica():
		return ""
	case n.Liveness == Live && n.Membership == Active: // its disk is full
		return "disk " + diskCell(n)
	}
	return whyIneligible(n, false)
}

// readReplicaTargets ranks the read-replica nodes that can take one of the
// zone's non-voters (rrCounted): live, active, disk not full, no replica
// of the range, meeting the non-voter constraints; ranked as any target
// (fewer unmet constraints, diversity against basis, fewer replicas,
// lower QPS, lower ID). The refused ones get their verdict.
func (s *scorer) readReplicaTargets(basis []*Node) []target {
	s.rankedNonVoter = true
	var out []target
	for _, n := range s.all {
		if !n.ReadReplica {
			continue
		}
		if _, holds := s.holds[n.ID]; holds {
			continue
		}
		why := whyNoReadReplica(n)
		if why == "" {
			_, why = s.selects(n, rrCounted)
		}
		if why != "" {
			s.verdict[n.ID] = "refused: " + why
			continue
		}
		vs, nvs := s.placement(nil, n, false)
		out = append(out, target{node: n, div: diversityOf(n, basis), violations: s.violations(vs, nvs)})
	}
	sort.SliceStable(out, func(i, j int) bool { return betterTarget(out[i], out[j]) })
	return out
}

// countedNonVoterRepair applies num_non_voters N (rrCounted): the range
// keeps N non-voters in all, on read-replica nodes first (those meeting
// the non-voter constraints, ranked by readReplicaTargets), on ordinary
// nodes (ranked as nonVoterRepair's) only when no read replica can take
// one. In order: while fewer than N are kept (healthy or suspect, and on
// a read replica still meeting the constraints), add one (a replace when
// one is lost or leaving); then remove a lost or leaving one, then a read
// replica's the constraints no longer select, then one beyond N (an
// ordinary node's first, else the least diverse); then move an ordinary
// node's to a read replica that can take it (priority 5).
func (s *scorer) countedNonVoterRepair() (Decision, bool) {
	want := s.in.Zone.NonVoters()
	var ordKept, rrKept, gone, unselected []replica
	for _, r := range s.nonVoters {
		if r.health == healthy || r.health == suspect {
			ordKept = append(ordKept, r)
		} else {
			gone = append(gone, r)
		}
	}
	for _, r := range s.readReps {
		switch ok, _ := s.selects(r.node, rrCounted); {
		case r.health == lost || r.health == leaving:
			gone = append(gone, r)
		case !ok:
			unselected = append(unselected, r)
		default:
			rrKept = append(rrKept, r)
		}
	}
	s.zoneReadReps = staying(rrKept)
	kept := len(ordKept) + len(rrKept)
	lost := ""
	if len(gone) > 0 {
		lost = " (" + describe(gone) + ")"
	}
	rule := "read replicas first"
	if want == 0 {
		rule = "no read replica holds the span"
	}
	status := fmt.Sprintf("non-voters: %d of %d kept%s, %d on read replicas (num_non_voters %d: %s)", kept, want, lost, len(rrKept), want, rule)
	s.check("repair: %s", status)
	basis := append(stayingAll(s.voters, s.nonVoters), s.zoneReadReps...)
	s.basis = basis
	describeTarget := func(t target) string {
		why := fmt.Sprintf("n%d (%s, %d replicas", t.node.ID, t.div, t.node.Replicas)
		if s.hasConstraints() {
			why += fmt.Sprintf(", %d constraints unmet after", t.violations)
		}
		return why + ")"
	}
	rrTs := s.readReplicaTargets(basis)
	switch {
	case kept < want:
		where := "read replica "
		ts := rrTs
		if len(ts) == 0 {
			where = ""
			ts = s.targets(nil, false, basis)
			s.readReplicaTargets(basis) // the read replicas' verdicts say why not them
			if len(ts) > 0 {
				s.check("no read replica can take a non-voter: an ordinary node takes it")
			}
		}
		if len(ts) == 0 {
			// A read replica's non-voter that is not wanted there goes
			// all the same (as under the other rules); a lost one of an
			// ordinary node stays until it can be replaced (as
			// nonVoterRepair's).
			for _, r := range append(append([]replica(nil), gone...), unselected...) {
				if r.node.ReadReplica {
					return s.removeReadReplicas(status, r), true
				}
			}
			d := Decision{Action: ActionNoTarget, Reason: status + "; no read replica nor other node can take a non-voter"}
			if ns := s.notSatisfiable(); ns != "" {
				d.Reason += "; " + ns
			}
			return d, true
		}
		s.markTargets(ts)
		t := ts[0]
		if len(gone) > 0 {
			g, _ := worst(gone, basis, 0)
			s.verdict[g.node.ID] = "replaced"
			return Decision{Action: ActionReplaceNonVoter, Node: t.node.ID, From: g.node.ID, ReplicaID: g.desc.ReplicaId,
				Priority: priorityReplaceNonVoter,
				Reason: fmt.Sprintf("%s; replace n%d's non-voter (replica %d, %s) with one on %s%s",
					status, g.node.ID, g.desc.ReplicaId, healthWord(g), where, describeTarget(t))}, true
		}
		return Decision{Action: ActionAddNonVoter, Node: t.node.ID, Priority: priorityAddNonVoter,
			Reason: fmt.Sprintf("%s; add a non-voter on %s%s", status, where, describeTarget(t))}, true
	case len(gone) > 0:
		g, because := worst(gone, basis, 0)
		s.verdict[g.node.ID] = "removed"
		return Decision{Action: ActionRemoveNonVoter, Node: g.node.ID, ReplicaID: g.desc.ReplicaId, Priority: priorityRemoveNonVoter,
			Reason: fmt.Sprintf("%s: remove n%d's non-voter (replica %d, %s)%s", status, g.node.ID, g.desc.ReplicaId, healthWord(g), because)}, true
	case len(unselected) > 0:
		return s.removeReadReplicas(status, unselected[0]), true
	case kept > want:
		from, which := ordKept, "an ordinary node's first"
		if len(from) == 0 {
			from, which = rrKept, "a read replica's"
		}
		g, because := worst(from, basis, 0)
		s.verdict[g.node.ID] = "removed"
		return Decision{Action: ActionRemoveNonVoter, Node: g.node.ID, ReplicaID: g.desc.ReplicaId, Priority: priorityRemoveNonVoter,
			Reason: fmt.Sprintf("%s: remove n%d's non-voter (replica %d), more than the %d wanted (%s)%s", status, g.node.ID, g.desc.ReplicaId, want, which, because)}, true
	case len(ordKept) > 0 && len(rrTs) > 0:
		g, _ := worst(ordKept, basis, 0)
		// Diversity against the replicas that stay.
		var stay []*Node
		for _, n := range basis {
			if n != g.node {
				stay = append(stay, n)
			}
		}
		s.basis = stay
		ts := s.readReplicaTargets(stay)
		s.markTargets(ts)
		s.verdict[g.node.ID] = "leaves"
		return Decision{Action: ActionRebalanceNonVoter, Node: ts[0].node.ID, From: g.node.ID, ReplicaID: g.desc.ReplicaId,
			Priority: priorityReadReplicaFirst,
			Reason: fmt.Sprintf("%s: move n%d's non-voter (replica %d) to read replica %s",
				status, g.node.ID, g.desc.ReplicaId, describeTarget(ts[0]))}, true
	}
	return Decision{}, false
}

// moveAction is the rebalance action for a replica of this type.
func moveAction(r replica) Action {
	if r.desc.Type == rspb.ReplicaType_NON_VOTER {
		return ActionRebalanceNonVoter
	}
	return ActionRebalance
}

func kind(r replica) string {
	if r.desc.Type == rspb.ReplicaType_NON_VOTER {
		return "non-voter"
	}
	return "voter"
}

// others returns the nodes of the replicas of the same kind as r but r.
func (s *scorer) others(r replica) []*Node {
	var out []*Node
	from := s.voters
	if r.desc.Type == rspb.ReplicaType_NON_VOTER {
		out = staying(s.voters)
		from = s.nonVoters
	}
	for _, o := range from {
		if o.node != r.node {
			out = append(out, o.node)
		}
	}
	return out
}

func (s *scorer) moveDecision(from replica, to target, prio int, reason string) Decision {
	s.verdict[from.node.ID] = "leaves"
	s.basis = s.others(from)
	if from.node.ID == s.in.Leaseholder {
		reason += fmt.Sprintf("; n%d holds the lease: it goes to n%d with the voter", from.node.ID, to.node.ID)
	}
	return Decision{Action: moveAction(from), Node: to.node.ID, From: from.node.ID, ReplicaID: from.desc.ReplicaId, Priority: prio, Reason: reason}
}

// constraintMove moves a replica so that fewer constraints are unmet.
func (s *scorer) constraintMove() (Decision, bool) {
	if !s.hasConstraints() {
		s.check("constraints: none")
		return Decision{}, false
	}
	before := s.violations(s.placement(nil, nil, false))
	if before == 0 {
		s.check("constraints: met")
		return Decision{}, false
	}
	var best *target
	var bestFrom replica
	for _, r := range append(append([]replica(nil), s.voters...), s.nonVoters...) {
		voter := r.desc.Type != rspb.ReplicaType_NON_VOTER
		saved := s.verdict
		s.verdict = map[uint64]string{}
		ts := s.targets(&r, voter, s.others(r))
		s.verdict = saved
		if len(ts) == 0 || ts[0].violations >= before {
			continue
		}
		// Fewest unmet after; then not the leaseholder's replica; then
		// the most diverse target.
		better := best == nil || ts[0].violations < best.violations
		if !better && ts[0].violations == best.violations {
			lhA, lhB := r.node.ID == s.in.Leaseholder, bestFrom.node.ID == s.in.Leaseholder
			better = lhB && !lhA || lhA == lhB && ts[0].div.compare(best.div) < 0
		}
		if better {
			t := ts[0]
			best, bestFrom = &t, r
		}
	}
	if best == nil {
		ns := s.notSatisfiable()
		if ns == "" {
			ns = fmt.Sprintf("%d unmet, and no single move meets more", before)
		}
		s.check("constraints: %s", ns)
		return Decision{}, false
	}
	ts := s.targets(&bestFrom, bestFrom.desc.Type != rspb.ReplicaType_NON_VOTER, s.others(bestFrom))
	s.markTargets(ts)
	why := s.unmetCounts()
	if ok, w := s.meets(bestFrom.node, bestFrom.desc.Type != rspb.ReplicaType_NON_VOTER); !ok {
		why = fmt.Sprintf("n%d's %s %s", bestFrom.node.ID, kind(bestFrom), w)
	}
	s.check("constraints: violated: %s", why)
	return s.moveDecision(bestFrom, *best, priorityConstraint, fmt.Sprintf(
		"constraint violated (%s): move n%d's %s (replica %d) to n%d, %d unmet after",
		why, bestFrom.node.ID, kind(bestFrom), bestFrom.desc.ReplicaId, best.node.ID, best.violations)), true
}

// matching counts the nodes of ns that satisfy c.
func matching(c Conjunction, ns []*Node) int {
	matched := 0
	for _, n := range ns {
		if ok, _ := c.satisfiedBy(n.Locality); ok {
			matched++
		}
	}
	return matched
}

// unmetCounts names the per-replica-count constraints the range falls
// short of: `+region=eu: 1 of 2 replicas`.
func (s *scorer) unmetCounts() string {
	var parts []string
	vs, nvs := s.placement(nil, nil, false)
	each := func(field string, cs []Conjunction, ns []*Node) {
		for _, c := range cs {
			if c.NumReplicas == 0 {
				continue
			}
			matched := matching(c, ns)
			if matched < int(c.NumReplicas) {
				parts = append(parts, fmt.Sprintf("%s %s: %d of %d", field, c, matched, c.NumReplicas))
			}
		}
	}
	each("constraints", s.in.Zone.Constraints, append(append([]*Node(nil), vs...), nvs...))
	each("voter_constraints", s.in.Zone.VoterConstraints, vs)
	each("non_voter_constraints", s.in.Zone.NonVoterConstraints, nvs)
	return strings.Join(parts, ", ")
}

// replacements ranks the targets for r's replica that keep the
// constraints met as well and the range as diverse.
func (s *scorer) replacements(r replica) []target {
	voter := r.desc.Type != rspb.ReplicaType_NON_VOTER
	before := s.violations(s.placement(nil, nil, false))
	others := s.others(r)
	fromDiv := diversityOf(r.node, others)
	var out []target
	for _, t := range s.targets(&r, voter, others) {
		if t.violations > before {
			s.verdict[t.node.ID] = "refused: breaks a constraint"
			continue
		}
		if t.div.compare(fromDiv) > 0 {
			s.verdict[t.node.ID] = "refused: less diverse"
			continue
		}
		if why := s.refuseLease(r, t.node); why != "" {
			s.verdict[t.node.ID] = "refused: " + why
			continue
		}
		out = append(out, t)
	}
	return out
}

// diskMove moves a replica off a full disk.
func (s *scorer) diskMove() (Decision, bool) {
	for _, r := range append(append([]replica(nil), s.voters...), s.nonVoters...) {
		if !diskFull(r.node) {
			continue
		}
		ts := s.replacements(r)
		if len(ts) == 0 {
			s.check("disk: n%d is %s and no node can take its %s", r.node.ID, diskCell(r.node), kind(r))
			continue
		}
		s.markTargets(ts)
		s.check("disk: n%d is %s (more than %.0f%%)", r.node.ID, diskCell(r.node), 100*DiskFullFraction)
		to := fmt.Sprintf("n%d", ts[0].node.ID)
		if ts[0].node.CapacityBytes > 0 {
			to += " (" + diskCell(ts[0].node) + " used)"
		}
		return s.moveDecision(r, ts[0], priorityDiskFull, fmt.Sprintf(
			"disk full: n%d's disk is %s (more than %.0f%%): move its %s (replica %d) to %s",
			r.node.ID, diskCell(r.node), 100*DiskFullFraction, kind(r), r.desc.ReplicaId, to)), true
	}
	s.check("disk: no replica on a full disk")
	return Decision{}, false
}

// diversityMove moves the least diverse voter to a node that adds more.
func (s *scorer) diversityMove() (Decision, bool) {
	type option struct {
		from    replica
		fromDiv diversity
		ts      []target
	}
	var best *option
	for _, v := range s.voters {
		others := s.others(v)
		fromDiv := diversityOf(v.node, others)
		saved := s.verdict
		s.verdict = map[uint64]string{}
		var better []target
		for _, t := range s.replacements(v) {
			if t.div.compare(fromDiv) < 0 {
				better = append(better, t)
			}
		}
		s.verdict = saved
		if len(better) == 0 {
			continue
		}
		if best == nil || fromDiv.compare(best.fromDiv) > 0 {
			best = &option{from: v, fromDiv: fromDiv, ts: better}
		}
	}
	if best == nil {
		s.check("diversity: no move makes the range more diverse")
		return Decision{}, false
	}
	s.replacements(best.from) // verdicts of the refused
	s.markTargets(best.ts)
	t := best.ts[0]
	s.check("diversity: n%d %s; n%d %s", best.from.node.ID, best.fromDiv, t.node.ID, t.div)
	return s.moveDecision(best.from, t, priorityBalance, fmt.Sprintf(
		"diversity: move n%d's voter (replica %d) to n%d: n%d %s, where n%d %s",
		best.from.node.ID, best.from.desc.ReplicaId, t.node.ID, t.node.ID, t.div, best.from.node.ID, best.fromDiv)), true
}

// countMove is balance.go's count rebalance, refusing targets that break
// constraints or have a full disk.
func (s *scorer) countMove() (Decision, bool) {
	if !s.countsOK {
		s.check("ranges: no live active node")
		return Decision{}, false
	}
	before := s.violations(s.placement(nil, nil, false))
	allowed := func(from replica, to *Node) bool {
		if s.refusal(to, true) != "" || s.refuseLease(from, to) != "" {
			return false
		}
		return s.violations(s.placement(&from, to, true)) <= before
	}
	mv, ok := rebalance(s.voters, s.all, s.in.Leaseholder, allowed, s.th)
	if !ok {
		s.check("ranges: balanced enough (mean %.2f, over above %d, under below %d)", s.counts.mean, s.counts.overfullAbove, s.counts.underfullBelow)
		return Decision{}, false
	}
	over := mv.from.node.Replicas > s.counts.overfullAbove
	for _, t := range s.replacements(mv.from) {
		n := t.node
		switch {
		case n == mv.to.node:
			s.verdict[n.ID] = "target"
		case !(over && float64(n.Replicas) < s.counts.mean) && n.Replicas >= s.counts.underfullBelow:
			s.verdict[n.ID] = "not under enough"
		default:
			s.verdict[n.ID] = whyBeat(target{node: mv.to.node, div: mv.to.div}, t)
		}
	}
	s.verdict[mv.from.node.ID] = "leaves"
	s.basis = s.others(mv.from)
	s.check("ranges: n%d holds %d replicas (mean %.2f, over above %d, under below %d)",
		mv.from.node.ID, mv.from.node.Replicas, s.counts.mean, s.counts.overfullAbove, s.counts.underfullBelow)
	return Decision{Action: ActionRebalance, Node: mv.to.node.ID, From: mv.from.node.ID, ReplicaID: mv.from.desc.ReplicaId,
		Priority: priorityBalance, Reason: "ranges: " + strings.Replace(strings.TrimPrefix(mv.reason, "rebalance: "),
			"transfer it first", fmt.Sprintf("it goes to n%d with the voter", mv.to.node.ID), 1)}, true
}

// refuseLease says why to cannot take r's place when r is the
// leaseholder's voter, whose lease goes along: to must meet the lease
// preferences as well and not turn hot with the range's load ("" if it
// can, or r does not hold the lease).
func (s *scorer) refuseLease(r replica, to *Node) string {
	if r.node.ID != s.in.Leaseholder {
		return ""
	}
	if s.prefLevel(to) > s.prefLevel(r.node) {
		return "the lease would be less preferred"
	}
	if s.qpsMean > 0 && s.in.QPS > 0 && to.QPS+s.in.QPS > s.qpsHot {
		return "the lease would make it hot"
	}
	return ""
}

// leaseOK reports whether n may hold a lease: live and active.
func leaseOK(n *Node) bool { return n.Liveness == Live && n.Membership == Active }

// prefLevel is the index of the first lease preference n meets, or the
// number of preferences if none.
func (s *scorer) prefLevel(n *Node) int {
	for i, p := range s.in.Zone.LeasePreferences {
		if ok, _ := (Conjunction{Constraints: p.Constraints}).satisfiedBy(n.Locality); ok {
			return i
		}
	}
	return len(s.in.Zone.LeasePreferences)
}

// leaseCandidates returns the voters other than the leaseholder that may
// take the lease at no worse preference level, ordered by the ID.
func (s *scorer) leaseCandidates() (lh *Node, out []*Node) {
	lh = s.m[s.in.Leaseholder]
	for _, v := range s.voters {
		if v.node == lh {
			continue
		}
		switch {
		case !leaseOK(v.node):
			s.leaseVerd[v.node.ID] = "refused: " + healthWord(v)
		case s.prefLevel(v.node) > s.prefLevel(lh):
			s.leaseVerd[v.node.ID] = "refused: less preferred"
		default:
			out = append(out, v.node)
		}
	}
	return lh, out
}

func (s *scorer) transfer(lh, to *Node, prio int, reason string) Decision {
	s.leaseVerd[lh.ID] = "leaseholder, gives it"
	s.leaseVerd[to.ID] = "target"
	return Decision{Action: ActionTransferLease, Node: to.ID, From: lh.ID, Priority: prio, Reason: reason}
}

// leasePreference moves the lease to a voter of a more preferred level.
func (s *scorer) leasePreference() (Decision, bool) {
	if s.in.Leaseholder == 0 {
		s.check("lease: leaseholder unknown")
		return Decision{}, false
	}
	if len(s.in.Zone.LeasePreferences) == 0 {
		s.check("lease preferences: none")
		return Decision{}, false
	}
	lh := s.m[s.in.Leaseholder]
	cur := s.prefLevel(lh)
	var best *Node
	for _, v := range s.voters {
		if v.node == lh || !leaseOK(v.node) {
			continue
		}
		l := s.prefLevel(v.node)
		if l >= cur {
			continue
		}
		if best == nil || l < s.prefLevel(best) || (l == s.prefLevel(best) && (v.node.Leases < best.Leases || v.node.Leases == best.Leases && v.node.ID < best.ID)) {
			best = v.node
		}
	}
	if best == nil {
		if cur < len(s.in.Zone.LeasePreferences) {
			s.check("lease preferences: n%d meets preference %d, no voter meets an earlier one", lh.ID, cur+1)
		} else {
			s.check("lease preferences: no live active voter meets one (%s)", s.notSatisfiableLease())
		}
		return Decision{}, false
	}
	l := s.prefLevel(best)
	have := "meets none"
	if cur < len(s.in.Zone.LeasePreferences) {
		have = fmt.Sprintf("meets only preference %d", cur+1)
	}
	s.check("lease preferences: leaseholder n%d %s", lh.ID, have)
	return s.transfer(lh, best, priorityLeasePreference, fmt.Sprintf(
		"lease preference: leaseholder n%d %s; n%d meets preference %d %s: transfer the lease to it (fewest leases: %d)",
		lh.ID, have, best.ID, l+1, s.in.Zone.LeasePreferences[l], best.Leases)), true
}

func (s *scorer) notSatisfiableLease() string {
	ps := make([]string, len(s.in.Zone.LeasePreferences))
	for i, p := range s.in.Zone.LeasePreferences {
		ps[i] = p.String()
	}
	return "lease preference not satisfiable by the voters: " + strings.Join(ps, " ")
}

// loadLease transfers the lease off a hot leaseholder to a voter that
// stays below the hot line with the range's load; if none can and moves
// is true, a voter moves to a cool node the lease can follow to.
func (s *scorer) loadLease(moves bool) (Decision, bool) {
	if s.in.Leaseholder == 0 || s.in.QPS == 0 || s.qpsMean == 0 {
		s.check("load: no range load to move")
		return Decision{}, false
	}
	lh, cands := s.leaseCandidates()
	q := s.in.QPS
	if lh.QPS <= s.qpsHot {
		s.check("load: leaseholder n%d serves %.0f qps, not above %.0f (%s)", lh.ID, lh.QPS, s.qpsHot, s.hotRule())
		return Decision{}, false
	}
	// fits: the node, with the range's load, is below the hot line and
	// below the leaseholder without it (the move lowers the spread).
	fits := func(n *Node) bool { return n.QPS+q <= s.qpsHot && n.QPS+q < lh.QPS }
	var best *Node
	for _, n := range cands {
		if !fits(n) {
			s.leaseVerd[n.ID] = fmt.Sprintf("refused: %.0f+%.0f qps too hot", n.QPS, q)
			continue
		}
		if s.againstWorkload(n, lh) {
			// Follow-the-workload would move it back: load never
			// moves a lease against the workload.
			s.leaseVerd[n.ID] = "refused: farther from the workload"
			continue
		}
		if best == nil || n.QPS < best.QPS {
			best = n
		}
	}
	hot := fmt.Sprintf("leaseholder n%d serves %.0f qps, above %.0f (%s)", lh.ID, lh.QPS, s.qpsHot, s.hotRule())
	if best != nil {
		for _, n := range cands {
			if n != best && fits(n) {
				s.leaseVerd[n.ID] = fmt.Sprintf("lost on qps (%.0f, %.0f)", n.QPS, best.QPS)
			}
		}
		s.check("load: %s", hot)
		return s.transfer(lh, best, priorityBalance, fmt.Sprintf(
			"load: %s: transfer the lease (%.0f qps) to n%d (%.0f qps)", hot, q, best.ID, best.QPS)), true
	}
	if !moves {
		s.check("load: %s; no voter can take the lease, and no replica moves now", hot)
		return Decision{}, false
	}
	// Replicas: move a voter to a cool node: the leaseholder's own, the
	// lease going with it (the hot store pays with its own replica
	// count), else the one on the hottest other store (the lease follows
	// in a later round). Neither store may leave the count thresholds.
	var from *replica
	var ts []target
	for i := range s.voters {
		v := s.voters[i]
		if from != nil && from.node == lh {
			break
		}
		saved := s.verdict
		s.verdict = map[uint64]string{}
		var ok []target
		for _, t := range s.replacements(v) {
			n := t.node
			if fits(n) && s.prefLevel(n) <= s.prefLevel(lh) && !s.againstWorkload(n, lh) && (!s.countsOK ||
				n.Replicas+1 <= s.counts.overfullAbove && v.node.Replicas-1 >= s.counts.underfullBelow) {
				ok = append(ok, t)
			}
		}
		s.verdict = saved
		if len(ok) > 0 && (from == nil || v.node == lh || v.node.QPS > from.node.QPS) {
			from, ts = &s.voters[i], ok
		}
	}
	if from == nil {
		s.check("load: %s; no voter can take the lease and no cool node can take a voter", hot)
		return Decision{}, false
	}
	sort.SliceStable(ts, func(i, j int) bool {
		a, b := ts[i].node, ts[j].node
		if a.QPS != b.QPS {
			return a.QPS < b.QPS
		}
		return betterTarget(ts[i], ts[j])
	})
	s.replacements(*from)
	for i, t := range ts {
		if i == 0 {
			s.verdict[t.node.ID] = "target"
		} else if t.node.QPS != ts[0].node.QPS {
			s.verdict[t.node.ID] = fmt.Sprintf("lost on qps (%.0f, %.0f)", t.node.QPS, ts[0].node.QPS)
		} else {
			s.verdict[t.node.ID] = whyBeat(ts[0], t)
		}
	}
	follow := " for the lease to follow"
	if from.node == lh {
		follow = ""
	}
	s.check("load: %s; no voter can take the lease", hot)
	return s.moveDecision(*from, ts[0], priorityBalance, fmt.Sprintf(
		"load: %s and no voter can take the lease (%.0f qps): move n%d's voter (replica %d) to n%d (%.0f qps)%s",
		hot, q, from.node.ID, from.desc.ReplicaId, ts[0].node.ID, ts[0].node.QPS, follow)), true
}

// workloadScore is how closely n's locality matches where the range's
// requests come from: the request-weighted share of n's tiers each
// request's locality has in common with it, 0 to 1.
func (s *scorer) workloadScore(n *Node) float64 {
	total, score := 0.0, 0.0
	for _, r := range s.in.Requests {
		total += r.QPS
		if len(n.Locality) > 0 {
			score += r.QPS * float64(sharedTiers(r.Locality, n.Locality)) / float64(len(n.Locality))
		}
	}
	if total == 0 {
		return 0
	}
	return score / total
}

// againstWorkload: n matches the range's requests worse than the
// leaseholder lh by the margin (the lease moved to n would follow the
// workload back).
func (s *scorer) againstWorkload(n, lh *Node) bool {
	return len(s.in.Requests) > 0 && s.workloadScore(n) < s.workloadScore(lh)-s.th.FollowWorkloadMargin
}

// followWorkload moves the lease to the voter whose locality matches the
// range's requests best, by at least FollowWorkloadMargin more than the
// leaseholder's, if that voter does not become hot.
func (s *scorer) followWorkload() (Decision, bool) {
	if s.in.Leaseholder == 0 || len(s.in.Requests) == 0 {
		s.check("workload: no request localities")
		return Decision{}, false
	}
	lh, cands := s.leaseCandidates()
	cur := s.workloadScore(lh)
	var best *Node
	for _, n := range cands {
		if s.qpsMean > 0 && n.QPS+s.in.QPS > s.qpsHot {
			s.leaseVerd[n.ID] = fmt.Sprintf("refused: %.0f+%.0f qps too hot", n.QPS, s.in.QPS)
			continue
		}
		if best == nil || s.workloadScore(n) > s.workloadScore(best) {
			best = n
		}
	}
	if best == nil || s.workloadScore(best) < cur+s.th.FollowWorkloadMargin {
		s.check("workload: leaseholder n%d matches the requests %.2f, no voter %.2f more", lh.ID, cur, s.th.FollowWorkloadMargin)
		return Decision{}, false
	}
	s.check("workload: leaseholder n%d matches the requests %.2f, n%d %.2f", lh.ID, cur, best.ID, s.workloadScore(best))
	return s.transfer(lh, best, priorityBalance, fmt.Sprintf(
		"follow the workload: n%d's locality %s matches the range's requests %.2f, the leaseholder n%d's %.2f (margin %.2f): transfer the lease",
		best.ID, formatLocality(best.Locality), s.workloadScore(best), lh.ID, cur, s.th.FollowWorkloadMargin)), true
}

// leaseCount moves the lease from a store with too many leases to one
// with too few, as balance.go does for replicas: from over to below the
// mean, or from above the mean to under. It never goes against the
// workload (a voter matching the requests worse by the margin) nor to a
// store the range's load would bring above the mean QPS (so that it does
// not undo what load balancing did).
func (s *scorer) leaseCount() (Decision, bool) {
	if s.in.Leaseholder == 0 {
		return Decision{Reason: ""}, false
	}
	lh, cands := s.leaseCandidates()
	l := float64(lh.Leases)
	if l <= s.leaseMean {
		s.check("leases: leaseholder n%d holds %d, not above the mean %.2f", lh.ID, lh.Leases, s.leaseMean)
		return Decision{}, false
	}
	over := l > s.leaseOver
	var best *Node
	for _, n := range cands {
		nl := float64(n.Leases)
		if !(over && nl < s.leaseMean) && !(nl < s.leaseUnder) {
			continue
		}
		if s.againstWorkload(n, lh) {
			s.leaseVerd[n.ID] = "refused: farther from the workload"
			continue
		}
		if s.in.QPS > 0 && n.QPS+s.in.QPS > s.qpsMean {
			// Counts never undo load: the lease goes only where its
			// load keeps the store at or below the mean QPS.
			s.leaseVerd[n.ID] = fmt.Sprintf("refused: %.0f+%.0f qps above the mean", n.QPS, s.in.QPS)
			continue
		}
		if best == nil || n.Leases < best.Leases {
			best = n
		}
	}
	if best == nil {
		s.check("leases: leaseholder n%d holds %d (mean %.2f, over above %.2f, under below %.2f): no voter to give it to",
			lh.ID, lh.Leases, s.leaseMean, s.leaseOver, s.leaseUnder)
		return Decision{}, false
	}
	why := fmt.Sprintf("n%d holds %d leases, over (more than %.2f); n%d holds %d, below the mean %.2f", lh.ID, lh.Leases, s.leaseOver, best.ID, best.Leases, s.leaseMean)
	if !over {
		why = fmt.Sprintf("n%d holds %d leases, above the mean %.2f; n%d holds %d, under (fewer than %.2f)", lh.ID, lh.Leases, s.leaseMean, best.ID, best.Leases, s.leaseUnder)
	}
	s.check("leases: %s", why)
	return s.transfer(lh, best, priorityBalance, "leases: "+why+": transfer the lease"), true
}

// explain builds the tables.
func (s *scorer) explain(d Decision) Explanation {
	e := Explanation{Summary: d.Reason, Checks: s.checks}
	e.Replicas = Table{
		Title: fmt.Sprintf("replicas of r%d (zone %s; ranges mean %.2f; qps mean %.0f, hot above %.0f):",
			s.in.Desc.RangeId, s.zoneSummary(), s.counts.mean, s.qpsMean, s.qpsHot),
		Criteria: []string{"valid", "constraints", "disk", "diversity", "ranges", "qps"},
	}
	stay := staying(s.voters)
	if s.basis != nil {
		stay = s.basis
	}
	// A node without a replica is judged for the role last ranked
	// (targets), a voter if none was.
	newVoter := !s.rankedNonVoter
	for _, n := range s.all {
		row := Row{Node: n.ID, Role: "-", Verdict: s.verdict[n.ID]}
		voter := newVoter
		basis := stay
		valid := "ok"
		if r, ok := s.holds[n.ID]; ok {
			row.Role = kind(*r)
			voter = r.desc.Type != rspb.ReplicaType_NON_VOTER
			basis = s.others(*r)
			valid = healthWord(*r)
			if n.ID == s.in.Leaseholder {
				row.Role += "*"
			}
		} else if !n.canTakeReplica() {
			valid = whyIneligible(n, false)
		}
		cons := "-"
		if s.hasConstraints() {
			cons = "ok"
			if ok, why := s.meets(n, voter); !ok {
				cons = why
			}
		}
		ranges := fmt.Sprintf("%d", n.Replicas)
		if s.countsOK && n.canTakeReplica() {
			switch {
			case n.Replicas > s.counts.overfullAbove:
				ranges += " over"
			case n.Replicas < s.counts.underfullBelow:
				ranges += " under"
			}
		}
		qps := fmt.Sprintf("%.0f", n.QPS)
		if s.qpsMean > 0 && n.QPS > s.qpsHot {
			qps += " hot"
		}
		row.Cells = []string{valid, cons, diskCell(n), diversityOf(n, basis).String(), ranges, qps}
		e.Replicas.Rows = append(e.Replicas.Rows, row)
	}
	if s.in.Leaseholder == 0 {
		return e
	}
	lt := &Table{
		Title:    fmt.Sprintf("lease of r%d (%.0f qps; leases mean %.2f, over above %.2f, under below %.2f):", s.in.Desc.RangeId, s.in.QPS, s.leaseMean, s.leaseOver, s.leaseUnder),
		Criteria: []string{"valid", "preference", "workload", "leases", "qps"},
	}
	for _, v := range s.voters {
		n := v.node
		row := Row{Node: n.ID, Role: "voter", Verdict: s.leaseVerd[n.ID]}
		if n.ID == s.in.Leaseholder {
			row.Role = "leaseholder"
		}
		valid := "ok"
		if !leaseOK(n) {
			valid = healthWord(v)
		}
		pref := "-"
		if len(s.in.Zone.LeasePreferences) > 0 {
			if l := s.prefLevel(n); l < len(s.in.Zone.LeasePreferences) {
				pref = fmt.Sprintf("%d", l+1)
			} else {
				pref = "none"
			}
		}
		work := "-"
		if len(s.in.Requests) > 0 {
			work = fmt.Sprintf("%.2f", s.workloadScore(n))
		}
		leases := fmt.Sprintf("%d", n.Leases)
		switch {
		case float64(n.Leases) > s.leaseOver:
			leases += " over"
		case float64(n.Leases) < s.leaseUnder:
			leases += " under"
		}
		qps := fmt.Sprintf("%.0f", n.QPS)
		if s.qpsMean > 0 && n.QPS > s.qpsHot {
			qps += " hot"
		}
		row.Cells = []string{valid, pref, work, leases, qps}
		lt.Rows = append(lt.Rows, row)
	}
	e.Lease = lt
	return e
}

func (s *scorer) zoneSummary() string {
	z := s.in.Zone
	out := fmt.Sprintf("%d voters", z.Voters())
	if nv := z.Replicas() - z.Voters(); nv == 1 {
		out += " + 1 non-voter"
	} else if nv > 1 {
		out += fmt.Sprintf(" + %d non-voters", nv)
	}
	if len(z.Constraints) > 0 {
		out += " constraints=" + formatConjunctions(z.Constraints)
	}
	if len(z.VoterConstraints) > 0 {
		out += " voter_constraints=" + formatConjunctions(z.VoterConstraints)
	}
	if len(z.NonVoterConstraints) > 0 {
		out += " non_voter_constraints=" + formatConjunctions(z.NonVoterConstraints)
	}
	if len(z.LeasePreferences) > 0 {
		ps := make([]string, len(z.LeasePreferences))
		for i, p := range z.LeasePreferences {
			ps[i] = p.String()
		}
		out += " lease_preferences=[" + strings.Join(ps, ",") + "]"
	}
	return out
}
