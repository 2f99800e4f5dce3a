package batcheval

import (
	"fmt"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Error is a replica's verdict, a *rspb.RangeError, as a Go error: the one
// error type that keeps a RangeError's code up to the API (ranges.Error and
// gateway.RangeError are this type). It is defined here so that commands
// can return it: evaluation returns it for deterministic per-command
// failures (the command applies nothing), Check for invalid client
// requests (INVALID_ARGUMENT).
type Error struct{ E *rspb.RangeError }

func (e *Error) Error() string { return e.E.Message }

// RangeErr returns the replica's error.
func (e *Error) RangeErr() *rspb.RangeError { return e.E }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code rspb.RangeError_Code, format string, args ...any) error {
	return &Error{E: &rspb.RangeError{Code: code, Message: fmt.Sprintf(format, args...)}}
}

func invalidf(format string, args ...any) error {
	return Errorf(rspb.RangeError_INVALID_ARGUMENT, format, args...)
}
