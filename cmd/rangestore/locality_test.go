package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestRegionDiversityAndRepair (issue 12, acceptance 3): six processes in
// three regions (two zones each), replication factor 3. Init places every
// range's replicas one per region (and the replicate queues, deciding
// diversity before counts, keep them so); then a node is killed for good, and each
// of its voters is replaced in its own region, where the other node is
// live: every range is back to one live voter per region.
func TestRegionDiversityAndRepair(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const procs = 6
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pc, region := newRegionCluster(t, ctx, procs)
	began := time.Now()
	// Every range with three voters, one per region, on nodes in live.
	diverse := func(live func(uint64) bool) ([]*rspb.RangeDescriptor, string) {
		descs, err := readMetaAll(ctx, pc)
		if err != nil {
			return nil, err.Error()
		}
		var bad []string
		for _, d := range descs {
			seen := map[string]bool{}
			var where []string
			voters := 0
			for _, r := range d.Replicas {
				where = append(where, fmt.Sprintf("n%d(%s)", r.NodeId, region[r.NodeId]))
				if r.Type == rspb.ReplicaType_VOTER && live(r.NodeId) {
					voters++
					seen[region[r.NodeId]] = true
				}
			}
			if voters != 3 || len(seen) != 3 || len(d.Replicas) != 3 {
				bad = append(bad, fmt.Sprintf("r%d on %s", d.RangeId, strings.Join(where, ",")))
			}
		}
		return descs, strings.Join(bad, "; ")
	}
	all := func(uint64) bool { return true }
	first := ""
	var descs []*rspb.RangeDescriptor
	for {
		var bad string
		descs, bad = diverse(all)
		if first == "" {
			first = bad
			if first == "" {
				first = "(none)"
			}
		}
		if bad == "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("ranges not one voter per region after %v: %s", time.Since(began).Round(time.Millisecond), bad)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if first != "(none)" {
		t.Errorf("right after init, ranges not one voter per region (init places replicas by locality): %s", first)
	}
	t.Logf("%d ranges, one voter per region from init on (checked %.1f s after init)", len(descs), time.Since(began).Seconds())

	// Kill the process of a node holding voters, for good.
	victim := descs[len(descs)-1].Replicas[0].NodeId
	lost := map[uint64]bool{} // ranges that had a voter on it
	for _, d := range descs {
		for _, r := range d.Replicas {
			if r.NodeId == victim {
				lost[d.RangeId] = true
			}
		}
	}
	pc.kill(pc.indexOfNodeID(victim))
	killed := time.Now()
	t.Logf("SIGKILLed n%d (region %s), holding voters of %d ranges", victim, region[victim], len(lost))
	notVictim := func(id uint64) bool { return id != victim }
	lastBad := "" // the last ranges seen not repaired (bad may be a read error)
	for {
		var bad string
		descs, bad = diverse(notVictim)
		if bad == "" {
			break
		}
		if descs != nil {
			lastBad = bad
		}
		if ctx.Err() != nil {
			// What the queues last decided, for the diagnosis.
			var decisions []string
			for i := 0; i < pc.NumNodes(); i++ {
				if !pc.Running(i) {
					continue
				}
				actx, c := context.WithTimeout(context.Background(), 3*time.Second)
				r, err := rspb.NewAdminClient(pc.Conn(i)).Ranges(actx, &rspb.RangesRequest{})
				c()
				for _, ri := range r.GetRanges() {
					if ri.LastDecision != "" && err == nil {
						decisions = append(decisions, fmt.Sprintf("process %d r%d: %s", i, ri.RangeDescriptor.GetRangeId(), ri.LastDecision))
					}
				}
			}
			t.Fatalf("not repaired one voter per region %v after the kill: %s (last seen: %s)\nlast queue decisions:\n%s", time.Since(killed).Round(time.Millisecond), bad, lastBad, strings.Join(decisions, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
	// Each replacement is in the victim's region (its other node is live).
	var moved []string
	for _, d := range descs {
		if !lost[d.RangeId] {
			continue
		}
		for _, r := range d.Replicas {
			if region[r.NodeId] == region[victim] {
				moved = append(moved, fmt.Sprintf("r%d->n%d", d.RangeId, r.NodeId))
			}
		}
	}
	sort.Strings(moved)
	if len(moved) != len(lost) {
		t.Fatalf("%d ranges lost a voter in %s, %d have one there again: %v", len(lost), region[victim], len(moved), moved)
	}
	t.Logf("repaired %.1f s after the kill (time-until-store-dead 10s), every replacement in region %s: %s",
		time.Since(killed).Seconds(), region[victim], strings.Join(moved, " "))
}

// newRegionCluster starts procs processes in three regions (us, eu, ap;
// two zones each, in process order), with the replicate queue every
// second and a time-until-store-dead of 10 s, initializes them with 10
// splits and returns the cluster and each node's region by node ID.
func newRegionCluster(t *testing.T, ctx context.Context, procs int) (*procCluster, map[uint64]string) {
	t.Helper()
	pc := newProcClusterArgs(t, procs, []string{"--replicate-queue-interval", "1s", "--time-until-store-dead", "10s"})
	regions := []string{"us", "eu", "ap"}
	for i := 0; i < procs; i++ {
		pc.SetArg(i, "--locality", fmt.Sprintf("region=%s,zone=%s-%c", regions[i*3/procs], regions[i*3/procs], 'a'+i%2), false)
		pc.kill(i) // not initialized yet: restarted with its locality
		pc.start(i)
	}
	pc.cliRetry(120*time.Second, "init", "--host", pc.addrs[0], "--initial-splits", "10")
	region := map[uint64]string{} // node ID -> region, from the directory
	for len(region) < procs {
		actx, c := context.WithTimeout(ctx, 3*time.Second)
		r, err := rspb.NewAdminClient(pc.Conn(0)).Nodes(actx, &rspb.NodesRequest{})
		c()
		if err == nil {
			for _, ns := range r.Nodes {
				for _, tier := range ns.Node.GetLocality() {
					if tier.Key == "region" {
						region[ns.Node.NodeId] = tier.Value
					}
				}
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the directory never listed %d nodes with regions: %v", procs, region)
		}
	}
	return pc, region
}
