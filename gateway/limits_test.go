package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/proto/rspb"
)

// limTest are small limits so that tests can cross them cheaply.
var limTest = Limits{MaxKeySize: 8, MaxValueSize: 16, MaxBatchRequests: 4, MaxBatchBytes: 40}

func limB(n int) []byte { return bytes.Repeat([]byte("x"), n) }

func limGet(k []byte) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: k}}}
}

func limPut(k, v []byte) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: k, Value: v}}}
}

func limDel(k []byte) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Delete{Delete: &rspb.DeleteRequest{Key: k}}}
}

func limCPut(k, v, exp []byte, absent bool) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_ConditionalPut{ConditionalPut: &rspb.ConditionalPutRequest{Key: k, Value: v, ExpectedValue: exp, ExpectAbsent: absent}}}
}

func limInc(k []byte) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Increment{Increment: &rspb.IncrementRequest{Key: k, Delta: 1}}}
}

func limScan(s, e []byte, limit int64) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: s, EndKey: e, Limit: limit}}}
}

func limDelRange(s, e []byte) *rspb.RequestUnion {
	return &rspb.RequestUnion{Value: &rspb.RequestUnion_DeleteRange{DeleteRange: &rspb.DeleteRangeRequest{StartKey: s, EndKey: e}}}
}

// limWantErr checks err against an expected InvalidArgument message; empty
// substrs means no error is expected.
func limWantErr(t *testing.T, err error, substrs []string) {
	t.Helper()
	if len(substrs) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one containing %q", substrs)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a gRPC status", err)
	}
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code %v, want InvalidArgument (%v)", st.Code(), err)
	}
	for _, s := range substrs {
		if !strings.Contains(st.Message(), s) {
			t.Errorf("message %q does not contain %q", st.Message(), s)
		}
	}
}

func TestLimitsCheckRequest(t *testing.T) {
	cases := []struct {
		name string
		req  *rspb.RequestUnion
		size int
		want []string // substrings of the error; nil = valid
	}{
		{"get", limGet(limB(3)), 3, nil},
		{"get max key", limGet(limB(8)), 8, nil},
		{"get empty key", limGet(nil), 0, []string{"get", "empty key"}},
		{"get key too large", limGet(limB(9)), 0, []string{"get", "max_key_size", "9 bytes", "8 bytes"}},
		{"put", limPut(limB(2), limB(5)), 7, nil},
		{"put max value", limPut(limB(8), limB(16)), 24, nil},
		{"put empty value", limPut(limB(1), nil), 1, nil},
		{"put empty key", limPut(nil, limB(1)), 0, []string{"put", "empty key"}},
		{"put key too large", limPut(limB(9), nil), 0, []string{"put", "max_key_size"}},
		{"put value too large", limPut(limB(1), limB(17)), 0, []string{"put", "max_value_size", "17 bytes", "16 bytes"}},
		{"delete", limDel(limB(4)), 4, nil},
		{"delete empty key", limDel(nil), 0, []string{"delete", "empty key"}},
		{"delete key too large", limDel(limB(100)), 0, []string{"delete", "max_key_size", "100 bytes"}},
		{"cput", limCPut(limB(2), limB(3), limB(4), false), 9, nil},
		{"cput expect absent", limCPut(limB(2), limB(3), nil, true), 5, nil},
		{"cput empty key", limCPut(nil, limB(3), nil, true), 0, []string{"conditional_put", "empty key"}},
		{"cput key too large", limCPut(limB(9), nil, nil, true), 0, []string{"conditional_put", "max_key_size"}},
		{"cput value too large", limCPut(limB(1), limB(17), nil, true), 0, []string{"conditional_put", "max_value_size"}},
		{"cput expected too large", limCPut(limB(1), limB(1), limB(17), false), 0, []string{"conditional_put expected", "max_value_size"}},
		{"cput absent and expected", limCPut(limB(1), limB(1), limB(1), true), 0, []string{"conditional_put", "mutually exclusive"}},
		{"increment", limInc(limB(8)), 8, nil},
		{"increment empty key", limInc(nil), 0, []string{"increment", "empty key"}},
		{"increment key too large", limInc(limB(9)), 0, []string{"increment", "max_key_size"}},
		{"scan", limScan(limB(1), limB(2), 0), 3, nil},
		{"scan open ended", limScan(nil, nil, 10), 0, nil},
		{"scan open end", limScan([]byte("b"), nil, 0), 1, nil},
		{"scan start after end", limScan([]byte("c"), []byte("b"), 0), 0, []string{"scan", `"c"`, `"b"`, "after end key"}},
		{"scan start too large", limScan(limB(9), nil, 0), 0, []string{"scan", "start key", "max_key_size"}},
		{"scan end too large", limScan(nil, limB(9), 0), 0, []string{"scan", "end key", "max_key_size"}},
		{"scan negative limit", limScan(nil, nil, -1), 0, []string{"scan", "negative limit", "-1"}},
		{"delete range", limDelRange([]byte("a"), []byte("b")), 2, nil},
		{"delete range empty span", limDelRange([]byte("a"), []byte("a")), 2, nil},
		{"delete range empty start", limDelRange(nil, []byte("b")), 0, []string{"delete_range", "empty start key"}},
		{"delete range empty end", limDelRange([]byte("a"), nil), 0, []string{"delete_range", "empty end key"}},
		{"delete range reversed", limDelRange([]byte("b"), []byte("a")), 0, []string{"delete_range", "after end key"}},
		{"delete range start too large", limDelRange(limB(9), limB(10)), 0, []string{"delete_range", "start key", "max_key_size"}},
		{"delete range end too large", limDelRange(limB(1), limB(9)), 0, []string{"delete_range", "end key", "max_key_size"}},
		{"empty request", &rspb.RequestUnion{}, 0, []string{"empty request"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := limTest.checkRequest(tc.req)
			limWantErr(t, err, tc.want)
			if tc.want == nil && n != tc.size {
				t.Errorf("size %d, want %d", n, tc.size)
			}
		})
	}
}

func TestLimitsCheckBatch(t *testing.T) {
	rep := func(n int, r *rspb.RequestUnion) []*rspb.RequestUnion {
		out := make([]*rspb.RequestUnion, n)
		for i := range out {
			out[i] = r
		}
		return out
	}
	cases := []struct {
		name string
		reqs []*rspb.RequestUnion
		want []string
	}{
		{"one request", []*rspb.RequestUnion{limGet(limB(1))}, nil},
		{"no requests", nil, []string{"batch", "no requests"}},
		{"max requests", rep(4, limGet(limB(1))), nil},
		{"too many requests", rep(5, limGet(limB(1))), []string{"batch", "5 requests", "max_batch_requests", "4"}},
		// 8 + 16 = 24 bytes per put; 2 puts = 48 > 40.
		{"too many bytes", []*rspb.RequestUnion{limPut(limB(8), limB(16)), limPut(limB(8), limB(16))}, []string{"batch", "48 bytes", "at request 1", "max_batch_bytes", "40"}},
		{"exactly max bytes", []*rspb.RequestUnion{limPut(limB(8), limB(16)), limPut(limB(8), limB(8))}, nil},
		{"one byte over", []*rspb.RequestUnion{limPut(limB(8), limB(16)), limPut(limB(8), limB(9))}, []string{"41 bytes", "max_batch_bytes"}},
		{"bytes counted across kinds", []*rspb.RequestUnion{limCPut(limB(8), limB(8), limB(8), false), limScan(limB(8), limB(8), 0), limGet(limB(1))}, []string{"41 bytes", "at request 2"}},
		{"invalid request inside", []*rspb.RequestUnion{limGet(limB(1)), limPut(limB(1), limB(17))}, []string{"put", "max_value_size"}},
		{"empty request inside", []*rspb.RequestUnion{limGet(limB(1)), {}}, []string{"empty request"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			limWantErr(t, limTest.checkBatch(tc.reqs), tc.want)
		})
	}
	t.Run("defaults", func(t *testing.T) {
		limWantErr(t, DefaultLimits.checkBatch([]*rspb.RequestUnion{limPut(limB(4<<10), limB(1<<20))}), nil)
		limWantErr(t, DefaultLimits.checkBatch([]*rspb.RequestUnion{limPut(limB(4<<10+1), nil)}), []string{"max_key_size of 4096 bytes"})
		limWantErr(t, DefaultLimits.checkBatch([]*rspb.RequestUnion{limPut(limB(1), limB(1<<20+1))}), []string{"max_value_size of 1048576 bytes"})
		limWantErr(t, DefaultLimits.checkBatch(rep(1001, limGet(limB(1)))), []string{"max_batch_requests of 1000"})
		limWantErr(t, DefaultLimits.checkBatch(rep(5, limPut(limB(1), limB(1<<20)))), []string{"max_batch_bytes of 4194304"})
	})
}

func TestToStatus(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		code    codes.Code
		message string
	}{
		{"unknown", &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_UNKNOWN, Message: "m0"}}, codes.Internal, "m0"},
		{"not leaseholder", &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_NOT_LEASEHOLDER, Message: "m1"}}, codes.Unavailable, "m1"},
		{"range key mismatch", &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_RANGE_KEY_MISMATCH, Message: "m2"}}, codes.Unavailable, "m2"},
		{"range not found", &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_RANGE_NOT_FOUND, Message: "m3"}}, codes.NotFound, "m3"},
		{"invalid argument", &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_INVALID_ARGUMENT, Message: "m4"}}, codes.InvalidArgument, "m4"},
		{"failed precondition", &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_FAILED_PRECONDITION, Message: "m5"}}, codes.FailedPrecondition, "m5"},
		{"unavailable", &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_UNAVAILABLE, Message: "m6"}}, codes.Unavailable, "m6"},
		{"ambiguous", &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_AMBIGUOUS, Message: "m7"}}, codes.Unknown, "m7"},
		{"below gc threshold", &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_BELOW_GC_THRESHOLD, Message: "m8"}}, codes.FailedPrecondition, "m8"},
		{"unmapped code", &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_Code(99), Message: "m99"}}, codes.Internal, "m99"},
		{"wrapped range error", fmt.Errorf("routing: %w", &RangeError{E: &rspb.RangeError{Code: rspb.RangeError_RANGE_NOT_FOUND, Message: "gone"}}), codes.NotFound, "gone"},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, context.DeadlineExceeded.Error()},
		{"wrapped deadline", fmt.Errorf("send: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "send: context deadline exceeded"},
		{"canceled", context.Canceled, codes.Canceled, "context canceled"},
		{"plain", errors.New("boom"), codes.Internal, "boom"},
		{"status passes through", status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied, "no"},
		{"invalidf passes through", invalidf("bad %d", 7), codes.InvalidArgument, "bad 7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ToStatus(tc.err)
			st, ok := status.FromError(err)
			if !ok {
				t.Fatalf("ToStatus(%v) = %v is not a status", tc.err, err)
			}
			if st.Code() != tc.code || st.Message() != tc.message {
				t.Fatalf("ToStatus(%v) = %v %q, want %v %q", tc.err, st.Code(), st.Message(), tc.code, tc.message)
			}
		})
	}
	t.Run("nil", func(t *testing.T) {
		if err := ToStatus(nil); err != nil {
			t.Fatalf("ToStatus(nil) = %v", err)
		}
	})
	t.Run("every code is mapped", func(t *testing.T) {
		for v, name := range rspb.RangeError_Code_name {
			if _, ok := errorCodes[rspb.RangeError_Code(v)]; !ok {
				t.Errorf("RangeError code %s has no status mapping", name)
			}
		}
	})
}
