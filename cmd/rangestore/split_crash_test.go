package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

// splitCrashPoints are the steps of a split where a process can die (see
// ranges.StoreConfig.CrashPoint): before the split is proposed; on every
// replica right after the split committed locally, before the right-hand
// replica started; after it started, before its log was compacted; at the
// proposer after the split applied, before meta was updated; and between
// the left and right meta records.
var splitCrashPoints = []string{"split-before-propose", "split-applied", "split-rhs-started", "split-before-meta", "split-between-meta"}

// TestSplitCrashPoints kills processes (SIGKILL, from inside, at the
// injected point) during a split while writers run, restarts them and
// checks: every acknowledged write is there with its value, a scan returns
// every key exactly once, meta tiles the keyspace exactly once (after the
// leaseholders repaired it), every range in meta has its replicas, and the
// cluster splits again afterwards.
func TestSplitCrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, point := range splitCrashPoints {
		t.Run(point, func(t *testing.T) { testSplitCrash(t, point, false) })
	}
}

// mergeCrashPoints: after the right range froze; after every replica
// applied the freeze, before the merge was proposed; after the merge
// applied, before meta was updated.
var mergeCrashPoints = []string{"merge-frozen", "merge-before-propose", "merge-before-meta"}

// TestMergeCrashPoints is TestSplitCrashPoints for a merge of the ranges on
// either side of k100 (a frozen right range must be merged after the
// restart, never left frozen).
func TestMergeCrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, point := range mergeCrashPoints {
		t.Run(point, func(t *testing.T) { testSplitCrash(t, point, true) })
	}
}

func testSplitCrash(t *testing.T, point string, merge bool) {
	env := []string{"RANGESTORE_CRASH_AT=" + point}
	onceFile := filepath.Join(t.TempDir(), "crash-once")
	if merge {
		// One crash only (survivors finishing the merge must not die at the
		// same point); armed right before the merge.
		env = append(env, "RANGESTORE_CRASH_ONCE_FILE="+onceFile)
	}
	pc := newProcClusterB(t, 3, env...)
	pc.cliRetry(60*time.Second, "init", "--host", pc.addrs[0], "--initial-splits", "1")
	if merge {
		pc.cliRetry(60*time.Second, "range", "split", "--host", pc.addrs[0], "k100")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	w := newAckedWriter(pc, 200)
	if err := w.fill(ctx); err != nil {
		t.Fatal(err)
	}
	// Writers keep going through the crash and the restart.
	stopWriters := w.run(ctx, 4)
	defer stopWriters()
	// Split through node 1; the leaseholder (or every replica) dies at the
	// crash point, so the call may fail.
	sctx, scancel := context.WithTimeout(ctx, 15*time.Second)
	var opErr error
	if merge {
		if err := os.WriteFile(onceFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, opErr = rspb.NewAdminClient(pc.Conn(1)).MergeRange(sctx, &rspb.MergeRangeRequest{Key: []byte("k000")})
	} else {
		_, opErr = rspb.NewAdminClient(pc.Conn(1)).SplitRange(sctx, &rspb.SplitRangeRequest{Key: []byte("k100")})
	}
	scancel()
	t.Logf("split/merge call: %v", opErr)
	died := waitUntil(20*time.Second, func() bool {
		for i := 0; i < 3; i++ {
			if !pc.Running(i) {
				return true
			}
		}
		return false
	})
	if !died {
		t.Fatalf("no process reached crash point %s", point)
	}
	time.Sleep(200 * time.Millisecond) // let the other replicas reach the point too
	dead := 0
	restarted := map[int]bool{}
	// revive restarts, unarmed, every process that died (replicas that
	// apply the split later reach the point later).
	revive := func() {
		for i := 0; i < 3; i++ {
			pc.SetEnv(i)
			if !pc.Running(i) {
				dead++
				restarted[i] = true
				pc.start(i)
			}
		}
	}
	revive()
	t.Logf("%d process(es) died at %s and were restarted", dead, point)
	time.Sleep(time.Second)
	stopWriters()

	// Meta converges to an exact tiling (repair runs every few seconds).
	var descs []*rspb.RangeDescriptor
	var lastErr error
	if !waitUntil(60*time.Second, func() bool {
		revive()
		descs, lastErr = readMetaAll(ctx, pc)
		if lastErr == nil {
			lastErr = node.CheckMetaTiles(descs)
		}
		return lastErr == nil
	}) {
		t.Fatalf("meta after restart: %v", lastErr)
	}
	split := false
	for _, d := range descs {
		if bytes.Equal(d.StartKey, keys.UserKey([]byte("k100"))) {
			split = true
		}
	}
	t.Logf("meta: %d ranges, boundary at k100: %v", len(descs), split)
	if merge {
		// A started merge is finished (the right side never stays frozen).
		if !waitUntil(60*time.Second, func() bool {
			descs, lastErr = readMetaAll(ctx, pc)
			if lastErr == nil {
				lastErr = node.CheckMetaTiles(descs)
			}
			if lastErr != nil {
				return false
			}
			for _, d := range descs {
				if bytes.Equal(d.StartKey, keys.UserKey([]byte("k100"))) {
					lastErr = errors.New("the merge queue has not finished the merge")
					return false
				}
			}
			return true
		}) {
			for i := 0; i < 3; i++ {
				r, err := rspb.NewAdminClient(pc.Conn(i)).Ranges(ctx, &rspb.RangesRequest{})
				if err != nil {
					continue
				}
				for _, ri := range r.Ranges {
					t.Logf("n%d: %v", i+1, ri)
				}
			}
			t.Fatalf("merge after restart: %v", lastErr)
		}
	}
	// Meta agrees with the replicas (the leaseholders repair it): every node
	// has a replica of every range in meta, with the same span, and no
	// replica of a range meta does not list.
	if !waitUntil(60*time.Second, func() bool {
		revive()
		descs, lastErr = readMetaAll(ctx, pc)
		if lastErr == nil {
			lastErr = node.CheckMetaTiles(descs)
		}
		if lastErr != nil {
			return false
		}
		inMeta := map[uint64]*rspb.RangeDescriptor{}
		for _, d := range descs {
			inMeta[d.RangeId] = d
		}
		for i := 0; i < 3; i++ {
			r, err := rspb.NewAdminClient(pc.Conn(i)).Ranges(ctx, &rspb.RangesRequest{})
			if err != nil {
				lastErr = err
				return false
			}
			have := map[uint64]bool{}
			for _, ri := range r.Ranges {
				d := ri.RangeDescriptor
				have[d.GetRangeId()] = true
				m := inMeta[d.GetRangeId()]
				if m == nil || !bytes.Equal(m.StartKey, d.StartKey) || !bytes.Equal(m.EndKey, d.EndKey) {
					lastErr = fmt.Errorf("n%d has r%d [%q, %q), meta says %v", i+1, d.GetRangeId(), d.GetStartKey(), d.GetEndKey(), m)
					return false
				}
			}
			for _, d := range descs {
				if !have[d.RangeId] {
					lastErr = fmt.Errorf("n%d has no replica of r%d", i+1, d.RangeId)
					return false
				}
			}
		}
		return true
	}) {
		t.Fatal(lastErr)
	}
	split = false
	for _, d := range descs {
		if bytes.Equal(d.StartKey, keys.UserKey([]byte("k100"))) {
			split = true
		}
	}
	t.Logf("meta agrees with every replica: %d ranges, boundary at k100: %v", len(descs), split)
	// Every acknowledged write is there, and reads through every node agree
	// with a scan.
	got, err := w.check(ctx)
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if err := w.put(ctx, 0, "after", "x"); err != nil {
		t.Fatal(err)
	}
	// The survivors are still armed: restart them one at a time, unarmed.
	for i := 0; i < 3; i++ {
		if restarted[i] {
			continue
		}
		pc.kill(i)
		pc.start(i)
		if !waitUntil(60*time.Second, func() bool { _, err := scanAll(ctx, pc, i); return err == nil }) {
			t.Fatalf("node %d does not serve after its restart", i)
		}
	}
	// The cluster still splits (both at a new key and, if the first split
	// did not happen, at k100).
	for _, k := range []string{"k050", "k100", "k150"} {
		if _, err := rspb.NewAdminClient(pc.Conn(2)).SplitRange(ctx, &rspb.SplitRangeRequest{Key: []byte(k)}); err != nil {
			t.Fatalf("split at %s after restart: %v", k, err)
		}
	}
	descs, err = readMetaAll(ctx, pc)
	if err == nil {
		err = node.CheckMetaTiles(descs)
	}
	if err != nil {
		t.Fatalf("meta after more splits: %v", err)
	}
	got2, err := scanAll(ctx, pc, 1)
	if err != nil || len(got2) != len(got)+1 {
		t.Fatalf("scan after more splits: %d keys (want %d), %v", len(got2), len(got)+1, err)
	}
}

// seqOf is n of a value "v<w>-<n>" (-1 for the initial "v0-<key>").
func seqOf(v string) int {
	var w, n int
	if _, err := fmt.Sscanf(v, "v%d-%d", &w, &n); err != nil {
		return -1
	}
	return n
}

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scanAll scans the whole user span through node i and fails on a key seen
// twice or out of order.
func scanAll(ctx context.Context, pc *procCluster, i int) (map[string]string, error) {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := pc.KV(i).Scan(actx, &rspb.ScanRequest{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	var prev []byte
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		for _, kv := range m.Kvs {
			if prev != nil && bytes.Compare(kv.Key, prev) <= 0 {
				return nil, fmt.Errorf("scan returned %q after %q (duplicate or out of order)", kv.Key, prev)
			}
			prev = append([]byte(nil), kv.Key...)
			out[string(kv.Key)] = string(kv.Value)
		}
	}
}
