package kv

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// ingestDirName is the directory (inside the engine's directory) where
// sstables are built before they are ingested. Open empties it.
const ingestDirName = "ingest-tmp"

func (e *Engine) ingestDir() string { return e.fs.PathJoin(e.dir, ingestDirName) }

// Span is a key span [Start, End) of engine keys.
type Span struct {
	Start, End []byte
}

// Replacement atomically replaces everything stored in a set of key spans
// with new contents, without holding the contents in memory: the new keys
// are written to one sstable per (merged) span on disk, each sstable also
// carrying a range deletion of its whole span, and Ingest links all of
// them into the database in one step. Ingested keys all get one sequence
// number, above everything already stored, so a span's range deletion
// removes the old keys but not the new ones of its own sstable. Until
// Ingest returns nothing is visible; a crash before the ingestion is
// recorded leaves only files in the ingestion directory, which Open
// removes. A Replacement is not safe for concurrent use.
type Replacement struct {
	e     *Engine
	spans []Span
	ws    []*sstable.Writer
	paths []string
	done  bool
	// bytes counts the keys and values added.
	bytes int64
}

// NewReplacement prepares the replacement of spans (overlapping or
// touching spans are merged). The caller must call Ingest or Abort.
func (e *Engine) NewReplacement(spans ...Span) (*Replacement, error) {
	merged, err := mergeSpans(spans)
	if err != nil {
		return nil, err
	}
	if err := e.fs.MkdirAll(e.ingestDir(), 0o755); err != nil {
		return nil, fmt.Errorf("kv: ingest dir: %w", err)
	}
	r := &Replacement{e: e, spans: merged}
	wopts := e.opts.MakeWriterOptions(0, e.db.FormatMajorVersion().MaxTableFormat())
	for _, sp := range merged {
		path := e.fs.PathJoin(e.ingestDir(), fmt.Sprintf("%06d.sst", e.ingestSeq.Add(1)))
		f, err := e.fs.Create(path, "ingest")
		if err != nil {
			r.Abort()
			return nil, fmt.Errorf("kv: create %s: %w", path, err)
		}
		r.paths = append(r.paths, path)
		w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), wopts)
		r.ws = append(r.ws, w)
		if err := w.DeleteRange(sp.Start, sp.End); err != nil {
			r.Abort()
			return nil, fmt.Errorf("kv: ingest: %w", err)
		}
	}
	return r, nil
}

// mergeSpans sorts spans and merges those that overlap or touch.
func mergeSpans(spans []Span) ([]Span, error) {
	out := make([]Span, 0, len(spans))
	for _, sp := range spans {
		if len(sp.Start) == 0 || bytes.Compare(sp.Start, sp.End) >= 0 {
			return nil, fmt.Errorf("%w: replacement span [%q, %q)", ErrInvalidSpan, sp.Start, sp.End)
		}
		out = append(out, sp)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Start, out[j].Start) < 0 })
	n := 0
	for _, sp := range out {
		if n > 0 && bytes.Compare(sp.Start, out[n-1].End) <= 0 {
			if bytes.Compare(sp.End, out[n-1].End) > 0 {
				out[n-1].End = sp.End
			}
			continue
		}
		out[n] = sp
		n++
	}
	return out[:n], nil
}

// Set adds key with value. Keys must lie in the replaced spans, and the
// keys of each span must come in strictly increasing order.
func (r *Replacement) Set(key, value []byte) error {
	i := sort.Search(len(r.spans), func(i int) bool { return bytes.Compare(key, r.spans[i].End) < 0 })
	if i == len(r.spans) || bytes.Compare(key, r.spans[i].Start) < 0 {
		return fmt.Errorf("%w: key %q outside the replaced spans", ErrInvalidSpan, key)
	}
	if err := r.ws[i].Set(key, value); err != nil {
		return fmt.Errorf("kv: ingest: %w", err)
	}
	r.bytes += int64(len(key) + len(value))
	return nil
}

// Bytes is the size of the keys and values added so far.
func (r *Replacement) Bytes() int64 { return r.bytes }

// Ingest finishes the sstables (synced) and ingests them together: the
// replacement becomes visible, and durable, at once. On error nothing was
// replaced.
func (r *Replacement) Ingest(ctx context.Context) error {
	if r.done {
		return fmt.Errorf("kv: ingest: replacement already finished")
	}
	for i, w := range r.ws {
		r.ws[i] = nil
		if err := w.Close(); err != nil {
			r.Abort()
			return fmt.Errorf("kv: ingest: finish sstable: %w", err)
		}
	}
	r.done = true
	if err := r.e.db.Ingest(ctx, r.paths); err != nil {
		r.removeFiles()
		return fmt.Errorf("kv: ingest: %w", err)
	}
	return nil // Ingest removed the input files
}

// Abort drops the replacement: nothing is changed. It is safe to call after
// Ingest (then it does nothing).
func (r *Replacement) Abort() {
	if r.done {
		return
	}
	r.done = true
	for i, w := range r.ws {
		if w != nil {
			_ = w.Close()
			r.ws[i] = nil
		}
	}
	r.removeFiles()
}

func (r *Replacement) removeFiles() {
	for _, p := range r.paths {
		_ = r.e.fs.Remove(p)
	}
}
