package ranges

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
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
			rand.New(rand.NewSource(int64(rangeID))))
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
			s.maybeSplit(ctx, d.RangeId, byStart)
		}
	})
}

// localByStart indexes the local replicas by start key.
func (s *Store) localByStart() map[string]*stateMachine {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]*stateMachine, len(s.sms))
	for _, m := range s.sms {
		if d := m.desc.Load(); d != nil && !m.merged.Load() {
			out[string(d.StartKey)] = m
		}
	}
	return out
}

// replicaList returns the local replicas at this moment (a copy: callers
// iterate without holding s.mu).
func (s *Store) replicaList() []*stateMachine {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*stateMachine, 0, len(s.sms))
	for _, m := range s.sms {
		out = append(out, m)
	}
	return out
}

// localEndingAt returns the descriptor of the local replica whose range
// ends at key (nil if none here).
func (s *Store) localEndingAt(key []byte) *rspb.RangeDescriptor {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, m := range s.sms {
		if d := m.desc.Load(); d != nil && !m.merged.Load() && bytes.Equal(d.EndKey, key) {
			return d
		}
	}
	return nil
}

// maybeSplit is one round of the split queue for one range: it gathers
// the facts, and runSplitDecisions decides (decideSplit) and acts through
// the closures here.
func (s *Store) maybeSplit(ctx context.Context, rangeID uint64, byStart map[string]*stateMachine) {
	m, st := s.replica(rangeID), s.state(rangeID)
	if m == nil || st == nil || st.split == nil {
		return
	}
	desc := m.desc.Load()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := s.cfg.TimeSource.Now()
	in := splitInput{RangeID: rangeID, Size: m.size.Load(), ScannedAt: st.split.scannedAt.Load(),
		MaxBytes: s.cfg.RangeMaxBytes, MinBytes: s.cfg.RangeMinBytes, LoadSplitQPS: s.cfg.LoadSplitQPS}
	t := st.split.load
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
		rd := rm.desc.Load()
		in.Right = &neighbourFacts{RangeID: rd.RangeId, StartKey: rd.StartKey, Size: rm.size.Load(), Sticky: rd.Sticky,
			FrozenInto: rm.frozen.Load(), Colocated: sameNodes(desc, rd)}
	}
	d := runSplitDecisions(in, splitActions{
		scan: func() sizeScan {
			s.crashPoint("size-split-scan")
			key, total, err := s.sizeSplitKey(desc)
			if err != nil {
				s.log.Warn("size split: scanning range", "range", rangeID, "err", err)
			}
			return sizeScan{Key: key, Total: total, Err: err}
		},
		split: func(key []byte, by string) bool {
			ok := s.splitAt(ctx, desc, key, by)
			if ok && by == "load" {
				t.Reset()
			}
			return ok
		},
		merge: func() bool { return s.mergeRight(ctx, desc, rm.desc.Load()) },
		note: func(d splitDecision) {
			if d.NoteScanned {
				st.split.scannedAt.Store(in.Size)
			}
			s.log.Debug("split queue", "range", rangeID, "action", d.Action.String(), "reason", d.Reason)
		},
	})
	if d.Action != splitNone || t == nil {
		return
	}
	if d.HotKey == nil {
		st.split.hotKey.Store(nil)
		return
	}
	key := d.HotKey
	if prev := st.split.hotKey.Load(); prev == nil || !bytes.Equal(*prev, key) {
		s.log.Warn("hot key: load is concentrated on one key and cannot be split", "range", rangeID,
			"key", keys.Pretty(key), "share", in.Load.HotKeyShare, "qps", in.Load.QPS)
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.hotKeys.Inc()
		}
	}
	st.split.hotKey.Store(&key)
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
