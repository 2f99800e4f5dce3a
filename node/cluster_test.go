package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

func startCluster(t *testing.T, opts TestClusterOptions) *TestCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tc, err := StartTestCluster(ctx, opts)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(tc.Close)
	return tc
}

// freeAddr is a free loopback address (node.FreeAddr; the test fails if
// there is none).
func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// ctxT bounds a whole test's cluster calls (not any one call's latency).
// 60 s: TestReplicaEnforcesLimits (5 MiB of puts, a 60 MB request) ran out
// of 30 s on a machine running make stress and two CI runs at once.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSmoke(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})
	ctx := ctxT(t)
	kv := tc.KV(0)
	for _, k := range []string{"a", "b", "c", "x", "z", "0", "M", "Q"} {
		if _, err := kv.Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte("v-" + k)}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	for i := 0; i < 3; i++ {
		g, err := tc.KV(i).Get(ctx, &rspb.GetRequest{Key: []byte("x")})
		if err != nil || !g.Found || string(g.Kv.Value) != "v-x" {
			t.Fatalf("get via n%d: %v %v", i+1, g, err)
		}
	}
	st, err := kv.Scan(ctx, &rspb.ScanRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := st.Recv()
		if err != nil {
			break
		}
		for _, x := range m.Kvs {
			got = append(got, string(x.Key))
		}
	}
	if fmt.Sprint(got) != "[0 M Q a b c x z]" {
		t.Fatalf("scan: %v", got)
	}
}
