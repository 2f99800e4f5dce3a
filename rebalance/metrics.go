package rebalance

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the replicate queue's series.
type Metrics struct {
	// actions counts the steps a queue carried out, by allocator action
	// (add-voter, remove-voter, remove-non-voter) and result (ok, error,
	// skipped: the lease or the descriptor changed since the plan).
	actions *prometheus.CounterVec
	// passes counts passes by result (ok, error, inactive).
	passes *prometheus.CounterVec
	// underReplicated and unavailable are reported by one node (see
	// MakePlan); the others report 0, so that the sum over the nodes is
	// the cluster's count.
	underReplicated prometheus.Gauge
	unavailable     prometheus.Gauge
}

// NewMetrics registers the queue's series on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_replicate_queue_actions_total",
			Help: "Replica changes carried out by this node's replicate queue, by action (add-voter, remove-voter, remove-non-voter) and result (ok, error, skipped).",
		}, []string{"action", "result"}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_replicate_queue_passes_total",
			Help: "Passes of this node's replicate queue, by result (ok, error, inactive: the node is draining or not initialized).",
		}, []string{"result"}),
		underReplicated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rangestore_ranges_underreplicated",
			Help: "Ranges with fewer voters kept than the replication factor, as of the last pass; reported by the lowest live node ID only (0 elsewhere), so the sum over the nodes counts each range once.",
		}),
		unavailable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rangestore_ranges_unavailable",
			Help: "Ranges that lost their quorum (fewer than a majority of the voters on nodes that are not dead), as of the last pass; reported by the lowest live node ID only (0 elsewhere).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.actions, m.passes, m.underReplicated, m.unavailable)
	}
	return m
}
