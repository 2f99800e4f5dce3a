package ranges

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rangestore/rangestore/internal/metricstest"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// newTestStore opens a Store with a real NodeHost on loopback over an
// in-memory engine, not bootstrapped: it has no replicas until a test adds
// some. Close runs before the engine closes (cleanups run last-in first).
func newTestStore(t *testing.T) *Store { return newTestStoreWith(t, nil) }

func newTestStoreWith(t *testing.T, metrics *Metrics) *Store {
	t.Helper()
	eng := smtOpenEngine(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	s, err := NewStore(StoreConfig{Dir: t.TempDir(), RaftAddress: addr, Engine: eng,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// addFakeReplica registers a replica of range id that Dragonboat does not
// run, holding an epoch lease of node 1 (so describing it reads liveness).
func (s *Store) addFakeReplica(id uint64) *Replica {
	r := s.newReplica(id, 1, kv.Timestamp{})
	r.sm.desc.Store(&rspb.RangeDescriptor{RangeId: id, StartKey: keys.UserKey([]byte{byte(id)}), EndKey: keys.UserKey([]byte{byte(id + 1)})})
	r.sm.lease.Store(&rspb.Lease{ReplicaId: 1, NodeId: 1, Epoch: 1, Sequence: 1})
	s.mu.Lock()
	s.replicas[id] = r
	s.mu.Unlock()
	return r
}

// fakeLiveness is a LivenessSource that knows one record per node, live
// for an hour (or expired an hour ago, if expired).
type fakeLiveness struct{ expired bool }

func (f fakeLiveness) rec(id uint64) *rspb.Liveness {
	exp := time.Now().Add(time.Hour)
	if f.expired {
		exp = time.Now().Add(-time.Hour)
	}
	return &rspb.Liveness{NodeId: id, Epoch: 1, Expiration: &rspb.Timestamp{WallTime: exp.UnixNano()}}
}
func (f fakeLiveness) Self() *rspb.Liveness { return f.rec(1) }
func (f fakeLiveness) Get(_ context.Context, id uint64, _ bool) (*rspb.Liveness, error) {
	return f.rec(id), nil
}
func (f fakeLiveness) Cached(id uint64) *rspb.Liveness { return f.rec(id) }
func (f fakeLiveness) IncrementEpoch(_ context.Context, id uint64) (*rspb.Liveness, error) {
	return f.rec(id), nil
}

// TestStoreRangesDuringMerge: Store.Ranges (called by the admin API and the
// GC loop) runs while merges remove subsumed replicas; a replica removed
// between its listing and its description is skipped, not dereferenced.
func TestStoreRangesDuringMerge(t *testing.T) {
	s := newTestStore(t)
	s.SetLiveness(fakeLiveness{})
	for id := uint64(10); id < 14; id++ {
		s.addFakeReplica(id)
	}
	repeatInBackground(t, func() {
		for id := uint64(11); id < 14; id++ {
			s.removeSubsumed(id, s.replica(id).sm) // as onMerge does
			s.addFakeReplica(id)
		}
	})
	deadline := time.Now().Add(2 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		infos := s.Ranges()
		for _, ri := range infos {
			if ri.RangeDescriptor == nil {
				t.Fatalf("round %d: Ranges described a replica without a descriptor: %v", n, ri)
			}
		}
		if len(infos) == 0 || infos[0].RangeDescriptor.RangeId != 10 {
			t.Fatalf("round %d: Ranges lost r10, which no merge removed: %v", n, infos)
		}
	}
}

// repeatInBackground calls f over and over on another goroutine until the
// test ends (its cleanup stops the loop and waits for it).
func repeatInBackground(t *testing.T, f func()) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				f()
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// TestStoreLivenessSwap: liveness may be connected (SetLiveness) while the
// store's loops and the admin API read it; run with -race.
func TestStoreLivenessSwap(t *testing.T) {
	s := newTestStore(t)
	s.addFakeReplica(10)
	repeatInBackground(t, func() { s.SetLiveness(fakeLiveness{}) })
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, ri := range s.Ranges() {
			if ri.RangeDescriptor.GetRangeId() == 10 && ri.LeaseState == "" {
				t.Errorf("r10 has no lease state")
			}
		}
		s.replica(10).replicaLive(1)
	}
}

// TestCheckSpansNamesClientKeys: a key outside the range is named as the
// client wrote it (not with the internal user-span prefix), for every
// request type, and the range's bounds likewise.
func TestCheckSpansNamesClientKeys(t *testing.T) {
	desc := &rspb.RangeDescriptor{RangeId: 7, StartKey: keys.UserKey([]byte("m")), EndKey: keys.UserKey([]byte("p"))}
	k := keys.UserKey([]byte("zebra"))
	end := keys.UserKey([]byte("zoo"))
	reqs := map[string]*rspb.RequestUnion{
		"get":              {Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: k}}},
		"put":              {Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: k}}},
		"delete":           {Value: &rspb.RequestUnion_Delete{Delete: &rspb.DeleteRequest{Key: k}}},
		"conditional put":  {Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{Key: k}}},
		"increment":        {Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: k}}},
		"scan":             {Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: k, EndKey: end}}},
		"delete range":     {Value: &rspb.RequestUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeRequest{StartKey: k, EndKey: end}}},
		"scan across ends": {Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: keys.UserKey([]byte("n")), EndKey: end}}},
	}
	for name, r := range reqs {
		re, ok := asRangeError(checkSpans(desc, []*rspb.RequestUnion{r}))
		if !ok || re.Code != rspb.RangeError_RANGE_KEY_MISMATCH {
			t.Errorf("%s: got %v, want RANGE_KEY_MISMATCH", name, re)
			continue
		}
		s, _, _ := RequestSpan(r)
		ck, _ := keys.ClientKey(s)
		for _, want := range []string{`"` + string(ck) + `"`, `["m", "p")`} {
			if !strings.Contains(re.Message, want) {
				t.Errorf("%s: message %q does not name %s", name, re.Message, want)
			}
		}
		if strings.Contains(re.Message, `"u`) {
			t.Errorf("%s: message %q names an internal key", name, re.Message)
		}
	}
}

// userRangeID is the one range of a store made by newSingleNodeStore.
const userRangeID = 3

// newSingleNodeStore bootstraps a one-node cluster holding one user range
// (epoch leases) [UserPrefix, KeyMax) with liveness lv, and waits until
// the replica has loaded its descriptor and leads its Raft group.
func newSingleNodeStore(t *testing.T, lv LivenessSource) (*Store, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := newTestStoreWith(t, NewMetrics(reg))
	s.SetLiveness(lv)
	desc := &rspb.RangeDescriptor{RangeId: userRangeID, StartKey: keys.UserPrefix, EndKey: keys.KeyMax,
		Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}}
	req := &rspb.BootstrapRequest{ClusterId: "test", NodeId: 1, Timestamp: TSToProto(s.cfg.Clock.Now()),
		Nodes: []*rspb.NodeDescriptor{{NodeId: 1, RaftAddress: s.cfg.RaftAddress}}, Ranges: []*rspb.RangeDescriptor{desc}}
	if err := s.Bootstrap(req, nil); err != nil {
		t.Fatal(err)
	}
	timeutil.WaitFor(t, 20*time.Second, "r3 loaded and leading", func() error {
		r := s.replica(userRangeID)
		if r == nil || r.desc() == nil {
			return fmt.Errorf("not loaded")
		}
		if lid, ok := s.leaderOf(userRangeID); !ok || lid != 1 {
			return fmt.Errorf("leader %d (known %v)", lid, ok)
		}
		return nil
	})
	return s, reg
}

// TestLeaseFailuresCounted: the lease loop of a node whose own liveness
// record has expired cannot acquire the lease of the range it leads; each
// failed attempt is counted (and logged), not dropped.
func TestLeaseFailuresCounted(t *testing.T) {
	s, reg := newSingleNodeStore(t, fakeLiveness{expired: true})
	timeutil.WaitFor(t, 20*time.Second, "a failed background acquisition counted", func() error {
		if v := metricstest.Sum(t, reg, "rangestore_lease_failures_total", map[string]string{"op": "acquire"}); v == 0 {
			return fmt.Errorf("rangestore_lease_failures_total{op=\"acquire\"} = 0 (lease %v)", s.replica(userRangeID).lease())
		}
		return nil
	})
	if l := s.replica(userRangeID).lease(); l.Sequence != 0 {
		t.Fatalf("a node with expired liveness acquired a lease: %v", l)
	}
}

// TestReadIndexCounted: every ReadIndex the store makes is counted in
// rangestore_read_index_total (a wake-up of a quiesced range is one), and
// reads served under the lease make none.
func TestReadIndexCounted(t *testing.T) {
	s, reg := newSingleNodeStore(t, fakeLiveness{})
	const reads = 50
	put := &rspb.RangeRequest{RangeId: userRangeID, ProposalId: []byte("read-index-put-1"), Timestamp: TSToProto(s.cfg.Clock.Now()),
		Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: keys.UserKey([]byte("k")), Value: []byte("v")}}}}}
	timeutil.WaitFor(t, 20*time.Second, "a write", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if resp := s.Send(ctx, put); resp.Error != nil {
			return fmt.Errorf("%v", resp.Error)
		}
		return nil
	})
	before := metricstest.Sum(t, reg, "rangestore_read_index_total", nil)
	for i := 0; i < reads; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp := s.Send(ctx, &rspb.RangeRequest{RangeId: userRangeID,
			Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.UserKey([]byte("k"))}}}}})
		cancel()
		if resp.Error != nil || !resp.Responses[0].GetGet().GetFound() {
			t.Fatalf("read %d: %v %v", i, resp.Error, resp.Responses)
		}
	}
	if got := metricstest.Sum(t, reg, "rangestore_read_index_total", nil) - before; got >= reads {
		t.Errorf("%d reads made %v ReadIndex calls; reads under a lease make none", reads, got)
	}
	if got := metricstest.Sum(t, reg, "rangestore_lease_reads_total", nil); got < reads {
		t.Errorf("rangestore_lease_reads_total = %v after %d reads", got, reads)
	}
	// A wake-up is a ReadIndex, and is counted as one.
	before = metricstest.Sum(t, reg, "rangestore_read_index_total", nil)
	wakes := metricstest.Sum(t, reg, "rangestore_raft_wakeups_total", nil)
	s.replica(userRangeID).lastWake.Store(0)
	s.replica(userRangeID).wake()
	if got := metricstest.Sum(t, reg, "rangestore_raft_wakeups_total", nil) - wakes; got != 1 {
		t.Fatalf("wake made %v wake-ups, want 1", got)
	}
	if got := metricstest.Sum(t, reg, "rangestore_read_index_total", nil) - before; got != 1 {
		t.Errorf("a wake-up made one ReadIndex call; rangestore_read_index_total grew by %v", got)
	}
}
