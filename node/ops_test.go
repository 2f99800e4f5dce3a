package node

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"github.com/rangestore/rangestore/timeutil"
)

// TestOps checks health, reflection and the Prometheus series a node serves.
func TestOps(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{HTTP: true})
	ctx := ctxT(t)
	if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.KV(0).Get(ctx, &rspb.GetRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}

	// Readiness follows liveness and Raft leadership, which may lag the
	// first writes on a loaded machine: wait for it, naming what fails.
	timeutil.WaitFor(t, 15*time.Second, "gRPC health SERVING", func() error {
		h, err := healthpb.NewHealthClient(tc.Conn(0)).Check(ctx, &healthpb.HealthCheckRequest{Service: "rangestore.v1.KV"})
		if err != nil {
			return fmt.Errorf("health: %w (readiness: %q)", err, tc.Node(0).Readiness())
		}
		if h.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health: %v (readiness: %q)", h.Status, tc.Node(0).Readiness())
		}
		return nil
	})

	rc, err := reflectionpb.NewServerReflectionClient(tc.Conn(0)).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range rr.GetListServicesResponse().GetService() {
		services = append(services, s.Name)
	}
	for _, want := range []string{"rangestore.v1.KV", "rangestore.v1.Admin", "rangestore.v1.Internal", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(services, " "), want) {
			t.Errorf("reflection lists %v, missing %s", services, want)
		}
	}

	scrape := func(i int) string {
		resp, err := http.Get("http://" + tc.Node(i).HTTPAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	first := scrape(0)
	for _, want := range []string{
		`rangestore_grpc_requests_total{code="OK",method="/rangestore.v1.KV/Put"} 1`,
		`rangestore_grpc_request_seconds_count{method="/rangestore.v1.KV/Get"}`,
		`rangestore_replicas 7`,
		`rangestore_read_index_total `,
	} {
		if !strings.Contains(first, want) {
			t.Errorf("/metrics of n%d lacks %q", tc.Node(0).NodeID(), want)
		}
	}
	// Proposals and lease reads are counted where the lease is.
	all := first + scrape(1) + scrape(2)
	for _, want := range []string{`rangestore_raft_proposals_total{result="ok"}`, `rangestore_replica_reads_total{result="ok"}`,
		`rangestore_lease_reads_total`, `rangestore_leases_total{kind="acquired"}`} {
		if !strings.Contains(all, want) {
			t.Errorf("no node's /metrics has %q", want)
		}
	}

	// Reads are served under the lease: the ReadIndex calls the nodes make
	// (to wake quiesced ranges) do not grow with the reads served.
	total := func(name string) float64 {
		sum := 0.0
		for i := 0; i < tc.NumNodes(); i++ {
			sum += metricValue(t, scrape(i), name)
		}
		return sum
	}
	const reads = 100
	readIndex, leaseReads := total("rangestore_read_index_total"), total("rangestore_lease_reads_total")
	for i := 0; i < reads; i++ {
		if _, err := tc.KV(i%3).Get(ctx, &rspb.GetRequest{Key: []byte("k")}); err != nil {
			t.Fatal(err)
		}
	}
	if got := total("rangestore_lease_reads_total") - leaseReads; got < reads {
		t.Errorf("%d reads, %v served under a lease", reads, got)
	}
	if got := total("rangestore_read_index_total") - readIndex; got >= reads {
		t.Errorf("%d reads made %v ReadIndex calls; the read path makes none", reads, got)
	}
}

// metricValue is the value of the unlabelled series name in a /metrics
// body.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// TestGCThreshold: after GC at a timestamp, as-of reads at or below it are
// refused with FailedPrecondition, and the latest value stays readable.
func TestGCThreshold(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})
	ctx := ctxT(t)
	kvc := tc.KV(0)
	p1, err := kvc.Put(ctx, &rspb.PutRequest{Key: []byte("g"), Value: []byte("v1")})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := kvc.Put(ctx, &rspb.PutRequest{Key: []byte("g"), Value: []byte("v2")})
	if err != nil {
		t.Fatal(err)
	}
	if g, err := kvc.Get(ctx, &rspb.GetRequest{Key: []byte("g"), AsOf: p1.CommitTimestamp}); err != nil || string(g.Kv.GetValue()) != "v1" {
		t.Fatalf("as-of read before GC: %v %v", g, err)
	}
	// Find the range holding user key "g" and collect below p2.
	var rangeID uint64
	for _, d := range tc.Init.Ranges {
		if string(d.StartKey) <= "ug" && "ug" < string(d.EndKey) {
			rangeID = d.RangeId
		}
	}
	threshold := ranges.TSFromProto(p2.CommitTimestamp).Prev()
	// GC runs at the leaseholder; other nodes refuse it.
	collected := 0
	var gcErrs []error
	for i := 0; i < tc.NumNodes(); i++ {
		if err := tc.Node(i).Store().GC(ctx, rangeID, threshold); err != nil {
			gcErrs = append(gcErrs, err)
		} else {
			collected++
		}
	}
	if collected != 1 {
		t.Fatalf("GC succeeded on %d nodes, want exactly the leaseholder; errors: %v", collected, gcErrs)
	}
	_, err = kvc.Get(ctx, &rspb.GetRequest{Key: []byte("g"), AsOf: p1.CommitTimestamp})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "GC threshold") {
		t.Fatalf("as-of read below GC threshold: %v", err)
	}
	g, err := kvc.Get(ctx, &rspb.GetRequest{Key: []byte("g")})
	if err != nil || string(g.Kv.GetValue()) != "v2" {
		t.Fatalf("latest read after GC: %v %v", g, err)
	}
}
