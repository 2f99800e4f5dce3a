package gateway

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// RangeError is a replica's verdict as a Go error: the router's, the
// store's and the node's all are this one type (ranges.Error), and ToStatus
// maps its code through errorCodes.
type RangeError = ranges.Error

// errorCodes is the one table from replica error codes to gRPC status codes.
var errorCodes = map[rspb.RangeError_Code]codes.Code{
	rspb.RangeError_UNKNOWN:             codes.Internal,
	rspb.RangeError_NOT_LEASEHOLDER:     codes.Unavailable,
	rspb.RangeError_RANGE_KEY_MISMATCH:  codes.Unavailable,
	rspb.RangeError_RANGE_NOT_FOUND:     codes.NotFound,
	rspb.RangeError_INVALID_ARGUMENT:    codes.InvalidArgument,
	rspb.RangeError_FAILED_PRECONDITION: codes.FailedPrecondition,
	rspb.RangeError_UNAVAILABLE:         codes.Unavailable,
	rspb.RangeError_AMBIGUOUS:           codes.Unknown,
	rspb.RangeError_BELOW_GC_THRESHOLD:  codes.FailedPrecondition,
	rspb.RangeError_NOT_CLOSED:          codes.Unavailable,
	rspb.RangeError_BOOKMARK_TIMEOUT:    codes.Unavailable,
	// Transaction conflicts: retry the transaction (the ErrorInfo reason
	// says which). WRITE_INTENT reaches a client only when the gateway
	// gave up waiting on a conflicting transaction.
	rspb.RangeError_WRITE_INTENT: codes.Aborted,
	rspb.RangeError_TXN_RETRY:    codes.Aborted,
	rspb.RangeError_TXN_ABORTED:  codes.Aborted,
}

// errorReasons: codes whose status also carries an ErrorInfo with this
// reason (domain rangestore), for clients to tell them apart.
var errorReasons = map[rspb.RangeError_Code]string{
	rspb.RangeError_BOOKMARK_TIMEOUT: "BOOKMARK_TIMEOUT",
	rspb.RangeError_WRITE_INTENT:     "WRITE_INTENT",
	rspb.RangeError_TXN_RETRY:        "TXN_RETRY",
	rspb.RangeError_TXN_ABORTED:      "TXN_ABORTED",
	rspb.RangeError_AMBIGUOUS:        "AMBIGUOUS",
}

// ErrorDomain is the domain of the ErrorInfo details of statuses.
const ErrorDomain = "rangestore"

// ToStatus converts any error of the gateway into a gRPC status error. It is
// the only place where errors become status codes.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var re *RangeError
	if errors.As(err, &re) {
		c, ok := errorCodes[re.E.Code]
		if !ok {
			c = codes.Internal
		}
		st := status.New(c, re.E.Message)
		if reason, ok := errorReasons[re.E.Code]; ok {
			if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}); err == nil {
				st = d
			}
		}
		return st.Err()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func invalidf(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}
