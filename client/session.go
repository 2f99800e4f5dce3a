package client

import (
	"context"
	"iter"
	"sync"

	"github.com/rangestore/rangestore/proto/rspb"
)

// maxGivenBookmarks bounds the bookmarks a Session keeps from NewSession
// and Observe (whose order the client cannot tell).
const maxGivenBookmarks = 16

// Session carries causality between the calls made through it: every
// write's bookmark, and the bookmark of every version a read returned,
// goes into its later reads, which are Causal by default. So its reads,
// served by the nearest replica, see its own writes and never go back in
// time (read-your-writes, monotonic reads), on any replica. A Session is
// safe for concurrent use; its calls are those of DB. Reads given an
// explicit read mode (Strong, BoundedStaleness) keep it; their answers
// still feed the session's bookmark.
type Session struct {
	db *DB

	mu sync.Mutex
	// given: bookmarks handed in (NewSession, Observe), newest last.
	given [][]byte
	// best is the newest bookmark the session's own calls returned.
	best   []byte
	bestTS Timestamp
}

// NewSession starts a session, carrying bookmarks from elsewhere (e.g.
// another process's Session.Bookmark) if given.
func (db *DB) NewSession(bookmarks ...[]byte) *Session {
	s := &Session{db: db}
	s.Observe(bookmarks...)
	return s
}

// Observe adds bookmarks from elsewhere to the session.
func (s *Session) Observe(bookmarks ...[]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range bookmarks {
		if len(b) > 0 {
			s.given = append(s.given, append([]byte(nil), b...))
		}
	}
	if n := len(s.given); n > maxGivenBookmarks {
		s.given = s.given[n-maxGivenBookmarks:]
	}
}

// Bookmark is the session's newest bookmark (from its own calls; else the
// last one given; nil if none): hand it to another session to carry this
// one's causality there.
func (s *Session) Bookmark() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.best != nil {
		return s.best
	}
	if n := len(s.given); n > 0 {
		return s.given[n-1]
	}
	return nil
}

// bookmarks are what a Causal read of the session carries.
func (s *Session) bookmarks() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([][]byte(nil), s.given...)
	if s.best != nil {
		out = append(out, s.best)
	}
	return out
}

// observe records a bookmark a call returned, with the newest timestamp
// it covers (a nil session or bookmark: nothing).
func (s *Session) observe(bm []byte, ts Timestamp) {
	if s == nil || len(bm) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.best == nil || s.bestTS.Less(ts) {
		s.best, s.bestTS = bm, ts
	}
}

// readDefaults makes a read of the session Causal unless it chose a mode,
// and adds the session's bookmarks to a Causal one.
func (s *Session) readDefaults(o *readOpts) {
	if s == nil {
		return
	}
	if !o.modeSet && o.asOf == nil {
		o.mode, o.modeSet = rspb.ReadMode_CAUSAL, true
	}
	if o.mode == rspb.ReadMode_CAUSAL {
		o.bookmarks = append(o.bookmarks, s.bookmarks()...)
	}
}

// Get is DB.Get within the session.
func (s *Session) Get(ctx context.Context, key []byte, opts ...ReadOption) (KeyValue, error) {
	return s.db.get(ctx, s, key, opts)
}

// Put is DB.Put within the session.
func (s *Session) Put(ctx context.Context, key, value []byte) (WriteResult, error) {
	return s.db.put(ctx, s, key, value)
}

// Delete is DB.Delete within the session.
func (s *Session) Delete(ctx context.Context, key []byte) (bool, error) {
	return s.db.delete(ctx, s, key)
}

// ConditionalPut is DB.ConditionalPut within the session.
func (s *Session) ConditionalPut(ctx context.Context, key, value []byte, cond Condition) error {
	return s.db.cput(ctx, s, "conditional_put", key, value, cond, false)
}

// ConditionalDelete is DB.ConditionalDelete within the session.
func (s *Session) ConditionalDelete(ctx context.Context, key []byte, cond Condition) error {
	return s.db.cput(ctx, s, "conditional_delete", key, nil, cond, true)
}

// Increment is DB.Increment within the session.
func (s *Session) Increment(ctx context.Context, key []byte, delta int64) (int64, error) {
	return s.db.increment(ctx, s, key, delta)
}

// DeleteRange is DB.DeleteRange within the session.
func (s *Session) DeleteRange(ctx context.Context, start, end []byte) (int64, error) {
	return s.db.deleteRange(ctx, s, start, end)
}

// Batch is DB.Batch within the session.
func (s *Session) Batch(ctx context.Context, b *Batch, opts ...ReadOption) ([]Result, error) {
	return s.db.batch(ctx, s, b, opts)
}

// Scan is DB.Scan within the session.
func (s *Session) Scan(ctx context.Context, start, end []byte, opts ...ReadOption) iter.Seq2[KeyValue, error] {
	return s.db.scan(ctx, s, start, end, opts)
}
