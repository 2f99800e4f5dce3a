package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestJoinBalanceUnderLoad (issue 11, acceptance 1): three processes with
// 24 user ranges and 10,000 loaded keys under a porcupine-checked
// get/put/cas/cdel load; n4 and n5 join with `start --join`, and the
// replicate queues (every 500 ms) move replicas until every node holds
// 0.8x to 1.2x the mean voter count. The history must be linearizable,
// every loaded key must read back through the new nodes, and the
// replicas must agree (consistency check).
func TestJoinBalanceUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const (
		userRanges  = 24
		loadedKeys  = 10000
		batchSize   = 250
		balanceWait = 150 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "rangestore-balance-")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := StartProcClusterArgs(dir, 3, []string{"--replicate-queue-interval", "500ms"})
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			for i := 0; i < pc.NumNodes(); i++ {
				t.Logf("--- process %d log (tail)\n%s", i, pc.Log(i, 3000))
			}
		}
		pc.Close()
		_ = os.RemoveAll(dir)
	}()
	init, err := pc.Init(ctx, userRanges-1)
	if err != nil {
		t.Fatal(err)
	}
	// Wait until every user range serves.
	for _, d := range init.Ranges {
		if !keys.IsUserKey(d.StartKey) {
			continue
		}
		k := append([]byte{'0'}, d.StartKey[1:]...)
		waitFor(ctx, t, 60*time.Second, fmt.Sprintf("r%d serving", d.RangeId), func() error {
			gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
			defer gcancel()
			_, err := pc.KV(0).Get(gctx, &rspb.GetRequest{Key: k})
			return err
		})
	}
	t.Logf("initialized: %d ranges", len(init.Ranges))

	start := time.Now()
	// The clients are seeded with the first three nodes; their client.DBs
	// learn of the joining ones from the routing table.
	clients, err := startClients(ctx, OpenDBs(append([]string(nil), pc.Addrs...), append(pc.ClientOptions(), clientRetry...)...), DefaultKeys, 4, 11, start)
	if err != nil {
		t.Fatal(err)
	}
	clientsStopped := false
	defer func() {
		if !clientsStopped {
			clients.stop()
		}
	}()

	// Load the keys in batches spread over the keyspace, through every
	// node in turn; a failed batch is sent again (its puts are
	// idempotent), so every key is acknowledged.
	loaded := map[string]string{}
	var batch []*rspb.RequestUnion
	flush := func(n int) {
		waitFor(ctx, t, 60*time.Second, "a batch of puts", func() error {
			bctx, bcancel := context.WithTimeout(ctx, 10*time.Second)
			defer bcancel()
			_, err := pc.KV(n%3).Batch(bctx, &rspb.BatchRequest{Requests: batch})
			return err
		})
		batch = batch[:0]
	}
	for i := 0; i < loadedKeys; i++ {
		k := fmt.Sprintf("%cB%05d", loaderAlphabet[i%len(loaderAlphabet)], i)
		v := fmt.Sprintf("%s=%s", k, strings.Repeat("v", 100))
		loaded[k] = v
		batch = append(batch, &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte(k), Value: []byte(v)}}})
		if len(batch) == batchSize {
			flush(i / batchSize)
		}
	}
	if len(batch) > 0 {
		flush(0)
	}
	t.Logf("loaded %d keys in %.1fs", len(loaded), time.Since(start).Seconds())
	before, err := voterCounts(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("voters per node before the joins: %v", before)

	joinStart := time.Now()
	i4, err := pc.AddProc([]int{1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddProc([]int{2, 0}); err != nil {
		t.Fatal(err)
	}
	var counts map[uint64]int
	var lastWhy string
	var lastLog time.Time // progress every 5 s at most
	for deadline := time.Now().Add(balanceWait); ; {
		var why string
		counts, why, err = balanced(ctx, pc, 5)
		if err == nil && why == "" {
			break
		}
		if err != nil {
			why = err.Error()
		}
		if why != lastWhy && time.Since(lastLog) >= 5*time.Second {
			t.Logf("t+%.1fs: %s", time.Since(joinStart).Seconds(), why)
			lastWhy, lastLog = why, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("not balanced %v after the joins: %s", balanceWait, why)
		}
		time.Sleep(500 * time.Millisecond)
	}
	took := time.Since(joinStart)
	moves := counts[4] + counts[5] // every replica on n4 and n5 arrived by a move
	t.Logf("balanced %.1fs after n4 and n5 started: %d replica moves; voters per node %v", took.Seconds(), moves, counts)

	// Keep the clients on a little longer: the queues have settled.
	time.Sleep(time.Second)
	clients.stop()
	clientsStopped = true
	res := &Result{}
	ops := clients.history(res)

	// Every loaded key reads back through each new node.
	for _, i := range []int{i4, i4 + 1} {
		got := map[string]string{}
		waitFor(ctx, t, 60*time.Second, fmt.Sprintf("a scan through process %d", i), func() error {
			clear(got)
			sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
			defer scancel()
			st, err := pc.KV(i).Scan(sctx, &rspb.ScanRequest{})
			if err != nil {
				return err
			}
			for {
				r, err := st.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				for _, kv := range r.Kvs {
					got[string(kv.Key)] = string(kv.Value)
				}
			}
		})
		missing, wrong := 0, 0
		for k, v := range loaded {
			g, ok := got[k]
			switch {
			case !ok:
				missing++
			case g != v:
				wrong++
			}
		}
		if missing+wrong > 0 {
			t.Errorf("through process %d: %d of %d loaded keys missing, %d wrong", i, missing, len(loaded), wrong)
		} else {
			t.Logf("through process %d: all %d loaded keys read back", i, len(loaded))
		}
	}

	cons, err := checkConsistency(ctx, pc, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replica consistency: %d ranges compared, %d skipped %v, %d diverged", cons.Compared, len(cons.Skipped), cons.Skipped, len(cons.Diverged))
	if len(cons.Diverged) > 0 {
		t.Errorf("replicas diverged: %v", cons.Diverged)
	}

	check, _ := porcupine.CheckOperationsVerbose(KVModel.ToModel(), ops, 2*time.Minute)
	t.Logf("history: %d ops (%d reads, %d failed reads left out, %d ambiguous): %s", res.Ops, res.Reads, res.FailedReads, res.Ambiguous, check)
	if check != porcupine.Ok {
		t.Errorf("the history is not linearizable (%s)", check)
	}
	if res.Ops-res.Ambiguous < 100 {
		t.Errorf("only %d operations completed", res.Ops-res.Ambiguous)
	}
}

// waitFor retries f until it returns nil, failing the test after d.
func waitFor(ctx context.Context, t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// descriptors returns the newest descriptor of every range any running
// process knows (Admin Ranges of each, the highest generation wins).
func descriptors(ctx context.Context, pc *ProcCluster) (map[uint64]*rspb.RangeDescriptor, error) {
	descs := map[uint64]*rspb.RangeDescriptor{}
	for i := 0; i < pc.NumNodes(); i++ {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rs, err := rspb.NewAdminClient(pc.Conn(i)).Ranges(rctx, &rspb.RangesRequest{}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("ranges of process %d: %w", i, err)
		}
		for _, ri := range rs.Ranges {
			d := ri.RangeDescriptor
			if o := descs[d.GetRangeId()]; d != nil && (o == nil || o.Generation < d.Generation) {
				descs[d.RangeId] = d
			}
		}
	}
	return descs, nil
}

// voterCounts counts the voters per node ID over the newest descriptors.
func voterCounts(ctx context.Context, pc *ProcCluster) (map[uint64]int, error) {
	descs, err := descriptors(ctx, pc)
	if err != nil {
		return nil, err
	}
	counts := map[uint64]int{}
	for _, d := range descs {
		for _, r := range d.Replicas {
			if r.Type == rspb.ReplicaType_VOTER {
				counts[r.NodeId]++
			}
		}
	}
	return counts, nil
}

// balanced returns the voters per node and why the cluster is not
// balanced yet ("" when it is): every range has exactly 3 voters and no
// non-voter (no change in flight), and each of the nodes 1..n holds 0.8x
// to 1.2x the mean.
func balanced(ctx context.Context, pc *ProcCluster, n int) (map[uint64]int, string, error) {
	descs, err := descriptors(ctx, pc)
	if err != nil {
		return nil, "", err
	}
	counts := map[uint64]int{}
	var busy []string
	for _, d := range descs {
		voters := 0
		for _, r := range d.Replicas {
			if r.Type == rspb.ReplicaType_VOTER {
				voters++
				counts[r.NodeId]++
			}
		}
		if voters != 3 || len(d.Replicas) != 3 {
			busy = append(busy, fmt.Sprintf("r%d", d.RangeId))
		}
	}
	total := 0
	for id := uint64(1); id <= uint64(n); id++ {
		total += counts[id]
	}
	mean := float64(total) / float64(n)
	var off []string
	for id := uint64(1); id <= uint64(n); id++ {
		if c := float64(counts[id]); c < 0.8*mean || c > 1.2*mean {
			off = append(off, fmt.Sprintf("n%d=%d", id, counts[id]))
		}
	}
	sort.Strings(busy)
	switch {
	case len(off) > 0:
		return counts, fmt.Sprintf("outside 0.8-1.2x of the mean %.1f: %s (voters %v; changing: %v)", mean, strings.Join(off, " "), counts, busy), nil
	case len(busy) > 0:
		return counts, fmt.Sprintf("balanced counts %v but changes in flight: %v", counts, busy), nil
	}
	return counts, "", nil
}
