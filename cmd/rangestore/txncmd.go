package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// runTxn is `rangestore txn list`: the transactions the asked node
// coordinates and what each waits on.
func runTxn(args []string) error {
	fs := newFlagSet("txn")
	tgt := addTargetFlags(fs, "gRPC address of the node whose transactions to list")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if a := fs.Args(); len(a) != 1 || a[0] != "list" {
		return usagef("txn", "usage: txn list [--host HOST:PORT]")
	}
	return withAdmin(tgt, func(ctx context.Context, c rspb.AdminClient) error {
		r, err := c.ListTransactions(ctx, &rspb.ListTransactionsRequest{})
		if err != nil {
			return err
		}
		return printTxns(r)
	})
}

func printTxns(r *rspb.ListTransactionsResponse) error {
	if len(r.Transactions) == 0 {
		fmt.Fprintf(stdout, "n%d coordinates no open transaction\n", r.NodeId)
		return nil
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TXN\tAGE\tANCHOR\tREAD TS\tWRITE TS\tWRITES\tWAITING ON")
	for _, t := range r.Transactions {
		waiting := "-"
		if len(t.WaitingOn) > 0 {
			keys := make([]string, 0, len(t.WaitingKeys))
			for _, k := range t.WaitingKeys {
				keys = append(keys, fmt.Sprintf("%q", k))
			}
			waiting = fmt.Sprintf("txn %x on %s for %v", short(t.WaitingOn), strings.Join(keys, ","), time.Duration(t.WaitingMillis)*time.Millisecond)
		}
		anchor := "-"
		if len(t.Anchor) > 0 {
			anchor = fmt.Sprintf("%q", t.Anchor)
		}
		fmt.Fprintf(w, "%x\t%v\t%s\t%s\t%s\t%d\t%s\n", short(t.Id), time.Duration(t.AgeMillis)*time.Millisecond, anchor,
			fmtTS(t.ReadTimestamp), fmtTS(t.WriteTimestamp), t.WriteSpans, waiting)
	}
	return w.Flush()
}

// short is the first 4 bytes of a transaction ID, as logs print it.
func short(id []byte) []byte {
	if len(id) > 4 {
		return id[:4]
	}
	return id
}

func fmtTS(ts *rspb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return fmt.Sprintf("%d.%09d,%d", ts.WallTime/1e9, ts.WallTime%1e9, ts.Logical)
}
