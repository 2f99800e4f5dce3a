package bench

import (
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"sync/atomic"
)

// alphabet is 0-9A-Za-z in byte order: the characters over which
// `rangestore init --initial-splits N` spreads its split points.
const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// prefixLen is the number of hashed leading characters of a key.
const prefixLen = 3

// MinKeySize is the smallest key size KeyName supports.
const MinKeySize = prefixLen + 5

func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// KeyName returns the key of index i, exactly size bytes long: prefixLen
// characters of 0-9A-Za-z derived from a hash of i (so consecutive indexes
// land in different ranges), then i in zero-padded decimal. Distinct indexes
// give distinct keys as long as i fits in the decimal part.
func KeyName(i uint64, size int) []byte {
	if size < MinKeySize {
		size = MinKeySize
	}
	b := make([]byte, size)
	h := mix64(i)
	for j := 0; j < prefixLen; j++ {
		b[j] = alphabet[h%uint64(len(alphabet))]
		h /= uint64(len(alphabet))
	}
	d := strconv.FormatUint(i, 10)
	n := size - prefixLen
	if len(d) > n {
		d = d[len(d)-n:] // wraps; CheckKeySpace rejects this up front
	}
	for j := prefixLen; j < size-len(d); j++ {
		b[j] = '0'
	}
	copy(b[size-len(d):], d)
	return b
}

// CheckKeySpace reports whether n distinct indexes fit in keys of size bytes.
func CheckKeySpace(n uint64, size int) error {
	if size < MinKeySize {
		return fmt.Errorf("key size %d is below the minimum %d", size, MinKeySize)
	}
	digits := size - prefixLen
	if digits < 20 && float64(n) > math.Pow10(digits) {
		return fmt.Errorf("%d keys do not fit in %d-byte keys", n, size)
	}
	return nil
}

// KeyGen picks key indexes in [0, n). Next is called by one goroutine per
// generator unless the implementation says otherwise.
type KeyGen interface {
	Next(r *rand.Rand) uint64
}

// Distribution names accepted by NewKeyGen.
const (
	Uniform    = "uniform"
	Zipfian    = "zipfian"
	Sequential = "sequential"
)

// NewKeyGen returns a generator over [0, n). Sequential generators share one
// counter, so a single generator may be used by every worker.
func NewKeyGen(dist string, n uint64) (KeyGen, error) {
	if n == 0 {
		return nil, fmt.Errorf("key space must not be empty")
	}
	switch dist {
	case Uniform:
		return UniformGen{N: n}, nil
	case Zipfian:
		return NewZipfGen(n, DefaultZipfTheta), nil
	case Sequential:
		return &SequentialGen{N: n}, nil
	}
	return nil, fmt.Errorf("unknown key distribution %q (want uniform, zipfian or sequential)", dist)
}

// UniformGen picks every index with equal probability.
type UniformGen struct{ N uint64 }

func (g UniformGen) Next(r *rand.Rand) uint64 { return uint64(r.Int63n(int64(g.N))) }

// SequentialGen walks 0, 1, 2, … and wraps at N. Safe for concurrent use.
type SequentialGen struct {
	N   uint64
	ctr atomic.Uint64
}

func (g *SequentialGen) Next(*rand.Rand) uint64 { return (g.ctr.Add(1) - 1) % g.N }

// DefaultZipfTheta is YCSB's default skew constant.
const DefaultZipfTheta = 0.99

// ZipfGen draws from a Zipf distribution over [0, n) with exponent theta:
// index 0 is the most popular. It uses the rejection-free method of Gray et
// al. ("Quickly generating billion-record synthetic databases", 1994), the
// one YCSB uses. Safe for concurrent use (read-only after construction).
type ZipfGen struct {
	n                   uint64
	theta, alpha, zetaN float64
	eta, half           float64
}

func zeta(n uint64, theta float64) float64 {
	s := 0.0
	for i := uint64(1); i <= n; i++ {
		s += 1 / math.Pow(float64(i), theta)
	}
	return s
}

// NewZipfGen precomputes the constants (O(n) once).
func NewZipfGen(n uint64, theta float64) *ZipfGen {
	z := &ZipfGen{n: n, theta: theta, alpha: 1 / (1 - theta), zetaN: zeta(n, theta)}
	zeta2 := zeta(2, theta)
	z.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta2/z.zetaN)
	z.half = 1 + math.Pow(0.5, theta)
	return z
}

func (z *ZipfGen) Next(r *rand.Rand) uint64 {
	u := r.Float64()
	uz := u * z.zetaN
	if uz < 1 {
		return 0
	}
	if uz < z.half {
		return 1 % z.n
	}
	v := uint64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	if v >= z.n {
		v = z.n - 1
	}
	return v
}
