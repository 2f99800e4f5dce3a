package reqload

import (
	"math"
	"sort"
	"sync"
	"time"
)

const (
	// DefaultTau is the averaging time constant: about 63 % of a change in
	// the request rate shows after Tau, 95 % after 3·Tau.
	DefaultTau = 10 * time.Second
	// DropBelow is the rate (requests/s) under which a gateway is
	// forgotten.
	DropBelow = 0.01
	// MaxGateways bounds the gateways kept per range.
	MaxGateways = 64
)

// MinStatsAge is how long a tracker must have counted under the current
// lease before its request sources are used to move the lease
// (follow-the-workload; CockroachDB waits 30 s, its
// MinLeaseTransferStatsDuration). Right after a lease arrives, the few
// requests counted are noise: one request from another region was enough
// to make 66 % of a just-transferred range's "load", and the new holder
// sent the lease straight back.
const MinStatsAge = 5 * time.Second

// Tracker is one range's request sources. The zero value is not usable;
// use New. It is safe for concurrent use.
type Tracker struct {
	tau float64 // seconds

	mu sync.Mutex
	gw map[uint64]*entry
	// lease, since: the lease (sequence) the counts were made under and
	// when counting under it began (ForLease).
	lease uint64
	since time.Time
}

type entry struct {
	count float64 // decayed request count at last
	last  time.Time
}

// GatewayLoad is one gateway's smoothed request rate.
type GatewayLoad struct {
	Gateway uint64 // node ID; 0: senders that did not say
	QPS     float64
}

// New returns a tracker averaging over tau (<= 0: DefaultTau).
func New(tau time.Duration) *Tracker {
	if tau <= 0 {
		tau = DefaultTau
	}
	return &Tracker{tau: tau.Seconds(), gw: map[uint64]*entry{}}
}

// decayed is e's count at now (a time before e.last counts as e.last: the
// caller's clock never makes a count grow).
func (t *Tracker) decayed(e *entry, now time.Time) float64 {
	dt := now.Sub(e.last).Seconds()
	if dt <= 0 {
		return e.count
	}
	return e.count * math.Exp(-dt/t.tau)
}

// ForLease starts the counts afresh when lease (a lease sequence; every
// new lease has a higher one) is not the one they were made under: the
// requests another holder served, or this replica under an earlier lease
// of its own, say nothing about where this lease's requests come from. It
// returns since when the counts under lease began.
func (t *Tracker) ForLease(now time.Time, lease uint64) (since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.forLeaseLocked(now, lease)
}

func (t *Tracker) forLeaseLocked(now time.Time, lease uint64) time.Time {
	if lease != t.lease || t.since.IsZero() {
		clear(t.gw)
		t.lease, t.since = lease, now
	}
	return t.since
}

// Record counts one request from gateway at now.
func (t *Tracker) Record(now time.Time, gateway uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recordLocked(now, gateway)
}

// RecordUnder is ForLease(now, lease) and Record(now, gateway) under one
// lock: the leaseholder's request path.
func (t *Tracker) RecordUnder(now time.Time, lease, gateway uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forLeaseLocked(now, lease)
	t.recordLocked(now, gateway)
}

func (t *Tracker) recordLocked(now time.Time, gateway uint64) {
	e := t.gw[gateway]
	if e == nil {
		if len(t.gw) >= MaxGateways {
			t.evictLocked(now)
		}
		e = &entry{last: now}
		t.gw[gateway] = e
	}
	e.count = t.decayed(e, now) + 1
	if now.After(e.last) {
		e.last = now
	}
}

// evictLocked drops the gateways that decayed below DropBelow, and if
// none did, the slowest one.
func (t *Tracker) evictLocked(now time.Time) {
	var slowest uint64
	low := math.Inf(1)
	for id, e := range t.gw {
		r := t.decayed(e, now) / t.tau
		if r < DropBelow {
			delete(t.gw, id)
			continue
		}
		if r < low || (r == low && id < slowest) {
			slowest, low = id, r
		}
	}
	if len(t.gw) >= MaxGateways {
		delete(t.gw, slowest)
	}
}

// Load returns the rate of every gateway at now, by gateway ID, and their
// sum; it forgets the gateways that decayed below DropBelow.
func (t *Tracker) Load(now time.Time) (total float64, by []GatewayLoad) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, e := range t.gw {
		r := t.decayed(e, now) / t.tau
		if r < DropBelow {
			delete(t.gw, id)
			continue
		}
		total += r
		by = append(by, GatewayLoad{Gateway: id, QPS: r})
	}
	sort.Slice(by, func(i, j int) bool { return by[i].Gateway < by[j].Gateway })
	return total, by
}

// Len is the number of gateways kept (tests).
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.gw)
}
