package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

// replicaChangeCrashPoints are the steps of a replica move where a process
// dies (RANGESTORE_CRASH_AT; the first process to reach the point, once):
// the new replica is in the descriptor as a non-voter but not yet in Raft;
// it is a Raft non-voter, caught up, not yet promoted; it is receiving its
// snapshot (the target dies before applying it); it is a Raft voter but
// the descriptor still says non-voter; the outgoing replica left the
// descriptor but meta still lists it; it left descriptor and meta but is
// still in the Raft group.
var replicaChangeCrashPoints = []string{
	"replica-change-raft-add-non-voter",
	"snapshot-recover",
	"replica-change-raft-promote",
	"replica-change-descriptor-promote",
	"replica-change-descriptor-remove-before-meta",
	"replica-change-raft-remove",
}

// TestReplicaChangeCrashPoints (issue 11, acceptance 4): four processes,
// each range on three; a RelocateRange (sent to the range's leaseholder,
// which drives it) moving a range off one node onto the fourth kills the
// process that reaches the crash point (SIGKILL from inside) while writers
// run. After the restart: re-running the same
// relocation converges to the requested voters; meta agrees with the
// descriptor of every replica on every node (and nodes hold exactly the
// replicas meta names: the removed one is collected); every range takes a
// write and a read through every node; no acknowledged write is missing.
func TestReplicaChangeCrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, point := range replicaChangeCrashPoints {
		t.Run(point, func(t *testing.T) { testReplicaChangeCrash(t, point, crashOpts{}) })
	}
}

func testReplicaChangeCrash(t *testing.T, point string, opts crashOpts) {
	const procs = 4
	onceFile := filepath.Join(t.TempDir(), "crash-once")
	pc := newProcClusterB(t, procs, "RANGESTORE_CRASH_AT="+point, "RANGESTORE_CRASH_ONCE_FILE="+onceFile)
	opts.setUp(t, pc)
	pc.cliRetry(60*time.Second, "init", "--host", pc.addrs[0], "--initial-splits", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	began := time.Now()
	since := func() float64 { return time.Since(began).Seconds() }
	w := newAckedWriter(pc, 200)
	if err := w.fill(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%.1fs: %d keys written", since(), w.nkeys)
	opts.fill(ctx, t, pc, "k100")
	stopWriters := w.run(ctx, 4)
	defer stopWriters()

	// The range holding k100 moves off its first voter onto the node that
	// has no replica of it; the lease goes to its second voter.
	descs, err := readMetaAll(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	d := rangeOf(descs, "k100")
	if d == nil || len(d.Replicas) != 3 {
		t.Fatalf("range of k100: %v", d)
	}
	has := map[uint64]bool{}
	for _, r := range d.Replicas {
		has[r.NodeId] = true
	}
	var target uint64
	for id := uint64(1); id <= procs; id++ {
		if !has[id] {
			target = id
		}
	}
	want := []uint64{d.Replicas[1].NodeId, d.Replicas[2].NodeId, target}
	t.Logf("%.1fs: r%d on %v: relocating to %v (n%d leaves)", since(), d.RangeId, d.Replicas, want, d.Replicas[0].NodeId)

	if err := os.WriteFile(onceFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The call goes to the leaseholder, which drives the change (it runs
	// every step but the snapshot): when it dies, nothing is left to finish
	// the change but the re-run below (or the replicate queue).
	lh := leaseholderOf(ctx, pc, d)
	via := pc.indexOfNodeID(lh)
	t.Logf("the relocation is sent to n%d (the leaseholder)", lh)
	// The call may hang on the dead process until its deadline: the test
	// goes on as soon as a process died.
	opDone := make(chan error, 1)
	go func() {
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		defer rcancel()
		_, err := rspb.NewAdminClient(pc.Conn(via)).RelocateRange(rctx, &rspb.RelocateRangeRequest{RangeId: d.RangeId, VoterNodeIds: want})
		opDone <- err
	}()
	defer func() {
		cancel()
		t.Logf("the relocate call cut off by the crash returned: %v", <-opDone)
	}()
	died := -1
	if !waitUntil(25*time.Second, func() bool {
		for i := 0; i < procs; i++ {
			if !pc.Running(i) {
				died = i
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no process reached crash point %s", point)
	}
	diedNode := uint64(0)
	for id := uint64(1); id <= procs; id++ {
		if pc.indexOfNodeID(id) == died {
			diedNode = id
		}
	}
	t.Logf("%.1fs: n%d died at %s (target n%d); restarting it unarmed", since(), diedNode, point, target)
	opts.checkCrash(t, pc, point, died, target)
	pc.SetEnv(died)
	pc.start(died)

	// What the crash left (before anything finishes the change).
	if waitUntil(30*time.Second, func() bool {
		descs, err = readMetaAll(ctx, pc)
		return err == nil
	}) {
		t.Logf("%.1fs: after the restart meta has r%d on %v", since(), d.RangeId, rangeOf(descs, "k100").GetReplicas())
	}
	// Re-running the same relocation finishes (or redoes) the change.
	var final *rspb.RangeDescriptor
	var lastErr error
	if !waitUntil(90*time.Second, func() bool {
		actx, c := context.WithTimeout(ctx, 20*time.Second)
		defer c()
		resp, err := rspb.NewAdminClient(pc.Conn((via+1)%procs)).RelocateRange(actx, &rspb.RelocateRangeRequest{RangeId: d.RangeId, VoterNodeIds: want})
		if err != nil {
			lastErr = err
			return false
		}
		final = resp.RangeDescriptor
		return true
	}) {
		t.Fatalf("relocation after the restart: %v", lastErr)
	}
	if got := replicaNodes(final); fmt.Sprint(got) != fmt.Sprint(sortedIDs(want)) {
		t.Fatalf("after the relocation r%d has %v, want voters %v", d.RangeId, final.Replicas, want)
	}
	for _, r := range final.Replicas {
		if r.Type != rspb.ReplicaType_VOTER {
			t.Fatalf("after the relocation r%d still has a non-voter: %v", d.RangeId, final.Replicas)
		}
	}
	t.Logf("%.1fs: relocation re-run converged: %v", since(), final.Replicas)
	time.Sleep(500 * time.Millisecond) // some writes after the restart too
	stopWriters()

	// Meta agrees with every replica's descriptor, and every node holds
	// exactly the replicas meta names (removed ones are collected).
	if !waitUntil(60*time.Second, func() bool {
		descs, lastErr = checkMetaMatchesReplicas(ctx, pc)
		return lastErr == nil
	}) {
		t.Fatalf("meta vs replicas after the restart: %v", lastErr)
	}
	t.Logf("%.1fs: meta agrees with every replica: %d ranges", since(), len(descs))
	for _, m := range descs {
		if m.RangeId == d.RangeId && !proto.Equal(m, final) && m.Generation < final.Generation {
			t.Fatalf("meta holds r%d generation %d, older than the relocation's %d", m.RangeId, m.Generation, final.Generation)
		}
	}
	if err := probeEveryRange(ctx, pc, descs); err != nil {
		t.Fatal(err)
	}
	t.Logf("%.1fs: every range takes a write and a read through every node", since())
	if _, err := w.check(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%.1fs: every acknowledged write is present (%d keys)", since(), w.nkeys)
	opts.checkAfter(ctx, t, pc, final)
}

// ackedWriter writes keys k000.. with values "v<w>-<n>" (one writer per
// key, n increasing) and remembers the acknowledged ones.
type ackedWriter struct {
	pc    *procCluster
	nkeys int
	mu    sync.Mutex
	acked map[string]string
}

func newAckedWriter(pc *procCluster, nkeys int) *ackedWriter {
	return &ackedWriter{pc: pc, nkeys: nkeys, acked: map[string]string{}}
}

func (w *ackedWriter) key(i int) string { return fmt.Sprintf("k%03d", i%w.nkeys) }

// put writes through a running node (picked from i).
func (w *ackedWriter) put(ctx context.Context, i int, k, v string) error {
	n := w.pc.NumNodes()
	for j := 0; j < n; j++ {
		p := (i + j) % n
		if !w.pc.Running(p) {
			continue
		}
		actx, c := context.WithTimeout(ctx, 3*time.Second)
		_, err := w.pc.KV(p).Put(actx, &rspb.PutRequest{Key: []byte(k), Value: []byte(v)})
		c()
		if err == nil {
			w.mu.Lock()
			w.acked[k] = v
			w.mu.Unlock()
		}
		return err
	}
	return errors.New("no running node")
}

// fill writes every key once ("v0-<key>", sequence -1).
func (w *ackedWriter) fill(ctx context.Context) error {
	for i := 0; i < w.nkeys; i++ {
		k := w.key(i)
		for w.put(ctx, i, k, "v0-"+k) != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("initial writes did not complete: %w", ctx.Err())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// run starts writers; the returned func stops them and waits (idempotent).
func (w *ackedWriter) run(ctx context.Context, writers int) func() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if ctx.Err() != nil {
					return
				}
				// Writer g owns the keys ≡ g (mod writers).
				if err := w.put(ctx, n+g, w.key(n*writers+g), fmt.Sprintf("v%d-%d", g, n)); err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	var once sync.Once
	return func() { once.Do(func() { close(stop); wg.Wait() }) }
}

// check: a scan returns every acknowledged key with its value or a later
// attempt's, nothing but k000..; point reads through every node agree. It
// returns what the scan read.
func (w *ackedWriter) check(ctx context.Context) (map[string]string, error) {
	w.mu.Lock()
	want := map[string]string{}
	for k, v := range w.acked {
		want[k] = v
	}
	w.mu.Unlock()
	var got map[string]string
	var lastErr error
	if !waitUntil(60*time.Second, func() bool {
		got, lastErr = scanAll(ctx, w.pc, 0)
		return lastErr == nil
	}) {
		return nil, fmt.Errorf("scan: %w", lastErr)
	}
	users := 0
	for k := range got {
		if len(k) == 4 && k[0] == 'k' {
			users++
		}
	}
	if users < len(want) || users > w.nkeys {
		return nil, fmt.Errorf("scan returned %d data keys, want between %d (acknowledged) and %d", users, len(want), w.nkeys)
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			return nil, fmt.Errorf("acknowledged key %s is missing", k)
		}
		if seqOf(g) < seqOf(v) {
			return nil, fmt.Errorf("key %s: read %q, older than the acknowledged %q", k, g, v)
		}
	}
	for i := 0; i < w.pc.NumNodes(); i++ {
		if !w.pc.Running(i) {
			continue
		}
		for k, v := range got {
			actx, c := context.WithTimeout(ctx, 5*time.Second)
			g, err := w.pc.KV(i).Get(actx, &rspb.GetRequest{Key: []byte(k)})
			c()
			if err != nil || !g.Found || string(g.Kv.Value) != v {
				return nil, fmt.Errorf("get %q via process %d = %v, scan saw %q: %w", k, i, g, v, err)
			}
		}
	}
	return got, nil
}

// readMetaAll reads every meta record from the meta range's leaseholder,
// asking each running process's replica of r1 in turn; a record not keyed
// by its range's end key is an error.
func readMetaAll(ctx context.Context, pc *procCluster) ([]*rspb.RangeDescriptor, error) {
	last := errors.New("no running process")
	for i := 0; i < pc.NumNodes(); i++ {
		if !pc.Running(i) {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := rspb.NewInternalClient(pc.NodeConn(i)).RangeBatch(actx, &rspb.RangeRequest{RangeId: 1, Requests: []*rspb.RequestUnion{{
			Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: keys.MetaPrefix, EndKey: keys.MetaSpanEnd}}}}})
		cancel()
		if err != nil {
			last = err
			continue
		}
		if resp.Error != nil {
			last = errors.New(resp.Error.Message)
			continue
		}
		var out []*rspb.RangeDescriptor
		for _, kv := range resp.Responses[0].GetScan().GetKvs() {
			d := &rspb.RangeDescriptor{}
			if err := proto.Unmarshal(kv.Value, d); err != nil {
				return nil, err
			}
			if !bytes.Equal(kv.Key, keys.MetaKey(d.EndKey)) {
				return nil, fmt.Errorf("meta record %q holds r%d ending at %q", kv.Key, d.RangeId, d.EndKey)
			}
			out = append(out, d)
		}
		return out, nil
	}
	return nil, last
}

// readMetaHeld is readMetaAll (failing the test if meta cannot be read)
// and the number of replicas meta places on node id.
func readMetaHeld(t *testing.T, ctx context.Context, pc *procCluster, id uint64) ([]*rspb.RangeDescriptor, int) {
	t.Helper()
	descs, err := readMetaAll(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	return descs, replicasOn(descs, id)
}

// replicasOn is the number of replicas descs place on node id.
func replicasOn(descs []*rspb.RangeDescriptor, id uint64) int {
	n := 0
	for _, d := range descs {
		for _, r := range d.Replicas {
			if r.NodeId == id {
				n++
			}
		}
	}
	return n
}

// rangeOf is the meta record of the range holding client key k.
func rangeOf(descs []*rspb.RangeDescriptor, k string) *rspb.RangeDescriptor {
	uk := keys.UserKey([]byte(k))
	for _, d := range descs {
		if keys.InSpan(uk, d.StartKey, d.EndKey) {
			return d
		}
	}
	return nil
}

func replicaNodes(d *rspb.RangeDescriptor) []uint64 {
	var out []uint64
	for _, r := range d.GetReplicas() {
		out = append(out, r.NodeId)
	}
	return sortedIDs(out)
}

func sortedIDs(ids []uint64) []uint64 {
	out := append([]uint64(nil), ids...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// checkMetaMatchesReplicas reads meta (which must tile the keyspace) and
// every running process's replicas (Admin Ranges): each replica's
// descriptor must equal its meta record and name its node, and each node a
// meta record names must hold a replica of the range. Processes that are
// not running are skipped (their replicas are judged after a restart).
func checkMetaMatchesReplicas(ctx context.Context, pc *procCluster) ([]*rspb.RangeDescriptor, error) {
	descs, err := readMetaAll(ctx, pc)
	if err != nil {
		return nil, err
	}
	if err := node.CheckMetaTiles(descs); err != nil {
		return nil, err
	}
	inMeta := map[uint64]*rspb.RangeDescriptor{}
	for _, d := range descs {
		inMeta[d.RangeId] = d
	}
	for i := 0; i < pc.NumNodes(); i++ {
		if !pc.Running(i) {
			continue
		}
		actx, c := context.WithTimeout(ctx, 5*time.Second)
		r, err := rspb.NewAdminClient(pc.Conn(i)).Ranges(actx, &rspb.RangesRequest{})
		c()
		if err != nil {
			return nil, fmt.Errorf("process %d: ranges: %w", i, err)
		}
		var self uint64
		for id := uint64(1); id <= uint64(pc.NumNodes()); id++ {
			if pc.indexOfNodeID(id) == i {
				self = id
			}
		}
		have := map[uint64]bool{}
		for _, ri := range r.Ranges {
			d := ri.RangeDescriptor
			have[d.GetRangeId()] = true
			m := inMeta[d.GetRangeId()]
			if m == nil || !proto.Equal(m, d) {
				return nil, fmt.Errorf("n%d's replica of r%d has descriptor %v, meta says %v", self, d.GetRangeId(), d, m)
			}
		}
		for _, d := range descs {
			names := false
			for _, rep := range d.Replicas {
				if rep.NodeId == self {
					names = true
				}
			}
			if names != have[d.RangeId] {
				return nil, fmt.Errorf("n%d: meta names it in r%d: %v, it holds a replica: %v", self, d.RangeId, names, have[d.RangeId])
			}
		}
	}
	return descs, nil
}

// probeEveryRange writes and reads one key in every range holding user
// keys through every running process.
func probeEveryRange(ctx context.Context, pc *procCluster, descs []*rspb.RangeDescriptor) error {
	for _, d := range descs {
		start := d.StartKey
		if bytes.Compare(start, keys.UserPrefix) < 0 {
			start = keys.UserPrefix
		}
		if !keys.InSpan(start, d.StartKey, d.EndKey) {
			continue // no user keys
		}
		ck, err := keys.ClientKey(start)
		if err != nil {
			return err
		}
		for i := 0; i < pc.NumNodes(); i++ {
			if !pc.Running(i) {
				continue
			}
			k := append(append([]byte(nil), ck...), fmt.Sprintf("\x00probe-%d", i)...)
			if !keys.InSpan(keys.UserKey(k), d.StartKey, d.EndKey) {
				return fmt.Errorf("probe key %q is not in r%d", k, d.RangeId)
			}
			v := []byte(fmt.Sprintf("r%d-via-%d", d.RangeId, i))
			if !waitUntil(30*time.Second, func() bool {
				actx, c := context.WithTimeout(ctx, 5*time.Second)
				defer c()
				if _, err = pc.KV(i).Put(actx, &rspb.PutRequest{Key: k, Value: v}); err != nil {
					return false
				}
				g, gerr := pc.KV(i).Get(actx, &rspb.GetRequest{Key: k})
				if gerr != nil || !g.Found || !bytes.Equal(g.Kv.Value, v) {
					err = fmt.Errorf("read back %v: %w", g, gerr)
					return false
				}
				return true
			}) {
				return fmt.Errorf("r%d through process %d: %w", d.RangeId, i, err)
			}
		}
	}
	return nil
}

// leaseholderOf is the node holding a valid lease of d's range as its
// replicas report it (the first voter if none reports one).
func leaseholderOf(ctx context.Context, pc *procCluster, d *rspb.RangeDescriptor) uint64 {
	for _, r := range d.Replicas {
		actx, c := context.WithTimeout(ctx, 3*time.Second)
		resp, err := rspb.NewAdminClient(pc.Conn(pc.indexOfNodeID(r.NodeId))).Ranges(actx, &rspb.RangesRequest{RangeIds: []uint64{d.RangeId}})
		c()
		if err != nil {
			continue
		}
		for _, ri := range resp.Ranges {
			if ri.LeaseValid && ri.Lease.GetNodeId() != 0 {
				return ri.Lease.GetNodeId()
			}
		}
	}
	return d.Replicas[0].NodeId
}
