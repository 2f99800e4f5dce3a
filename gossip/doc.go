// Package gossip spreads each node's store descriptor (locality,
// capacity, used bytes, replica and lease counts, load) to every other
// node, over hashicorp/memberlist (SWIM failure detection plus gossip).
// The allocator reads the descriptors; nothing here decides anything.
//
// A whiteboard with a TTL: a node publishes its descriptor as its
// memberlist metadata and publishes it again, with a higher sequence
// number and a new publication time, every Config.Interval. Receivers
// keep, per node ID, the newest descriptor they heard and when they heard
// it (on their own clock: publication times of other clocks are only
// shown). An entry is gone:
//   - at once when its node leaves cleanly (Close: memberlist Leave);
//   - when memberlist declares its node dead (SWIM probes and suspicion,
//     a few seconds);
//   - when it was not heard again within Config.TTL (a backstop: a node
//     that stays a member but stopped publishing, e.g. a wedged process).
//
// Read replicas (issue 13): a read replica's descriptor (read_replica
// set, with its gRPC address and applied-index lag) is its entry on the
// discovery whiteboard (Whiteboard). memberlist does not tell its
// callbacks whether a member left or died, so Close publishes a last
// descriptor marked leaving and sends every member a leave message over
// TCP (the update alone can be overtaken by the leave) before it leaves:
// receivers drop the entry at once, and the member's NotifyLeave removes
// rather than hides. A read replica's entry whose member memberlist declares dead (or
// that was not heard within the TTL) is hidden instead (Stores leaves it
// out, Whiteboard marks it Hidden) and garbage-collected
// Config.ReadReplicaTTL (60 s) after it was last heard; a new publication
// of the node brings it back.
//
// Names: memberlist names each member "n<ID>-<incarnation>", the
// incarnation being random per Start, so a restarted node (a new port, as
// the gossip port is picked at start by default) never conflicts with the
// dead entry of its previous process; by node ID, the newest descriptor
// wins.
//
// Joining: Join takes any member's gossip address; the node package finds
// them through its peers' NodeInfo. memberlist's event callbacks only
// update the map under a mutex, so they never block its loops.
//
// Ownership: Start starts memberlist's goroutines and the publisher; Close
// stops the publisher, leaves (bounded) and shuts memberlist down, and
// returns once the publisher has exited.
package gossip
