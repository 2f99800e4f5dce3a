// Package allocator decides where a range's replicas should be: which
// node gets a new replica, which replica goes, and which range to repair
// first. It is pure: the caller passes node and range views in and gets a
// decision with a human-readable reason out. No I/O, no goroutines, no
// clock (times are arguments), no randomness; the same input always gives
// the same output, and ties go to the lower node ID. The replicate queue
// (rebalance/) gathers the views from liveness, the node directory and
// meta, and carries the decision out through the range's Raft log.
//
// Two entry points decide: Decide, the repair rule of the membership work
// with count-based rebalancing (the replicate queue uses it today), and
// Score, the scorer of issue 12, which takes a zone config and load too,
// reuses Decide for repairs and returns one action with every candidate
// scored criterion by criterion (see "Scorer" below).
//
// Inputs:
//   - Node: ID, locality tiers (widest first, e.g. region=us,zone=a),
//     Liveness, Membership, replica and lease counts. The caller
//     classifies liveness with ClassifyLiveness from the liveness record's
//     expiration, now and --time-until-store-dead: live before the
//     expiration, suspect for the time until store dead after it, dead
//     from then on. NodeView builds a Node from a node descriptor and
//     liveness record that way, its Membership by MembershipOf (the
//     record's membership, then its draining flag; no record: suspect).
//   - Range: the descriptor (replicas with node, replica ID and type), the
//     replication factor (odd, at least 1: ValidateFactor) and the
//     leaseholder's node if known.
//
// What a replica's node means for it:
//   - live or draining: kept (a draining node takes no new replica or
//     lease, but its replicas stay);
//   - suspect: kept and counted for the quorum, not replaced (the node may
//     be restarting), but it takes nothing new and is the first voter
//     removed when there are too many;
//   - decommissioning: counted for the quorum but replaced, then removed;
//   - dead or decommissioned: lost (not counted for the quorum), replaced,
//     then removed.
//
// Placement (Place): a new voter goes to a live, active node that holds
// no replica of the range. Candidates are ranked by locality diversity
// against the voters that stay, tiers compared as prefixes from the
// widest: a node that adds a tier value no staying voter has beats one
// that adds none, adding it at a wider tier beats a narrower one, and
// sharing the closest tiers with fewer voters beats sharing them with
// more. Then the fewest replicas, then the lowest node ID. A dead voter's
// locality does not count as used, so its replacement goes to its region
// when a node there can take it.
//
// Repair (Decide) returns one action per range, in this order:
//  1. unavailable: fewer than a majority of the voters are on nodes that
//     are not dead. Raft cannot change the membership without a quorum, so
//     nothing is done; the queue counts the range.
//  2. add-voter: fewer voters are kept than the factor. A leftover
//     non-voter on a live active node is promoted when it is as diverse as
//     the best new placement (the half-done change finishes), else the
//     voter goes where Place says; no-target if no node can take it.
//  3. remove-voter: with the factor met, a voter on a dead node, then one
//     on a decommissioning node, then one beyond the factor (after the
//     factor was lowered): the worst goes, suspect first, then the least
//     diverse, then not the leaseholder, then the most replicas and
//     leases. Up-replication always comes first, so the last voter is
//     never removed and a removal never drops below the factor.
//  4. remove-non-voter: every non-voter off a read-replica node is the
//     leftover of a half-done change (the one on a dead node first; Decide
//     knows no zone non-voters); a read replica's non-voter is not
//     Decide's (readReplicas).
//  5. rebalance: the range is fully and healthily replicated (factor met,
//     every voter on a live active node, no non-voter) and one of its
//     voters is on a node holding too many replicas (balance.go): the
//     mean is over the live active nodes; a voter moves from an overfull
//     node (more than mean + max(5 % of the mean, 2) replicas) to one
//     below the mean, or from one above the mean to an underfull node
//     (fewer than mean − max(5 % of the mean, 2)), never to a node that
//     makes the range less diverse (Place's ranking picks the target).
//     The source holds at least two more replicas than the target, so
//     every move lowers the sum of the squared counts: moves terminate
//     and never ping-pong. Decision.Node is the target, ReplicaID the
//     voter that moves, From its node. Priority 1, below every repair.
//  6. none.
//
// Priority orders the queue, the highest first, by how close the range
// is to losing its quorum, then by how many voters it misses:
//
//	1000·(5 − min(tolerated, 4)) + 100·min(missing, 9) + rank
//
// where tolerated is the voters on nodes that are not dead minus the
// majority of the voters, missing is factor minus voters kept, and rank
// orders the actions (add 40, remove a lost voter 30, a decommissioning
// one 20, an extra one 10, a non-voter 5). A rebalance has priority 1;
// ranges with nothing to do (none, no-target, unavailable) have 0.
//
// Zone configs (zone.go): ZoneConfig is a plain value mapping field for
// field onto a proto message (num_replicas, num_voters, num_non_voters,
// constraints, voter_constraints, non_voter_constraints,
// lease_preferences, range_min_bytes, range_max_bytes, gc_ttl; pointers
// and ...Set flags mark what a span sets, the rest is inherited:
// InheritFrom, Resolve from DefaultZoneConfig: 3 replicas, 16-64 MiB,
// 4 h). The counts obey num_replicas = num_voters + num_non_voters: a
// span sets any two (the third follows: Replicas, Voters, NonVoters) or
// all three consistently; num_non_voters alone adds to the inherited
// voters; setting none inherits all three. non_voter_constraints bind the
// zone's non-voters (on top of constraints) as voter_constraints bind the
// voters; the two non-voter fields also say which ranges the read-replica
// nodes hold non-voters of (see "Read replicas"). ParseZoneConfig reads
// the `zone set` flags: constraints
// as "+region=eu,-zone=a", "[+region=eu]" or per replica count
// `{"+region=eu": 2}` (required constraints only), lease preferences as
// "[+region=us]" or "[[+region=us,+zone=a], [+region=us]]"; only
// key=value locality tiers, no bare attributes. Validate refuses, naming
// the field, num_replicas < 1, num_voters < 1 or above num_replicas,
// num_non_voters < 0 or disagreeing with the other two or leaving no
// voter, an even voter count (as ValidateFactor), malformed or contradictory
// constraints, per-replica counts above the replicas, an empty lease
// preference, range_max_bytes under 64 KiB, min ≥ max, gc_ttl < 1 s.
// Satisfiable lists "constraint not satisfiable: ..." for a valid config
// the live nodes (active or draining) cannot meet; such a config is
// accepted, and the scorer reports it per range and places nothing on a
// node that breaks a constraint.
//
// Scorer (Score, scorer.go): input a range descriptor, its resolved zone
// config, the leaseholder, the range's QPS and request localities, and
// the store views (Node: also CapacityBytes, UsedBytes, QPS); output a
// Recommendation: a Decision (Decide's fields, with the actions
// add-non-voter, replace-voter, replace-non-voter, rebalance-non-voter
// and transfer-lease added) and an Explanation: the checks made in order
// with what each found, a replicas table (every node × valid,
// constraints, disk, diversity, ranges, qps, and a verdict) and a lease
// table (every voter × valid, preference, workload, leases, qps), which
// String renders for `range explain`. The checks, the first that acts
// wins:
//  1. voter repair exactly as Decide (unavailable, add, replace = add then
//     remove a dead/decommissioned/decommissioning voter, remove), the
//     target ranked valid → constraints → disk not full (≤ 95 % used) →
//     diversity → fewer replicas → lower QPS → lower ID; a non-voter is
//     promoted only if it meets the voter constraints;
//  2. non-voter repair to num_replicas − num_voters (priorities 900/800/
//     700, below every voter repair; targets meet non_voter_constraints);
//     then the read replicas' non-voters; with num_non_voters set and
//     read replicas about, both at once, read replicas first
//     (see "Read replicas");
//  3. a replica breaking a constraint (or a per-replica count short) moves
//     where fewer are unmet (priority 4); no move: the unsatisfiable
//     lines are reported and the checks go on;
//  4. a replica on a disk more than 95 % full moves (priority 3);
//  5. the lease moves to a live active voter of an earlier lease
//     preference (priority 2);
//  6. a voter moves to a node that makes the range strictly more diverse,
//     even a fuller one (priority 1);
//  7. range counts: balance.go's rule, 5 % and at least 2 replicas;
//  8. load: a leaseholder above the hot line, max(1.25× the mean QPS, the
//     mean + 100 (MinQPSAboveMean)), transfers the lease to the coolest
//     voter that stays at or below that line and below the leaseholder
//     and is not farther from the workload by the margin (follow the
//     workload would move it back); else
//  9. a voter moves to a cool node no farther from the workload (the
//     leaseholder's own first, its lease going along; neither store may
//     leave the count thresholds);
//  10. follow the workload: the lease goes to the voter whose locality
//     matches the request localities best (share of tiers, request
//     weighted, 0..1) by at least 0.25 more than the leaseholder's;
//  11. lease counts: from over (mean + max(5 %, 5 leases)) to below the
//     mean, or from above the mean to under, never to a voter farther
//     from the workload by the margin nor to a store the range's QPS
//     would take above the mean QPS;
//  12. none.
//
// The figures above are the defaults (DefaultThresholds); they are
// settings: ScoreInput.Thresholds (the zero value means the defaults)
// changes the replica, lease and QPS margins and the workload margin.
// Thresholds.Validate refuses negative, NaN and infinite values, and
// minimum margins below 1 replica or lease, which would let a move undo
// the previous one (with a margin of at least one, a move narrows the
// spread of the counts by two, so moves terminate).
//
// Moves (3-9) wait while a replica is on a node that is not live and
// active; lease checks still run. Only voters move for diversity, counts
// and load. Moving the leaseholder's voter takes the lease to the target,
// which (in checks 4 and 6-9) must then meet the lease preferences as
// well and not turn hot.
// Every move keeps or improves what the earlier checks looked at (no
// less diverse target, no more unmet constraints, no full disk), and
// every balance move lowers a spread (count: source at least 2 above the
// target; QPS: target + range below the source), so applying actions one
// at a time terminates (sim_test.go: no replica or lease goes back).
//
// Read replicas (issue 13; Node.ReadReplica, from the node descriptor):
// a read-replica node never takes a voter or a lease (canTakeReplica is
// false for it, so placement, promotion, balance means and targets all
// leave it out; a voter found on one is "leaving": replaced elsewhere,
// then removed). Which ranges its non-voters hold is the range's zone's
// to say, by what the resolved config sets (readReplicaRule):
//   - neither num_non_voters nor non_voter_constraints (rrEvery, the
//     default): a range wants one non-voter on each live active
//     read-replica node (disk not full) in addition to its zone's
//     num_replicas (whose non-voters, when num_replicas exceeds
//     num_voters, stay on ordinary nodes). readReplicaRepair, after the
//     zone's non-voters, adds the missing one (the lowest node ID first,
//     priority 800) and removes the non-voter of a read replica that is
//     dead (past the time-until-store-dead), decommissioned or
//     decommissioning (priority 700); a suspect one keeps its non-voter.
//     Nothing is replaced: every other live read replica holds its own
//     already. A zone non-voter with no node to go to (no-target) does
//     not hold up the read replicas' (they are not the zone's).
//   - non_voter_constraints set (not empty), num_non_voters not: the same,
//     but only for the read replicas they select: those meeting the
//     constraints of a non-voter (constraints and non_voter_constraints
//     that apply to every replica) and, when non_voter_constraints count
//     replicas ({"+region=eu": 1}), one of the counted sets. A read
//     replica in region=eu holds the spans constrained to region=eu; one
//     that is not selected (any more) loses its non-voter (priority 700,
//     after the dead ones). The zone's own non-voters (num_replicas above
//     num_voters) still go on ordinary nodes, first.
//   - num_non_voters N set (anywhere up the inheritance chain; rrCounted):
//     the range has N non-voters in all (countedNonVoterRepair replaces
//     nonVoterRepair), on read-replica nodes first: those that can take
//     one and meet the non-voter constraints, ranked as any target
//     (constraints, diversity against the replicas kept, replicas, QPS,
//     node ID); on ordinary nodes (nonVoterRepair's ranking) only when no
//     read replica can take one. While fewer than N are kept it adds one
//     (priority 800, a replace at 900 when one is lost); then it removes a
//     lost or leaving one, a read replica's that breaks the constraints,
//     one beyond N (an ordinary node's first, else the least diverse), all
//     at 700; then an ordinary node's moves to a read replica that can
//     take it (rebalance-non-voter, priority 5). N = 0: read replicas
//     hold none of the span. The read replicas' non-voters kept under it
//     count with the zone's for the constraints (zoneReadReps). With no
//     read-replica node in the views and none on the range, num_non_voters
//     places and explains as it always did.
//
// The reason and the check lines name the rule ("every live read replica
// holds one of every range", "non_voter_constraints [...] select k of
// n", "num_non_voters N: read replicas first"). Outside rrCounted these
// non-voters are not the zone's: replicas() leaves them out (no
// constraint, move or Decide removal applies to them). Satisfiable counts
// the read replicas for the non-voters and replicas of an rrCounted zone,
// never for its voters (elsewhere they count as any node, as before).
// testdata/read_replica and testdata/read_replica_zone are the goldens;
// TestReadReplicaZoneRulesConverge plays the actions on random clusters
// to each rule's end state.
//
// Decommissioning (CanDecommission, Unplaceable): refused when fewer
// nodes that can hold replicas (live, active or draining) would remain
// than the factor; Unplaceable names each range that could not get its
// voters, and each that lost its quorum while holding a replica on a
// leaving node.
//
// Bad input (a bad factor, a descriptor with no voter, two replicas on one
// node or a replica on a node without a view, node views with a zero or
// repeated ID, an unknown node to decommission) is an error wrapping
// ErrInvalid that names the problem.
//
// Tests: testdata/ holds golden scripts (allocator_test.go and
// scorer_test.go describe the syntax; testdata/score and testdata/zone
// are the scorer's and the zone configs'); go test ./allocator/ -run
// TestAllocatorScripts -rewrite regenerates the expected output.
// sim_test.go simulates the scorer on 1,000 ranges with no Raft.
package allocator
