package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/rangestore/rangestore/proto/rspb"
)

func runKV(args []string) error {
	fs := pflag.NewFlagSet("kv", pflag.ContinueOnError)
	host := fs.String("host", "127.0.0.1:26257", "gRPC address of any node")
	limit := fs.Int64("limit", 0, "scan: maximum number of keys (0 = all)")
	reverse := fs.Bool("reverse", false, "scan: descending order")
	keysOnly := fs.Bool("keys-only", false, "scan: print keys only")
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout")
	fs.SetInterspersed(true)
	if err := fs.Parse(args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) == 0 {
		return errors.New("usage: kv get KEY | put KEY VALUE | del KEY | scan [START [END]] | incr KEY [DELTA]")
	}
	conn, err := dial(*host)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := rspb.NewKVClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	need := func(n int, form string) error {
		if len(a) != n {
			return fmt.Errorf("usage: kv %s", form)
		}
		return nil
	}
	switch a[0] {
	case "get":
		if err := need(2, "get KEY"); err != nil {
			return err
		}
		r, err := c.Get(ctx, &rspb.GetRequest{Key: []byte(a[1])})
		if err != nil {
			return err
		}
		if !r.Found {
			return fmt.Errorf("key %q not found", a[1])
		}
		fmt.Println(string(r.Kv.Value))
	case "put":
		if err := need(3, "put KEY VALUE"); err != nil {
			return err
		}
		r, err := c.Put(ctx, &rspb.PutRequest{Key: []byte(a[1]), Value: []byte(a[2])})
		if err != nil {
			return err
		}
		fmt.Printf("OK %s\n", tsString(r.CommitTimestamp))
	case "del":
		if err := need(2, "del KEY"); err != nil {
			return err
		}
		r, err := c.Delete(ctx, &rspb.DeleteRequest{Key: []byte(a[1])})
		if err != nil {
			return err
		}
		fmt.Printf("deleted=%v %s\n", r.Existed, tsString(r.CommitTimestamp))
	case "incr":
		if len(a) != 2 && len(a) != 3 {
			return errors.New("usage: kv incr KEY [DELTA]")
		}
		delta := int64(1)
		if len(a) == 3 {
			if delta, err = strconv.ParseInt(a[2], 10, 64); err != nil {
				return fmt.Errorf("delta %q: %w", a[2], err)
			}
		}
		r, err := c.Increment(ctx, &rspb.IncrementRequest{Key: []byte(a[1]), Delta: delta})
		if err != nil {
			return err
		}
		fmt.Println(r.NewValue)
	case "scan":
		if len(a) > 3 {
			return errors.New("usage: kv scan [START [END]]")
		}
		req := &rspb.ScanRequest{Limit: *limit, Reverse: *reverse, KeysOnly: *keysOnly}
		if len(a) > 1 {
			req.StartKey = []byte(a[1])
		}
		if len(a) > 2 {
			req.EndKey = []byte(a[2])
		}
		st, err := c.Scan(ctx, req)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		n, err := forEachScanned(st, func(x *rspb.KeyValue) {
			if *keysOnly {
				fmt.Fprintf(w, "%s\n", x.Key)
			} else {
				fmt.Fprintf(w, "%s\t%s\n", x.Key, x.Value)
			}
		})
		if err != nil {
			return err
		}
		_ = w.Flush()
		fmt.Fprintf(os.Stderr, "(%d keys)\n", n)
	default:
		return fmt.Errorf("unknown kv command %q", a[0])
	}
	return nil
}

func tsString(ts *rspb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return fmt.Sprintf("@%d.%09d,%d", ts.WallTime/1e9, ts.WallTime%1e9, ts.Logical)
}

func runRange(args []string) error {
	fs := pflag.NewFlagSet("range", pflag.ContinueOnError)
	host := fs.String("host", "127.0.0.1:26257", "gRPC address of the node to ask")
	fs.SetInterspersed(true)
	if err := fs.Parse(args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) == 3 && a[0] == "transfer-lease" {
		return transferLease(*host, a[1], a[2])
	}
	if len(a) == 2 && a[0] == "split" {
		return splitRange(*host, a[1])
	}
	if len(a) == 2 && a[0] == "merge" {
		return mergeRange(*host, a[1])
	}
	if len(a) != 1 || a[0] != "list" {
		return errors.New("usage: range list | range split KEY | range merge KEY | range transfer-lease RANGE NODE   [--host HOST:PORT]")
	}
	conn, err := dial(*host)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := rspb.NewAdminClient(conn).Ranges(ctx, &rspb.RangesRequest{})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RANGE\tSPAN\tSTATE\tREPLICAS\tLEASEHOLDER\tLEASE\tEPOCH\tRAFT-LEADER\tTERM\tAPPLIED")
	for _, ri := range r.Ranges {
		d := ri.RangeDescriptor
		if d == nil {
			continue
		}
		reps := ""
		for i, rep := range d.Replicas {
			if i > 0 {
				reps += ","
			}
			reps += fmt.Sprintf("n%d", rep.NodeId)
		}
		leader := "-"
		if ri.LeaderNodeId != 0 {
			leader = fmt.Sprintf("n%d", ri.LeaderNodeId)
		}
		holder, kind, epoch := "-", "-", "-"
		if l := ri.Lease; l.GetSequence() != 0 {
			holder = fmt.Sprintf("n%d", l.NodeId)
			if !ri.LeaseValid {
				holder += "(" + ri.LeaseState + ")"
			}
			if l.Epoch != 0 {
				kind, epoch = "epoch", fmt.Sprint(l.Epoch)
			} else {
				kind = "expiration"
			}
		}
		fmt.Fprintf(w, "r%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", d.RangeId, spanString(d), rangeState(ri), reps, holder, kind, epoch, leader, ri.Term, ri.AppliedIndex)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, ri := range r.Ranges {
		if ri.FrozenInto != 0 {
			fmt.Fprintf(os.Stderr, "warning: r%d is frozen for a merge into r%d: it serves nothing until the merge completes or is rolled back\n",
				ri.RangeDescriptor.GetRangeId(), ri.FrozenInto)
		}
	}
	return nil
}

// transferLease moves the lease of range r<ID> (or <ID>) to node n<ID>.
func transferLease(host, rangeArg, nodeArg string) error {
	rangeID, err := strconv.ParseUint(strings.TrimPrefix(rangeArg, "r"), 10, 64)
	if err != nil {
		return fmt.Errorf("range %q: want r<ID>", rangeArg)
	}
	nodeID, err := strconv.ParseUint(strings.TrimPrefix(nodeArg, "n"), 10, 64)
	if err != nil {
		return fmt.Errorf("node %q: want n<ID>", nodeArg)
	}
	return withAdmin(host, func(ctx context.Context, a rspb.AdminClient) error {
		if _, err := a.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: rangeID, TargetNodeId: nodeID}); err != nil {
			return err
		}
		fmt.Printf("lease of r%d transferred to n%d\n", rangeID, nodeID)
		return nil
	})
}

// splitRange splits the range holding a client key at that key.
func splitRange(host, key string) error {
	return withAdmin(host, func(ctx context.Context, a rspb.AdminClient) error {
		r, err := a.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte(key)})
		if err != nil {
			return err
		}
		if r.Left == nil {
			fmt.Printf("r%d already starts at %q\n", r.Right.GetRangeId(), key)
			return nil
		}
		fmt.Printf("split r%d at %q: r%d %s, r%d %s\n", r.Left.RangeId, key, r.Left.RangeId, spanString(r.Left), r.Right.RangeId, spanString(r.Right))
		return nil
	})
}

// mergeRange merges the range holding a client key with its right
// neighbour.
func mergeRange(host, key string) error {
	return withAdmin(host, func(ctx context.Context, a rspb.AdminClient) error {
		r, err := a.MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte(key)})
		if err != nil {
			return err
		}
		fmt.Printf("merged: r%d %s\n", r.Merged.RangeId, spanString(r.Merged))
		return nil
	})
}

// withAdmin runs one admin call against host with a 30 s deadline.
func withAdmin(host string, call func(context.Context, rspb.AdminClient) error) error {
	conn, err := dial(host)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return call(ctx, rspb.NewAdminClient(conn))
}

// forEachScanned drains a Scan stream, calling fn for every pair, and
// returns how many there were.
func forEachScanned(st rspb.KV_ScanClient, fn func(*rspb.KeyValue)) (int, error) {
	n := 0
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		for _, x := range m.Kvs {
			n++
			fn(x)
		}
	}
}

// rangeState is the STATE column of `range list`: "ok", or
// "frozen->rN" for a range frozen for a merge into rN (it serves nothing).
func rangeState(ri *rspb.RangeInfo) string {
	if ri.FrozenInto != 0 {
		return fmt.Sprintf("frozen->r%d", ri.FrozenInto)
	}
	return "ok"
}
