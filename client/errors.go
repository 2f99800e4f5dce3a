package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Code classifies an Error.
type Code int

// Error codes. The zero Code is Unknown.
const (
	// Unknown: an error the client cannot classify (the server's message
	// says more).
	Unknown Code = iota
	// InvalidArgument: bad input, refused before anything was written; the
	// message names the field (and the limit it exceeds).
	InvalidArgument
	// NotFound: Get found no live value for the key.
	NotFound
	// ConditionFailed: a ConditionalPut or ConditionalDelete whose
	// condition did not hold; nothing was written (see
	// ConditionFailedError).
	ConditionFailed
	// Ambiguous: a write may or may not have applied, and it could not be
	// retried without risking applying it twice (or the cluster said so).
	Ambiguous
	// Unavailable: the retry budget or the deadline ran out before any
	// replica served the request; a write under this code did not apply
	// (one that may have is Ambiguous).
	Unavailable
	// FailedPrecondition: the cluster refused the request in its current
	// state (e.g. a read below the GC threshold).
	FailedPrecondition
	// PermissionDenied, Unauthenticated: the client's certificate does not
	// allow the call, or there is none.
	PermissionDenied
	Unauthenticated
	// ResourceExhausted: a message beyond the size limits.
	ResourceExhausted
	// DeadlineExceeded, Canceled: the caller's context ended (the Error
	// wraps the context's error).
	DeadlineExceeded
	Canceled
	// Internal: a server-side failure.
	Internal
	// Closed: the DB was closed.
	Closed
	// Retry: a transaction met a conflict (or an aborted record) and must
	// run again; DB.Txn does that. Nothing of that run committed.
	Retry
)

var codeNames = map[Code]string{
	Unknown: "unknown", InvalidArgument: "invalid argument", NotFound: "not found", ConditionFailed: "condition failed",
	Ambiguous: "ambiguous", Unavailable: "unavailable", FailedPrecondition: "failed precondition",
	PermissionDenied: "permission denied", Unauthenticated: "unauthenticated", ResourceExhausted: "resource exhausted",
	DeadlineExceeded: "deadline exceeded", Canceled: "canceled", Internal: "internal", Closed: "closed", Retry: "retry",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// Error is every error the client returns (ConditionFailedError aside,
// which matches ErrConditionFailed too). errors.Is matches it against the
// sentinels by Code; errors.As finds it; Unwrap gives its cause (a
// context's error for DeadlineExceeded and Canceled).
type Error struct {
	Code Code
	// Op is the operation ("get", "put", "batch", ...).
	Op string
	// Message says what happened, naming the field for bad input.
	Message string
	// Err is the cause (a gRPC status error, a context error), if any.
	Err error
}

func (e *Error) Error() string {
	switch {
	case e.Op != "" && e.Message != "":
		return fmt.Sprintf("client: %s: %s", e.Op, e.Message)
	case e.Message != "":
		return "client: " + e.Message
	case e.Op != "":
		return fmt.Sprintf("client: %s: %s", e.Op, e.Code)
	}
	return "client: " + e.Code.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches a sentinel (an *Error with only a Code) of the same Code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Op == "" && t.Message == "" && t.Err == nil && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrInvalidArgument  = &Error{Code: InvalidArgument}
	ErrNotFound         = &Error{Code: NotFound}
	ErrConditionFailed  = &Error{Code: ConditionFailed}
	ErrAmbiguous        = &Error{Code: Ambiguous}
	ErrUnavailable      = &Error{Code: Unavailable}
	ErrPermissionDenied = &Error{Code: PermissionDenied}
	ErrClosed           = &Error{Code: Closed}
	ErrRetry            = &Error{Code: Retry}
)

// ConditionFailedError is the error of a ConditionalPut or
// ConditionalDelete whose condition did not hold: what the key held.
type ConditionFailedError struct {
	Key []byte
	// ActualExists says whether the key had a live value; ActualValue is
	// that value.
	ActualExists bool
	ActualValue  []byte
}

func (e *ConditionFailedError) Error() string {
	if !e.ActualExists {
		return fmt.Sprintf("client: conditional write of %q: condition failed: the key has no value", e.Key)
	}
	return fmt.Sprintf("client: conditional write of %q: condition failed: the key holds %q", e.Key, e.ActualValue)
}

// Is matches ErrConditionFailed.
func (e *ConditionFailedError) Is(target error) bool { return target == ErrConditionFailed }

// withOp returns err as an *Error of op: a copy, since an error may be
// shared (a routing lookup's, by the calls waiting on it).
func withOp(err error, op string) error {
	e, ok := errors.AsType[*Error](err)
	if !ok {
		return err
	}
	c := *e
	c.Op = op
	return &c
}

// invalidf is an InvalidArgument error of op.
func invalidf(op, format string, args ...any) *Error {
	return &Error{Code: InvalidArgument, Op: op, Message: fmt.Sprintf(format, args...)}
}

// grpcCodes maps gRPC status codes of the KV service to client codes.
var grpcCodes = map[codes.Code]Code{
	codes.InvalidArgument:    InvalidArgument,
	codes.FailedPrecondition: FailedPrecondition,
	codes.PermissionDenied:   PermissionDenied,
	codes.Unauthenticated:    Unauthenticated,
	codes.ResourceExhausted:  ResourceExhausted,
	codes.Unavailable:        Unavailable,
	codes.DeadlineExceeded:   DeadlineExceeded,
	codes.Canceled:           Canceled,
	codes.Internal:           Internal,
	// The KV service answers AMBIGUOUS with Unknown (gateway.ToStatus);
	// the RouteHint code, when present, is used instead.
	codes.Unknown: Unknown,
}

// fromStatus is err (a gRPC error of op) as an *Error.
func fromStatus(op string, err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	if ctxErr := contextError(err); ctxErr != nil {
		return &Error{Code: ctxCode(ctxErr), Op: op, Message: ctxErr.Error(), Err: err}
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Code: Unknown, Op: op, Message: err.Error(), Err: err}
	}
	c, ok := grpcCodes[st.Code()]
	if !ok {
		c = Unknown
	}
	return &Error{Code: c, Op: op, Message: st.Message(), Err: err}
}

// contextError returns the context error err is or carries (a status of
// code Canceled or DeadlineExceeded made by gRPC from one), else nil.
func contextError(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	}
	return nil
}

func ctxCode(err error) Code {
	if errors.Is(err, context.Canceled) {
		return Canceled
	}
	return DeadlineExceeded
}

// ctxError is the error of op whose context ended (ctx.Err()), wrapping
// both the context's error and, for the message, the last attempt's.
func ctxError(op string, ctxErr, last error) *Error {
	msg := ctxErr.Error()
	if last != nil {
		msg = fmt.Sprintf("%v (last error: %v)", ctxErr, last)
	}
	return &Error{Code: ctxCode(ctxErr), Op: op, Message: msg, Err: ctxErr}
}
