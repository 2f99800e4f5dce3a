package rebalance

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestLoadInputsDoNotThrash runs every node's plan, round after round, on
// 40 ranges over 6 nodes in 3 regions, with each range's QPS and request
// sources as inputs (seeded), carrying out the lease transfers and voter
// moves the plans make, until no plan makes a step. No range may come
// back to a placement (leaseholder and voters) it left: thrash 0. Two
// workloads: light (a few qps per range: the 100 qps floor keeps load
// rules quiet, follow-the-workload and lease counts act) and hot (one
// region's gateways send 80 % of 6000 qps to ranges whose leases start on
// n1).
func TestLoadInputsDoNotThrash(t *testing.T) {
	for _, c := range []struct {
		name string
		qps  func(rng *rand.Rand, i int) float64
		from func(rng *rand.Rand, i int) uint64
	}{
		{"light", func(rng *rand.Rand, _ int) float64 { return float64(1 + rng.Intn(20)) },
			func(rng *rand.Rand, _ int) uint64 { return uint64(1 + rng.Intn(6)) }},
		{"hot", func(rng *rand.Rand, i int) float64 {
			if i%5 != 0 {
				return 240
			}
			return float64(10 + rng.Intn(30))
		}, func(rng *rand.Rand, i int) uint64 {
			if i%5 != 0 {
				return uint64(3 + rng.Intn(2)) // eu: n3, n4
			}
			return uint64(1 + rng.Intn(6))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewSource(1))
			regions := []string{"us", "us", "eu", "eu", "ap", "ap"}
			var nodes []allocator.Node
			for i, r := range regions {
				nodes = append(nodes, allocator.Node{ID: uint64(i + 1), Liveness: allocator.Live,
					Locality: []*rspb.LocalityTier{{Key: "region", Value: r}, {Key: "zone", Value: fmt.Sprintf("z%d", i+1)}}})
			}
			type rng_ struct {
				view RangeView
				seen map[string]bool
				last string
			}
			var ranges []*rng_
			for i := 0; i < 40; i++ {
				// One voter per region, the first of each pair mostly;
				// every lease on n1 or n2 (us) at first.
				vs := []uint64{uint64(1 + (i % 2)), uint64(3 + (i/2)%2), uint64(5 + (i/4)%2)}
				d := &rspb.RangeDescriptor{RangeId: uint64(i + 2), Generation: 1}
				for j, n := range vs {
					d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: n, ReplicaId: uint64(j + 1), Type: rspb.ReplicaType_VOTER})
				}
				d.NextReplicaId = 4
				q := c.qps(rng, i)
				v := RangeView{Desc: d, Leaseholder: vs[0], QPS: q, Sources: []Source{{Gateway: c.from(rng, i), QPS: q}}}
				ranges = append(ranges, &rng_{view: v, seen: map[string]bool{}})
			}
			place := func(v RangeView) string {
				var ids []string
				for _, r := range v.Desc.Replicas {
					ids = append(ids, fmt.Sprint(r.NodeId))
				}
				sort.Strings(ids)
				return fmt.Sprintf("lh=n%d voters=%s", v.Leaseholder, strings.Join(ids, ","))
			}
			for _, r := range ranges {
				r.last = place(r.view)
				r.seen[r.last] = true
			}
			now := planNow
			thrash, moves, transfers, quiet := 0, 0, 0, 0
			var round int
			for round = 1; round <= 60 && quiet < 3; round++ {
				now = now.Add(10 * time.Second)
				steps := 0
				for self := uint64(1); self <= 6; self++ {
					in := Input{Self: self, Factor: 3, Now: now}
					for _, n := range nodes {
						n.QPS = 0
						for _, r := range ranges {
							if r.view.Leaseholder == n.ID {
								n.QPS += r.view.QPS
							}
						}
						in.Nodes = append(in.Nodes, n)
					}
					for _, r := range ranges {
						v := r.view
						v.Mine = v.Leaseholder == self
						in.Ranges = append(in.Ranges, v)
					}
					p, err := MakePlan(in)
					if err != nil {
						t.Fatal(err)
					}
					for _, s := range p.Steps {
						r := ranges[s.RangeID-2]
						switch {
						case s.Transfer != 0:
							r.view.Leaseholder = s.Transfer
							transfers++
						case s.Decision.Action == allocator.ActionRebalance:
							for _, rep := range r.view.Desc.Replicas {
								if rep.NodeId == s.Remove[0] {
									rep.NodeId = s.Add[0]
								}
							}
							if r.view.Leaseholder == s.Remove[0] {
								r.view.Leaseholder = s.Add[0]
							}
							moves++
						default:
							t.Fatalf("round %d: unexpected step %+v", round, s.Decision)
						}
						steps++
						now2 := place(r.view)
						if r.seen[now2] {
							thrash++
							t.Logf("round %d: r%d back to %s (was %s): %s", round, s.RangeID, now2, r.last, s.Decision.Reason)
						}
						r.seen[now2] = true
						r.last = now2
					}
				}
				if steps == 0 {
					quiet++
				} else {
					quiet = 0
				}
			}
			per := map[uint64][2]float64{}
			for _, r := range ranges {
				x := per[r.view.Leaseholder]
				per[r.view.Leaseholder] = [2]float64{x[0] + 1, x[1] + r.view.QPS}
			}
			t.Logf("%s: %d rounds, %d lease transfers, %d voter moves, thrash %d; leases/qps per node: %v", c.name, round-1, transfers, moves, thrash, per)
			if quiet < 3 {
				t.Errorf("still moving after %d rounds", round-1)
			}
			if thrash != 0 {
				t.Errorf("thrash count %d, want 0", thrash)
			}
			if c.name == "hot" {
				// eu cannot serve 80 % of the load: load balancing
				// bounds what follows the workload; no store ends hot.
				total, hot := 0.0, 0.0
				for _, x := range per {
					total += x[1]
				}
				mean := total / 6
				hot = max(mean*(1+allocator.QPSThreshold), mean+allocator.MinQPSAboveMean)
				for id, x := range per {
					if x[1] > hot {
						t.Errorf("n%d serves %.0f qps, above the hot line %.0f", id, x[1], hot)
					}
				}
				for _, id := range []uint64{3, 4} {
					if per[id][1] < mean {
						t.Errorf("eu node n%d serves %.0f qps, below the mean %.0f: the workload was not followed", id, per[id][1], mean)
					}
				}
				return
			}
			// Every range whose requests come from one region holds its
			// lease there once settled (the workload was followed).
			for _, r := range ranges {
				gw := r.view.Sources[0].Gateway
				if regions[gw-1] != regions[r.view.Leaseholder-1] {
					t.Errorf("r%d: requests from n%d (%s), lease on n%d (%s)", r.view.Desc.RangeId, gw, regions[gw-1], r.view.Leaseholder, regions[r.view.Leaseholder-1])
				}
			}
		})
	}
}
