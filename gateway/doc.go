// Package gateway holds the gRPC services of a node and the router behind
// them.
//
//   - KVServer: the public KV API. Handlers are thin: validate against Limits
//     (InvalidArgument naming the limit), map client keys into the user span
//     (so clients can never address the system span), route, map back.
//     Validation and mapping (validate, validateScan) do no routing and
//     change nothing; FuzzRequestValidation drives them with arbitrary
//     bytes and evaluates what they accept on an in-memory engine. What
//     each request type checks and how its keys map is its command in
//     ranges/batcheval (no switch on request types here).
//   - Router: finds the range of an internal key through a range cache filled
//     from meta records (the meta range's descriptor comes from the node),
//     sends one command per range (split by internal/batchsplit, shared with
//     the Go client; requests of one range are atomic
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
//   - Read modes (readmode.go, followerread.go): Get, Scan and Batch take
//     read_mode. STRONG (default) goes to the leaseholder. BOUNDED_STALENESS
//     (max_staleness > 0) and CAUSAL (bookmarks, bookmark_timeout up to
//     DefaultBookmarkReadyTimeout, 30 s) are follower reads: the router
//     tries this node's own replica first, then the others by how many
//     leading locality tiers they share with this node (a Resolver that is
//     a LocalityResolver), the last known leaseholder last among equals,
//     each serving at its closed timestamp, which must be at least now -
//     max_staleness (no wait: CockroachDB's rule, reading at the closed
//     timestamp rather than at now - max_staleness) or the highest
//     bookmark (waited for). A replica answering NOT_CLOSED sends the read
//     to the leaseholder as a STRONG read whose clock has passed the
//     bookmark; BOOKMARK_TIMEOUT becomes UNAVAILABLE with an ErrorInfo of
//     reason BOOKMARK_TIMEOUT. Every write response (and a Batch with
//     writes) carries a bookmark: version byte, commit timestamp, CRC-32C
//     over the cluster ID and those bytes (a foreign or corrupted one is
//     INVALID_ARGUMENT naming bookmarks[i], as is one beyond the max clock
//     offset in the future). A Get that finds a value carries the bookmark
//     of the version read, a read-only Batch that of the newest version it
//     read (none if it read none), a Scan that of the newest row it
//     returned: every streamed chunk the newest of it and the chunks
//     before (the last chunk's covers the scan), a Scan in a read-only
//     Batch the newest of its own rows (readBookmarkFor, newestVersion,
//     readBookmark serve all three): a session that carries it never reads
//     an older version of that key afterwards, on any replica (monotonic
//     reads; write bookmarks alone do not give it across replicas whose
//     closed timestamps differ). Responses are read and filled by field name
//     (commit_timestamp, bookmark), not by a switch on types.
//   - Routed batches (direct.go): a Batch with a route (DirectRoute: a range
//     ID, and for a write the client's proposal ID and timestamp) comes
//     from a client that caches ranges and leaseholders (client/). It is
//     validated like any batch (plus the route: a write's identity, its
//     timestamp within twice the max clock offset ahead of this node's
//     clock and half the dedup window behind; no read mode), then sent to
//     this node's own replica of the range as one command carrying that
//     identity (so the client's retries are deduplicated like the
//     router's), never forwarded. A refusal keeps its status code and
//     carries a RouteHint detail: the RangeError code, on NOT_LEASEHOLDER
//     the leaseholder with its address, on RANGE_KEY_MISMATCH and
//     RANGE_NOT_FOUND the descriptors the replica named as routing
//     entries in client keys (with their generation), and the range that
//     subsumed a merged one. Scans beyond the response budget are paged
//     through the router as usual.
//   - Transactions (txncoord.go, txnserver.go, conflicts.go; issue 16):
//     the node a client calls BeginTxn on coordinates the transaction
//     (TxnCoordinator): it holds its header (ID, read and write
//     timestamps, priority, anchor = the first key written), the spans it
//     read (refreshed before a commit at a pushed timestamp) and wrote
//     (resolved after), heartbeats its record, and commits or aborts it at
//     the anchor's range (EndTxn). Batches carry the handle (node ID + txn
//     ID: another node refuses it by name) and run through the router with
//     the transaction in their context; Batch{atomic} is one transaction
//     run (and retried) by the server: in one range a one-phase commit
//     (one command, no record), across ranges a parallel commit when it
//     is all puts and deletes (parallelcommit.go: the writes and a
//     STAGING EndTxn in one round; the client is answered once they all
//     landed, the record is made COMMITTED after). A reader that wins a
//     push against a STAGING record recovers it (recovery.go:
//     QueryIntent on its in-flight writes prevents the missing ones, then
//     RecoverTxn commits if all were found, aborts otherwise). The router (and the direct route)
//     handles WRITE_INTENT answers for every request, transactional or
//     not: it pushes the conflicting transactions at their records and
//     resolves the intents of those it pushed, waiting (with backoff) on
//     those it cannot push; heartbeats record what each transaction waits
//     on in its record, and a waiter that finds a waits-for cycle through
//     them forces its push if its ID is higher, which breaks every cycle. Conflicts
//     reach clients as ABORTED with an ErrorInfo reason (TXN_RETRY,
//     TXN_ABORTED, WRITE_INTENT): run the transaction again. Not built
//     yet: write pipelining (an interactive transaction's writes are
//     replicated before the next request, so its commit is an explicit
//     EndTxn). A push that loses waits at the pushee's record's
//     leaseholder (ranges/pushqueue.go) before it answers, so the
//     router's backoff between pushes matters only after a timeout.
//   - InternalServer / AdminServer: peer and operator RPCs; Admin errors go
//     through ToStatus.
//   - BackupServer (backup.go): Export streams an ExportRequest range by
//     range like a scan (Router.ExportStream, export.go); Protect, Release
//     and ListProtections write, delete and read protection records in the
//     system range through the router. The KV service refuses requests
//     whose command is Internal() (export).
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
//   - PeerDialOptions (peerdial.go): the options of every node-to-node
//     dial, made in one place: transport credentials (the node
//     certificate's, or plaintext in the --insecure mode), message limits,
//     and client interceptors that turn a failed call to a peer of the
//     other mode into FailedPrecondition saying the peer at ADDR serves
//     plaintext (or TLS) and a cluster cannot mix secure and insecure
//     nodes (ExplainModeMismatch; the pure decideMismatch reads the
//     handshake failure, a TLS probe confirms a plaintext caller's
//     suspicion). A Router given no dial options uses
//     PeerDialOptions(nil, DefaultPeerMaxMessage).
//   - ToStatus: the one table mapping errors to gRPC status codes. A
//     replica's verdict travels as RangeError (ranges.Error, the one error
//     type carrying a *rspb.RangeError) from the store, the node and the
//     router alike, and keeps its code.
package gateway
