package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestZoneLeasePreferences (issue 12, acceptance 4, and item 2): on six
// processes in three regions, once b..m has a zone (its ranges split at b
// and m), `zone set b..m --lease-preferences '[+region=ap]' --dry-run`
// changes nothing and names the ranges whose lease would move, exactly
// those outside ap; without --dry-run the replicate queues move every
// lease of the span into ap, within a bounded time. Bad configs are refused
// naming the field, a partly overlapping span is refused, and a valid
// config no node satisfies is stored with a warning.
func TestZoneLeasePreferences(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pc, region := newRegionCluster(t, ctx, 6)
	host := pc.addrs[1]
	zone := func(args ...string) cliResult {
		return pc.runCLI(t, append([]string{"zone", "--host", host}, args...)...)
	}
	// The ranges of [b, m) once split there, and where their leases are.
	inSpan := func(d *rspb.RangeDescriptor) bool {
		s, err := keys.ClientKey(d.StartKey)
		return err == nil && keys.IsUserKey(d.StartKey) && string(s) >= "b" && string(s) < "m"
	}
	// leases: who holds each range's lease: the newest valid lease any node
	// reports (a follower may still show one transferred away from it).
	leases := func() map[uint64]uint64 {
		out := map[uint64]uint64{}
		seq := map[uint64]uint64{}
		for i := 0; i < pc.NumNodes(); i++ {
			actx, c := context.WithTimeout(ctx, 3*time.Second)
			r, err := rspb.NewAdminClient(pc.Conn(i)).Ranges(actx, &rspb.RangesRequest{})
			c()
			if err != nil {
				continue
			}
			for _, ri := range r.Ranges {
				id := ri.RangeDescriptor.GetRangeId()
				if ri.LeaseValid && ri.Lease.GetNodeId() != 0 && (out[id] == 0 || ri.Lease.GetSequence() > seq[id]) {
					out[id], seq[id] = ri.Lease.GetNodeId(), ri.Lease.GetSequence()
				}
			}
		}
		return out
	}
	if l := zone("list"); l.code != 0 || !strings.Contains(l.out, "no zone configs") {
		t.Fatalf("zone list on a new cluster: %s", l)
	}
	// A first field splits the ranges at b and m; the lease preference
	// then joins it (fields of one span merge).
	if r := zone("set", "b..m", "--gc-ttl", "2h"); r.code != 0 {
		t.Fatalf("zone set --gc-ttl: %s", r)
	}
	// The ranges of [b, m) (split there by the first set).
	descs, err := readMetaAll(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	var span []*rspb.RangeDescriptor
	for _, d := range descs {
		if inSpan(d) {
			span = append(span, d)
		}
	}
	if len(span) == 0 {
		t.Fatalf("no range starts in [b, m) after zone set: %v", descs)
	}
	// The dry run is compared with the leases it saw: taken when every
	// range of the span has a holder, and again after the dry run; a lease
	// that moved in between (a new range's first lease, say) means another
	// try.
	var before map[uint64]uint64
	var dry cliResult
	for attempt := 1; ; attempt++ {
		before = leases()
		held := true
		for _, d := range span {
			held = held && before[d.RangeId] != 0
		}
		if !held {
			if ctx.Err() != nil || attempt > 200 {
				t.Fatalf("not every range of [b, m) has a lease holder: %v", before)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		dry = zone("set", "b..m", "--lease-preferences", "[+region=ap]", "--dry-run")
		if dry.code != 0 || !strings.Contains(dry.out, "dry run, nothing changed") {
			t.Fatalf("dry run: %s", dry)
		}
		after := leases()
		same := true
		for _, d := range span {
			same = same && after[d.RangeId] == before[d.RangeId]
		}
		if same {
			break
		}
		if attempt > 200 {
			t.Fatalf("leases of [b, m) kept moving around the dry run: before %v, after %v", before, after)
		}
	}
	if l := zone("list"); l.code != 0 || strings.Contains(l.out, "lease_preferences") {
		t.Fatalf("a dry run stored its field: %s", l)
	}
	predicted := map[string]bool{} // ranges the dry run says move their lease
	for _, line := range strings.Split(dry.out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(line, "transfer-lease") {
			predicted[f[0]] = true
		}
	}
	set := zone("set", "b..m", "--lease-preferences", "[+region=ap]")
	if set.code != 0 {
		t.Fatalf("zone set: %s", set)
	}
	start := time.Now()
	var moved []string
	for {
		l := leases()
		var bad []string
		for _, d := range span {
			if h := l[d.RangeId]; region[h] != "ap" {
				bad = append(bad, fmt.Sprintf("r%d on n%d (%s)", d.RangeId, h, region[h]))
			}
		}
		if len(bad) == 0 {
			break
		}
		if ctx.Err() != nil || time.Since(start) > 2*time.Minute {
			t.Fatalf("leases of [b, m) not all in ap %v after zone set: %s\n%s", time.Since(start).Round(time.Millisecond), strings.Join(bad, "; "), set.out)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The dry run named exactly the ranges whose lease was outside ap.
	var outside []string
	for _, d := range span {
		if region[before[d.RangeId]] != "ap" {
			outside = append(outside, fmt.Sprintf("r%d", d.RangeId))
		}
	}
	for r := range predicted {
		moved = append(moved, r)
	}
	sort.Strings(moved)
	sort.Strings(outside)
	if fmt.Sprint(moved) != fmt.Sprint(outside) {
		t.Errorf("the dry run predicted lease transfers for %v; the leases outside ap were those of %v\n%s", moved, outside, dry.out)
	}
	t.Logf("every lease of [b, m) (%d ranges) in ap %.1f s after zone set; the dry run predicted transfers for %v, the ones outside ap", len(span), time.Since(start).Seconds(), moved)
	// range list --verbose on a node whose queue moved a lease shows the
	// decision it carried out.
	if len(predicted) > 0 {
		var rid uint64
		if _, err := fmt.Sscanf(moved[0], "r%d", &rid); err != nil {
			t.Fatalf("range %q: %v", moved[0], err)
		}
		from := before[rid]
		l := pc.runCLI(t, "range", "--host", pc.addrs[pc.indexOfNodeID(from)], "list", "--verbose")
		if l.code != 0 || !strings.Contains(l.out, fmt.Sprintf("r%d last allocator decision: transfer-lease", rid)) || !strings.Contains(l.out, "lease preference") {
			t.Errorf("range list --verbose on n%d does not show r%d's lease transfer:\n%s", from, rid, l)
		}
	}
	if g := zone("get", "c"); g.code != 0 || !strings.Contains(g.out, "zone b..m") || !strings.Contains(g.out, "lease_preferences=[[+region=ap]]") || !strings.Contains(g.out, "gc_ttl=7200") {
		t.Errorf("zone get c: %s", g)
	}
	// Refusals, each naming what is wrong, and nothing stored.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"set", "b..m", "--num-replicas", "0"}, "num_replicas"},
		{[]string{"set", "b..m", "--constraints", "region=eu"}, "constraints"},
		{[]string{"set", "f..z", "--num-replicas", "5"}, "partly overlaps"},
		{[]string{"set", "default", "--num-replicas", "5"}, "cluster set-replicas"},
		{[]string{"set", "x"}, "START..END"},
	} {
		if r := zone(tc.args...); r.code == 0 || !strings.Contains(r.errOut, tc.want) {
			t.Errorf("zone %v: %s, want a refusal naming %q", tc.args, r, tc.want)
		}
	}
	// Valid, not satisfiable with these nodes: stored, with a warning.
	if r := zone("set", "x..", "--constraints", "[+region=mars]"); r.code != 0 || !strings.Contains(r.out, "constraint not satisfiable") {
		t.Errorf("unsatisfiable zone: %s", r)
	}
	if l := zone("list"); l.code != 0 || !strings.Contains(l.out, "b..m: gc_ttl=2h lease_preferences=[+region=ap]") || !strings.Contains(l.out, "x..: constraints=[+region=mars]") {
		t.Errorf("zone list: %s", l)
	}
}
