package ranges

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/loadsplit"
)

// splitTracking is a replica's input to the split queue.
type splitTracking struct {
	load *loadsplit.Decider // nil when load-based splitting is off
	// scannedAt is the size estimate at the last size scan that found no
	// split was needed; the range is scanned again only after it grew.
	scannedAt atomic.Int64
	// hotKey is the last single hot key reported (for `range list`).
	hotKey atomic.Pointer[[]byte]
}

func (s *Store) newSplitTracking(rangeID uint64) *splitTracking {
	t := &splitTracking{}
	if s.cfg.LoadSplitQPS > 0 {
		t.load = loadsplit.NewDecider(loadsplit.Config{QPSThreshold: s.cfg.LoadSplitQPS, Duration: s.cfg.LoadSplitDuration},
			loadsplit.NewRand(int64(rangeID)))
	}
	return t
}

// recordLoad notes requests served here as leaseholder.
func (t *splitTracking) recordLoad(now time.Time, reqs []*rspb.RequestUnion) {
	if t == nil || t.load == nil {
		return
	}
	for _, r := range reqs {
		start, end, point := RequestSpan(r)
		if point {
			end = nil
		}
		t.load.Record(now, start, end)
	}
}

// splitLoop is the split queue: every interval the leaseholder of each user
// range checks its size (split at the byte midpoint above RangeMaxBytes)
// and its load (split at the key the load decider found; a single hot key
// is reported, not split).
func (s *Store) splitLoop(ctx context.Context, interval time.Duration) {
	s.every(interval, func() {
		if s.NodeID() == 0 || s.stopping.Load() || s.getSender() == nil {
			return
		}
		held := s.heldDescriptors()
		if len(held) == 0 {
			return
		}
		byStart := s.localByStart()
		for _, d := range held {
			if !keys.IsUserKey(d.StartKey) {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if r := s.replica(d.RangeId); r != nil {
				r.maybeSplit(ctx, byStart)
			}
		}
	})
}

// maybeSplit is one round of the split queue for one range: it gathers
// the facts, and runSplitDecisions decides (decideSplit) and acts through
// the closures here.
func (r *Replica) maybeSplit(ctx context.Context, byStart map[string]*Replica) {
	desc := r.desc()
	if desc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := r.store.cfg.TimeSource.Now()
	in := splitInput{RangeID: r.rangeID, Size: r.sm.size.Load(), ScannedAt: r.split.scannedAt.Load(),
		MaxBytes: r.store.cfg.RangeMaxBytes, MinBytes: r.store.cfg.RangeMinBytes, LoadSplitQPS: r.store.cfg.LoadSplitQPS}
	t := r.split.load
	if t != nil {
		l := &loadFacts{QPS: t.QPS(now)}
		if key, ok := t.MaybeSplitKey(now); ok {
			l.SplitKey = key
		} else if key, share, ok := t.HotKey(now); ok {
			l.HotKey, l.HotKeyShare = key, share
		}
		in.Load = l
	}
	rm := byStart[string(desc.EndKey)]
	if rm != nil {
		rd := rm.desc()
		in.Right = &neighbourFacts{RangeID: rd.RangeId, StartKey: rd.StartKey, Size: rm.sm.size.Load(), Sticky: rd.Sticky,
			FrozenInto: rm.sm.frozen.Load(), Colocated: sameNodes(desc, rd)}
	}
	d := runSplitDecisions(in, splitActions{
		scan: func() sizeScan {
			r.store.crashPoint("size-split-scan")
			key, total, err := r.store.sizeSplitKey(desc)
			if err != nil {
				r.store.log.Warn("size split: scanning range", "range", r.rangeID, "err", err)
			}
			return sizeScan{Key: key, Total: total, Err: err}
		},
		split: func(key []byte, by string) bool {
			ok := r.store.splitAt(ctx, desc, key, by)
			if ok && by == "load" {
				t.Reset()
			}
			return ok
		},
		merge: func() bool { return r.store.mergeRight(ctx, desc, rm.desc()) },
		note: func(d splitDecision) {
			if d.NoteScanned {
				r.split.scannedAt.Store(in.Size)
			}
			r.store.log.Debug("split queue", "range", r.rangeID, "action", d.Action.String(), "reason", d.Reason)
		},
	})
	if d.Action != splitNone || t == nil {
		return
	}
	if d.HotKey == nil {
		r.split.hotKey.Store(nil)
		return
	}
	key := d.HotKey
	if prev := r.split.hotKey.Load(); prev == nil || !bytes.Equal(*prev, key) {
		r.store.log.Warn("hot key: load is concentrated on one key and cannot be split", "range", r.rangeID,
			"key", keys.Pretty(key), "share", in.Load.HotKeyShare, "qps", in.Load.QPS)
		if r.store.cfg.Metrics != nil {
			r.store.cfg.Metrics.hotKeys.Inc()
		}
	}
	r.split.hotKey.Store(&key)
}

// mergeRight asks this range (through the normal path) to merge its right
// neighbour rd into it.
func (s *Store) mergeRight(ctx context.Context, desc, rd *rspb.RangeDescriptor) bool {
	resp := s.Send(ctx, &rspb.RangeRequest{RangeId: desc.RangeId, Admin: &rspb.RangeRequest_AdminMerge{AdminMerge: &rspb.AdminMergeRequest{ExpectedGeneration: desc.Generation}}})
	if resp.Error != nil {
		s.log.Warn("merge attempt failed", "left", desc.RangeId, "right", rd.RangeId, "err", resp.Error.Message)
		return false
	}
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.splitsBy.WithLabelValues("merge").Inc()
	}
	return true
}

// splitAt splits the range at key through the normal path (lease, latches,
// the generation the decision was made on).
func (s *Store) splitAt(ctx context.Context, desc *rspb.RangeDescriptor, key []byte, reason string) bool {
	resp := s.Send(ctx, &rspb.RangeRequest{RangeId: desc.RangeId, Admin: &rspb.RangeRequest_AdminSplit{AdminSplit: &rspb.AdminSplitRequest{SplitKey: key, ExpectedGeneration: desc.Generation}}})
	if resp.Error != nil {
		s.log.Info("split attempt failed", "range", desc.RangeId, "reason", reason, "key", keys.Pretty(key), "err", resp.Error.Message)
		return false
	}
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.splitsBy.WithLabelValues(reason).Inc()
	}
	s.log.Info("range split by the split queue", "range", desc.RangeId, "reason", reason, "key", keys.Pretty(key),
		"right", resp.GetAdminSplit().GetRight().GetRangeId())
	return true
}

// sizeSplitKey scans the range's data and returns the first key at or
// after the byte midpoint (never the range's first key) and the total
// size. Versions of one key stay together.
func (s *Store) sizeSplitKey(desc *rspb.RangeDescriptor) ([]byte, int64, error) {
	snap := s.eng.NewSnapshot()
	defer snap.Close()
	total, err := spanBytes(snap, desc.StartKey, desc.EndKey)
	if err != nil || total == 0 {
		return nil, total, err
	}
	var acc int64
	var key, last []byte
	err = kv.IterateDataSpan(snap, desc.StartKey, desc.EndKey, func(k, v []byte) error {
		uk, _, err := kv.DecodeMVCCKey(k)
		if err != nil {
			return err
		}
		if acc >= total/2 && last != nil && !bytes.Equal(uk, last) && bytes.Compare(uk, desc.StartKey) > 0 {
			key = uk
			return errStopIter
		}
		acc += int64(len(k) + len(v))
		last = uk
		return nil
	})
	if err != nil && !errors.Is(err, errStopIter) {
		return nil, total, err
	}
	return key, total, nil
}

// errStopIter ends an iteration early.
var errStopIter = errors.New("stop")

// spanBytes is the size of the data in [start, end): engine keys plus values.
func spanBytes(r kv.Reader, start, end []byte) (int64, error) {
	var n int64
	err := kv.IterateDataSpan(r, start, end, func(k, v []byte) error {
		n += int64(len(k) + len(v))
		return nil
	})
	return n, err
}
