// Package gateway holds the gRPC services of a node and the router behind
// them.
//
//   - KVServer: the public KV API. Handlers are thin: validate against Limits
//     (InvalidArgument naming the limit), map client keys into the user span
//     (so clients can never address the system span), route, map back. What
//     each request type checks and how its keys map is its command in
//     ranges/batcheval (no switch on request types here).
//   - Router: finds the range of an internal key through a range cache filled
//     from meta records (the meta range's descriptor comes from the node),
//     sends one command per range (requests of one range are atomic
//     together; span requests are clipped and their parts merged by their
//     batcheval commands), tries replicas starting with the last one that
//     served, and retries on NOT_LEASEHOLDER, unreachable nodes and stale
//     descriptors (RANGE_KEY_MISMATCH / RANGE_NOT_FOUND → refresh and
//     re-split) until the deadline. Writes carry a proposal ID and timestamp reused by retries,
//     which replicas deduplicate; after a re-split the command keeps them
//     while its requests still go to one range. A write that may have
//     applied is only retried where its dedup record is (the range it was
//     sent to, or the one that subsumed it by a merge, which replicas name
//     in RANGE_NOT_FOUND); otherwise it fails as AMBIGUOUS, and so does one
//     that runs out of time (the last error, e.g. a leaseholder that
//     could not be dialled, says nothing of an earlier attempt). Scans are
//     streamed range by range in bounded chunks. Admin merges are pinned
//     to the range's generation at the call's start, so a retried merge
//     never absorbs a second neighbour.
//   - InternalServer / AdminServer: peer and operator RPCs; Admin errors go
//     through ToStatus.
//   - DiscoveryServer (discovery.go, issue 13): GetRoutingTable returns,
//     per range of a span of client keys, the write server (the
//     leaseholder as the answering node knows it: its own replica's valid
//     lease, else the node that last served the range through its router)
//     and the read servers (the other voters and the non-voters, roles
//     voter / read-replica / non-voter, nearest to the request's locality
//     first), leaving out nodes that are not live and read replicas not on
//     the whiteboard, with a TTL (--routing-ttl, 300 s). BuildRoutingTable
//     is pure (golden-tested). The contract for clients: refresh the table
//     when its TTL expires, when a write server answers NOT_LEASEHOLDER,
//     and when every listed server of a range failed; the table is a hint
//     and a server's answer is authoritative.
//   - ToStatus: the one table mapping errors to gRPC status codes. A
//     replica's verdict travels as RangeError (ranges.Error, the one error
//     type carrying a *rspb.RangeError) from the store, the node and the
//     router alike, and keeps its code.
package gateway
