package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/gateway"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/leases"
	"github.com/rangestore/rangestore/proto/rspb"
)

// badScanStream is a minimal server stream for calling KVServer.Scan
// directly.
type badScanStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent int
}

func (s *badScanStream) Context() context.Context      { return s.ctx }
func (s *badScanStream) Send(*rspb.ScanResponse) error { s.sent++; return nil }

func badGetU(k []byte, asOf *rspb.Timestamp) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: k, AsOf: asOf}}}
}

func badPutU(k, v []byte) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: k, Value: v}}}
}

func badScanU(r *rspb.ScanRequest) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: r}}
}

// TestKVBadInput checks the status code and message of every kind of bad
// input (plus the accepted boundary cases next to them).
func TestKVBadInput(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})
	kvc := tc.KV(0)
	internal := rspb.NewInternalClient(tc.Conn(0))

	var userRange *rspb.RangeDescriptor // the range starting at client key "C"
	for _, d := range tc.Init.Ranges {
		if bytes.Equal(d.StartKey, keys.UserKey([]byte("C"))) {
			userRange = d
		}
	}
	if userRange == nil {
		t.Fatalf("no range starts at \"C\": %v", tc.Init.Ranges)
	}

	big := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	key := []byte("D-bad")
	future := func() *rspb.Timestamp {
		return &rspb.Timestamp{WallTime: time.Now().Add(time.Hour).UnixNano()}
	}
	batch := func(reqs ...*rspb.RequestUnion) func(context.Context) error {
		return func(ctx context.Context) error {
			r, err := kvc.Batch(ctx, &rspb.BatchRequest{Requests: reqs})
			if err == nil && len(r.Responses) != len(reqs) {
				return status.Errorf(codes.Internal, "test: %d responses for %d requests", len(r.Responses), len(reqs))
			}
			return err
		}
	}
	scan := func(r *rspb.ScanRequest) func(context.Context) error {
		return func(ctx context.Context) error {
			_, _, err := kvtScanErr(ctx, kvc, r)
			return err
		}
	}
	gets := func(n int) []*rspb.RequestUnion {
		out := make([]*rspb.RequestUnion, n)
		for i := range out {
			out[i] = badGetU([]byte(fmt.Sprintf("A-%04d", i)), nil)
		}
		return out
	}
	// rangeCall sends a request straight to a replica through the Internal
	// service, checks the replica's error code and converts it the way the
	// gateway does.
	rangeCall := func(req *rspb.RangeRequest, want rspb.RangeError_Code) func(context.Context) error {
		return func(ctx context.Context) error {
			resp, err := internal.RangeBatch(ctx, req)
			if err != nil {
				return err
			}
			if resp.Error == nil || resp.Error.Code != want {
				return status.Errorf(codes.Internal, "test: want range error %v, got %v", want, resp)
			}
			return gateway.ToStatus(&gateway.RangeError{E: resp.Error})
		}
	}
	drained := gateway.NewKVServer(nil, gateway.DefaultLimits, leases.NewClock(nil, 0), func() uint64 { return 7 })
	drained.Drain()

	rows := []struct {
		name string
		call func(ctx context.Context) error
		code codes.Code
		msg  string
	}{
		// Empty keys.
		{"get empty key", func(ctx context.Context) error {
			_, err := kvc.Get(ctx, &rspb.GetRequest{})
			return err
		}, codes.InvalidArgument, "empty key"},
		{"put empty key", func(ctx context.Context) error {
			_, err := kvc.Put(ctx, &rspb.PutRequest{Value: []byte("v")})
			return err
		}, codes.InvalidArgument, "empty key"},
		{"delete empty key", func(ctx context.Context) error {
			_, err := kvc.Delete(ctx, &rspb.DeleteRequest{})
			return err
		}, codes.InvalidArgument, "empty key"},
		{"conditional put empty key", func(ctx context.Context) error {
			_, err := kvc.ConditionalPut(ctx, &rspb.ConditionalPutRequest{Value: []byte("v"), ExpectAbsent: true})
			return err
		}, codes.InvalidArgument, "empty key"},
		{"increment empty key", func(ctx context.Context) error {
			_, err := kvc.Increment(ctx, &rspb.IncrementRequest{Delta: 1})
			return err
		}, codes.InvalidArgument, "empty key"},
		{"batch put empty key", batch(badPutU(key, nil), badPutU(nil, []byte("v"))), codes.InvalidArgument, "empty key"},

		// Size limits, with the largest accepted sizes next to them.
		{"get key over max_key_size", func(ctx context.Context) error {
			_, err := kvc.Get(ctx, &rspb.GetRequest{Key: big(4097)})
			return err
		}, codes.InvalidArgument, "max_key_size"},
		{"put key over max_key_size", func(ctx context.Context) error {
			_, err := kvc.Put(ctx, &rspb.PutRequest{Key: big(4097), Value: []byte("v")})
			return err
		}, codes.InvalidArgument, "max_key_size"},
		{"delete key over max_key_size", func(ctx context.Context) error {
			_, err := kvc.Delete(ctx, &rspb.DeleteRequest{Key: big(4097)})
			return err
		}, codes.InvalidArgument, "max_key_size"},
		{"increment key over max_key_size", func(ctx context.Context) error {
			_, err := kvc.Increment(ctx, &rspb.IncrementRequest{Key: big(4097), Delta: 1})
			return err
		}, codes.InvalidArgument, "max_key_size"},
		{"scan start key over max_key_size", scan(&rspb.ScanRequest{StartKey: big(4097)}), codes.InvalidArgument, "max_key_size"},
		{"scan end key over max_key_size", scan(&rspb.ScanRequest{EndKey: big(4097)}), codes.InvalidArgument, "max_key_size"},
		{"put key of exactly max_key_size", func(ctx context.Context) error {
			if _, err := kvc.Put(ctx, &rspb.PutRequest{Key: big(4096), Value: []byte("v")}); err != nil {
				return err
			}
			g, err := kvc.Get(ctx, &rspb.GetRequest{Key: big(4096)})
			if err == nil && (!g.Found || string(g.Kv.Value) != "v") {
				return status.Errorf(codes.Internal, "test: read back %v", g)
			}
			return err
		}, codes.OK, ""},
		{"put value over max_value_size", func(ctx context.Context) error {
			_, err := kvc.Put(ctx, &rspb.PutRequest{Key: key, Value: big(1<<20 + 1)})
			return err
		}, codes.InvalidArgument, "max_value_size"},
		{"conditional put value over max_value_size", func(ctx context.Context) error {
			_, err := kvc.ConditionalPut(ctx, &rspb.ConditionalPutRequest{Key: key, Value: big(1<<20 + 1), ExpectAbsent: true})
			return err
		}, codes.InvalidArgument, "max_value_size"},
		{"conditional put expected value over max_value_size", func(ctx context.Context) error {
			_, err := kvc.ConditionalPut(ctx, &rspb.ConditionalPutRequest{Key: key, Value: []byte("v"), ExpectedValue: big(1<<20 + 1)})
			return err
		}, codes.InvalidArgument, "max_value_size"},
		{"put value of exactly max_value_size", func(ctx context.Context) error {
			_, err := kvc.Put(ctx, &rspb.PutRequest{Key: key, Value: big(1 << 20)})
			return err
		}, codes.OK, ""},
		{"batch over max_batch_requests", batch(gets(1001)...), codes.InvalidArgument, "max_batch_requests"},
		{"batch of exactly max_batch_requests", batch(gets(1000)...), codes.OK, ""},
		{"batch over max_batch_bytes", batch(
			badPutU([]byte("A-mb1"), big(1<<20)), badPutU([]byte("A-mb2"), big(1<<20)), badPutU([]byte("A-mb3"), big(1<<20)),
			badPutU([]byte("A-mb4"), big(1<<20)), badPutU([]byte("A-mb5"), big(1<<20)),
		), codes.InvalidArgument, "max_batch_bytes"},
		{"batch one byte over max_batch_bytes", batch(
			badPutU([]byte("A-mb1"), big(1<<20-5)), badPutU([]byte("A-mb2"), big(1<<20-5)), badPutU([]byte("A-mb3"), big(1<<20-5)),
			badPutU([]byte("A-mb4"), big(1<<20-4)),
		), codes.InvalidArgument, "max_batch_bytes"},
		{"batch of exactly max_batch_bytes in one range", batch(
			badPutU([]byte("A-mb1"), big(1<<20-5)), badPutU([]byte("A-mb2"), big(1<<20-5)), badPutU([]byte("A-mb3"), big(1<<20-5)),
			badPutU([]byte("A-mb4"), big(1<<20-5)),
		), codes.OK, ""},

		// Spans and limits.
		{"scan start after end", scan(&rspb.ScanRequest{StartKey: []byte("b"), EndKey: []byte("a")}), codes.InvalidArgument, "is after end key"},
		{"reverse scan start after end", scan(&rspb.ScanRequest{StartKey: []byte("b"), EndKey: []byte("a"), Reverse: true}), codes.InvalidArgument, "is after end key"},
		{"scan negative limit", scan(&rspb.ScanRequest{Limit: -1}), codes.InvalidArgument, "negative limit"},
		{"batch scan start after end", batch(badScanU(&rspb.ScanRequest{StartKey: []byte("b"), EndKey: []byte("a")})), codes.InvalidArgument, "is after end key"},
		{"batch scan negative limit", batch(badScanU(&rspb.ScanRequest{Limit: -5})), codes.InvalidArgument, "negative limit"},
		{"delete range empty end key", func(ctx context.Context) error {
			_, err := kvc.DeleteRange(ctx, &rspb.DeleteRangeRequest{StartKey: []byte("a")})
			return err
		}, codes.InvalidArgument, "empty end key"},
		{"delete range empty start key", func(ctx context.Context) error {
			_, err := kvc.DeleteRange(ctx, &rspb.DeleteRangeRequest{EndKey: []byte("a")})
			return err
		}, codes.InvalidArgument, "empty start key"},
		{"delete range empty span", func(ctx context.Context) error {
			_, err := kvc.DeleteRange(ctx, &rspb.DeleteRangeRequest{})
			return err
		}, codes.InvalidArgument, "empty"},
		{"delete range start after end", func(ctx context.Context) error {
			_, err := kvc.DeleteRange(ctx, &rspb.DeleteRangeRequest{StartKey: []byte("b"), EndKey: []byte("a")})
			return err
		}, codes.InvalidArgument, "is after end key"},
		{"delete range end key over max_key_size", func(ctx context.Context) error {
			_, err := kvc.DeleteRange(ctx, &rspb.DeleteRangeRequest{StartKey: []byte("a"), EndKey: big(4097)})
			return err
		}, codes.InvalidArgument, "max_key_size"},

		// Batch shape.
		{"empty batch", batch(), codes.InvalidArgument, "no requests"},
		{"batch with an empty request", batch(&rspb.RequestUnion{}), codes.InvalidArgument, "empty request"},
		{"batch with an empty request after a valid one", batch(badPutU(key, []byte("v")), &rspb.RequestUnion{}), codes.InvalidArgument, "empty request"},

		// Request semantics.
		{"conditional put with expect_absent and expected_value", func(ctx context.Context) error {
			_, err := kvc.ConditionalPut(ctx, &rspb.ConditionalPutRequest{Key: key, Value: []byte("v"), ExpectAbsent: true, ExpectedValue: []byte("w")})
			return err
		}, codes.InvalidArgument, "mutually exclusive"},
		{"increment of a non-integer", func(ctx context.Context) error {
			if _, err := kvc.Put(ctx, &rspb.PutRequest{Key: []byte("P-word"), Value: []byte("twelve")}); err != nil {
				return err
			}
			_, err := kvc.Increment(ctx, &rspb.IncrementRequest{Key: []byte("P-word"), Delta: 1})
			return err
		}, codes.FailedPrecondition, "not a decimal integer"},
		{"increment overflow", func(ctx context.Context) error {
			if _, err := kvc.Put(ctx, &rspb.PutRequest{Key: []byte("P-min"), Value: []byte("-9223372036854775808")}); err != nil {
				return err
			}
			_, err := kvc.Increment(ctx, &rspb.IncrementRequest{Key: []byte("P-min"), Delta: -1})
			return err
		}, codes.FailedPrecondition, "overflows int64"},

		// Timestamps.
		{"get as_of in the future", func(ctx context.Context) error {
			_, err := kvc.Get(ctx, &rspb.GetRequest{Key: key, AsOf: future()})
			return err
		}, codes.InvalidArgument, "in the future"},
		{"scan as_of in the future", scan(&rspb.ScanRequest{AsOf: future()}), codes.InvalidArgument, "in the future"},
		{"batch get as_of in the future", batch(badGetU(key, nil), badGetU(key, future())), codes.InvalidArgument, "in the future"},
		{"batch scan as_of in the future", batch(badScanU(&rspb.ScanRequest{AsOf: future()})), codes.InvalidArgument, "in the future"},
		{"get as_of empty timestamp", func(ctx context.Context) error {
			_, err := kvc.Get(ctx, &rspb.GetRequest{Key: key, AsOf: &rspb.Timestamp{}})
			return err
		}, codes.InvalidArgument, "not a valid timestamp"},
		{"get as_of negative wall time", func(ctx context.Context) error {
			_, err := kvc.Get(ctx, &rspb.GetRequest{Key: key, AsOf: &rspb.Timestamp{WallTime: -1}})
			return err
		}, codes.InvalidArgument, "not a valid timestamp"},
		{"get as_of negative logical", func(ctx context.Context) error {
			_, err := kvc.Get(ctx, &rspb.GetRequest{Key: key, AsOf: &rspb.Timestamp{WallTime: 1000, Logical: -1}})
			return err
		}, codes.InvalidArgument, "not a valid timestamp"},
		{"scan as_of negative logical", scan(&rspb.ScanRequest{AsOf: &rspb.Timestamp{WallTime: 1000, Logical: -1}}),
			codes.InvalidArgument, "not a valid timestamp"},
		{"get as_of now", func(ctx context.Context) error {
			_, err := kvc.Get(ctx, &rspb.GetRequest{Key: key, AsOf: &rspb.Timestamp{WallTime: time.Now().UnixNano()}})
			return err
		}, codes.OK, ""},

		// Replica-level errors through the Internal service.
		{"unknown range", rangeCall(&rspb.RangeRequest{RangeId: 999, Requests: []*rspb.RequestUnion{badGetU(keys.UserKey(key), nil)}},
			rspb.RangeError_RANGE_NOT_FOUND), codes.NotFound, "r999"},
		{"key outside the range", rangeCall(&rspb.RangeRequest{RangeId: userRange.RangeId, Requests: []*rspb.RequestUnion{badGetU(keys.UserKey([]byte("A")), nil)}},
			rspb.RangeError_RANGE_KEY_MISMATCH), codes.Unavailable, "outside range"},
		{"write outside the range", rangeCall(&rspb.RangeRequest{RangeId: userRange.RangeId, ProposalId: []byte("bad-input-proposal"),
			Requests: []*rspb.RequestUnion{badPutU(keys.UserKey([]byte("A")), []byte("v"))}},
			rspb.RangeError_RANGE_KEY_MISMATCH), codes.Unavailable, "outside range"},
		{"range request without requests", rangeCall(&rspb.RangeRequest{RangeId: userRange.RangeId},
			rspb.RangeError_INVALID_ARGUMENT), codes.InvalidArgument, "empty batch"},
		{"range request with an empty key", rangeCall(&rspb.RangeRequest{RangeId: userRange.RangeId, Requests: []*rspb.RequestUnion{badGetU(nil, nil)}},
			rspb.RangeError_INVALID_ARGUMENT), codes.InvalidArgument, "empty key"},
		{"range request with an empty request", rangeCall(&rspb.RangeRequest{RangeId: userRange.RangeId, Requests: []*rspb.RequestUnion{{}}},
			rspb.RangeError_INVALID_ARGUMENT), codes.InvalidArgument, "empty request"},

		// Shutting down.
		{"drained gateway get", func(ctx context.Context) error {
			_, err := drained.Get(ctx, &rspb.GetRequest{Key: key})
			return err
		}, codes.Unavailable, "n7 is shutting down"},
		{"drained gateway put", func(ctx context.Context) error {
			_, err := drained.Put(ctx, &rspb.PutRequest{Key: key, Value: []byte("v")})
			return err
		}, codes.Unavailable, "shutting down"},
		{"drained gateway batch", func(ctx context.Context) error {
			_, err := drained.Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{badGetU(key, nil)}})
			return err
		}, codes.Unavailable, "shutting down"},
		{"drained gateway scan", func(ctx context.Context) error {
			s := &badScanStream{ctx: ctx}
			err := drained.Scan(&rspb.ScanRequest{}, s)
			if s.sent != 0 {
				return status.Errorf(codes.Internal, "test: drained scan sent %d messages", s.sent)
			}
			return err
		}, codes.Unavailable, "shutting down"},
		{"rejected writes left nothing behind", func(ctx context.Context) error {
			for _, k := range []string{"A-mb5", "P-min-none"} {
				g, err := kvc.Get(ctx, &rspb.GetRequest{Key: []byte(k)})
				if err != nil {
					return err
				}
				if g.Found {
					return status.Errorf(codes.Internal, "test: rejected write of %q is visible: %v", k, g)
				}
			}
			g, err := kvc.Get(ctx, &rspb.GetRequest{Key: []byte("P-word")})
			if err == nil && (!g.Found || string(g.Kv.Value) != "twelve") {
				return status.Errorf(codes.Internal, "test: failed increment changed the value: %v", g)
			}
			return err
		}, codes.OK, ""},
		// Must stay last: stops node index 2.
		{"stopped store", func(ctx context.Context) error {
			n := tc.Node(2)
			tc.StopNode(2)
			resp := n.Send(ctx, &rspb.RangeRequest{RangeId: userRange.RangeId, Requests: []*rspb.RequestUnion{badGetU(keys.UserKey(key), nil)}})
			if resp.Error == nil || resp.Error.Code != rspb.RangeError_UNAVAILABLE {
				return status.Errorf(codes.Internal, "test: want UNAVAILABLE, got %v", resp)
			}
			return gateway.ToStatus(&gateway.RangeError{E: resp.Error})
		}, codes.Unavailable, "shutting down"},
	}

	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			err := row.call(ctxT(t))
			st, ok := status.FromError(err)
			if !ok {
				t.Fatalf("not a gRPC status error: %v", err)
			}
			if st.Code() != row.code || !strings.Contains(st.Message(), row.msg) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), row.code, row.msg)
			}
		})
	}

	// The unknown range maps to NotFound in the gateway's one table.
	if c := status.Code(gateway.ToStatus(&gateway.RangeError{E: &rspb.RangeError{Code: rspb.RangeError_RANGE_NOT_FOUND, Message: "range r999 not found"}})); c != codes.NotFound {
		t.Fatalf("RANGE_NOT_FOUND maps to %v", c)
	}
}

// logBuffer collects a cluster's log lines (safe for concurrent writers).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRangeIDCounterValidated: a range-ID counter set to a value that
// cannot be incremented, or behind the existing range IDs, makes splits
// fail at once with an error naming the counter (not hang until the
// deadline), and the refused split is logged.
func TestRangeIDCounterValidated(t *testing.T) {
	logs := &logBuffer{}
	tc := startCluster(t, TestClusterOptions{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := ctxT(t)
	n := tc.Node(0)
	setCounter := func(v string) {
		t.Helper()
		if _, err := n.router.Send(ctx, []*rspb.RequestUnion{badPutU(keys.RangeIDGeneratorKey, []byte(v))}); err != nil {
			t.Fatalf("setting the range-ID counter to %s: %v", v, err)
		}
	}
	split := func(key string) error {
		sctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		defer cancel()
		_, err := rspb.NewAdminClient(tc.Conn(0)).SplitRange(sctx, &rspb.SplitRangeRequest{Key: []byte(key)})
		return err
	}
	for _, c := range []struct{ value, split, msg string }{
		{"18446744073709551615", "Q1", "range-id"},
		{"9223372036854775807", "Q2", "overflows"},
		{"2", "Q3", "below"},
	} {
		setCounter(c.value)
		start := time.Now()
		err := split(c.split)
		took := time.Since(start)
		if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), c.msg) || took > 5*time.Second {
			t.Fatalf("counter %s: split got %v %q after %s, want FailedPrecondition naming %q at once", c.value, st.Code(), st.Message(), took.Round(time.Millisecond), c.msg)
		}
	}
	if !strings.Contains(logs.String(), "split refused") {
		t.Fatalf("no log line for the refused splits")
	}
	// A sane counter splits again.
	setCounter("1000")
	if err := split("Q4"); err != nil {
		t.Fatalf("split after repairing the counter: %v", err)
	}
}

// leaseholderCall sends a range request through the Internal service of
// each node in turn until one answers other than NOT_LEASEHOLDER (or
// "has no data yet"), with generous message limits on the client side.
func leaseholderCall(ctx context.Context, t *testing.T, tc *TestCluster, req *rspb.RangeRequest) (*rspb.RangeResponse, error) {
	t.Helper()
	for {
		var resp *rspb.RangeResponse
		var err error
		for i := 0; i < tc.NumNodes(); i++ {
			resp, err = rspb.NewInternalClient(tc.Conn(i)).RangeBatch(ctx, req,
				grpc.MaxCallSendMsgSize(128<<20), grpc.MaxCallRecvMsgSize(128<<20))
			if err != nil || resp.Error == nil || (resp.Error.Code != rspb.RangeError_NOT_LEASEHOLDER && resp.Error.Code != rspb.RangeError_UNAVAILABLE) {
				return resp, err
			}
		}
		select {
		case <-ctx.Done():
			return resp, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestReplicaEnforcesLimits: requests arriving at a replica through the
// Internal service (skipping the gateway's checks) are held to the same
// size limits, are refused with InvalidArgument naming the limit and change
// nothing; the gRPC message limit is sized to the limits; read responses
// stay within max_batch_bytes.
func TestReplicaEnforcesLimits(t *testing.T) {
	tc := startCluster(t, TestClusterOptions{})
	ctx := ctxT(t)
	var rd *rspb.RangeDescriptor // the range starting at client key "C"
	for _, d := range tc.Init.Ranges {
		if bytes.Equal(d.StartKey, keys.UserKey([]byte("C"))) {
			rd = d
		}
	}
	big := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	lim := gateway.DefaultLimits
	uk := func(s string) []byte { return keys.UserKey([]byte(s)) }
	write := func(reqs ...*rspb.RequestUnion) *rspb.RangeRequest {
		return &rspb.RangeRequest{RangeId: rd.RangeId, ProposalId: []byte(fmt.Sprintf("limits-%d", time.Now().UnixNano())),
			Timestamp: &rspb.Timestamp{WallTime: time.Now().UnixNano()}, Requests: reqs}
	}
	gets := func(n int) []*rspb.RequestUnion {
		out := make([]*rspb.RequestUnion, n)
		for i := range out {
			out[i] = badGetU(uk(fmt.Sprintf("C-%04d", i)), nil)
		}
		return out
	}
	var manyPuts []*rspb.RequestUnion
	for i := 0; i < 5; i++ {
		manyPuts = append(manyPuts, badPutU(uk(fmt.Sprintf("C-mb%d", i)), big(lim.MaxValueSize)))
	}
	for _, c := range []struct {
		name string
		req  *rspb.RangeRequest
		msg  string
	}{
		{"value over max_value_size", write(badPutU(uk("C-big"), big(lim.MaxValueSize+1))), "max_value_size"},
		{"key over max_key_size", write(badPutU(uk("C-"+string(big(lim.MaxKeySize+64))), []byte("v"))), "max_key_size"},
		{"conditional put value over max_value_size", write(&rspb.RequestUnion{Value: &rspb.RequestUnion_ConditionalPut{
			ConditionalPut: &rspb.ConditionalPutRequest{Key: uk("C-big"), ExpectAbsent: true, Value: big(2 * lim.MaxValueSize)}}}), "max_value_size"},
		{"get key over max_key_size", &rspb.RangeRequest{RangeId: rd.RangeId, Requests: []*rspb.RequestUnion{badGetU(uk("C-"+string(big(lim.MaxKeySize+64))), nil)}}, "max_key_size"},
		{"batch over max_batch_requests", &rspb.RangeRequest{RangeId: rd.RangeId, Requests: gets(lim.MaxBatchRequests + 1)}, "max_batch_requests"},
		{"batch over max_batch_bytes", write(manyPuts...), "max_batch_bytes"},
	} {
		resp, err := leaseholderCall(ctx, t, tc, c.req)
		if err != nil || resp.Error == nil || resp.Error.Code != rspb.RangeError_INVALID_ARGUMENT || !strings.Contains(resp.Error.Message, c.msg) {
			t.Fatalf("%s: got %v / %.300v, want INVALID_ARGUMENT naming %s", c.name, err, resp.GetError(), c.msg)
		}
	}
	// Nothing was stored.
	g, err := tc.KV(0).Get(ctx, &rspb.GetRequest{Key: []byte("C-big")})
	if err != nil || g.Found {
		t.Fatalf("refused value was stored: %v %v", g, err)
	}
	// 60 MB does not even reach the replica: the message limit is sized to
	// the limits.
	_, err = leaseholderCall(ctx, t, tc, write(badPutU(uk("C-huge"), big(60_000_000))))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("60 MB internal request: got %v, want ResourceExhausted", err)
	}
	if max := MaxMessageSize(lim); max > 4*lim.MaxBatchBytes {
		t.Fatalf("max message size %d is not sized to max_batch_bytes %d", max, lim.MaxBatchBytes)
	}

	// Read responses are bounded: five 1 MiB values fill more than
	// max_batch_bytes.
	for i := 0; i < 5; i++ {
		if _, err := tc.KV(0).Put(ctx, &rspb.PutRequest{Key: []byte(fmt.Sprintf("C-r%d", i)), Value: big(lim.MaxValueSize)}); err != nil {
			t.Fatal(err)
		}
	}
	var scans []*rspb.RequestUnion
	for i := 0; i < 5; i++ {
		scans = append(scans, badScanU(&rspb.ScanRequest{StartKey: uk("C-r"), EndKey: uk("C-s")}))
	}
	resp, err := leaseholderCall(ctx, t, tc, &rspb.RangeRequest{RangeId: rd.RangeId, Requests: scans})
	if err != nil || resp.Error != nil {
		t.Fatalf("scans: %v %v", err, resp.GetError())
	}
	if n := proto.Size(resp); n > lim.MaxBatchBytes+lim.MaxValueSize+lim.MaxKeySize+64<<10 {
		t.Fatalf("5 scans answered %d bytes, more than max_batch_bytes (%d) allows", n, lim.MaxBatchBytes)
	}
	for _, r := range resp.Responses {
		if s := r.GetScan(); len(s.Kvs) < 5 && len(s.ResumeKey) == 0 {
			t.Fatalf("a truncated scan has no resume key")
		}
	}
	var rgets []*rspb.RequestUnion
	for i := 0; i < 5; i++ {
		rgets = append(rgets, badGetU(uk(fmt.Sprintf("C-r%d", i)), nil))
	}
	resp, err = leaseholderCall(ctx, t, tc, &rspb.RangeRequest{RangeId: rd.RangeId, Requests: rgets})
	if err != nil || resp.Error == nil || resp.Error.Code != rspb.RangeError_INVALID_ARGUMENT || !strings.Contains(resp.Error.Message, "max_batch_bytes") {
		t.Fatalf("5 gets of 1 MiB: got %v / %v, want INVALID_ARGUMENT naming max_batch_bytes", err, resp.GetError())
	}
	// Through the gateway, a scan of all of them still pages through.
	sr, err := tc.KV(0).Batch(ctx, &rspb.BatchRequest{Requests: []*rspb.RequestUnion{badScanU(&rspb.ScanRequest{StartKey: []byte("C-r"), EndKey: []byte("C-s"), KeysOnly: true})}})
	if err != nil || len(sr.Responses[0].GetScan().Kvs) != 5 {
		t.Fatalf("gateway scan: %v %v", err, sr)
	}
}

// TestBootstrapValidated: a node waiting for init accepts Bootstrap only
// with a valid layout (meta, system and user ranges tiling the keyspace,
// replicas on known nodes) and with the membership of its join list; every
// refused request leaves it uninitialized.
func TestBootstrapValidated(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	ga := freeAddr(t)
	ra := freeAddr(t)
	other := "127.0.0.1:1" // a join-list peer that never answers
	n, err := Start(Config{StoreDir: dir, ListenAddr: ga, RaftAddr: ra, Join: []string{ga, other},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	c, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	internal := rspb.NewInternalClient(c)

	self := &rspb.NodeDescriptor{NodeId: 1, Address: ga, RaftAddress: ra}
	peer := &rspb.NodeDescriptor{NodeId: 2, Address: other, RaftAddress: "127.0.0.1:2"}
	stranger := &rspb.NodeDescriptor{NodeId: 2, Address: "127.0.0.1:9", RaftAddress: "127.0.0.1:10"}
	plan := func(nodes ...*rspb.NodeDescriptor) []*rspb.RangeDescriptor {
		p, err := PlanRanges(nodes, [][]byte{[]byte("m")}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	req := func(nodes []*rspb.NodeDescriptor, rs []*rspb.RangeDescriptor) *rspb.BootstrapRequest {
		return &rspb.BootstrapRequest{ClusterId: "evil-cluster", NodeId: 1, Nodes: nodes, Ranges: rs,
			Timestamp: &rspb.Timestamp{WallTime: time.Now().UnixNano()}}
	}
	one := []*rspb.RangeDescriptor{{RangeId: 1, StartKey: keys.KeyMin, EndKey: keys.KeyMax, Generation: 1,
		Replicas: []*rspb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}}}
	gap := plan(self, peer)
	gap[len(gap)-1].StartKey = keys.UserKey([]byte("n")) // [m, n) is missing
	badReplica := plan(self, peer)
	badReplica[3].Replicas[0].NodeId = 7
	dupID := plan(self, peer)
	dupID[3].RangeId = dupID[2].RangeId
	for _, c := range []struct {
		name string
		req  *rspb.BootstrapRequest
		msg  string
	}{
		{"one range over the keyspace", req([]*rspb.NodeDescriptor{self, peer}, one), "system range"},
		{"gap in the user span", req([]*rspb.NodeDescriptor{self, peer}, gap), "gap"},
		{"replica on an unknown node", req([]*rspb.NodeDescriptor{self, peer}, badReplica), "n7"},
		{"duplicate range ID", req([]*rspb.NodeDescriptor{self, peer}, dupID), "twice"},
		{"no ranges", req([]*rspb.NodeDescriptor{self, peer}, nil), "0 ranges"},
		{"membership without the join list's peer", req([]*rspb.NodeDescriptor{self}, plan(self)), other},
		{"membership with a stranger", req([]*rspb.NodeDescriptor{self, stranger}, plan(self, stranger)), "127.0.0.1:9"},
		{"not naming this node", req([]*rspb.NodeDescriptor{{NodeId: 1, Address: ga, RaftAddress: "127.0.0.1:3"}, peer},
			plan(&rspb.NodeDescriptor{NodeId: 1}, peer)), "raft address"},
	} {
		_, err := internal.Bootstrap(ctx, c.req)
		if st := status.Convert(err); err == nil || st.Code() != codes.InvalidArgument && st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), c.msg) {
			t.Errorf("%s: got %v, want InvalidArgument or PermissionDenied naming %q", c.name, err, c.msg)
		}
		if id := n.ClusterID(); id != "" {
			t.Fatalf("%s: the node joined cluster %q", c.name, id)
		}
	}
	// The request init would send is accepted.
	if _, err := internal.Bootstrap(ctx, req([]*rspb.NodeDescriptor{self, peer}, plan(self, peer))); err != nil {
		t.Fatalf("valid bootstrap refused: %v", err)
	}
}

// TestFreezeValidatedAndRolledBack: a freeze must name the range's left
// neighbour; a freeze whose target is merged away first is rolled back, so
// the range serves again and merges with its new neighbour. Where the
// target's merge applied on the node of the frozen range's leader, the
// rollback comes at once (FreezeTimeout is an hour); after every node
// restarted, the merge is no longer known in memory (TestingForgetMerges
// stands for that), and it comes once the range stayed frozen past
// FreezeTimeout and the target has no meta record.
func TestFreezeValidatedAndRolledBack(t *testing.T) {
	t.Run("merged-away-here", func(t *testing.T) {
		testFreezeRolledBack(t, time.Hour, false, "the range it was to merge into was merged away on this node")
	})
	t.Run("merge-forgotten", func(t *testing.T) {
		testFreezeRolledBack(t, 2*time.Second, true, "the range it was to merge into no longer exists")
	})
}

func testFreezeRolledBack(t *testing.T, freezeTimeout time.Duration, forget bool, why string) {
	logs := &logBuffer{}
	tc := startCluster(t, TestClusterOptions{SplitCheckInterval: time.Hour, FreezeTimeout: freezeTimeout, TestingForgetMerges: forget,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := ctxT(t)
	rangeAt := func(k string) *rspb.RangeDescriptor {
		for _, d := range tc.Init.Ranges {
			if bytes.Equal(d.StartKey, keys.UserKey([]byte(k))) {
				return d
			}
		}
		t.Fatalf("no range starts at %q", k)
		return nil
	}
	r3, r4, r5 := rangeAt(""), rangeAt("C"), rangeAt("O")
	freeze := func(into uint64) *rspb.RangeResponse {
		resp, err := leaseholderCall(ctx, t, tc, &rspb.RangeRequest{RangeId: r5.RangeId, Admin: &rspb.RangeRequest_AdminFreeze{AdminFreeze: &rspb.AdminFreezeRequest{MergeInto: into}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, into := range []uint64{999, r3.RangeId, r5.RangeId} {
		if resp := freeze(into); resp.Error == nil || resp.Error.Code != rspb.RangeError_FAILED_PRECONDITION || !strings.Contains(resp.Error.Message, "left neighbour") {
			t.Fatalf("freeze of r%d for a merge into r%d: got %v, want FAILED_PRECONDITION (not the left neighbour)", r5.RangeId, into, resp)
		}
	}
	frozenOn := func(i int) uint64 {
		for _, ri := range tc.Node(i).Ranges() {
			if ri.RangeDescriptor.GetRangeId() == r5.RangeId {
				return ri.FrozenInto
			}
		}
		return 0
	}
	for i := 0; i < tc.NumNodes(); i++ {
		if f := frozenOn(i); f != 0 {
			t.Fatalf("a refused freeze froze r%d on n%d (into r%d)", r5.RangeId, i+1, f)
		}
	}
	// A valid freeze for r4, then r4 is merged into r3: r5's merge can
	// never happen.
	if resp := freeze(r4.RangeId); resp.Error != nil {
		t.Fatalf("freeze of r%d for its left neighbour r%d: %v", r5.RangeId, r4.RangeId, resp.Error)
	}
	if _, err := rspb.NewAdminClient(tc.Conn(0)).MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte("A")}); err != nil {
		t.Fatalf("merging r%d into r%d: %v", r4.RangeId, r3.RangeId, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(pctx, 2*time.Second)
		_, err := tc.KV(1).Put(actx, &rspb.PutRequest{Key: []byte("P-after-thaw"), Value: []byte("v")})
		acancel()
		if err == nil {
			break
		}
		if pctx.Err() != nil {
			t.Fatalf("r%d, frozen for a merge into r%d which was merged away, still refuses writes: %v", r5.RangeId, r4.RangeId, err)
		}
	}
	if !strings.Contains(logs.String(), "freeze rolled back: "+why) {
		t.Fatalf("the rollback was not logged with %q", why)
	}
	// The thawed range merges normally with its new left neighbour.
	if _, err := rspb.NewAdminClient(tc.Conn(0)).MergeRange(ctx, &rspb.MergeRangeRequest{Key: []byte("A")}); err != nil {
		t.Fatalf("merging r%d into r%d after the rollback: %v", r5.RangeId, r3.RangeId, err)
	}
	if g, err := tc.KV(2).Get(ctx, &rspb.GetRequest{Key: []byte("P-after-thaw")}); err != nil || !g.Found {
		t.Fatalf("write after the rollback lost by the merge: %v %v", g, err)
	}
}
