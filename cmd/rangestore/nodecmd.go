package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

// runNode is `rangestore node list|status|drain|decommission|recommission`.
func runNode(args []string) error {
	fs := newFlagSet("node")
	tgt := addTargetFlags(fs, "gRPC address of any node")
	timeout := fs.Duration("timeout", 0, "drain: how long to wait for the node to hand off its leases (default 30s); decommission: how long to wait for its replicas to move (default: no limit)")
	wait := fs.Bool("wait", true, "decommission: wait until the nodes hold no replica, then mark them decommissioned")
	poll := fs.Duration("poll", time.Second, "decommission: how often to report the replicas left")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	switch {
	case len(a) >= 1 && (a[0] == "drain" || a[0] == "recommission"):
		if len(a) != 2 {
			return usagef("node", "node %s takes one node (n4)", a[0])
		}
		id, err := parseNodeArg(a[1])
		if err != nil {
			return err
		}
		if a[0] == "recommission" {
			return withAdmin(tgt, func(ctx context.Context, c rspb.AdminClient) error {
				r, err := c.Recommission(ctx, &rspb.RecommissionRequest{NodeId: id})
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "n%d: %s: %s\n", id, node.MembershipName(r.Membership), r.Message)
				return nil
			})
		}
		d := *timeout
		if d <= 0 {
			d = node.DefaultDrainNodeTimeout
		}
		return withAdminFor(tgt, d, func(ctx context.Context, c rspb.AdminClient) error {
			r, err := c.DrainNode(ctx, &rspb.DrainNodeRequest{NodeId: id})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "n%d drained: %d leases moved, none left; it takes no new lease until it restarts\n", id, r.LeasesMoved)
			return nil
		})
	case len(a) >= 1 && a[0] == "decommission":
		if len(a) < 2 {
			return usagef("node", "node decommission takes at least one node (n4 [n5 ...])")
		}
		var ids []uint64
		for _, x := range a[1:] {
			id, err := parseNodeArg(x)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		if *poll <= 0 {
			return usagef("node", "--poll %s: must be positive", *poll)
		}
		return decommission(tgt, ids, *wait, *timeout, *poll)
	case len(a) == 1 && a[0] == "list":
		return withAdmin(tgt, func(ctx context.Context, c rspb.AdminClient) error {
			r, err := c.Nodes(ctx, &rspb.NodesRequest{})
			if err != nil {
				return err
			}
			return printNodes(r.Nodes)
		})
	case len(a) == 2 && a[0] == "status":
		id, err := parseNodeArg(a[1])
		if err != nil {
			return err
		}
		return withAdmin(tgt, func(ctx context.Context, c rspb.AdminClient) error {
			r, err := c.NodeStatus(ctx, &rspb.NodeStatusRequest{NodeId: id})
			if err != nil {
				return err
			}
			printNodeStatus(r.Status)
			return nil
		})
	case len(a) == 0:
		return usagef("node", "missing sub-command (list, status, drain, decommission or recommission)")
	default:
		return usagef("node", "usage: node list | node status NODE | node drain NODE | node decommission NODE [NODE...] | node recommission NODE")
	}
}

func parseNodeArg(x string) (uint64, error) {
	id, err := strconv.ParseUint(strings.TrimPrefix(x, "n"), 10, 64)
	if err != nil || id == 0 {
		return 0, usagef("node", "node %q: want n<ID> (n1, n2, ...)", x)
	}
	return id, nil
}

// decommission marks the nodes decommissioning and, with wait, reports
// the replicas left on them every poll until none is, then marks them
// decommissioned.
func decommission(tgt *target, ids []uint64, wait bool, timeout, poll time.Duration) error {
	conn, err := tgt.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	c := rspb.NewAdminClient(conn)
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	call := func(finish bool) (*rspb.DecommissionResponse, error) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return c.Decommission(cctx, &rspb.DecommissionRequest{NodeIds: ids, Finish: finish})
	}
	r, err := call(false)
	if err != nil {
		return err
	}
	for _, st := range r.Nodes {
		fmt.Fprintf(stdout, "n%d: %s: %s\n", st.NodeId, node.MembershipName(st.Membership), st.Message)
	}
	if !wait {
		printDecommissionProgress(r.Nodes, map[uint64]string{})
		return nil
	}
	last := map[uint64]string{}
	for {
		printDecommissionProgress(r.Nodes, last)
		left := false
		for _, st := range r.Nodes {
			left = left || (st.ReplicaCount > 0 && st.Membership != rspb.MembershipState_MEMBERSHIP_DECOMMISSIONED)
		}
		if !left {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replicas still on the nodes after %s: the replicate queue moves them; run node decommission again to keep waiting, or node recommission to stop", timeout)
		case <-time.After(poll):
		}
		if r, err = call(false); err != nil {
			return err
		}
	}
	if r, err = call(true); err != nil {
		return err
	}
	for _, st := range r.Nodes {
		fmt.Fprintf(stdout, "n%d: %s\n", st.NodeId, node.MembershipName(st.Membership))
	}
	return nil
}

// printDecommissionProgress prints a line for each node whose progress
// changed since last.
func printDecommissionProgress(nodes []*rspb.DecommissionNodeStatus, last map[uint64]string) {
	for _, st := range nodes {
		word := "replicas"
		if st.ReplicaCount == 1 {
			word = "replica"
		}
		line := fmt.Sprintf("n%d: %d %s left", st.NodeId, st.ReplicaCount, word)
		if len(st.RangeIds) > 0 {
			ids := make([]string, len(st.RangeIds))
			for i, id := range st.RangeIds {
				ids[i] = fmt.Sprintf("r%d", id)
			}
			more := ""
			if int64(len(ids)) < st.ReplicaCount {
				more = ", ..."
			}
			line += " (" + strings.Join(ids, ", ") + more + ")"
		}
		if st.LeaseCount >= 0 {
			line += fmt.Sprintf(", %d leases", st.LeaseCount)
		} else {
			line += ", leases unknown (node unreachable)"
		}
		if last[st.NodeId] != line {
			last[st.NodeId] = line
			fmt.Fprintln(stdout, line)
		}
	}
}

func localityString(l []*rspb.LocalityTier) string {
	if len(l) == 0 {
		return "-"
	}
	var parts []string
	for _, t := range l {
		parts = append(parts, t.Key+"="+t.Value)
	}
	return strings.Join(parts, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printNodes(nodes []*rspb.NodeStatus) error {
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tADDRESS\tRAFT\tHTTP\tLOCALITY\tLIVENESS\tEPOCH\tMEMBERSHIP\tREPLICAS\tLEASES\tBYTES")
	var readReplicas []*rspb.NodeStatus
	for _, ns := range nodes {
		d := ns.Node
		if d.GetReadReplica() {
			readReplicas = append(readReplicas, ns)
			continue
		}
		counts := fmt.Sprintf("%d\t%d\t%d", ns.ReplicaCount, ns.LeaseCount, ns.Bytes)
		if ns.StatsError != "" {
			counts = "?\t?\t?"
		}
		fmt.Fprintf(w, "n%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.NodeId, d.Address, d.RaftAddress, orDash(d.HttpAddress), localityString(d.Locality),
			node.LivenessName(ns.Liveness), ns.Epoch, node.MembershipName(ns.Membership), counts)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := printReadReplicas(readReplicas); err != nil {
		return err
	}
	for _, ns := range nodes {
		if ns.StatsError != "" {
			fmt.Fprintf(stderr, "n%d: counts unknown: %s\n", ns.Node.NodeId, ns.StatsError)
		}
	}
	return nil
}

// printReadReplicas lists the read-replica nodes apart from the voters:
// their replicas (non-voters), applied-index and closed-timestamp lags and
// whiteboard entry.
func printReadReplicas(rrs []*rspb.NodeStatus) error {
	if len(rrs) == 0 {
		return nil
	}
	fmt.Fprintln(stdout, "\nread replicas (non-voters of every range, never a lease):")
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tADDRESS\tLOCALITY\tLIVENESS\tMEMBERSHIP\tREPLICAS\tLAG\tCLOSED-TS LAG\tWHITEBOARD")
	for _, ns := range rrs {
		d := ns.Node
		replicas := fmt.Sprintf("%d", ns.ReplicaCount)
		if ns.StatsError != "" {
			replicas = "?"
		}
		lag, closed, wb := "?", "?", "not heard"
		if s := ns.Store; s != nil {
			lag, closed = lagString(s), closedLagString(s)
			wb = fmt.Sprintf("heard %.1fs ago", float64(ns.StoreHeardMillisAgo)/1000)
		}
		fmt.Fprintf(w, "n%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.NodeId, d.Address, localityString(d.Locality),
			node.LivenessName(ns.Liveness), node.MembershipName(ns.Membership), replicas, lag, closed, wb)
	}
	return w.Flush()
}

// lagString renders a store's applied-index lag.
func lagString(s *rspb.StoreDescriptor) string {
	if s.MaxAppliedIndexLag == 0 {
		return "0"
	}
	return fmt.Sprintf("%d entries (r%d)", s.MaxAppliedIndexLag, s.LaggingRangeId)
}

// closedLagString renders a store's closed-timestamp lag ("?": not
// reported, an older binary).
func closedLagString(s *rspb.StoreDescriptor) string {
	if s.MaxClosedTimestampLagNanos <= 0 {
		return "?"
	}
	return fmt.Sprintf("%s (r%d)", time.Duration(s.MaxClosedTimestampLagNanos).Round(time.Millisecond), s.ClosedLaggingRangeId)
}

func printNodeStatus(ns *rspb.NodeStatus) {
	d := ns.Node
	fmt.Fprintf(stdout, "node:        n%d\n", d.NodeId)
	if d.GetReadReplica() {
		fmt.Fprintf(stdout, "role:        read replica (non-voters only, never a lease)\n")
	} else {
		fmt.Fprintf(stdout, "role:        voter\n")
	}
	fmt.Fprintf(stdout, "address:     %s\n", d.Address)
	fmt.Fprintf(stdout, "raft:        %s\n", d.RaftAddress)
	fmt.Fprintf(stdout, "http:        %s\n", orDash(d.HttpAddress))
	fmt.Fprintf(stdout, "locality:    %s\n", localityString(d.Locality))
	fmt.Fprintf(stdout, "liveness:    %s (%s)\n", node.LivenessName(ns.Liveness), ns.Detail)
	fmt.Fprintf(stdout, "epoch:       %d\n", ns.Epoch)
	if e := ns.LivenessExpiration; e != nil {
		fmt.Fprintf(stdout, "expiration:  %s\n", time.Unix(0, e.WallTime).UTC().Format(time.RFC3339Nano))
	}
	fmt.Fprintf(stdout, "membership:  %s\n", node.MembershipName(ns.Membership))
	if ns.StatsError != "" {
		fmt.Fprintf(stdout, "replicas:    ? (%s)\nleases:      ?\nbytes:       ?\n", ns.StatsError)
	} else {
		fmt.Fprintf(stdout, "replicas:    %d\nleases:      %d\nbytes:       %d\n", ns.ReplicaCount, ns.LeaseCount, ns.Bytes)
	}
	if s := ns.Store; s != nil {
		fmt.Fprintf(stdout, "store:       %s used, %s available of %s; %.1f queries/s as leaseholder (gossip %s, heard %.1fs ago)\n",
			mib(s.UsedBytes), mib(s.AvailableBytes), mib(s.CapacityBytes), s.QueriesPerSecond, orDash(s.GossipAddress), float64(ns.StoreHeardMillisAgo)/1000)
		fmt.Fprintf(stdout, "lag:         %s (applied-index lag of its most behind replica)\n", lagString(s))
		fmt.Fprintf(stdout, "closed lag:  %s (how far its most behind replica's closed timestamp trails now: the staleness of its follower reads)\n", closedLagString(s))
	} else {
		fmt.Fprintf(stdout, "store:       ? (no store descriptor heard by gossip within its TTL)\n")
	}
	printCerts(ns)
}

// printCerts prints the certificates a node reported using: kind, user,
// serial and expiry, one a line.
func printCerts(ns *rspb.NodeStatus) {
	switch {
	case len(ns.Certs) > 0:
		for _, c := range ns.Certs {
			exp := time.Unix(0, c.NotAfterUnixNanos).UTC()
			fmt.Fprintf(stdout, "cert:        %s %s serial %s expires %s (in %s)\n", c.Kind, c.User, c.Serial,
				exp.Format(time.RFC3339), time.Until(exp).Round(time.Hour))
		}
	case ns.StatsError != "":
		fmt.Fprintf(stdout, "certs:       ? (%s)\n", ns.StatsError)
	case ns.Node.GetSecure():
		fmt.Fprintf(stdout, "certs:       ? (none reported)\n")
	default:
		fmt.Fprintf(stdout, "certs:       none (insecure node)\n")
	}
}

// mib formats bytes in MiB.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
