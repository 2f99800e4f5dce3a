package kv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Sentinel errors. Returned errors wrap these; test with errors.Is.
var (
	ErrEmptyKey       = errors.New("kv: empty key")
	ErrEmptyTimestamp = errors.New("kv: empty timestamp")
	ErrInvalidSpan    = errors.New("kv: invalid span")
)

const defaultCacheSize = 32 << 20

// Options configures Open.
type Options struct {
	// InMemory uses an in-memory filesystem (for tests); nothing is persisted.
	InMemory bool
	// CacheSize is the block cache size in bytes; 0 selects 32 MiB.
	CacheSize int64
	// Logger receives Pebble's log output (info at Debug level, errors at
	// Error level). If nil, Pebble's informational output is discarded and
	// only fatal messages are reported (via panic).
	Logger *slog.Logger
}

// Engine is one Pebble database shared by all ranges of a node. It is safe
// for concurrent use.
type Engine struct {
	db *pebble.DB
	// opts, fs and dir are what the database was opened with: sstables
	// built for ingestion (ingest.go) are written there with its options.
	opts *pebble.Options
	fs   vfs.FS
	dir  string
	// ingestSeq numbers the files of ingestions.
	ingestSeq atomic.Uint64
}

// pebbleLogger adapts Pebble's Logger interface to slog. With a nil slog
// logger all non-fatal output is dropped.
type pebbleLogger struct {
	l *slog.Logger
}

func (p pebbleLogger) Infof(format string, args ...interface{}) {
	if p.l != nil {
		p.l.LogAttrs(context.Background(), slog.LevelDebug, fmt.Sprintf(format, args...), slog.String("component", "pebble"))
	}
}

func (p pebbleLogger) Errorf(format string, args ...interface{}) {
	if p.l != nil {
		p.l.LogAttrs(context.Background(), slog.LevelError, fmt.Sprintf(format, args...), slog.String("component", "pebble"))
	}
}

func (p pebbleLogger) Fatalf(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	if p.l != nil {
		p.l.LogAttrs(context.Background(), slog.LevelError, msg, slog.String("component", "pebble"), slog.Bool("fatal", true))
	}
	panic("kv: pebble fatal: " + msg)
}

// Open opens (creating if necessary) the engine in dir. With opts.InMemory the
// database lives in memory and dir is only used as a name inside the
// in-memory filesystem.
func Open(dir string, opts Options) (*Engine, error) {
	cacheSize := opts.CacheSize
	if cacheSize <= 0 {
		cacheSize = defaultCacheSize
	}
	cache := pebble.NewCache(cacheSize)
	defer cache.Unref()

	logger := pebbleLogger{l: opts.Logger}
	popts := &pebble.Options{
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             logger,
	}
	if opts.InMemory {
		popts.FS = vfs.NewMem()
		if dir == "" {
			dir = "kv"
		}
	} else {
		if dir == "" {
			return nil, fmt.Errorf("kv: open: empty directory")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("kv: open %s: %w", dir, err)
		}
		popts.FS = vfs.Default
	}
	popts.EnsureDefaults()
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("kv: open %s: %w", dir, err)
	}
	e := &Engine{db: db, opts: popts, fs: popts.FS, dir: dir}
	// Files of an ingestion that a crash interrupted were never part of
	// the database: drop them.
	if err := e.fs.RemoveAll(e.ingestDir()); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("kv: open %s: remove unfinished ingestions: %w", dir, err)
	}
	return e, nil
}

// Close closes the engine. All batches, snapshots and iterators must be
// closed first.
func (e *Engine) Close() error {
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("kv: close: %w", err)
	}
	return nil
}

// DB exposes the underlying Pebble database.
func (e *Engine) DB() *pebble.DB { return e.db }

// NewBatch returns an indexed batch: reads through it observe its own
// uncommitted writes layered over the engine's current state. A Batch is not
// safe for concurrent use.
func (e *Engine) NewBatch() *Batch {
	return &Batch{b: e.db.NewIndexedBatch(), db: e.db}
}

// NewSnapshot returns a consistent point-in-time view of the engine. The
// caller must Close it.
func (e *Engine) NewSnapshot() *Snapshot {
	return &Snapshot{s: e.db.NewSnapshot()}
}

// Sync durably persists everything committed so far.
func (e *Engine) Sync() error {
	if err := e.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("kv: sync: %w", err)
	}
	return nil
}

// GetRaw returns a copy of the value stored under the raw engine key.
func (e *Engine) GetRaw(key []byte) ([]byte, bool, error) {
	return getRaw(e.db.Get, key)
}

// NewIter returns a raw Pebble iterator over engine keys in [lower, upper).
// The caller must Close it.
func (e *Engine) NewIter(lower, upper []byte) (*pebble.Iterator, error) {
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("kv: new iterator: %w", err)
	}
	return it, nil
}

// Reader is implemented by *Engine, *Batch and *Snapshot.
type Reader interface {
	// GetRaw returns a copy of the value stored under the raw engine key.
	GetRaw(key []byte) ([]byte, bool, error)
	// NewIter returns a raw Pebble iterator over engine keys in [lower,
	// upper). The caller must Close it.
	NewIter(lower, upper []byte) (*pebble.Iterator, error)
}

var (
	_ Reader = (*Engine)(nil)
	_ Reader = (*Batch)(nil)
	_ Reader = (*Snapshot)(nil)
)

func getRaw(get func([]byte) ([]byte, io.Closer, error), key []byte) ([]byte, bool, error) {
	v, closer, err := get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("kv: get %x: %w", key, err)
	}
	out := make([]byte, len(v))
	copy(out, v)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("kv: get %x: %w", key, err)
	}
	return out, true, nil
}

// Batch is an indexed write batch. Reads through it see its own writes plus
// the engine. It is not safe for concurrent use.
type Batch struct {
	b  *pebble.Batch
	db *pebble.DB
}

// PutRaw sets a raw engine key.
func (b *Batch) PutRaw(key, value []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("kv: put raw: %w", ErrEmptyKey)
	}
	if err := b.b.Set(key, value, nil); err != nil {
		return fmt.Errorf("kv: put raw %x: %w", key, err)
	}
	return nil
}

// DeleteRaw deletes a raw engine key.
func (b *Batch) DeleteRaw(key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("kv: delete raw: %w", ErrEmptyKey)
	}
	if err := b.b.Delete(key, nil); err != nil {
		return fmt.Errorf("kv: delete raw %x: %w", key, err)
	}
	return nil
}

// DeleteRawRange deletes all raw engine keys in [start, end) with a single
// range deletion.
func (b *Batch) DeleteRawRange(start, end []byte) error {
	if string(start) > string(end) {
		return fmt.Errorf("kv: delete raw range %x > %x: %w", start, end, ErrInvalidSpan)
	}
	if string(start) == string(end) {
		return nil
	}
	if err := b.b.DeleteRange(start, end, nil); err != nil {
		return fmt.Errorf("kv: delete raw range [%x, %x): %w", start, end, err)
	}
	return nil
}

func checkVersion(key []byte, ts Timestamp) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	if ts.IsEmpty() {
		return ErrEmptyTimestamp
	}
	if ts.WallTime < 0 || ts.Logical < 0 {
		return fmt.Errorf("kv: negative timestamp %s", ts)
	}
	return nil
}

// PutMVCC writes a live version of key at ts. If a version at exactly ts
// exists it is overwritten. Callers are responsible for keeping writes above
// the newest existing version (see MVCCGetNewestVersion).
func (b *Batch) PutMVCC(key []byte, ts Timestamp, value []byte) error {
	if err := checkVersion(key, ts); err != nil {
		return fmt.Errorf("kv: put %q@%s: %w", key, ts, err)
	}
	if err := b.b.Set(EncodeMVCCKey(key, ts), encodeValue(value), nil); err != nil {
		return fmt.Errorf("kv: put %q@%s: %w", key, ts, err)
	}
	return nil
}

// DeleteMVCC writes a tombstone version of key at ts.
func (b *Batch) DeleteMVCC(key []byte, ts Timestamp) error {
	if err := checkVersion(key, ts); err != nil {
		return fmt.Errorf("kv: delete %q@%s: %w", key, ts, err)
	}
	if err := b.b.Set(EncodeMVCCKey(key, ts), tombstoneValue, nil); err != nil {
		return fmt.Errorf("kv: delete %q@%s: %w", key, ts, err)
	}
	return nil
}

// Commit applies the batch to the engine, fsyncing the WAL if sync is set.
func (b *Batch) Commit(sync bool) error {
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	if err := b.b.Commit(opts); err != nil {
		return fmt.Errorf("kv: commit: %w", err)
	}
	return nil
}

// Close releases the batch. Uncommitted writes are discarded.
func (b *Batch) Close() error {
	if err := b.b.Close(); err != nil {
		return fmt.Errorf("kv: close batch: %w", err)
	}
	return nil
}

// Repr returns a copy of the batch's mutations in Pebble's batch encoding,
// to be replayed elsewhere with ApplyRepr (e.g. a leaseholder's evaluated
// writes, applied by every replica).
func (b *Batch) Repr() []byte { return append([]byte(nil), b.b.Repr()...) }

// ApplyRepr adds the mutations of an encoded batch (from Repr) to b.
func (b *Batch) ApplyRepr(repr []byte) error {
	if len(repr) == 0 {
		return nil
	}
	tmp := b.db.NewBatch()
	defer tmp.Close()
	if err := tmp.SetRepr(append([]byte(nil), repr...)); err != nil {
		return fmt.Errorf("kv: invalid batch representation: %w", err)
	}
	return b.b.Apply(tmp, nil)
}

// Empty reports whether the batch contains no writes.
func (b *Batch) Empty() bool { return b.b.Empty() }

// Count returns the number of writes in the batch.
func (b *Batch) Count() uint32 { return b.b.Count() }

// Len returns the size of the batch's encoded representation in bytes.
func (b *Batch) Len() int { return b.b.Len() }

// GetRaw returns a copy of the value of a raw engine key as seen through the
// batch (its own writes over the engine).
func (b *Batch) GetRaw(key []byte) ([]byte, bool, error) {
	return getRaw(b.b.Get, key)
}

// NewIter returns a raw iterator over [lower, upper) that sees the batch's
// writes (as of iterator creation) over the engine. The caller must Close it.
func (b *Batch) NewIter(lower, upper []byte) (*pebble.Iterator, error) {
	it, err := b.b.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("kv: new batch iterator: %w", err)
	}
	return it, nil
}

// Snapshot is a consistent point-in-time Reader. It must be closed.
type Snapshot struct {
	s *pebble.Snapshot
}

// GetRaw returns a copy of the value of a raw engine key in the snapshot.
func (s *Snapshot) GetRaw(key []byte) ([]byte, bool, error) {
	return getRaw(s.s.Get, key)
}

// NewIter returns a raw iterator over [lower, upper) of the snapshot. The
// caller must Close it.
func (s *Snapshot) NewIter(lower, upper []byte) (*pebble.Iterator, error) {
	it, err := s.s.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("kv: new snapshot iterator: %w", err)
	}
	return it, nil
}

// Close releases the snapshot.
func (s *Snapshot) Close() error {
	if err := s.s.Close(); err != nil {
		return fmt.Errorf("kv: close snapshot: %w", err)
	}
	return nil
}
