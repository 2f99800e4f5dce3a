// Package allocator decides where a range's replicas should be: which
// node gets a new replica, which replica goes, and which range to repair
// first. It is pure: the caller passes node and range views in and gets a
// decision with a human-readable reason out. No I/O, no goroutines, no
// clock (times are arguments), no randomness; the same input always gives
// the same output, and ties go to the lower node ID. The replicate queue
// (rebalance/) gathers the views from liveness, the node directory and
// meta, and carries the decision out through the range's Raft log.
//
// This is the first, simple placement rule of the membership work, with
// count-based rebalancing; the full scorer (zone configs, constraints,
// disk fullness, load balance) grows from it.
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
//  4. remove-non-voter: until read replicas exist every non-voter is the
//     leftover of a half-done change (the one on a dead node first). Read
//     replicas will pass the non-voters a range keeps; this step then
//     removes only the others.
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
// Tests: testdata/ holds golden scripts (allocator_test.go describes the
// syntax); go test ./allocator/ -run TestAllocatorScripts -rewrite
// regenerates the expected output.
package allocator
