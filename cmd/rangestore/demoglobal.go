package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

// globalRegions are demo --global's regions, in print order; each has
// globalZones zones with one node each.
var globalRegions = []string{"us-east", "eu-west", "ap-south"}

const globalZones = 3

// globalOptions are demo --global's settings, validated.
type globalOptions struct {
	store         string
	splits        int
	duration      time.Duration
	log           *slog.Logger
	clientRegions []string      // the client starts in the first, moves on every moveEvery
	moveEvery     time.Duration //
	latencies     *fault.LatencyTable
	concurrency   int
	readPercent   int
	every         time.Duration
}

// globalLocalities are the nine nodes' localities: region=R,zone=R-a..c.
func globalLocalities() [][]*rspb.LocalityTier {
	var out [][]*rspb.LocalityTier
	for _, r := range globalRegions {
		for z := 0; z < globalZones; z++ {
			out = append(out, []*rspb.LocalityTier{{Key: "region", Value: r}, {Key: "zone", Value: fmt.Sprintf("%s-%c", r, 'a'+z)}})
		}
	}
	return out
}

// runDemoGlobal runs nine in-process nodes in three regions with the
// latency table injected into their Raft and gRPC traffic, and a workload
// from a client in one region, printing a summary every o.every.
func runDemoGlobal(o globalOptions) error {
	net := fault.NewNetwork()
	if err := net.SetLatency(o.latencies); err != nil {
		return err
	}
	locs := globalLocalities()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{Nodes: len(locs), BaseDir: o.store, InitialSplits: o.splits,
		Logger: o.log, RaftRTTMillisecond: 50, ElectionRTT: 20, HeartbeatRTT: 2, HTTP: true,
		Network: net, Localities: locs, ReplicateQueueInterval: 5 * time.Second, Secure: true})
	if err != nil {
		return err
	}
	defer tc.Close()
	fmt.Fprintf(stdout, "rangestore demo --global: %d nodes in %d regions × %d zones, %s, cluster %s (ready in %s)\n",
		tc.NumNodes(), len(globalRegions), globalZones, plural(len(tc.Init.Ranges), "range", "ranges"), tc.Init.ClusterId,
		time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "simulated round trips (Raft and gRPC, half each way): %s; none inside a region\n", o.latencies)
	fmt.Fprintf(stdout, "data: %s\n", tc.BaseDir)
	printDemoCerts(tc)
	region := map[uint64]string{} // node ID -> region
	for i := 0; i < tc.NumNodes(); i++ {
		region[tc.Node(i).NodeID()] = node.RegionOf(locs[i])
	}
	// Listed by region (in globalRegions' order), then node ID: init
	// numbers the nodes by address, not by locality.
	order := make([]int, tc.NumNodes())
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		ra, rb := slices.Index(globalRegions, node.RegionOf(locs[order[a]])), slices.Index(globalRegions, node.RegionOf(locs[order[b]]))
		if ra != rb {
			return ra < rb
		}
		return tc.Node(order[a]).NodeID() < tc.Node(order[b]).NodeID()
	})
	for _, i := range order {
		n := tc.Node(i)
		fmt.Fprintf(stdout, "  n%d  %-8s  %s  grpc %s  metrics http://%s/metrics\n", n.NodeID(), region[n.NodeID()],
			localityString(locs[i]), n.Addr(), n.HTTPAddr())
	}
	pl, err := globalPlacement(ctx, tc)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nreplicas and leases:")
	printPlacement(pl, region)

	// The client's connections in each of its regions, to that region's
	// nodes, with the latency of a client there.
	clients := make([]demoClient, len(o.clientRegions))
	defer func() {
		for _, c := range clients {
			for _, cc := range c.conns {
				_ = cc.Close()
			}
		}
	}()
	for k, r := range o.clientRegions {
		opts, err := net.ClientDialOptions(r)
		if err != nil {
			return err
		}
		clients[k].region = r
		for i := 0; i < tc.NumNodes(); i++ {
			if node.RegionOf(locs[i]) != r {
				continue
			}
			c, err := grpc.NewClient(tc.Addr(i), append(tc.ClientDialOptions(), opts...)...)
			if err != nil {
				return err
			}
			clients[k].conns = append(clients[k].conns, c)
			clients[k].gateways = append(clients[k].gateways, fmt.Sprintf("n%d", tc.Node(i).NodeID()))
			clients[k].addrs = append(clients[k].addrs, tc.Addr(i))
		}
	}
	wkeys := demoKeys(tc.Init.Ranges)
	self, sec := selfCommand(), "--certs-dir "+tc.CertsDir()
	fmt.Fprintf(stdout, "\ntry:\n  %s range list --verbose %s --host %s\n  %s allocator plan %s --host %s\n",
		self, sec, clients[0].addrs[0], self, sec, clients[0].addrs[0])

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	var timeout <-chan time.Time
	if o.duration > 0 {
		timeout = time.After(o.duration)
	}
	fmt.Fprintf(stdout, "\nworkload: a client in %s (gateways %s), %d workers, %d%% reads of %d keys; summary every %s (%s)\n",
		clients[0].region, strings.Join(clients[0].gateways, ", "), o.concurrency, o.readPercent, len(wkeys), o.every, stopHint(o.duration))
	if len(clients) > 1 {
		fmt.Fprintf(stdout, "the client moves every %s: %s\n", o.moveEvery, strings.Join(o.clientRegions, " -> "))
	}
	wctx, stopWorkload := context.WithCancel(context.Background())
	st := &demoStats{}
	var current atomic.Int32 // index in clients
	var wg sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			demoWorker(wctx, w, func() []*grpc.ClientConn { return clients[current.Load()].conns }, wkeys, o.readPercent, st)
		}()
	}
	defer func() { stopWorkload(); wg.Wait() }()
	tick := time.NewTicker(o.every)
	defer tick.Stop()
	var move <-chan time.Time
	if len(clients) > 1 {
		mt := time.NewTicker(o.moveEvery)
		defer mt.Stop()
		move = mt.C
	}
	began, last := time.Now(), time.Now()
	total, totalErrs := 0, 0
	for done := false; !done; {
		select {
		case <-sig:
			done = true
		case <-timeout:
			done = true
		case <-tick.C:
		case <-move:
			if k := int(current.Load()) + 1; k < len(clients) {
				current.Store(int32(k))
				fmt.Fprintf(stdout, "  %6s  the client moves to %s (gateways %s)\n", time.Since(began).Round(time.Second),
					clients[k].region, strings.Join(clients[k].gateways, ", "))
			}
			continue
		}
		s := st.take()
		now := time.Now()
		total += len(s.lat)
		totalErrs += s.errs
		if len(s.lat) > 0 || s.errs > 0 || !done {
			pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
			pl, perr := globalPlacement(pctx, tc)
			pcancel()
			leases := "leases unknown: " + errString(perr)
			if perr == nil {
				leases = "user-range leases: " + leasesPerRegion(pl, region)
			}
			fmt.Fprintf(stdout, "  %6s  %5d ops  %7.1f/s  p50 %-8s  p99 %-8s  errors %d  client %s  %s\n", now.Sub(began).Round(time.Second),
				len(s.lat), float64(len(s.lat))/now.Sub(last).Seconds(), pct(s.lat, 50), pct(s.lat, 99), s.errs,
				clients[current.Load()].region, leases)
			if s.firstErr != nil {
				fmt.Fprintf(stdout, "          first error: %v\n", s.firstErr)
			}
		}
		last = now
	}
	stopWorkload()
	wg.Wait()
	fmt.Fprintf(stdout, "\nstopping after %s: %d ops, %d errors\n", time.Since(began).Round(time.Second), total, totalErrs)
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if pl, err := globalPlacement(fctx, tc); err == nil {
		fmt.Fprintln(stdout, "replicas and leases now:")
		printPlacement(pl, region)
	}
	return nil
}

func stopHint(d time.Duration) string {
	if d > 0 {
		return fmt.Sprintf("running for %s, Ctrl-C stops earlier", d)
	}
	return "running until Ctrl-C"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// placed is one range as the demo shows it: its descriptor and the node
// that holds its lease (0: none known valid).
type placed struct {
	desc  *rspb.RangeDescriptor
	lease uint64
}

// globalPlacement asks every node for its replicas: a range's descriptor
// is the newest generation any replica has, its leaseholder the node
// whose own replica holds a lease it judges valid.
func globalPlacement(ctx context.Context, tc *node.TestCluster) ([]placed, error) {
	byRange := map[uint64]*placed{}
	var firstErr error
	for i := 0; i < tc.NumNodes(); i++ {
		n := tc.Node(i)
		if n == nil {
			continue
		}
		r, err := rspb.NewAdminClient(tc.Conn(i)).Ranges(ctx, &rspb.RangesRequest{})
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("n%d: %w", n.NodeID(), err)
			}
			continue
		}
		for _, ri := range r.Ranges {
			d := ri.RangeDescriptor
			p := byRange[d.GetRangeId()]
			if p == nil {
				p = &placed{desc: d}
				byRange[d.GetRangeId()] = p
			} else if d.GetGeneration() > p.desc.GetGeneration() {
				p.desc = d
			}
			if ri.LeaseValid && ri.Lease.GetNodeId() == n.NodeID() {
				p.lease = n.NodeID()
			}
		}
	}
	if len(byRange) == 0 {
		return nil, errors.Join(errors.New("no node answered"), firstErr)
	}
	out := make([]placed, 0, len(byRange))
	for _, p := range byRange {
		out = append(out, *p)
	}
	sort.Slice(out, func(a, b int) bool { return bytes.Compare(out[a].desc.StartKey, out[b].desc.StartKey) < 0 })
	return out, nil
}

func printPlacement(pl []placed, region map[uint64]string) {
	for _, p := range pl {
		var reps []string
		perRegion := map[string]int{}
		for _, r := range p.desc.Replicas {
			reps = append(reps, fmt.Sprintf("n%d(%s)", r.NodeId, region[r.NodeId]))
			perRegion[region[r.NodeId]]++
		}
		lease := "lease: none valid"
		if p.lease != 0 {
			lease = fmt.Sprintf("lease n%d (%s)", p.lease, region[p.lease])
		}
		fmt.Fprintf(stdout, "  r%-3d %-22s replicas %-40s %s\n", p.desc.RangeId, spanString(p.desc), strings.Join(reps, " "), lease)
	}
	fmt.Fprintf(stdout, "  replicas per region: %s; leases per region: %s\n", countPerRegion(pl, region, false), countPerRegion(pl, region, true))
}

func countPerRegion(pl []placed, region map[uint64]string, leases bool) string {
	n := map[string]int{}
	for _, p := range pl {
		if leases {
			if p.lease != 0 {
				n[region[p.lease]]++
			}
			continue
		}
		for _, r := range p.desc.Replicas {
			n[region[r.NodeId]]++
		}
	}
	var parts []string
	for _, r := range globalRegions {
		parts = append(parts, fmt.Sprintf("%s %d", r, n[r]))
	}
	return strings.Join(parts, ", ")
}

// leasesPerRegion counts the leases of the user ranges (those the
// workload reads) per region.
func leasesPerRegion(pl []placed, region map[uint64]string) string {
	var user []placed
	for _, p := range pl {
		if bytes.HasPrefix(p.desc.StartKey, keys.UserPrefix) {
			user = append(user, p)
		}
	}
	return countPerRegion(user, region, true)
}

// demoKeys are ten keys in each user range: its start key followed by
// "demo-NN", or by "!demo-NN" when that is past its end (the first range
// starts at the empty key and ends at the first split key).
func demoKeys(ranges []*rspb.RangeDescriptor) [][]byte {
	var out [][]byte
	for _, d := range ranges {
		if !bytes.HasPrefix(d.StartKey, keys.UserPrefix) {
			continue
		}
		for i := 0; i < 10; i++ {
			for _, form := range []string{"demo-%02d", "!demo-%02d"} {
				k := fmt.Appendf(append([]byte(nil), d.StartKey[len(keys.UserPrefix):]...), form, i)
				if uk := keys.UserKey(k); bytes.Compare(uk, d.StartKey) >= 0 && bytes.Compare(uk, d.EndKey) < 0 {
					out = append(out, k)
					break
				}
			}
		}
	}
	return out
}

// demoStats collects the workload's latencies until take.
type demoStats struct {
	mu sync.Mutex
	demoSample
}

// demoSample is what the workload did in one summary interval.
type demoSample struct {
	lat      []time.Duration
	errs     int
	firstErr error
}

func (s *demoStats) add(d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs++
		if s.firstErr == nil {
			s.firstErr = err
		}
		return
	}
	s.lat = append(s.lat, d)
}

// take returns what was collected since the last take.
func (s *demoStats) take() demoSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.demoSample
	s.demoSample = demoSample{}
	return out
}

// pct is the p-th percentile of the latencies ("-" without any).
func pct(lat []time.Duration, p int) string {
	if len(lat) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	i := min(len(s)-1, len(s)*p/100)
	return s[i].Round(100 * time.Microsecond).String()
}

// demoClient is the workload's client in one region: connections to
// that region's nodes (its gateways).
type demoClient struct {
	region   string
	conns    []*grpc.ClientConn
	gateways []string // node IDs, printed
	addrs    []string
}

// demoWorker reads (readPercent %) and writes random keys through the
// client's current gateways in turn until ctx ends; its randomness is
// seeded by its number.
func demoWorker(ctx context.Context, w int, gateways func() []*grpc.ClientConn, wkeys [][]byte, readPercent int, st *demoStats) {
	rng := mrand.New(mrand.NewPCG(uint64(w)+1, 0x9e3779b97f4a7c15))
	for op := 0; ctx.Err() == nil; op++ {
		conns := gateways()
		kvc := rspb.NewKVClient(conns[(w+op)%len(conns)])
		key := wkeys[rng.IntN(len(wkeys))]
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		var err error
		if rng.IntN(100) < readPercent {
			_, err = kvc.Get(octx, &rspb.GetRequest{Key: key})
		} else {
			_, err = kvc.Put(octx, &rspb.PutRequest{Key: key, Value: fmt.Appendf(nil, "w%d-%d", w, op)})
		}
		took := time.Since(start)
		cancel()
		if ctx.Err() != nil {
			return // stopped mid-operation: not a failure
		}
		st.add(took, err)
	}
}
