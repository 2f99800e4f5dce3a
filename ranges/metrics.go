package ranges

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Metrics are the store's Prometheus series.
type Metrics struct {
	proposals *prometheus.CounterVec   // result
	reads     *prometheus.CounterVec   // result
	latency   *prometheus.HistogramVec // kind
	reg       prometheus.Registerer
}

// NewMetrics registers the store's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_raft_proposals_total", Help: "Raft proposals by outcome (ok or the RangeError code).",
		}, []string{"result"}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_replica_reads_total", Help: "Read-only batches served by local replicas, by outcome.",
		}, []string{"result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rangestore_replica_request_seconds", Help: "Latency of batches at the replica, by kind (read or write).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}, []string{"kind"}),
		reg: reg,
	}
	reg.MustRegister(m.proposals, m.reads, m.latency)
	return m
}

func (m *Metrics) bindStore(s *Store) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rangestore_replicas", Help: "Replicas on this node's store.",
	}, func() float64 { return float64(s.NumReplicas()) }))
}

func (m *Metrics) observe(req *rspb.RangeRequest, resp *rspb.RangeResponse, d time.Duration) {
	result := "ok"
	if resp.Error != nil {
		result = resp.Error.Code.String()
	}
	if IsReadOnly(req.Requests) {
		m.reads.WithLabelValues(result).Inc()
		m.latency.WithLabelValues("read").Observe(d.Seconds())
		return
	}
	m.proposals.WithLabelValues(result).Inc()
	m.latency.WithLabelValues("write").Observe(d.Seconds())
}
