package txnwait

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Graph is a waits-for graph: an edge pusher → pushee while the pusher
// waits for the pushee. It is plain data (not safe for concurrent use):
// the wait queue owns one and adds an edge when a push starts waiting,
// removes it when the wait ends, and removes a txn when it finalizes.
type Graph struct {
	priority map[TxnID]int32
	waitsFor map[TxnID]map[TxnID]struct{}
}

// NewGraph returns an empty waits-for graph.
func NewGraph() *Graph {
	return &Graph{priority: map[TxnID]int32{}, waitsFor: map[TxnID]map[TxnID]struct{}{}}
}

// AddWait records that pusher waits for pushee, and both priorities (a
// txn's priority only rises, so the higher value known is kept).
func (g *Graph) AddWait(pusher, pushee TxnState) error {
	if pusher.ID == pushee.ID {
		return fmt.Errorf("txnwait: txn %s cannot wait for itself", pusher.ID)
	}
	for _, t := range []TxnState{pusher, pushee} {
		if p, ok := g.priority[t.ID]; !ok || p < t.Priority {
			g.priority[t.ID] = t.Priority
		}
	}
	if g.waitsFor[pusher.ID] == nil {
		g.waitsFor[pusher.ID] = map[TxnID]struct{}{}
	}
	g.waitsFor[pusher.ID][pushee.ID] = struct{}{}
	return nil
}

// RemoveWait ends pusher's wait for pushee.
func (g *Graph) RemoveWait(pusher, pushee TxnID) {
	delete(g.waitsFor[pusher], pushee)
	if len(g.waitsFor[pusher]) == 0 {
		delete(g.waitsFor, pusher)
	}
}

// RemoveTxn drops a finalized txn and every wait to or from it.
func (g *Graph) RemoveTxn(id TxnID) {
	delete(g.waitsFor, id)
	delete(g.priority, id)
	for p, out := range g.waitsFor {
		delete(out, id)
		if len(out) == 0 {
			delete(g.waitsFor, p)
		}
	}
}

// Waits reports whether pusher waits for pushee.
func (g *Graph) Waits(pusher, pushee TxnID) bool {
	_, ok := g.waitsFor[pusher][pushee]
	return ok
}

// Deadlock is a cycle of the graph and the txn to abort to break it.
type Deadlock struct {
	// Cycle lists the txns in waiting order (each waits for the next, the
	// last for the first), starting at the smallest ID.
	Cycle  []TxnID
	Victim TxnID
	Reason string
}

func compareID(a, b TxnID) int { return bytes.Compare(a[:], b[:]) }

func (g *Graph) sortedIDs(set map[TxnID]struct{}) []TxnID {
	ids := make([]TxnID, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, compareID)
	return ids
}

// FindCycle returns one cycle, or false if the graph has none. The result
// depends only on the graph, not on the order edges were added: a depth-
// first search starts from each txn in ID order and follows waits in ID
// order, and the first cycle it closes is returned. The victim is the
// txn of the cycle with the lowest priority, the lower ID on a tie (as
// CockroachDB's wait queue, which force-aborts a pushee of lower priority,
// or of equal priority and lower ID, found among its pusher's dependents).
func (g *Graph) FindCycle() (Deadlock, bool) {
	const (
		unseen = iota
		onPath
		done
	)
	state := map[TxnID]int{}
	var path []TxnID
	var cycle []TxnID
	var visit func(TxnID) bool
	visit = func(id TxnID) bool {
		state[id] = onPath
		path = append(path, id)
		for _, next := range g.sortedIDs(g.waitsFor[id]) {
			switch state[next] {
			case onPath:
				cycle = slices.Clone(path[slices.Index(path, next):])
				return true
			case unseen:
				if visit(next) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		state[id] = done
		return false
	}
	starts := map[TxnID]struct{}{}
	for id := range g.waitsFor {
		starts[id] = struct{}{}
	}
	for _, id := range g.sortedIDs(starts) {
		if state[id] == unseen && visit(id) {
			break
		}
	}
	if cycle == nil {
		return Deadlock{}, false
	}
	first := 0
	for i, id := range cycle {
		if compareID(id, cycle[first]) < 0 {
			first = i
		}
	}
	cycle = slices.Concat(cycle[first:], cycle[:first])
	victim := cycle[0]
	for _, id := range cycle[1:] {
		if p, v := g.priority[id], g.priority[victim]; p < v || (p == v && compareID(id, victim) < 0) {
			victim = id
		}
	}
	names := make([]string, len(cycle)+1)
	for i, id := range cycle {
		names[i] = fmt.Sprintf("%s(pri=%s)", id, priorityLabel(g.priority[id]))
	}
	names[len(cycle)] = cycle[0].String()
	return Deadlock{Cycle: cycle, Victim: victim, Reason: fmt.Sprintf("cycle %s: %s has the lowest priority (ties go to the lower ID)",
		strings.Join(names, " → "), victim)}, true
}
