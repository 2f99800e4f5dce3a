// Package rebalance is the replicate queue: it keeps every range at the
// replication factor, repairing ranges that lost replicas to dead nodes,
// moving replicas off decommissioning nodes, adding or removing voters
// when the factor setting changes or nodes join, and, once a range is
// fully replicated, moving voters from nodes holding too many replicas to
// nodes holding too few (allocator.ActionRebalance: count-based, so that
// nodes that join take their share), and moving voters for locality
// diversity and off full disks. The allocator's scorer (allocator.Score,
// with the range's zone config, or the default one at the replication
// factor setting, and the load figures below) decides; this package orders
// the decisions into a plan and carries the plan out through the node's
// replica change and lease transfer paths. It carries out voter changes,
// non-voter changes (add, replace, rebalance and remove a non-voter: a
// zone's num_replicas above num_voters, and a read-replica node's; added
// through ranges.Store.AddNonVoter as standing non-voters, never
// promoted) and every lease transfer the scorer recommends (lease
// preferences, load, follow-the-workload, lease counts).
//
// Load and follow-the-workload: the gateway that routes a batch stamps its
// node ID on it (RangeRequest.gateway_node_id); the leaseholder keeps per
// gateway an exponentially weighted moving average of requests/s
// (ranges/reqload, 10 s time constant, exposed as RangeInfo.request_qps
// and request_sources). A pass gives the scorer the range's QPS, its
// sources mapped to the gateways' localities (Requests: gateway 0 or not
// in the directory is left out) and each node's QPS as gossiped (the sum
// over its leases), and the node's thresholds (Input.Thresholds, from
// node.Config.Thresholds: rangestore start --range-rebalance-threshold
// and the like). The scorer's thresholds keep it from thrashing: by
// default a store is hot above max(1.25× the mean QPS, the mean + 100); the lease
// follows the workload only to a voter matching it 0.25 better; load and
// lease counts never move a lease (or a leaseholder's voter) to a node
// matching the workload 0.25 worse. Rate limits: one lease transfer per
// range per MinLeaseTransferInterval (1 s, remembered by the queue, also
// after a failed transfer), LeaseTransfersPerPass (8) balancing transfers
// per pass of a node, and no balancing transfer while a replica change of
// the range is in flight here. Repairs go first in the snapshot budget
// (snapshotBudget): a replica move that is not a repair (rebalance,
// constraint or disk move; each sends a snapshot) waits while any range of
// the cluster needs a repair, or while every snapshot send slot of the
// node is taken (ranges.Store.SnapshotSendSlotsFull).
//
// Who acts: every node runs one queue (owned by its store's task group,
// stopped when the store closes), and it acts only on the ranges whose
// lease it holds, valid now. So each range is handled by one node at a
// time. A lease that moves mid-pass moves the range to another queue: a
// step is skipped unless, just before it runs, the local replica still
// holds the lease and still has the descriptor generation the plan was
// made from. A node that is draining or not initialized does nothing.
//
// A pass (Queue.Pass), every Config.Interval (10 s by default) and on
// Kick (the node kicks it when the factor setting changes):
//  1. Gather (the node's I/O) reads the views: every directory node with
//     its liveness (allocator.ClassifyLiveness with the
//     time-until-store-dead) and membership (Liveness.membership, then the
//     draining flag), every range descriptor of meta with its leaseholder
//     where this node knows it, and the replication factor setting.
//  2. MakePlan (pure, golden-tested) counts each node's replicas (from
//     the descriptors) and leases (approximate: from the leases this
//     node's replicas know; a range without a replica here counts for no
//     node), calls the scorer for every range, and orders the
//     ranges this node acts on by decision priority (the ranges closest to
//     losing their quorum, then those missing the most voters, first),
//     then by range ID, and re-decides each in that order against counts
//     that include the earlier steps, so that one pass spreads its
//     additions over the candidate nodes. A range with fewer than a
//     majority of its voters on live nodes waits: the allocator counts
//     suspect voters for the quorum (their nodes may come back), but a
//     change could not commit while they are down and would hold up the
//     queue until the step timed out (DefaultStepTimeout).
//     Rebalances come after every repair (priority 1) and are capped at
//     RebalancesPerPass (one) per pass of each node: the counts go stale
//     as other nodes' queues move replicas too, so each node moves one
//     and decides again from fresh views.
//  3. A lease transfer step is one TransferLease call to the target; its
//     lease and QPS count on the target for the steps after it.
//  4. Each other step runs one ChangeReplicas call (add the voter, promoting a
//     leftover non-voter; or remove a voter or non-voter, the lease moved
//     away first), or for a non-voter step one AddNonVoter call (then, for
//     a rebalance-non-voter, the removal of the moving one): one replica
//     change per range per pass, one range at a time. Non-voter additions
//     send a snapshot like voter additions: they wait in the snapshot
//     budget while a voter repair is pending or the send slots are full
//     (their priorities, 700-900, are below every voter repair's), and a
//     rebalance-non-voter counts against RebalancesPerPass. A repair is thus an add in one pass and the removal of the
//     dead voter in a later one. A rebalance is one call that adds the
//     target's voter and then removes the moving one (the lease moved
//     away first if it holds it); if it stops between the two, the range
//     is over-replicated and the next pass removes a voter as for a
//     lowered factor. A failed step is logged and counted; the
//     next pass decides again from fresh views.
//
// Never acted on: a range that lost its quorum (Raft cannot change its
// membership; counted unavailable), one with no target for a needed
// voter, and one the node marks fixed (RangeView.Fixed; counted, never
// changed). The meta range is acted on like any other.
//
// Gauges: rangestore_ranges_underreplicated and
// rangestore_ranges_unavailable are set by the node with the lowest ID
// that is live in its own view, over every range; every other node sets
// them to 0, so the sum over the nodes counts each range once (two nodes
// may both report for a pass while their views of liveness differ).
// rangestore_replicate_queue_actions_total{action,result} counts steps
// (result ok, error, or skipped), rangestore_replicate_queue_passes_total
// passes.
//
// The replication factor setting (settings.go): odd, 1 to 9
// (ValidateFactor), stored as a decimal at keys.ReplicationFactorKey;
// nothing stored reads as DefaultReplicationFactor (3).
//
// Tests: testdata/plan.json and plan.golden (go test ./rebalance/ -run
// TestMakePlan -rewrite regenerates the golden file); thrash_test.go
// (rounds of every node's plan with load inputs: no range returns to a
// placement it left); the queue against real clusters is tested in
// node/replicatequeue_test.go and node/workload_test.go
// (TestFollowTheWorkload).
package rebalance
