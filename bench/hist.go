package bench

import (
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to 60 s with 3
// significant digits.
const (
	histMin    = 1
	histMax    = 60_000_000
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

func recordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < histMin {
		us = histMin
	}
	if us > histMax {
		us = histMax
	}
	_ = h.RecordValue(us)
}

// OpSummary is the latency and throughput summary of one operation kind
// (or of all kinds, for the total).
type OpSummary struct {
	Op        string  `json:"op"`
	Count     int64   `json:"count"`
	Errors    int64   `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	MeanMs    float64 `json:"mean_ms"`
	P50Ms     float64 `json:"p50_ms"`
	P95Ms     float64 `json:"p95_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p999_ms"`
	MaxMs     float64 `json:"max_ms"`
}

func usToMs(v int64) float64 { return float64(v) / 1000 }

// Summarize turns a histogram of microsecond latencies into an OpSummary
// over the given measured wall time.
func Summarize(op string, h *hdrhistogram.Histogram, errors int64, elapsed time.Duration) OpSummary {
	s := OpSummary{Op: op, Errors: errors}
	if h == nil {
		return s
	}
	s.Count = h.TotalCount()
	if elapsed > 0 {
		s.OpsPerSec = float64(s.Count) / elapsed.Seconds()
	}
	if s.Count == 0 {
		return s
	}
	s.MeanMs = h.Mean() / 1000
	s.P50Ms = usToMs(h.ValueAtQuantile(50))
	s.P95Ms = usToMs(h.ValueAtQuantile(95))
	s.P99Ms = usToMs(h.ValueAtQuantile(99))
	s.P999Ms = usToMs(h.ValueAtQuantile(99.9))
	s.MaxMs = usToMs(h.Max())
	return s
}
