// Package kv is the MVCC storage layer of a node: one shared Pebble v2
// database holding the data of many Raft ranges, each owning a span of user
// keys. kv knows nothing about Raft or ranges; it provides the Engine,
// indexed write Batches, point-in-time Snapshots and Views, raw (non-versioned) keys and
// MVCC operations over a key span at an HLC Timestamp.
//
// # Key layout
//
// The first byte of every engine (Pebble) key identifies its kind:
//
//	0x01 LocalPrefix  raw keys owned by callers (range-local state such as
//	                  Raft logs or applied indexes). kv never interprets them;
//	                  use Batch.PutRaw/DeleteRaw/DeleteRawRange and GetRaw.
//	                  0x01 'k' is kv's own: keys addressed by a user key
//	                  (rangedata.go), such as transaction records.
//	0x02 DataPrefix   MVCC data keys.
//
// An MVCC engine key is
//
//	0x02 | escaped(userKey) | 0x00 0x01 | ^WallTime (8 bytes BE) | ^Logical (4 bytes BE)
//
// where escaping replaces every 0x00 byte of the user key with 0x00 0xFF. The
// 0x00 0x01 terminator sorts below any escaped 0x00 (0x00 0xFF) and below any
// other byte, so:
//
//   - encoded keys sort exactly like user keys (bytewise), including when one
//     user key is a prefix of another;
//   - all versions of a user key are contiguous and share the prefix
//     0x02|escaped(userKey)|0x00 0x01 (see EncodeDataSpanStart);
//   - the bit-inverted big-endian timestamp makes NEWER versions sort FIRST,
//     so a SeekGE to EncodeMVCCKey(k, readTS) lands on the newest version of
//     k at or below readTS.
//
// A user key span [start, end) maps to the engine span
// [EncodeDataSpanStart(start), EncodeDataSpanStart(end)); end == nil maps to
// DataEnd() (the byte 0x03), the end of the data keyspace. Spans with start >
// end are rejected with ErrInvalidSpan; start == end is empty.
//
// # Versions and values
//
// Every stored version has a non-empty, non-negative timestamp and a user
// key of at least one byte. The Pebble value carries a 1-byte tag: 0 is a
// tombstone (the key is deleted as of that timestamp; no payload), 1 is a
// live value followed by its bytes (possibly none). Writing the same key at
// the same timestamp overwrites that version. kv does not enforce write
// monotonicity: callers that need it check MVCCGetNewestVersion first and
// write strictly above it.
//
// # Intents
//
// An intent is a provisional version written by a transaction (IntentTxn:
// its ID, epoch and the caller's opaque description of it) that is not
// yet committed or aborted. It is stored in place, as the key's version at
// the transaction's write timestamp, with value tag 2 (a deletion) or 3 (a
// value) followed by a header naming the transaction (intent.go), so
// whatever copies data keys (replica snapshots, splits and merges, which
// move key spans between ranges) carries intents along, and a lock on a
// key is found where its data is. Invariants:
//
//   - an intent is always the newest version of its key: MVCCPut refuses
//     (IntentError) any write to a key holding another transaction's
//     intent, transactional or not, at any timestamp; and a transactional
//     write at or below a committed version is a WriteTooOldError, so no
//     committed version is ever written above an intent;
//   - one transaction has at most one intent per key: its later write
//     replaces its earlier one (of any epoch);
//   - reads see a transaction's intent only if they are that transaction
//     (in its current epoch); any other read at or above the intent's
//     timestamp fails with an IntentError listing the intents it met, and
//     a read below it reads the committed versions beneath;
//   - resolution (MVCCResolveIntent, MVCCResolveIntentRange) rewrites an
//     intent of the committing epoch as a committed version at the commit
//     timestamp (never below the intent's), or removes it (an abort, or an
//     intent of an earlier epoch); resolving twice changes nothing;
//   - a transaction's read may carry an uncertainty limit (its start plus
//     the max clock offset): a committed version in (read timestamp,
//     limit] is an UncertaintyError (it may have been written before the
//     transaction began, on a node whose clock ran ahead), and another
//     transaction's intent up to the limit conflicts;
//   - GC never removes an intent, nor the committed version below it that
//     reads see if it aborts; an export at or above an intent fails with an
//     IntentError, so a backup never holds an uncommitted write.
//
// A transaction whose write timestamp moved above its read timestamp
// proves, before it commits, that its reads still hold at the new one
// (MVCCCheckRefresh, refresh.go): for a key or span read at from and
// refreshed to to, no committed version (a deletion included) lies in
// (from, to] and no other transaction's intent at or below to, since a
// read at to would see or meet it; its own intents, of any epoch, never
// conflict, and do not hide a committed version beneath them. Per key it
// reads the newest version and seeks to the newest one at or below to,
// never the history at or below from, and it stops at the first key that
// breaks the read (RefreshConflictError). The versions in (from, to] are
// intact only if GC's threshold is not above from, which the caller checks.
//
// CockroachDB keeps locks in a separate lock-table keyspace; rangestore
// keeps them in the value of the provisional version (as CockroachDB did
// before 21.1), trading a scan of the data for "the locks in a span"
// (MVCCFindIntents) against every data-copying path staying unchanged.
//
// # Reads
//
// A read at readTS sees, for each key, the newest version with timestamp <=
// readTS; if that version is a tombstone the key is absent. Reads through a
// Batch see its uncommitted writes over the engine; a Snapshot is a
// consistent point-in-time view, and so is a View (view.go): its iterators
// are clones of one Pebble iterator, which reads the sequence number and
// sstables current at its creation. A View is cheaper to open and close
// than a Snapshot (no DB mutex, no compaction check on Close) and is what
// short reads use; a Snapshot is for long-lived ones (replica snapshots).
// Returned keys and values are always copies
// and never alias Pebble memory.
//
// # Garbage collection
//
// MVCCGarbageCollect with threshold T removes, per key, every version that no
// read at a timestamp >= T can observe: among versions with timestamp <= T it
// keeps only the newest, and removes even that one if it is a tombstone.
// Versions above T are never touched. Hence any read at a timestamp >= T
// returns the same result before and after GC.
//
// # Replacing spans by ingestion
//
// A Replacement (ingest.go) swaps the whole content of some key spans for
// new keys without holding them in memory: the keys are written into one
// sstable per merged span (each also carrying a range deletion of its span)
// under <dir>/ingest-tmp, and Ingest links all of them into the database
// in one step. Ingested keys share one sequence number above all existing
// data, so each range deletion removes the old keys but not the new ones
// of its own sstable; readers see the old state or the new, never a mix.
// Until the ingestion is recorded in Pebble's manifest nothing is visible;
// files left by a crash before that are removed by Open.
//
// # Concurrency
//
// Engine is safe for concurrent use. Batch and iterators are not; Snapshot
// reads may be concurrent with each other but must not race with Close.
package kv
