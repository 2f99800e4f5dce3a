package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestReadiness: /healthz is liveness only (always "ok" while the process
// serves); /readyz and the gRPC health status say whether the node can
// serve: not before init, yes once initialized with its liveness record
// live and every local range having a quorum, and no again once two of the
// three nodes are stopped (naming the range without quorum).
func TestReadiness(t *testing.T) {
	dir := t.TempDir()
	var cfgs []Config
	var addrs []string
	for i := 0; i < 3; i++ {
		ga := freeAddr(t)
		ra := freeAddr(t)
		ha := freeAddr(t)
		cfgs = append(cfgs, Config{StoreDir: filepath.Join(dir, fmt.Sprint("n", i+1)), ListenAddr: ga, RaftAddr: ra, HTTPAddr: ha,
			RaftRTTMillisecond: 20, ElectionRTT: 15, HeartbeatRTT: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		addrs = append(addrs, ga)
	}
	var (
		mu    sync.Mutex
		nodes []*Node
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range nodes {
			if n != nil {
				n.Stop()
			}
		}
	})
	for i := range cfgs {
		cfgs[i].Join = addrs
		n, err := Start(cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		nodes = append(nodes, n)
		mu.Unlock()
	}
	conn, err := grpc.NewClient(addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	httpAddr := nodes[0].HTTPAddr()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	health := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health check %q: %v", service, err)
		}
		return h.Status
	}
	// waitReady polls /readyz until it answers want (200 or 503) with a
	// body containing sub, and the gRPC health of "" and the KV service
	// agree with it.
	waitReady := func(want int, sub string, d time.Duration) string {
		t.Helper()
		wantHealth := healthpb.HealthCheckResponse_SERVING
		if want != http.StatusOK {
			wantHealth = healthpb.HealthCheckResponse_NOT_SERVING
		}
		deadline := time.Now().Add(d)
		for {
			code, body := get("/readyz")
			h0, hkv := health(""), health(rspb.KV_ServiceDesc.ServiceName)
			if code == want && strings.Contains(body, sub) && h0 == wantHealth && hkv == wantHealth {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %s: /readyz = %d %q, health \"\" = %v, KV = %v; want %d containing %q and %v", d, code, body, h0, hkv, want, sub, wantHealth)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Before init: alive, not ready.
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok" {
		t.Fatalf("/healthz before init = %d %q", code, body)
	}
	body := waitReady(http.StatusServiceUnavailable, "not initialized", 10*time.Second)
	t.Logf("before init: /readyz: %s", body)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := rspb.NewAdminClient(conn).Init(ctx, &rspb.InitRequest{InitialSplits: 4}); err != nil {
		t.Fatal(err)
	}
	body = waitReady(http.StatusOK, "ready", 30*time.Second)
	t.Logf("after init: /readyz: %s", body)

	// Stop two of the three nodes: node 0 is alive but cannot serve.
	mu.Lock()
	stop := []*Node{nodes[1], nodes[2]}
	nodes[1], nodes[2] = nil, nil
	mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range stop {
		wg.Add(1)
		go func() { defer wg.Done(); n.Stop() }()
	}
	wg.Wait()
	body = waitReady(http.StatusServiceUnavailable, "no quorum", 30*time.Second)
	t.Logf("2 of 3 nodes stopped: /readyz: %s", body)
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok" {
		t.Fatalf("/healthz with quorum lost = %d %q (liveness: the process is up)", code, body)
	}
}
