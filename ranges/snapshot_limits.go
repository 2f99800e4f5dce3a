package ranges

import (
	"io"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4/raftio"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/rangestore/rangestore/timeutil"
)

const (
	// DefaultSnapshotRate is the default bound on the bytes per second a
	// node streams to other nodes as range snapshots (as CockroachDB's
	// default for rebalancing and recovery snapshots).
	DefaultSnapshotRate = 32 << 20
	// DefaultMaxSnapshotsInFlight is the default number of snapshots a node
	// sends at once, and separately the number it applies at once.
	DefaultMaxSnapshotsInFlight = 2
	// snapshotBurst is the most a sender may send ahead of the rate after
	// an idle period.
	snapshotBurst = 1 << 20
)

// tokenBucket is a byte-rate limiter. take charges n bytes at now and
// answers how long the caller must wait before using them; the bucket may
// go into debt, so a write larger than the burst waits its full cost.
// The bucket holds at most burst bytes of credit.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per second, > 0
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate int64, now time.Time) *tokenBucket {
	burst := float64(min(rate, snapshotBurst))
	return &tokenBucket{rate: float64(rate), burst: burst, tokens: burst, last: now}
}

func (b *tokenBucket) take(now time.Time, n int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.burst, b.tokens+el.Seconds()*b.rate)
		b.last = now
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// snapshotLimits makes snapshots a bounded resource of a node: every
// snapshot sent (SaveSnapshot) holds one of maxInFlight send slots and
// every snapshot applied (RecoverFromSnapshot) one of maxInFlight apply
// slots; the bytes sent by all snapshots of the node together pass one
// token bucket. Waits end early when the snapshot is stopped. A nil
// *snapshotLimits bounds nothing and records nothing.
type snapshotLimits struct {
	ts      timeutil.TimeSource
	bucket  *tokenBucket // nil: unlimited rate
	send    chan struct{}
	apply   chan struct{}
	metrics *Metrics // may be nil
}

// newSnapshotLimits: rate <= 0 is unlimited; maxInFlight must be >= 1.
func newSnapshotLimits(rate int64, maxInFlight int, ts timeutil.TimeSource, m *Metrics) *snapshotLimits {
	l := &snapshotLimits{ts: ts, send: make(chan struct{}, maxInFlight), apply: make(chan struct{}, maxInFlight), metrics: m}
	if rate > 0 {
		l.bucket = newTokenBucket(rate, ts.Now())
	}
	return l
}

// acquire takes a send or apply slot, or fails with ErrSnapshotStopped
// once stopc closes. The returned func releases it.
func (l *snapshotLimits) acquire(dir string, stopc <-chan struct{}) (func(), error) {
	if l == nil {
		return func() {}, nil
	}
	sem := l.send
	if dir == snapApply {
		sem = l.apply
	}
	select {
	case sem <- struct{}{}:
	case <-stopc:
		return nil, sm.ErrSnapshotStopped
	}
	l.metrics.snapshotInFlight(dir, 1)
	return func() {
		l.metrics.snapshotInFlight(dir, -1)
		<-sem
	}, nil
}

// sendSlotsFull reports whether every send slot is taken.
func (l *snapshotLimits) sendSlotsFull() bool {
	return l != nil && len(l.send) == cap(l.send)
}

// wait charges n sent bytes to the node's rate and sleeps off any debt.
func (l *snapshotLimits) wait(n int, stopc <-chan struct{}) error {
	if l == nil || l.bucket == nil {
		return nil
	}
	d := l.bucket.take(l.ts.Now(), n)
	if d <= 0 {
		return nil
	}
	t := l.ts.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-stopc:
		return sm.ErrSnapshotStopped
	}
}

const (
	snapSend  = "send"
	snapApply = "apply"
)

// limitedWriter passes a snapshot stream to Dragonboat's writer at the
// node's snapshot rate, counting the bytes.
type limitedWriter struct {
	w     io.Writer
	l     *snapshotLimits
	stopc <-chan struct{}
	n     int64
	// mid, when set, is called once, after a write brings n to midAt or
	// more (crash point snapshot-send-mid).
	mid   func()
	midAt int64
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if err := w.l.wait(len(p), w.stopc); err != nil {
		return 0, err
	}
	n, err := w.w.Write(p)
	w.n += int64(n)
	if w.l != nil {
		w.l.metrics.snapshotBytes(snapSend, n)
	}
	if w.mid != nil && w.n >= w.midAt && err == nil {
		mid := w.mid
		w.mid = nil
		mid()
	}
	return n, err
}

// countingReader counts the bytes of a snapshot read by
// RecoverFromSnapshot.
type countingReader struct {
	r io.Reader
	l *snapshotLimits // may be nil
	n int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if r.l != nil {
		r.l.metrics.snapshotBytes(snapApply, n)
	}
	return n, err
}

// snapshotEvents receives Dragonboat's system events (it must not block)
// and counts the outcome of every snapshot stream this node sent: a stream
// can fail after SaveSnapshot returned (a chunk lost on the connection),
// which only these events report.
type snapshotEvents struct {
	m *Metrics // may be nil
	// streamed, if set, learns of every stream started and every one
	// delivered in full (it must not block either).
	streamed func(i raftio.SnapshotInfo, delivered bool)
	// skipped, if set, reports (once) whether an aborted stream was one
	// ended unsent as not needed (not a failure).
	skipped func(i raftio.SnapshotInfo) bool
}

var _ raftio.ISystemEventListener = snapshotEvents{}

func (e snapshotEvents) SendSnapshotCompleted(i raftio.SnapshotInfo) {
	if e.m != nil {
		e.m.snapshotsSent.Inc()
	}
	if e.streamed != nil {
		e.streamed(i, true)
	}
}

func (e snapshotEvents) SendSnapshotStarted(i raftio.SnapshotInfo) {
	if e.streamed != nil {
		e.streamed(i, false)
	}
}

func (e snapshotEvents) SendSnapshotAborted(i raftio.SnapshotInfo) {
	if e.skipped != nil && e.skipped(i) {
		return
	}
	if e.m != nil {
		e.m.snapshotFailures.WithLabelValues(snapSend).Inc()
	}
}

func (snapshotEvents) NodeHostShuttingDown()                       {}
func (snapshotEvents) NodeUnloaded(raftio.NodeInfo)                {}
func (snapshotEvents) NodeDeleted(raftio.NodeInfo)                 {}
func (snapshotEvents) NodeReady(raftio.NodeInfo)                   {}
func (snapshotEvents) MembershipChanged(raftio.NodeInfo)           {}
func (snapshotEvents) ConnectionEstablished(raftio.ConnectionInfo) {}
func (snapshotEvents) ConnectionFailed(raftio.ConnectionInfo)      {}
func (snapshotEvents) SnapshotReceived(raftio.SnapshotInfo)        {}
func (snapshotEvents) SnapshotRecovered(raftio.SnapshotInfo)       {}
func (snapshotEvents) SnapshotCreated(raftio.SnapshotInfo)         {}
func (snapshotEvents) SnapshotCompacted(raftio.SnapshotInfo)       {}
func (snapshotEvents) LogCompacted(raftio.EntryInfo)               {}
func (snapshotEvents) LogDBCompacted(raftio.EntryInfo)             {}

// SnapshotSendSlotsFull reports whether every snapshot send slot of the
// node is taken (MaxSnapshotsInFlight streams running or waiting to
// write): the replicate queue then starts no rebalancing move, so that a
// repair's snapshot does not queue behind one.
func (s *Store) SnapshotSendSlotsFull() bool { return s.snaps.sendSlotsFull() }
