package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/timeutil"
)

// scanAt reads every user key as of asOf (nil: now) and returns the pairs
// as "key=value" and a SHA-256 over them.
func scanAt(t *testing.T, ctx context.Context, kvc rspb.KVClient, asOf *rspb.Timestamp) ([]string, string) {
	t.Helper()
	st, err := kvc.Scan(ctx, &rspb.ScanRequest{AsOf: asOf})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	h := sha256.New()
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range m.Kvs {
			out = append(out, fmt.Sprintf("%s=%s", x.Key, x.Value))
			fmt.Fprintf(h, "%d:%s%d:%s", len(x.Key), x.Key, len(x.Value), x.Value)
		}
	}
	return out, fmt.Sprintf("%x", h.Sum(nil))[:16]
}

// pairs maps the "key=value" lines of a scan.
func pairs(scan []string) map[string]string {
	out := map[string]string{}
	for _, p := range scan {
		k, v, _ := strings.Cut(p, "=")
		out[k] = v
	}
	return out
}

// sameKeys compares two scans key by key, naming the first difference.
func sameKeys(t *testing.T, what string, got, want []string) {
	t.Helper()
	for i := 0; i < len(got) || i < len(want); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Fatalf("%s: pair %d differs: restored %q, original %q (%d vs %d pairs)", what, i, g, w, len(got), len(want))
		}
	}
}

// write applies puts (value != "") and deletes (value == "") and returns
// the highest commit timestamp.
func write(t *testing.T, ctx context.Context, kvc rspb.KVClient, kvs map[string]string) Timestamp {
	t.Helper()
	var hi Timestamp
	for k, v := range kvs {
		var ts *rspb.Timestamp
		if v == "" {
			r, err := kvc.Delete(ctx, &rspb.DeleteRequest{Key: []byte(k)})
			if err != nil {
				t.Fatal(err)
			}
			ts = r.CommitTimestamp
		} else {
			r, err := kvc.Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte(v)})
			if err != nil {
				t.Fatal(err)
			}
			ts = r.CommitTimestamp
		}
		if c := FromProto(ts); hi.Less(c) {
			hi = c
		}
	}
	return hi
}

func startCluster(t *testing.T, ctx context.Context, opts node.TestClusterOptions) *node.TestCluster {
	t.Helper()
	tc, err := node.StartTestCluster(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	return tc
}

func wantCode(t *testing.T, what string, err error, code codes.Code, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted, want %v", what, code)
	}
	if s, _ := status.FromError(err); s.Code() != code || !strings.Contains(err.Error(), contains) {
		t.Fatalf("%s: %v, want %v containing %q", what, err, code, contains)
	}
	t.Logf("%s: refused: %v", what, err)
}

// TestBackupRestore: keys written, overwritten and deleted around a
// timestamp TS; a backup at TS restored into a fresh cluster scans equal
// to the original at TS, key by key; an incremental on top restores to the
// later timestamp, deletions included; bad input is refused and changes
// nothing.
func TestBackupRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src := startCluster(t, ctx, node.TestClusterOptions{Nodes: 3})
	kvc := src.KV(0)
	first := map[string]string{}
	for i := 0; i < 300; i++ {
		first[fmt.Sprintf("k%03d", i)] = fmt.Sprintf("v1-%d", i)
	}
	for _, k := range []string{"A", "Z", "a", "z", "0"} { // keys in every initial range
		first[k] = "edge-" + k
	}
	write(t, ctx, kvc, first)
	ts := write(t, ctx, kvc, map[string]string{"k000": "v1-0"})
	later := map[string]string{"k001": "", "k002": "", "A": "", "new1": "n1"}
	for i := 100; i < 150; i++ {
		later[fmt.Sprintf("k%03d", i)] = fmt.Sprintf("v2-%d", i)
	}
	write(t, ctx, kvc, later)

	want, wantSum := scanAt(t, ctx, kvc, ts.Proto())
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	// The backup runs under write load: a writer overwrites and adds keys
	// until it is done (the test owns and stops it).
	stop, stopped := make(chan struct{}), make(chan int)
	var written atomic.Int64
	go func() {
		n := 0
		defer func() { stopped <- n }()
		for ; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := src.KV(2).Put(ctx, &rspb.PutRequest{Key: []byte(fmt.Sprintf("w%03d", n%100)), Value: []byte(fmt.Sprintf("load-%d", n))}); err != nil {
				return
			}
			written.Add(1)
		}
	}()
	timeutil.WaitFor(t, 30*time.Second, "the write load to start", func() error {
		if n := written.Load(); n < 50 {
			return fmt.Errorf("%d writes", n)
		}
		return nil
	})
	before := written.Load()
	m, err := Backup(ctx, src.Conn(1), Options{Dir: full, AsOf: ts, FileBytes: 4 << 10})
	during := written.Load() - before
	close(stop)
	t.Logf("%d writes ran during the full backup (%d in all)", during, <-stopped)
	if err != nil {
		t.Fatal(err)
	}
	var keys int64
	for _, f := range m.Files {
		keys += f.Keys
	}
	t.Logf("full backup at %s: %d files, %d keys", m.Timestamp, len(m.Files), keys)
	if len(m.Files) < 2 || keys != int64(len(want)) {
		t.Fatalf("full backup: %d files with %d keys, want several files with the %d keys of the scan at %s", len(m.Files), keys, len(want), ts)
	}
	if _, err := Verify(full); err != nil {
		t.Fatal(err)
	}

	dst := startCluster(t, ctx, node.TestClusterOptions{Nodes: 1})
	res, err := Restore(ctx, dst.Conn(0), full)
	if err != nil {
		t.Fatal(err)
	}
	got, gotSum := scanAt(t, ctx, dst.KV(0), nil)
	t.Logf("restored full backup: %d puts; original at %s: %d keys, checksum %s; restored: %d keys, checksum %s", res.Puts, ts, len(want), wantSum, len(got), gotSum)
	sameKeys(t, "full restore", got, want)

	// Incremental at TS2, after more changes (deleting keys that were in
	// the full backup, and new ones).
	ts2 := write(t, ctx, kvc, map[string]string{"k003": "", "k200": "v3-200", "new2": "n2", "k001": "back"})
	want2, wantSum2 := scanAt(t, ctx, kvc, ts2.Proto())
	inc := filepath.Join(dir, "inc1")
	m2, err := Backup(ctx, src.Conn(2), Options{Dir: inc, AsOf: ts2, IncrementalFrom: full, FileBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var incKeys, incDeleted int64
	for _, f := range m2.Files {
		incKeys, incDeleted = incKeys+f.Keys, incDeleted+f.Deleted
	}
	t.Logf("incremental at %s from %s: %d files, %d versions (%d deletions)", m2.Timestamp, m.Timestamp, len(m2.Files), incKeys, incDeleted)
	// Exactly the keys whose value changed between ts and ts2, and those
	// deleted (no key was deleted and recreated, or written twice with
	// one value, in between).
	at1, at2 := pairs(want), pairs(want2)
	var changed, deleted int64
	for k, v := range at2 {
		if old, ok := at1[k]; !ok || old != v {
			changed++
		}
	}
	for k := range at1 {
		if _, ok := at2[k]; !ok {
			deleted++
		}
	}
	if incDeleted != deleted || incKeys != changed+deleted || deleted < 3 {
		t.Fatalf("incremental holds %d versions with %d deletions: want the %d changed and %d deleted keys since %s", incKeys, incDeleted, changed, deleted, ts)
	}
	// The base's protection was released, the incremental's is held.
	prots, err := rspb.NewBackupClient(src.Conn(0)).ListProtections(ctx, &rspb.ListProtectionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(prots.Records) != 1 || prots.Records[0].Id != m2.ProtectionID {
		t.Fatalf("protection records %v, want only the incremental's %s", prots.Records, m2.ProtectionID)
	}
	dst2 := startCluster(t, ctx, node.TestClusterOptions{Nodes: 1})
	res2, err := Restore(ctx, dst2.Conn(0), inc)
	if err != nil {
		t.Fatal(err)
	}
	got2, gotSum2 := scanAt(t, ctx, dst2.KV(0), nil)
	t.Logf("restored chain %v: %d puts, %d deletes; original at %s: %d keys, checksum %s; restored: %d keys, checksum %s",
		res2.Chain, res2.Puts, res2.Deletes, ts2, len(want2), wantSum2, len(got2), gotSum2)
	sameKeys(t, "incremental restore", got2, want2)

	// Bad input.
	_, err = kvc.Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Export{Export: &rspb.ExportRequest{EndTs: ts.Proto()}}}}})
	wantCode(t, "export through the KV service", err, codes.InvalidArgument, "internal request")
	_, err = rspb.NewBackupClient(src.Conn(0)).Protect(ctx, &rspb.ProtectRequest{Timestamp: &rspb.Timestamp{WallTime: time.Now().Add(time.Hour).UnixNano()}})
	wantCode(t, "protect a timestamp an hour ahead", err, codes.InvalidArgument, "in the future")
	_, err = Restore(ctx, dst.Conn(0), full)
	wantCode(t, "restore into a cluster with data", err, codes.FailedPrecondition, "has user data")
	_, err = Backup(ctx, src.Conn(0), Options{Dir: full})
	wantCode(t, "backup into a non-empty directory", err, codes.InvalidArgument, "is not empty")
	notBackup := t.TempDir()
	_, err = Backup(ctx, src.Conn(0), Options{Dir: filepath.Join(dir, "x"), IncrementalFrom: notBackup})
	wantCode(t, "incremental from a directory that is no backup", err, codes.InvalidArgument, "is not a backup")
	_, err = Backup(ctx, src.Conn(0), Options{Dir: filepath.Join(dir, "y"), IncrementalFrom: inc, AsOf: ts})
	wantCode(t, "incremental not above its base", err, codes.InvalidArgument, "is not below")
	for _, d := range []string{"x", "y"} {
		if _, err := os.Stat(filepath.Join(dir, d)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("refused backup created %s (%v)", d, err)
		}
	}
	prots, err = rspb.NewBackupClient(src.Conn(0)).ListProtections(ctx, &rspb.ListProtectionsRequest{})
	if err != nil || len(prots.Records) != 1 {
		t.Fatalf("refused backups changed the protection records: %v, %v", prots.GetRecords(), err)
	}

	// A corrupted, a truncated and a missing data file are named by
	// verify and by restore (into an empty cluster, which stays empty).
	dst3 := startCluster(t, ctx, node.TestClusterOptions{Nodes: 1})
	name := m.Files[1].Name
	path := filepath.Join(full, name)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what, want string
		edit       func() error
	}{
		{"flipped byte", "corrupted", func() error {
			b := append([]byte(nil), orig...)
			b[len(b)/2] ^= 0x01
			return os.WriteFile(path, b, 0o644)
		}},
		{"truncated", "truncated", func() error { return os.WriteFile(path, orig[:len(orig)-7], 0o644) }},
		{"missing", "missing", func() error { return os.Remove(path) }},
	} {
		if err := c.edit(); err != nil {
			t.Fatal(err)
		}
		_, verr := Verify(full)
		var fe *FileError
		if !errors.As(verr, &fe) || !strings.Contains(verr.Error(), name) || !strings.Contains(verr.Error(), c.want) {
			t.Fatalf("%s: verify: %v, want an error naming %s as %s", c.what, verr, name, c.want)
		}
		if _, _, cerr := VerifyChain(inc); cerr == nil || cerr.Error() != verr.Error() {
			t.Fatalf("%s: verifying the chain: %v, want %v", c.what, cerr, verr)
		}
		_, rerr := Restore(ctx, dst3.Conn(0), inc) // the chain includes the full backup
		if rerr == nil || !strings.Contains(rerr.Error(), name) || !strings.Contains(rerr.Error(), c.want) {
			t.Fatalf("%s: restore: %v, want an error naming %s", c.what, rerr, name)
		}
		t.Logf("%s: verify: %v; restore: %v", c.what, verr, rerr)
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := scanAt(t, ctx, dst3.KV(0), nil); len(left) != 0 {
		t.Fatalf("refused restores wrote %d keys", len(left))
	}
	if _, err := Verify(full); err != nil {
		t.Fatalf("restored file: %v", err)
	}
	// A chain moved as a whole is still found (beside the last backup).
	moved := t.TempDir()
	for _, d := range []string{full, inc} {
		if err := os.Rename(d, filepath.Join(moved, filepath.Base(d))); err != nil {
			t.Fatal(err)
		}
	}
	dirs, _, err := Chain(filepath.Join(moved, "inc1"))
	if err != nil || len(dirs) != 2 || dirs[0] != filepath.Join(moved, "full") {
		t.Fatalf("moved chain: %v, %v", dirs, err)
	}
}

// TestBackupProtectsFromGC: with a 1 s GC TTL, the GC threshold stops just
// below a backup's protected timestamp (a read there is still served, the
// overwritten version too), so an incremental from it works after GC ran;
// once the chain moved on (its protection released), GC passes it and an
// incremental from the old backup is refused.
func TestBackupProtectsFromGC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tc := startCluster(t, ctx, node.TestClusterOptions{Nodes: 1, InitialSplits: 1, GCTTL: time.Second, GCInterval: 100 * time.Millisecond})
	kvc := tc.KV(0)
	ts1 := write(t, ctx, kvc, map[string]string{"g": "v1", "h": "h1"})
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	if _, err := Backup(ctx, tc.Conn(0), Options{Dir: full, AsOf: ts1}); err != nil {
		t.Fatal(err)
	}
	write(t, ctx, kvc, map[string]string{"g": "v2", "h": ""})
	below := ts1.KV().Prev()
	belowTS := &rspb.Timestamp{WallTime: below.WallTime, Logical: below.Logical}
	start := time.Now()
	timeutil.WaitFor(t, 30*time.Second, "GC to reach the protected timestamp", func() error {
		_, err := kvc.Get(ctx, &rspb.GetRequest{Key: []byte("g"), AsOf: belowTS})
		if status.Code(err) == codes.FailedPrecondition {
			return nil
		}
		if err == nil {
			return errors.New("a read just below the protected timestamp is still served")
		}
		return fmt.Errorf("read just below the protected timestamp: %w", err)
	})
	// GC passes keep running; the threshold stays below ts1.
	time.Sleep(300 * time.Millisecond) // (several GC intervals: what must not happen would have)
	r, err := kvc.Get(ctx, &rspb.GetRequest{Key: []byte("g"), AsOf: ts1.Proto()})
	if err != nil || string(r.GetKv().GetValue()) != "v1" {
		t.Fatalf("read at the protected timestamp: %v, %v; want v1 (GC removed a protected version)", r, err)
	}
	t.Logf("GC reached the protected timestamp after %v; the version at it is still read", time.Since(start).Round(time.Millisecond))
	ts2 := write(t, ctx, kvc, map[string]string{"k": "k1"})
	inc := filepath.Join(dir, "inc")
	m2, err := Backup(ctx, tc.Conn(0), Options{Dir: inc, AsOf: ts2, IncrementalFrom: full})
	if err != nil {
		t.Fatalf("incremental from a protected backup after GC: %v", err)
	}
	if m2.Files[0].Keys != 3 || m2.Files[0].Deleted != 1 {
		t.Fatalf("incremental holds %d versions (%d deleted), want g, h (deleted) and k", m2.Files[0].Keys, m2.Files[0].Deleted)
	}
	// The full backup's protection is released now: GC moves past ts1,
	// and an incremental from the full backup is refused.
	timeutil.WaitFor(t, 30*time.Second, "GC to pass the released timestamp", func() error {
		_, err := kvc.Get(ctx, &rspb.GetRequest{Key: []byte("g"), AsOf: ts1.Proto()})
		if status.Code(err) == codes.FailedPrecondition {
			return nil
		}
		if err == nil {
			return errors.New("a read at the released timestamp is still served")
		}
		return fmt.Errorf("read at the released timestamp: %w", err)
	})
	_, err = Backup(ctx, tc.Conn(0), Options{Dir: filepath.Join(dir, "inc2"), AsOf: ts2, IncrementalFrom: full})
	wantCode(t, "incremental from a released backup after GC", err, codes.FailedPrecondition, "GC threshold")
	if _, err := os.Stat(filepath.Join(dir, "inc2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed backup left its directory (%v)", err)
	}
	if existed, _, err := Release(ctx, tc.Conn(0), inc); err != nil || !existed {
		t.Fatalf("release: existed=%v, %v", existed, err)
	}
}

// TestBackupReadsFromFollowers: a backup at a timestamp every replica has
// closed is read from followers (the node's own replica first), not from
// the leaseholders: the follower-read counters grow by at least one export
// per range holding client keys (lease reads are the backup's reads of
// protection records and descriptors).
func TestBackupReadsFromFollowers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tc := startCluster(t, ctx, node.TestClusterOptions{Nodes: 3, ClosedTimestampTarget: 300 * time.Millisecond})
	kvs := map[string]string{}
	for _, k := range []string{"A", "Z", "a", "m", "z", "0"} {
		kvs[k] = "v-" + k
	}
	ts := write(t, ctx, tc.KV(0), kvs)
	rs, err := rspb.NewAdminClient(tc.Conn(0)).Ranges(ctx, &rspb.RangesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, r := range rs.Ranges { // the ranges holding client keys
		d := r.RangeDescriptor
		if len(d.EndKey) == 0 || bytes.Compare(d.EndKey, keys.UserPrefix) > 0 {
			ids = append(ids, d.RangeId)
		}
	}
	for i := 0; i < tc.NumNodes(); i++ {
		timeutil.WaitFor(t, 30*time.Second, "every replica to close the backup timestamp", func() error {
			for _, id := range ids {
				if c := tc.Node(i).Store().ClosedTimestamp(id); c.Less(ranges.TSFromProto(ts.Proto())) {
					return fmt.Errorf("n%d r%d closed %s, backup at %s", i+1, id, c, ts)
				}
			}
			return nil
		})
	}
	reads := func() (lease, follower int64) {
		for i := 0; i < tc.NumNodes(); i++ {
			for _, id := range ids {
				l, f := tc.Node(i).Store().ReplicaReads(id)
				lease, follower = lease+l, follower+f
			}
		}
		return lease, follower
	}
	l0, f0 := reads()
	m, err := Backup(ctx, tc.Conn(1), Options{Dir: filepath.Join(t.TempDir(), "b"), AsOf: ts})
	if err != nil {
		t.Fatal(err)
	}
	l1, f1 := reads()
	t.Logf("backup at %s of %d ranges (%d files): %d follower reads, %d lease reads", m.Timestamp, len(ids), len(m.Files), f1-f0, l1-l0)
	if f1-f0 < int64(len(ids)) {
		t.Fatalf("the backup made %d follower reads over %d ranges (and %d lease reads): it should read every range from a follower", f1-f0, len(ids), l1-l0)
	}
}
