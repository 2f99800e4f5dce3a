package ranges

import (
	"fmt"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

// Error is a replica's verdict, a *rspb.RangeError, as a Go error. Every
// failure a replica reports keeps its code this way up to the API, where
// the gateway maps codes to gRPC status codes in its one table
// (gateway/errors.go; gateway.RangeError is this type). Evaluation
// (batcheval, where the type is defined) returns it for deterministic
// per-command failures (the command applies nothing); the store's
// error-returning operations (lease transfers, GC) return it for
// everything a replica refuses.
type Error = batcheval.Error

// errorf returns an *Error with code and a formatted message.
func errorf(code rspb.RangeError_Code, format string, args ...any) error {
	return &Error{E: rangeErr(code, fmt.Sprintf(format, args...))}
}

// wrapRangeError returns re as an error (nil for nil: never a typed nil).
func wrapRangeError(re *rspb.RangeError) error {
	if re == nil {
		return nil
	}
	return &Error{E: re}
}
