package kv

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// View is a consistent point-in-time Reader, like a Snapshot, pinned by a
// Pebble iterator instead: NewView opens one unpositioned iterator over the
// whole engine, and every iterator the View hands out is a clone of it.
// A Pebble iterator reads at the sequence number and over the memtables
// and sstables (the read state) current when it was created, and a clone
// shares both (Iterator.Clone), so every read through one View sees the
// same state, and nothing committed after NewView. That is all a Snapshot
// gives a short read; what a View saves is the Snapshot's bookkeeping: a
// Snapshot enters and leaves the DB's list of snapshots under the DB
// mutex, and its Close reconsiders compactions (Pebble recomputes level
// scores, allocating), which on a node serving many point reads was a
// visible share of each one.
//
// A View pins the sstables and memtables of its read state until Close
// (as an open iterator does), so it is for reads that end soon, not for
// long-lived ones (snapshots sent to other replicas use Snapshot). It may
// be read by one goroutine at a time and must be closed, after every
// iterator it handed out.
type View struct {
	base *pebble.Iterator
}

var _ Reader = (*View)(nil)

// NewView returns a View of the engine's current state. The caller must
// Close it.
func (e *Engine) NewView() (*View, error) {
	it, err := e.db.NewIter(nil)
	if err != nil {
		return nil, fmt.Errorf("kv: new view: %w", err)
	}
	return &View{base: it}, nil
}

// NewIter returns a raw iterator over engine keys in [lower, upper) of the
// view. The caller must Close it (before the View).
func (v *View) NewIter(lower, upper []byte) (*pebble.Iterator, error) {
	it, err := v.base.Clone(pebble.CloneOptions{IterOptions: &pebble.IterOptions{LowerBound: lower, UpperBound: upper}})
	if err != nil {
		return nil, fmt.Errorf("kv: new view iterator: %w", err)
	}
	return it, nil
}

// GetRaw returns a copy of the value of a raw engine key in the view.
func (v *View) GetRaw(key []byte) (val []byte, found bool, err error) {
	it, err := v.base.Clone(pebble.CloneOptions{IterOptions: &pebble.IterOptions{LowerBound: key, UpperBound: keyUpperBound(key)}})
	if err != nil {
		return nil, false, fmt.Errorf("kv: get %x: %w", key, err)
	}
	defer closeIter(it, &err)
	if !it.First() {
		if err := it.Error(); err != nil {
			return nil, false, fmt.Errorf("kv: get %x: %w", key, err)
		}
		return nil, false, nil
	}
	raw, err := it.ValueAndErr()
	if err != nil {
		return nil, false, fmt.Errorf("kv: get %x: %w", key, err)
	}
	return cloneBytes(raw), true, nil
}

// keyUpperBound is key followed by 0x00, the smallest key above it: the
// span [key, keyUpperBound(key)) holds key alone.
func keyUpperBound(key []byte) []byte {
	out := make([]byte, len(key)+1)
	copy(out, key)
	return out
}

// Close releases the view (its sstables and memtables, unless an iterator
// still open holds them).
func (v *View) Close() error {
	if err := v.base.Close(); err != nil {
		return fmt.Errorf("kv: close view: %w", err)
	}
	return nil
}
