package leases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Defaults for node liveness.
const (
	DefaultLivenessTTL       = 2000 * time.Millisecond
	DefaultHeartbeatInterval = 400 * time.Millisecond
)

// KV runs requests on internal keys (the gateway's router).
type KV interface {
	Send(ctx context.Context, reqs []*rspb.RequestUnion) ([]*rspb.ResponseUnion, error)
}

// LivenessConfig configures a node's liveness.
type LivenessConfig struct {
	NodeID            func() uint64 // 0 until the node is bootstrapped
	Clock             *Clock
	TTL               time.Duration // record validity after a heartbeat
	HeartbeatInterval time.Duration
	Logger            *slog.Logger
}

// Liveness maintains this node's liveness record in the system range and
// reads other nodes' records.
//
// A heartbeat is a conditional put of the record with a later expiration,
// conditioned on the exact bytes last seen, so it fails if anyone changed
// the record meanwhile (an epoch increment). IncrementEpoch is the same
// conditional put with epoch+1, done only once the record has expired by the
// caller's clock; it ends every epoch lease of that node at once.
type Liveness struct {
	cfg LivenessConfig
	db  KV

	mu      sync.Mutex
	self    *rspb.Liveness
	selfRaw []byte
	records map[uint64]cachedRecord
	stopc   chan struct{}
	done    chan struct{}
	// draining: heartbeats mark the record draining (the node is shutting
	// down: no lease goes to it, and it takes none).
	draining atomic.Bool
}

type cachedRecord struct {
	rec *rspb.Liveness
	raw []byte
}

// NewLiveness returns a stopped Liveness.
func NewLiveness(cfg LivenessConfig, db KV) *Liveness {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultLivenessTTL
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Liveness{cfg: cfg, db: db, records: map[uint64]cachedRecord{}}
}

// TTL is the record validity after a heartbeat.
func (l *Liveness) TTL() time.Duration { return l.cfg.TTL }

// Start runs the heartbeat loop until Stop.
func (l *Liveness) Start() {
	l.stopc, l.done = make(chan struct{}), make(chan struct{})
	go l.loop()
}

// Stop ends the heartbeat loop.
func (l *Liveness) Stop() {
	if l.stopc != nil {
		close(l.stopc)
		<-l.done
		l.stopc = nil
	}
}

func (l *Liveness) loop() {
	defer close(l.done)
	t := l.cfg.Clock.TimeSource().NewTicker(l.cfg.HeartbeatInterval)
	defer t.Stop()
	var failingSince time.Time // first failed heartbeat of the current run of failures
	for {
		if l.cfg.NodeID() != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), l.cfg.TTL)
			prev := l.Self()
			if err := l.Heartbeat(ctx); err != nil {
				if failingSince.IsZero() {
					failingSince = l.cfg.Clock.TimeSource().Now()
				}
				l.cfg.Logger.Debug("liveness heartbeat failed", "err", err)
			} else if !failingSince.IsZero() {
				// For failover timelines (--log-level debug): how long the
				// record went without extension, and whether it lapsed.
				l.cfg.Logger.Debug("liveness heartbeat recovered", "failing_for", l.cfg.Clock.TimeSource().Since(failingSince),
					"self_lapsed", prev != nil && prev.GetExpiration().GetWallTime() < l.cfg.Clock.Now().WallTime)
				failingSince = time.Time{}
			}
			// Keep every node's record fresh in the cache: leases of other
			// holders are judged (and idle ranges kept quiet) from it.
			if err := l.refreshAll(ctx); err != nil {
				l.cfg.Logger.Debug("reading liveness records failed", "err", err)
			}
			cancel()
		}
		select {
		case <-l.stopc:
			return
		case <-t.C():
		}
	}
}

// Self returns this node's last successfully written record (nil if none):
// the node's epoch leases are valid until its expiration.
func (l *Liveness) Self() *rspb.Liveness {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.self
}

func liveTS(t kv.Timestamp) *rspb.Timestamp {
	return &rspb.Timestamp{WallTime: t.WallTime, Logical: t.Logical}
}

// Heartbeat extends this node's record (creating it at epoch 1).
func (l *Liveness) Heartbeat(ctx context.Context) error {
	id := l.cfg.NodeID()
	l.mu.Lock()
	cur, raw := l.self, l.selfRaw
	l.mu.Unlock()
	for attempt := 0; attempt < 3; attempt++ {
		if cur == nil {
			rec, r, err := l.read(ctx, id)
			if err != nil {
				return err
			}
			cur, raw = rec, r
		}
		next := &rspb.Liveness{NodeId: id, Epoch: 1, Draining: l.draining.Load()}
		if cur != nil {
			// The membership is the operator's (SetMembership): kept.
			next.Epoch, next.Membership = cur.Epoch, cur.Membership
		}
		now := l.cfg.Clock.Now()
		next.Expiration = liveTS(kv.Timestamp{WallTime: now.WallTime + int64(l.cfg.TTL)})
		ok, actual, actualRaw, err := l.cput(ctx, id, next, raw)
		if err != nil {
			return err
		}
		if ok {
			nb, _ := proto.Marshal(next)
			l.mu.Lock()
			l.self, l.selfRaw = next, nb
			l.records[id] = cachedRecord{rec: next, raw: nb}
			l.mu.Unlock()
			return nil
		}
		if actual != nil && cur != nil && actual.Epoch > cur.Epoch {
			l.cfg.Logger.Warn("liveness epoch was incremented by another node; leases of the old epoch are gone",
				"old_epoch", cur.Epoch, "new_epoch", actual.Epoch)
		}
		cur, raw = actual, actualRaw
	}
	return errors.New("liveness heartbeat: record keeps changing")
}

// SetDraining marks this node draining (or not) in its record at once, and
// in every later heartbeat.
func (l *Liveness) SetDraining(ctx context.Context, draining bool) error {
	l.draining.Store(draining)
	return l.Heartbeat(ctx)
}

// Draining reports whether this node marks itself draining.
func (l *Liveness) Draining() bool { return l.draining.Load() }

// TakesLeases reports whether a lease (or Raft leadership handed over
// with one) may go to the node of rec: it has a record, is not draining,
// and is not being or has not been decommissioned.
func TakesLeases(rec *rspb.Liveness) bool {
	return rec != nil && !rec.Draining && rec.Membership == rspb.LivenessMembership_LIVENESS_ACTIVE
}

// SetMembership changes a node's membership in its liveness record (any
// node may do it for any other, which may be down) by a conditional put on
// the record's exact bytes, retried while heartbeats change them. allowed
// decides from the current record (nil: none) whether the change may
// happen; its error is returned unchanged and nothing is written. A node
// without a record gets one at epoch 1 that is already expired. It returns
// the record written (or the current one, when it already had want).
func (l *Liveness) SetMembership(ctx context.Context, nodeID uint64, want rspb.LivenessMembership, allowed func(cur *rspb.Liveness) error) (*rspb.Liveness, error) {
	for attempt := 0; attempt < 10; attempt++ {
		cur, raw, err := l.read(ctx, nodeID)
		if err != nil {
			return nil, err
		}
		if err := allowed(cur); err != nil {
			return cur, err
		}
		if cur != nil && cur.Membership == want {
			return cur, nil
		}
		next := &rspb.Liveness{NodeId: nodeID, Epoch: 1, Expiration: &rspb.Timestamp{}}
		if cur != nil {
			next = proto.Clone(cur).(*rspb.Liveness)
		}
		next.Membership = want
		ok, _, _, err := l.cput(ctx, nodeID, next, raw)
		if err != nil {
			return nil, err
		}
		if ok {
			l.cfg.Logger.Info("liveness membership changed", "node", nodeID, "from", cur.GetMembership(), "to", want)
			return next, nil
		}
		// A heartbeat (or another change) came first: judge again.
	}
	return nil, fmt.Errorf("liveness record of n%d keeps changing: membership not changed", nodeID)
}

// Get returns a node's record: from the cache if it is still live there,
// else read from the system range (fresh forces the read).
func (l *Liveness) Get(ctx context.Context, nodeID uint64, fresh bool) (*rspb.Liveness, error) {
	l.mu.Lock()
	c, ok := l.records[nodeID]
	l.mu.Unlock()
	if ok && !fresh && l.cfg.Clock.Now().Less(ts(c.rec.Expiration)) {
		return c.rec, nil
	}
	rec, _, err := l.read(ctx, nodeID)
	return rec, err
}

// Cached returns the last known record of a node without I/O (nil if none).
func (l *Liveness) Cached(nodeID uint64) *rspb.Liveness {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.records[nodeID].rec
}

// IncrementEpoch moves an expired node to its next epoch. It fails if the
// record is not expired by this node's clock or changed meanwhile.
func (l *Liveness) IncrementEpoch(ctx context.Context, nodeID uint64) (*rspb.Liveness, error) {
	rec, raw, err := l.read(ctx, nodeID)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("node n%d has no liveness record", nodeID)
	}
	if now := l.cfg.Clock.Now(); now.Less(ts(rec.Expiration)) || now == ts(rec.Expiration) {
		return nil, fmt.Errorf("node n%d is live until %s", nodeID, ts(rec.Expiration))
	}
	next := proto.Clone(rec).(*rspb.Liveness)
	next.Epoch++
	ok, actual, _, err := l.cput(ctx, nodeID, next, raw)
	if err != nil {
		return nil, err
	}
	if !ok {
		if actual != nil && actual.Epoch > rec.Epoch {
			return actual, nil // someone else incremented it
		}
		return nil, fmt.Errorf("node n%d heartbeated meanwhile", nodeID)
	}
	l.cfg.Logger.Info("incremented liveness epoch", "node", nodeID, "epoch", next.Epoch, "expired_wall", rec.GetExpiration().GetWallTime())
	return next, nil
}

func (l *Liveness) read(ctx context.Context, nodeID uint64) (*rspb.Liveness, []byte, error) {
	resps, err := l.db.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.LivenessKey(nodeID)}}}})
	if err != nil {
		return nil, nil, err
	}
	g := resps[0].GetGet()
	if !g.GetFound() {
		return nil, nil, nil
	}
	rec := &rspb.Liveness{}
	if err := proto.Unmarshal(g.Kv.Value, rec); err != nil {
		return nil, nil, err
	}
	l.remember(nodeID, rec, g.Kv.Value)
	return rec, g.Kv.Value, nil
}

// refreshAll reads every node's liveness record (one scan) into the cache.
func (l *Liveness) refreshAll(ctx context.Context) error {
	end := append([]byte(nil), keys.LivenessPrefix...)
	end[len(end)-1]++
	resps, err := l.db.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: keys.LivenessPrefix, EndKey: end}}}})
	if err != nil {
		return err
	}
	for _, kv := range resps[0].GetScan().GetKvs() {
		rec := &rspb.Liveness{}
		if err := proto.Unmarshal(kv.Value, rec); err != nil {
			return err
		}
		l.remember(rec.NodeId, rec, kv.Value)
	}
	return nil
}

func (l *Liveness) remember(nodeID uint64, rec *rspb.Liveness, raw []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.records[nodeID]; ok && (c.rec.Epoch > rec.Epoch || (c.rec.Epoch == rec.Epoch && ts(rec.Expiration).Less(ts(c.rec.Expiration)))) {
		return
	}
	l.records[nodeID] = cachedRecord{rec: rec, raw: raw}
}

// cput writes next if the stored record's bytes equal expected (nil =
// absent). On failure it returns the actual record.
func (l *Liveness) cput(ctx context.Context, nodeID uint64, next *rspb.Liveness, expected []byte) (bool, *rspb.Liveness, []byte, error) {
	nb, err := proto.Marshal(next)
	if err != nil {
		return false, nil, nil, err
	}
	req := &rspb.ConditionalPutRequest{Key: keys.LivenessKey(nodeID), Value: nb, ExpectedValue: expected, ExpectAbsent: expected == nil}
	resps, err := l.db.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: req}}})
	if err != nil {
		return false, nil, nil, err
	}
	r := resps[0].GetConditionalPut()
	if r.Succeeded {
		l.remember(nodeID, next, nb)
		return true, nil, nil, nil
	}
	if !r.ActualExists {
		return false, nil, nil, nil
	}
	actual := &rspb.Liveness{}
	if err := proto.Unmarshal(r.ActualValue, actual); err != nil {
		return false, nil, nil, err
	}
	if !bytes.Equal(r.ActualValue, expected) {
		l.remember(nodeID, actual, r.ActualValue)
	}
	return false, actual, r.ActualValue, nil
}

// MembershipWord is the word for a membership in messages and logs:
// active, decommissioning or decommissioned.
func MembershipWord(m rspb.LivenessMembership) string {
	switch m {
	case rspb.LivenessMembership_LIVENESS_DECOMMISSIONING:
		return "decommissioning"
	case rspb.LivenessMembership_LIVENESS_DECOMMISSIONED:
		return "decommissioned"
	}
	return "active"
}
