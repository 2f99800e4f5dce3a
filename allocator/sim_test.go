package allocator

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/proto/rspb"
)

// A deterministic simulation of the scorer with no Raft: stores and
// ranges are plain values, and each action the scorer returns is applied
// to them at once (a move replaces the replica; the lease of a moved
// leaseholder's voter goes with it; a transfer moves the lease and the
// range's QPS). Each round asks every range, in ID order, for one action.

type simRange struct {
	desc        *rspb.RangeDescriptor
	leaseholder uint64
	qps         float64
	left        map[uint64]bool // nodes a replica of this range moved off
	gaveLease   map[uint64]bool // nodes that transferred this range's lease away
}

type sim struct {
	t      *testing.T
	nodes  []Node // node ID i+1 at index i
	ranges []*simRange
	zone   ZoneConfig
	// counters
	rounds, moves, transfers, thrash, leaseThrash int
	actions                                       map[string]int
}

var simRegions = []string{"us", "eu", "ap"}

func newSim(t *testing.T) *sim {
	z, err := ZoneConfig{}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	return &sim{t: t, zone: z, actions: map[string]int{}}
}

func (s *sim) addNode(region, zone string) uint64 {
	id := uint64(len(s.nodes) + 1)
	s.nodes = append(s.nodes, Node{ID: id, Locality: []*rspb.LocalityTier{{Key: "region", Value: region}, {Key: "zone", Value: zone}}})
	return id
}

func (s *sim) node(id uint64) *Node { return &s.nodes[id-1] }

func (s *sim) addRange(voters []uint64, leaseholder uint64, qps float64) {
	d := &rspb.RangeDescriptor{RangeId: uint64(len(s.ranges) + 1)}
	for i, n := range voters {
		d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: n, ReplicaId: uint64(i + 1)})
		s.node(n).Replicas++
	}
	d.NextReplicaId = uint64(len(voters) + 1)
	s.node(leaseholder).Leases++
	s.node(leaseholder).QPS += qps
	s.ranges = append(s.ranges, &simRange{desc: d, leaseholder: leaseholder, qps: qps, left: map[uint64]bool{}, gaveLease: map[uint64]bool{}})
}

// step asks every range for one action and applies it; it returns the
// number of actions applied. With leasesOnly, replica moves are skipped
// (the range asks again next round).
func (s *sim) step(leasesOnly bool) int {
	applied := 0
	for _, r := range s.ranges {
		rec, err := Score(ScoreInput{Desc: r.desc, Zone: s.zone, Leaseholder: r.leaseholder, QPS: r.qps, Nodes: s.nodes})
		if err != nil {
			s.t.Fatalf("r%d: %v", r.desc.RangeId, err)
		}
		d := rec.Decision
		switch {
		case d.Action == ActionNone:
			continue
		case leasesOnly && d.Action != ActionTransferLease:
			continue
		}
		switch d.Action {
		case ActionRebalance:
			s.move(r, d)
		case ActionTransferLease:
			s.transfer(r, d.Node)
		default:
			s.t.Fatalf("r%d: unexpected %s in a healthy cluster:\n%s", r.desc.RangeId, d.Action, rec)
		}
		s.actions[strings.SplitN(rec.Reason, ":", 2)[0]]++
		applied++
	}
	s.rounds++
	return applied
}

func (s *sim) move(r *simRange, d Decision) {
	var rep *rspb.ReplicaDescriptor
	for _, rd := range r.desc.Replicas {
		if rd.NodeId == d.Node {
			s.t.Fatalf("r%d: move to n%d, which holds a replica", r.desc.RangeId, d.Node)
		}
		if rd.NodeId == d.From && rd.ReplicaId == d.ReplicaID {
			rep = rd
		}
	}
	if rep == nil {
		s.t.Fatalf("r%d: move of replica %d on n%d, which it does not have", r.desc.RangeId, d.ReplicaID, d.From)
	}
	if r.left[d.Node] {
		s.thrash++
	}
	r.left[d.From] = true
	rep.NodeId, rep.ReplicaId = d.Node, r.desc.NextReplicaId
	r.desc.NextReplicaId++
	s.node(d.From).Replicas--
	s.node(d.Node).Replicas++
	s.moves++
	if r.leaseholder == d.From {
		s.shiftLease(r, d.Node)
	}
}

func (s *sim) transfer(r *simRange, to uint64) {
	if r.gaveLease[to] {
		s.leaseThrash++
	}
	r.gaveLease[r.leaseholder] = true
	s.shiftLease(r, to)
	s.transfers++
}

func (s *sim) shiftLease(r *simRange, to uint64) {
	from := s.node(r.leaseholder)
	from.Leases--
	from.QPS -= r.qps
	s.node(to).Leases++
	s.node(to).QPS += r.qps
	r.leaseholder = to
}

// run steps until a round applies nothing (that round is counted); it
// fails after maxRounds.
func (s *sim) run(maxRounds int, leasesOnly bool) {
	s.t.Helper()
	for {
		if s.rounds >= maxRounds {
			s.t.Fatalf("no quiescence after %d rounds (%d moves, %d transfers): %s", s.rounds, s.moves, s.transfers, s.summary())
		}
		m, tr := s.moves, s.transfers
		n := s.step(leasesOnly)
		s.t.Logf("  round %d: %d replica moves, %d lease transfers", s.rounds, s.moves-m, s.transfers-tr)
		if n == 0 {
			return
		}
	}
}

// spread returns min, max and mean of f over the nodes.
func (s *sim) spread(f func(n *Node) float64) (lo, hi, mean float64) {
	lo, hi = f(&s.nodes[0]), f(&s.nodes[0])
	for i := range s.nodes {
		v := f(&s.nodes[i])
		lo, hi, mean = min(lo, v), max(hi, v), mean+v
	}
	return lo, hi, mean / float64(len(s.nodes))
}

func (s *sim) summary() string {
	var b strings.Builder
	for _, n := range s.nodes {
		fmt.Fprintf(&b, " n%d=%d/%d/%.0f", n.ID, n.Replicas, n.Leases, n.QPS)
	}
	return "replicas/leases/qps:" + b.String()
}

func (s *sim) actionList() string {
	var keys []string
	for k := range s.actions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, s.actions[k])
	}
	return strings.Join(parts, ", ")
}

// checkRegions fails unless every range keeps one voter per region.
func (s *sim) checkRegions() {
	s.t.Helper()
	for _, r := range s.ranges {
		seen := map[string]bool{}
		for _, rd := range r.desc.Replicas {
			seen[s.node(rd.NodeId).Locality[0].Value] = true
		}
		if len(seen) != 3 {
			s.t.Fatalf("r%d lost a region: %v", r.desc.RangeId, r.desc.Replicas)
		}
	}
}

// TestSimAddStores (issue 12 acceptance 2a): 1,000 ranges of 3 voters, one
// per region, on 9 stores in 3 regions × 3 zones, on random zones, with
// a random leaseholder and 1-20 QPS each (seed 1). First the scorer
// settles the initial placement; then 3 stores join (zone d of each
// region) and the scorer's actions are applied round by round until a
// round has none. Every store ends within 10 % of the mean replica count,
// every range keeps a voter per region, and no replica ever moves back to
// a store its range left (thrash 0).
func TestSimAddStores(t *testing.T) {
	s := newSim(t)
	for _, reg := range simRegions {
		for _, z := range []string{"a", "b", "c"} {
			s.addNode(reg, z)
		}
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 1000; i++ {
		var vs []uint64
		for reg := 0; reg < 3; reg++ {
			vs = append(vs, uint64(reg*3+rng.Intn(3)+1))
		}
		s.addRange(vs, vs[rng.Intn(3)], float64(1+rng.Intn(20)))
	}
	lo, hi, mean := s.spread(func(n *Node) float64 { return float64(n.Replicas) })
	t.Logf("9 stores, initial: replicas %.0f..%.0f (mean %.1f); %s", lo, hi, mean, s.summary())
	s.run(50, false)
	t.Logf("9 stores settled in %d rounds: %d moves, %d lease transfers (%s); thrash %d, lease thrash %d",
		s.rounds, s.moves, s.transfers, s.actionList(), s.thrash, s.leaseThrash)

	for _, reg := range simRegions {
		s.addNode(reg, "d")
	}
	s.rounds, s.moves, s.transfers, s.actions = 0, 0, 0, map[string]int{}
	s.run(100, false)
	lo, hi, mean = s.spread(func(n *Node) float64 { return float64(n.Replicas) })
	llo, lhi, lmean := s.spread(func(n *Node) float64 { return float64(n.Leases) })
	qlo, qhi, qmean := s.spread(func(n *Node) float64 { return n.QPS })
	t.Logf("3 stores added: quiescent after %d rounds (the last with no action): %d replica moves, %d lease transfers (%s)",
		s.rounds, s.moves, s.transfers, s.actionList())
	t.Logf("replicas %.0f..%.0f (mean %.1f, %+.1f%%..%+.1f%%); leases %.0f..%.0f (mean %.1f); qps %.0f..%.0f (mean %.0f); thrash %d, lease thrash %d",
		lo, hi, mean, 100*(lo/mean-1), 100*(hi/mean-1), llo, lhi, lmean, qlo, qhi, qmean, s.thrash, s.leaseThrash)
	t.Logf("final %s", s.summary())
	if lo < 0.9*mean || hi > 1.1*mean {
		t.Errorf("replica counts %.0f..%.0f not within 10%% of the mean %.1f", lo, hi, mean)
	}
	for _, id := range []uint64{10, 11, 12} {
		if s.node(id).Replicas == 0 || s.node(id).Leases == 0 {
			t.Errorf("n%d got no replica or no lease: %s", id, s.summary())
		}
	}
	if s.thrash != 0 {
		t.Errorf("thrash: %d replica moves went back to a store their range had left", s.thrash)
	}
	s.checkRegions()
}

// TestSimHotStores (issue 12 acceptance 2b): 1,000 ranges on 9 stores,
// counts balanced (333 or 334 each). 100 "hot" ranges have all three
// voters on n1, n4 and n7 (zone a of each region); their QPS is set so
// that n1, n4 and n7 serve 80 % of the cluster's QPS. The scorer's
// actions are applied round by round until none: leases move first (a
// hot leaseholder gives its lease to a voter that stays below the hot
// line), and a hot range whose voters are all hot moves a voter to a cool
// store, the lease following in a later round. At the end no store serves
// more than 1.25× the mean QPS, and no replica went back (thrash 0).
func TestSimHotStores(t *testing.T) {
	s := newSim(t)
	for _, reg := range simRegions {
		for _, z := range []string{"a", "b", "c"} {
			s.addNode(reg, z)
		}
	}
	rng := rand.New(rand.NewSource(2))
	const hotRanges, coldRanges = 100, 900
	type placed struct {
		vs []uint64
		lh uint64
	}
	var all []placed
	for i := 0; i < hotRanges; i++ {
		vs := []uint64{1, 4, 7}
		all = append(all, placed{vs: vs, lh: vs[i%3]})
	}
	// The cold ranges fill every store to 333 or 334: per region, zone a
	// takes what the hot ranges left of its share.
	zones := make([][]uint64, 3)
	for reg := 0; reg < 3; reg++ {
		base := uint64(reg * 3)
		for j := 0; j < 333-hotRanges; j++ {
			zones[reg] = append(zones[reg], base+1)
		}
		for j := 0; j < 333; j++ {
			zones[reg] = append(zones[reg], base+2)
		}
		for j := 0; j < 334; j++ {
			zones[reg] = append(zones[reg], base+3)
		}
		rng.Shuffle(len(zones[reg]), func(i, j int) { zones[reg][i], zones[reg][j] = zones[reg][j], zones[reg][i] })
	}
	for i := 0; i < coldRanges; i++ {
		vs := []uint64{zones[0][i], zones[1][i], zones[2][i]}
		all = append(all, placed{vs: vs, lh: vs[rng.Intn(3)]})
	}
	// Cold ranges serve 10 QPS; the hot ones what brings n1, n4 and n7 to
	// 80 %: (coldOnHot + hot·q) = 0.8·(cold + hot·q).
	coldOnHot, cold := 0.0, 0.0
	for _, p := range all[hotRanges:] {
		cold += 10
		if p.lh == 1 || p.lh == 4 || p.lh == 7 {
			coldOnHot += 10
		}
	}
	q := (0.8*cold - coldOnHot) / (hotRanges * 0.2)
	for i, p := range all {
		qps := 10.0
		if i < hotRanges {
			qps = q
		}
		s.addRange(p.vs, p.lh, qps)
	}
	total := 0.0
	for _, n := range s.nodes {
		total += n.QPS
	}
	hotShare := (s.node(1).QPS + s.node(4).QPS + s.node(7).QPS) / total
	_, hi, mean := s.spread(func(n *Node) float64 { return n.QPS })
	t.Logf("initial: hot ranges %.1f qps each, n1+n4+n7 serve %.1f%% of %.0f qps; max store %.0f = %.2f× the mean %.0f; %s",
		q, 100*hotShare, total, hi, hi/mean, mean, s.summary())
	if hotShare < 0.799 || hotShare > 0.801 {
		t.Fatalf("setup: hot share %.3f, want 0.80", hotShare)
	}

	// Leases first: only the scorer's lease transfers, until none.
	s.run(50, true)
	_, hi, mean = s.spread(func(n *Node) float64 { return n.QPS })
	t.Logf("leases: quiescent after %d rounds: %d lease transfers (%s); max store %.0f = %.2f× the mean; %s",
		s.rounds, s.transfers, s.actionList(), hi, hi/mean, s.summary())
	leaseRounds, leaseTransfers := s.rounds, s.transfers
	// Then every action, until none.
	s.rounds, s.transfers, s.actions = 0, 0, map[string]int{}
	s.run(50, false)
	lo, hi, mean := s.spread(func(n *Node) float64 { return n.QPS })
	clo, chi, cmean := s.spread(func(n *Node) float64 { return float64(n.Replicas) })
	t.Logf("then replicas: quiescent after %d more rounds: %d replica moves, %d lease transfers (%s); in all %d rounds, %d moves, %d transfers; thrash %d, lease thrash %d",
		s.rounds, s.moves, s.transfers, s.actionList(), leaseRounds+s.rounds, s.moves, leaseTransfers+s.transfers, s.thrash, s.leaseThrash)
	t.Logf("qps %.0f..%.0f, max %.2f× the mean %.0f; replicas %.0f..%.0f (mean %.1f); n1+n4+n7 now serve %.1f%%",
		lo, hi, hi/mean, mean, clo, chi, cmean, 100*(s.node(1).QPS+s.node(4).QPS+s.node(7).QPS)/total)
	t.Logf("final %s", s.summary())
	if hi > 1.25*mean {
		t.Errorf("a store serves %.0f qps, above 1.25× the mean %.0f", hi, mean)
	}
	if s.moves == 0 || leaseTransfers == 0 {
		t.Errorf("want both lease transfers and replica moves: %d, %d", leaseTransfers, s.moves)
	}
	if s.thrash != 0 {
		t.Errorf("thrash: %d replica moves went back to a store their range had left", s.thrash)
	}
	if clo < 0.9*cmean || chi > 1.1*cmean {
		t.Errorf("replica counts %.0f..%.0f not within 10%% of the mean %.1f", clo, chi, cmean)
	}
	s.checkRegions()
}
