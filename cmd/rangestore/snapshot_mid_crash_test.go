package main

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestSnapshotMidStreamCrash (issue 11, acceptance 4, "mid-snapshot"):
// the replica move of TestReplicaChangeCrashPoints with a range of 6 MiB
// of incompressible values and --snapshot-rate 2MiB (so its snapshot
// streams for about 3 s), killed inside the snapshot stream:
//   - snapshot-send-mid: the Raft leader (the sender, and the leaseholder
//     driving the move) dies once it has written two of Dragonboat's
//     2 MiB chunks and more; the target is left with a partial
//     .receiving directory (checked), never applied;
//   - snapshot-receive-mid: the target dies while it writes the received
//     snapshot into sstables, before ingesting them.
//
// After the restart the test re-runs the relocation through Admin
// RelocateRange (the move is rolled forward, or redone), and checks what
// the other crash points check (meta agrees with every replica's
// descriptor, every range serves through every node, no acknowledged
// write is missing) and that every replica of the moved range, the new
// one included, has the same data and state digests at one applied
// index. It logs the snapshot counters of every process: after
// snapshot-send-mid the target should apply one snapshot (two if the
// leftover non-voter was removed and the move redone under a new replica
// ID); a second full stream to the same replica was seen when the
// restarted leaseholder took Raft leadership back from the replica
// streaming in its place, which the lease loop no longer does while its
// replica sends a snapshot (replica_lease.go).
func TestSnapshotMidStreamCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, point := range []string{"snapshot-send-mid", "snapshot-receive-mid"} {
		t.Run(point, func(t *testing.T) { testReplicaChangeCrash(t, point, midSnapshotCrash) })
	}
}

// crashOpts adapt testReplicaChangeCrash to a crash point; the zero value
// changes nothing.
type crashOpts struct {
	// args are `start` flags of every process (set before init).
	args []string
	// bigValues of bigValueSize random bytes are written into the moving
	// range (keys <k100>/big<n>) before the move, so that its snapshot
	// is large.
	bigValues, bigValueSize int
	// midSnapshot: the crash is inside the snapshot stream; check who
	// died and what it left, the digests of the moved range, and log the
	// snapshot counters (every process serves HTTP).
	midSnapshot bool
}

var midSnapshotCrash = crashOpts{args: []string{"--snapshot-rate", "2MiB"}, bigValues: 96, bigValueSize: 64 << 10, midSnapshot: true}

// setUp restarts the (not yet initialized) processes with the options'
// flags and HTTP addresses.
func (o crashOpts) setUp(t *testing.T, pc *procCluster) {
	if len(o.args) == 0 && !o.midSnapshot {
		return
	}
	for i := 0; i < pc.NumNodes(); i++ {
		for j := 0; j+1 < len(o.args); j += 2 {
			pc.SetArg(i, o.args[j], o.args[j+1], false)
		}
		if o.midSnapshot {
			if _, err := pc.ServeHTTP(i); err != nil {
				t.Fatal(err)
			}
		}
		pc.kill(i)
		pc.start(i)
	}
}

// fill writes the big values next to client key k (in its range) and
// checks that the range now holds more than the crash points' threshold.
func (o crashOpts) fill(ctx context.Context, t *testing.T, pc *procCluster, k string) {
	if o.bigValues == 0 {
		return
	}
	rng := rand.New(rand.NewSource(1))
	for n := 0; n < o.bigValues; n++ {
		key, val := fmt.Sprintf("%s/big%03d", k, n), make([]byte, o.bigValueSize)
		rng.Read(val)
		if !waitUntil(60*time.Second, func() bool {
			actx, c := context.WithTimeout(ctx, 10*time.Second)
			defer c()
			_, err := pc.KV(n%pc.NumNodes()).Put(actx, &rspb.PutRequest{Key: []byte(key), Value: val})
			return err == nil
		}) {
			t.Fatalf("put %s did not succeed", key)
		}
	}
	descs, err := readMetaAll(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	d, last := rangeOf(descs, k), rangeOf(descs, fmt.Sprintf("%s/big%03d", k, o.bigValues-1))
	if d == nil || last == nil || d.RangeId != last.RangeId {
		t.Fatalf("the big values are not all in the range of %s: %v, %v", k, d, last)
	}
	r, err := rspb.NewAdminClient(pc.Conn(pc.indexOfNodeID(d.Replicas[0].NodeId))).Ranges(ctx, &rspb.RangesRequest{RangeIds: []uint64{d.RangeId}})
	if err != nil || len(r.Ranges) != 1 {
		t.Fatalf("ranges of r%d: %v %v", d.RangeId, r, err)
	}
	if b := r.Ranges[0].ApproxBytes; b < 5<<20 {
		t.Fatalf("r%d holds about %d bytes: too few to reach the crash point", d.RangeId, b)
	}
	t.Logf("r%d holds about %.1f MiB (%d values of %d random bytes)", d.RangeId, float64(r.Ranges[0].ApproxBytes)/(1<<20), o.bigValues, o.bigValueSize)
}

// checkCrash: the process that died reached the point, and it is the
// side of the stream the point is on. After snapshot-send-mid the target
// holds part of the stream in a .receiving directory.
func (o crashOpts) checkCrash(t *testing.T, pc *procCluster, point string, died int, target uint64) {
	if !o.midSnapshot {
		return
	}
	if l := pc.Log(died, 1<<20); !strings.Contains(l, "RANGESTORE_CRASH_AT="+point+" reached") {
		t.Fatalf("process %d stopped without reaching %s:\n%s", died, point, pc.Log(died, 3000))
	}
	ti := pc.indexOfNodeID(target)
	switch point {
	case "snapshot-receive-mid":
		if died != ti {
			t.Fatalf("process %d died at %s, not the target n%d (process %d)", died, point, target, ti)
		}
	case "snapshot-send-mid":
		if died == ti {
			t.Fatalf("the target n%d died at %s: it sends no snapshot", target, point)
		}
		dirs, size := receivingDirs(filepath.Join(pc.Dir, fmt.Sprintf("n%d", ti)))
		if size < 2<<20 {
			t.Fatalf("after the sender died mid-stream, n%d holds %d bytes in snapshot directories being received (%v), want a chunk or more", target, size, dirs)
		}
		t.Logf("n%d holds %.1f MiB of the cut stream in %v", target, float64(size)/(1<<20), dirs)
	}
}

// receivingDirs lists Dragonboat's directories of snapshots being
// received (*.receiving) under a store and the bytes of their files.
func receivingDirs(store string) ([]string, int64) {
	var dirs []string
	var size int64
	_ = filepath.WalkDir(store, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() || !strings.HasSuffix(p, ".receiving") {
			return nil
		}
		dirs = append(dirs, filepath.Base(p))
		files, _ := os.ReadDir(p)
		for _, f := range files {
			if fi, err := f.Info(); err == nil && !fi.IsDir() {
				size += fi.Size()
			}
		}
		return nil
	})
	return dirs, size
}

// checkAfter: the moved range's replicas agree, and what the processes
// sent as snapshots (counters since each one's last start).
func (o crashOpts) checkAfter(ctx context.Context, t *testing.T, pc *procCluster, final *rspb.RangeDescriptor) {
	if !o.midSnapshot {
		return
	}
	digests, err := waitDigestsAgree(ctx, pc, final, int64(o.bigValues))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("r%d digests: %s", final.RangeId, digests)
	for i := 0; i < pc.NumNodes(); i++ {
		s, err := snapshotsSentBy(ctx, pc, []int{i})
		if err != nil {
			t.Fatal(err)
		}
		var id uint64
		for n := uint64(1); n <= uint64(pc.NumNodes()); n++ {
			if pc.indexOfNodeID(n) == i {
				id = n
			}
		}
		t.Logf("n%d (counters since its last start): %s", id, s)
	}
}
