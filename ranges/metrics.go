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
	// leaseReads counts reads served from local state under a lease;
	// readIndex counts every ReadIndex (Raft read) call the store makes:
	// wake-ups of quiesced ranges, never reads.
	leaseReads prometheus.Counter
	// followerReads counts reads served below a closed timestamp without
	// the lease (any replica); closedLag is the largest closed timestamp
	// lag of the local replicas.
	followerReads prometheus.Counter
	closedLag     prometheus.Gauge
	readIndex     prometheus.Counter
	leases        *prometheus.CounterVec // kind: acquired, transferred, extended
	// leaseFailures counts failed background lease operations (op:
	// extend, acquire, leader_transfer).
	leaseFailures *prometheus.CounterVec
	// Range lifecycle.
	splits           prometheus.Counter
	merges           prometheus.Counter
	wakeups          prometheus.Counter
	splitsBy         *prometheus.CounterVec // reason: size, load
	hotKeys          prometheus.Counter
	splitCompactions prometheus.Counter
	metaUpdates      prometheus.Counter
	replicasRepaired prometheus.Counter
	replicasGC       prometheus.Counter
	settling         prometheus.Gauge
	reproposals      prometheus.Counter
	reg              prometheus.Registerer

	// replicaChanges counts the steps of replica changes this node took as
	// leaseholder (step: descriptor-add-non-voter, raft-promote, ...).
	replicaChanges *prometheus.CounterVec

	// Range snapshots (snapshot_limits.go): direction send or apply.
	snapshotsSent     prometheus.Counter
	snapshotsReceived prometheus.Counter
	snapshotsSkipped  prometheus.Counter
	snapshotBytesSent prometheus.Counter
	snapshotBytesRecv prometheus.Counter
	snapshotSeconds   *prometheus.HistogramVec // direction
	snapshotFailures  *prometheus.CounterVec   // direction
	snapshotsInFlight *prometheus.GaugeVec     // direction

	// pushWaits: pushes that waited in the push wait queue (pushqueue.go).
	pushWaits prometheus.Histogram
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
		leaseReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_lease_reads_total", Help: "Reads served by a leaseholder from local state, without consensus.",
		}),
		followerReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_follower_reads_total", Help: "Reads served by any replica (follower, non-voter or leaseholder) from local state at or below its closed timestamp, without the lease; not counted in rangestore_lease_reads_total.",
		}),
		closedLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rangestore_replica_closed_timestamp_lag_seconds", Help: "The largest lag of a local replica's closed timestamp behind this node's clock (now - closed timestamp), over all local replicas, refreshed every closed timestamp interval; a replica with none yet counts from the store's start.",
		}),
		readIndex: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_read_index_total", Help: "Raft ReadIndex calls made by the store: only to wake quiesced ranges (rangestore_raft_wakeups_total counts those that started); reads under a lease make none.",
		}),
		leaseFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_lease_failures_total", Help: "Failed background lease operations of the lease loop, by op (extend an expiration lease, acquire a lease, move Raft leadership to the leaseholder); each is also logged, rate-limited per range.",
		}, []string{"op"}),
		leases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_leases_total", Help: "Leases applied by this node's proposals, by kind (acquired, transferred, extended).",
		}, []string{"kind"}),
		splits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_range_splits_total", Help: "Splits proposed by this node (as leaseholder of the parent).",
		}),
		splitCompactions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_split_log_compactions_total", Help: "New right-hand replicas whose initial Raft log was compacted away (so laggards get snapshots).",
		}),
		merges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_range_merges_total", Help: "Merges proposed by this node (as leaseholder of the left range).",
		}),
		wakeups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_raft_wakeups_total", Help: "Quiesced ranges woken by a ReadIndex (a proposal or a lease takeover found no live leader); not part of the read path.",
		}),
		splitsBy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_split_queue_splits_total", Help: "Splits and merges made by the split queue, by reason (size, load, merge).",
		}, []string{"reason"}),
		hotKeys: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_hot_keys_total", Help: "Times a range's load was found concentrated on one key (reported, not split).",
		}),
		replicasRepaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_replicas_created_from_meta_total", Help: "Missing local replicas (a split skipped through a snapshot) created empty and caught up by snapshot.",
		}),
		replicaChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_replica_change_steps_total", Help: "Steps of replica changes (adding or removing a replica) taken by this node as leaseholder, by step.",
		}, []string{"step"}),
		replicasGC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_replicas_gc_total", Help: "Orphaned local replicas of ranges merged away (the merge was missed here) destroyed with their data by the replica GC.",
		}),
		metaUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_meta_updates_total", Help: "Meta records written by this node (after splits, or repairs).",
		}),
		settling: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rangestore_proposals_settling", Help: "Commands whose caller gave up while they were still in the Raft log: their latches (or a transfer's refusal to serve) are held until they apply or can no longer apply.",
		}),
		reproposals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_raft_reproposals_total", Help: "Commands proposed again as the same bytes because a try got no result in time (its wait grows with the command's size and with each timed-out try).",
		}),
		snapshotsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_snapshots_sent_total", Help: "Range snapshots this node streamed to another replica that Dragonboat delivered in full (its SendSnapshotCompleted events).",
		}),
		snapshotsSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_snapshots_skipped_total", Help: "Range snapshot streams this node ended unsent because the receiver had meanwhile restored the snapshot delivered just before (Dragonboat had asked for the range again while the receiver was still restoring it).",
		}),
		snapshotsReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_snapshots_received_total", Help: "Range snapshots received and applied by this node's replicas.",
		}),
		snapshotBytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_snapshot_bytes_sent_total", Help: "Bytes of range snapshots streamed by this node, counted as they are written (before Dragonboat's compression; also those of snapshots that failed).",
		}),
		snapshotBytesRecv: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rangestore_snapshot_bytes_received_total", Help: "Bytes of range snapshots read by this node's replicas to apply them (from the received file), counted as they are read.",
		}),
		snapshotSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rangestore_snapshot_seconds", Help: "Duration of range snapshots that succeeded, by direction: send (SaveSnapshot streaming one into Dragonboat, waits for the rate limit included) or apply (RecoverFromSnapshot staging and ingesting a received one); waits for a slot are not included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"direction"}),
		snapshotFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rangestore_snapshot_failures_total", Help: "Range snapshots that failed, by direction: send (streams Dragonboat aborted: its SendSnapshotAborted events, those skipped as not needed excepted), apply (RecoverFromSnapshot errors, stops included); Raft sends them again.",
		}, []string{"direction"}),
		snapshotsInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rangestore_snapshots_in_flight", Help: "Range snapshots being sent or applied by this node now, by direction (bounded by --max-snapshots-in-flight each).",
		}, []string{"direction"}),
		pushWaits: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rangestore_txn_push_wait_seconds", Help: "Time pushes of live transactions waited in this node's push wait queue (until the pushee's record changed, it could expire, or 1 s) before they were evaluated.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 12),
		}),
		reg: reg,
	}
	for _, d := range []string{snapSend, snapApply} {
		m.snapshotSeconds.WithLabelValues(d)
		m.snapshotFailures.WithLabelValues(d)
		m.snapshotsInFlight.WithLabelValues(d)
	}
	for _, op := range []string{"extend", "acquire", "leader_transfer"} {
		m.leaseFailures.WithLabelValues(op) // exported (as 0) before the first failure
	}
	reg.MustRegister(m.proposals, m.reads, m.latency, m.leaseReads, m.followerReads, m.closedLag, m.readIndex, m.leases, m.leaseFailures, m.splits, m.merges, m.wakeups, m.splitsBy, m.hotKeys, m.splitCompactions, m.metaUpdates, m.replicasRepaired, m.replicasGC, m.replicaChanges, m.settling, m.reproposals,
		m.snapshotsSent, m.snapshotsSkipped, m.snapshotsReceived, m.snapshotBytesSent, m.snapshotBytesRecv, m.snapshotSeconds, m.snapshotFailures, m.snapshotsInFlight, m.pushWaits)
	return m
}

func (m *Metrics) bindStore(s *Store) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rangestore_replicas", Help: "Replicas on this node's store.",
	}, func() float64 { return float64(s.NumReplicas()) }))
	for kind, typ := range []string{"voter", "non_voter"} {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rangestore_replica_applied_index_lag", ConstLabels: prometheus.Labels{"type": typ},
			Help: "Raft log entries the most behind local replica of the type has to apply: the commit index it learned minus its applied index.",
		}, func() float64 { return float64(s.appliedLags()[kind].lag) }))
	}
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

func (s *Store) metricsLease(next, prev *rspb.Lease) {
	if s.cfg.Metrics == nil {
		return
	}
	kind := "acquired"
	switch {
	case next.Sequence == prev.Sequence:
		kind = "extended"
	case next.NodeId != s.NodeID():
		kind = "transferred"
	}
	s.cfg.Metrics.leases.WithLabelValues(kind).Inc()
}

// pushWaited records a push's wait in the push wait queue.
func (m *Metrics) pushWaited(d time.Duration) {
	if m != nil {
		m.pushWaits.Observe(d.Seconds())
	}
}

// reproposal counts one command proposed again after a try timed out.
func (m *Metrics) reproposal() {
	if m != nil {
		m.reproposals.Inc()
	}
}

func (m *Metrics) snapshotInFlight(dir string, delta float64) {
	if m != nil {
		m.snapshotsInFlight.WithLabelValues(dir).Add(delta)
	}
}

// snapshotBytes counts n bytes of a snapshot as they are sent or read
// for applying (also those of snapshots that fail later).
func (m *Metrics) snapshotBytes(dir string, n int) {
	if m == nil || n <= 0 {
		return
	}
	if dir == snapSend {
		m.snapshotBytesSent.Add(float64(n))
	} else {
		m.snapshotBytesRecv.Add(float64(n))
	}
}

// snapshotDone records the end of one SaveSnapshot (direction send: the
// duration of a success; whether Dragonboat delivered the stream is
// counted from its events, snapshotEvents) or RecoverFromSnapshot
// (direction apply: a failure, or its count and duration).
func (m *Metrics) snapshotDone(dir string, d time.Duration, err error) {
	if m == nil {
		return
	}
	if dir == snapSend {
		if err == nil {
			m.snapshotSeconds.WithLabelValues(dir).Observe(d.Seconds())
		}
		return
	}
	if err != nil {
		m.snapshotFailures.WithLabelValues(dir).Inc()
		return
	}
	m.snapshotSeconds.WithLabelValues(dir).Observe(d.Seconds())
	m.snapshotsReceived.Inc()
}
