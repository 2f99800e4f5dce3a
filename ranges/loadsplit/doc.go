// Package loadsplit decides load-based range splits: when a range serves
// more requests per second than a threshold for long enough, it proposes a
// split key that divides the range's request load roughly in half, and it
// reports a single hot key when the load cannot be divided at all.
//
// The package is pure logic. It never reads the clock or a global random
// source: every call takes the current time from the caller, and the
// randomness used for sampling comes from the *rand.Rand given to
// NewDecider. The same sequence of calls with the same seed therefore
// produces the same answers, which is what the tests rely on. NewRand
// makes such a source with 16 bytes of state (a store holds one Decider
// per replica, thousands of them).
//
// # Design
//
// A Decider has two parts.
//
// Rate. Requests are counted in one-second buckets aligned to Unix seconds.
// The rate of a range, QPS(now), is the count of the last complete bucket,
// the one just before the bucket containing now; it is 0 if that bucket saw
// no requests (for example after an idle gap). No smoothing is applied.
//
// Finder. Each time a bucket completes (the first call of any method that
// observes a later second does this), the Decider looks at its count:
//
//   - above Config.QPSThreshold and no finder: a finder is started at the
//     beginning of the new bucket;
//   - at or below the threshold (idle seconds count as 0): the finder, and
//     everything it learned, is discarded.
//
// While a finder exists, every recorded request is fed to it. The finder
// keeps a reservoir of at most Config.Samples candidate split keys, drawn
// uniformly from the start keys of the requests it has seen (Algorithm R).
// For each candidate key k it counts the requests seen since k entered the
// reservoir as
//
//   - left: entirely below k (a span with end <= k, or a point key < k);
//   - right: entirely at or above k (start >= k);
//   - straddling: start < k < end, i.e. a span the split would cut;
//   - hits: point requests on exactly k (a subset of right).
//
// MaybeSplitKey answers only once the finder has existed for at least
// Config.Duration. It then picks, among the candidates with
//
//   - at least MinCounted counted requests (left+right+straddling),
//   - left > 0 and right > 0,
//   - straddling/counted < MaxStraddleShare,
//   - imbalance |left-right|/(left+right) <= MaxImbalance,
//
// the one with the smallest imbalance (ties: fewer straddling requests,
// then the smaller key). HotKey, under the same timing condition, reports
// the candidate with the largest share hits/counted among those with at
// least MinCounted counted requests, if that share is >= HotKeyShare.
//
// # Invariants
//
//   - A proposed split key is always the start key of a request recorded
//     while the finder ran, and at least one counted request lies entirely
//     on each side of it. In particular it is never the smallest boundary
//     the range has seen in a way that would leave the left-hand side empty,
//     and a load consisting of a single key never yields a split key.
//   - With the default thresholds a hot key (share >= 0.8) and a split key
//     exclude each other: all hits on k are right of k and left of every
//     larger key, so any candidate has one side holding >= 80% of the load,
//     an imbalance >= 0.6.
//   - No answer is given before Config.Duration has passed since the start
//     of the first bucket sampled; a completed bucket at or below the
//     threshold, or Reset, restarts that wait from scratch.
//   - Keys passed to Record are copied when kept, and keys returned are
//     copies, so callers may reuse their buffers.
//   - All methods are safe for concurrent use; a single mutex guards the
//     state, and the injected *rand.Rand is used only under it, so it must
//     not be shared with other users.
//   - Calls with a time earlier than the current bucket (concurrent callers
//     racing on the clock) are counted in the current bucket; time never
//     moves the bucket backwards.
//
// The Decider does not know the range's bounds: the caller is expected to
// Reset it after a split (or merge), since the old counts no longer describe
// either new range.
package loadsplit
