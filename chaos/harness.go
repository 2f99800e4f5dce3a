package chaos

import (
	"bytes"
	"context"
	"fmt"
	"google.golang.org/grpc"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Fault kinds.
const (
	FaultPartition = "partition" // isolate one node (Raft and node-to-node RPCs), then heal
	FaultRestart   = "restart"   // stop one node, restart it on the same data
	FaultClock     = "clock"     // move one node's clock within the max offset
	FaultTransfer  = "transfer"  // transfer a lease while clients run
	FaultKill      = "kill9"     // SIGKILL the leaseholder's process, restart it later (process mode)
	FaultMerge     = "merge"     // merge a client key's range with its right neighbour, later split it off again
	FaultReplicas  = "replicas"  // remove a replica of a client key's range from a node without the lease, then add it back there
	// FaultRelocate moves a client key's range to a random 3 of the 5
	// nodes (process mode).
	FaultRelocate = "relocate"
	// FaultDecommission decommissions a node (process mode) and waits
	// until the replicate queue has moved its replicas away; the next
	// fault recommissions it.
	FaultDecommission = "decommission"
	// FaultTxnKill arms the crash point txn-after-stage (process mode,
	// with the transactional workload): the next process to finish a
	// parallel commit's STAGING round as its coordinator dies by SIGKILL
	// before it answers or makes the record COMMITTED, leaving readers to
	// recover the transaction; it is restarted by the next fault.
	FaultTxnKill = "txnkill"
	FaultNone    = "none" // no fault (histories that exercise something else, e.g. splits)
)

// Modes: an in-process cluster of 3 nodes (partitions, restarts, clock
// jumps, transfers, merges, replica removals) or one process per node, 5
// nodes with replication factor 3 (kill -9, transfers, merges, replica
// removals, relocations, decommissions).
const (
	ModeInProcess = "inproc"
	ModeProcess   = "proc"
)

// AllFaults lists the fault kinds of each mode.
var AllFaults = map[string][]string{
	ModeInProcess: {FaultPartition, FaultRestart, FaultClock, FaultTransfer, FaultMerge, FaultReplicas},
	ModeProcess:   {FaultKill, FaultKill, FaultTransfer, FaultMerge, FaultReplicas, FaultRelocate, FaultDecommission, FaultTxnKill},
}

// Options configure one history.
type Options struct {
	Duration time.Duration
	Clients  int
	Keys     []string // spread over at least two ranges
	Seed     int64
	Mode     string // ModeInProcess (default) or ModeProcess
	Faults   []string
	OutDir   string // where failing histories are saved as porcupine HTML
	Logf     func(format string, args ...any)
	// RangeMaxBytes, when set (in-process mode), makes ranges split above
	// that size, and a loader writes 1 KiB values over the whole keyspace
	// while the clients run, so ranges keep splitting under them.
	RangeMaxBytes int64
	// MinSplits, with RangeMaxBytes, keeps the history going past Duration
	// (faults included) until the ranges in meta have grown by that many,
	// for at most MaxDuration in all (default three times Duration): how
	// far a loader gets in a fixed time depends on how loaded the machine is.
	MinSplits   int
	MaxDuration time.Duration
	// Rebalance is the processes' rebalance setting in process mode
	// (RebalanceDefault, the default, or RebalanceAggressive; see
	// rebalance.go); the in-process mode keeps the default thresholds.
	Rebalance string
	// Txns runs the transactional workload alongside the porcupine
	// clients (txnwork.go; doc.go, "Transactions"): a bank and validator
	// clients on keys of their own, split into ranges the faults pick too,
	// checked with txncheck after the faults are undone.
	Txns bool
}

// Result describes one checked history.
type Result struct {
	Ops, Ambiguous, Reads, FailedReads int
	// FailedWrites: writes the client reported as not applied (left out
	// of the history; doc.go).
	FailedWrites int
	// Routing: the clients' client.DB routing counters summed.
	Routing       client.Stats
	Faults        []string
	Linearizable  bool
	Visualization string // HTML file of a failing history
	// With RangeMaxBytes: ranges in meta before and after, loaded keys
	// (acknowledged) and how many of them read back wrong afterwards.
	RangesBefore, RangesAfter, Loaded, LoadedWrong int
	WrongSamples                                   []string
	// Conditional deletes recorded, and how many of them succeeded.
	CondDeletes, CondDeletesOK int
	// The replica consistency check after the history (checkConsistency):
	// ranges compared, ranges skipped (replicas never at one applied
	// index), and ranges whose replicas differ (a failure, like a
	// non-linearizable history).
	ConsistencyCompared int
	ConsistencySkipped  []string
	Diverged            []string
	// Process mode: the rebalancing the replicate queues carried out
	// (moveCounter): replica moves and lease transfers, sampled every
	// second from the processes' /metrics (a lower bound), and the
	// scrapes that failed (processes down).
	RebalanceMoves, LeaseTransfers, MetricScrapes, FailedScrapes int
	// With Txns: the bank's transfers committed (they wrote), skipped
	// (the source was short: read-only), aborted (definitely not applied)
	// and ambiguous, and DB.Txn's reruns of them (client Stats.TxnRetries);
	// snapshots of all accounts committed (BankChecks) and not.
	TxnCommitted, TxnSkipped, TxnAborted, TxnAmbiguous, TxnRetried int
	BankChecks, BankChecksFailed                                   int
	// The validator's ops recorded (ValidatorTxns of them transactions),
	// its DB.Txn reruns, and its reads that failed (left out).
	ValidatorOps, ValidatorTxns, ValidatorRetried, TxnFailedReads int
	// TxnVersions: versions in the dump; TxnInferred: AMBIGUOUS outcomes
	// inferred from it. TxnUnavailableCommits: transactions (of both
	// workloads) whose commit failed Unavailable, recorded FAILED.
	TxnVersions, TxnInferred, TxnUnavailableCommits int
	// TxnViolations are txncheck's violations (one line each; at most
	// maxViolationLines): a history with any fails like a non-linearizable
	// one. TxnReport is the report saved under OutDir with the ops named.
	TxnViolations []string
	TxnReport     string
}

// DefaultKeys fall into five user ranges of a default cluster.
var DefaultKeys = []string{"A1", "D1", "P1", "c1", "o1", "A2", "P2", "o2"}

// RunHistory starts a cluster (3 nodes in process, or 5 processes),
// runs clients doing get/put/cas/conditional delete while injecting
// faults, and checks the history with porcupine; with Txns, the
// transactional workload runs alongside and is checked with txncheck.
func RunHistory(ctx context.Context, o Options) (*Result, error) {
	if o.Clients == 0 {
		o.Clients = 6
	}
	if len(o.Keys) == 0 {
		o.Keys = DefaultKeys
	}
	if o.Mode == "" {
		o.Mode = ModeInProcess
	}
	if len(o.Faults) == 0 {
		o.Faults = AllFaults[o.Mode]
	}
	if !o.Txns {
		// No transactional workload: no parallel commit reaches the
		// crash point.
		o.Faults = slices.DeleteFunc(slices.Clone(o.Faults), func(f string) bool { return f == FaultTxnKill })
		if len(o.Faults) == 0 {
			o.Faults = []string{FaultNone}
		}
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	extra, err := rebalanceArgs(o.Rebalance)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewSource(o.Seed))
	var tgt target
	var counter *moveCounter
	if o.Mode == ModeProcess {
		counter = newMoveCounter()
		tgt, err = newProcTarget(ctx, extra)
	} else {
		tgt, err = newInProcTarget(ctx, o.RangeMaxBytes)
	}
	if err != nil {
		return nil, err
	}
	defer tgt.close()

	var txns *txnWork
	faultKeys := o.Keys
	if o.Txns {
		if txns, err = newTxnWork(ctx, tgt, tgt.tracker(), o.Seed, o.Logf); err != nil {
			return nil, err
		}
		defer txns.close()
		faultKeys = append(append([]string(nil), o.Keys...), txnFaultKeys...)
	}

	start := time.Now()
	res := &Result{}
	clients, err := startClients(ctx, OpenDBs(tgt.clientAddrs(), tgt.clientOptions()...), o.Keys, o.Clients, o.Seed, start)
	if err != nil {
		return nil, err
	}
	defer clients.stop()
	if txns != nil {
		txns.run(ctx)
	}

	var loader *loader
	if o.RangeMaxBytes > 0 {
		it, ok := tgt.(*inProcTarget)
		if !ok {
			return nil, fmt.Errorf("chaos: RangeMaxBytes needs the in-process mode")
		}
		descs, err := it.Node(0).MetaRanges(ctx)
		if err != nil {
			return nil, err
		}
		res.RangesBefore = len(descs)
		if loader, err = startLoader(ctx, tgt, o.Seed); err != nil {
			return nil, err
		}
		defer loader.halt()
	}

	// Faults: the first after a quarter of the run, then every 3.5-6 s, so a
	// partition or stop outlasts the liveness TTL and leases move.
	deadline := start.Add(o.Duration)
	next := start.Add(o.Duration / 4)
	var nextSample time.Time
	for time.Now().Before(deadline) || loader.wantsMoreSplits(ctx, tgt, o, start, res.RangesBefore) {
		if counter != nil && time.Now().After(nextSample) {
			counter.sample(ctx, tgt.(*procTarget).httpAddrs())
			nextSample = time.Now().Add(time.Second)
		}
		if time.Now().After(next) {
			f := o.Faults[rng.Intn(len(o.Faults))]
			desc := tgt.inject(ctx, rng, f, faultKeys)
			res.Faults = append(res.Faults, desc)
			o.Logf("t=%.1fs fault: %s", time.Since(start).Seconds(), desc)
			next = time.Now().Add(time.Duration(3500+rng.Intn(2500)) * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := tgt.recover(); err != nil {
		return nil, err
	}
	clients.stop()
	if txns != nil {
		if err := txns.finish(ctx, tgt, res, o.OutDir); err != nil {
			return nil, err
		}
		if pt, ok := tgt.(*procTarget); ok && len(res.TxnViolations) > 0 && !pt.keep {
			pt.keep = true
			o.Logf("seed %d: the processes' stores and logs (n*.log) are kept in %s", o.Seed, pt.dir)
		}
	}
	if counter != nil {
		counter.sample(ctx, tgt.(*procTarget).httpAddrs())
		res.RebalanceMoves, res.LeaseTransfers, res.MetricScrapes, res.FailedScrapes = counter.Moves, counter.Leases, counter.Scrapes, counter.Fails
	}
	if loader != nil {
		if err := loader.finish(ctx, tgt, res); err != nil {
			return nil, err
		}
		o.Logf("splits: %d ranges before, %d after; %d loaded keys, %d read back wrong", res.RangesBefore, res.RangesAfter, res.Loaded, res.LoadedWrong)
	}
	// Compare the replicas with the clients stopped and every fault undone.
	cons, err := checkConsistency(ctx, tgt, 10*time.Second)
	if err != nil {
		return nil, err
	}
	res.ConsistencyCompared, res.ConsistencySkipped, res.Diverged = cons.Compared, cons.Skipped, cons.Diverged
	for _, d := range cons.Diverged {
		o.Logf("seed %d: replicas diverged: %s", o.Seed, d)
	}
	ops := clients.history(res)
	model := KVModel.ToModel()
	check, info := porcupine.CheckOperationsVerbose(model, ops, 2*time.Minute)
	res.Linearizable = check == porcupine.Ok
	if check == porcupine.Unknown {
		return res, fmt.Errorf("linearizability check timed out on %d operations", len(ops))
	}
	if len(res.Diverged) > 0 {
		if pt, ok := tgt.(*procTarget); ok && !pt.keep {
			pt.keep = true
			o.Logf("seed %d: the processes' stores and logs (n*.log) are kept in %s", o.Seed, pt.dir)
		}
	}
	if !res.Linearizable && o.OutDir != "" {
		_ = os.MkdirAll(o.OutDir, 0o755)
		res.Visualization = filepath.Join(o.OutDir, fmt.Sprintf("history-seed%d.html", o.Seed))
		if err := porcupine.VisualizePath(model, info, res.Visualization); err != nil {
			return res, err
		}
		if pt, ok := tgt.(*procTarget); ok && !pt.keep {
			pt.keep = true
			o.Logf("seed %d: the processes' stores and logs (n*.log) are kept in %s", o.Seed, pt.dir)
		}
	}
	return res, nil
}

// target is a cluster under test with its fault injectors.
type target interface {
	NumNodes() int
	KV(i int) rspb.KVClient
	Conn(i int) *grpc.ClientConn
	// clientAddrs and clientOptions are what client.Open needs to reach
	// the cluster: the nodes' gRPC addresses, and its credentials or dial
	// options.
	clientAddrs() []string
	clientOptions() []client.Option
	// inject undoes the previous disruptive fault (so at most one node is
	// out at a time), injects a fault of the given kind and describes it.
	inject(ctx context.Context, rng *rand.Rand, kind string, keys []string) string
	// recover undoes every fault.
	recover() error
	close()
	// tracker is the range descriptors the faults pick ranges from.
	tracker() *merger
}

func rangeIDOf(ranges []*rspb.RangeDescriptor, k string) uint64 {
	ik := string(keys.UserKey([]byte(k)))
	for _, d := range ranges {
		if string(d.StartKey) <= ik && ik < string(d.EndKey) {
			return d.RangeId
		}
	}
	return 0
}

// leaseholderOf asks the reachable nodes who holds the lease of a range.
func leaseholderOf(ctx context.Context, admins []rspb.AdminClient, rangeID uint64) uint64 {
	for _, a := range admins {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := a.Ranges(actx, &rspb.RangesRequest{})
		cancel()
		if err != nil {
			continue
		}
		for _, ri := range r.Ranges {
			if ri.RangeDescriptor.GetRangeId() == rangeID && ri.LeaseValid {
				return ri.Lease.NodeId
			}
		}
	}
	return 0
}

// merger runs merge faults: a merge of the range holding a client key with
// its right neighbour, while the clients run; the next merge fault first
// splits the absorbed range off again (so the keys keep spanning several
// ranges, and the split runs on a range that just merged). ranges tracks
// the cluster's descriptors for the other faults.
type merger struct {
	ranges []*rspb.RangeDescriptor
	// absorbed is the start (user key) of the range the last merge absorbed.
	absorbed []byte
}

func (m *merger) inject(ctx context.Context, admin rspb.AdminClient, admins []rspb.AdminClient, rng *rand.Rand, ks []string) string {
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out []string
	if m.absorbed != nil {
		r, err := admin.SplitRange(mctx, &rspb.SplitRangeRequest{Key: m.absorbed})
		if err != nil {
			out = append(out, fmt.Sprintf("split %q failed: %v", m.absorbed, err))
		} else {
			m.replace(r.Left, r.Right)
			out = append(out, fmt.Sprintf("split r%d at %q (r%d)", r.Left.RangeId, m.absorbed, r.Right.RangeId))
		}
		m.absorbed = nil
	}
	// A key whose range has a right neighbour (the last range has none).
	var cands []string
	for _, k := range ks {
		for _, d := range m.ranges {
			if keys.InSpan(keys.UserKey([]byte(k)), d.StartKey, d.EndKey) && bytes.Compare(d.EndKey, keys.UserSpanEnd) < 0 {
				cands = append(cands, k)
			}
		}
	}
	if len(cands) == 0 {
		cands = ks
	}
	k := cands[rng.Intn(len(cands))]
	// The absorbed range starts where the merged one ended before (the
	// answer names it only if the attempt that merged answered: a merge
	// answered by a retry from the range's new extent does not).
	var oldEnd []byte
	for _, d := range m.ranges {
		if keys.InSpan(keys.UserKey([]byte(k)), d.StartKey, d.EndKey) {
			oldEnd = d.EndKey
		}
	}
	if c := colocate(ctx, admin, admins, k); c != "" {
		out = append(out, c)
	}
	mctx, cancel2 := context.WithTimeout(ctx, 10*time.Second) // the colocation may have taken a while
	defer cancel2()
	r, err := admin.MergeRange(mctx, &rspb.MergeRangeRequest{Key: []byte(k)})
	if err != nil {
		out = append(out, fmt.Sprintf("merge of the range holding %q failed: %v", k, err))
	} else {
		m.replace(r.Merged)
		if ab := r.GetAbsorbed(); ab != nil {
			oldEnd = ab.StartKey
		}
		if ck, err := keys.ClientKey(oldEnd); err == nil && len(ck) > 0 && bytes.Compare(oldEnd, r.Merged.EndKey) < 0 {
			m.absorbed = ck
		}
		absorbed := "its right neighbour (answered by a retry)"
		if ab := r.GetAbsorbed(); ab != nil {
			absorbed = fmt.Sprintf("r%d", ab.RangeId)
		}
		out = append(out, fmt.Sprintf("merged %s into r%d (holding %q)", absorbed, r.Merged.RangeId, k))
	}
	return "merge: " + strings.Join(out, "; ")
}

// replace puts descriptors into m.ranges in place of those they overlap.
func (m *merger) replace(ds ...*rspb.RangeDescriptor) {
	var out []*rspb.RangeDescriptor
	for _, o := range m.ranges {
		keep := true
		for _, d := range ds {
			if keys.Overlaps(o.StartKey, o.EndKey, d.StartKey, d.EndKey) {
				keep = false
			}
		}
		if keep {
			out = append(out, o)
		}
	}
	m.ranges = append(out, ds...)
}

func transfer(ctx context.Context, admin rspb.AdminClient, rangeID, from, to uint64) string {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := admin.TransferLease(tctx, &rspb.TransferLeaseRequest{RangeId: rangeID, TargetNodeId: to}); err != nil {
		return fmt.Sprintf("transfer: r%d n%d->n%d failed: %v", rangeID, from, to, err)
	}
	return fmt.Sprintf("transfer: r%d n%d->n%d", rangeID, from, to)
}

// inProcTarget is an in-process cluster behind a partition matrix with
// adjustable clocks.
type inProcTarget struct {
	*node.TestCluster
	net     *fault.Network
	clocks  []*fault.Clock
	stopped int
	merger  merger
}

func newInProcTarget(ctx context.Context, rangeMaxBytes int64) (*inProcTarget, error) {
	t := &inProcTarget{net: fault.NewNetwork(), clocks: []*fault.Clock{{}, {}, {}}, stopped: -1}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	opts := node.TestClusterOptions{Network: t.net, Clocks: t.clocks}
	if rangeMaxBytes > 0 {
		opts.RangeMaxBytes, opts.SplitCheckInterval, opts.MetaCheckInterval = rangeMaxBytes, 200*time.Millisecond, time.Second
	}
	tc, err := node.StartTestCluster(sctx, opts)
	if err != nil {
		return nil, err
	}
	t.TestCluster = tc
	t.merger.ranges = tc.Init.Ranges
	return t, nil
}

func (t *inProcTarget) clientAddrs() []string {
	var out []string
	for i := 0; i < t.NumNodes(); i++ {
		out = append(out, t.Addr(i))
	}
	return out
}

func (t *inProcTarget) clientOptions() []client.Option {
	return append([]client.Option{client.WithDialOptions(t.ClientDialOptions()...)}, clientRetry...)
}

// clientRetry is the retry policy of the harness's client.DBs: an attempt
// at a node that does not answer (stopped, partitioned, killed) gives up
// after a second, so that an operation (3 s) fails over to another
// replica instead of spending its whole time there.
var clientRetry = []client.Option{client.WithRetryPolicy(client.RetryPolicy{AttemptTimeout: time.Second})}

func (t *inProcTarget) admins() []rspb.AdminClient {
	var out []rspb.AdminClient
	for i := 0; i < t.NumNodes(); i++ {
		out = append(out, rspb.NewAdminClient(t.Conn(i)))
	}
	return out
}

func (t *inProcTarget) indexOf(nodeID uint64, rng *rand.Rand) int {
	for i := 0; i < t.NumNodes(); i++ {
		if n := t.Node(i); n != nil && n.NodeID() == nodeID {
			return i
		}
	}
	return rng.Intn(t.NumNodes())
}

func (t *inProcTarget) recover() error {
	t.net.Heal()
	if t.stopped >= 0 {
		if err := t.RestartNode(t.stopped); err != nil {
			return err
		}
		t.stopped = -1
	}
	return nil
}

func (t *inProcTarget) inject(ctx context.Context, rng *rand.Rand, kind string, ks []string) string {
	if err := t.recover(); err != nil {
		return "restart failed: " + err.Error()
	}
	rid := rangeIDOf(t.merger.ranges, ks[rng.Intn(len(ks))])
	holder := leaseholderOf(ctx, t.admins(), rid)
	victim := t.indexOf(holder, rng)
	switch kind {
	case FaultNone:
		return "none"
	case FaultMerge:
		return t.merger.inject(ctx, rspb.NewAdminClient(t.Conn(rng.Intn(t.NumNodes()))), t.admins(), rng, ks)
	case FaultReplicas:
		return replicaFault(ctx, rspb.NewAdminClient(t.Conn(rng.Intn(t.NumNodes()))), t.admins(), rng, rid, nodeIDs(t.NumNodes()))
	case FaultPartition:
		t.net.Isolate(victim, []int{0, 1, 2})
		return fmt.Sprintf("partition: isolated n%d (leaseholder of r%d)", t.Node(victim).NodeID(), rid)
	case FaultRestart:
		id := t.Node(victim).NodeID()
		t.StopNode(victim)
		t.stopped = victim
		return fmt.Sprintf("restart: stopped n%d (leaseholder of r%d)", id, rid)
	case FaultClock:
		v := rng.Intn(t.NumNodes())
		off := time.Duration(rng.Intn(400)-200) * time.Millisecond // pairwise < 500 ms max offset
		t.clocks[v].SetOffset(off)
		return fmt.Sprintf("clock: n%d offset %v", t.Node(v).NodeID(), off)
	default:
		to := t.Node((victim + 1 + rng.Intn(t.NumNodes()-1)) % t.NumNodes()).NodeID()
		return transfer(ctx, rspb.NewAdminClient(t.Conn(victim)), rid, holder, to)
	}
}

func (t *inProcTarget) close() { t.Close() }

func (t *inProcTarget) tracker() *merger { return &t.merger }

// procTarget is one `rangestore start` process per node.
type procTarget struct {
	*ProcCluster
	dir    string
	merger merger
	killed int
	// decommissioning is the node a decommission fault left
	// decommissioning (0: none); recover recommissions it.
	decommissioning uint64
	// restarted is the process recover restarted last (-1: none): it may
	// not listen yet, so faults go through another one.
	restarted int
	keep      bool // a failing history: its stores and logs stay for inspection
	// txnCrash is the once-file that arms txn-after-stage (FaultTxnKill):
	// the process that removes it dies.
	txnCrash string
}

// procArgs are the `start` flags of a process-mode history: the replicate
// queue passes every second (decommissions are emptied, replicas a fault
// left short are repaired, counts are rebalanced within a history), and a
// node whose liveness has expired for 10 s is dead (its replicas are
// replaced).
// Every process serves /metrics on a loopback address of its own (the
// rebalancing moves are counted from it); extra are more flags (a
// rebalance setting).
var procArgs = []string{"--replicate-queue-interval", "1s", "--time-until-store-dead", "10s", "--http-addr", FreeLoopback}

func newProcTarget(ctx context.Context, extra []string) (*procTarget, error) {
	dir, err := os.MkdirTemp("", "rangestore-chaos-")
	if err != nil {
		return nil, err
	}
	txnCrash := filepath.Join(dir, "txn-crash-once")
	pc, err := StartProcClusterArgs(dir, procNodes, append(append([]string(nil), procArgs...), extra...),
		"RANGESTORE_CRASH_AT=txn-after-stage", "RANGESTORE_CRASH_ONCE_FILE="+txnCrash)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	init, err := pc.Init(ictx, 4)
	if err != nil {
		pc.Close()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	t := &procTarget{ProcCluster: pc, dir: dir, merger: merger{ranges: init.Ranges}, killed: -1, restarted: -1, txnCrash: txnCrash}
	// Wait until every user range serves.
	for _, d := range init.Ranges {
		if !keys.IsUserKey(d.StartKey) {
			continue
		}
		k := append([]byte{'0'}, d.StartKey[1:]...)
		for {
			gctx, gcancel := context.WithTimeout(ictx, 2*time.Second)
			_, err := pc.KV(0).Get(gctx, &rspb.GetRequest{Key: k})
			gcancel()
			if err == nil {
				break
			}
			if ictx.Err() != nil {
				t.close()
				return nil, fmt.Errorf("r%d not ready: %w", d.RangeId, err)
			}
		}
	}
	return t, nil
}

// httpAddrs are the processes' HTTP addresses (those of processes that
// are down too: their scrapes fail).
func (t *procTarget) httpAddrs() []string {
	var out []string
	for i := 0; i < t.NumNodes(); i++ {
		if a := t.HTTPAddr(i); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func (t *procTarget) clientAddrs() []string { return append([]string(nil), t.Addrs...) }

func (t *procTarget) clientOptions() []client.Option {
	return append(t.ClientOptions(), clientRetry...)
}

func (t *procTarget) admins() []rspb.AdminClient {
	var out []rspb.AdminClient
	for i := 0; i < t.NumNodes(); i++ {
		if t.Running(i) {
			out = append(out, rspb.NewAdminClient(t.Conn(i)))
		}
	}
	return out
}

func (t *procTarget) recover() error {
	t.restarted = -1
	_ = os.Remove(t.txnCrash) // disarm txn-after-stage
	if t.killed >= 0 {
		if err := t.Start(t.killed); err != nil {
			return err
		}
		t.restarted, t.killed = t.killed, -1
	}
	if t.decommissioning != 0 {
		if err := recommission(context.Background(), t.admins(), t.decommissioning, 30*time.Second); err != nil {
			return err
		}
		t.decommissioning = 0
	}
	return nil
}

func (t *procTarget) inject(ctx context.Context, rng *rand.Rand, kind string, ks []string) string {
	if err := t.recover(); err != nil {
		return "restart failed: " + err.Error()
	}
	switch kind {
	case FaultNone:
		return "none"
	case FaultTxnKill:
		return t.txnKill(ctx)
	}
	admin := rspb.NewAdminClient(t.Conn(t.otherThan(-1, rng)))
	if kind == FaultMerge {
		return t.merger.inject(ctx, admin, t.admins(), rng, ks)
	}
	rid := rangeIDOf(t.merger.ranges, ks[rng.Intn(len(ks))])
	switch kind {
	case FaultReplicas:
		return replicaFault(ctx, admin, t.admins(), rng, rid, nodeIDs(t.NumNodes()))
	case FaultRelocate:
		return relocateFault(ctx, admin, t.admins(), rng, rid, nodeIDs(t.NumNodes()))
	}
	holder := leaseholderOf(ctx, t.admins(), rid)
	victim := t.IndexOfNodeID(holder)
	if victim < 0 {
		victim = rng.Intn(t.NumNodes())
	}
	if kind == FaultKill {
		t.Kill(victim)
		t.killed = victim
		if holder == 0 {
			return fmt.Sprintf("kill9: SIGKILL process %d (no valid lease of r%d known)", victim, rid)
		}
		return fmt.Sprintf("kill9: SIGKILL process of n%d (leaseholder of r%d)", holder, rid)
	}
	if kind == FaultDecommission {
		id := uint64(rng.Intn(t.NumNodes()) + 1)
		if holder != 0 && rng.Intn(2) == 0 {
			id = holder // half the time the leaseholder of a client key's range
		}
		desc, marked := decommissionFault(ctx, rspb.NewAdminClient(t.Conn(t.otherThan(t.IndexOfNodeID(id), rng))), id)
		if marked {
			t.decommissioning = id
		}
		return desc
	}
	// A transfer to another voter of the range (any other node when the
	// voters are not known).
	n := t.NumNodes()
	to := uint64((int(holder)+rng.Intn(n-1))%n + 1) // any node but the holder
	if v := viewRanges(ctx, t.admins())[rid]; v != nil {
		var others []uint64
		for _, id := range voterNodes(v.desc) {
			if id != holder {
				others = append(others, id)
			}
		}
		if len(others) > 0 {
			to = others[rng.Intn(len(others))]
		}
	}
	return transfer(ctx, rspb.NewAdminClient(t.Conn(victim)), rid, holder, to)
}

// txnKillWait bounds how long an armed txn-after-stage waits for a
// parallel commit.
const txnKillWait = 8 * time.Second

// txnKill arms txn-after-stage and waits until a process died there.
func (t *procTarget) txnKill(ctx context.Context) string {
	if err := os.WriteFile(t.txnCrash, nil, 0o644); err != nil {
		return "txnkill: arming failed: " + err.Error()
	}
	deadline := time.Now().Add(txnKillWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for i := 0; i < t.NumNodes(); i++ {
			if !t.Running(i) {
				t.killed = i
				return fmt.Sprintf("txnkill: process %d died at txn-after-stage (a parallel commit's coordinator, after its STAGING round, before its answer)", i)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = os.Remove(t.txnCrash)
	return fmt.Sprintf("txnkill: armed for %v, no parallel commit reached txn-after-stage", txnKillWait)
}

// otherThan is the index of a random process other than skip and than
// the one recover just restarted.
func (t *procTarget) otherThan(skip int, rng *rand.Rand) int {
	for {
		if i := rng.Intn(t.NumNodes()); i != skip && i != t.restarted {
			return i
		}
	}
}

func (t *procTarget) tracker() *merger { return &t.merger }

func (t *procTarget) close() {
	t.Close()
	if !t.keep {
		_ = os.RemoveAll(t.dir)
	}
}
