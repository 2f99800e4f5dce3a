package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// zoneFlags are the zone config fields `zone set` takes, by flag name.
var zoneFlags = []struct{ flag, field, help string }{
	{"num-replicas", "num_replicas", "replicas in all (voters and non-voters)"},
	{"num-voters", "num_voters", "voters (default: num-replicas)"},
	{"num-non-voters", "num_non_voters", "non-voters: num-replicas = num-voters + num-non-voters (set two; alone: the parent's voters plus these)"},
	{"constraints", "constraints", "where every replica may go, e.g. '+region=eu' or '{\"+region=eu\":2}'"},
	{"voter-constraints", "voter_constraints", "where voters may go, on top of --constraints"},
	{"non-voter-constraints", "non_voter_constraints", "where the zone's non-voters may go, on top of --constraints"},
	{"lease-preferences", "lease_preferences", "where the lease should be, in order, e.g. '[+region=us]'"},
	{"range-min-bytes", "range_min_bytes", "bytes below which ranges merge"},
	{"range-max-bytes", "range_max_bytes", "bytes above which ranges split"},
	{"gc-ttl", "gc_ttl", "how long old versions are kept (seconds, or a duration like 4h)"},
}

// runZone runs zone set SPAN [flags] | zone get KEY | zone list.
func runZone(args []string) error {
	fs := newFlagSet("zone")
	tgt := addTargetFlags(fs, "gRPC address of any node")
	dryRun := fs.Bool("dry-run", false, "set: change nothing, say what the allocator would do first")
	vals := map[string]*string{}
	for _, f := range zoneFlags {
		vals[f.field] = fs.String(f.flag, "", f.help)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	switch {
	case len(a) == 2 && a[0] == "set":
		req := &rspb.SetZoneRequest{Fields: map[string]string{}, DryRun: *dryRun}
		if a[1] == "default" {
			req.DefaultZone = true
		} else {
			start, end, ok := strings.Cut(a[1], "..")
			if !ok || start == "" {
				return usagef("zone", "span %q: want default, START..END or START.. (to the end of the keyspace)", a[1])
			}
			req.StartKey, req.EndKey = []byte(start), []byte(end)
		}
		for _, f := range zoneFlags {
			if fs.Changed(f.flag) {
				req.Fields[f.field] = *vals[f.field]
			}
		}
		if len(req.Fields) == 0 {
			return usagef("zone", "set %s: no field given (--num-replicas, --constraints, --lease-preferences, ...)", a[1])
		}
		return withAdminFor(tgt, 60*time.Second, func(ctx context.Context, c rspb.AdminClient) error {
			r, err := c.SetZone(ctx, req)
			if err != nil {
				return err
			}
			verb := "set"
			if *dryRun {
				verb = "dry run, nothing changed"
			}
			fmt.Fprintf(stdout, "zone %s (%s): %s\n", zoneSpanString(r.Record), verb, fieldsString(r.Record.GetFields()))
			fmt.Fprintf(stdout, "resolved: %s\n", r.Resolved)
			for _, u := range r.Unsatisfiable {
				fmt.Fprintf(stdout, "warning: %s\n", u)
			}
			what := "the allocator's next step per range:"
			if *dryRun {
				what = "the allocator's first step per range, if set:"
			}
			fmt.Fprintln(stdout, what)
			for _, ch := range r.Changes {
				fmt.Fprintf(stdout, "  %s\n", ch)
			}
			return nil
		})
	case len(a) == 2 && a[0] == "get":
		return withAdminFor(tgt, 15*time.Second, func(ctx context.Context, c rspb.AdminClient) error {
			r, err := c.GetZone(ctx, &rspb.GetZoneRequest{Key: []byte(a[1])})
			if err != nil {
				return err
			}
			src := "the built-in default"
			if r.Record != nil {
				src = "zone " + zoneSpanString(r.Record)
			}
			fmt.Fprintf(stdout, "%q is under %s: %s\n", a[1], src, r.Resolved)
			return nil
		})
	case len(a) == 1 && a[0] == "list":
		return withAdminFor(tgt, 15*time.Second, func(ctx context.Context, c rspb.AdminClient) error {
			r, err := c.ListZones(ctx, &rspb.ListZonesRequest{})
			if err != nil {
				return err
			}
			if len(r.Records) == 0 {
				fmt.Fprintln(stdout, "no zone configs: every range is under the built-in default (replicas: the replication factor setting)")
			}
			for _, z := range r.Records {
				fmt.Fprintf(stdout, "%s: %s\n", zoneSpanString(z), fieldsString(z.Fields))
			}
			return nil
		})
	}
	return usagef("zone", "usage: zone set SPAN [--num-replicas N] [--constraints C] [--lease-preferences P] [...] [--dry-run] | zone get KEY | zone list")
}

func zoneSpanString(z *rspb.ZoneConfigRecord) string {
	if len(z.GetStartKey()) == 0 && len(z.GetEndKey()) == 0 {
		return "default"
	}
	return fmt.Sprintf("%s..%s", z.StartKey, z.EndKey)
}

func fieldsString(f map[string]string) string {
	ks := make([]string, 0, len(f))
	for k := range f {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var out []string
	for _, k := range ks {
		out = append(out, k+"="+f[k])
	}
	return strings.Join(out, " ")
}
