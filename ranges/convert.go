package ranges

import (
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges/batcheval"
)

// TSToProto converts a kv timestamp to its wire form.
func TSToProto(ts kv.Timestamp) *rspb.Timestamp { return batcheval.TSToProto(ts) }

// TSFromProto converts a wire timestamp (nil = empty).
func TSFromProto(ts *rspb.Timestamp) kv.Timestamp { return batcheval.TSFromProto(ts) }

func rangeErr(code rspb.RangeError_Code, msg string) *rspb.RangeError {
	return &rspb.RangeError{Code: code, Message: msg}
}
