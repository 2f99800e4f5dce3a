package loadsplit

import (
	"bytes"
	"math/rand"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is the start of a Unix second; all test times are offsets from it.
var t0 = time.Unix(1_700_000_000, 0)

func at(seconds float64) time.Time {
	return t0.Add(time.Duration(seconds * float64(time.Second)))
}

// req is one request: a point on start if end is nil, else [start, end).
type req struct{ start, end []byte }

// workload draws one request.
type workload func(r *rand.Rand) req

func point(k string) workload {
	return func(*rand.Rand) req { return req{start: []byte(k)} }
}

func scan(start, end string) workload {
	return func(*rand.Rand) req { return req{start: []byte(start), end: []byte(end)} }
}

// letters draws point requests uniformly over the one-letter keys lo..hi.
func letters(lo, hi byte) workload {
	return func(r *rand.Rand) req {
		return req{start: []byte{lo + byte(r.Intn(int(hi-lo)+1))}}
	}
}

// mix draws from ws[i] with probability weights[i]/sum(weights).
func mix(weights []float64, ws ...workload) workload {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	return func(r *rand.Rand) req {
		x := r.Float64() * sum
		for i, w := range weights {
			if x < w {
				return ws[i](r)
			}
			x -= w
		}
		return ws[len(ws)-1](r)
	}
}

// drive records qps requests per second, evenly spaced, during the seconds
// [from, to) after t0, and returns them.
func drive(d *Decider, r *rand.Rand, w workload, qps, from, to int) []req {
	var out []req
	for s := from; s < to; s++ {
		for i := 0; i < qps; i++ {
			now := t0.Add(time.Duration(s)*time.Second + time.Duration(i)*time.Second/time.Duration(qps))
			q := w(r)
			d.Record(now, q.start, q.end)
			out = append(out, q)
		}
	}
	return out
}

// shares returns the fractions of reqs entirely left of key, entirely right
// of it, and straddling it.
func shares(reqs []req, key []byte) (left, right, straddle float64) {
	var l, r, s int
	for _, q := range reqs {
		switch {
		case q.end == nil && bytes.Compare(q.start, key) < 0:
			l++
		case q.end != nil && bytes.Compare(q.end, key) <= 0:
			l++
		case bytes.Compare(q.start, key) >= 0:
			r++
		default:
			s++
		}
	}
	n := float64(len(reqs))
	return float64(l) / n, float64(r) / n, float64(s) / n
}

func newTestDecider(dur time.Duration, seed int64) *Decider {
	return NewDecider(Config{QPSThreshold: 250, Duration: dur, Samples: 20}, rand.New(rand.NewSource(seed)))
}

func TestDecider(t *testing.T) {
	tests := []struct {
		name     string
		load     workload
		qps      int
		seconds  int           // load runs during [0, seconds); checked at t0+seconds
		duration time.Duration // Config.Duration
		// wantKey, if set, is the exact expected split key.
		wantKey string
		// checkKey, if set, means a split key is expected and validated.
		checkKey func(t *testing.T, key []byte, reqs []req)
		wantHot  string // expected hot key; "" means none
	}{
		{
			name: "uniform a..z splits near the middle",
			load: letters('a', 'z'), qps: 500, seconds: 10, duration: 5 * time.Second,
			checkKey: func(t *testing.T, key []byte, reqs []req) {
				if string(key) < "h" || string(key) > "s" {
					t.Errorf("key %q not near the middle of a..z", key)
				}
				l, r, _ := shares(reqs, key)
				if l < 0.3 || r < 0.3 {
					t.Errorf("key %q: left %.2f right %.2f, want both >= 0.3", key, l, r)
				}
			},
		},
		{
			name: "below threshold",
			load: letters('a', 'z'), qps: 200, seconds: 30, duration: 5 * time.Second,
		},
		{
			name: "at threshold is not above it",
			load: letters('a', 'z'), qps: 250, seconds: 30, duration: 5 * time.Second,
		},
		{
			name: "above threshold for less than Duration",
			load: letters('a', 'z'), qps: 1000, seconds: 8, duration: 10 * time.Second,
		},
		{
			name: "single hot key",
			load: point("k"), qps: 500, seconds: 10, duration: 5 * time.Second,
			wantHot: "k",
		},
		{
			name: "hot key with background load",
			load: mix([]float64{0.9, 0.1}, point("k"), letters('a', 'z')), qps: 500, seconds: 10,
			duration: 5 * time.Second,
			wantHot:  "k",
		},
		{
			name: "two hot keys split between them",
			load: mix([]float64{0.5, 0.5}, point("c"), point("p")), qps: 500, seconds: 10,
			duration: 5 * time.Second,
			checkKey: func(t *testing.T, key []byte, reqs []req) {
				if string(key) <= "c" || string(key) > "p" {
					t.Errorf("key %q does not separate c and p", key)
				}
			},
		},
		{
			name: "one scan start never splits",
			load: scan("a", "z"), qps: 500, seconds: 10, duration: 5 * time.Second,
		},
		{
			name: "wide scans straddle every balanced key",
			load: mix([]float64{0.4, 0.6}, scan("a", "zz"), letters('a', 'z')), qps: 500, seconds: 10,
			duration: 5 * time.Second,
		},
		{
			// m is better balanced (left .39, right .29) than j (left .39,
			// right .61) but 32% of the load straddles it.
			name: "straddled candidate avoided",
			load: mix([]float64{0.39, 0.32, 0.15, 0.14},
				letters('a', 'e'), scan("j", "r"), point("m"), letters('v', 'z')),
			qps: 1000, seconds: 15, duration: 5 * time.Second,
			wantKey: "j",
			checkKey: func(t *testing.T, key []byte, reqs []req) {
				if _, _, s := shares(reqs, key); s != 0 {
					t.Errorf("key %q cuts %.2f of the requests", key, s)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for seed := int64(1); seed <= 5; seed++ {
				d := newTestDecider(tc.duration, seed)
				reqs := drive(d, rand.New(rand.NewSource(seed+100)), tc.load, tc.qps, 0, tc.seconds)
				now := at(float64(tc.seconds))
				if got, want := d.QPS(now), float64(tc.qps); got != want {
					t.Fatalf("seed %d: QPS = %v, want %v", seed, got, want)
				}
				key, ok := d.MaybeSplitKey(now)
				wantSplit := tc.checkKey != nil || tc.wantKey != ""
				if ok != wantSplit {
					t.Fatalf("seed %d: MaybeSplitKey = %q, %v; want ok=%v", seed, key, ok, wantSplit)
				}
				if ok {
					if tc.wantKey != "" && string(key) != tc.wantKey {
						t.Errorf("seed %d: key %q, want %q", seed, key, tc.wantKey)
					}
					if tc.checkKey != nil {
						tc.checkKey(t, key, reqs)
					}
				}
				hot, share, hotOK := d.HotKey(now)
				if hotOK != (tc.wantHot != "") {
					t.Fatalf("seed %d: HotKey = %q, %.2f, %v; want %q", seed, hot, share, hotOK, tc.wantHot)
				}
				if hotOK && (string(hot) != tc.wantHot || share < HotKeyShare) {
					t.Errorf("seed %d: HotKey = %q, %.2f; want %q with share >= %v",
						seed, hot, share, tc.wantHot, HotKeyShare)
				}
			}
		})
	}
}

func TestDurationCountsFromFirstSampledSecond(t *testing.T) {
	d := newTestDecider(5*time.Second, 1)
	r := rand.New(rand.NewSource(2))
	// Second 0 is the first above threshold; sampling starts at t0+1s, so a
	// key may be proposed from t0+6s on.
	drive(d, r, letters('a', 'z'), 500, 0, 6)
	if key, ok := d.MaybeSplitKey(at(5.999)); ok {
		t.Fatalf("key %q before Duration elapsed", key)
	}
	if _, ok := d.MaybeSplitKey(at(6)); !ok {
		t.Fatal("no key once Duration elapsed")
	}
}

func TestDropBelowThresholdRestartsTracking(t *testing.T) {
	d := newTestDecider(5*time.Second, 1)
	r := rand.New(rand.NewSource(2))
	w := letters('a', 'z')
	drive(d, r, w, 500, 0, 5) // sampling since t0+1s
	drive(d, r, w, 100, 5, 6) // one quiet second
	drive(d, r, w, 500, 6, 11)
	// Second 5 was below threshold: at t0+6s tracking was dropped, and second
	// 6 restarted it at t0+7s, so nothing before t0+12s.
	if key, ok := d.MaybeSplitKey(at(11)); ok {
		t.Fatalf("key %q although load dipped %v ago", key, 6*time.Second)
	}
	drive(d, r, w, 500, 11, 12)
	if _, ok := d.MaybeSplitKey(at(12)); !ok {
		t.Fatal("no key after load stayed high for Duration again")
	}
	// An idle gap also ends tracking: t0+14s follows the empty second 13.
	if key, ok := d.MaybeSplitKey(at(14)); ok {
		t.Fatalf("key %q after an idle second", key)
	}
}

func TestQPS(t *testing.T) {
	d := newTestDecider(time.Second, 1)
	if got := d.QPS(at(0)); got != 0 {
		t.Fatalf("fresh QPS = %v", got)
	}
	for i := 0; i < 30; i++ {
		d.Record(at(1+float64(i)/30), []byte("a"), nil)
	}
	steps := []struct {
		now  float64
		want float64
	}{
		{1.5, 0},  // second 1 not complete yet
		{2, 30},   // second 1 complete
		{2.9, 30}, // still
		{3, 0},    // second 2 was idle
		{1, 0},    // clock moved back: nothing changes
	}
	for _, s := range steps {
		if got := d.QPS(at(s.now)); got != s.want {
			t.Errorf("QPS(t0+%vs) = %v, want %v", s.now, got, s.want)
		}
	}
	// A late request (time before the current bucket) counts in the current
	// bucket.
	d.Record(at(2.5), []byte("a"), nil)
	if got := d.QPS(at(4)); got != 1 {
		t.Errorf("QPS after late request = %v, want 1", got)
	}
}

func TestReset(t *testing.T) {
	d := newTestDecider(5*time.Second, 1)
	r := rand.New(rand.NewSource(2))
	drive(d, r, letters('a', 'z'), 500, 0, 10)
	if _, ok := d.MaybeSplitKey(at(10)); !ok {
		t.Fatal("no key before Reset")
	}
	d.Reset()
	if key, ok := d.MaybeSplitKey(at(10)); ok {
		t.Fatalf("key %q right after Reset", key)
	}
	if got := d.QPS(at(10.5)); got != 0 {
		t.Fatalf("QPS after Reset = %v", got)
	}
	// After Reset a key needs another full Duration of high load.
	drive(d, r, letters('a', 'z'), 500, 11, 16)
	if key, ok := d.MaybeSplitKey(at(16)); ok {
		t.Fatalf("key %q %v after Reset", key, 5*time.Second)
	}
	drive(d, r, letters('a', 'z'), 500, 16, 17)
	if _, ok := d.MaybeSplitKey(at(17)); !ok {
		t.Fatal("no key after Duration of high load following Reset")
	}

	// Reset also forgets a hot key.
	d.Reset()
	drive(d, r, point("k"), 500, 20, 30)
	if _, _, ok := d.HotKey(at(30)); !ok {
		t.Fatal("no hot key")
	}
	d.Reset()
	if key, _, ok := d.HotKey(at(30)); ok {
		t.Fatalf("hot key %q after Reset", key)
	}
}

func TestKeysAreCopied(t *testing.T) {
	d := newTestDecider(time.Second, 1)
	buf := make([]byte, 1)
	for s := 0; s < 5; s++ {
		for i := 0; i < 500; i++ {
			buf[0] = "cp"[i%2]
			d.Record(at(float64(s)+float64(i)/500), buf, nil)
			buf[0] = 'z' // caller reuses its buffer
		}
	}
	key, ok := d.MaybeSplitKey(at(5))
	if !ok || string(key) != "p" {
		t.Fatalf("MaybeSplitKey = %q, %v; want \"p\"", key, ok)
	}
	key[0] = 'x' // the caller may modify the returned key
	if again, _ := d.MaybeSplitKey(at(5)); string(again) != "p" {
		t.Fatalf("second MaybeSplitKey = %q, want \"p\"", again)
	}
}

func TestDeterministic(t *testing.T) {
	run := func() string {
		d := newTestDecider(5*time.Second, 7)
		drive(d, rand.New(rand.NewSource(8)), letters('a', 'z'), 500, 0, 10)
		key, _ := d.MaybeSplitKey(at(10))
		return string(key)
	}
	if a, b := run(), run(); a != b || a == "" {
		t.Fatalf("runs gave %q and %q", a, b)
	}
}

// TestChooseCandidate checks the selection rules on hand-made counters.
func TestChooseCandidate(t *testing.T) {
	s := func(key string, left, right, straddle, hits int64) sample {
		return sample{key: []byte(key), left: left, right: right, straddle: straddle, hits: hits}
	}
	tests := []struct {
		name    string
		samples []sample
		want    string // "" means no split key
	}{
		{"balanced but straddled loses", []sample{
			s("m", 300, 300, 400, 0), // perfect balance, 40% straddling
			s("j", 450, 550, 0, 0),   // imbalance 0.1
		}, "j"},
		{"straddle just below limit accepted", []sample{
			s("m", 350, 350, 299, 0),
		}, "m"},
		{"too few counted", []sample{
			s("m", 40, 40, 0, 0),
		}, ""},
		{"too imbalanced", []sample{
			s("m", 370, 630, 0, 0), // 0.26
		}, ""},
		{"empty side never chosen", []sample{
			s("a", 0, 1000, 0, 0),
		}, ""},
		{"best balance wins", []sample{
			s("k", 400, 600, 0, 0),
			s("n", 510, 490, 0, 0),
			s("m", 480, 520, 0, 0),
		}, "n"},
		{"tie: fewer straddling, then smaller key", []sample{
			s("q", 500, 500, 10, 0),
			s("p", 500, 500, 0, 0),
			s("o", 500, 500, 0, 0),
		}, "o"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &finder{samples: tc.samples}
			got := f.splitKey()
			switch {
			case got == nil && tc.want != "":
				t.Fatalf("no key, want %q", tc.want)
			case got != nil && string(got.key) != tc.want:
				t.Fatalf("key %q, want %q", got.key, tc.want)
			}
		})
	}
}

// TestConcurrent is a smoke test for the race detector: recorders and
// readers share one Decider.
func TestConcurrent(t *testing.T) {
	d := newTestDecider(5*time.Second, 1)
	var tick atomic.Int64 // milliseconds after t0; 1000 requests per second overall
	now := func() time.Time { return t0.Add(time.Duration(tick.Load()) * time.Millisecond) }

	phase := func(n int, reset bool) {
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				r := rand.New(rand.NewSource(int64(g)))
				w := mix([]float64{0.8, 0.2}, letters('a', 'z'), scan("b", "d"))
				for i := 0; i < n; i++ {
					q := w(r)
					ms := tick.Add(1)
					d.Record(t0.Add(time.Duration(ms)*time.Millisecond), q.start, q.end)
				}
			}(g)
		}
		stop := make(chan struct{})
		var readers sync.WaitGroup
		for g := 0; g < 2; g++ {
			readers.Add(1)
			go func(g int) {
				defer readers.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					d.MaybeSplitKey(now())
					d.HotKey(now())
					d.QPS(now())
					if reset && g == 0 && i%100 == 0 {
						d.Reset()
					}
				}
			}(g)
		}
		wg.Wait()
		close(stop)
		readers.Wait()
	}

	phase(1000, true)
	d.Reset()
	phase(2000, false) // 16s of load at 1000/s
	key, ok := d.MaybeSplitKey(now())
	if !ok {
		t.Fatal("no split key after concurrent load")
	}
	if string(key) < "e" || string(key) > "v" {
		t.Errorf("key %q not near the middle", key)
	}
}

// TestNewRand: the same seed gives the same sequence, another seed another
// one; Int63n stays in range; a Decider built with it finds a split key
// inside a..z; and a thousand of them (one per
// replica of a large store) take well under the 4.9 MiB that a thousand
// math/rand sources did.
func TestNewRand(t *testing.T) {
	a, b, c := NewRand(7), NewRand(7), NewRand(8)
	same, differ := true, false
	for i := 0; i < 100; i++ {
		x, y, z := a.Int63(), b.Int63(), c.Int63()
		same = same && x == y
		differ = differ || x != z
		if x < 0 {
			t.Fatalf("Int63 = %d < 0", x)
		}
		if n := a.Int63n(5); n < 0 || n >= 5 {
			t.Fatalf("Int63n(5) = %d", n)
		}
		b.Int63n(5)
	}
	if !same || !differ {
		t.Errorf("seed 7 twice gave the same sequence: %v; seeds 7 and 8 differ: %v", same, differ)
	}

	d := NewDecider(Config{QPSThreshold: 250, Duration: 5 * time.Second, Samples: 20}, NewRand(3))
	drive(d, rand.New(rand.NewSource(4)), letters('a', 'z'), 500, 0, 10)
	if k, ok := d.MaybeSplitKey(at(10)); !ok || len(k) != 1 || k[0] <= 'a' || k[0] > 'z' {
		t.Errorf("MaybeSplitKey after 10 s at 500 qps over a..z with NewRand = %q, %v", k, ok)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	keep := make([]*rand.Rand, 1000)
	for i := range keep {
		keep[i] = NewRand(int64(i))
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keep)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 512<<10 {
		t.Errorf("1,000 NewRand allocated %d bytes, want < 512 KiB", grew)
	}
}
