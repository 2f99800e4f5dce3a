package gossip

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// node is one gossiping test node whose replica count the test sets.
type node struct {
	g        *Gossip
	replicas atomic.Int64
}

func startNode(t *testing.T, id uint64, ttl time.Duration) *node {
	t.Helper()
	n := &node{}
	g, err := Start(Config{NodeID: id, BindAddr: "127.0.0.1:0", Interval: 100 * time.Millisecond, TTL: ttl,
		Logger: slog.New(slog.DiscardHandler),
		Describe: func() *rspb.StoreDescriptor {
			return &rspb.StoreDescriptor{ReplicaCount: n.replicas.Load(), Locality: []*rspb.LocalityTier{{Key: "region", Value: fmt.Sprintf("r%d", id)}}}
		}})
	if err != nil {
		t.Fatal(err)
	}
	n.g = g
	t.Cleanup(g.Close)
	return n
}

// seen says what n knows of node id's replica count ("" if nothing).
func seen(n *node, id uint64) string {
	e, ok := n.g.Stores()[id]
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d", e.Desc.ReplicaCount)
}

func waitSeen(t *testing.T, nodes map[uint64]*node, id uint64, want string) {
	t.Helper()
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("every node sees n%d as %q", id, want), func() error {
		var wrong []string
		for nid, n := range nodes {
			if got := seen(n, id); got != want {
				wrong = append(wrong, fmt.Sprintf("n%d sees %q", nid, got))
			}
		}
		if len(wrong) > 0 {
			return fmt.Errorf("%s", strings.Join(wrong, ", "))
		}
		return nil
	})
}

// TestGossipSpreadsUpdatesAndForgets: three nodes joined through one
// see each other's descriptors, then a change of one; a node that leaves
// cleanly is forgotten at once (well within the TTL), and one that stops
// without leaving is forgotten too (SWIM, or the TTL at the latest). A
// restarted node (new process, new port) is heard again.
func TestGossipSpreadsUpdatesAndForgets(t *testing.T) {
	const ttl = 3 * time.Second
	nodes := map[uint64]*node{}
	for id := uint64(1); id <= 3; id++ {
		nodes[id] = startNode(t, id, ttl)
		nodes[id].replicas.Store(int64(10 * id))
	}
	for id := uint64(2); id <= 3; id++ {
		if _, err := nodes[id].g.Join([]string{nodes[1].g.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	for id := uint64(1); id <= 3; id++ {
		waitSeen(t, nodes, id, fmt.Sprintf("%d", 10*id))
	}
	if e := nodes[2].g.Stores()[3]; e.Desc.GetLocality()[0].GetValue() != "r3" {
		t.Fatalf("n2 sees n3's locality as %v", e.Desc.GetLocality())
	}
	// An update spreads.
	nodes[3].replicas.Store(77)
	waitSeen(t, nodes, 3, "77")

	// A clean leave: gone everywhere before the TTL could have expired it.
	start := time.Now()
	nodes[3].g.Close()
	delete(nodes, 3)
	waitSeen(t, nodes, 3, "")
	if d := time.Since(start); d >= ttl {
		t.Fatalf("a node that left was forgotten only after %v (the TTL is %v)", d, ttl)
	}
	t.Logf("a clean leave was forgotten in %v", time.Since(start).Round(time.Millisecond))

	// A restart of n3: a new process on a new port, heard again.
	n3 := startNode(t, 3, ttl)
	n3.replicas.Store(5)
	if _, err := n3.g.Join([]string{nodes[1].g.Addr()}); err != nil {
		t.Fatal(err)
	}
	nodes[3] = n3
	waitSeen(t, nodes, 3, "5")

	// n2 dies without leaving (no Leave message): forgotten by SWIM's
	// failure detection or, at the latest, the TTL.
	start = time.Now()
	crash(nodes[2].g)
	delete(nodes, 2)
	waitSeen(t, nodes, 2, "")
	t.Logf("a node that died without leaving was forgotten in %v", time.Since(start).Round(time.Millisecond))
}

// crash stops g as a killed process would: no Leave message.
func crash(g *Gossip) {
	g.once.Do(func() {
		close(g.stop)
		<-g.done
		_ = g.ml.Shutdown()
	})
}

// TestGossipStopsPublishingForgotten: a member that stays in memberlist
// but whose entries are not refreshed is forgotten after the TTL (Stores
// filters on the time it was last heard, on the reader's clock).
func TestGossipStopsPublishingForgotten(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	g, err := Start(Config{NodeID: 1, BindAddr: "127.0.0.1:0", Interval: time.Hour, TTL: 2 * time.Hour, Now: clock,
		Logger: slog.New(slog.DiscardHandler), Describe: func() *rspb.StoreDescriptor { return &rspb.StoreDescriptor{ReplicaCount: 1} }})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, ok := g.Stores()[1]; !ok {
		t.Fatal("a node does not see its own descriptor")
	}
	now.Add(int64(2*time.Hour + time.Second))
	if e, ok := g.Stores()[1]; ok {
		t.Fatalf("a descriptor heard 2h1s ago (TTL 2h) is still there: %v", e.Desc)
	}
}

// TestGossipBadConfig: bad settings are refused, naming them.
func TestGossipBadConfig(t *testing.T) {
	desc := func() *rspb.StoreDescriptor { return &rspb.StoreDescriptor{} }
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{BindAddr: "127.0.0.1:0", Describe: desc}, "node ID"},
		{Config{NodeID: 1, BindAddr: "127.0.0.1:0"}, "Describe"},
		{Config{NodeID: 1, BindAddr: "127.0.0.1", Describe: desc}, "bind address"},
		{Config{NodeID: 1, BindAddr: "127.0.0.1:99999", Describe: desc}, "bad port"},
		{Config{NodeID: 1, BindAddr: "127.0.0.1:0", Describe: desc, Interval: time.Second, TTL: time.Second}, "TTL"},
		{Config{NodeID: 1, BindAddr: "127.0.0.1:0", Describe: desc, TTL: time.Minute, ReadReplicaTTL: time.Second}, "read replica TTL"},
		{Config{NodeID: 1, BindAddr: "127.0.0.1:0", Describe: func() *rspb.StoreDescriptor {
			return &rspb.StoreDescriptor{Locality: []*rspb.LocalityTier{{Key: "region", Value: strings.Repeat("x", 600)}}}
		}}, "exceeds memberlist"},
	} {
		g, err := Start(tc.cfg)
		if err == nil {
			g.Close()
			t.Errorf("%+v: accepted", tc.cfg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want it to name %q", tc.cfg, err, tc.want)
		}
	}
}

// TestWhiteboardReadReplicaLifecycle: the read replicas' entries (the
// discovery whiteboard) of a clean and an unclean exit. n1 is a voter
// node, n2 and n3 read replicas; the readers' clock is a manual one, so
// that the read replica TTL (60 s) passes at once. A clean leave (n2)
// removes the entry at once; a crash (n3) hides it once memberlist
// declares n3 dead (Stores leaves it out, Whiteboard marks it hidden) and
// it is garbage-collected after the read replica TTL.
func TestWhiteboardReadReplicaLifecycle(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	start := func(id uint64, readReplica bool) *Gossip {
		g, err := Start(Config{NodeID: id, BindAddr: "127.0.0.1:0", Interval: 100 * time.Millisecond, TTL: 30 * time.Second,
			ReadReplicaTTL: time.Minute, Now: clock, Logger: slog.New(slog.DiscardHandler),
			Describe: func() *rspb.StoreDescriptor {
				return &rspb.StoreDescriptor{ReadReplica: readReplica, Address: fmt.Sprintf("127.0.0.1:%d", 1000+id), MaxAppliedIndexLag: 3 * id}
			}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		return g
	}
	n1, n2, n3 := start(1, false), start(2, true), start(3, true)
	for _, g := range []*Gossip{n2, n3} {
		if _, err := g.Join([]string{n1.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	timeutil.WaitFor(t, 20*time.Second, "n1's whiteboard lists n2 and n3", func() error {
		wb := n1.Whiteboard()
		if len(wb) != 2 || wb[2].Desc.GetAddress() != "127.0.0.1:1002" || wb[3].Desc.GetMaxAppliedIndexLag() != 9 || wb[2].Hidden || wb[3].Hidden {
			return fmt.Errorf("whiteboard %v", wb)
		}
		return nil
	})
	if _, ok := n1.Whiteboard()[1]; ok {
		t.Fatal("a voter node is on the read replicas' whiteboard")
	}
	begin := time.Now()
	n2.Close()
	timeutil.WaitFor(t, 10*time.Second, "n2's entry gone after its clean leave", func() error {
		if e, ok := n1.Whiteboard()[2]; ok {
			return fmt.Errorf("still there: %v", e)
		}
		return nil
	})
	t.Logf("a read replica's clean leave removed its whiteboard entry in %v", time.Since(begin).Round(time.Millisecond))
	begin = time.Now()
	crash(n3)
	timeutil.WaitFor(t, 30*time.Second, "n3's entry hidden once memberlist declares it dead", func() error {
		e, ok := n1.Whiteboard()[3]
		if !ok || !e.Hidden {
			return fmt.Errorf("entry %v (present %t)", e, ok)
		}
		return nil
	})
	t.Logf("a crashed read replica's entry was hidden after %v", time.Since(begin).Round(time.Millisecond))
	if _, ok := n1.Stores()[3]; ok {
		t.Fatal("Stores lists a read replica that memberlist declared dead")
	}
	now.Add(int64(59 * time.Second))
	if _, ok := n1.Whiteboard()[3]; !ok {
		t.Fatal("the hidden entry was collected before the read replica TTL")
	}
	now.Add(int64(2 * time.Second))
	if e, ok := n1.Whiteboard()[3]; ok {
		t.Fatalf("the hidden entry outlived the read replica TTL: %v", e)
	}
}
