package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rangestore/rangestore/chaos/fault"
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
)

// AllFaults lists every fault kind.
var AllFaults = []string{FaultPartition, FaultRestart, FaultClock, FaultTransfer}

// Options configure one history.
type Options struct {
	Duration time.Duration
	Clients  int
	Keys     []string // spread over at least two ranges
	Seed     int64
	Faults   []string
	OutDir   string // where failing histories are saved as porcupine HTML
	Logf     func(format string, args ...any)
}

// Result describes one checked history.
type Result struct {
	Ops, Ambiguous, Reads, FailedReads int
	Faults                             []string
	Linearizable                       bool
	Visualization                      string // HTML file of a failing history
}

// DefaultKeys fall into five user ranges of a default cluster.
var DefaultKeys = []string{"A1", "D1", "P1", "c1", "o1", "A2", "P2", "o2"}

// RunHistory starts a 3-node in-process cluster, runs clients doing
// get/put/cas while injecting faults, and checks the history with porcupine.
func RunHistory(ctx context.Context, o Options) (*Result, error) {
	if o.Clients == 0 {
		o.Clients = 6
	}
	if len(o.Keys) == 0 {
		o.Keys = DefaultKeys
	}
	if len(o.Faults) == 0 {
		o.Faults = AllFaults
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	rng := rand.New(rand.NewSource(o.Seed))
	net := fault.NewNetwork()
	clocks := []*fault.Clock{{}, {}, {}}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	tc, err := node.StartTestCluster(sctx, node.TestClusterOptions{Network: net, Clocks: clocks})
	cancel()
	if err != nil {
		return nil, err
	}
	defer tc.Close()

	start := time.Now()
	var (
		mu  sync.Mutex
		ops []porcupine.Operation
	)
	record := func(op porcupine.Operation) {
		mu.Lock()
		ops = append(ops, op)
		mu.Unlock()
	}
	res := &Result{}
	var ambiguous, failedReads, reads atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < o.Clients; c++ {
		crng := rand.New(rand.NewSource(o.Seed*1000 + int64(c)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := map[string]string{}
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				k := o.Keys[crng.Intn(len(o.Keys))]
				kvc := tc.KV(crng.Intn(tc.NumNodes()))
				in := Input{Key: k}
				call := time.Since(start).Nanoseconds()
				octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
				var out Output
				var err error
				switch p := crng.Intn(10); {
				case p < 4:
					in.Op = "get"
					var g *rspb.GetResponse
					g, err = kvc.Get(octx, &rspb.GetRequest{Key: []byte(k)})
					if err == nil {
						out = Output{Found: g.Found, Value: string(g.GetKv().GetValue())}
						if g.Found {
							seen[k] = out.Value
						}
					}
				case p < 7:
					in.Op, in.Value = "put", fmt.Sprintf("c%d-%d", c, seq)
					_, err = kvc.Put(octx, &rspb.PutRequest{Key: []byte(k), Value: []byte(in.Value)})
				default:
					in.Op, in.Value, in.Expected = "cas", fmt.Sprintf("c%d-%d", c, seq), seen[k]
					var r *rspb.ConditionalPutResponse
					req := &rspb.ConditionalPutRequest{Key: []byte(k), Value: []byte(in.Value), ExpectedValue: []byte(in.Expected)}
					if in.Expected == "" {
						req.ExpectAbsent, in.Absent = true, true
					}
					r, err = kvc.ConditionalPut(octx, req)
					if err == nil {
						out.OK = r.Succeeded
						if !r.Succeeded && r.ActualExists {
							seen[k] = string(r.ActualValue)
						}
					}
				}
				ocancel()
				ret := time.Since(start).Nanoseconds()
				if in.Op == "get" {
					reads.Add(1)
				}
				if err != nil {
					if in.Op == "get" {
						failedReads.Add(1) // a failed read has no effect: leave it out
						continue
					}
					out.Unknown = true
					ambiguous.Add(1)
					ret = -1 // patched to the end of the history
				}
				record(porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
			}
		}()
	}

	// Faults: the first after a quarter of the run, then every 3.5-6 s, so a
	// partition or stop outlasts the liveness TTL and leases move.
	deadline := start.Add(o.Duration)
	next := start.Add(o.Duration / 4)
	stopped := -1
	for time.Now().Before(deadline) {
		if time.Now().After(next) {
			f := o.Faults[rng.Intn(len(o.Faults))]
			desc := injectFault(ctx, tc, net, clocks, rng, f, o.Keys, &stopped)
			res.Faults = append(res.Faults, desc)
			o.Logf("t=%.1fs fault: %s", time.Since(start).Seconds(), desc)
			next = time.Now().Add(time.Duration(3500+rng.Intn(2500)) * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
	}
	net.Heal()
	if stopped >= 0 {
		if err := tc.RestartNode(stopped); err != nil {
			return nil, err
		}
	}
	close(stop)
	wg.Wait()
	end := time.Since(start).Nanoseconds() + 1
	for i := range ops {
		if ops[i].Return < 0 {
			ops[i].Return = end
		}
	}
	res.Ops, res.Ambiguous = len(ops), int(ambiguous.Load())
	res.Reads, res.FailedReads = int(reads.Load()), int(failedReads.Load())
	model := KVModel.ToModel()
	check, info := porcupine.CheckOperationsVerbose(model, ops, 2*time.Minute)
	res.Linearizable = check == porcupine.Ok
	if check == porcupine.Unknown {
		return res, fmt.Errorf("linearizability check timed out on %d operations", len(ops))
	}
	if !res.Linearizable && o.OutDir != "" {
		_ = os.MkdirAll(o.OutDir, 0o755)
		res.Visualization = filepath.Join(o.OutDir, fmt.Sprintf("history-seed%d.html", o.Seed))
		if err := porcupine.VisualizePath(model, info, res.Visualization); err != nil {
			return res, err
		}
	}
	return res, nil
}

func injectFault(ctx context.Context, tc *node.TestCluster, net *fault.Network, clocks []*fault.Clock, rng *rand.Rand, f string, ks []string, stopped *int) string {
	n := tc.NumNodes()
	// Undo the previous disruptive fault first so at most one node is out.
	net.Heal()
	if *stopped >= 0 {
		if err := tc.RestartNode(*stopped); err != nil {
			return "restart failed: " + err.Error()
		}
		*stopped = -1
	}
	switch f {
	case FaultPartition:
		victim := leaseholderIndex(tc, ks[rng.Intn(len(ks))], rng)
		net.Isolate(victim, []int{0, 1, 2})
		return fmt.Sprintf("partition: isolated node index %d", victim)
	case FaultRestart:
		victim := leaseholderIndex(tc, ks[rng.Intn(len(ks))], rng)
		tc.StopNode(victim)
		*stopped = victim
		return fmt.Sprintf("restart: stopped node index %d", victim)
	case FaultClock:
		victim := rng.Intn(n)
		off := time.Duration(rng.Intn(400)-200) * time.Millisecond // pairwise < 500 ms max offset
		clocks[victim].SetOffset(off)
		return fmt.Sprintf("clock: node index %d offset %v", victim, off)
	default:
		k := ks[rng.Intn(len(ks))]
		holder := leaseholderIndex(tc, k, rng)
		target := (holder + 1 + rng.Intn(n-1)) % n
		rangeID := rangeIDOf(tc, k)
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := rspb.NewAdminClient(tc.Conn(holder)).TransferLease(tctx, &rspb.TransferLeaseRequest{RangeId: rangeID, TargetNodeId: tc.Node(target).NodeID()})
		if err != nil {
			return fmt.Sprintf("transfer: r%d to node index %d failed: %v", rangeID, target, err)
		}
		return fmt.Sprintf("transfer: r%d from node index %d to %d", rangeID, holder, target)
	}
}

func rangeIDOf(tc *node.TestCluster, k string) uint64 {
	ik := string(keys.UserKey([]byte(k)))
	for _, d := range tc.Init.Ranges {
		if string(d.StartKey) <= ik && ik < string(d.EndKey) {
			return d.RangeId
		}
	}
	return 0
}

// leaseholderIndex is the index of the node holding the lease of k's range
// (a random node if unknown).
func leaseholderIndex(tc *node.TestCluster, k string, rng *rand.Rand) int {
	rid := rangeIDOf(tc, k)
	for i := 0; i < tc.NumNodes(); i++ {
		n := tc.Node(i)
		if n == nil {
			continue
		}
		for _, ri := range n.Ranges() {
			if ri.RangeDescriptor.GetRangeId() == rid && ri.Lease.GetNodeId() != 0 {
				for j := 0; j < tc.NumNodes(); j++ {
					if m := tc.Node(j); m != nil && m.NodeID() == ri.Lease.NodeId {
						return j
					}
				}
			}
		}
	}
	return rng.Intn(tc.NumNodes())
}
