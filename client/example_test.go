package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/security"
)

// exampleCluster starts an in-process three-node cluster (ranges split at
// "g" and "p") and returns its node addresses and a stop function.
func exampleCluster() ([]string, func()) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc, err := node.StartTestCluster(ctx, node.TestClusterOptions{SplitKeys: [][]byte{[]byte("g"), []byte("p")}})
	if err != nil {
		log.Fatal(err)
	}
	var addrs []string
	for i := range tc.NumNodes() {
		addrs = append(addrs, tc.Addr(i))
	}
	return addrs, tc.Close
}

// Open a client, write and read keys; every request goes straight to the
// leaseholder of its key's range.
func Example() {
	addrs, stop := exampleCluster()
	defer stop()
	ctx := context.Background()

	db, err := client.Open(ctx, addrs)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	if _, err := db.Put(ctx, []byte("apple"), []byte("red")); err != nil {
		log.Fatal(err)
	}
	kv, err := db.Get(ctx, []byte("apple"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("apple is %s\n", kv.Value)

	_, err = db.Get(ctx, []byte("durian"))
	fmt.Println("durian not found:", errors.Is(err, client.ErrNotFound))

	n, err := db.Increment(ctx, []byte("visits"), 3)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("visits:", n)

	err = db.ConditionalPut(ctx, []byte("apple"), []byte("green"), client.IfValue([]byte("yellow")))
	var cf *client.ConditionFailedError
	if errors.As(err, &cf) {
		fmt.Printf("apple was not yellow but %s\n", cf.ActualValue)
	}
	// Output:
	// apple is red
	// durian not found: true
	// visits: 3
	// apple was not yellow but red
}

// A batch touching three ranges is sent as three commands in parallel;
// its results come back in order. Scans stream range by range.
func ExampleDB_Batch() {
	addrs, stop := exampleCluster()
	defer stop()
	ctx := context.Background()
	db, err := client.Open(ctx, addrs)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	b := new(client.Batch).
		Put([]byte("cherry"), []byte("1")).
		Put([]byte("kiwi"), []byte("2")).
		Put([]byte("plum"), []byte("3")).
		Increment([]byte("kiwi-count"), 1)
	if _, err := db.Batch(ctx, b); err != nil {
		log.Fatal(err)
	}
	res, err := db.Batch(ctx, new(client.Batch).Get([]byte("plum")).Scan([]byte("c"), []byte("m"), client.KeysOnly()))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("plum=%s\n", res[0].KV.Value)
	for _, kv := range res[1].Rows {
		fmt.Println("in [c, m):", string(kv.Key))
	}

	for kv, err := range db.Scan(ctx, nil, nil, client.Reverse(), client.Limit(2)) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("last keys: %s=%s\n", kv.Key, kv.Value)
	}
	// Output:
	// plum=3
	// in [c, m): cherry
	// in [c, m): kiwi
	// in [c, m): kiwi-count
	// last keys: plum=3
	// last keys: kiwi-count=1
}

// A session carries the bookmarks of its writes into its reads, which the
// nearest replica serves once it has caught up with them: the session
// reads its own writes wherever the read lands.
func ExampleSession() {
	addrs, stop := exampleCluster()
	defer stop()
	ctx := context.Background()
	db, err := client.Open(ctx, addrs, client.WithLocality("region=local"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	s := db.NewSession()
	if _, err := s.Put(ctx, []byte("cart"), []byte("3 items")); err != nil {
		log.Fatal(err)
	}
	kv, err := s.Get(ctx, []byte("cart")) // Causal, at the nearest replica
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cart: %s\n", kv.Value)

	// Another session (or process) continues from this one's bookmark.
	next := db.NewSession(s.Bookmark())
	kv, err = next.Get(ctx, []byte("cart"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cart, elsewhere: %s\n", kv.Value)
	// Output:
	// cart: 3 items
	// cart, elsewhere: 3 items
}

// Open a secure cluster's client with a client certificate (made by
// `rangestore cert create-client`), retrying each request for at most 50
// attempts.
func ExampleOpen() {
	ctx := context.Background()
	certs, err := security.NewManager(security.Config{Dir: "certs", User: security.RootUser})
	if err != nil {
		log.Fatal(err)
	}
	db, err := client.Open(ctx, []string{"node1:26257", "node2:26257", "node3:26257"},
		client.WithTransportCredentials(certs.ClientCredentials()),
		client.WithRetryPolicy(client.RetryPolicy{MaxAttempts: 50}),
		client.WithTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
}
