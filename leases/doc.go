// Package leases holds the time and liveness machinery of rangestore
// (DESIGN.md §5).
//
//   - Clock: a hybrid logical clock over an injectable physical clock (with
//     NewClockFrom, a timeutil.TimeSource, whose timers its waits and the
//     liveness heartbeat loop use too) with a configured maximum offset
//     (default 500 ms). Timestamps it hands out are
//     strictly increasing and exceed every timestamp observed via Update.
//     Update refuses (counts and logs) a timestamp more than the max offset
//     ahead of the physical clock, so no client or peer can push the clock,
//     and the liveness and lease expirations measured by it, into the
//     future; WaitFor and UpdateWait wait for the physical clock instead.
//   - Liveness: each node's record (epoch, expiration) in the system range,
//     extended every HeartbeatInterval by a conditional put on the exact
//     bytes last seen; IncrementEpoch moves a node whose record has expired
//     (by the caller's clock) to its next epoch, ending all its epoch leases.
//     The record also carries the node's membership (active,
//     decommissioning, decommissioned): SetMembership changes it by the same
//     conditional put, from any node, and heartbeats keep it. TakesLeases
//     says whether a lease may go to a node (not draining, active).
//   - Status: the pure validity rule for leases. An expiration lease is
//     valid until expiration - max offset, in stasis until expiration, then
//     expired; an epoch lease the same against its holder's liveness
//     expiration, and expired as soon as the holder's epoch moved past it.
//
// Invariant: a node stops serving under a lease max offset before any other
// node can consider it expired, so two nodes never serve the same range at
// overlapping timestamps.
package leases
