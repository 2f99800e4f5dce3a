package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/security"
)

// TestSecureCluster: against a cluster with mutual TLS the client plugs in
// a client certificate's credentials (security.Manager.ClientCredentials)
// and routes as usual; without them Open fails, saying why.
func TestSecureCluster(t *testing.T) {
	tc := startCluster(t, node.TestClusterOptions{Secure: true})
	root, err := security.NewManager(security.Config{Dir: tc.CertsDir(), User: security.RootUser})
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, tc, WithTransportCredentials(root.ClientCredentials()))
	ctx := ctxT(t)
	for _, k := range testKeys {
		if _, err := db.Put(ctx, []byte(k), []byte("v-"+k)); err != nil {
			t.Fatalf("put %s over TLS: %v", k, err)
		}
	}
	res, err := db.Batch(ctx, new(Batch).Get([]byte("a")).Get([]byte("z")).Scan(nil, nil, KeysOnly()))
	if err != nil || string(res[1].KV.Value) != "v-z" || len(res[2].Rows) != len(testKeys) {
		t.Fatalf("batch over TLS: %+v %v", res, err)
	}
	if st := db.Stats(); st.TransportFailures != 0 {
		t.Fatalf("stats %+v", st)
	}

	// A node's certificate is for node-to-node traffic only.
	nodeCert, err := security.NewManager(security.Config{Dir: tc.CertsDir(), User: security.NodeUser})
	if err != nil {
		t.Fatal(err)
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := Open(octx, addrs(tc), WithTransportCredentials(nodeCert.ClientCredentials())); !errors.Is(err, ErrPermissionDenied) ||
		!strings.Contains(err.Error(), "a node certificate is for node-to-node traffic only") {
		t.Fatalf("open with a node certificate: %v, want PermissionDenied", err)
	}
	// Plaintext against TLS nodes.
	octx, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = Open(octx, addrs(tc), WithRetryPolicy(RetryPolicy{AttemptTimeout: 2 * time.Second}))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "the nodes may require TLS") {
		t.Fatalf("plaintext open of a TLS cluster: %v, want Unavailable explaining TLS", err)
	}
	t.Logf("plaintext open: %v", err)
}
