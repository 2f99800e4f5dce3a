package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// runAllocator runs `allocator plan`: the replica changes the replicate
// queues would make now, each at the node holding the range's lease.
func runAllocator(args []string) error {
	fs := newFlagSet("allocator")
	tgt := addTargetFlags(fs, "gRPC address of any node")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) != 1 || a[0] != "plan" {
		return usagef("allocator", "usage: allocator plan [--host HOST:PORT]")
	}
	return withAdminFor(tgt, 20*time.Second, func(ctx context.Context, c rspb.AdminClient) error {
		r, err := c.AllocatorPlan(ctx, &rspb.AllocatorPlanRequest{})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s; under-replicated %d, unavailable %d\n", r.Counts, r.UnderReplicated, r.Unavailable)
		if len(r.Changes) == 0 {
			fmt.Fprintln(stdout, "no replica change to make now")
		}
		for _, ch := range r.Changes {
			what := fmt.Sprintf("n%d", ch.TargetNodeId)
			if ch.FromNodeId != 0 {
				what = fmt.Sprintf("n%d->n%d", ch.FromNodeId, ch.TargetNodeId)
			}
			fmt.Fprintf(stdout, "n%d: r%d %s %s (priority %d): %s\n", ch.NodeId, ch.RangeId, ch.Action, what, ch.Priority, ch.Reason)
		}
		for _, w := range r.Waiting {
			fmt.Fprintf(stdout, "waiting: %s\n", w)
		}
		return nil
	})
}
