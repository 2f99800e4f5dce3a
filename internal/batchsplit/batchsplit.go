package batchsplit

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Piece is one request of a batch, or its part within one range.
type Piece struct {
	// Index is the request's index in the batch: every part of it answers
	// to this index.
	Index int
	Req   *rspb.RequestUnion
}

// Pieces numbers a batch's requests: piece i is reqs[i].
func Pieces(reqs []*rspb.RequestUnion) []Piece {
	out := make([]Piece, len(reqs))
	for i, q := range reqs {
		out[i] = Piece{Index: i, Req: q}
	}
	return out
}

// Keyspace is what splitting needs of a router: its ranges (of type R),
// and the keys its requests touch.
type Keyspace[R any] interface {
	// Locate returns the range holding key (it may look it up).
	Locate(ctx context.Context, key []byte) (R, error)
	// RangeID is the range's ID: pieces of one ID form one command.
	RangeID(r R) uint64
	// RangeEnd is the range's end key (exclusive); nil for the last
	// range, which runs to the end of the keyspace.
	RangeEnd(r R) []byte
	// Span is the keys a request touches: the key start (point), or
	// [start, end), end nil meaning the end of the keyspace.
	Span(q *rspb.RequestUnion) (start, end []byte, point bool)
	// Clip returns a copy of span request q restricted to [start, end)
	// (end nil: to the end of the keyspace).
	Clip(q *rspb.RequestUnion, start, end []byte) *rspb.RequestUnion
}

// Ranged is a piece and the range it goes to.
type Ranged[R any] struct {
	Range R
	Piece Piece
}

// Split resolves p to the range(s) holding it: a point request to the
// range of its key, a span request to every range it overlaps, clipped at
// the range bounds, in key order. An empty span yields nothing.
func Split[R any](ctx context.Context, ks Keyspace[R], p Piece) ([]Ranged[R], error) {
	start, end, point := ks.Span(p.Req)
	if point {
		r, err := ks.Locate(ctx, start)
		if err != nil {
			return nil, err
		}
		return []Ranged[R]{{Range: r, Piece: p}}, nil
	}
	var out []Ranged[R]
	for cur := start; end == nil || bytes.Compare(cur, end) < 0; {
		r, err := ks.Locate(ctx, cur)
		if err != nil {
			return nil, err
		}
		re := ks.RangeEnd(r)
		if re != nil && bytes.Compare(re, cur) <= 0 {
			return nil, fmt.Errorf("range r%d, located for key %q, ends at %q, at or before the key: it does not hold the key", ks.RangeID(r), cur, re)
		}
		pe := end
		if re != nil && (pe == nil || bytes.Compare(re, pe) < 0) {
			pe = re
		}
		out = append(out, Ranged[R]{Range: r, Piece: Piece{Index: p.Index, Req: ks.Clip(p.Req, cur, pe)}})
		if re == nil {
			break
		}
		cur = re
	}
	return out, nil
}

// Group is the pieces that go to one range as one command.
type Group[R any] struct {
	Range   R
	RangeID uint64
	Pieces  []Piece
}

// Requests is the command of a group's pieces: their requests, in order.
func Requests(pieces []Piece) []*rspb.RequestUnion {
	out := make([]*rspb.RequestUnion, len(pieces))
	for i, p := range pieces {
		out[i] = p.Req
	}
	return out
}

// GroupByRange splits pieces (Split) and groups the parts by range: groups
// in the order their ranges are first met, parts within a group in the
// order of pieces.
func GroupByRange[R any](ctx context.Context, ks Keyspace[R], pieces []Piece) ([]*Group[R], error) {
	var groups []*Group[R]
	byRange := map[uint64]*Group[R]{}
	for _, p := range pieces {
		parts, err := Split(ctx, ks, p)
		if err != nil {
			return nil, err
		}
		for _, sp := range parts {
			id := ks.RangeID(sp.Range)
			g := byRange[id]
			if g == nil {
				g = &Group[R]{Range: sp.Range, RangeID: id}
				byRange[id] = g
				groups = append(groups, g)
			}
			g.Pieces = append(g.Pieces, sp.Piece)
		}
	}
	return groups, nil
}

// Send sends every group with send, which answers a group with its parts
// per piece index: one group in the caller's goroutine, several in
// parallel goroutines, all finished before Send returns. It collects the
// parts per piece index, group by group in order; its error is the first
// group's error in group order.
func Send[R, T any](groups []*Group[R], send func(g *Group[R]) (map[int][]T, error)) (map[int][]T, error) {
	results := make([]map[int][]T, len(groups))
	errs := make([]error, len(groups))
	if len(groups) == 1 {
		results[0], errs[0] = send(groups[0])
	} else {
		var wg sync.WaitGroup
		for gi, g := range groups {
			wg.Go(func() { results[gi], errs[gi] = send(g) })
		}
		wg.Wait()
	}
	merged := map[int][]T{}
	for gi := range groups {
		if errs[gi] != nil {
			return nil, errs[gi]
		}
		for idx, parts := range results[gi] {
			merged[idx] = append(merged[idx], parts...)
		}
	}
	return merged, nil
}

// SortByStart orders one request's parts by their start keys (start),
// keeping the order of equal keys.
func SortByStart[T any](parts []T, start func(T) []byte) {
	slices.SortStableFunc(parts, func(a, b T) int { return bytes.Compare(start(a), start(b)) })
}
