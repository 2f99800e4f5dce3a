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

// runNode is `rangestore node list` and `rangestore node status N`.
func runNode(args []string) error {
	fs := newFlagSet("node")
	host := fs.String("host", "127.0.0.1:26257", "gRPC address of any node")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	switch {
	case len(a) == 1 && a[0] == "list":
		return withAdmin(*host, func(ctx context.Context, c rspb.AdminClient) error {
			r, err := c.Nodes(ctx, &rspb.NodesRequest{})
			if err != nil {
				return err
			}
			return printNodes(r.Nodes)
		})
	case len(a) == 2 && a[0] == "status":
		id, err := strconv.ParseUint(strings.TrimPrefix(a[1], "n"), 10, 64)
		if err != nil || id == 0 {
			return usagef("node", "node %q: want n<ID> (n1, n2, ...)", a[1])
		}
		return withAdmin(*host, func(ctx context.Context, c rspb.AdminClient) error {
			r, err := c.NodeStatus(ctx, &rspb.NodeStatusRequest{NodeId: id})
			if err != nil {
				return err
			}
			printNodeStatus(r.Status)
			return nil
		})
	case len(a) == 0:
		return usagef("node", "missing sub-command (list or status)")
	default:
		return usagef("node", "usage: node list | node status NODE")
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
	for _, ns := range nodes {
		d := ns.Node
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
	for _, ns := range nodes {
		if ns.StatsError != "" {
			fmt.Fprintf(stderr, "n%d: counts unknown: %s\n", ns.Node.NodeId, ns.StatsError)
		}
	}
	return nil
}

func printNodeStatus(ns *rspb.NodeStatus) {
	d := ns.Node
	fmt.Fprintf(stdout, "node:        n%d\n", d.NodeId)
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
		return
	}
	fmt.Fprintf(stdout, "replicas:    %d\nleases:      %d\nbytes:       %d\n", ns.ReplicaCount, ns.LeaseCount, ns.Bytes)
}
