// Package client is the Go client of rangestore: it sends every request
// straight to the node holding the lease of its key's range, without the
// second gRPC hop a node's own routing pays when a request arrives at a
// node that is not the leaseholder.
//
// # Use
//
//	db, err := client.Open(ctx, []string{"n1:26257", "n2:26257"},
//		client.WithTransportCredentials(certs.ClientCredentials()))
//	defer db.Close()
//	_, err = db.Put(ctx, []byte("k"), []byte("v"))
//	kv, err := db.Get(ctx, []byte("k"))      // errors.Is(err, client.ErrNotFound)
//	for kv, err := range db.Scan(ctx, start, end, client.Limit(100)) { ... }
//	res, err := db.Batch(ctx, new(client.Batch).Put(a, x).Increment(b, 1))
//
// Every call takes a context (a call without a deadline gets WithTimeout's,
// 30 s). Errors are *Error values with a Code; errors.Is matches them
// against ErrInvalidArgument, ErrNotFound, ErrConditionFailed,
// ErrAmbiguous, ErrUnavailable, ErrPermissionDenied and ErrClosed. Bad
// input is refused before anything is sent when the client can tell
// (empty keys, backwards spans, conflicting options), by the node
// otherwise (its limits), naming the field or the limit.
//
// # Design
//
// Range cache. The client keeps, per range, its span in client keys,
// descriptor generation, replicas (voters and non-voters, nearest to
// WithLocality first) and believed leaseholder (cache.go). Open fills it
// from the Discovery service's routing table (GetRoutingTable, paged,
// include_writer), which every node serves from meta; a key the cache does
// not cover, or whose entry outlived the table's TTL, is looked up again
// from that key (concurrent lookups of one key share one call). Between
// overlapping entries the higher generation wins (a split or merge raises
// it above every descriptor it replaces).
//
// Routing. A Strong request (the default for reads, always for writes) is
// split per range (span requests clipped at range bounds, by
// internal/batchsplit, the core the gateway's Router shares) and each range's
// part is sent as one KV.Batch to the believed leaseholder with a
// DirectRoute naming the range (kv.proto): the node serves it from its own
// replica and never forwards it. When it cannot, it refuses with a
// RouteHint (discovery.proto) saying where the keys are now, which the
// client puts in its cache: NOT_LEASEHOLDER names the leaseholder (tried
// next), RANGE_KEY_MISMATCH gives the range's new bounds and the ranges
// now holding the keys (after a split), RANGE_NOT_FOUND the range that
// subsumed it (after a merge). Parts of one call go out in parallel and
// their answers are merged in request order (scans concatenated, in
// reverse for reverse scans, and cut at their limit; delete ranges
// summed). Reads in another mode (BoundedStaleness, Causal) go to the
// nearest replica without a route; that node serves them as follower reads
// (or hands them to the leaseholder). Scans stream range by range through
// KV.Scan, each range's span from its leaseholder (or nearest replica),
// resuming after the last row returned when a stream breaks.
//
// Retries (send.go). A part is retried, within its budget of
// RetryPolicy.MaxAttempts attempts (every RPC counts) and the call's
// deadline, when a node does not answer (down, connection lost, attempt
// timeout: the next replica is tried, the node goes to the end of the
// order for 2 s), when it is not the leaseholder (the hinted one is tried
// next), and when no replica served in a round (backoff from MinBackoff
// doubling to MaxBackoff with jitter, and a routing-table refresh at most
// once a second). A stale range entry makes the part re-resolve and
// re-split. What the node refuses for other reasons (bad input, a failed
// condition, below the GC threshold) is returned at once.
//
// Exactly-once writes. Every write part carries a proposal identity, 16
// random bytes and the client's clock (less 1 s) at its first attempt,
// which the range's replicas deduplicate on (the same record the nodes'
// own routing uses): a retry reuses it, and a retry of a write that had
// applied is answered from its record. A write whose attempt got no
// answer (or a replica reported an unfinished proposal) may have applied;
// it is retried only where its record is: the range it was sent to, or
// one named as having subsumed it by a merge (asked up to three times).
// If its keys now lie in another range (a split) or in several, or it has
// been retried for two minutes, it fails as Ambiguous instead: retrying
// could apply it twice. A write that ran out of time after such an attempt
// is Ambiguous too; Unavailable means it did not apply. The nodes check
// the identity's timestamp against their clocks: a client clock more than
// about 2 s ahead or 2.5 minutes behind the cluster's gets
// InvalidArgument naming route.proposal_timestamp.
//
// Connections (pool.go). One gRPC connection per node address
// (WithConnectionsPerNode for more), dialled on first use, with keepalive
// pings (20 s, within the nodes' 10 s enforcement minimum; the nodes ping
// idle clients too), 64 MiB message limits, and reconnection backoff
// capped at 3 s so that a node that comes back is used again quickly. A
// node that failed is tried after the others for 2 s; the routing table is
// read from the node that answered last, then the seeds, then any node
// the client has learned of, so Open and lookups fail over too.
//
// Causal reads (session.go). Every write returns a bookmark
// (WriteResult.Bookmark, Result.Bookmark) and so does every read that
// returned a version. A Causal read carrying bookmarks (WithBookmarks) is
// served by the nearest replica once its closed timestamp has passed them
// (up to BookmarkTimeout; a replica that cannot expect to catch up in time
// hands the read to the leaseholder). A Session does this for you: its
// reads are Causal by default and carry the newest bookmark its calls
// returned (ordered by the commit timestamps in the same answers) plus
// any handed to NewSession or Observe, so it reads its own writes and
// never goes back in time, on any replica.
//
// # Invariants
//
//   - Nothing the cache says is trusted for correctness: a replica checks
//     range, bounds and lease of every routed batch, and a refusal only
//     moves the client on; a wrong cache costs attempts, never results.
//   - A write part's identity is fixed at its first attempt and kept by
//     every retry; it is renewed only while no attempt may have applied.
//   - A write that may have applied is never sent to a range that cannot
//     hold its dedup record.
//   - Every goroutine a call starts (one per range part of a multi-range
//     call) ends before the call returns; a Scan's stream ends when its
//     loop does. The DB starts no background goroutine: Close closes the
//     connections and leaves nothing running.
package client
