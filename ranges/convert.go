package ranges

import (
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TSToProto converts a kv timestamp to its wire form.
func TSToProto(ts kv.Timestamp) *rspb.Timestamp {
	if ts.IsEmpty() {
		return nil
	}
	return &rspb.Timestamp{WallTime: ts.WallTime, Logical: ts.Logical}
}

// TSFromProto converts a wire timestamp (nil = empty).
func TSFromProto(ts *rspb.Timestamp) kv.Timestamp {
	if ts == nil {
		return kv.Timestamp{}
	}
	return kv.Timestamp{WallTime: ts.WallTime, Logical: ts.Logical}
}

func kvToProto(x kv.KeyValue, keysOnly bool) *rspb.KeyValue {
	out := &rspb.KeyValue{Key: x.Key, Timestamp: TSToProto(x.Timestamp)}
	if !keysOnly {
		out.Value = x.Value
	}
	return out
}

func rangeErr(code rspb.RangeError_Code, msg string) *rspb.RangeError {
	return &rspb.RangeError{Code: code, Message: msg}
}
