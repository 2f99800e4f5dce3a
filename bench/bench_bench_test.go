package bench

import (
	"math/rand"
	"testing"
	"time"
)

func BenchmarkZipfNext(b *testing.B) {
	z := NewZipfGen(1_000_000, DefaultZipfTheta)
	r := rand.New(rand.NewSource(1))
	for i := 0; i < b.N; i++ {
		_ = z.Next(r)
	}
}

func BenchmarkWorkloadNext(b *testing.B) {
	spec, _ := YCSBSpec("B")
	w, err := NewWorkload(spec)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < b.N; i++ {
		_ = w.Next(r)
	}
}

// BenchmarkRecord measures the runner's per-operation bookkeeping under
// parallel recording.
func BenchmarkRecord(b *testing.B) {
	rec := newRecorder(32)
	b.RunParallel(func(pb *testing.PB) {
		id := rand.Int()
		for pb.Next() {
			rec.record(id, OpRead, 1500*time.Microsecond, false)
		}
	})
}
