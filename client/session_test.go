package client

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rangestore/rangestore/internal/metricstest"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/timeutil"
)

// TestCausalReadsAtNearestReplica: a client in region c reads Causal
// (a Session's default, or WithBookmarks) from the replica in its region,
// not from the leaseholder in region a, and sees every write the
// bookmarks stand for; a BoundedStaleness read goes there too.
func TestCausalReadsAtNearestReplica(t *testing.T) {
	loc := func(r string) []*rspb.LocalityTier { return []*rspb.LocalityTier{{Key: "region", Value: r}} }
	tc := startCluster(t, node.TestClusterOptions{Localities: [][]*rspb.LocalityTier{loc("a"), loc("b"), loc("c")},
		ClosedTimestampTarget: 300 * time.Millisecond})
	db := openDB(t, tc, WithLocality("region=c"))
	ctx := ctxT(t)
	e := db.cache.lookup([]byte("k"))
	admin := rspb.NewAdminClient(tc.Conn(0))
	timeutil.WaitFor(t, 20*time.Second, fmt.Sprintf("lease of r%d on n1", e.rangeID), func() error {
		_, err := admin.TransferLease(ctx, &rspb.TransferLeaseRequest{RangeId: e.rangeID, TargetNodeId: tc.Node(0).NodeID()})
		return err
	})
	followerReads := func() float64 {
		return metricstest.Sum(t, tc.Node(2).Registry(), "rangestore_follower_reads_total", nil)
	}

	// Right after the lease moved, n3's replica may have no closed
	// timestamp under the new lease yet and sends causal reads to the
	// leaseholder (wait-or-redirect); wait until it serves one itself.
	timeutil.WaitFor(t, 30*time.Second, "n3's replica serving a causal read itself", func() error {
		w, err := db.Put(ctx, []byte("k"), []byte("warm"))
		if err != nil {
			return err
		}
		before := followerReads()
		if _, err := db.Get(ctx, []byte("k"), WithBookmarks(w.Bookmark)); err != nil {
			return err
		}
		if followerReads() == before {
			return errors.New("the read was served elsewhere")
		}
		return nil
	})
	s := db.NewSession()
	for i := range 5 {
		v := fmt.Sprint(i)
		if _, err := s.Put(ctx, []byte("k"), []byte(v)); err != nil {
			t.Fatal(err)
		}
		before := followerReads()
		kv, err := s.Get(ctx, []byte("k"))
		if err != nil || string(kv.Value) != v {
			t.Fatalf("session read %d: %q %v, want its own write %q", i, kv.Value, err, v)
		}
		if followerReads() == before {
			t.Fatalf("session read %d was not served by n3's replica", i)
		}
	}

	// A bookmark handed from a write to a read elsewhere.
	w, err := db.Put(ctx, []byte("k"), []byte("handed"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := db.Get(ctx, []byte("k"), WithBookmarks(w.Bookmark))
	if err != nil || string(kv.Value) != "handed" {
		t.Fatalf("read with the write's bookmark: %q %v", kv.Value, err)
	}
	other := db.NewSession(w.Bookmark)
	if kv, err := other.Get(ctx, []byte("k")); err != nil || string(kv.Value) != "handed" {
		t.Fatalf("session started from the write's bookmark: %q %v", kv.Value, err)
	}
	before := followerReads()
	if _, err := db.Get(ctx, []byte("k"), BoundedStaleness(time.Minute)); err != nil {
		t.Fatalf("bounded staleness read: %v", err)
	}
	if followerReads() == before {
		t.Fatal("the bounded staleness read was not served by n3's replica")
	}
}
