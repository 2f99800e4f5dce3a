// Package node assembles a rangestore node from its parts — Pebble engine
// (kv), Store (ranges), router and gRPC services (gateway), HTTP metrics —
// and bootstraps clusters (init). It also provides TestCluster, an
// in-process multi-node cluster on loopback used by tests, `demo` and
// benchmarks.
//
// Bootstrap: `init` on one node collects the descriptors of itself and its
// join list, numbers the nodes by address, lays out the meta range, the
// system range and the initial user ranges, and sends every node the same
// BootstrapRequest. Each node writes its share (cluster record, descriptors,
// replica records, initial meta and node records) in one synced batch and
// starts its replicas; the request is idempotent per cluster ID. Init also
// writes a directory record per node (keys.NodeKey) and the node-ID counter
// (keys.NodeIDGeneratorKey) at the highest initial node ID, and the
// replication factor setting (keys.ReplicationFactorKey; init's
// replication_factor, 3 by default, odd, 1 to 9). The initial ranges get
// min(factor, nodes) voters; a cluster with no setting stored (from before
// it, or bootstrapped without one) reads as 3. Cluster settings
// (settings.go, Admin SetClusterSetting): closed_timestamp_target
// (keys.ClosedTimestampTargetKey, a duration) is read by every node's loop
// each nodeRefreshInterval and applied to its store; absent, the node's
// Config.ClosedTimestampTarget holds.
//
// Replicate queue (replicate.go): every node runs one (package rebalance)
// in its store's task group, every ReplicateQueueInterval (10 s; tests
// pass their own, TestCluster none unless asked). The node supplies its
// views: directory nodes with liveness classified at its clock with the
// time-until-store-dead (no liveness record: suspect), membership from
// Liveness.membership then the draining flag, every meta descriptor with
// the leases its own replicas know, the factor setting; and carries steps
// out through ranges.Store.ChangeReplicas, the same path as the Admin
// ChangeReplicas RPC (non-voter steps through ranges.Store.AddNonVoter). SetReplicationFactor (Admin RPC, CLI cluster
// set-replicas) validates and writes the setting and kicks the local
// queue; a factor above the live active nodes is accepted.
//
// Node directory: node descriptors (ID, gRPC, Raft and HTTP addresses,
// locality) live in the system range. Each node caches the directory in its
// cluster record (persisted, so a restart knows its peers before it can
// read the system range); the node's loop refreshes it every second, and
// at once when the router looks up a node ID it does not know. The router
// resolves nodes through it (NodeAddress; NodeLocality orders follower
// reads nearest first), the store finds peers' Raft
// addresses in it, and the Admin API lists it (Nodes, NodeStatus: liveness
// judged by decideNodeState, counts asked of each node). A cluster from
// before joins (no counter) gets the counter, at its highest node ID, and
// the missing directory records from the cluster record once
// (ensureNodeCounter, at each node's start and before every join).
//
// Join protocol (join.go): a node started with an empty store and a join
// list tries, every second, each listed node: NodeInfo says whether it
// belongs to a cluster (if none does, the node keeps waiting for init, as
// before); the first that does gets the Internal Join RPC with the node's
// descriptor and its store ID, a random ID generated and persisted before
// the first try. The answering node
//  1. returns the ID of the store's join record (keys.NodeJoinKey) if
//     there is one: a retry whose answer was lost gets the same ID;
//  2. refuses an address of a live directory node (AlreadyExists) or of one
//     that never wrote a liveness record (FailedPrecondition: an initial
//     node awaiting init's bootstrap, which so never joins instead);
//  3. increments the node-ID counter through the KV path (the ID must be
//     above every directory node's, else the counter was set back) and
//     writes the join record with a conditional put (a concurrent duplicate
//     that loses takes the winner's ID; its own stays unused);
//  4. writes the node's directory record and answers with the cluster
//     record to persist: cluster ID, the new node ID, its directory, the
//     meta range.
//
// The new node persists that record (ranges.Store.JoinCluster) and is a
// member from then on: its liveness heartbeats write its record, and it
// serves with no replica. A restart with its store just restarts (the
// record holds its ID). A store of one cluster started with a join list of
// another is refused at start, naming both cluster IDs (checkJoinClusters;
// unreachable join addresses are skipped).
//
// Drain, decommission, recommission (decommission.go): DrainNode asks a
// node (Internal.Drain) to run the drain of a graceful stop without
// stopping. A decommission is a conditional update of the target's
// liveness record (membership ACTIVE -> DECOMMISSIONING -> DECOMMISSIONED,
// recommission back to ACTIVE before the end), made by whichever node
// serves the request, so the target may be down; the per-node rule is the
// pure decideMembership (testdata/membership_decision.*), the replication
// factor check the allocator's CanDecommission and Unplaceable over the
// directory, liveness records and meta records. Every refusal is found
// before anything is written. The replicate queue moves the replicas;
// DECOMMISSIONED is written only once the meta records list none on the
// node. Each node's loop follows its own membership
// (watchOwnMembership): decommissioning or decommissioned it drains and
// takes no lease (ranges refuses new replicas on it); decommissioned, it
// sits idle, not ready, and logs once that it must join again with an
// empty store; recommissioned, it takes leases again.
//
// Read replicas (issue 13; Config.ReadReplica, rangestore start
// --read-replica): the node joins with read_replica set in its descriptor,
// which the directory record and every cluster record keep; the role is
// for the node's lifetime (ReadReplica: the flag or the record). Init
// refuses a read-replica node, as its initiator or in its join list. The
// replicate queues give it a non-voter of every range (the allocator's
// rule: allocator/doc.go), added through ranges.Store.AddNonVoter; a
// lease transfer to it is refused (FailedPrecondition naming the target).
// Its gossiped store descriptor is its whiteboard entry: role, gRPC
// address, applied-index lag (ranges.Store.AppliedLag) and closed-timestamp
// lag (ranges.Store.ClosedLag), each with its most behind range. Every
// node serves the Discovery service (discovery.go gathers the views of
// gateway.BuildRoutingTable: meta, the leases known here, the directory,
// nodes not live or read replicas off the whiteboard left out, each
// server's gossiped closed-timestamp lag).
// TestCluster.AddReadReplica adds one.
//
// TestClusterOptions.Secure makes a CA, a node certificate (127.0.0.1,
// localhost) and root's client certificate in BaseDir/certs; each node
// gets its own Manager and the cluster's client connections use root's
// certificate.
//
// Security (issue 15; security.go): Config.Security is the node's
// certificate Manager (user "node"); nil is the insecure mode
// (--insecure). Secure, the gRPC server requires mutual TLS
// (Manager.ServerCredentials: a reload applies to new connections) and
// its first interceptor is security.Authorizer (roles by certificate:
// Internal for nodes, KV for clients, Admin for root and admins; see
// security/doc.go); insecure, the Authorizer allows all. Every
// node-to-node dial (router, init, join, node status, drain, lease
// transfer, the join-cluster check) takes its options from one place,
// gateway.PeerDialOptions: the node certificate's client credentials or
// plaintext, the message limit, and the mixed-mode interceptors. Raft
// runs over ranges/rafttls (mutual TLS 1.3 with the node certificate;
// both sides require the peer's to be a node certificate) unless
// Config.RaftTransport is set (fault injection: a TestCluster with a
// Network keeps its in-process transport); insecure, over Dragonboat's
// TCP transport. Gossip
// runs over mutual TLS with the node certificate, accepting node
// certificates only (gossip.Config.TLS); it binds one specific host, so a
// secure node listening on 0.0.0.0 needs Config.GossipAddr (Start refuses
// without it). The node registers Manager.Collector
// (rangestore_cert_expiry_seconds) and reports its certificates in
// NodeInfo, which node status shows per node (kind, user, serial,
// expiry); it never reloads them itself (its owner does, on SIGHUP).
// A cluster does not mix modes: a call to a peer of the other mode fails
// with FailedPrecondition naming the peer's address and mode
// (gateway.ExplainModeMismatch: a TLS client reading plaintext, or a
// plaintext client whose connection closed before the server preface
// and whose TLS probe of the address succeeds); each node descriptor
// records its mode (NodeDescriptor.secure), init and join refuse a
// descriptor of the other mode naming both, and a store does not restart
// in the other mode than its cluster record says.
//
// Resource limits of the gRPC server (serverOptions, the one place; the
// README lists them): messages up to MaxMessageSize(Config.Limits) both
// ways (about 10 MiB by default; a larger one is RESOURCE_EXHAUSTED
// "received message larger than max (N vs. LIMIT)"); at most
// MaxConcurrentStreams (1024) calls in flight per connection (more wait);
// keepalive enforcement: a client may ping at most every
// KeepaliveMinTime (10 s), with or without calls in flight, else GOAWAY
// too_many_pings; the server pings a connection idle KeepaliveTime (30 s)
// and closes it if no answer comes within KeepaliveTimeout (10 s); a
// unary call without a deadline runs with DefaultRequestTimeout (60 s),
// one with a longer deadline is capped at MaxRequestTimeout (10 min).
// Streams (KV.Scan, Backup.Export) are exempt from the deadlines: they
// last as long as their data and end with the client's cancel or its
// connection (keepalive finds a dead one). Calls are served by
// StreamWorkers (64) reused goroutines, and by a new goroutine each when
// all are busy (their grown stacks are kept: a new goroutine per call grew
// and copied its stack on every request); Stop ends them.
//
// TestCluster with a fault.Network carries Raft over its in-process
// transport and node-to-node gRPC through its interceptors; with
// Localities, each node is placed in its region (RegionOf) so that the
// Network's latency table, when one is set, delays traffic between
// regions (`demo --global`, TestClusterInterRegionLatency). Init's
// bootstrap RPCs and gossip are not delayed.
package node
