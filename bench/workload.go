package bench

import (
	"fmt"
	"math/rand"
	"strings"
	"sync/atomic"
)

// OpKind is one kind of operation a workload issues.
type OpKind int

const (
	OpRead   OpKind = iota // point read of an existing key
	OpWrite                // overwrite of an existing key (YCSB "update")
	OpInsert               // write of a new key past the preloaded key space
	OpScan                 // short forward scan
	OpRMW                  // read, then write the same key
	numOps
)

var opNames = [numOps]string{"read", "write", "insert", "scan", "rmw"}

func (k OpKind) String() string {
	if k >= 0 && k < numOps {
		return opNames[k]
	}
	return fmt.Sprintf("op%d", int(k))
}

// Mix is the fraction of each operation kind; fractions sum to 1.
type Mix struct {
	Read, Write, Insert, Scan, RMW float64
}

func (m Mix) fractions() [numOps]float64 {
	return [numOps]float64{m.Read, m.Write, m.Insert, m.Scan, m.RMW}
}

// Spec fully describes a workload.
type Spec struct {
	Name string `json:"name"`
	Mix  Mix    `json:"mix"`
	Keys uint64 `json:"keys"` // preloaded key space: indexes [0, Keys)
	// KeyBase is added to every key index: the key of index i is
	// KeyName(KeyBase+i, KeySize) (Key). Two specs whose bases lie at
	// least 100×Keys apart (the room left for inserts) have disjoint key
	// spaces with the same spread over ranges, e.g. for values of another
	// size preloaded beside the default ones.
	KeyBase      uint64  `json:"key_base,omitempty"`
	KeySize      int     `json:"key_size"`     // bytes
	ValueSize    int     `json:"value_size"`   // bytes
	Distribution string  `json:"distribution"` // uniform, zipfian, sequential
	ScanLength   int     `json:"scan_length"`  // fixed scan length (kv); 0 with MaxScanLength set = uniform 1..Max
	MaxScanLen   int     `json:"max_scan_length,omitempty"`
	ReadLatest   bool    `json:"read_latest,omitempty"` // YCSB D: reads favour recent inserts
	ZipfTheta    float64 `json:"-"`
}

// Defaults used by the CLI and the comparison.
const (
	DefaultKeys       = 10000
	DefaultKeySize    = 16
	DefaultValueSize  = 256
	DefaultScanLength = 10
	DefaultMaxScanLen = 100
)

// KVSpec is the "kv" workload: readPct % point reads, scanPct % scans of
// scanLen keys, the rest overwrites.
func KVSpec(readPct, scanPct float64, scanLen int) (Spec, error) {
	if readPct < 0 || scanPct < 0 || readPct+scanPct > 100 {
		return Spec{}, fmt.Errorf("read percent %g + scan percent %g must lie in [0, 100]", readPct, scanPct)
	}
	if scanLen <= 0 {
		scanLen = DefaultScanLength
	}
	return Spec{
		Name:         fmt.Sprintf("kv%g", readPct),
		Mix:          Mix{Read: readPct / 100, Scan: scanPct / 100, Write: (100 - readPct - scanPct) / 100},
		Keys:         DefaultKeys,
		KeySize:      DefaultKeySize,
		ValueSize:    DefaultValueSize,
		Distribution: Uniform,
		ScanLength:   scanLen,
	}, nil
}

// YCSBSpec returns one of the core YCSB workloads A–F with the default
// request distribution (zipfian; D reads the latest inserts).
func YCSBSpec(letter string) (Spec, error) {
	s := Spec{Keys: DefaultKeys, KeySize: DefaultKeySize, ValueSize: DefaultValueSize, Distribution: Zipfian}
	switch strings.ToUpper(letter) {
	case "A": // update heavy
		s.Mix = Mix{Read: 0.5, Write: 0.5}
	case "B": // read mostly
		s.Mix = Mix{Read: 0.95, Write: 0.05}
	case "C": // read only
		s.Mix = Mix{Read: 1}
	case "D": // read latest
		s.Mix = Mix{Read: 0.95, Insert: 0.05}
		s.ReadLatest = true
	case "E": // short ranges
		s.Mix = Mix{Scan: 0.95, Insert: 0.05}
		s.MaxScanLen = DefaultMaxScanLen
	case "F": // read-modify-write
		s.Mix = Mix{Read: 0.5, RMW: 0.5}
	default:
		return Spec{}, fmt.Errorf("unknown YCSB workload %q (want A–F)", letter)
	}
	s.Name = "ycsb-" + strings.ToUpper(letter)
	return s, nil
}

// Key returns the key of index i: KeyName(KeyBase+i, KeySize).
func (s Spec) Key(i uint64) []byte { return KeyName(s.KeyBase+i, s.KeySize) }

// Op is one drawn operation.
type Op struct {
	Kind    OpKind
	Key     []byte
	ScanLen int
}

// Workload draws operations for a Spec. Next is safe for concurrent use as
// long as each goroutine passes its own *rand.Rand.
type Workload struct {
	Spec     Spec
	cum      [numOps]float64
	gen      KeyGen
	latest   *ZipfGen
	inserted atomic.Uint64
}

// NewWorkload validates spec and prepares its generators.
func NewWorkload(spec Spec) (*Workload, error) {
	if spec.Keys == 0 {
		return nil, fmt.Errorf("key space must not be empty")
	}
	if spec.ValueSize <= 0 {
		return nil, fmt.Errorf("value size must be positive")
	}
	// Leave room for inserts past the preloaded space.
	if err := CheckKeySpace(spec.KeyBase+spec.Keys*100, spec.KeySize); err != nil {
		return nil, err
	}
	w := &Workload{Spec: spec}
	sum := 0.0
	for i, f := range spec.Mix.fractions() {
		if f < 0 {
			return nil, fmt.Errorf("negative fraction for %s", OpKind(i))
		}
		sum += f
		w.cum[i] = sum
	}
	if sum < 0.999 || sum > 1.001 {
		return nil, fmt.Errorf("operation mix sums to %g, want 1", sum)
	}
	w.cum[numOps-1] = 2 // absorb rounding
	theta := spec.ZipfTheta
	if theta == 0 {
		theta = DefaultZipfTheta
	}
	if spec.Distribution == Zipfian {
		w.gen = NewZipfGen(spec.Keys, theta)
	} else {
		g, err := NewKeyGen(spec.Distribution, spec.Keys)
		if err != nil {
			return nil, err
		}
		w.gen = g
	}
	if spec.ReadLatest {
		w.latest = NewZipfGen(spec.Keys, theta)
	}
	return w, nil
}

// Kinds lists the operation kinds this workload issues, in a fixed order.
func (w *Workload) Kinds() []OpKind {
	var out []OpKind
	for i, f := range w.Spec.Mix.fractions() {
		if f > 0 {
			out = append(out, OpKind(i))
		}
	}
	return out
}

// Next draws the next operation.
func (w *Workload) Next(r *rand.Rand) Op {
	u := r.Float64()
	k := OpKind(0)
	for k < numOps-1 && u >= w.cum[k] {
		k++
	}
	op := Op{Kind: k}
	switch k {
	case OpInsert:
		op.Key = w.Spec.Key(w.Spec.Keys + w.inserted.Add(1) - 1)
		return op
	case OpScan:
		op.ScanLen = w.Spec.ScanLength
		if w.Spec.MaxScanLen > 0 {
			op.ScanLen = 1 + r.Intn(w.Spec.MaxScanLen)
		}
	}
	if w.latest != nil && k == OpRead {
		newest := w.Spec.Keys + w.inserted.Load() - 1
		op.Key = w.Spec.Key(newest - w.latest.Next(r))
		return op
	}
	op.Key = w.Spec.Key(w.gen.Next(r))
	return op
}
