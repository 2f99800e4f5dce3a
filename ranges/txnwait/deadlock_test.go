package txnwait

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/internal/golden"
)

type deadlockCase struct {
	Name string
	// Txns maps each txn (hex ID) to its priority.
	Txns        map[string]jpri
	Waits       [][2]jid
	RemoveWaits [][2]jid `json:"remove_waits"`
	RemoveTxns  []jid    `json:"remove_txns"`
}

// TestFindCycleGolden runs testdata/deadlock.json (graphs built from
// waits, then some waits and txns removed) through FindCycle and compares
// with testdata/deadlock.golden.
func TestFindCycleGolden(t *testing.T) {
	var cases []deadlockCase
	golden.LoadJSON(t, "deadlock.json", &cases)
	var out strings.Builder
	for _, c := range cases {
		g := NewGraph()
		pri := func(id jid) int32 {
			p, ok := c.Txns[TxnID(id).String()[:2]]
			if !ok {
				t.Fatalf("%s: txn %s has no priority", c.Name, TxnID(id))
			}
			return int32(p)
		}
		var desc []string
		for _, w := range c.Waits {
			if err := g.AddWait(TxnState{ID: TxnID(w[0]), Priority: pri(w[0])}, TxnState{ID: TxnID(w[1]), Priority: pri(w[1])}); err != nil {
				t.Fatal(err)
			}
			desc = append(desc, fmt.Sprintf("%s→%s", TxnID(w[0]), TxnID(w[1])))
		}
		for _, w := range c.RemoveWaits {
			g.RemoveWait(TxnID(w[0]), TxnID(w[1]))
			desc = append(desc, fmt.Sprintf("-%s→%s", TxnID(w[0]), TxnID(w[1])))
		}
		for _, id := range c.RemoveTxns {
			g.RemoveTxn(TxnID(id))
			desc = append(desc, fmt.Sprintf("-%s", TxnID(id)))
		}
		fmt.Fprintf(&out, "== %s\nwaits %s\n", c.Name, strings.Join(desc, " "))
		if d, ok := g.FindCycle(); ok {
			fmt.Fprintf(&out, "→ abort %s: %s\n\n", d.Victim, d.Reason)
		} else {
			fmt.Fprintf(&out, "→ no cycle\n\n")
		}
	}
	golden.Check(t, "deadlock.golden", []byte(out.String()))
}

// hasCycle is a plain recursive DFS over the graph's edges, independent of
// FindCycle's ordering.
func hasCycle(g *Graph) bool {
	color := map[TxnID]int{}
	var visit func(TxnID) bool
	visit = func(id TxnID) bool {
		color[id] = 1
		for next := range g.waitsFor[id] {
			if color[next] == 1 || (color[next] == 0 && visit(next)) {
				return true
			}
		}
		color[id] = 2
		return false
	}
	for id := range g.waitsFor {
		if color[id] == 0 && visit(id) {
			return true
		}
	}
	return false
}

// TestFindCycleProperty: on random graphs (seeded), FindCycle finds a
// cycle iff a plain DFS does; the cycle is real, starts at its smallest ID,
// and its victim has the lowest (priority, ID); removing the victim breaks
// that cycle; the answer does not depend on the order edges were added;
// and aborting victims until none is found leaves an acyclic graph.
func TestFindCycleProperty(t *testing.T) {
	const seed = 20261128
	rng := rand.New(rand.NewPCG(seed, 1))
	withCycle := 0
	for trial := range 3000 {
		n := 2 + rng.IntN(8)
		txns := make([]TxnState, n)
		for i := range txns {
			txns[i] = TxnState{ID: TxnID{byte(rng.IntN(256)), byte(i)}, Priority: []int32{MinPriority, 1, 2, 2, 7, MaxPriority}[rng.IntN(6)]}
		}
		var edges [][2]int
		p := rng.Float64() * 0.4
		for i := range n {
			for j := range n {
				if i != j && rng.Float64() < p {
					edges = append(edges, [2]int{i, j})
				}
			}
		}
		build := func(order []int) *Graph {
			g := NewGraph()
			for _, k := range order {
				if err := g.AddWait(txns[edges[k][0]], txns[edges[k][1]]); err != nil {
					t.Fatal(err)
				}
			}
			return g
		}
		g := build(rng.Perm(len(edges)))
		d, found := g.FindCycle()
		if want := hasCycle(g); found != want {
			t.Fatalf("seed %d trial %d: FindCycle found=%t, DFS says %t (edges %v)", seed, trial, found, want, edges)
		}
		if again, _ := build(rng.Perm(len(edges))).FindCycle(); !reflect.DeepEqual(again, d) {
			t.Fatalf("seed %d trial %d: another edge order gave %+v, first %+v", seed, trial, again, d)
		}
		if !found {
			continue
		}
		withCycle++
		for removed := 0; found; removed++ {
			checkDeadlock(t, g, d, fmt.Sprintf("seed %d trial %d round %d", seed, trial, removed))
			g.RemoveTxn(d.Victim)
			if cycleIntact(g, d.Cycle) {
				t.Fatalf("seed %d trial %d: cycle %v intact after removing victim %s", seed, trial, d.Cycle, d.Victim)
			}
			if removed > n {
				t.Fatalf("seed %d trial %d: %d victims removed from %d txns and still a cycle", seed, trial, removed, n)
			}
			d, found = g.FindCycle()
		}
		if hasCycle(g) {
			t.Fatalf("seed %d trial %d: FindCycle found none, DFS finds one", seed, trial)
		}
	}
	t.Logf("seed %d: %d of 3000 graphs had a cycle", seed, withCycle)
	if withCycle < 500 {
		t.Fatalf("seed %d: only %d of 3000 graphs had a cycle: the generator tests too little", seed, withCycle)
	}
}

func cycleIntact(g *Graph, cycle []TxnID) bool {
	for i, id := range cycle {
		if !g.Waits(id, cycle[(i+1)%len(cycle)]) {
			return false
		}
	}
	return true
}

func checkDeadlock(t *testing.T, g *Graph, d Deadlock, where string) {
	t.Helper()
	if len(d.Cycle) < 2 || !cycleIntact(g, d.Cycle) {
		t.Fatalf("%s: %v is not a cycle of the graph", where, d.Cycle)
	}
	seen := map[TxnID]bool{}
	for _, id := range d.Cycle {
		if seen[id] {
			t.Fatalf("%s: cycle %v repeats %s", where, d.Cycle, id)
		}
		seen[id] = true
		if bytes.Compare(id[:], d.Cycle[0][:]) < 0 {
			t.Fatalf("%s: cycle %v does not start at its smallest ID", where, d.Cycle)
		}
		pv, pi := g.priority[d.Victim], g.priority[id]
		if pi < pv || (pi == pv && bytes.Compare(id[:], d.Victim[:]) < 0) {
			t.Fatalf("%s: victim %s (priority %d), but %s has priority %d", where, d.Victim, pv, id, pi)
		}
	}
	if !seen[d.Victim] {
		t.Fatalf("%s: victim %s not in cycle %v", where, d.Victim, d.Cycle)
	}
}

// TestGraphRemoveWait: ending waits and finalizing txns removes exactly
// their edges.
func TestGraphRemoveWait(t *testing.T) {
	a, b, c := TxnState{ID: TxnID{1}, Priority: 3}, TxnState{ID: TxnID{2}, Priority: 2}, TxnState{ID: TxnID{3}, Priority: 1}
	g := NewGraph()
	for _, w := range [][2]TxnState{{a, b}, {b, c}, {c, a}, {a, c}} {
		if err := g.AddWait(w[0], w[1]); err != nil {
			t.Fatal(err)
		}
	}
	d, ok := g.FindCycle()
	if !ok || d.Victim != c.ID || !reflect.DeepEqual(d.Cycle, []TxnID{a.ID, b.ID, c.ID}) {
		t.Fatalf("got %+v %t, want cycle a→b→c with victim c", d, ok)
	}
	g.RemoveWait(b.ID, c.ID)
	if d, ok := g.FindCycle(); !ok || !reflect.DeepEqual(d.Cycle, []TxnID{a.ID, c.ID}) {
		t.Fatalf("after b stops waiting for c: got %+v %t, want cycle a→c→a", d, ok)
	}
	g.RemoveTxn(c.ID)
	if d, ok := g.FindCycle(); ok || !g.Waits(a.ID, b.ID) || g.Waits(a.ID, c.ID) {
		t.Fatalf("after c finalized: got cycle %+v, a→b kept %t, a→c kept %t", d, g.Waits(a.ID, b.ID), g.Waits(a.ID, c.ID))
	}
}
