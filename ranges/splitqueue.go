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
			rand.New(rand.NewSource(int64(rangeID)*7919+time.Now().UnixNano())))
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

func (s *Store) maybeSplit(ctx context.Context, rangeID uint64, byStart map[string]*stateMachine) {
	m, st := s.replica(rangeID), s.state(rangeID)
	if m == nil || st == nil || st.split == nil {
		return
	}
	desc := m.desc.Load()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := time.Now()
	if maxBytes := s.cfg.RangeMaxBytes; maxBytes > 0 {
		size := m.size.Load()
		if size > maxBytes && size > st.split.scannedAt.Load()+maxBytes/8 {
			s.crashPoint("size-split-scan")
			key, total, err := s.sizeSplitKey(desc)
			switch {
			case err != nil:
				s.log.Warn("size split: scanning range", "range", rangeID, "err", err)
			case key == nil || total <= maxBytes:
				// The estimate overcounts (overwrites, deletions): remember
				// and wait for growth before scanning again.
				st.split.scannedAt.Store(size)
			default:
				if s.splitAt(ctx, desc, key, "size") {
					return
				}
			}
		}
	}
	if s.maybeMerge(ctx, m, st, desc, now, byStart[string(desc.EndKey)]) {
		return
	}
	if t := st.split.load; t != nil {
		if key, ok := t.MaybeSplitKey(now); ok {
			if s.splitAt(ctx, desc, key, "load") {
				t.Reset()
			}
			return
		}
		if key, share, ok := t.HotKey(now); ok {
			prev := st.split.hotKey.Load()
			if prev == nil || !bytes.Equal(*prev, key) {
				s.log.Warn("hot key: load is concentrated on one key and cannot be split", "range", rangeID,
					"key", keys.Pretty(key), "share", share, "qps", t.QPS(now))
				if s.cfg.Metrics != nil {
					s.cfg.Metrics.hotKeys.Inc()
				}
			}
			st.split.hotKey.Store(&key)
		} else {
			st.split.hotKey.Store(nil)
		}
	}
}

// maybeMerge merges the range with its right neighbour when a merge into it
// was started and not finished (the neighbour is frozen for it), or when
// both are small and idle enough (RangeMinBytes).
func (s *Store) maybeMerge(ctx context.Context, m *stateMachine, st *replicaState, desc *rspb.RangeDescriptor, now time.Time, rm *stateMachine) bool {
	if rm == nil {
		return false
	}
	rd := rm.desc.Load()
	unfinished := rm.frozen.Load() == desc.RangeId
	if !unfinished {
		minBytes, maxBytes := s.cfg.RangeMinBytes, s.cfg.RangeMaxBytes
		size, rsize := m.size.Load(), rm.size.Load()
		switch {
		case minBytes <= 0 || size >= minBytes || rsize >= minBytes || (maxBytes > 0 && size+rsize >= maxBytes/2):
			return false
		case !keys.IsUserKey(rd.StartKey) || rd.Sticky || rm.frozen.Load() != 0 || !sameNodes(desc, rd):
			return false
		case st.split.load != nil && st.split.load.QPS(now) >= s.cfg.LoadSplitQPS/2:
			return false
		}
	}
	resp := s.Send(ctx, &rspb.RangeRequest{RangeId: desc.RangeId, AdminMerge: &rspb.AdminMergeRequest{ExpectedGeneration: desc.Generation}})
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
	resp := s.Send(ctx, &rspb.RangeRequest{RangeId: desc.RangeId, AdminSplit: &rspb.AdminSplitRequest{SplitKey: key, ExpectedGeneration: desc.Generation}})
	if resp.Error != nil {
		s.log.Info("split attempt failed", "range", desc.RangeId, "reason", reason, "key", keys.Pretty(key), "err", resp.Error.Message)
		return false
	}
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.splitsBy.WithLabelValues(reason).Inc()
	}
	s.log.Info("range split by the split queue", "range", desc.RangeId, "reason", reason, "key", keys.Pretty(key),
		"right", resp.AdminSplit.GetRight().GetRangeId())
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
