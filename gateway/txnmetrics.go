package gateway

import "github.com/prometheus/client_golang/prometheus"

// TxnMetrics counts what transactions do at a node: as their coordinator
// (commits, aborts, restarts by reason) and as a router meeting
// conflicts (pushes won, time spent waiting on conflicting transactions).
type TxnMetrics struct {
	commits    prometheus.Counter
	aborts     *prometheus.CounterVec
	restarts   *prometheus.CounterVec
	txnPushes  prometheus.Counter
	recoveries *prometheus.CounterVec
	contention prometheus.Histogram
	open       prometheus.Gauge
}

// NewTxnMetrics registers the series on reg.
func NewTxnMetrics(reg prometheus.Registerer) *TxnMetrics {
	m := &TxnMetrics{
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_txn_commits_total", Help: "Transactions committed by this node's coordinator."}),
		aborts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_txn_aborts_total", Help: "Transactions this node's coordinator rolled back, by why."}, []string{"reason"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_txn_restarts_total", Help: "Retryable transaction errors returned to clients, by reason."}, []string{"reason"}),
		txnPushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_txn_pushes_total", Help: "Pushes of conflicting transactions that succeeded."}),
		recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_txn_recoveries_total", Help: "Parallel-commit recoveries of STAGING transactions run from this node, by outcome (commit, abort, stop: the record had moved on)."}, []string{"outcome"}),
		contention: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rangestore_txn_contention_seconds", Help: "Time requests waited on conflicting transactions.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rangestore_txn_open", Help: "Transactions this node coordinates now."}),
	}
	reg.MustRegister(m.commits, m.aborts, m.restarts, m.txnPushes, m.recoveries, m.contention, m.open)
	return m
}
