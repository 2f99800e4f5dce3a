package loadsplit

import (
	"bytes"
	"math/rand"
	randv2 "math/rand/v2"
	"sync"
	"time"
)

// Thresholds used when choosing a split key or reporting a hot key. See the
// package documentation for how they are applied.
const (
	// MinCounted is the number of requests a candidate must have counted
	// (since it entered the reservoir) before it is considered.
	MinCounted = 100
	// MaxImbalance is the largest |left-right|/(left+right) accepted for a
	// split key; 0.25 means the smaller side gets at least 37.5%.
	MaxImbalance = 0.25
	// MaxStraddleShare is the share of counted requests straddling a
	// candidate (spans the split would cut) at or above which it is rejected.
	MaxStraddleShare = 0.3
	// HotKeyShare is the share of counted requests that must be point
	// requests on one key for HotKey to report it.
	HotKeyShare = 0.8
	// DefaultSamples is the reservoir size used when Config.Samples <= 0.
	DefaultSamples = 20
)

// Config configures a Decider.
type Config struct {
	// QPSThreshold is the rate (requests per second, see Decider.QPS) above
	// which the range looks for a split key, e.g. 250.
	QPSThreshold float64
	// Duration is how long the rate must stay above QPSThreshold before a
	// split key (or hot key) is reported, e.g. 10s.
	Duration time.Duration
	// Samples is the reservoir size of candidate split keys, e.g. 20.
	// Values <= 0 mean DefaultSamples.
	Samples int
}

// Decider tracks the request load of one range and decides where to split
// it. The zero value is not usable; use NewDecider. It is safe for
// concurrent use.
type Decider struct {
	cfg Config

	mu  sync.Mutex
	rng *rand.Rand
	// bucket is the Unix second currently being counted; count is the
	// number of requests recorded in it; last is the count of the bucket
	// before it (0 if that second was idle). started reports whether any
	// bucket has been opened since creation or Reset.
	bucket  int64
	count   int64
	last    int64
	started bool
	// finder is non-nil while the rate is above the threshold.
	finder *finder
}

// NewDecider returns a Decider with the given configuration. rng is the
// source of randomness for reservoir sampling; the Decider takes ownership
// of it (it is used under the Decider's lock and must not be used
// elsewhere). A nil rng is replaced by NewRand(1).
func NewDecider(cfg Config, rng *rand.Rand) *Decider {
	if cfg.Samples <= 0 {
		cfg.Samples = DefaultSamples
	}
	if rng == nil {
		rng = NewRand(1)
	}
	return &Decider{cfg: cfg, rng: rng}
}

// NewRand returns a deterministic *rand.Rand seeded with seed whose state
// is a PCG generator (16 bytes) rather than math/rand's own source (about
// 4.9 KiB). A store keeps one Decider per replica, so at 1,000 replicas
// the latter alone held about 5 MiB of heap.
func NewRand(seed int64) *rand.Rand {
	return rand.New(&pcgSource{pcg: randv2.NewPCG(uint64(seed), 0)})
}

// pcgSource adapts a PCG generator to math/rand.Source64.
type pcgSource struct{ pcg *randv2.PCG }

func (s *pcgSource) Int63() int64    { return int64(s.pcg.Uint64() >> 1) }
func (s *pcgSource) Uint64() uint64  { return s.pcg.Uint64() }
func (s *pcgSource) Seed(seed int64) { s.pcg.Seed(uint64(seed), 0) }

// Record notes one request at time now touching [start, end). A nil end (or
// any end <= start) means a point request on start. It is cheap, O(Samples)
// comparisons while a split key is being searched for and O(1) otherwise.
func (d *Decider) Record(now time.Time, start, end []byte) {
	if end != nil && bytes.Compare(end, start) <= 0 {
		end = nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance(now)
	d.count++
	if d.finder != nil {
		d.finder.record(d.rng, start, end)
	}
}

// MaybeSplitKey returns a split key once the rate has stayed above the
// threshold for Config.Duration and a candidate balancing the load was
// found (see the package documentation); ok is false otherwise. The key is
// the first key of the right-hand range.
func (d *Decider) MaybeSplitKey(now time.Time) (key []byte, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ready(now) {
		return nil, false
	}
	s := d.finder.splitKey()
	if s == nil {
		return nil, false
	}
	return bytes.Clone(s.key), true
}

// HotKey reports a key that dominates the load: once the rate has stayed
// above the threshold for Config.Duration, the sampled key with the largest
// share of point requests on exactly that key, if the share is at least
// HotKeyShare. Such a load cannot be split; the caller should log or export
// the key.
func (d *Decider) HotKey(now time.Time) (key []byte, share float64, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ready(now) {
		return nil, 0, false
	}
	s, share := d.finder.hotKey()
	if s == nil || share < HotKeyShare {
		return nil, 0, false
	}
	return bytes.Clone(s.key), share, true
}

// QPS returns the number of requests recorded in the last complete second
// (the Unix second just before the one containing now), 0 if none. It is
// not smoothed.
func (d *Decider) QPS(now time.Time) float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance(now)
	return float64(d.last)
}

// Reset forgets all counts and candidates, e.g. after the range was split.
// The rate starts again from zero and a new split key needs another full
// Config.Duration above the threshold.
func (d *Decider) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.bucket, d.count, d.last, d.started = 0, 0, 0, false
	d.finder = nil
}

// ready advances the buckets to now and reports whether a finder has run
// for at least Config.Duration. d.mu must be held.
func (d *Decider) ready(now time.Time) bool {
	d.advance(now)
	return d.finder != nil && now.Sub(d.finder.start) >= d.cfg.Duration
}

// advance moves the current bucket to the second containing now, completing
// the buckets in between, and starts or discards the finder accordingly.
// d.mu must be held.
func (d *Decider) advance(now time.Time) {
	sec := unixSecond(now)
	if !d.started {
		d.bucket, d.count, d.last, d.started = sec, 0, 0, true
		return
	}
	if sec <= d.bucket {
		return // same second, or the clock moved back: stay put
	}
	if sec == d.bucket+1 {
		d.last = d.count
	} else {
		d.last = 0 // at least one idle second in between
	}
	d.bucket, d.count = sec, 0
	if float64(d.last) > d.cfg.QPSThreshold {
		if d.finder == nil {
			d.finder = newFinder(time.Unix(sec, 0), d.cfg.Samples)
		}
	} else {
		d.finder = nil
	}
}

// unixSecond returns the Unix second containing t. time.Time.Unix rounds
// down (its nanoseconds are always in [0, 1e9)), also before 1970.
func unixSecond(t time.Time) int64 { return t.Unix() }

// sample is one candidate split key and the requests counted against it
// since it entered the reservoir.
type sample struct {
	key                   []byte
	left, right, straddle int64
	hits                  int64 // point requests on exactly key (also in right)
}

func (s *sample) counted() int64 { return s.left + s.right + s.straddle }

// finder keeps the reservoir of candidate split keys while the rate is
// above the threshold.
type finder struct {
	start   time.Time // beginning of the first bucket sampled
	size    int       // reservoir capacity
	seen    int64     // requests offered to the reservoir
	samples []sample
}

func newFinder(start time.Time, size int) *finder {
	return &finder{start: start, size: size, samples: make([]sample, 0, size)}
}

// record offers the request's start key to the reservoir (Algorithm R) and
// counts the request against every candidate, including one it just added.
// end is nil for a point request.
func (f *finder) record(rng *rand.Rand, start, end []byte) {
	f.seen++
	if len(f.samples) < f.size {
		f.samples = append(f.samples, sample{key: bytes.Clone(start)})
	} else if j := rng.Int63n(f.seen); j < int64(f.size) {
		f.samples[j] = sample{key: bytes.Clone(start)}
	}
	for i := range f.samples {
		s := &f.samples[i]
		if end == nil {
			switch c := bytes.Compare(start, s.key); {
			case c < 0:
				s.left++
			case c == 0:
				s.right++
				s.hits++
			default:
				s.right++
			}
			continue
		}
		switch {
		case bytes.Compare(end, s.key) <= 0:
			s.left++
		case bytes.Compare(start, s.key) >= 0:
			s.right++
		default:
			s.straddle++
		}
	}
}

// splitKey returns the best acceptable candidate, or nil.
func (f *finder) splitKey() *sample {
	var best *sample
	var bestImb float64
	for i := range f.samples {
		s := &f.samples[i]
		n := s.counted()
		if n < MinCounted || s.left == 0 || s.right == 0 {
			continue
		}
		if float64(s.straddle)/float64(n) >= MaxStraddleShare {
			continue
		}
		imb := imbalance(s.left, s.right)
		if imb > MaxImbalance {
			continue
		}
		if best == nil || imb < bestImb ||
			(imb == bestImb && (s.straddle < best.straddle ||
				(s.straddle == best.straddle && bytes.Compare(s.key, best.key) < 0))) {
			best, bestImb = s, imb
		}
	}
	return best
}

// hotKey returns the candidate with the largest share of point hits among
// those with enough counted requests, and that share; nil if there is none.
func (f *finder) hotKey() (*sample, float64) {
	var best *sample
	var bestShare float64
	for i := range f.samples {
		s := &f.samples[i]
		n := s.counted()
		if n < MinCounted {
			continue
		}
		share := float64(s.hits) / float64(n)
		if best == nil || share > bestShare ||
			(share == bestShare && bytes.Compare(s.key, best.key) < 0) {
			best, bestShare = s, share
		}
	}
	return best, bestShare
}

// imbalance returns |left-right|/(left+right); both must not be 0 at once.
func imbalance(left, right int64) float64 {
	d := left - right
	if d < 0 {
		d = -d
	}
	return float64(d) / float64(left+right)
}
