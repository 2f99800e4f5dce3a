// Package batchsplit is the routing-independent core of sending a batch
// across ranges, shared by the node's router (gateway.Router, internal
// keys, range descriptors) and the Go client (client, client keys, its
// range cache): splitting a batch's requests by range, grouping them into
// one command per range, carrying a write's proposal identity across
// re-splits, sending the groups and collecting their answers per request.
// Which replica to try, how to retry and how to merge one request's parts
// stay with each caller: the two differ there (the router uses
// ranges/batcheval's merges; the client, which imports no server package,
// its own, with bookmarks).
//
// # Mechanism
//
//   - Pieces numbers a batch: piece i is request i. A piece keeps its
//     index through every split, so the parts of one request, whichever
//     ranges answered them, are collected under it and merged into
//     response i.
//   - Split resolves a piece through a Keyspace: a point request goes to
//     the range holding its key; a span request [start, end) is walked
//     range by range from start, each part clipped to [cur, min(end,
//     range end)), until end or the last range (end nil: the end of the
//     keyspace; a range end nil: the last range). An empty span yields no
//     part (a Keyspace that wants one answered by a range reports it as a
//     point).
//   - GroupByRange splits pieces and groups the parts by range ID: groups
//     in the order their ranges are first met, parts within a group in
//     the order of the pieces given. A group is sent as one command,
//     atomic on its range.
//   - Reuse decides the identity of pieces re-split after a stale route
//     (a split, merge or move): still one command to one range, they keep
//     the identity they were sent with (its dedup record answers a retry
//     of a write that applied); otherwise each group gets a new one,
//     unless the write may have applied, in which case it must fail as
//     ambiguous, with the reason Reuse gives.
//   - Send sends the groups (one in the caller's goroutine, several in
//     parallel goroutines it waits for) and collects their answers per
//     piece index, group by group.
//   - SortByStart orders one request's parts by key (stable), for merging.
//
// # Invariants
//
//   - Split's parts of a span request tile [start, end) without gaps or
//     overlap, in key order, one per range; each part's request is the
//     piece's, clipped by the Keyspace. A point piece is never clipped.
//   - Split fails, naming the range and the key, if the Keyspace locates
//     a key in a range that ends at or before it (the walk would not move
//     on); it never loops on a bad range table.
//   - Every piece of a group goes to the group's range; no two groups
//     share a range ID.
//   - A Write that may have applied (Ambiguous) is reused only for a
//     single group whose range holds its dedup record (Holders: the range
//     it was sent to, and any named as having subsumed it by a merge);
//     it is never split across ranges nor sent to another range under a
//     new identity.
//   - Send returns only after every group's send has returned; its error
//     is the first group's error in group order.
//
// Nothing here does I/O itself: Locate, the only lookup, and the send
// function are the caller's.
package batchsplit
