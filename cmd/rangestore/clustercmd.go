package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/rebalance"
)

// runCluster is `rangestore cluster set-replicas N`.
func runCluster(args []string) error {
	fs := newFlagSet("cluster")
	host := fs.String("host", "127.0.0.1:26257", "gRPC address of any node")
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
		return withAdmin(*host, func(ctx context.Context, c rspb.AdminClient) error {
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
	case len(a) == 0:
		return usagef("cluster", "missing sub-command (set-replicas)")
	default:
		return usagef("cluster", "usage: cluster set-replicas N")
	}
}
