package main

// Follower and read-replica read cells (issue 13): rangestore
// BOUNDED_STALENESS Gets served by the voters' own replicas or by
// read-replica processes, etcd serializable Gets, Dragonboat StaleRead;
// and the /metrics scrape that says which reads the leaseholders served.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rangestore/rangestore/proto/rspb"
)

// readMode says which servers a read cell's Gets go to and how.
type readMode int

const (
	// strongReads: the cell's default (rangestore lease reads, etcd
	// linearizable, Dragonboat SyncRead).
	strongReads readMode = iota
	// followerReads: rangestore BOUNDED_STALENESS over the 3 voters, etcd
	// serializable over the 3 members, Dragonboat StaleRead over the 3 hosts.
	followerReads
	// replicaReads: rangestore BOUNDED_STALENESS sent only to the
	// read-replica processes; etcd and Dragonboat have no counterpart (the
	// row compares with the followerReads cell's etcd result).
	replicaReads
)

// maxStaleness is the max_staleness of the rangestore follower-read cells:
// well above the default closed timestamp target (3 s) plus its side
// transport interval, so a healthy replica always qualifies.
const maxStaleness = 10 * time.Second

// readReplicaCount is how many `rangestore start --read-replica`
// processes the replicaReads cells use.
const readReplicaCount = 2

// rsProc is one rangestore process of the comparison.
type rsProc struct {
	label    string // n1..n3 for voters, rr1.. for read replicas
	addr     string // gRPC
	httpAddr string // /metrics
}

// rsCluster is the rangestore side of the comparison.
type rsCluster struct {
	bin, dir string
	g        *procGroup
	voters   []rsProc
	replicas []rsProc // read replicas, started on first use
	// certsDir is the certificates' directory ("" for --insecure), creds
	// the clients' transport credentials.
	certsDir string
	creds    credentials.TransportCredentials
}

func (c *rsCluster) addrs(ps []rsProc) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.addr)
	}
	return out
}

// locality is the process's locality: its own zone, so that a client
// with the same locality reads (bounded staleness) from its replicas.
func (p rsProc) locality() string { return "zone=" + p.label }

// localities are the client localities of ps, one per process.
func localities(ps []rsProc) [][]string {
	var out [][]string
	for _, p := range ps {
		out = append(out, []string{p.locality()})
	}
	return out
}

func (c *rsCluster) all() []rsProc {
	return append(append([]rsProc{}, c.voters...), c.replicas...)
}

// startReadReplicas starts readReplicaCount `--read-replica` processes
// joined to the voters and waits until each holds an applied replica of
// every range the first voter holds (the replicate queue adds one
// non-voter per range per pass on each leaseholder).
func (c *rsCluster) startReadReplicas(ctx context.Context) error {
	if len(c.replicas) > 0 {
		return nil
	}
	t0 := time.Now()
	join := strings.Join(c.addrs(c.voters), ",")
	for i := 1; i <= readReplicaCount; i++ {
		p := rsProc{label: fmt.Sprintf("rr%d", i)}
		raft, err := freeAddr()
		if err != nil {
			return err
		}
		if p.addr, err = freeAddr(); err != nil {
			return err
		}
		if p.httpAddr, err = freeAddr(); err != nil {
			return err
		}
		args := append([]string{"start", "--read-replica", "--store", filepath.Join(c.dir, "rs-"+p.label), "--listen-addr", p.addr,
			"--raft-addr", raft, "--http-addr", p.httpAddr, "--join", join, "--locality", p.locality(), "--log-level", "warn"}, c.secArgs()...)
		err = c.g.start(filepath.Join(c.dir, fmt.Sprintf("rs-%s.log", p.label)), c.bin, args...)
		if err != nil {
			return err
		}
		c.replicas = append(c.replicas, p)
	}
	want, err := c.rangeIDs(ctx, c.voters[0].addr)
	if err != nil {
		return fmt.Errorf("ranges of %s: %w", c.voters[0].label, err)
	}
	for _, p := range c.replicas {
		var have map[uint64]bool
		for {
			have, err = c.rangeIDs(ctx, p.addr)
			missing := 0
			for id := range want {
				if !have[id] {
					missing++
				}
			}
			if err == nil && missing == 0 {
				break
			}
			if aerr := c.g.alive(); aerr != nil {
				return aerr
			}
			if ctx.Err() != nil {
				msg := fmt.Sprintf("read replica %s holds %d of the %d ranges after %s", p.label, len(want)-missing, len(want), time.Since(t0).Round(time.Second))
				if err != nil {
					return fmt.Errorf("%s (last error: %w)", msg, err)
				}
				return errors.New(msg)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	fmt.Fprintf(os.Stderr, "rangestore: %d read replicas hold a replica of each of the %d ranges after %s\n",
		len(c.replicas), len(want), time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// rangeIDs returns the IDs of the ranges of which the node at addr holds
// a replica that has applied at least one entry (Admin.Ranges, local).
func (c *rsCluster) rangeIDs(ctx context.Context, addr string) (map[uint64]bool, error) {
	conn, err := grpc.NewClient(addr, c.dialOption())
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := rspb.NewAdminClient(conn).Ranges(cctx, &rspb.RangesRequest{})
	if err != nil {
		return nil, err
	}
	out := map[uint64]bool{}
	for _, r := range resp.Ranges {
		if r.AppliedIndex > 0 {
			out[r.RangeDescriptor.GetRangeId()] = true
		}
	}
	return out, nil
}

// readCounters are one process's read counters, and the node-to-node
// batches it received.
type readCounters struct {
	lease, follower float64
	// internal: Internal/RangeBatch requests received (all status codes):
	// requests a gateway forwarded to this node's replica, and the
	// cluster's own node-to-node traffic (liveness heartbeats, closed
	// timestamps).
	internal float64
}

// internalBatchMethod is the gRPC method of node-to-node range batches.
const internalBatchMethod = `method="/rangestore.v1.Internal/RangeBatch"`

// scrapeReads reads rangestore_lease_reads_total,
// rangestore_follower_reads_total and the Internal/RangeBatch requests of
// rangestore_grpc_requests_total from every process's /metrics.
func scrapeReads(ctx context.Context, ps []rsProc) (map[string]readCounters, error) {
	out := map[string]readCounters{}
	for _, p := range ps {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		req, err := http.NewRequestWithContext(cctx, http.MethodGet, "http://"+p.httpAddr+"/metrics", nil)
		if err != nil {
			cancel()
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("%s /metrics: %w", p.label, err)
		}
		rc, err := parseReadCounters(resp.Body)
		_ = resp.Body.Close()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s /metrics: %w", p.label, err)
		}
		out[p.label] = rc
	}
	return out, nil
}

// parseReadCounters reads the two read counters from a Prometheus text
// exposition (both must be present) and sums the Internal/RangeBatch
// series of rangestore_grpc_requests_total (absent: none yet).
func parseReadCounters(r io.Reader) (readCounters, error) {
	var rc readCounters
	var seenLease, seenFollower bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		add := false
		switch {
		case name == "rangestore_lease_reads_total":
			dst, seenLease = &rc.lease, true
		case name == "rangestore_follower_reads_total":
			dst, seenFollower = &rc.follower, true
		case strings.HasPrefix(name, "rangestore_grpc_requests_total{") && strings.Contains(name, internalBatchMethod):
			dst, add = &rc.internal, true
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return rc, fmt.Errorf("%s: %w", name, err)
		}
		if add {
			*dst += v
		} else {
			*dst = v
		}
	}
	if err := sc.Err(); err != nil {
		return rc, err
	}
	if !seenLease || !seenFollower {
		return rc, fmt.Errorf("rangestore_lease_reads_total or rangestore_follower_reads_total missing")
	}
	return rc, nil
}

// readShare is who served a follower-read cell's reads (warm-up included),
// from the counter deltas of every process.
type readShare struct {
	PerProcess map[string]readCounters
	Lease      float64 // served by leaseholders under their lease (fallbacks)
	Follower   float64 // served by some replica at its closed timestamp
	Internal   float64 // node-to-node batches received (see readCounters)
	// Idle: the same counters over IdleWindow with no load, just before
	// the cell (the cluster's own reads: meta lookups, liveness); nil if
	// not measured.
	Idle       *readShare
	IdleWindow time.Duration
}

// idleWindow is how long the counters are watched without load before a
// follower-read cell.
const idleWindow = 2 * time.Second

// idleReads scrapes the counters, waits d without load, scrapes again and
// returns the difference and the second scrape.
func idleReads(ctx context.Context, ps []rsProc, d time.Duration) (readShare, map[string]readCounters, error) {
	first, err := scrapeReads(ctx, ps)
	if err != nil {
		return readShare{}, nil, err
	}
	time.Sleep(d) // a measurement window, not a wait for a condition
	second, err := scrapeReads(ctx, ps)
	if err != nil {
		return readShare{}, nil, err
	}
	return diffReads(first, second), second, nil
}

func diffReads(before, after map[string]readCounters) readShare {
	s := readShare{PerProcess: map[string]readCounters{}}
	for label, a := range after {
		b := before[label]
		d := readCounters{lease: a.lease - b.lease, follower: a.follower - b.follower, internal: a.internal - b.internal}
		s.PerProcess[label] = d
		s.Lease += d.lease
		s.Follower += d.follower
		s.Internal += d.internal
	}
	return s
}

// String renders the share, e.g. "leaseholders served 12 of 101,234
// reads (0.0 %) under their lease; at closed timestamps: n1 30,000, ...".
func (s readShare) String() string {
	total := s.Lease + s.Follower
	pct := 0.0
	if total > 0 {
		pct = 100 * s.Lease / total
	}
	labels := make([]string, 0, len(s.PerProcess))
	for l := range s.PerProcess {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	var per []string
	for _, l := range labels {
		d := s.PerProcess[l]
		per = append(per, fmt.Sprintf("%s %s/%s", l, fmtRate(d.follower), fmtRate(d.lease)))
	}
	out := fmt.Sprintf("leaseholders served %s of %s reads (%.1f %%) as lease reads (the cluster's own meta and liveness reads included), replicas %s at their closed timestamp (per process, follower/lease reads: %s)",
		fmtRate(s.Lease), fmtRate(total), pct, fmtRate(s.Follower), strings.Join(per, ", "))
	if s.Idle != nil {
		out += fmt.Sprintf("; idle for %s just before: %s lease reads, %s follower reads",
			s.IdleWindow, fmtRate(s.Idle.Lease), fmtRate(s.Idle.Follower))
	}
	return out
}

// etcdSerializable is etcdDriver with serializable Gets: the member the
// client's balancer picks answers from its own state, without a quorum
// round trip (stale by up to its apply lag).
type etcdSerializable struct {
	*etcdDriver
}

func (d etcdSerializable) Get(ctx context.Context, key []byte) (bool, error) {
	r, err := d.cli.Get(ctx, string(key), clientv3.WithSerializable())
	if err != nil {
		return false, err
	}
	return len(r.Kvs) > 0, nil
}

// dbStale is dbCluster with Gets as StaleRead on the 3 hosts in turn (no
// ReadIndex: each host reads its own state machine).
type dbStale struct {
	*dbCluster
	next atomic.Uint64
}

func (d *dbStale) Get(_ context.Context, key []byte) (bool, error) {
	shard := shardOf(key, d.shards)
	nh := d.hosts[(d.next.Add(1)-1)%uint64(len(d.hosts))]
	v, err := nh.StaleRead(shard, getQuery{key: key})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}
