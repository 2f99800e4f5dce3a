// Package backup writes, verifies and restores backups of a cluster's
// user keyspace (issue 13 item 7; `rangestore backup` and `restore`).
//
// A backup is a directory: data files (data-NNNNNN.rsb, about
// DefaultFileBytes each: a header, then length-prefixed ExportedVersion
// records in key order) and MANIFEST.json (FormatVersion; the span, the
// backup timestamp, the previous backup's directory, timestamp and
// manifest SHA-256 for an incremental, the protection record's ID, and
// each file's name, size, SHA-256, key counts and first/last key). The
// manifest is written last, so a directory without one is no backup.
//
// A full backup holds each key live at its timestamp T; an incremental
// from a backup at P holds each key's newest version in (P, T], deletions
// as tombstones. The data comes from Backup.Export (ExportRequest: a
// plain read at T, range by range, which does not block writes and will
// be served by followers once follower reads serve reads at or below the
// closed timestamp).
//
// Protected timestamps: before exporting, a backup writes a protection
// record for T (Backup.Protect, a system-range key); the MVCC GC keeps
// the threshold of every range it covers below T (ranges.decideGC). Rule:
// the newest backup of a chain keeps its timestamp protected, until the
// next incremental of the chain replaces it (it releases its base's
// record once its own manifest is written) or `rangestore backup release
// DIR` drops it. An export from P below a range's GC threshold fails
// (BELOW_GC_THRESHOLD) rather than miss versions.
//
// Restore verifies every file of the chain (sizes, checksums, records,
// the links between manifests) and that the cluster has no user key
// before it writes anything; it then replays the full backup and each
// incremental in order through the KV write path (Batch of Put/Delete), so
// the result is the source's state at the last backup's timestamp (the
// restored versions get new commit timestamps; history is not restored).
// Invalid input (a non-empty target directory, a base that is no backup
// or not older, a missing, truncated or corrupted file) is refused before
// anything changes, naming the file or field.
package backup
