package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/rebalance"
)

// runCluster is `rangestore cluster set-replicas N` and `rangestore
// cluster set NAME=VALUE`.
func runCluster(args []string) error {
	fs := newFlagSet("cluster")
	tgt := addTargetFlags(fs, "gRPC address of any node")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	switch {
	case len(a) == 2 && a[0] == "set-replicas":
		f, err := strconv.Atoi(a[1])
		if err != nil {
			return usagef("cluster", "set-replicas %q: want a number (the replication factor: 1, 3, 5, 7 or 9)", a[1])
		}
		if err := rebalance.ValidateFactor(f); err != nil {
			return usagef("cluster", "set-replicas %d: %v", f, err)
		}
		return withAdmin(tgt, func(ctx context.Context, c rspb.AdminClient) error {
			r, err := c.SetReplicationFactor(ctx, &rspb.SetReplicationFactorRequest{ReplicationFactor: int32(f)})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "replication factor set to %d (was %d); the replicate queue carries it out\n", r.ReplicationFactor, r.Previous)
			if r.LiveActiveNodes < r.ReplicationFactor {
				fmt.Fprintf(stdout, "note: only %d live active nodes can hold replicas, fewer than %d: the ranges stay under-replicated "+
					"(gauge rangestore_ranges_underreplicated) until more nodes join\n", r.LiveActiveNodes, r.ReplicationFactor)
			}
			return nil
		})
	case len(a) == 2 && a[0] == "set":
		name, value, ok := strings.Cut(a[1], "=")
		if !ok || name == "" {
			return usagef("cluster", "set %q: want NAME=VALUE (closed_timestamp_target=3s, replication_factor=3)", a[1])
		}
		return withAdmin(tgt, func(ctx context.Context, c rspb.AdminClient) error {
			r, err := c.SetClusterSetting(ctx, &rspb.SetClusterSettingRequest{Name: name, Value: value})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s set to %s (was %s); every node applies it within about a second\n", r.Name, r.Value, orDefault(r.Previous))
			return nil
		})
	case len(a) == 0:
		return usagef("cluster", "missing sub-command (set-replicas, set)")
	default:
		return usagef("cluster", "usage: cluster set-replicas N | cluster set NAME=VALUE")
	}
}

// orDefault renders a setting's previous value ("" : never written).
func orDefault(v string) string {
	if v == "" {
		return "unset: each node's start flag"
	}
	return v
}
