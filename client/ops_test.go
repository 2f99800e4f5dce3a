package client

import (
	"errors"
	"fmt"
	"testing"

	"github.com/rangestore/rangestore/node"
)

// TestOps runs every operation against a cluster of five ranges.
func TestOps(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{})
	db := openDB(t, tc)
	ctx := ctxT(t)
	if n := db.cache.len(); n < 5 {
		t.Fatalf("the cache holds %d ranges after Open, want the cluster's 5 user ranges", n)
	}
	for _, k := range []string{"a", "d", "g", "p", "x"} {
		if _, err := db.Put(ctx, []byte(k), []byte("v-"+k)); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	kv, err := db.Get(ctx, []byte("g"))
	if err != nil || string(kv.Value) != "v-g" || kv.Timestamp.IsZero() {
		t.Fatalf("get g: %+v %v", kv, err)
	}
	if _, err := db.Get(ctx, []byte("nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of a missing key: %v, want ErrNotFound", err)
	}
	if existed, err := db.Delete(ctx, []byte("d")); err != nil || !existed {
		t.Fatalf("delete d: %v %v", existed, err)
	}
	if err := db.ConditionalPut(ctx, []byte("a"), []byte("new"), IfValue([]byte("wrong"))); !errors.Is(err, ErrConditionFailed) {
		t.Fatalf("cput with a wrong expectation: %v", err)
	} else if cf, ok := errors.AsType[*ConditionFailedError](err); !ok || string(cf.ActualValue) != "v-a" {
		t.Fatalf("cput failure: %#v", err)
	}
	if err := db.ConditionalPut(ctx, []byte("a"), []byte("new"), IfValue([]byte("v-a"))); err != nil {
		t.Fatalf("cput: %v", err)
	}
	if err := db.ConditionalPut(ctx, []byte("b"), []byte("1"), IfAbsent()); err != nil {
		t.Fatalf("cput if absent: %v", err)
	}
	for i := 1; i <= 3; i++ {
		if v, err := db.Increment(ctx, []byte("counter"), 2); err != nil || v != int64(2*i) {
			t.Fatalf("increment %d: %d %v", i, v, err)
		}
	}
	var got []string
	for kv, err := range db.Scan(ctx, nil, nil) {
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		got = append(got, fmt.Sprintf("%s=%s", kv.Key, kv.Value))
	}
	if want := "[a=new b=1 counter=6 g=v-g p=v-p x=v-x]"; fmt.Sprint(got) != want {
		t.Fatalf("scan: %v, want %s", got, want)
	}
	n, err := db.DeleteRange(ctx, []byte("b"), []byte("q"))
	if err != nil || n != 4 {
		t.Fatalf("delete range [b, q): %d %v, want 4 (b, counter, g, p)", n, err)
	}

	// After Close every call fails with Closed (and the leak check of
	// TestMain finds nothing of the client left running).
	db.Close()
	db.Close()
	if _, err := db.Get(ctx, []byte("a")); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
	for _, err := range db.Scan(ctx, nil, nil) {
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("scan after close: %v", err)
		}
	}
}
