package gossip

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Defaults of Config.
const (
	DefaultInterval = 2 * time.Second
	DefaultTTL      = 10 * time.Second
	// DefaultReadReplicaTTL: a read replica's entry hidden after an
	// unclean exit is garbage-collected this long after it was last heard
	// (Neo4j's read replica TTL).
	DefaultReadReplicaTTL = 60 * time.Second
	// MaxDescriptorBytes is memberlist's bound on a member's metadata: a
	// descriptor (its locality tiers, mostly) must fit.
	MaxDescriptorBytes = memberlist.MetaMaxSize
)

// Config configures a node's gossip.
type Config struct {
	NodeID uint64
	// BindAddr is the host:port memberlist listens on (TCP and UDP; TCP
	// only with TLS); port 0 picks a free one (Addr says which).
	BindAddr string
	// TLS, if set, carries all gossip over mutual TLS (TLSTransport)
	// instead of memberlist's plaintext UDP and TCP. Unset: plaintext
	// (the insecure mode).
	TLS *TLSConfig
	// Describe returns this node's current descriptor; the publisher
	// calls it every Interval (it sets node ID, sequence and time).
	Describe func() *rspb.StoreDescriptor
	Interval time.Duration // 0 = DefaultInterval
	TTL      time.Duration // 0 = DefaultTTL; must exceed Interval
	// ReadReplicaTTL: how long after it was last heard a read replica's
	// hidden entry is kept (0 = DefaultReadReplicaTTL, or TTL if longer;
	// at least TTL).
	ReadReplicaTTL time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
}

// Entry is one node's descriptor as this node knows it.
type Entry struct {
	Desc  *rspb.StoreDescriptor
	Heard time.Time // when this node last heard it (its own clock)
	// Hidden: a read replica's entry after an unclean exit (memberlist
	// declared it dead, or it was not heard within the TTL): Stores
	// leaves it out; Whiteboard lists it until the read replica TTL.
	Hidden bool
}

// Gossip is one node's membership in the gossip network.
type Gossip struct {
	cfg  Config
	name string
	ml   *memberlist.Memberlist
	// addr is the gossip address, read once at start: memberlist's
	// LocalNode is its live state, which UpdateNode (every publication)
	// writes without a lock the reader could take (a race -race found).
	addr string

	mu      sync.Mutex
	local   []byte // the published descriptor (memberlist metadata)
	seq     uint64
	entries map[uint64]*entry // node ID -> newest descriptor heard
	// gone: members that announced a clean leave (their last publication
	// or a leave message), with when; their NotifyLeave removes, never
	// hides (entries older than the read replica TTL are dropped).
	gone map[string]time.Time
	// peers: each other member's name and address as memberlist last
	// announced them (copied in its callbacks, which run under its lock;
	// the *Node of Members is its live state, written without a lock we
	// could take), for the leave messages.
	peers map[string]memberlist.Node

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type entry struct {
	name  string // the member that published it
	desc  *rspb.StoreDescriptor
	heard time.Time
	dead  bool // memberlist declared its member dead (read replicas: kept, hidden)
}

// Start joins nothing yet: it starts memberlist on cfg.BindAddr and the
// publisher. Join connects it to the others.
func Start(cfg Config) (*Gossip, error) {
	if cfg.NodeID == 0 {
		return nil, errors.New("gossip: node ID is required")
	}
	if cfg.Describe == nil {
		return nil, errors.New("gossip: a Describe function is required")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL <= cfg.Interval {
		return nil, fmt.Errorf("gossip: TTL %v must exceed the publishing interval %v", cfg.TTL, cfg.Interval)
	}
	if cfg.ReadReplicaTTL == 0 {
		cfg.ReadReplicaTTL = max(DefaultReadReplicaTTL, cfg.TTL)
	}
	if cfg.ReadReplicaTTL < cfg.TTL {
		return nil, fmt.Errorf("gossip: read replica TTL %v must be at least the TTL %v", cfg.ReadReplicaTTL, cfg.TTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip: bind address %q: %w", cfg.BindAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("gossip: bind address %q: bad port", cfg.BindAddr)
	}
	if ip := net.ParseIP(host); ip == nil {
		ips, err := net.LookupIP(host)
		if err != nil {
			return nil, fmt.Errorf("gossip: bind address %q: %w", cfg.BindAddr, err)
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("gossip: bind address %q: the host has no address", cfg.BindAddr)
		}
		host = ips[0].String()
	}
	var inc [8]byte
	if _, err := rand.Read(inc[:]); err != nil {
		return nil, err
	}
	g := &Gossip{cfg: cfg, name: fmt.Sprintf("n%d-%x", cfg.NodeID, binary.BigEndian.Uint64(inc[:])),
		entries: map[uint64]*entry{}, gone: map[string]time.Time{}, peers: map[string]memberlist.Node{}, stop: make(chan struct{}), done: make(chan struct{})}
	if err := g.describe(); err != nil {
		return nil, err
	}
	mc := memberlist.DefaultLocalConfig()
	mc.Name = g.name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = "", 0
	mc.Delegate = (*delegate)(g)
	mc.Events = (*events)(g)
	mc.Logger = log.New(&logWriter{log: cfg.Logger}, "", 0)
	var tt *TLSTransport
	if cfg.TLS != nil {
		tt, err = NewTLSTransport(TLSTransportConfig{BindAddr: net.JoinHostPort(host, strconv.Itoa(port)), TLS: *cfg.TLS, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		mc.Transport, mc.BindPort = tt, tt.Port()
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		if tt != nil {
			_ = tt.Shutdown()
		}
		return nil, fmt.Errorf("gossip: start on %s: %w", cfg.BindAddr, err)
	}
	g.ml = ml
	n := ml.LocalNode()
	g.addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	go g.publish()
	return g, nil
}

// Addr is the host:port this node gossips on (give it to others' Join).
func (g *Gossip) Addr() string { return g.addr }

// Join contacts the members at addrs (host:port); it succeeds if one
// answered.
func (g *Gossip) Join(addrs []string) (int, error) {
	return g.ml.Join(addrs)
}

// Members is how many members memberlist sees alive, this node included.
func (g *Gossip) Members() int { return g.ml.NumMembers() }

// Stores returns the descriptors heard within the TTL, by node ID, this
// node's own included.
func (g *Gossip) Stores() map[uint64]Entry {
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[uint64]Entry{}
	for id, e := range g.entries {
		if !e.dead && now.Sub(e.heard) < g.cfg.TTL {
			out[id] = Entry{Desc: e.desc, Heard: e.heard}
		}
	}
	return out
}

// Whiteboard returns the read replicas' entries (the discovery
// whiteboard), by node ID: those Stores returns, and those hidden after
// an unclean exit (Hidden set) until they are garbage-collected, the read
// replica TTL after they were last heard. A clean exit removes an entry
// at once.
func (g *Gossip) Whiteboard() map[uint64]Entry {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gcLocked()
	now := g.cfg.Now()
	out := map[uint64]Entry{}
	for id, e := range g.entries {
		if e.desc.GetReadReplica() {
			out[id] = Entry{Desc: e.desc, Heard: e.heard, Hidden: e.dead || now.Sub(e.heard) >= g.cfg.TTL}
		}
	}
	return out
}

// gcLocked drops the read replicas' entries not heard within the read
// replica TTL (g.mu held).
func (g *Gossip) gcLocked() {
	now := g.cfg.Now()
	for name, at := range g.gone {
		if now.Sub(at) >= g.cfg.ReadReplicaTTL {
			delete(g.gone, name)
		}
	}
	for id, e := range g.entries {
		if e.name != g.name && e.desc.GetReadReplica() && now.Sub(e.heard) >= g.cfg.ReadReplicaTTL {
			delete(g.entries, id)
			g.cfg.Logger.Info("gossip: read replica dropped from the whiteboard after the read replica TTL", "node", id,
				"last_heard_ago", now.Sub(e.heard).Round(time.Millisecond), "ttl", g.cfg.ReadReplicaTTL)
		}
	}
}

// Close stops publishing, tells the others this node leaves (bounded), and
// shuts memberlist down.
func (g *Gossip) Close() {
	g.once.Do(func() {
		close(g.stop)
		<-g.done
		// memberlist tells its callbacks nothing of why a member went (a
		// leave or a death): the last publication says so.
		if err := g.publishLeaving(); err != nil {
			g.cfg.Logger.Debug("gossip: leaving publication", "err", err)
		} else if err := g.ml.UpdateNode(500 * time.Millisecond); err != nil {
			g.cfg.Logger.Debug("gossip: leaving update", "err", err)
		}
		g.announceLeave()
		if err := g.ml.Leave(time.Second); err != nil {
			g.cfg.Logger.Debug("gossip: leave", "err", err)
		}
		_ = g.ml.Shutdown()
	})
}

// publish republishes this node's descriptor every Interval.
func (g *Gossip) publish() {
	defer close(g.done)
	t := time.NewTicker(g.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		g.mu.Lock()
		g.gcLocked()
		g.mu.Unlock()
		if err := g.describe(); err != nil {
			g.cfg.Logger.Warn("gossip: store descriptor not published", "err", err)
			continue
		}
		if err := g.ml.UpdateNode(g.cfg.Interval); err != nil {
			g.cfg.Logger.Debug("gossip: update", "err", err)
		}
	}
}

// describe takes a new descriptor from cfg.Describe as the local one.
func (g *Gossip) describe() error {
	d := proto.Clone(g.cfg.Describe()).(*rspb.StoreDescriptor)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seq++
	d.NodeId, d.Seq, d.PublishedUnixNanos = g.cfg.NodeID, g.seq, g.cfg.Now().UnixNano()
	b, err := proto.Marshal(d)
	if err != nil {
		return err
	}
	if len(b) > MaxDescriptorBytes {
		return fmt.Errorf("store descriptor of %d bytes exceeds memberlist's %d (locality too long?)", len(b), MaxDescriptorBytes)
	}
	g.local = b
	g.entries[d.NodeId] = &entry{name: g.name, desc: d, heard: g.cfg.Now()}
	return nil
}

// leaveMsgPrefix starts the message a member sends every other member over
// TCP before a clean leave (the gossiped update may be overtaken by the
// leave itself, which then hides the entry instead of removing it).
const leaveMsgPrefix = "rangestore-gossip-leave:"

// announceLeave tells every member, over TCP, that this member leaves
// cleanly; each send is bounded by memberlist's TCP timeout, and it
// returns once all are done.
func (g *Gossip) announceLeave() {
	msg := []byte(leaveMsgPrefix + g.name)
	g.mu.Lock()
	peers := make([]memberlist.Node, 0, len(g.peers))
	for _, p := range g.peers {
		peers = append(peers, p)
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.ml.SendReliable(&m, msg); err != nil {
				g.cfg.Logger.Debug("gossip: leave announcement", "member", m.Name, "err", err)
			}
		}()
	}
	wg.Wait()
}

// leaving records that member name left cleanly and removes its entries.
func (g *Gossip) leaving(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gone[name] = g.cfg.Now()
	for id, e := range g.entries {
		if e.name == name && name != g.name {
			delete(g.entries, id)
		}
	}
}

// publishLeaving makes the local descriptor the last one, marked leaving.
func (g *Gossip) publishLeaving() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.entries[g.cfg.NodeID]
	if e == nil {
		return errors.New("no descriptor published")
	}
	d := proto.Clone(e.desc).(*rspb.StoreDescriptor)
	g.seq++
	d.Seq, d.Leaving = g.seq, true
	b, err := proto.Marshal(d)
	if err != nil {
		return err
	}
	g.local = b
	return nil
}

// heard records a member's metadata (a join or an update).
func (g *Gossip) heard(n *memberlist.Node) {
	if n.Name == g.name || len(n.Meta) == 0 {
		return
	}
	d := &rspb.StoreDescriptor{}
	if err := proto.Unmarshal(n.Meta, d); err != nil || d.NodeId == 0 {
		g.cfg.Logger.Warn("gossip: a member's descriptor does not parse", "member", n.Name, "err", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.entries[d.NodeId]
	if e != nil && e.name == n.Name && e.desc.Seq > d.Seq {
		return // an older publication of the same process
	}
	if d.Leaving {
		g.gone[n.Name] = g.cfg.Now()
		if e != nil && e.name == n.Name {
			delete(g.entries, d.NodeId) // a clean leave: gone at once
		}
		return
	}
	g.entries[d.NodeId] = &entry{name: n.Name, desc: d, heard: g.cfg.Now()}
}

// peer records (in) or forgets another member's address.
func (g *Gossip) peer(n *memberlist.Node, in bool) {
	if n.Name == g.name {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !in {
		delete(g.peers, n.Name)
		return
	}
	g.peers[n.Name] = memberlist.Node{Name: n.Name, Addr: slices.Clone(n.Addr), Port: n.Port}
}

// left forgets a member that left or died, unless a newer process of the
// same node published since. A read replica's entry is hidden instead,
// and garbage-collected after the read replica TTL: it died (a clean
// leave published its last descriptor marked leaving, which removed the
// entry already; memberlist does not say which it was).
func (g *Gossip) left(n *memberlist.Node) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, e := range g.entries {
		if e.name != n.Name || n.Name == g.name {
			continue
		}
		if _, clean := g.gone[n.Name]; e.desc.GetReadReplica() && !clean {
			e.dead = true
			continue
		}
		delete(g.entries, id)
	}
}

// delegate and events are Gossip's memberlist callbacks.
type (
	delegate Gossip
	events   Gossip
)

func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.local) > limit {
		return nil
	}
	return bytes.Clone(d.local)
}
func (d *delegate) NotifyMsg(b []byte) {
	if name, ok := strings.CutPrefix(string(b), leaveMsgPrefix); ok {
		(*Gossip)(d).leaving(name)
	}
}
func (d *delegate) GetBroadcasts(_, _ int) [][]byte   { return nil }
func (d *delegate) LocalState(bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(_ []byte, _ bool) {}
func (e *events) NotifyJoin(n *memberlist.Node)       { (*Gossip)(e).peer(n, true); (*Gossip)(e).heard(n) }
func (e *events) NotifyUpdate(n *memberlist.Node)     { (*Gossip)(e).peer(n, true); (*Gossip)(e).heard(n) }
func (e *events) NotifyLeave(n *memberlist.Node)      { (*Gossip)(e).peer(n, false); (*Gossip)(e).left(n) }

// logWriter sends memberlist's log lines ("[DEBUG] memberlist: ...") to
// slog at their level.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.HasPrefix(line, "[DEBUG]"):
		w.log.Debug(strings.TrimSpace(strings.TrimPrefix(line, "[DEBUG]")))
	case strings.HasPrefix(line, "[INFO]"):
		w.log.Debug(strings.TrimSpace(strings.TrimPrefix(line, "[INFO]")))
	case strings.Contains(line, errTransportShutdown.Error()):
		// A probe in flight while this node shuts down: expected.
		w.log.Debug(strings.TrimSpace(strings.TrimPrefix(line, "[ERR]")))
	case strings.HasPrefix(line, "[WARN]"):
		w.log.Warn(strings.TrimSpace(strings.TrimPrefix(line, "[WARN]")))
	default:
		w.log.Error(strings.TrimSpace(strings.TrimPrefix(line, "[ERR]")))
	}
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)

// SortedIDs lists the node IDs of stores, ascending.
func SortedIDs(stores map[uint64]Entry) []uint64 {
	ids := make([]uint64, 0, len(stores))
	for id := range stores {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
