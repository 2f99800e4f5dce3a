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
// starts its replicas; the request is idempotent per cluster ID.
package node
