package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/proto/rspb"
)

func runKV(args []string) error {
	fs := newFlagSet("kv")
	tgt := addTargetFlags(fs, "gRPC address of any node")
	limit := fs.Int64("limit", 0, "scan: maximum number of keys (0 = all)")
	reverse := fs.Bool("reverse", false, "scan: descending order")
	keysOnly := fs.Bool("keys-only", false, "scan: print keys only")
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout")
	readMode := fs.String("read-mode", "strong", "get, scan: strong (the leaseholder), bounded-staleness (the nearest replica, at most --max-staleness old) or causal (the nearest replica, once it has the writes of --bookmark)")
	maxStaleness := fs.Duration("max-staleness", 0, "get, scan with --read-mode bounded-staleness: how old the data may be (positive)")
	bookmarks := fs.StringSlice("bookmark", nil, "get, scan with --read-mode causal: bookmarks (hex) printed by put, del and incr")
	bookmarkTimeout := fs.Duration("bookmark-timeout", 0, "get, scan with --read-mode causal: how long to wait for the bookmarked writes (0: the server's 30 s)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) == 0 {
		return usagef("kv", "missing sub-command (get, put, del, scan or incr)")
	}
	need := func(n int, form string) error {
		if len(a) != n {
			return usagef("kv", "usage: kv %s", form)
		}
		return nil
	}
	switch a[0] {
	case "get", "del":
		if err := need(2, a[0]+" KEY"); err != nil {
			return err
		}
	case "put":
		if err := need(3, "put KEY VALUE"); err != nil {
			return err
		}
	case "incr":
		if len(a) != 2 && len(a) != 3 {
			return usagef("kv", "usage: kv incr KEY [DELTA]")
		}
	case "scan":
		if len(a) > 3 {
			return usagef("kv", "usage: kv scan [START [END]]")
		}
	default:
		return usagef("kv", "unknown kv command %q (want get, put, del, scan or incr)", a[0])
	}
	ro, err := readModeFlags(fs, *readMode, *maxStaleness, *bookmarks, *bookmarkTimeout)
	if err != nil {
		return err
	}
	delta := int64(1)
	if a[0] == "incr" && len(a) == 3 {
		if delta, err = strconv.ParseInt(a[2], 10, 64); err != nil {
			return fmt.Errorf("delta %q is not an integer: %w", a[2], err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	db, err := tgt.sec.openDB(ctx, []string{*tgt.host})
	if err != nil {
		return err
	}
	defer db.Close()
	switch a[0] {
	case "get":
		kv, err := db.Get(ctx, []byte(a[1]), ro...)
		if errors.Is(err, client.ErrNotFound) {
			return fmt.Errorf("key %q not found", a[1])
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(kv.Value))
	case "put":
		r, err := db.Put(ctx, []byte(a[1]), []byte(a[2]))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "OK %s\n", clientTS(r.Timestamp))
		printBookmark(r.Bookmark)
	case "del":
		// A one-request batch: its result has the commit timestamp and
		// bookmark that Delete alone does not return.
		rs, err := db.Batch(ctx, new(client.Batch).Delete([]byte(a[1])))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted=%v %s\n", rs[0].Existed, clientTS(rs[0].Timestamp))
		printBookmark(rs[0].Bookmark)
	case "incr":
		rs, err := db.Batch(ctx, new(client.Batch).Increment([]byte(a[1]), delta))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, rs[0].Value)
		printBookmark(rs[0].Bookmark)
	case "scan":
		opts := append([]client.ReadOption{client.Limit(*limit)}, ro...)
		if *reverse {
			opts = append(opts, client.Reverse())
		}
		if *keysOnly {
			opts = append(opts, client.KeysOnly())
		}
		var start, end []byte
		if len(a) > 1 {
			start = []byte(a[1])
		}
		if len(a) > 2 {
			end = []byte(a[2])
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		n := 0
		for x, err := range db.Scan(ctx, start, end, opts...) {
			if err != nil {
				_ = w.Flush()
				return err
			}
			n++
			if *keysOnly {
				fmt.Fprintf(w, "%s\n", quoted(x.Key))
			} else {
				fmt.Fprintf(w, "%s\t%s\n", quoted(x.Key), quoted(x.Value))
			}
		}
		_ = w.Flush()
		fmt.Fprintf(stderr, "(%s)\n", plural(n, "key", "keys"))
	}
	return nil
}

// readModeFlags turns the kv read mode flags into the client's read
// options; an error names the flag (and the request field a node would
// name).
func readModeFlags(fs *pflag.FlagSet, mode string, maxStaleness time.Duration, bookmarks []string, timeout time.Duration) ([]client.ReadOption, error) {
	var out []client.ReadOption
	switch mode {
	case "strong":
		out = append(out, client.Strong())
	case "bounded-staleness":
		if maxStaleness <= 0 {
			return nil, usagef("kv", "--max-staleness %v: --read-mode bounded-staleness needs a positive max_staleness", maxStaleness)
		}
		out = append(out, client.BoundedStaleness(maxStaleness))
	case "causal":
		out = append(out, client.Causal())
	default:
		return nil, usagef("kv", "--read-mode %q: want strong, bounded-staleness or causal", mode)
	}
	if fs.Changed("max-staleness") && mode != "bounded-staleness" {
		return nil, usagef("kv", "--max-staleness: only with --read-mode bounded-staleness, not %s", mode)
	}
	if len(bookmarks) > 0 && mode != "causal" {
		return nil, usagef("kv", "--bookmark: only with --read-mode causal, not %s", mode)
	}
	if fs.Changed("bookmark-timeout") {
		if mode != "causal" {
			return nil, usagef("kv", "--bookmark-timeout: only with --read-mode causal, not %s", mode)
		}
		out = append(out, client.BookmarkTimeout(timeout))
	}
	var raws [][]byte
	for _, b := range bookmarks {
		raw, err := hex.DecodeString(b)
		if err != nil {
			return nil, usagef("kv", "--bookmark %q: not hex: %v", b, err)
		}
		raws = append(raws, raw)
	}
	if len(raws) > 0 {
		out = append(out, client.WithBookmarks(raws...))
	}
	return out, nil
}

// printBookmark prints a write's bookmark (for --read-mode causal) on
// stderr, keeping stdout as it was.
func printBookmark(b []byte) {
	if len(b) > 0 {
		fmt.Fprintf(stderr, "(bookmark %s)\n", hex.EncodeToString(b))
	}
}

// clientTS is tsString of a client's timestamp ("" when unset).
func clientTS(t client.Timestamp) string {
	if t.IsZero() {
		return ""
	}
	return tsString(&rspb.Timestamp{WallTime: t.WallTime, Logical: t.Logical})
}

func tsString(ts *rspb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return fmt.Sprintf("@%d.%09d,%d", ts.WallTime/1e9, ts.WallTime%1e9, ts.Logical)
}

func runRange(args []string) error {
	fs := newFlagSet("range")
	tgt := addTargetFlags(fs, "gRPC address of the node to ask")
	verbose := fs.Bool("verbose", false, "list: also show approximate bytes, requests/s, hot key, requests/s by gateway node (leaseholders), and the last allocator decision carried out here")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	switch {
	case len(a) == 3 && a[0] == "transfer-lease":
		return transferLease(tgt, a[1], a[2])
	case len(a) == 2 && a[0] == "split":
		return splitRange(tgt, a[1])
	case len(a) == 2 && a[0] == "merge":
		return mergeRange(tgt, a[1])
	case len(a) == 3 && (a[0] == "add-replica" || a[0] == "remove-replica" || a[0] == "relocate"):
		return changeReplicas(tgt, a[0], a[1], a[2])
	case len(a) == 2 && a[0] == "explain":
		return explainRange(tgt, a[1])
	case len(a) == 1 && a[0] == "list":
	case len(a) == 0:
		return usagef("range", "missing sub-command (list, split, merge, transfer-lease, add-replica, remove-replica, relocate or explain)")
	default:
		return usagef("range", "usage: range list | range split KEY | range merge KEY | range transfer-lease RANGE NODE | range add-replica RANGE NODE | range remove-replica RANGE NODE | range relocate RANGE NODE,NODE,... | range explain RANGE")
	}
	conn, err := tgt.dial()
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
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	header := "RANGE\tSPAN\tSTATE\tREPLICAS\tLEASEHOLDER\tLEASE\tEPOCH\tRAFT-LEADER\tTERM\tAPPLIED"
	if *verbose {
		header += "\tBYTES\tQPS\tHOT-KEY"
	}
	fmt.Fprintln(w, header)
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
		fmt.Fprintf(w, "r%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d", d.RangeId, spanString(d), rangeState(ri), reps, holder, kind, epoch, leader, ri.Term, ri.AppliedIndex)
		if *verbose {
			hot := "-"
			if len(ri.HotKey) > 0 {
				hot = keyString(ri.HotKey)
			}
			fmt.Fprintf(w, "\t%d\t%.1f\t%s", ri.ApproxBytes, ri.Qps, hot)
		}
		fmt.Fprintln(w)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, ri := range r.Ranges {
		if *verbose && len(ri.RequestSources) > 0 {
			parts := make([]string, len(ri.RequestSources))
			for i, g := range ri.RequestSources {
				parts[i] = fmt.Sprintf("n%d %.1f/s", g.GatewayNodeId, g.Qps)
				if g.GatewayNodeId == 0 {
					parts[i] = fmt.Sprintf("unknown %.1f/s", g.Qps)
				}
			}
			fmt.Fprintf(stdout, "r%d requests by gateway (10 s average, %.1f/s): %s\n", ri.RangeDescriptor.GetRangeId(), ri.RequestQps, strings.Join(parts, ", "))
		}
	}
	for _, ri := range r.Ranges {
		if *verbose && ri.LastDecision != "" {
			fmt.Fprintf(stdout, "r%d last allocator decision: %s\n", ri.RangeDescriptor.GetRangeId(), ri.LastDecision)
		}
	}
	for _, ri := range r.Ranges {
		if ri.FrozenInto != 0 {
			fmt.Fprintf(stderr, "warning: r%d is frozen for a merge into r%d: it serves nothing until the merge completes or is rolled back\n",
				ri.RangeDescriptor.GetRangeId(), ri.FrozenInto)
		}
	}
	return nil
}

// transferLease moves the lease of range r<ID> (or <ID>) to node n<ID>.
func transferLease(tgt *target, rangeArg, nodeArg string) error {
	rangeID, err := strconv.ParseUint(strings.TrimPrefix(rangeArg, "r"), 10, 64)
	if err != nil {
		return usagef("range", "range %q: want r<ID>", rangeArg)
	}
	nodeID, err := strconv.ParseUint(strings.TrimPrefix(nodeArg, "n"), 10, 64)
	if err != nil {
		return usagef("range", "node %q: want n<ID>", nodeArg)
	}
	return withAdmin(tgt, func(ctx context.Context, a rspb.AdminClient) error {
		r, err := a.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: rangeID, TargetNodeId: nodeID})
		if err != nil {
			return err
		}
		if r.AlreadyHeld {
			fmt.Fprintf(stdout, "n%d already holds r%d\n", nodeID, rangeID)
			return nil
		}
		fmt.Fprintf(stdout, "lease of r%d transferred to n%d\n", rangeID, nodeID)
		return nil
	})
}

// splitRange splits the range holding a client key at that key.
func splitRange(tgt *target, key string) error {
	return withAdmin(tgt, func(ctx context.Context, a rspb.AdminClient) error {
		r, err := a.SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte(key)})
		if err != nil {
			return err
		}
		if r.Left == nil {
			fmt.Fprintf(stdout, "r%d already starts at %q\n", r.Right.GetRangeId(), key)
			return nil
		}
		fmt.Fprintf(stdout, "split r%d at %q: r%d %s, r%d %s\n", r.Left.RangeId, key, r.Left.RangeId, spanString(r.Left), r.Right.RangeId, spanString(r.Right))
		return nil
	})
}

// mergeRange merges the range holding a client key with its right
// neighbour.
func mergeRange(tgt *target, key string) error {
	return withAdmin(tgt, func(ctx context.Context, a rspb.AdminClient) error {
		r, err := a.MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte(key)})
		if err != nil {
			return err
		}
		if ab := r.Absorbed; ab != nil {
			fmt.Fprintf(stdout, "merged r%d into r%d: r%d %s\n", ab.RangeId, r.Merged.RangeId, r.Merged.RangeId, spanString(r.Merged))
			return nil
		}
		fmt.Fprintf(stdout, "merged: r%d %s\n", r.Merged.RangeId, spanString(r.Merged))
		return nil
	})
}

// explainRange runs range explain RANGE: what the allocator would do with
// the range now, and why.
func explainRange(tgt *target, rangeArg string) error {
	rangeID, err := strconv.ParseUint(strings.TrimPrefix(rangeArg, "r"), 10, 64)
	if err != nil || rangeID == 0 {
		return usagef("range", "range %q: want r<ID>", rangeArg)
	}
	return withAdminFor(tgt, 15*time.Second, func(ctx context.Context, a rspb.AdminClient) error {
		r, err := a.ExplainRange(ctx, &rspb.ExplainRangeRequest{RangeId: rangeID})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "r%d %s, leaseholder %s, %.1f queries/s\n", rangeID, spanString(r.RangeDescriptor), nodeOrNone(r.LeaseholderNodeId), r.QueriesPerSecond)
		fmt.Fprintf(stdout, "inputs: %s\n", r.Inputs)
		fmt.Fprintln(stdout, strings.TrimRight(r.Explanation, "\n"))
		return nil
	})
}

func nodeOrNone(id uint64) string {
	if id == 0 {
		return "none known"
	}
	return fmt.Sprintf("n%d", id)
}

// changeReplicas runs range add-replica / remove-replica RANGE NODE and
// range relocate RANGE NODE,NODE,... (the lease goes to the first node).
func changeReplicas(tgt *target, op, rangeArg, nodesArg string) error {
	rangeID, err := strconv.ParseUint(strings.TrimPrefix(rangeArg, "r"), 10, 64)
	if err != nil || rangeID == 0 {
		return usagef("range", "range %q: want r<ID>", rangeArg)
	}
	var nodes []uint64
	for _, n := range strings.Split(nodesArg, ",") {
		id, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(n), "n"), 10, 64)
		if err != nil || id == 0 {
			return usagef("range", "node %q: want n<ID>", n)
		}
		nodes = append(nodes, id)
	}
	if op != "relocate" && len(nodes) != 1 {
		return usagef("range", "%s takes one node, got %q", op, nodesArg)
	}
	return withAdminFor(tgt, 2*time.Minute, func(ctx context.Context, a rspb.AdminClient) error {
		var d *rspb.RangeDescriptor
		switch op {
		case "relocate":
			r, err := a.RelocateRange(ctx, &rspb.RelocateRangeRequest{RangeId: rangeID, VoterNodeIds: nodes})
			if err != nil {
				return err
			}
			d = r.RangeDescriptor
		default:
			req := &rspb.ChangeReplicasRequest{RangeId: rangeID, AddNodeIds: nodes}
			if op == "remove-replica" {
				req = &rspb.ChangeReplicasRequest{RangeId: rangeID, RemoveNodeIds: nodes}
			}
			r, err := a.ChangeReplicas(ctx, req)
			if err != nil {
				return err
			}
			d = r.RangeDescriptor
		}
		var reps []string
		for _, rep := range d.GetReplicas() {
			s := fmt.Sprintf("n%d", rep.NodeId)
			if rep.Type != rspb.ReplicaType_VOTER {
				s += "(" + strings.ToLower(rep.Type.String()) + ")"
			}
			reps = append(reps, s)
		}
		fmt.Fprintf(stdout, "r%d %s: replicas %s (generation %d)\n", d.GetRangeId(), spanString(d), strings.Join(reps, ","), d.GetGeneration())
		return nil
	})
}

// withAdmin runs one admin call against the target node with a 30 s deadline.
func withAdmin(tgt *target, call func(context.Context, rspb.AdminClient) error) error {
	return withAdminFor(tgt, 30*time.Second, call)
}

// withAdminFor runs one admin call against the target node with deadline d.
func withAdminFor(tgt *target, d time.Duration, call func(context.Context, rspb.AdminClient) error) error {
	return withConn(tgt, d, func(ctx context.Context, conn *grpc.ClientConn) error {
		return call(ctx, rspb.NewAdminClient(conn))
	})
}

// withConn runs call on a connection to the target node under deadline d, and closes
// the connection.
func withConn(tgt *target, d time.Duration, call func(context.Context, *grpc.ClientConn) error) error {
	conn, err := tgt.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return call(ctx, conn)
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
