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
// Encryption (issue 15): with Config.TLS set, gossip travels over mutual
// TLS with the node certificates, as gRPC and Raft do, through
// TLSTransport, a memberlist transport: one TCP listener and no UDP at
// all. memberlist's own encryption is a shared key, which authenticates
// no node; here every connection is a TLS handshake in which both sides
// present a certificate of the trusted CA (and pass TLSConfig.VerifyPeer,
// e.g. "a node certificate"), so a process without one can neither join
// nor inject a packet. After the handshake the dialer writes one byte, the
// connection's kind:
//   - a stream (memberlist's push/pull, reliable messages, fallback
//     pings) is handed to memberlist as is;
//   - packets (memberlist's UDP messages: probes, acks, gossip) to a peer
//     share one connection per peer address, dialed on the first packet
//     and again after an error; its header is the sender's advertised
//     gossip address, which the receiver gives memberlist as the origin
//     (memberlist answers there, not to the ephemeral port); each packet
//     is length-prefixed and at most MaxPacketBytes (64 KiB, memberlist's
//     UDP buffer): a longer one closes the connection. Sending only
//     queues (bounded, per peer), so a slow or dead peer never blocks
//     memberlist's loops; a full queue drops, as UDP may.
//
// The TLS configs are functions called per connection, so a certificate
// reload applies to the next connection. A handshake, or a packet
// connection's header, that does not complete within HandshakeTimeout
// closes the connection; a plaintext client is refused at the handshake.
// The bind address must be a specific IP (peers dial the advertised
// address and check the node certificate against it). Config.TLS unset is
// the insecure mode: memberlist's plaintext UDP and TCP, unchanged.
//
// Ownership: Start starts memberlist's goroutines and the publisher; Close
// stops the publisher, leaves (bounded) and shuts memberlist down, and
// returns once the publisher has exited. With TLS, memberlist's Shutdown
// shuts the transport down: it closes its listener and every connection it
// owns (accepted ones until handed to memberlist as a stream, its packet
// connections both ways) and waits for its goroutines (the accept loop,
// one per accepted connection, one sender per peer, which also exits after
// 30 s without packets); received packet connections idle 90 s are closed.
package gossip
