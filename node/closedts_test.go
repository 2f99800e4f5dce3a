package node

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rangestore/rangestore/chaos/fault"
	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/internal/metricstest"
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/timeutil"
)

// Closed timestamps, follower reads, read modes and bookmarks (issue 13
// items 3 and 4). The clusters close 200-300 ms behind the clock so that
// causal reads wait little.

// rangeOfKey returns the descriptor and lease of the range holding the
// client key, as node i sees it.
func rangeOfKey(t *testing.T, tc *TestCluster, i int, key string) (*rspb.RangeDescriptor, *rspb.Lease) {
	t.Helper()
	ik := keys.UserKey([]byte(key))
	for _, info := range tc.Node(i).Ranges() {
		d := info.RangeDescriptor
		if d != nil && keys.InSpan(ik, d.StartKey, d.EndKey) {
			return d, info.Lease
		}
	}
	t.Fatalf("no local range of n%d holds %q", i+1, key)
	return nil, nil
}

func followerGet(rangeID uint64, key string, ts kv.Timestamp) *rspb.RangeRequest {
	return &rspb.RangeRequest{RangeId: rangeID, FollowerRead: true, ReadTimestamp: ranges.TSToProto(ts),
		Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.UserKey([]byte(key))}}}}}
}

// TestFollowerReadsBelowClosedTimestamp: after a write, every replica's
// closed timestamp passes it without further writes (side transport) and
// keeps advancing while the range is idle; a follower serves a read at or
// below its closed timestamp from local state (no lease read anywhere),
// and refuses one above it with NOT_CLOSED and its closed timestamp.
func TestFollowerReadsBelowClosedTimestamp(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{ClosedTimestampTarget: 300 * time.Millisecond})
	ctx := ctxT(t)
	put, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte("cts-a"), Value: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	if len(put.Bookmark) == 0 {
		t.Fatal("put returned no bookmark")
	}
	commit := ranges.TSFromProto(put.CommitTimestamp)
	desc, lease := rangeOfKey(t, tc, 0, "cts-a")
	holder := tc.IndexOfNodeID(lease.NodeId)
	for i := 0; i < tc.NumNodes(); i++ {
		timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("n%d's closed timestamp of r%d to pass the write", i+1, desc.RangeId), func() error {
			if c := tc.Node(i).Store().ClosedTimestamp(desc.RangeId); c.Less(commit) {
				return fmt.Errorf("closed %s, write at %s", c, commit)
			}
			return nil
		})
	}
	follower := (holder + 1) % tc.NumNodes()
	fs := tc.Node(follower).Store()
	c1 := fs.ClosedTimestamp(desc.RangeId)
	timeutil.WaitFor(t, 20*time.Second, "the idle range's closed timestamp to advance", func() error {
		if c := fs.ClosedTimestamp(desc.RangeId); c.WallTime < c1.WallTime+int64(200*time.Millisecond) {
			return fmt.Errorf("closed %s, was %s", c, c1)
		}
		return nil
	})
	t.Logf("idle r%d: n%d's closed timestamp went from %s to %s", desc.RangeId, follower+1, c1, fs.ClosedTimestamp(desc.RangeId))

	hs := tc.Node(holder).Store()
	leaseBefore, _ := hs.ReplicaReads(desc.RangeId)
	_, followerBefore := fs.ReplicaReads(desc.RangeId)
	resp := tc.Node(follower).Send(ctx, followerGet(desc.RangeId, "cts-a", commit))
	if resp.Error != nil {
		t.Fatalf("follower read at the write's timestamp: %v", resp.Error)
	}
	if g := resp.Responses[0].GetGet(); !g.Found || string(g.Kv.Value) != "1" {
		t.Fatalf("follower read at the write's timestamp = %v", g)
	}
	resp = tc.Node(follower).Send(ctx, followerGet(desc.RangeId, "cts-a", commit.Prev()))
	if resp.Error != nil || resp.Responses[0].GetGet().Found {
		t.Fatalf("follower read below the write = %v, %v; want not found", resp.Responses, resp.Error)
	}
	// Ahead of the clock by less than a peer's may be, and more than a
	// second above the closed timestamp.
	above := kv.Timestamp{WallTime: time.Now().Add(800 * time.Millisecond).UnixNano()}
	resp = tc.Node(follower).Send(ctx, followerGet(desc.RangeId, "cts-a", above))
	if resp.Error == nil || resp.Error.Code != rspb.RangeError_NOT_CLOSED || resp.Error.ClosedTimestamp == nil {
		t.Fatalf("follower read above the closed timestamp: %v, want NOT_CLOSED with the closed timestamp", resp.Error)
	}
	t.Logf("refused above the closed timestamp: %s", resp.Error.Message)
	if l, _ := hs.ReplicaReads(desc.RangeId); l != leaseBefore {
		t.Errorf("the leaseholder n%d served %d lease reads during follower reads", holder+1, l-leaseBefore)
	}
	if _, f := fs.ReplicaReads(desc.RangeId); f != followerBefore+2 {
		t.Errorf("n%d served %d follower reads, want 2", follower+1, f-followerBefore)
	}

	// A new lease starts above everything the old holder closed: a write
	// under it lands above every closed timestamp any replica saw.
	var closed kv.Timestamp
	for i := 0; i < tc.NumNodes(); i++ {
		if c := tc.Node(i).Store().ClosedTimestamp(desc.RangeId); closed.Less(c) {
			closed = c
		}
	}
	if err := tc.Node(holder).TransferLease(ctx, desc.RangeId, tc.Node(follower).NodeID()); err != nil {
		t.Fatal(err)
	}
	put2, err := tc.KV(holder).Put(ctx, &rspb.PutRequest{Key: []byte("cts-a"), Value: []byte("2")})
	if err != nil {
		t.Fatal(err)
	}
	if _, l := rangeOfKey(t, tc, follower, "cts-a"); l.NodeId != tc.Node(follower).NodeID() {
		t.Fatalf("lease of r%d after the transfer: %v", desc.RangeId, l)
	}
	if c2 := ranges.TSFromProto(put2.CommitTimestamp); !closed.Less(c2) {
		t.Fatalf("write under the new lease at %s, at or below the old holder's closed timestamp %s", c2, closed)
	}
}

// TestClosedTimestampCarriedByWrites: with the side transport off (an
// hour between rounds), writes alone carry the leaseholder's promise to
// every replica: a follower's closed timestamp passes the first of a
// stream of writes once they have gone on longer than the target.
func TestClosedTimestampCarriedByWrites(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{ClosedTimestampTarget: 300 * time.Millisecond, ClosedTimestampInterval: time.Hour})
	ctx := ctxT(t)
	first, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte("w-0"), Value: []byte("0")})
	if err != nil {
		t.Fatal(err)
	}
	commit := ranges.TSFromProto(first.CommitTimestamp)
	desc, lease := rangeOfKey(t, tc, 0, "w-0")
	follower := (tc.IndexOfNodeID(lease.NodeId) + 1) % tc.NumNodes()
	fs := tc.Node(follower).Store()
	writes := 1
	timeutil.WaitFor(t, 30*time.Second, "the follower's closed timestamp to pass the first write, carried by later writes", func() error {
		if c := fs.ClosedTimestamp(desc.RangeId); !c.Less(commit) {
			return nil
		}
		writes++
		if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte("w-0"), Value: []byte(fmt.Sprint(writes))}); err != nil {
			t.Fatal(err)
		}
		return fmt.Errorf("closed %s, first write at %s", fs.ClosedTimestamp(desc.RangeId), commit)
	})
	resp := tc.Node(follower).Send(ctx, followerGet(desc.RangeId, "w-0", commit))
	if resp.Error != nil || string(resp.Responses[0].GetGet().GetKv().GetValue()) != "0" {
		t.Fatalf("follower read at the first write: %v, %v", resp.Responses, resp.Error)
	}
	t.Logf("r%d: n%d's closed timestamp passed the first write after %d writes, with no side transport", desc.RangeId, follower+1, writes)
}

// TestCausalReadsThroughEveryNode: a client writes through one node and
// reads its key CAUSAL with the write's bookmark through the next one
// (each node serves from its own replica, without the lease): 200 trials,
// none stale. The waits are logged.
func TestCausalReadsThroughEveryNode(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{ClosedTimestampTarget: 200 * time.Millisecond})
	ctx := ctxT(t)
	const trials, workers = 200, 8
	leaseReads := func() (lease, follower int64) {
		for i := 0; i < tc.NumNodes(); i++ {
			for _, info := range tc.Node(i).Ranges() {
				l, f := tc.Node(i).Store().ReplicaReads(info.RangeDescriptor.GetRangeId())
				lease, follower = lease+l, follower+f
			}
		}
		return lease, follower
	}
	_, followerBefore := leaseReads()
	var mu sync.Mutex
	var waits []time.Duration
	stale := 0
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := w; j < trials; j += workers {
				key, val := fmt.Sprintf("causal-%d", w), fmt.Sprintf("v%d", j)
				wn, rn := j%tc.NumNodes(), (j+1)%tc.NumNodes()
				put, err := tc.KV(wn).Put(ctx, &rspb.PutRequest{Key: []byte(key), Value: []byte(val)})
				if err != nil {
					errc <- fmt.Errorf("put via n%d: %w", wn+1, err)
					return
				}
				start := time.Now()
				g, err := tc.KV(rn).Get(ctx, &rspb.GetRequest{Key: []byte(key), ReadMode: rspb.ReadMode_CAUSAL, Bookmarks: [][]byte{put.Bookmark}})
				if err != nil {
					errc <- fmt.Errorf("causal get via n%d: %w", rn+1, err)
					return
				}
				mu.Lock()
				waits = append(waits, time.Since(start))
				if !g.Found || string(g.Kv.Value) != val {
					stale++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	_, followerAfter := leaseReads()
	t.Logf("causal reads: %d trials, %d stale; wait p50 %v p99 %v max %v; follower reads served %d",
		len(waits), stale, waits[len(waits)/2], waits[len(waits)*99/100], waits[len(waits)-1], followerAfter-followerBefore)
	if stale != 0 || len(waits) != trials {
		t.Fatalf("%d of %d causal reads were stale", stale, len(waits))
	}
	if followerAfter-followerBefore < trials/2 {
		t.Errorf("only %d of %d causal reads were follower reads", followerAfter-followerBefore, trials)
	}
}

// TestBoundedStalenessReadsOnFollowers: BOUNDED_STALENESS reads through
// the nodes without the lease are served by their own replicas: the
// leaseholder's replica serves no read; through the leaseholder's node
// they are follower reads too. A staleness bound shorter than the closed
// timestamp lag goes to the leaseholder.
func TestBoundedStalenessReadsOnFollowers(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{ClosedTimestampTarget: 300 * time.Millisecond})
	ctx := ctxT(t)
	put, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte("bs-a"), Value: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	desc, lease := rangeOfKey(t, tc, 0, "bs-a")
	holder := tc.IndexOfNodeID(lease.NodeId)
	commit := ranges.TSFromProto(put.CommitTimestamp)
	for i := 0; i < tc.NumNodes(); i++ {
		timeutil.WaitFor(t, 20*time.Second, "closed timestamps to pass the write", func() error {
			if c := tc.Node(i).Store().ClosedTimestamp(desc.RangeId); c.Less(commit) {
				return fmt.Errorf("n%d closed %s, write at %s", i+1, c, commit)
			}
			return nil
		})
	}
	hs := tc.Node(holder).Store()
	leaseBefore, _ := hs.ReplicaReads(desc.RangeId)
	const reads = 30
	var staleness []time.Duration
	for j := 0; j < reads; j++ {
		i := j % tc.NumNodes()
		g, err := tc.KV(i).Get(ctx, &rspb.GetRequest{Key: []byte("bs-a"), ReadMode: rspb.ReadMode_BOUNDED_STALENESS, MaxStaleness: durationpb.New(5 * time.Second)})
		if err != nil || !g.Found || string(g.Kv.Value) != "1" {
			t.Fatalf("bounded staleness get via n%d = %v, %v", i+1, g, err)
		}
		staleness = append(staleness, time.Duration(time.Now().UnixNano()-tc.Node(i).Store().ClosedTimestamp(desc.RangeId).WallTime))
	}
	if l, _ := hs.ReplicaReads(desc.RangeId); l != leaseBefore {
		t.Fatalf("the leaseholder n%d served %d lease reads for bounded staleness reads", holder+1, l-leaseBefore)
	}
	var served float64
	for i := 0; i < tc.NumNodes(); i++ {
		reg := tc.Node(i).Registry()
		served += metricstest.Sum(t, reg, "rangestore_follower_reads_total", nil)
		t.Logf("n%d: rangestore_replica_closed_timestamp_lag_seconds %.3f", i+1, metricstest.Sum(t, reg, "rangestore_replica_closed_timestamp_lag_seconds", nil))
	}
	if served < reads {
		t.Fatalf("rangestore_follower_reads_total = %v over the nodes after %d follower reads", served, reads)
	}
	sort.Slice(staleness, func(i, j int) bool { return staleness[i] < staleness[j] })
	t.Logf("bounded staleness: %d reads, none at the leaseholder's lease; closed timestamp lag at the serving node p50 %v max %v", reads, staleness[reads/2], staleness[reads-1])
	// Fresher than any closed timestamp: the leaseholder serves it.
	g, err := tc.KV(holder).Get(ctx, &rspb.GetRequest{Key: []byte("bs-a"), ReadMode: rspb.ReadMode_BOUNDED_STALENESS, MaxStaleness: durationpb.New(time.Millisecond)})
	if err != nil || !g.Found {
		t.Fatalf("bounded staleness get with 1 ms: %v, %v", g, err)
	}
	if l, _ := hs.ReplicaReads(desc.RangeId); l != leaseBefore+1 {
		t.Fatalf("a 1 ms staleness bound made %d lease reads, want 1", l-leaseBefore)
	}
}

// TestReadModeBadInput: malformed, foreign and future bookmarks, a
// non-positive or missing max_staleness, fields of another read mode and a
// read mode on a batch with writes are INVALID_ARGUMENT naming the field,
// and change nothing.
func TestReadModeBadInput(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{Nodes: 1, ClosedTimestampTarget: 300 * time.Millisecond})
	ctx := ctxT(t)
	kvc := tc.KV(0)
	put, err := kvc.Put(ctx, &rspb.PutRequest{Key: []byte("bad"), Value: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	cid := tc.Node(0).ClusterID()
	future := gateway.EncodeBookmark(cid, kv.Timestamp{WallTime: time.Now().Add(time.Hour).UnixNano()})
	corrupt := append([]byte(nil), put.Bookmark...)
	corrupt[5] ^= 0xff
	get := func(mode rspb.ReadMode) *rspb.GetRequest {
		return &rspb.GetRequest{Key: []byte("bad"), ReadMode: mode}
	}
	with := func(g *rspb.GetRequest, f func(*rspb.GetRequest)) *rspb.GetRequest { f(g); return g }
	cases := []struct {
		name  string
		req   *rspb.GetRequest
		field string
	}{
		{"malformed bookmark", with(get(rspb.ReadMode_CAUSAL), func(g *rspb.GetRequest) { g.Bookmarks = [][]byte{[]byte("not a bookmark")} }), "bookmarks[0]"},
		{"corrupted bookmark", with(get(rspb.ReadMode_CAUSAL), func(g *rspb.GetRequest) { g.Bookmarks = [][]byte{put.Bookmark, corrupt} }), "bookmarks[1]"},
		{"foreign bookmark", with(get(rspb.ReadMode_CAUSAL), func(g *rspb.GetRequest) {
			g.Bookmarks = [][]byte{gateway.EncodeBookmark("another-cluster", ranges.TSFromProto(put.CommitTimestamp))}
		}), "bookmarks[0]"},
		{"future bookmark", with(get(rspb.ReadMode_CAUSAL), func(g *rspb.GetRequest) { g.Bookmarks = [][]byte{future} }), "bookmarks[0]"},
		{"negative bookmark timeout", with(get(rspb.ReadMode_CAUSAL), func(g *rspb.GetRequest) { g.BookmarkTimeout = durationpb.New(-time.Second) }), "bookmark_timeout"},
		{"zero max staleness", with(get(rspb.ReadMode_BOUNDED_STALENESS), func(g *rspb.GetRequest) { g.MaxStaleness = durationpb.New(0) }), "max_staleness"},
		{"negative max staleness", with(get(rspb.ReadMode_BOUNDED_STALENESS), func(g *rspb.GetRequest) { g.MaxStaleness = durationpb.New(-time.Second) }), "max_staleness"},
		{"missing max staleness", get(rspb.ReadMode_BOUNDED_STALENESS), "max_staleness"},
		{"bookmarks on a strong read", with(get(rspb.ReadMode_STRONG), func(g *rspb.GetRequest) { g.Bookmarks = [][]byte{put.Bookmark} }), "bookmarks"},
		{"as_of with bounded staleness", with(get(rspb.ReadMode_BOUNDED_STALENESS), func(g *rspb.GetRequest) {
			g.MaxStaleness, g.AsOf = durationpb.New(time.Second), put.CommitTimestamp
		}), "as_of"},
		{"unknown read mode", get(rspb.ReadMode(7)), "read_mode"},
	}
	for _, c := range cases {
		_, err := kvc.Get(ctx, c.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", c.name, err, c.field)
		} else {
			t.Logf("%s: %v", c.name, status.Convert(err).Message())
		}
	}
	_, err = kvc.Batch(ctx, &rspb.BatchRequest{ReadMode: rspb.ReadMode_CAUSAL, Bookmarks: [][]byte{put.Bookmark},
		Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("bad"), Value: []byte("2")}}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "read_mode") {
		t.Errorf("causal batch with a write: %v, want InvalidArgument naming read_mode", err)
	}
	_, err = kvc.Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: get(rspb.ReadMode_CAUSAL)}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "requests[0].read_mode") {
		t.Errorf("read mode inside a batch: %v, want InvalidArgument naming requests[0].read_mode", err)
	}
	st, err := kvc.Scan(ctx, &rspb.ScanRequest{ReadMode: rspb.ReadMode_BOUNDED_STALENESS})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "max_staleness") {
		t.Errorf("scan without max_staleness: %v, want InvalidArgument naming max_staleness", err)
	}
	// Nothing changed; a good bookmark still reads the write, and a
	// batch's bookmark covers its writes.
	g, err := kvc.Get(ctx, &rspb.GetRequest{Key: []byte("bad"), ReadMode: rspb.ReadMode_CAUSAL, Bookmarks: [][]byte{put.Bookmark}})
	if err != nil || !g.Found || string(g.Kv.Value) != "1" {
		t.Fatalf("causal get after the bad input = %v, %v; want 1", g, err)
	}
	b, err := kvc.Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{
		{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: []byte("bad"), Value: []byte("3")}}},
		{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: []byte("bad-n"), Delta: 1}}}}})
	if err != nil || len(b.Bookmark) == 0 || len(b.Responses[0].GetPut().Bookmark) == 0 {
		t.Fatalf("batch of writes: %v, %v; want bookmarks", b, err)
	}
	sc, err := kvc.Scan(ctx, &rspb.ScanRequest{StartKey: []byte("bad"), EndKey: []byte("bad-z"), ReadMode: rspb.ReadMode_CAUSAL, Bookmarks: [][]byte{b.Bookmark}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		chunk, err := sc.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("causal scan: %v", err)
			}
			break
		}
		for _, x := range chunk.Kvs {
			got = append(got, string(x.Key)+"="+string(x.Value))
		}
	}
	if strings.Join(got, ",") != "bad=3,bad-n=1" {
		t.Fatalf("causal scan with the batch's bookmark = %v", got)
	}
}

// TestFollowerReadOnNonVoter: a non-voter (added through ChangeReplicas and
// held before its promotion) adopts the closed timestamps of the side
// transport and serves follower reads at or below them.
func TestFollowerReadOnNonVoter(t *testing.T) {
	reached, release := make(chan struct{}), make(chan struct{})
	var once, relOnce sync.Once
	tc := startCluster(t, TestClusterOptions{Nodes: 4, InitialSplits: 1, SplitCheckInterval: time.Hour, ClosedTimestampTarget: 300 * time.Millisecond,
		CrashPoint: func(_ int, name string) {
			if name == "replica-change-raft-promote" {
				once.Do(func() { close(reached) })
				<-release
			}
		}})
	unblock := func() { relOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the cluster closes (cleanups run last-in first)
	ctx := ctxT(t)
	putKeys(t, tc, 0, "k", 5)
	put, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte("k-nv"), Value: []byte("nv")})
	if err != nil {
		t.Fatal(err)
	}
	commit := ranges.TSFromProto(put.CommitTimestamp)
	d := rangeOf(tc, "k-nv")
	add := missingNode(t, tc, d)
	addID := tc.Node(add).NodeID()
	done := make(chan error, 1)
	go func() {
		_, err := tc.Node(0).ChangeReplicas(ctx, d.RangeId, []uint64{addID}, nil)
		done <- err
	}()
	select {
	case <-reached:
	case err := <-done:
		t.Fatalf("the replica change ended before promoting: %v", err)
	case <-ctx.Done():
		t.Fatal("the non-voter never caught up")
	}
	nd := tc.Node(add).Store().Descriptor(d.RangeId)
	if got := nodesOf(nd, rspb.ReplicaType_NON_VOTER); len(got) != 1 || got[0] != addID {
		t.Fatalf("n%d's descriptor of r%d: %v, want n%d a non-voter", addID, d.RangeId, nd, addID)
	}
	timeutil.WaitFor(t, 20*time.Second, "the non-voter's closed timestamp to pass the write", func() error {
		if c := tc.Node(add).Store().ClosedTimestamp(d.RangeId); c.Less(commit) {
			return fmt.Errorf("closed %s, write at %s", c, commit)
		}
		return nil
	})
	resp := tc.Node(add).Send(ctx, followerGet(d.RangeId, "k-nv", commit))
	if resp.Error != nil || !resp.Responses[0].GetGet().Found || string(resp.Responses[0].GetGet().Kv.Value) != "nv" {
		t.Fatalf("follower read on the non-voter n%d: %v, %v", addID, resp.Responses, resp.Error)
	}
	if _, f := tc.Node(add).Store().ReplicaReads(d.RangeId); f != 1 {
		t.Fatalf("the non-voter counted %d follower reads, want 1", f)
	}
	unblock()
	if err := <-done; err != nil {
		t.Fatalf("the replica change after the reads: %v", err)
	}
}

// TestCausalReadTimesOut: a follower cut off from the leaseholder cannot
// see its closed timestamp pass a new write's bookmark: a causal read
// through it waits bookmark_timeout and fails UNAVAILABLE with an
// ErrorInfo reason BOOKMARK_TIMEOUT.
func TestCausalReadTimesOut(t *testing.T) {
	net := fault.NewNetwork()
	tc := startCluster(t, TestClusterOptions{Network: net, ClosedTimestampTarget: time.Second})
	ctx := ctxT(t)
	if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte("to"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	desc, lease := rangeOfKey(t, tc, 0, "to")
	holder := tc.IndexOfNodeID(lease.NodeId)
	f := (holder + 1) % tc.NumNodes()
	// f's router knows the range before it is cut off.
	if _, err := tc.KV(f).Get(ctx, &rspb.GetRequest{Key: []byte("to")}); err != nil {
		t.Fatal(err)
	}
	net.Isolate(f, []int{0, 1, 2})
	defer net.Heal()
	put, err := tc.KV(holder).Put(ctx, &rspb.PutRequest{Key: []byte("to"), Value: []byte("2")})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = tc.KV(f).Get(ctx, &rspb.GetRequest{Key: []byte("to"), ReadMode: rspb.ReadMode_CAUSAL, Bookmarks: [][]byte{put.Bookmark},
		BookmarkTimeout: durationpb.New(3 * time.Second)})
	st := status.Convert(err)
	reason := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.Reason
		}
	}
	if st.Code() != codes.Unavailable || reason != "BOOKMARK_TIMEOUT" {
		t.Fatalf("causal read on a cut-off follower: %v (reason %q), want Unavailable with reason BOOKMARK_TIMEOUT", err, reason)
	}
	t.Logf("after %v: %s", time.Since(start).Round(time.Millisecond), st.Message())

	// Once f's closed timestamp lags more than the target and the whole
	// budget, f redirects at once (wait-or-redirect), and the leaseholder,
	// cut off from f, cannot answer: the read still ends with
	// BOOKMARK_TIMEOUT within the bookmark timeout, not at the caller's
	// deadline.
	timeutil.WaitFor(t, 30*time.Second, "f's closed timestamp to lag past target + budget", func() error {
		c := tc.Node(f).Store().ClosedTimestamp(desc.RangeId)
		if lag := time.Duration(time.Now().UnixNano() - c.WallTime); lag < 5*time.Second {
			return fmt.Errorf("lag %v", lag)
		}
		return nil
	})
	start = time.Now()
	_, err = tc.KV(f).Get(ctx, &rspb.GetRequest{Key: []byte("to"), ReadMode: rspb.ReadMode_CAUSAL, Bookmarks: [][]byte{put.Bookmark},
		BookmarkTimeout: durationpb.New(3 * time.Second)})
	st = status.Convert(err)
	reason = ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.Reason
		}
	}
	if st.Code() != codes.Unavailable || reason != "BOOKMARK_TIMEOUT" {
		t.Fatalf("causal read on a follower that redirects to an unreachable leaseholder: %v (reason %q), want Unavailable with reason BOOKMARK_TIMEOUT", err, reason)
	}
	t.Logf("redirected, after %v: %s", time.Since(start).Round(time.Millisecond), st.Message())
}

// TestReadBookmarks: a Get that finds a value returns the bookmark of its
// version, a read-only Batch the bookmark of the newest version it read,
// a Get that finds nothing none; carried into a CAUSAL read through
// another node, a read bookmark makes it see that version or a newer one
// (monotonic reads for a session that only read what others wrote).
func TestReadBookmarks(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{ClosedTimestampTarget: 200 * time.Millisecond})
	ctx := ctxT(t)
	cid := tc.Node(0).ClusterID()
	var puts []*rspb.PutResponse
	for _, k := range []string{"rb-a", "rb-b"} {
		p, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("1")})
		if err != nil {
			t.Fatal(err)
		}
		puts = append(puts, p)
	}
	g, err := tc.KV(1).Get(ctx, &rspb.GetRequest{Key: []byte("rb-a")})
	if err != nil || !g.Found {
		t.Fatalf("get rb-a: %v, %v", g, err)
	}
	ts, err := gateway.DecodeBookmark(cid, g.Bookmark)
	if err != nil || ts != ranges.TSFromProto(g.Kv.Timestamp) || ts != ranges.TSFromProto(puts[0].CommitTimestamp) {
		t.Fatalf("get's bookmark %s (%v), want the version's timestamp %s", ts, err, ranges.TSFromProto(g.Kv.Timestamp))
	}
	if g, err := tc.KV(1).Get(ctx, &rspb.GetRequest{Key: []byte("rb-none")}); err != nil || g.Found || len(g.Bookmark) != 0 {
		t.Fatalf("get of a missing key: %v, %v; want no bookmark", g, err)
	}
	b, err := tc.KV(2).Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{
		{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("rb-b")}}},
		{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: []byte("rb-a")}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := gateway.DecodeBookmark(cid, b.Bookmark); err != nil || ts != ranges.TSFromProto(puts[1].CommitTimestamp) {
		t.Fatalf("read-only batch's bookmark %s (%v), want the newest version's %s", ts, err, ranges.TSFromProto(puts[1].CommitTimestamp))
	}
	// Another writer's newer version, read through n1 (STRONG): a CAUSAL
	// read through every node with that read's bookmark sees it.
	p, err := tc.KV(2).Put(ctx, &rspb.PutRequest{Key: []byte("rb-a"), Value: []byte("2")})
	if err != nil {
		t.Fatal(err)
	}
	g, err = tc.KV(0).Get(ctx, &rspb.GetRequest{Key: []byte("rb-a")})
	if err != nil || string(g.GetKv().GetValue()) != "2" {
		t.Fatalf("strong get after the second write: %v, %v", g, err)
	}
	for i := 0; i < tc.NumNodes(); i++ {
		c, err := tc.KV(i).Get(ctx, &rspb.GetRequest{Key: []byte("rb-a"), ReadMode: rspb.ReadMode_CAUSAL, Bookmarks: [][]byte{g.Bookmark}})
		if err != nil || string(c.GetKv().GetValue()) != "2" {
			t.Fatalf("causal get via n%d with the read's bookmark: %v, %v; want the version written at %s", i+1, c, err, ranges.TSFromProto(p.CommitTimestamp))
		}
	}
}
