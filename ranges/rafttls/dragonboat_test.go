package rafttls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	dblogger "github.com/lni/dragonboat/v4/logger"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/rangestore/rangestore/security"
)

// TestDragonboat runs a real shard over rafttls: three NodeHosts on
// loopback elect a leader and replicate proposals; then a fourth replica
// joins after the log was compacted, so it catches up by a snapshot
// streamed over a rafttls snapshot connection, and ends with the same
// state.
func TestDragonboat(t *testing.T) {
	for _, name := range []string{"dragonboat", "raft", "rsm", "logdb", "raftpb", "config", "settings", "transport", "registry", "tan"} {
		dblogger.GetLogger(name).SetLevel(dblogger.ERROR)
	}
	p := newPKI(t)
	const shard = 1
	hosts := make([]*dbHost, 4)
	for i := range hosts {
		hosts[i] = startDBHost(t, p, i+1)
	}
	members := map[uint64]string{}
	for i := range 3 {
		members[uint64(i+1)] = hosts[i].addr
	}
	for i := range 3 {
		if err := hosts[i].nh.StartReplica(members, false, hosts[i].newSM, shardConfig(shard, uint64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	const n = 30
	for i := range n {
		propose(t, hosts[i%3].nh, shard, fmt.Appendf(nil, "entry-%02d", i))
	}
	for i := range 3 {
		waitApplied(t, hosts[i], shard, n)
	}

	// Replica 4 joins: the log was compacted (SnapshotEntries), so it
	// gets a snapshot.
	retry(t, 30*time.Second, "add replica 4", func(ctx context.Context) error {
		return hosts[0].nh.SyncRequestAddReplica(ctx, shard, 4, hosts[3].addr, 0)
	})
	if err := hosts[3].nh.StartReplica(nil, true, hosts[3].newSM, shardConfig(shard, 4)); err != nil {
		t.Fatal(err)
	}
	propose(t, hosts[0].nh, shard, []byte("after-join"))
	for i := range 4 {
		waitApplied(t, hosts[i], shard, n+1)
	}
	want := lookup(t, hosts[0].nh, shard)
	for i := 1; i < 4; i++ {
		if got := lookup(t, hosts[i].nh, shard); got != want {
			t.Errorf("replica %d has state %+v, replica 1 %+v", i+1, got, want)
		}
	}
	if c := hosts[3].chunks.Load(); c == 0 {
		t.Error("replica 4 caught up without a snapshot chunk over rafttls")
	}
	for i, h := range hosts {
		if b := h.batches.Load(); b == 0 {
			t.Errorf("host %d received no message batch", i+1)
		}
	}
	t.Logf("message batches received per host: %d %d %d %d; snapshot chunks at host 4: %d",
		hosts[0].batches.Load(), hosts[1].batches.Load(), hosts[2].batches.Load(), hosts[3].batches.Load(), hosts[3].chunks.Load())
}

func shardConfig(shard, replica uint64) config.Config {
	return config.Config{ShardID: shard, ReplicaID: replica, ElectionRTT: 20, HeartbeatRTT: 2, CheckQuorum: true,
		SnapshotEntries: 10, CompactionOverhead: 2}
}

// dbHost is a NodeHost over rafttls, counting what its transport
// received.
type dbHost struct {
	nh      *dragonboat.NodeHost
	addr    string
	batches atomic.Int64
	chunks  atomic.Int64
}

func (h *dbHost) newSM(_, _ uint64) sm.IStateMachine { return &logSM{} }

// countingFactory wraps the handlers Dragonboat gives the transport.
type countingFactory struct {
	*Factory
	h *dbHost
}

func (f countingFactory) Create(nhc config.NodeHostConfig, mh raftio.MessageHandler, ch raftio.ChunkHandler) raftio.ITransport {
	return f.Factory.Create(nhc,
		func(b pb.MessageBatch) { f.h.batches.Add(1); mh(b) },
		func(c pb.Chunk) bool { f.h.chunks.Add(1); return ch(c) })
}

func startDBHost(t *testing.T, p *pki, i int) *dbHost {
	t.Helper()
	h := &dbHost{addr: freeAddr(t)}
	logs := &logBuffer{}
	f := New(nodeConfig(t, p.manager(t, security.NodeUser), logs))
	nh, err := dragonboat.NewNodeHost(config.NodeHostConfig{
		NodeHostDir:    filepath.Join(t.TempDir(), fmt.Sprintf("nh%d", i)),
		RTTMillisecond: 20,
		RaftAddress:    h.addr,
		Expert:         config.ExpertConfig{LogDB: config.GetTinyMemLogDBConfig(), TransportFactory: countingFactory{Factory: f, h: h}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nh.Close()
		if t.Failed() {
			t.Logf("host %d rafttls log:\n%s", i, logs.String())
		}
	})
	h.nh = nh
	return h
}

// retry runs f with a 5 s context until it succeeds, for at most d.
func retry(t *testing.T, d time.Duration, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := f(ctx)
		if err == nil {
			cancel()
			return
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("%s: still failing after %v: %v", what, d, err)
		}
		<-ctx.Done() // a failed attempt waits out its context: no busy loop
		cancel()
	}
}

func propose(t *testing.T, nh *dragonboat.NodeHost, shard uint64, cmd []byte) {
	t.Helper()
	retry(t, 30*time.Second, fmt.Sprintf("propose %q", cmd), func(ctx context.Context) error {
		_, err := nh.SyncPropose(ctx, nh.GetNoOPSession(shard), cmd)
		return err
	})
}

// smState is what a replica applied: how many entries, and a digest of
// them in order.
type smState struct {
	N      int
	Digest [32]byte
}

func lookup(t *testing.T, nh *dragonboat.NodeHost, shard uint64) smState {
	t.Helper()
	v, err := nh.StaleRead(shard, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v.(smState)
}

// waitApplied waits until the host's replica applied n entries.
func waitApplied(t *testing.T, h *dbHost, shard uint64, n int) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if v, err := h.nh.StaleRead(shard, nil); err == nil && v.(smState).N >= n {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			v, err := h.nh.StaleRead(shard, nil)
			t.Fatalf("host %s: after 30s, applied %v (%v), want %d entries", h.addr, v, err, n)
		}
	}
}

// logSM keeps every entry it applied; snapshots carry them all.
type logSM struct {
	mu   sync.Mutex
	cmds [][]byte
}

func (s *logSM) Update(e sm.Entry) (sm.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cmds = append(s.cmds, bytes.Clone(e.Cmd))
	return sm.Result{Value: uint64(len(s.cmds))}, nil
}

func (s *logSM) Lookup(any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.New()
	for _, c := range s.cmds {
		h.Write(binary.AppendUvarint(nil, uint64(len(c))))
		h.Write(c)
	}
	st := smState{N: len(s.cmds)}
	copy(st.Digest[:], h.Sum(nil))
	return st, nil
}

func (s *logSM) SaveSnapshot(w io.Writer, _ sm.ISnapshotFileCollection, _ <-chan struct{}) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var buf []byte
	buf = binary.AppendUvarint(buf, uint64(len(s.cmds)))
	for _, c := range s.cmds {
		buf = binary.AppendUvarint(buf, uint64(len(c)))
		buf = append(buf, c...)
	}
	_, err := w.Write(buf)
	return err
}

func (s *logSM) RecoverFromSnapshot(r io.Reader, _ []sm.SnapshotFile, _ <-chan struct{}) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	n, k := binary.Uvarint(data)
	if k <= 0 {
		return fmt.Errorf("snapshot: bad entry count")
	}
	data = data[k:]
	cmds := make([][]byte, 0, n)
	for range n {
		l, k := binary.Uvarint(data)
		if k <= 0 || uint64(len(data)-k) < l {
			return fmt.Errorf("snapshot: truncated entry %d", len(cmds))
		}
		cmds = append(cmds, bytes.Clone(data[k:k+int(l)]))
		data = data[k+int(l):]
	}
	s.mu.Lock()
	s.cmds = cmds
	s.mu.Unlock()
	return nil
}

func (s *logSM) Close() error { return nil }
